//! Selections: a GraphQL-style selection set stored on a subscription that picks the
//! parts of an event's `data` to send, like `{ id status order { id total } }`. Fields
//! that select sub-fields apply to an object, or to each object of a list. A field the
//! data does not have is left out. This is also the "lightweight webhook" of entity feeds:
//! `{ id ref }` sends only the identifiers.

use graphql_parser::query::{
    Definition, Document, OperationDefinition, Selection as GqlSelection, SelectionSet, parse_query,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest selection text accepted.
pub const MAX_SELECTION_LEN: usize = 4096;
const MAX_DEPTH: usize = 16;

/// One selected field and what it selects below it (empty: the whole value).
#[derive(Clone, Debug, PartialEq)]
struct Field {
    name: String,
    children: Vec<Field>,
}

/// A parsed selection; serialized as the text it was parsed from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selection {
    text: String,
    fields: Vec<Field>,
}

fn fields_of(set: &SelectionSet<'_, String>, depth: usize) -> Result<Vec<Field>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nests deeper than {MAX_DEPTH} levels"));
    }
    let listed = set
        .items
        .iter()
        .map(|item| match item {
            GqlSelection::Field(field) => {
                if !field.arguments.is_empty()
                    || field.alias.is_some()
                    || !field.directives.is_empty()
                {
                    return Err(format!(
                        "`{}`: arguments, aliases and directives are not supported",
                        field.name
                    ));
                }
                Ok(Field {
                    name: field.name.clone(),
                    children: fields_of(&field.selection_set, depth + 1)?,
                })
            }
            _ => Err("fragments are not supported; list the fields".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merged(listed))
}

/// `fields` with each name once, as GraphQL merges a field selected twice: what each
/// selected below it together, or the whole value when one selected it whole. A field
/// listed a thousand times would otherwise copy its value a thousand times on every
/// delivery.
fn merged(fields: Vec<Field>) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::with_capacity(fields.len());
    for field in fields {
        match out.iter_mut().find(|kept| kept.name == field.name) {
            None => out.push(field),
            Some(kept) if kept.children.is_empty() => {}
            Some(kept) if field.children.is_empty() => kept.children.clear(),
            Some(kept) => {
                let children = std::mem::take(&mut kept.children);
                kept.children = merged(children.into_iter().chain(field.children).collect());
            }
        }
    }
    out
}

impl Selection {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().count() > MAX_SELECTION_LEN {
            return Err(format!("is longer than {MAX_SELECTION_LEN} characters"));
        }
        let document: Document<'_, String> =
            parse_query(text).map_err(|e| format!("does not parse: {}", e.to_string().trim()))?;
        let [Definition::Operation(operation)] = document.definitions.as_slice() else {
            return Err("must be one selection set, like `{ id status }`".into());
        };
        let set = match operation {
            OperationDefinition::SelectionSet(set) => set,
            OperationDefinition::Query(query) if query.variable_definitions.is_empty() => {
                &query.selection_set
            }
            _ => return Err("must be one selection set, like `{ id status }`".into()),
        };
        let fields = fields_of(set, 0)?;
        if fields.is_empty() {
            return Err("selects nothing".into());
        }
        Ok(Self {
            text: text.to_owned(),
            fields,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The selected parts of `data`.
    pub fn apply(&self, data: &Map<String, Value>) -> Map<String, Value> {
        select_object(data, &self.fields)
    }
}

fn select_object(object: &Map<String, Value>, fields: &[Field]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|field| {
            let value = object.get(&field.name)?;
            Some((field.name.clone(), select_value(value, &field.children)))
        })
        .collect()
}

fn select_value(value: &Value, children: &[Field]) -> Value {
    if children.is_empty() {
        return value.clone();
    }
    match value {
        Value::Object(object) => Value::Object(select_object(object, children)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| select_value(item, children))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl TryFrom<String> for Selection {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Selection> for String {
    fn from(value: Selection) -> Self {
        value.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pick(selection: &str, data: Value) -> Value {
        Value::Object(
            Selection::parse(selection)
                .unwrap()
                .apply(data.as_object().unwrap()),
        )
    }

    /// At most 4096 characters, as the API's schema counts them (`maxLength`): not bytes.
    #[test]
    fn a_selection_is_counted_in_characters() {
        let padded = |pad: usize| format!("{{ id }}{}", " ".repeat(pad));
        let accented = |n: usize| format!("{{ id }} #{}", "é".repeat(n));
        assert!(Selection::parse(&accented(4096 - 8)).is_ok());
        assert!(Selection::parse(&accented(4096 - 7)).is_err());
        assert!(Selection::parse(&padded(4096 - 6)).is_ok());
        assert!(Selection::parse(&padded(4096 - 5)).is_err());
    }

    /// A field selected twice is selected once, as GraphQL merges it: what both select
    /// below it, or the whole value when either selects it whole.
    #[test]
    fn a_field_selected_twice_is_kept_once_with_what_both_select() {
        let data = json!({"a": 1, "o": {"x": 1, "y": 2, "z": 3}});
        assert_eq!(
            Selection::parse("{ a a a }").unwrap().fields,
            Selection::parse("{ a }").unwrap().fields
        );
        assert_eq!(
            Selection::parse("{ o { x } a o { y } }").unwrap().fields,
            Selection::parse("{ o { x y } a }").unwrap().fields
        );
        assert_eq!(
            Selection::parse("{ o { x } o }").unwrap().fields,
            Selection::parse("{ o }").unwrap().fields
        );
        assert_eq!(
            pick("{ o { x } o { y } }", data.clone()),
            json!({"o": {"x": 1, "y": 2}})
        );
        // The text is kept as written.
        assert_eq!(Selection::parse("{ a a }").unwrap().as_str(), "{ a a }");
        let many = format!("{{ {} }}", "a ".repeat(2000));
        assert_eq!(Selection::parse(&many).unwrap().fields.len(), 1);
    }

    #[test]
    fn picks_nested_objects_and_lists_of_objects() {
        let data = json!({
            "id": "inv_1", "status": "PAID", "secret": "x",
            "order": {"id": "o_1", "total": 10, "customer": {"email": "a@b"}},
            "lines": [{"sku": "A", "qty": 1, "cost": 3}, {"sku": "B", "qty": 2, "cost": 4}]
        });
        assert_eq!(
            pick(
                "{ id status order { id total } lines { sku qty } missing }",
                data.clone()
            )
            .to_string(),
            r#"{"id":"inv_1","lines":[{"qty":1,"sku":"A"},{"qty":2,"sku":"B"}],"order":{"id":"o_1","total":10},"status":"PAID"}"#
        );
        assert_eq!(
            pick("query { order { customer { email } } }", data),
            json!({"order": {"customer": {"email": "a@b"}}})
        );
    }

    #[test]
    fn bad_selections_say_why() {
        for (text, why) in [
            ("{ id ", "does not parse"),
            ("{ id(first: 1) }", "arguments"),
            ("{ ...Frag } fragment Frag on X { id }", "one selection set"),
            ("{ a: id }", "aliases"),
            ("mutation { id }", "one selection set"),
            ("{ id } { name }", "one selection set"),
        ] {
            let err = Selection::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(Selection::parse(&format!("{{ {} }}", "a ".repeat(3000))).is_err());
    }
}
