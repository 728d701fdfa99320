//! Events as producers publish them, parsed rather than validated: an `Event` that exists
//! has a well-formed type, an object for `data` and sizes within the limits.

pub mod characters;
pub mod filter;
pub mod pattern;

use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::ids::EventId;

/// Largest serialized `data` accepted, in bytes: 1 MiB, SQS's limit on a message. Events
/// this large travel as a claim check (`crate::delivery::task`), so the limit is the
/// events table's and the API's, not the queue's.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Deepest nesting of objects and arrays accepted inside `data` (`data` itself is
/// level 1). The queue's message holds `data` two levels down and serde_json reads at
/// most 128 levels, so a deeper event would be accepted and then fail to be read by
/// deliver; 64 leaves room, and no receiver's parser is strained by it.
pub const MAX_DATA_DEPTH: usize = 64;
/// Most events accepted in one request.
pub const MAX_EVENTS_PER_REQUEST: usize = 100;
/// Longest event type.
pub const MAX_TYPE_LEN: usize = 200;
const MAX_SUBJECT_FIELD_LEN: usize = 256;

/// A dot-separated type such as `order.shipped`: words of `[A-Za-z0-9_]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventType(String);

impl EventType {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_TYPE_LEN {
            return Err(format!("must be 1 to {MAX_TYPE_LEN} characters"));
        }
        let ok = raw.split('.').all(|word| {
            !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be dot-separated words of letters, digits and underscores, like `order.shipped`".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl TryFrom<String> for EventType {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EventType> for String {
    fn from(value: EventType) -> Self {
        value.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The entity an event is about (seed 002's entity and root entity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Box<Subject>>,
}

/// An accepted event, as stored and as carried in delivery tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub data: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
}

impl Event {
    /// Orders events about one subject: by time, then id, as text that sorts the same way.
    pub fn order_key(&self) -> String {
        format!(
            "{}#{}",
            self.occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.id
        )
    }

    /// Whether `newest`, the order key of the newest event recorded about this event's
    /// subject, supersedes this event: later, and another event. This event's own id
    /// under a later time is this event published again (a repeat whose `occurred_at`
    /// defaulted to its own time, as recorded before repeats carried the event as first
    /// accepted), never a newer one.
    pub fn superseded_by(&self, newest: &str) -> bool {
        // An order key is `<time>#<id>`, and neither part holds a `#`.
        let newest_id = newest.split_once('#').map(|(_, id)| id);
        newest > self.order_key().as_str() && newest_id != Some(self.id.as_str())
    }

    /// A digest of what the producer said (type, data, subject), so a second publish of
    /// the same id with different content is told apart from a retry.
    ///
    /// The digest is of `["<type>",<data>,<subject>]` as compact JSON, written straight
    /// into the hash: neither a copy of `data` nor its text is made (for a 1 MiB event
    /// both were megabytes, at every publish and every claim check read back).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        use std::io::Write;
        let mut hashing = std::io::BufWriter::with_capacity(8192, Hashing(Sha256::new()));
        // The subject as a JSON value, as it always was: its keys in the map's order, not
        // its fields'. It is small; `data` is a map already.
        let subject = serde_json::to_value(&self.subject).unwrap_or_default();
        // Writing into a hash cannot fail, nor can serializing JSON values.
        let _ = serde_json::to_writer(
            &mut hashing,
            &(self.event_type.as_str(), &self.data, &subject),
        );
        let _ = hashing.flush();
        let (Hashing(sha), _) = hashing.into_parts();
        hex::encode(sha.finalize())
    }
}

/// A SHA-256 being fed through `std::io::Write`.
struct Hashing(sha2::Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.0, bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `data` (named `field` in an error) can travel as an event's data: at most
/// [`MAX_DATA_BYTES`] as JSON, nested at most [`MAX_DATA_DEPTH`] deep, and no character
/// the queue refuses. A publish and a test event are held to the same.
pub fn check_data(data: &Map<String, Value>, field: &str) -> Result<(), EventError> {
    let size = data_bytes(data);
    if size > MAX_DATA_BYTES {
        return Err(EventError::TooLarge {
            field: field.to_owned(),
            size,
            limit: MAX_DATA_BYTES,
            unit: "bytes",
        });
    }
    if !within_depth(data.values(), MAX_DATA_DEPTH - 1) {
        return Err(EventError::invalid(
            field,
            format!("is nested more than {MAX_DATA_DEPTH} objects or arrays deep"),
        ));
    }
    characters::check_data(data, field)
}

/// Whether `values` hold no object or array nested more than `levels` deep.
fn within_depth<'a>(values: impl Iterator<Item = &'a Value>, levels: usize) -> bool {
    values.into_iter().all(|value| match value {
        Value::Object(map) => levels > 0 && within_depth(map.values(), levels - 1),
        Value::Array(items) => levels > 0 && within_depth(items.iter(), levels - 1),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
    })
}

/// How long `data` is serialized as compact JSON, counted as it is written (no text made):
/// what the 1 MiB limit and the inline bound of a task (`DeliveryTask`) are measured in.
pub fn data_bytes(data: &Map<String, Value>) -> usize {
    json_bytes(data)
}

/// How long `value` is serialized as compact JSON, counted as it is written (no text
/// made); `usize::MAX` when it does not serialize.
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> usize {
    let mut counted = Counting(0);
    serde_json::to_writer(&mut counted, value).map_or(usize::MAX, |()| counted.0)
}

/// Counts the bytes written through it, keeping none.
struct Counting(usize);

impl std::io::Write for Counting {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a producer sends for one event, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(default)]
    occurred_at: Option<String>,
    data: Option<Value>,
    #[serde(default)]
    subject: Option<Value>,
}

/// Why an event was refused. `field` names the offending input for the caller.
#[derive(Debug, Error, PartialEq)]
pub enum EventError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{field}: is {size} {unit}, more than the limit of {limit} {unit}")]
    TooLarge {
        field: String,
        size: usize,
        limit: usize,
        /// What `size` and `limit` count: `bytes` or `events`.
        unit: &'static str,
    },
}

impl EventError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses a publish body: one event object, or `{"events": [...]}` of 1..=100.
pub fn parse_publish_body(
    body: Value,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<Vec<Event>, EventError> {
    let Value::Object(mut obj) = body else {
        return Err(EventError::invalid("body", "must be a JSON object"));
    };
    if let Some(events) = obj.remove("events") {
        if !obj.is_empty() {
            return Err(EventError::invalid(
                "body",
                "a batch has only the field `events`",
            ));
        }
        let Value::Array(list) = events else {
            return Err(EventError::invalid("events", "must be an array"));
        };
        if list.is_empty() {
            return Err(EventError::invalid(
                "events",
                "must hold at least one event",
            ));
        }
        if list.len() > MAX_EVENTS_PER_REQUEST {
            return Err(EventError::TooLarge {
                field: "events".into(),
                size: list.len(),
                limit: MAX_EVENTS_PER_REQUEST,
                unit: "events",
            });
        }
        let parsed = list
            .into_iter()
            .enumerate()
            .map(|(i, raw)| parse_event(raw, &format!("events[{i}]."), now, rng))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for (i, event) in parsed.iter().enumerate() {
            if !seen.insert(&event.id) {
                return Err(EventError::invalid(
                    format!("events[{i}].id"),
                    "appears twice in the batch",
                ));
            }
        }
        Ok(parsed)
    } else {
        Ok(vec![parse_event(Value::Object(obj), "", now, rng)?])
    }
}

fn parse_event(
    raw: Value,
    at: &str,
    now: DateTime<Utc>,
    rng: &mut impl Rng,
) -> Result<Event, EventError> {
    // `data` and `subject` are taken out as they are: deserialized into `RawEvent` from a
    // `Value`, each would be built again node by node (megabytes for a large event).
    let (data, subject, rest) = match raw {
        Value::Object(mut fields) => {
            // `"data": null` is no data, as serde reads an `Option`.
            let data = fields.remove("data").filter(|data| !data.is_null());
            let subject = fields.remove("subject");
            (data, subject, Value::Object(fields))
        }
        other => (None, None, other),
    };
    let mut raw: RawEvent = serde_json::from_value(rest)
        .map_err(|e| EventError::invalid(format!("{at}event"), e.to_string()))?;
    raw.data = data;
    raw.subject = subject;
    let id = match raw.id {
        Some(id) => EventId::parse(&id).ok_or_else(|| {
            EventError::invalid(
                format!("{at}id"),
                "must be 1 to 128 characters of letters, digits, `_`, `-`, `.` or `:`, \
                 not dots alone",
            )
        })?,
        None => EventId::generate(now, rng),
    };
    let event_type = raw
        .event_type
        .ok_or_else(|| EventError::invalid(format!("{at}type"), "is required"))
        .and_then(|t| {
            EventType::parse(&t).map_err(|r| EventError::invalid(format!("{at}type"), r))
        })?;
    if crate::system_events::is_reserved(event_type.as_str()) {
        return Err(EventError::invalid(
            format!("{at}type"),
            format!(
                "`{}` is Herald's own event type (Herald's types are `herald.*` and `{}`):                  receivers trust them to come from Herald, so producers cannot publish them",
                event_type.as_str(),
                crate::system_events::SubscriptionDisabled::TYPE
            ),
        ));
    }
    let occurred_at = match raw.occurred_at {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map_err(|_| {
                EventError::invalid(format!("{at}occurred_at"), "must be an RFC 3339 timestamp")
            })?
            .with_timezone(&Utc),
        None => now,
    };
    let data = match raw.data {
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(EventError::invalid(
                format!("{at}data"),
                "must be a JSON object",
            ));
        }
        None => return Err(EventError::invalid(format!("{at}data"), "is required")),
    };
    check_data(&data, &format!("{at}data"))?;
    let subject = match raw.subject {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_subject(value, &format!("{at}subject"), 0)?),
    };
    Ok(Event {
        id,
        event_type,
        occurred_at,
        data,
        subject,
    })
}

fn parse_subject(value: Value, field: &str, depth: usize) -> Result<Subject, EventError> {
    let subject: Subject =
        serde_json::from_value(value).map_err(|e| EventError::invalid(field, e.to_string()))?;
    let texts = [
        Some(&subject.kind),
        Some(&subject.id),
        subject.reference.as_ref(),
        subject.status.as_ref(),
    ];
    for (name, text) in [
        ("type", Some(&subject.kind)),
        ("id", Some(&subject.id)),
        ("ref", subject.reference.as_ref()),
        ("status", subject.status.as_ref()),
    ] {
        if let Some(text) = text {
            characters::check_text(text, &format!("{field}.{name}"))?;
        }
    }
    if subject.kind.is_empty() || subject.id.is_empty() {
        return Err(EventError::invalid(
            field,
            "`type` and `id` must not be empty",
        ));
    }
    if texts
        .into_iter()
        .flatten()
        .any(|t| t.chars().count() > MAX_SUBJECT_FIELD_LEN)
    {
        return Err(EventError::invalid(
            field,
            format!("fields are at most {MAX_SUBJECT_FIELD_LEN} characters"),
        ));
    }
    if let Some(root) = &subject.root {
        if depth > 0 {
            return Err(EventError::invalid(
                field,
                "a root subject has no root of its own",
            ));
        }
        parse_subject(
            serde_json::to_value(root).unwrap_or_default(),
            &format!("{field}.root"),
            depth + 1,
        )?;
    }
    Ok(subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{SeedableRng, rngs::StdRng};
    use serde_json::json;

    fn parse(body: Value) -> Result<Vec<Event>, EventError> {
        parse_publish_body(body, Utc::now(), &mut StdRng::seed_from_u64(3))
    }

    /// A subject's fields are at most 256 characters, as the API's schema counts them
    /// (`maxLength`): not bytes.
    #[test]
    fn subject_fields_are_counted_in_characters() {
        let subject = |text: String| {
            parse(
                json!({"type": "a.b", "data": {}, "subject": {"type": "t", "id": "x", "ref": text}}),
            )
        };
        assert!(subject("é".repeat(256)).is_ok());
        assert!(subject("é".repeat(257)).is_err());
        assert!(subject("e".repeat(257)).is_err());
    }

    /// An id of dots alone is refused by its reason: it meets the characters' rule, and
    /// would be a dot segment in `GET /v1/events/{id}`.
    #[test]
    fn an_id_of_dots_alone_is_refused_saying_why() {
        for dots in [".", ".."] {
            let err = parse(json!({"id": dots, "type": "a.b", "data": {}})).unwrap_err();
            assert_eq!(
                err.to_string(),
                "id: must be 1 to 128 characters of letters, digits, `_`, `-`, `.` or `:`, \
                 not dots alone"
            );
            let err =
                parse(json!({"events": [{"id": dots, "type": "a.b", "data": {}}]})).unwrap_err();
            assert!(err.to_string().starts_with("events[0].id: "), "{err}");
        }
        assert!(parse(json!({"id": "..a", "type": "a.b", "data": {}})).is_ok());
    }

    #[test]
    fn one_event_gets_an_id_and_a_time() {
        let events = parse(json!({"type": "order.shipped", "data": {"id": 1}})).unwrap();
        assert_eq!(events.len(), 1);
        assert!(events[0].id.as_str().starts_with("evt_"));
        assert_eq!(events[0].event_type.as_str(), "order.shipped");
    }

    /// `{"k": {"k": … 1}}` with `levels` objects, `data` itself the first.
    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!({ "k": value });
        }
        value
    }

    #[test]
    fn data_nested_up_to_the_limit_is_accepted_and_read_back_from_its_message() {
        use crate::delivery::{DeliveryTask, decode_message};
        use crate::ids::{SubscriptionId, TenantId};
        for body in [
            json!({"type": "a", "data": nested(MAX_DATA_DEPTH)}),
            json!({"events": [{"type": "a", "data": nested(MAX_DATA_DEPTH)}]}),
        ] {
            let event = parse(body).unwrap().remove(0);
            let task = DeliveryTask::new(
                &TenantId::parse("acme").unwrap(),
                &SubscriptionId::generate(Utc::now(), &mut StdRng::seed_from_u64(1)),
                &event,
                Utc::now(),
            );
            let read = decode_message(&task.to_message_body()).unwrap();
            assert_eq!(read.event.data, event.data);
        }
        // One level more is refused, by name, in a batch too.
        let err = parse(json!({"type": "a", "data": nested(MAX_DATA_DEPTH + 1)})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data: is nested more than 64 objects or arrays deep"
        );
        let deep_array =
            json!({"type": "a", "data": {"k": nested(MAX_DATA_DEPTH - 1).to_string()}});
        assert!(parse(deep_array).is_ok(), "a string is not nesting");
        let mut arrays = json!([1]);
        for _ in 0..MAX_DATA_DEPTH {
            arrays = json!([arrays]);
        }
        let err = parse(json!({"events": [{"type": "a", "data": {"k": arrays}}]})).unwrap_err();
        assert!(
            err.to_string().starts_with("events[0].data: is nested"),
            "{err}"
        );
    }

    #[test]
    fn a_batch_keeps_producer_ids_and_refuses_repeats() {
        let events = parse(json!({"events": [
            {"id": "a", "type": "x", "data": {}},
            {"id": "b", "type": "y.z", "data": {}, "subject": {"type": "ORDER", "id": "1", "root": {"type": "ORDER", "id": "1"}}}
        ]}))
        .unwrap();
        assert_eq!(events[1].subject.as_ref().unwrap().kind, "ORDER");
        let err = parse(json!({"events": [{"id": "a", "type": "x", "data": {}}, {"id": "a", "type": "x", "data": {}}]}))
            .unwrap_err();
        assert_eq!(err.to_string(), "events[1].id: appears twice in the batch");
    }

    #[test]
    fn bad_events_name_the_field() {
        let cases = [
            (json!({"data": {}}), "type: is required"),
            (
                json!({"type": "order..shipped", "data": {}}),
                "type: must be dot-separated",
            ),
            (
                json!({"type": "a", "data": [1]}),
                "data: must be a JSON object",
            ),
            (json!({"type": "a"}), "data: is required"),
            (
                json!({"type": "a", "data": {}, "extra": 1}),
                "event: unknown field `extra`",
            ),
            (
                json!({"type": "a", "data": {}, "occurred_at": "yesterday"}),
                "occurred_at: must be an RFC 3339",
            ),
            (json!({"events": []}), "events: must hold at least one"),
            (json!([1]), "body: must be a JSON object"),
        ];
        for (body, expected) in cases {
            let err = parse(body.clone()).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{body}: {err}");
        }
    }

    #[test]
    fn fingerprints_are_the_digest_of_the_same_text_as_they_always_were() {
        // Kept fingerprints are compared with new publishes of the same id, so the digest
        // written straight into the hash must be the one of the text made first.
        use sha2::{Digest, Sha256};
        let made_first = |e: &Event| {
            let content = json!([e.event_type.as_str(), e.data, e.subject]);
            hex::encode(Sha256::digest(content.to_string().as_bytes()))
        };
        let long = "ñ€\"\n\u{1F600}".repeat(5000);
        let bodies = [
            json!({"type": "a", "data": {}}),
            json!({"type": "order.paid", "data": {"x": 1, "y": -2.5e-7, "z": [true, null, {"é": "\t"}]}}),
            json!({"type": "b", "data": {"note": long}, "subject": {"type": "ORDER", "id": "1", "root": {"type": "SHOP", "id": "9"}}}),
            json!({"type": "c.d", "data": {"big": 12345678901234567_u64, "f": 0.1, "nested": {"a": {"b": {"c": []}}}}, "subject": {"type": "USER", "id": "u_1"}}),
        ];
        for body in bodies {
            let event = parse(body.clone()).unwrap().remove(0);
            assert_eq!(event.fingerprint(), made_first(&event), "{body}");
        }
    }

    #[test]
    fn only_another_event_recorded_later_supersedes_one() {
        let at = |id: &str, time: &str| {
            parse(json!({"id": id, "type": "a", "data": {}, "occurred_at": time}))
                .unwrap()
                .remove(0)
        };
        let event = at("e_1", "2026-11-22T12:00:00Z");
        let key = |id: &str, time: &str| at(id, time).order_key();
        assert!(event.superseded_by(&key("e_2", "2026-11-22T12:00:01Z")));
        // At the same time, by id.
        assert!(event.superseded_by(&key("e_2", "2026-11-22T12:00:00Z")));
        assert!(!event.superseded_by(&key("e_0", "2026-11-22T12:00:00Z")));
        assert!(!event.superseded_by(&key("e_2", "2026-11-22T11:59:59Z")));
        // Itself, recorded now or at a later time.
        assert!(!event.superseded_by(&event.order_key()));
        assert!(!event.superseded_by(&key("e_1", "2026-11-22T12:01:00Z")));
    }

    #[test]
    fn fingerprints_ignore_generated_fields_only() {
        let a = parse(json!({"id": "e", "type": "a", "data": {"x": 1}}))
            .unwrap()
            .remove(0);
        let b = parse(json!({"id": "e", "type": "a", "data": {"x": 1}, "occurred_at": "2024-01-01T00:00:00Z"})).unwrap().remove(0);
        let c = parse(json!({"id": "e", "type": "a", "data": {"x": 2}}))
            .unwrap()
            .remove(0);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn limits_are_enforced() {
        // `{"s":"…"}` is the string and 8 bytes: the largest that fits, then one more.
        let fits = "x".repeat(MAX_DATA_BYTES - 8);
        assert!(parse(json!({"type": "a", "data": {"s": fits}})).is_ok());
        let big = "x".repeat(MAX_DATA_BYTES - 7);
        let refused = parse(json!({"type": "a", "data": {"s": big}})).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "data: is 1048577 bytes, more than the limit of 1048576 bytes"
        );
        let many: Vec<Value> = (0..101)
            .map(|i| json!({"id": i.to_string(), "type": "a", "data": {}}))
            .collect();
        assert_eq!(
            parse(json!({"events": many})).unwrap_err().to_string(),
            "events: is 101 events, more than the limit of 100 events"
        );
    }
}
