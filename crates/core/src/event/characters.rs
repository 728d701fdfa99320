//! The characters an event's text may hold. An accepted event travels to deliver inside a
//! delivery task, as the JSON text of an SQS message body
//! ([`DeliveryTask::to_message_body`]), and SQS takes a body only when every character of
//! it is one XML 1.0 allows: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
//! #x10000-#x10FFFF`. Of the characters outside that set, the JSON text never holds the
//! control characters below `#x20` as they are (they are written as escapes, `\u0000`,
//! `\n`), nor surrogates (no Rust string holds one): what reaches SQS raw, and is refused
//! there, is U+FFFE and U+FFFF. So those two are refused at publish, in every string of
//! an event, with the field that holds one, instead of an event accepted that no queue
//! would take.
//!
//! [`DeliveryTask::to_message_body`]: crate::delivery::DeliveryTask::to_message_body

use serde_json::{Map, Value};

use super::EventError;

/// Whether SQS takes `c` in a message body (the XML 1.0 characters).
pub fn queue_takes(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// Whether `c`, in an event's text, would reach the queue as itself and be refused there.
pub fn refused_in_text(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FFFF}')
}

fn refusal(field: &str, c: char) -> EventError {
    EventError::Invalid {
        field: field.to_owned(),
        reason: format!(
            "contains U+{:04X}, a character Herald cannot carry (text may hold any Unicode \
             character but U+FFFE and U+FFFF)",
            u32::from(c)
        ),
    }
}

/// Refuses `text` when it holds a character the queue would refuse.
pub(super) fn check_text(text: &str, field: &str) -> Result<(), EventError> {
    match text.chars().find(|c| refused_in_text(*c)) {
        Some(c) => Err(refusal(field, c)),
        None => Ok(()),
    }
}

/// Refuses `data` when one of its keys or strings, at any depth, holds a character the
/// queue would refuse; the error names where (`data.items[2].name`).
pub(super) fn check_data(data: &Map<String, Value>, field: &str) -> Result<(), EventError> {
    // Nearly every event passes: the walk that names a refused character's place (a path
    // made for every value) runs only when this one finds one.
    if data
        .iter()
        .all(|(key, value)| text_passes(key) && value_passes(value))
    {
        return Ok(());
    }
    name_refused(data, field)
}

fn text_passes(text: &str) -> bool {
    !text.chars().any(refused_in_text)
}

fn value_passes(value: &Value) -> bool {
    match value {
        Value::String(text) => text_passes(text),
        Value::Array(items) => items.iter().all(value_passes),
        Value::Object(map) => map
            .iter()
            .all(|(key, value)| text_passes(key) && value_passes(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

fn name_refused(data: &Map<String, Value>, field: &str) -> Result<(), EventError> {
    for (key, value) in data {
        // A key's own characters are named by the object that holds it.
        check_text(key, field)?;
        check_value(value, &format!("{field}.{key}"))?;
    }
    Ok(())
}

fn check_value(value: &Value, field: &str) -> Result<(), EventError> {
    match value {
        Value::String(text) => check_text(text, field),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value(item, &format!("{field}[{i}]"))),
        Value::Object(map) => name_refused(map, field),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryTask;
    use crate::event::{Event, Subject};
    use crate::ids::{EventId, SubscriptionId, TenantId};
    use serde_json::json;

    /// Every character SQS refuses that a string can hold: what the queue's body makes of
    /// each decides whether an event may carry it.
    fn refused_by_the_queue() -> Vec<char> {
        (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|c| !queue_takes(*c))
            .collect()
    }

    fn task_carrying(text: &str) -> DeliveryTask {
        let event = Event {
            id: EventId::parse("evt_1").unwrap(),
            event_type: crate::event::EventType::parse("order.shipped").unwrap(),
            occurred_at: chrono::Utc::now(),
            data: json!({ text: text, "list": [text] })
                .as_object()
                .cloned()
                .unwrap(),
            subject: Some(Subject {
                kind: text.to_owned(),
                id: text.to_owned(),
                reference: Some(text.to_owned()),
                status: Some(text.to_owned()),
                root: None,
            }),
        };
        DeliveryTask::new(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
            &event,
            chrono::Utc::now(),
        )
    }

    #[test]
    fn exactly_the_characters_the_message_body_carries_raw_and_sqs_refuses_are_refused() {
        let refused = refused_by_the_queue();
        assert_eq!(
            refused.len(),
            29 + 2,
            "controls but tab, LF and CR; U+FFFE, U+FFFF"
        );
        for c in refused {
            let body = task_carrying(&c.to_string()).to_message_body();
            let raw = body.chars().any(|b| !queue_takes(b));
            assert_eq!(raw, refused_in_text(c), "U+{:04X} in {body}", u32::from(c));
        }
        // Everything else a queue takes, escaped or not, stays takeable.
        for c in [
            '\t',
            '\n',
            '\r',
            '\u{7F}',
            '\u{85}',
            '\u{FDD0}',
            '\u{FFFD}',
            '\u{1FFFE}',
        ] {
            assert!(
                !refused_in_text(c) && queue_takes(c),
                "U+{:04X}",
                u32::from(c)
            );
            let body = task_carrying(&c.to_string()).to_message_body();
            assert!(body.chars().all(queue_takes), "U+{:04X}", u32::from(c));
        }
    }

    #[test]
    fn a_publish_is_refused_with_the_field_that_holds_one() {
        use rand::{SeedableRng, rngs::StdRng};
        let parse = |body: Value| {
            crate::event::parse_publish_body(
                body,
                chrono::Utc::now(),
                &mut StdRng::seed_from_u64(1),
            )
        };
        let cases = [
            (
                json!({"type": "a", "data": {"note": "x\u{FFFF}"}}),
                "data.note",
            ),
            (
                json!({"type": "a", "data": {}, "subject": {"type": "ORDER", "id": "\u{FFFE}"}}),
                "subject.id",
            ),
            (
                json!({"type": "a", "data": {}, "subject": {"type": "ORDER", "id": "1",
                    "root": {"type": "SHOP", "id": "2", "status": "\u{FFFF}"}}}),
                "subject.root.status",
            ),
            (
                json!({"events": [
                    {"type": "a", "data": {}},
                    {"type": "a", "data": {}, "subject": {"type": "O", "id": "1", "ref": "\u{FFFF}"}}
                ]}),
                "events[1].subject.ref",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.clone()).unwrap_err();
            assert!(
                matches!(&err, EventError::Invalid { field: f, .. } if f == field),
                "{body}: {err}"
            );
        }
        // Control characters travel escaped, so an event may hold them.
        let escaped = parse(
            json!({"type": "a", "data": {"nul": "\u{0}", "esc": "\u{1B}[0m"},
            "subject": {"type": "O", "id": "\u{1}"}}),
        );
        assert!(escaped.is_ok(), "{escaped:?}");
    }

    #[test]
    fn the_error_names_the_field_and_the_character() {
        let data = json!({"order": {"lines": [{"name": "ok"}, {"name": "bad\u{FFFF}"}]}});
        let err = check_data(data.as_object().unwrap(), "data").unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.order.lines[1].name: contains U+FFFF, a character Herald cannot carry \
             (text may hold any Unicode character but U+FFFE and U+FFFF)"
        );
        let key = json!({"nested": {"k\u{FFFE}": 1}});
        let err = check_data(key.as_object().unwrap(), "events[3].data").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("events[3].data.nested: contains U+FFFE"),
            "{err}"
        );
        let fine = json!({"nul": "a\u{0}b", "bell": "\u{7}", "emoji": "📦", "nonchar": "\u{FDD0}"});
        assert_eq!(check_data(fine.as_object().unwrap(), "data"), Ok(()));
    }
}
