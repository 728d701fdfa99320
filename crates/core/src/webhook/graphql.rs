//! Payloads built by the subscriber's GraphQL query (seed 003: the body "is the result of
//! executing a GraphQL query specified when registering the webhook"). A subscription may
//! carry a [`PayloadQuery`]: a query for the deployment's GraphQL source with its variables
//! bound from the event (`"id": "subject.id"`). At registration the query is checked
//! against the source's schema ([`Schema`], read by introspection); at each attempt it is
//! executed and the body's `data` is its result ([`payload_of`]).
//!
//! Only queries: a delivery must not change anything at the source, so mutations and
//! subscriptions are refused. Each query runs for one tenant, named to the source in the
//! `herald-tenant` header and bindable as a variable (`tenant`); the source scopes what it
//! answers by it (docs/SECURITY.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Type,
    TypeCondition, Value as GqlValue, parse_query,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;
use crate::ids::TenantId;

/// Longest query text accepted.
pub const MAX_QUERY_LEN: usize = 8192;
/// Most variables a query may bind.
pub const MAX_VARIABLES: usize = 16;
/// Deepest nesting of selections.
const MAX_DEPTH: usize = 12;
/// Most fields a query may select (fragments counted where they are spread).
const MAX_FIELDS: usize = 256;
/// Longest source error kept in an attempt's log.
const MAX_ERROR_LEN: usize = 300;

/// Where a variable's value comes from in the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The event's id.
    Id,
    /// The event's type.
    Type,
    /// When it happened (RFC 3339).
    OccurredAt,
    /// The tenant the delivery is for.
    Tenant,
    SubjectId,
    SubjectType,
    SubjectRef,
    SubjectStatus,
    /// A value in `data`, by its keys (`data.order.id`); `data` alone is the whole object.
    Data(Vec<String>),
}

impl Binding {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(match raw {
            "id" => Self::Id,
            "type" => Self::Type,
            "occurred_at" => Self::OccurredAt,
            "tenant" => Self::Tenant,
            "subject.id" => Self::SubjectId,
            "subject.type" => Self::SubjectType,
            "subject.ref" => Self::SubjectRef,
            "subject.status" => Self::SubjectStatus,
            "data" => Self::Data(Vec::new()),
            _ => match raw.strip_prefix("data.") {
                Some(path) if path.split('.').all(|k| !k.is_empty()) && path.len() <= 256 => {
                    Self::Data(path.split('.').map(str::to_owned).collect())
                }
                _ => {
                    return Err(format!(
                        "`{raw}` is not a place in the event: one of id, type, occurred_at, \
                         tenant, subject.id, subject.type, subject.ref, subject.status, data \
                         or data.<key>[.<key>…]"
                    ));
                }
            },
        })
    }

    pub fn as_text(&self) -> String {
        match self {
            Self::Id => "id".into(),
            Self::Type => "type".into(),
            Self::OccurredAt => "occurred_at".into(),
            Self::Tenant => "tenant".into(),
            Self::SubjectId => "subject.id".into(),
            Self::SubjectType => "subject.type".into(),
            Self::SubjectRef => "subject.ref".into(),
            Self::SubjectStatus => "subject.status".into(),
            Self::Data(path) if path.is_empty() => "data".into(),
            Self::Data(path) => format!("data.{}", path.join(".")),
        }
    }

    /// The value for `event`, delivered to `tenant`; `null` where the event has none.
    fn value(&self, event: &Event, tenant: &TenantId) -> Value {
        let text = |s: Option<&String>| s.map_or(Value::Null, |s| Value::String(s.clone()));
        let subject = event.subject.as_ref();
        match self {
            Self::Id => Value::String(event.id.to_string()),
            Self::Type => Value::String(event.event_type.to_string()),
            Self::OccurredAt => Value::String(
                event
                    .occurred_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            Self::Tenant => Value::String(tenant.to_string()),
            Self::SubjectId => text(subject.map(|s| &s.id)),
            Self::SubjectType => text(subject.map(|s| &s.kind)),
            Self::SubjectRef => text(subject.and_then(|s| s.reference.as_ref())),
            Self::SubjectStatus => text(subject.and_then(|s| s.status.as_ref())),
            Self::Data(path) => {
                let Some((first, rest)) = path.split_first() else {
                    return Value::Object(event.data.clone());
                };
                let found = || {
                    rest.iter()
                        .try_fold(event.data.get(first)?, |v, k| v.get(k))
                };
                found().cloned().unwrap_or(Value::Null)
            }
        }
    }
}

/// A query as given and as stored: its text and its variables' places in the event.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryInput {
    pub text: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// A subscription's query, parsed: one query operation (with any fragments it spreads),
/// every variable it requires bound.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "QueryInput", into = "QueryInput")]
pub struct PayloadQuery {
    text: String,
    variables: BTreeMap<String, Binding>,
}

impl From<PayloadQuery> for QueryInput {
    fn from(query: PayloadQuery) -> Self {
        Self {
            text: query.text,
            variables: query
                .variables
                .iter()
                .map(|(name, binding)| (name.clone(), binding.as_text()))
                .collect(),
        }
    }
}

impl TryFrom<QueryInput> for PayloadQuery {
    type Error = String;
    fn try_from(input: QueryInput) -> Result<Self, String> {
        Self::parse(input)
    }
}

type Doc<'a> = Document<'a, String>;

/// The operation and the fragments of a query that parsed.
struct Parts<'d, 'a> {
    selection: &'d SelectionSet<'a, String>,
    /// Each declared variable: its type, and whether it has a default.
    declared: BTreeMap<&'d str, (&'d Type<'a, String>, bool)>,
    fragments: HashMap<&'d str, &'d FragmentDefinition<'a, String>>,
}

fn parts<'d, 'a>(document: &'d Doc<'a>) -> Result<Parts<'d, 'a>, String> {
    let mut operation = None;
    let mut fragments = HashMap::new();
    for definition in &document.definitions {
        match definition {
            Definition::Operation(op) => {
                if operation.replace(op).is_some() {
                    return Err("must hold one operation".into());
                }
            }
            Definition::Fragment(fragment) => {
                if fragments.insert(fragment.name.as_str(), fragment).is_some() {
                    return Err(format!("defines fragment `{}` twice", fragment.name));
                }
            }
        }
    }
    let mut declared = BTreeMap::new();
    let selection = match operation {
        None => return Err("holds no query".into()),
        Some(OperationDefinition::SelectionSet(set)) => set,
        Some(OperationDefinition::Query(query)) => {
            if !query.directives.is_empty() {
                return Err("directives are not supported".into());
            }
            for variable in &query.variable_definitions {
                let entry = (&variable.var_type, variable.default_value.is_some());
                if declared.insert(variable.name.as_str(), entry).is_some() {
                    return Err(format!("declares `${}` twice", variable.name));
                }
            }
            &query.selection_set
        }
        Some(OperationDefinition::Mutation(_) | OperationDefinition::Subscription(_)) => {
            return Err("must be a query: a delivery never changes anything at the source".into());
        }
    };
    Ok(Parts {
        selection,
        declared,
        fragments,
    })
}

impl PayloadQuery {
    /// Checks what can be checked without the source: the text parses as one query, each
    /// binding names a variable the query declares and a place in the event, and each
    /// variable the query requires (non-null, no default) is bound.
    pub fn parse(input: QueryInput) -> Result<Self, String> {
        if input.text.chars().count() > MAX_QUERY_LEN {
            return Err(format!("text: is longer than {MAX_QUERY_LEN} characters"));
        }
        if input.variables.len() > MAX_VARIABLES {
            return Err(format!("variables: at most {MAX_VARIABLES}"));
        }
        let document: Doc<'_> = parse_query(&input.text)
            .map_err(|e| format!("text: does not parse: {}", e.to_string().trim()))?;
        let parts = parts(&document).map_err(|e| format!("text: {e}"))?;
        let mut variables = BTreeMap::new();
        for (name, place) in &input.variables {
            if !parts.declared.contains_key(name.as_str()) {
                return Err(format!("variables.{name}: the query declares no `${name}`"));
            }
            let binding = Binding::parse(place).map_err(|e| format!("variables.{name}: {e}"))?;
            variables.insert(name.clone(), binding);
        }
        for (name, (var_type, has_default)) in &parts.declared {
            if matches!(var_type, Type::NonNullType(_))
                && !has_default
                && !variables.contains_key(*name)
            {
                return Err(format!(
                    "variables: `${name}` is required by the query; bind it to a place in \
                     the event, like \"{name}\": \"subject.id\""
                ));
            }
        }
        Ok(Self {
            text: input.text,
            variables,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The variables for one delivery of `event` to `tenant`.
    pub fn bind(&self, event: &Event, tenant: &TenantId) -> Map<String, Value> {
        self.variables
            .iter()
            .map(|(name, binding)| (name.clone(), binding.value(event, tenant)))
            .collect()
    }

    /// Checks the query against the source's schema: every field exists on its type with
    /// the arguments given, required arguments are given, variables are declared, used and
    /// of the arguments' types, objects select fields and leaves none, within bounds.
    pub fn validate(&self, schema: &Schema) -> Result<(), String> {
        let document: Doc<'_> =
            parse_query(&self.text).map_err(|e| format!("does not parse: {e}"))?;
        let parts = parts(&document)?;
        for (name, (var_type, _)) in &parts.declared {
            let named = named_of_ast(var_type);
            match schema.types.get(named).map(|t| t.kind) {
                Some(Kind::Scalar | Kind::Enum | Kind::InputObject) => {}
                Some(_) => return Err(format!("`${name}`: `{named}` is not an input type")),
                None => return Err(format!("`${name}`: the source has no type `{named}`")),
            }
        }
        let mut walk = Walk {
            schema,
            parts: &parts,
            used_variables: BTreeSet::new(),
            used_fragments: BTreeSet::new(),
            spreading: Vec::new(),
            fields: 0,
        };
        walk.selection(parts.selection, &schema.query_type, 0)?;
        if let Some(name) = parts
            .declared
            .keys()
            .find(|name| !walk.used_variables.contains(**name))
        {
            return Err(format!("declares `${name}` but never uses it"));
        }
        if let Some(name) = parts
            .fragments
            .keys()
            .find(|name| !walk.used_fragments.contains(**name))
        {
            return Err(format!("defines fragment `{name}` but never spreads it"));
        }
        Ok(())
    }
}

/// A walk over a query's selections against a schema.
struct Walk<'w, 'd, 'a> {
    schema: &'w Schema,
    parts: &'w Parts<'d, 'a>,
    used_variables: BTreeSet<String>,
    used_fragments: BTreeSet<String>,
    /// The fragments being spread, to refuse a cycle.
    spreading: Vec<String>,
    fields: usize,
}

impl<'w> Walk<'w, '_, '_> {
    fn composite(&self, name: &str) -> Result<&'w TypeDef, String> {
        let schema: &'w Schema = self.schema;
        match schema.types.get(name) {
            Some(t) if matches!(t.kind, Kind::Object | Kind::Interface | Kind::Union) => Ok(t),
            Some(_) => Err(format!("`{name}` is not an object, interface or union")),
            None => Err(format!("the source has no type `{name}`")),
        }
    }

    fn selection(
        &mut self,
        set: &SelectionSet<'_, String>,
        parent: &str,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nests deeper than {MAX_DEPTH} levels"));
        }
        let parent_type = self.composite(parent)?;
        for item in &set.items {
            match item {
                Selection::Field(field) => {
                    self.fields += 1;
                    if self.fields > MAX_FIELDS {
                        return Err(format!("selects more than {MAX_FIELDS} fields"));
                    }
                    if !field.directives.is_empty() {
                        return Err(format!("`{}`: directives are not supported", field.name));
                    }
                    if field.name == "__typename" {
                        if !field.arguments.is_empty() || !field.selection_set.items.is_empty() {
                            return Err("`__typename` takes no arguments or fields".into());
                        }
                        continue;
                    }
                    let Some(def) = parent_type.fields.get(field.name.as_str()) else {
                        return Err(if parent_type.kind == Kind::Union {
                            format!(
                                "`{parent}` is a union: select `{}` in a fragment on one of \
                                 its types, like `... on {} {{ {} }}`",
                                field.name,
                                parent_type.possible.first().map_or("T", String::as_str),
                                field.name
                            )
                        } else {
                            format!("`{parent}` has no field `{}`", field.name)
                        });
                    };
                    self.arguments(&field.name, &field.arguments, def)?;
                    let named = def.ty.named();
                    let leaf = matches!(
                        self.schema.types.get(named).map(|t| t.kind),
                        Some(Kind::Scalar | Kind::Enum)
                    );
                    let picked = !field.selection_set.items.is_empty();
                    if leaf && picked {
                        return Err(format!(
                            "`{}` is a {named}: it has no fields to select",
                            field.name
                        ));
                    }
                    if !leaf && !picked {
                        return Err(format!(
                            "`{}` is a {named}: select its fields, like `{} {{ id }}`",
                            field.name, field.name
                        ));
                    }
                    if picked {
                        self.selection(&field.selection_set, named, depth + 1)?;
                    }
                }
                Selection::InlineFragment(fragment) => {
                    if !fragment.directives.is_empty() {
                        return Err("directives are not supported".into());
                    }
                    let on = match &fragment.type_condition {
                        Some(TypeCondition::On(name)) => name.as_str(),
                        None => parent,
                    };
                    self.composite(on)?;
                    self.selection(&fragment.selection_set, on, depth + 1)?;
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let parts: &'w Parts<'_, '_> = self.parts;
                    let Some(fragment) = parts.fragments.get(name) else {
                        return Err(format!("spreads fragment `{name}`, which is not defined"));
                    };
                    if self.spreading.iter().any(|n| n == name) {
                        return Err(format!("fragment `{name}` spreads itself"));
                    }
                    if !spread.directives.is_empty() || !fragment.directives.is_empty() {
                        return Err("directives are not supported".into());
                    }
                    self.used_fragments.insert(name.to_owned());
                    let TypeCondition::On(on) = &fragment.type_condition;
                    self.composite(on)?;
                    self.spreading.push(name.to_owned());
                    self.selection(&fragment.selection_set, on, depth + 1)?;
                    self.spreading.pop();
                }
            }
        }
        Ok(())
    }

    fn arguments(
        &mut self,
        field: &str,
        given: &[(String, GqlValue<'_, String>)],
        def: &FieldDef,
    ) -> Result<(), String> {
        for (name, value) in given {
            let Some(arg) = def.args.get(name.as_str()) else {
                return Err(format!("`{field}` takes no argument `{name}`"));
            };
            let mut used = Vec::new();
            variables_in(value, &mut used);
            for variable in used {
                let Some((var_type, has_default)) = self.parts.declared.get(variable) else {
                    return Err(format!(
                        "uses `${variable}`, which the query does not declare"
                    ));
                };
                // A variable given whole as the argument must be of its type.
                if matches!(value, GqlValue::Variable(_))
                    && !usable_as(
                        &TypeRef::of_ast(var_type),
                        &arg.ty,
                        *has_default || arg.has_default,
                    )
                {
                    return Err(format!(
                        "`${variable}` is a {} but `{field}({name}:)` takes a {}",
                        TypeRef::of_ast(var_type),
                        arg.ty
                    ));
                }
                self.used_variables.insert(variable.to_owned());
            }
        }
        for (name, arg) in &def.args {
            if matches!(arg.ty, TypeRef::NonNull(_))
                && !arg.has_default
                && !given.iter().any(|(n, _)| n == name)
            {
                return Err(format!("`{field}` needs its argument `{name}`"));
            }
        }
        Ok(())
    }
}

fn variables_in<'v>(value: &'v GqlValue<'_, String>, out: &mut Vec<&'v str>) {
    match value {
        GqlValue::Variable(name) => out.push(name),
        GqlValue::List(items) => items.iter().for_each(|v| variables_in(v, out)),
        GqlValue::Object(fields) => fields.values().for_each(|v| variables_in(v, out)),
        _ => {}
    }
}

fn named_of_ast<'t>(ty: &'t Type<'_, String>) -> &'t str {
    match ty {
        Type::NamedType(name) => name,
        Type::ListType(inner) | Type::NonNullType(inner) => named_of_ast(inner),
    }
}

/// Whether a variable of type `var` may stand where `arg` is expected (the spec's "Are
/// Types Compatible", a nullable variable allowed for a non-null argument when either
/// has a default).
fn usable_as(var: &TypeRef, arg: &TypeRef, defaulted: bool) -> bool {
    match (var, arg) {
        (TypeRef::NonNull(v), TypeRef::NonNull(a)) => usable_as(v, a, false),
        (v, TypeRef::NonNull(a)) => defaulted && usable_as(v, a, false),
        (TypeRef::NonNull(v), a) => usable_as(v, a, false),
        (TypeRef::List(v), TypeRef::List(a)) => usable_as(v, a, false),
        (TypeRef::Named(v), TypeRef::Named(a)) => v == a,
        _ => false,
    }
}

/// A type as fields and arguments name it.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeRef {
    Named(String),
    List(Box<TypeRef>),
    NonNull(Box<TypeRef>),
}

impl TypeRef {
    fn named(&self) -> &str {
        match self {
            Self::Named(name) => name,
            Self::List(inner) | Self::NonNull(inner) => inner.named(),
        }
    }

    fn of_ast(ty: &Type<'_, String>) -> Self {
        match ty {
            Type::NamedType(name) => Self::Named(name.clone()),
            Type::ListType(inner) => Self::List(Box::new(Self::of_ast(inner))),
            Type::NonNullType(inner) => Self::NonNull(Box::new(Self::of_ast(inner))),
        }
    }

    /// From introspection's `{kind, name, ofType}`.
    fn of_introspection(value: &Value, depth: usize) -> Result<Self, String> {
        if depth > 8 {
            return Err("a type wraps more than 8 levels".into());
        }
        let inner = || Self::of_introspection(&value["ofType"], depth + 1).map(Box::new);
        match value["kind"].as_str() {
            Some("NON_NULL") => Ok(Self::NonNull(inner()?)),
            Some("LIST") => Ok(Self::List(inner()?)),
            Some(_) => match value["name"].as_str() {
                Some(name) => Ok(Self::Named(name.to_owned())),
                None => Err("a named type has no name".into()),
            },
            None => Err("a type reference has no kind".into()),
        }
    }
}

impl std::fmt::Display for TypeRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => write!(f, "{name}"),
            Self::List(inner) => write!(f, "[{inner}]"),
            Self::NonNull(inner) => write!(f, "{inner}!"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
}

#[derive(Debug)]
struct ArgDef {
    ty: TypeRef,
    has_default: bool,
}

#[derive(Debug)]
struct FieldDef {
    args: BTreeMap<String, ArgDef>,
    ty: TypeRef,
}

#[derive(Debug)]
struct TypeDef {
    kind: Kind,
    fields: HashMap<String, FieldDef>,
    /// A union's or interface's types, for the error that names one.
    possible: Vec<String>,
}

/// What a query is checked against: the source's types, read by [`INTROSPECTION_QUERY`].
#[derive(Debug)]
pub struct Schema {
    query_type: String,
    types: HashMap<String, TypeDef>,
}

/// Asks the source for what [`Schema`] needs: its query type, and each type's kind,
/// fields, arguments and possible types.
pub const INTROSPECTION_QUERY: &str = "query HeraldIntrospection { __schema { \
    queryType { name } \
    types { kind name possibleTypes { name } \
      fields(includeDeprecated: true) { name type { ...T } args { name defaultValue type { ...T } } } } } } \
    fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name \
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";

impl Schema {
    /// From the answer to [`INTROSPECTION_QUERY`] (the whole answer, or its `data`).
    pub fn from_introspection(answer: &Value) -> Result<Self, String> {
        let schema = answer
            .get("data")
            .unwrap_or(answer)
            .get("__schema")
            .ok_or("the answer has no `__schema`")?;
        let query_type = schema["queryType"]["name"]
            .as_str()
            .ok_or("the schema names no query type")?
            .to_owned();
        let mut types = HashMap::new();
        for ty in schema["types"]
            .as_array()
            .ok_or("the schema lists no types")?
        {
            let name = ty["name"].as_str().ok_or("a type has no name")?;
            let kind = match ty["kind"].as_str() {
                Some("SCALAR") => Kind::Scalar,
                Some("OBJECT") => Kind::Object,
                Some("INTERFACE") => Kind::Interface,
                Some("UNION") => Kind::Union,
                Some("ENUM") => Kind::Enum,
                Some("INPUT_OBJECT") => Kind::InputObject,
                other => return Err(format!("type `{name}` has kind {other:?}")),
            };
            let mut fields = HashMap::new();
            for field in ty["fields"].as_array().into_iter().flatten() {
                let field_name = field["name"].as_str().ok_or("a field has no name")?;
                let mut args = BTreeMap::new();
                for arg in field["args"].as_array().into_iter().flatten() {
                    let arg_name = arg["name"].as_str().ok_or("an argument has no name")?;
                    args.insert(
                        arg_name.to_owned(),
                        ArgDef {
                            ty: TypeRef::of_introspection(&arg["type"], 0)?,
                            has_default: !arg["defaultValue"].is_null(),
                        },
                    );
                }
                fields.insert(
                    field_name.to_owned(),
                    FieldDef {
                        args,
                        ty: TypeRef::of_introspection(&field["type"], 0)?,
                    },
                );
            }
            let possible = ty["possibleTypes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect();
            types.insert(
                name.to_owned(),
                TypeDef {
                    kind,
                    fields,
                    possible,
                },
            );
        }
        if !types.contains_key(&query_type) {
            return Err(format!(
                "the query type `{query_type}` is not among the types"
            ));
        }
        Ok(Self { query_type, types })
    }
}

/// The body's `data` from the source's answer to a query: its `data` object. An answer
/// with `errors` (even beside partial data) or without an object is the source's error.
pub fn payload_of(answer: &Value) -> Result<Map<String, Value>, String> {
    if let Some(errors) = answer.get("errors").and_then(Value::as_array)
        && !errors.is_empty()
    {
        let first = errors[0]["message"].as_str().unwrap_or("(no message)");
        let more = match errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(clip(format!("the source answered an error: {first}{more}")));
    }
    match answer.get("data") {
        Some(Value::Object(data)) => Ok(data.clone()),
        _ => Err("the source's answer has no `data` object".into()),
    }
}

/// An error's text, short enough for an attempt's log.
pub fn clip(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A query's text is at most 8192 characters, as the API's schema counts them
    /// (`maxLength`): not bytes.
    #[test]
    fn a_querys_text_is_counted_in_characters() {
        let text = |n: usize| QueryInput {
            text: format!("{{ order(id: \"1\") {{ id }} }} #{}", "é".repeat(n)),
            variables: BTreeMap::new(),
        };
        let base = text(0).text.chars().count();
        assert!(PayloadQuery::parse(text(8192 - base)).is_ok());
        let over = PayloadQuery::parse(text(8193 - base)).unwrap_err();
        assert!(over.contains("8192 characters"), "{over}");
    }

    /// A small order/invoice schema, as introspection answers it.
    fn schema() -> Schema {
        let named = |kind: &str, name: &str| json!({"kind": kind, "name": name, "ofType": null});
        let non_null = |inner: Value| json!({"kind": "NON_NULL", "name": null, "ofType": inner});
        let list = |inner: Value| json!({"kind": "LIST", "name": null, "ofType": inner});
        let field =
            |name: &str, ty: Value, args: Value| json!({"name": name, "type": ty, "args": args});
        let id = non_null(named("SCALAR", "ID"));
        let answer = json!({"data": {"__schema": {
            "queryType": {"name": "Query"},
            "types": [
                {"kind": "OBJECT", "name": "Query", "fields": [
                    field("order", named("OBJECT", "Order"), json!([{"name": "id", "type": id, "defaultValue": null}])),
                    field("invoice", named("OBJECT", "Invoice"), json!([{"name": "id", "type": id, "defaultValue": null}])),
                    field("node", named("UNION", "Node"), json!([{"name": "id", "type": id, "defaultValue": null}])),
                    field("orders", list(named("OBJECT", "Order")), json!([{"name": "first", "type": named("SCALAR", "Int"), "defaultValue": "10"}])),
                ]},
                {"kind": "OBJECT", "name": "Order", "fields": [
                    field("id", id.clone(), json!([])),
                    field("total", named("SCALAR", "Float"), json!([])),
                    field("status", named("ENUM", "Status"), json!([])),
                    field("lines", list(named("OBJECT", "Line")), json!([])),
                ]},
                {"kind": "OBJECT", "name": "Invoice", "fields": [
                    field("id", id.clone(), json!([])),
                    field("order", named("OBJECT", "Order"), json!([])),
                ]},
                {"kind": "OBJECT", "name": "Line", "fields": [field("sku", named("SCALAR", "String"), json!([]))]},
                {"kind": "UNION", "name": "Node", "possibleTypes": [{"name": "Order"}, {"name": "Invoice"}]},
                {"kind": "ENUM", "name": "Status"},
                {"kind": "SCALAR", "name": "ID"}, {"kind": "SCALAR", "name": "Int"},
                {"kind": "SCALAR", "name": "Float"}, {"kind": "SCALAR", "name": "String"},
            ]
        }}});
        Schema::from_introspection(&answer).unwrap()
    }

    fn query(text: &str, variables: &[(&str, &str)]) -> Result<PayloadQuery, String> {
        PayloadQuery::parse(QueryInput {
            text: text.into(),
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    const INVOICE: &str =
        "query($id: ID!) { invoice(id: $id) { id order { id total status lines { sku } } } }";

    #[test]
    fn a_query_on_the_schema_passes_and_binds_its_variables_from_the_event() {
        let q = query(INVOICE, &[("id", "subject.id")]).unwrap();
        q.validate(&schema()).unwrap();
        let event: Event = serde_json::from_value(json!({
            "id": "evt_1", "type": "invoice.paid", "occurred_at": "2026-12-04T00:00:00Z",
            "data": {"order": {"id": "o_9"}}, "subject": {"type": "invoice", "id": "inv_7"}
        }))
        .unwrap();
        let tenant = TenantId::parse("acme").unwrap();
        assert_eq!(
            q.bind(&event, &tenant),
            json!({"id": "inv_7"}).as_object().unwrap().clone()
        );
        let q = query(
            "query($o: ID!, $t: String, $n: Int) { order(id: $o) { id } orders(first: $n) { id } }",
            &[
                ("o", "data.order.id"),
                ("t", "tenant"),
                ("n", "data.missing.deep"),
            ],
        );
        // `$t` is declared and bound but not used.
        assert_eq!(
            q.clone().unwrap().validate(&schema()).unwrap_err(),
            "declares `$t` but never uses it"
        );
        let bound = q.unwrap().bind(&event, &tenant);
        assert_eq!(bound["o"], "o_9");
        assert_eq!(bound["t"], "acme");
        assert_eq!(bound["n"], Value::Null);
        // Fragments, inline fragments on a union, aliases and __typename.
        query(
            "query($id: ID!) { node(id: $id) { __typename ... on Order { ...O } ... on Invoice { id } } \
             first: orders { id } } fragment O on Order { id total }",
            &[("id", "subject.id")],
        )
        .unwrap()
        .validate(&schema())
        .unwrap();
    }

    #[test]
    fn stored_as_given() {
        let q = query(INVOICE, &[("id", "subject.id")]).unwrap();
        let stored = serde_json::to_value(&q).unwrap();
        assert_eq!(
            stored,
            json!({"text": INVOICE, "variables": {"id": "subject.id"}})
        );
        assert_eq!(serde_json::from_value::<PayloadQuery>(stored).unwrap(), q);
    }

    #[test]
    fn queries_that_cannot_run_say_why_before_the_schema_is_read() {
        // (query text, variables, what the refusal says)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("{ order(id: 1) { id", &[], "does not parse"),
            ("mutation { cancel { id } }", &[], "must be a query"),
            ("subscription { orders { id } }", &[], "must be a query"),
            ("{ a } { b }", &[], "one operation"),
            ("fragment F on Order { id }", &[], "holds no query"),
            (INVOICE, &[], "`$id` is required"),
            (
                INVOICE,
                &[("id", "subject.id"), ("x", "id")],
                "variables.x: the query declares no `$x`",
            ),
            (
                INVOICE,
                &[("id", "subject.name")],
                "is not a place in the event",
            ),
            (INVOICE, &[("id", "data..x")], "is not a place in the event"),
            (
                "query($a: ID, $a: ID) { order(id: $a) { id } }",
                &[],
                "declares `$a` twice",
            ),
        ];
        for (text, vars, why) in cases {
            let err = query(text, vars).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let long = format!("{{ {} }}", "id ".repeat(MAX_QUERY_LEN));
        assert!(query(&long, &[]).unwrap_err().contains("longer than"));
    }

    #[test]
    fn queries_the_schema_refuses_say_why() {
        let schema = schema();
        for (text, why) in [
            (
                "{ order(id: 1) { id totl } }",
                "`Order` has no field `totl`",
            ),
            ("{ shipments { id } }", "`Query` has no field `shipments`"),
            ("{ order { id } }", "`order` needs its argument `id`"),
            (
                "{ order(id: 1, as: 2) { id } }",
                "`order` takes no argument `as`",
            ),
            ("{ order(id: 1) }", "`order` is a Order: select its fields"),
            (
                "{ order(id: 1) { total { x } } }",
                "`total` is a Float: it has no fields",
            ),
            ("{ node(id: 1) { id } }", "`Node` is a union"),
            ("{ order(id: 1) { ... on Nope { id } } }", "no type `Nope`"),
            (
                "{ order(id: 1) { ...F } }",
                "fragment `F`, which is not defined",
            ),
            (
                "{ order(id: 1) { ...F } } fragment F on Order { ...F }",
                "spreads itself",
            ),
            (
                "{ order(id: 1) { id } } fragment F on Order { id }",
                "never spreads it",
            ),
            (
                "{ order(id: $x) { id } }",
                "`$x`, which the query does not declare",
            ),
            ("{ order(id: 1) { id @include(if: true) } }", "directives"),
        ] {
            let err = query(text, &[]).unwrap().validate(&schema).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        for (text, why) in [
            (
                "query($id: String!) { order(id: $id) { id } }",
                "`$id` is a String! but `order(id:)` takes a ID!",
            ),
            (
                "query($id: ID) { order(id: $id) { id } }",
                "`$id` is a ID but",
            ),
            (
                "query($id: Order!) { order(id: $id) { id } }",
                "not an input type",
            ),
        ] {
            let err = query(text, &[("id", "subject.id")])
                .unwrap()
                .validate(&schema)
                .unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let wide = format!("{{ order(id: 1) {{ {} }} }}", "id ".repeat(MAX_FIELDS + 1));
        assert!(
            query(&wide, &[])
                .unwrap()
                .validate(&schema)
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn a_payload_is_the_answers_data_and_errors_fail_it() {
        assert_eq!(
            payload_of(&json!({"data": {"invoice": {"id": "inv_7"}}})).unwrap(),
            json!({"invoice": {"id": "inv_7"}})
                .as_object()
                .unwrap()
                .clone()
        );
        let err = payload_of(&json!({"data": {"invoice": null}, "errors": [{"message": "no such invoice"}, {"message": "x"}]}))
            .unwrap_err();
        assert_eq!(
            err,
            "the source answered an error: no such invoice (and 1 more)"
        );
        assert!(
            payload_of(&json!({"data": null}))
                .unwrap_err()
                .contains("no `data`")
        );
        assert!(clip("é".repeat(400)).ends_with('…'));
    }
}
