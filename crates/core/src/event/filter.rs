//! A subscription's optional filter, checked after its event-type patterns match.
//!
//! A filter is a JSON object whose keys are dotted paths into the event (`type`,
//! `subject.type`, `subject.status`, `data.<field>…`) and whose values are the value that
//! path must hold, or an array of accepted values. Every key must match (AND); within an
//! array any value may match (OR). A path that is absent never matches.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;

/// Most conditions one filter may hold.
pub const MAX_CONDITIONS: usize = 20;
const MAX_FILTER_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct EventFilter(Map<String, Value>);

impl TryFrom<Map<String, Value>> for EventFilter {
    type Error = String;

    fn try_from(conditions: Map<String, Value>) -> Result<Self, Self::Error> {
        if conditions.is_empty() {
            return Err("a filter needs at least one condition".into());
        }
        if conditions.len() > MAX_CONDITIONS {
            return Err(format!("a filter has at most {MAX_CONDITIONS} conditions"));
        }
        if serde_json::to_vec(&conditions).map_or(true, |b| b.len() > MAX_FILTER_BYTES) {
            return Err(format!("a filter is at most {MAX_FILTER_BYTES} bytes"));
        }
        for (path, expected) in &conditions {
            let root = path.split('.').next().unwrap_or_default();
            let well_formed = path.split('.').all(|s| !s.is_empty());
            if !well_formed
                || !matches!(root, "type" | "subject" | "data")
                || (root == "type" && path != "type")
            {
                return Err(format!(
                    "`{path}` is not a path: use `type`, `subject.<field>` or `data.<field>`"
                ));
            }
            let scalar = |v: &Value| !v.is_object() && !v.is_array();
            let ok = match expected {
                Value::Array(options) => !options.is_empty() && options.iter().all(scalar),
                other => scalar(other),
            };
            if !ok {
                return Err(format!(
                    "`{path}` must be a string, number, boolean or null, or a non-empty array of them"
                ));
            }
        }
        Ok(Self(conditions))
    }
}

impl From<EventFilter> for Map<String, Value> {
    fn from(value: EventFilter) -> Self {
        value.0
    }
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        self.0.iter().all(|(path, expected)| {
            let actual = lookup(event, path);
            match (actual, expected) {
                (None, _) => false,
                (Some(actual), Value::Array(options)) => options.contains(&actual),
                (Some(actual), expected) => *expected == *actual,
            }
        })
    }
}

/// The value at `path` in `event`. Inside `data` it is the event's own value, not a
/// copy: a filter runs for every subscription an event's type matches, on events of up
/// to 1 MiB, and a condition compares one scalar.
fn lookup<'a>(event: &'a Event, path: &str) -> Option<Cow<'a, Value>> {
    let mut parts = path.split('.');
    match parts.next()? {
        "type" => Some(Cow::Owned(Value::String(
            event.event_type.as_str().to_owned(),
        ))),
        "subject" => {
            let mut current = serde_json::to_value(event.subject.as_ref()?).ok()?;
            for part in parts {
                current = current.get_mut(part)?.take();
            }
            Some(Cow::Owned(current))
        }
        "data" => {
            let mut current = event.data.get(parts.next()?)?;
            for part in parts {
                current = current.get(part)?;
            }
            Some(Cow::Borrowed(current))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::ids::EventId;
    use serde_json::json;

    fn event(data: Value) -> Event {
        Event {
            id: EventId::parse("e1").unwrap(),
            event_type: EventType::parse("order.shipped").unwrap(),
            occurred_at: chrono::Utc::now(),
            data: data.as_object().unwrap().clone(),
            subject: serde_json::from_value(
                json!({"type": "ORDER", "id": "9", "status": "SHIPPED"}),
            )
            .ok(),
        }
    }

    fn filter(value: Value) -> Result<EventFilter, String> {
        EventFilter::try_from(value.as_object().unwrap().clone())
    }

    #[test]
    fn conditions_and_alternatives() {
        let e = event(json!({"total": 10, "customer": {"tier": "gold"}}));
        assert!(
            filter(json!({"data.customer.tier": "gold", "subject.type": "ORDER"}))
                .unwrap()
                .matches(&e)
        );
        assert!(filter(json!({"data.total": [5, 10]})).unwrap().matches(&e));
        assert!(!filter(json!({"data.total": 11})).unwrap().matches(&e));
        assert!(!filter(json!({"data.missing": null})).unwrap().matches(&e));
        assert!(
            filter(json!({"type": "order.shipped"}))
                .unwrap()
                .matches(&e)
        );
    }

    /// A path names one scalar: an object or array there, `data` itself, or a step into
    /// an array never matches; a null that is there matches `null`.
    #[test]
    fn a_path_reaches_a_scalar_or_matches_nothing() {
        let e = event(json!({"customer": {"tier": "gold"}, "items": ["a"], "note": null}));
        for (conditions, matched) in [
            (json!({"data.customer": "gold"}), false),
            (json!({"data": "gold"}), false),
            (json!({"data.items": "a"}), false),
            (json!({"data.items.0": "a"}), false),
            (json!({"data.customer.tier.more": "gold"}), false),
            (json!({"data.note": null}), true),
            (json!({"data.note": [null, 1]}), true),
            (json!({"subject.status": ["SHIPPED", "PAID"]}), true),
            (json!({"subject.status": "PAID"}), false),
        ] {
            assert_eq!(
                filter(conditions.clone()).unwrap().matches(&e),
                matched,
                "{conditions}"
            );
        }
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            json!({}),
            json!({"data..x": 1}),
            json!({"other": 1}),
            json!({"data.x": {"a": 1}}),
            json!({"data.x": []}),
            json!({"type.x": 1}),
        ] {
            assert!(filter(bad.clone()).is_err(), "{bad}");
        }
    }
}
