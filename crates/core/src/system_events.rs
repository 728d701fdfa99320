//! The events Herald publishes itself, typed: a tenant's subscriptions receive them as
//! they receive the producer's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{Event, EventType};
use crate::ids::{EventId, SubscriptionId};
use crate::subscription::{Subscription, SubscriptionStatus};

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

    /// The announcement of the disabling `subscription` shows as stored (its reason and
    /// time, as the store recorded them): None when it is not disabled. Whoever makes it,
    /// and however often, one disabling is one announcement.
    pub fn of(subscription: &'a Subscription) -> Option<Self> {
        if subscription.status != SubscriptionStatus::Disabled {
            return None;
        }
        Some(Self {
            subscription_id: &subscription.id,
            url: subscription.url.as_str(),
            reason: subscription.disabled_reason.as_deref().unwrap_or_default(),
            disabled_at: subscription.disabled_at?,
        })
    }

    /// The event, with an id of its own for each disabling, made of the subscription's id
    /// and the recorded time of the disabling: a repeat of the announcement is the same
    /// event, deduplicated like a producer's (the same tasks, under the same delivery
    /// ids), and never a second notification.
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

    fn subscription() -> Subscription {
        let url = crate::subscription::url::SubscriptionUrl::parse(
            "https://hooks.example.com/in",
            &crate::subscription::url::UrlPolicy::default(),
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        serde_json::from_value(serde_json::json!({
            "tenant": "acme",
            "id": "sub_01JD5Q8Z6X0000000000000000",
            "url": url,
            "event_types": ["order.*"],
            "secrets": [],
            "status": "active",
            "version": 1,
            "created_at": at,
            "updated_at": at,
        }))
        .unwrap()
    }

    #[test]
    fn the_disabled_event_names_the_subscription_and_why() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut subscription = subscription();
        assert!(
            SubscriptionDisabled::of(&subscription).is_none(),
            "an active subscription has no disabling to announce"
        );
        subscription.disable("failing", at);
        let event = SubscriptionDisabled::of(&subscription).unwrap().event();
        assert_eq!(event.event_type.as_str(), "subscription.disabled");
        assert_eq!(
            event.id.as_str(),
            "subscription.disabled:sub_01JD5Q8Z6X0000000000000000:1795348800000"
        );
        assert_eq!(event.data["subscription_id"], subscription.id.as_str());
        assert_eq!(event.data["url"], "https://hooks.example.com/in");
        assert_eq!(event.data["reason"], "failing");
        assert_eq!(event.data["disabled_at"], "2026-11-22T12:00:00Z");
        assert_eq!(event.occurred_at, at);
    }

    #[test]
    fn one_disabling_is_one_event_whoever_announces_it_and_when() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut disabled = subscription();
        disabled.disable("the endpoint answered 410 Gone", at);
        // Announced again later, from another read of the stored subscription: the same
        // event, byte for byte (its fingerprint too), so publishing it again is a repeat.
        let again = disabled.clone();
        let (first, second) = (
            SubscriptionDisabled::of(&disabled).unwrap().event(),
            SubscriptionDisabled::of(&again).unwrap().event(),
        );
        assert_eq!(first.id, second.id);
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.occurred_at, second.occurred_at);

        // Re-enabled and disabled again: another disabling, another event.
        let mut later = disabled.clone();
        later.enable();
        later.disable(
            "the endpoint answered 410 Gone",
            at + chrono::Duration::days(1),
        );
        assert_ne!(
            SubscriptionDisabled::of(&later).unwrap().event().id,
            first.id
        );
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
