//! The events Herald publishes itself, typed: a tenant's subscriptions receive them as
//! they receive the producer's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{Event, EventType};
use crate::ids::{EventId, SubscriptionId};
use crate::subscription::Subscription;

/// `subscription.disabled`: Herald disabled one of the tenant's subscriptions.
#[derive(Debug, Serialize)]
pub struct SubscriptionDisabled<'a> {
    pub subscription_id: &'a SubscriptionId,
    pub url: &'a str,
    pub reason: &'a str,
    pub disabled_at: DateTime<Utc>,
}

impl<'a> SubscriptionDisabled<'a> {
    pub const TYPE: &'static str = "subscription.disabled";

    pub fn of(subscription: &'a Subscription, reason: &'a str, at: DateTime<Utc>) -> Self {
        Self {
            subscription_id: &subscription.id,
            url: subscription.url.as_str(),
            reason,
            disabled_at: at,
        }
    }

    /// The event, with an id of its own for each disable (so a repeat of the same
    /// announcement is the same event, deduplicated like a producer's).
    pub fn event(&self) -> Event {
        let id = format!(
            "{}:{}:{}",
            Self::TYPE,
            self.subscription_id,
            self.disabled_at.timestamp_millis()
        );
        system_event(
            EventId::parse(&id).expect("a disabled event's id is a valid event id"),
            Self::TYPE,
            self,
            self.disabled_at,
        )
    }
}

/// `herald.test`: sent to one endpoint on request, to see it work.
#[derive(Debug, Serialize)]
pub struct TestEvent<'a> {
    pub message: &'static str,
    pub subscription_id: &'a SubscriptionId,
}

impl<'a> TestEvent<'a> {
    pub const TYPE: &'static str = "herald.test";

    pub fn to(subscription_id: &'a SubscriptionId) -> Self {
        Self {
            message: "A test event from Herald",
            subscription_id,
        }
    }

    /// The event, with a new id; `data` in place of the default message when given.
    pub fn event(
        &self,
        data: Option<Map<String, Value>>,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> Event {
        let mut event = system_event(EventId::generate(now, rng), Self::TYPE, self, now);
        if let Some(data) = data {
            event.data = data;
        }
        event
    }
}

/// The types Herald publishes itself.
pub const TYPES: [&str; 2] = [SubscriptionDisabled::TYPE, TestEvent::TYPE];

/// The namespace kept for Herald's own events, present and future.
pub const RESERVED_PREFIX: &str = "herald.";

/// Whether `event_type` is Herald's to publish: one of [`TYPES`] or under
/// [`RESERVED_PREFIX`]. A producer's publish of one is refused, so a receiver can trust
/// that such an event came from Herald.
pub fn is_reserved(event_type: &str) -> bool {
    TYPES.contains(&event_type) || event_type.starts_with(RESERVED_PREFIX)
}

fn system_event(id: EventId, event_type: &str, data: &impl Serialize, at: DateTime<Utc>) -> Event {
    let data = match serde_json::to_value(data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    Event {
        id,
        event_type: EventType::parse(event_type).expect("Herald's own types are valid"),
        occurred_at: at,
        data,
        subject: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn herald_keeps_its_own_types_and_namespace() {
        for reserved in [
            "subscription.disabled",
            "herald.test",
            "herald.anything.new",
        ] {
            assert!(is_reserved(reserved), "{reserved}");
        }
        for free in [
            "subscription.created",
            "order.shipped",
            "heraldry.updated",
            "test",
        ] {
            assert!(!is_reserved(free), "{free}");
        }
    }

    #[test]
    fn the_disabled_event_names_the_subscription_and_why() {
        let id = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let url = crate::subscription::url::SubscriptionUrl::parse(
            "https://hooks.example.com/in",
            &crate::subscription::url::UrlPolicy::default(),
        )
        .unwrap();
        let event = SubscriptionDisabled {
            subscription_id: &id,
            url: url.as_str(),
            reason: "failing",
            disabled_at: at,
        }
        .event();
        assert_eq!(event.event_type.as_str(), "subscription.disabled");
        assert_eq!(
            event.id.as_str(),
            "subscription.disabled:sub_01JD5Q8Z6X0000000000000000:1795348800000"
        );
        assert_eq!(event.data["subscription_id"], id.as_str());
        assert_eq!(event.data["url"], "https://hooks.example.com/in");
        assert_eq!(event.data["reason"], "failing");
        assert_eq!(event.data["disabled_at"], "2026-11-22T12:00:00Z");
    }

    #[test]
    fn the_test_event_says_what_it_is_unless_given_data() {
        let id = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        let now = Utc::now();
        let event = TestEvent::to(&id).event(None, now, &mut rand::rng());
        assert_eq!(event.event_type.as_str(), "herald.test");
        assert!(event.id.as_str().starts_with("evt_"));
        assert_eq!(event.data["message"], "A test event from Herald");
        assert_eq!(event.data["subscription_id"], id.as_str());
        let mut data = Map::new();
        data.insert("x".into(), Value::from(1));
        let given = TestEvent::to(&id).event(Some(data.clone()), now, &mut rand::rng());
        assert_eq!(given.data, data);
    }
}
