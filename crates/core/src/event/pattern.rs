//! Event-type patterns of a subscription: an exact type (`order.shipped`), a prefix
//! wildcard (`order.*` matches `order.shipped` and `order.item.added`, not `order`), or `*`.

use serde::{Deserialize, Serialize};

use crate::event::EventType;

/// Most patterns one subscription may hold.
pub const MAX_PATTERNS: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventTypePattern(String);

impl EventTypePattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw == "*" {
            return Ok(Self(raw.to_owned()));
        }
        let exact = raw.strip_suffix(".*").unwrap_or(raw);
        EventType::parse(exact)
            .map(|_| Self(raw.to_owned()))
            .map_err(|_| format!("`{raw}` is not an event type, `prefix.*` or `*`"))
    }

    pub fn matches(&self, event_type: &EventType) -> bool {
        let pattern = self.0.as_str();
        if pattern == "*" {
            return true;
        }
        match pattern.strip_suffix(".*") {
            Some(prefix) => event_type
                .as_str()
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.')),
            None => pattern == event_type.as_str(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventTypePattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EventTypePattern> for String {
    fn from(value: EventTypePattern) -> Self {
        value.0
    }
}

/// True when any pattern matches.
pub fn any_matches(patterns: &[EventTypePattern], event_type: &EventType) -> bool {
    patterns.iter().any(|p| p.matches(event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, event_type: &str) -> bool {
        EventTypePattern::parse(pattern)
            .unwrap()
            .matches(&EventType::parse(event_type).unwrap())
    }

    #[test]
    fn exact_prefix_and_star() {
        assert!(matches("order.shipped", "order.shipped"));
        assert!(!matches("order.shipped", "order.shipped.late"));
        assert!(!matches("order.shipped", "order"));
        assert!(matches("order.*", "order.shipped"));
        assert!(matches("order.*", "order.item.added"));
        assert!(!matches("order.*", "order"));
        assert!(!matches("order.*", "orders.shipped"));
        assert!(matches("*", "anything.at_all"));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "order.",
            "order.**",
            "*.shipped",
            "or der",
            "order.*.x",
            ".*",
        ] {
            assert!(EventTypePattern::parse(bad).is_err(), "{bad}");
        }
    }
}
