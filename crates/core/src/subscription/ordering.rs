//! Strict ordering, opt-in per subscription: its deliveries (or each subject's) go out one
//! at a time in publish order, each after the previous one is delivered or finally failed.
//!
//! An ordered subscription's tasks go on the FIFO delivery queue, in a message group per
//! line: the subscription's, or one per subject of its events. SQS hands out a group's
//! messages in order and none while one of them is in flight, so a delivery waiting for
//! its retry (hidden on the queue) holds its line and no other (docs/DECISIONS.md,
//! "Ordering").

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::Event;
use crate::ids::SubscriptionId;

/// Which deliveries keep their order with each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOrder {
    /// All the subscription's deliveries: one line.
    Subscription,
    /// Each subject's deliveries: a line per subject (events without a subject share one).
    Subject,
}

impl DeliveryOrder {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "subscription" => Ok(Self::Subscription),
            "subject" => Ok(Self::Subject),
            other => Err(format!(
                "`{other}` is not an ordering: \"subscription\" (all its deliveries in \
                 publish order) or \"subject\" (each subject's)"
            )),
        }
    }

    /// The line (the FIFO message group) of `event`'s delivery to the subscription: at
    /// most 55 characters of SQS's allowed set (it takes 128). The subscription's id names
    /// it (ids are unique across tenants; a tenant id of up to 128 characters would not
    /// fit), and a subject is hashed: it is the producer's text, of any length and
    /// characters.
    pub fn line(self, subscription: &SubscriptionId, event: &Event) -> String {
        match (self, &event.subject) {
            (Self::Subject, Some(subject)) => {
                // A subject is its type and id, as supersede reads it.
                let identity = format!("{}:{}{}", subject.kind.len(), subject.kind, subject.id);
                let digest = Sha256::digest(identity.as_bytes());
                format!("{subscription}.{}", hex::encode(&digest[..12]))
            }
            _ => subscription.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn event(subject: Option<&str>) -> Event {
        Event {
            id: crate::ids::EventId::parse("e1").unwrap(),
            event_type: crate::event::EventType::parse("a.b").unwrap(),
            occurred_at: Utc::now(),
            data: Default::default(),
            subject: subject.map(|id| crate::event::Subject {
                kind: "ORDER".into(),
                id: id.into(),
                reference: None,
                status: None,
                root: None,
            }),
        }
    }

    #[test]
    fn lines_are_the_subscriptions_or_each_subjects() {
        let sub = SubscriptionId::generate(Utc::now(), &mut rand::rng());
        let whole = DeliveryOrder::Subscription.line(&sub, &event(Some("ord_1")));
        assert_eq!(whole, sub.to_string());
        assert_eq!(DeliveryOrder::Subject.line(&sub, &event(None)), whole);
        let one = DeliveryOrder::Subject.line(&sub, &event(Some("ord_1")));
        let again = DeliveryOrder::Subject.line(&sub, &event(Some("ord_1")));
        let other = DeliveryOrder::Subject.line(&sub, &event(Some("ord_2")));
        assert_eq!(one, again);
        assert_ne!(one, other);
        let long = DeliveryOrder::Subject.line(&sub, &event(Some(&"é;".repeat(5000))));
        assert!(long.len() <= 128);
        assert!(long.bytes().all(|b| b.is_ascii_graphic()), "{long}");
    }

    #[test]
    fn parses_its_two_names_only() {
        assert_eq!(DeliveryOrder::parse("subject"), Ok(DeliveryOrder::Subject));
        assert_eq!(
            DeliveryOrder::parse("subscription"),
            Ok(DeliveryOrder::Subscription)
        );
        assert!(
            DeliveryOrder::parse("fifo")
                .unwrap_err()
                .contains("subscription")
        );
    }
}
