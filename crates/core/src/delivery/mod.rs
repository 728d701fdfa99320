//! Deliveries: the task that travels on the queue, the record kept in the ledger, and the
//! attempts made.

pub mod decide;
pub mod retry;
pub mod settings;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Event;
use crate::ids::{DeliveryId, SubscriptionId, TenantId};

/// One message on the delivery queue. Versioned and tagged so that a deployment can
/// read what the previous one wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueMessage {
    /// Deliver `event` to one subscription.
    #[serde(rename = "deliver.v1")]
    DeliverV1(DeliveryTask),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub tenant: TenantId,
    pub subscription_id: SubscriptionId,
    pub event: Event,
    /// A manual redelivery: sent even if the delivery already succeeded or failed.
    #[serde(default)]
    pub forced: bool,
}

impl DeliveryTask {
    /// The task for `event`, accepted at `accepted_at`, at one subscription.
    pub fn new(
        tenant: &TenantId,
        subscription_id: &SubscriptionId,
        event: &Event,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        Self {
            delivery_id: DeliveryId::derive(tenant, &event.id, subscription_id, accepted_at),
            tenant: tenant.clone(),
            subscription_id: subscription_id.clone(),
            event: event.clone(),
            forced: false,
        }
    }

    pub fn to_message_body(&self) -> String {
        serde_json::to_string(&QueueMessage::DeliverV1(self.clone())).unwrap_or_default()
    }
}

#[derive(Debug, Error)]
#[error("not a Herald delivery task: {0}")]
pub struct MalformedTask(String);

/// Decodes a queue message body. Anything that is not a known, well-formed message is
/// malformed and goes to the dead-letter queue, never back on the queue.
pub fn decode_message(body: &str) -> Result<DeliveryTask, MalformedTask> {
    match serde_json::from_str::<QueueMessage>(body) {
        Ok(QueueMessage::DeliverV1(task)) => {
            if !task
                .delivery_id
                .belongs_to(&task.tenant, &task.event.id, &task.subscription_id)
            {
                return Err(MalformedTask(
                    "delivery_id does not belong to this tenant, event and subscription".into(),
                ));
            }
            Ok(task)
        }
        Err(e) => Err(MalformedTask(e.to_string())),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivering,
    Delivered,
    Failed,
    Skipped,
    /// Not sent: a newer event about the same subject was queued for this subscription.
    Superseded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Delivering,
            Self::Delivered,
            Self::Failed,
            Self::Skipped,
            Self::Superseded,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// A delivery in a final state is not attempted again unless forced.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Failed | Self::Skipped | Self::Superseded
        )
    }
}

/// Stable codes for attempts that got no HTTP answer, or an answer that is not success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptError {
    /// The answer was not a 2xx (the status is recorded beside).
    #[serde(rename = "E_HTTP")]
    Http,
    /// A 3xx: redirects are never followed.
    #[serde(rename = "E_REDIRECT")]
    Redirect,
    #[serde(rename = "E_TIMEOUT")]
    Timeout,
    #[serde(rename = "E_CONNECT")]
    Connect,
    #[serde(rename = "E_DNS")]
    Dns,
    #[serde(rename = "E_TLS")]
    Tls,
    /// The URL or the address it resolved to is not allowed.
    #[serde(rename = "E_SSRF")]
    Forbidden,
    #[serde(rename = "E_IO")]
    Io,
}

impl AttemptError {
    pub fn code(self) -> &'static str {
        match self {
            Self::Http => "E_HTTP",
            Self::Redirect => "E_REDIRECT",
            Self::Timeout => "E_TIMEOUT",
            Self::Connect => "E_CONNECT",
            Self::Dns => "E_DNS",
            Self::Tls => "E_TLS",
            Self::Forbidden => "E_SSRF",
            Self::Io => "E_IO",
        }
    }
}

/// Whether a delivery's copy for the dead-letter queue is still to be sent. Only a
/// delivery whose retry window is spent owes one; a record without the mark owes none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterMark {
    /// Recorded failed with the window spent; its copy is not yet known to be sent.
    Owed,
    /// Its copy is in the dead-letter queue.
    Sent,
}

impl DeadLetterMark {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owed => "owed",
            Self::Sent => "sent",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Owed, Self::Sent]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

/// One attempt, as kept in the attempt log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    pub latency_ms: u64,
    /// The first bytes of the answer, or the error's description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

impl Attempt {
    /// Attempt `number`, made at `at`, as its outcome records it: the status (a non-2xx
    /// is `E_HTTP`, a 3xx `E_REDIRECT`), or the error and its detail.
    pub fn of(
        number: u32,
        at: DateTime<Utc>,
        forced: bool,
        outcome: &crate::ports::SendOutcome,
    ) -> Self {
        use crate::ports::SendOutcome;
        match outcome {
            SendOutcome::Answered {
                status,
                excerpt,
                latency,
                ..
            } => Attempt {
                number,
                at,
                status: Some(*status),
                error: match status {
                    200..=299 => None,
                    300..=399 => Some(AttemptError::Redirect),
                    _ => Some(AttemptError::Http),
                },
                latency_ms: latency.as_millis() as u64,
                response: excerpt.clone(),
                forced,
            },
            SendOutcome::Failed {
                error,
                detail,
                latency,
            } => Attempt {
                number,
                at,
                status: None,
                error: Some(*error),
                latency_ms: latency.as_millis() as u64,
                response: detail.clone(),
                forced,
            },
        }
    }

    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A delivery as the ledger holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub id: DeliveryId,
    pub tenant: TenantId,
    pub subscription_id: SubscriptionId,
    pub event_id: crate::ids::EventId,
    pub event_type: String,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    /// When the delivery's event was accepted (the time in its id): the attempt log's order.
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Kept for deliver alone (not shown by the API): whether the dead letter of a
    /// delivery whose window is spent is still owed, so a copy of its message that comes
    /// back after the dead letter was refused sends it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterMark>,
}

impl DeliveryRecord {
    pub fn attempt_count(&self) -> u32 {
        self.attempts.len() as u32
    }

    /// A failed delivery whose copy for the dead-letter queue is still to be sent.
    pub fn owes_dead_letter(&self) -> bool {
        self.state == DeliveryState::Failed && self.dead_letter == Some(DeadLetterMark::Owed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::ids::EventId;

    fn task() -> DeliveryTask {
        let tenant = TenantId::parse("acme").unwrap();
        let sub = SubscriptionId::parse("sub_01HZZZZZZZZZZZZZZZZZZZZZZZ").unwrap();
        let event = Event {
            id: EventId::parse("e1").unwrap(),
            event_type: EventType::parse("a.b").unwrap(),
            occurred_at: Utc::now(),
            data: Default::default(),
            subject: None,
        };
        DeliveryTask::new(&tenant, &sub, &event, Utc::now())
    }

    #[test]
    fn tasks_round_trip_through_the_queue_format() {
        let task = task();
        let body = task.to_message_body();
        assert!(body.contains(r#""kind":"deliver.v1""#));
        assert_eq!(decode_message(&body).unwrap(), task);
    }

    #[test]
    fn every_state_parses_back() {
        let all = [
            DeliveryState::Pending,
            DeliveryState::Delivering,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Skipped,
            DeliveryState::Superseded,
        ];
        for state in all {
            assert_eq!(DeliveryState::parse(state.as_str()), Some(state));
            let json = serde_json::to_value(state).unwrap();
            assert_eq!(json, serde_json::Value::String(state.as_str().into()));
        }
    }

    #[test]
    fn every_dead_letter_mark_parses_back() {
        for mark in [DeadLetterMark::Owed, DeadLetterMark::Sent] {
            assert_eq!(DeadLetterMark::parse(mark.as_str()), Some(mark));
            let json = serde_json::to_value(mark).unwrap();
            assert_eq!(json, serde_json::Value::String(mark.as_str().into()));
        }
        assert_eq!(DeadLetterMark::parse("lost"), None);
    }

    #[test]
    fn malformed_and_forged_tasks_are_refused() {
        assert!(decode_message("not json").is_err());
        assert!(decode_message(r#"{"kind":"deliver.v9"}"#).is_err());
        let mut forged = task();
        forged.tenant = TenantId::parse("other").unwrap();
        assert!(decode_message(&forged.to_message_body()).is_err());
        let mut elsewhere = task();
        elsewhere.subscription_id =
            SubscriptionId::parse("sub_01HYYYYYYYYYYYYYYYYYYYYYYY").unwrap();
        assert!(decode_message(&elsewhere.to_message_body()).is_err());
    }
}
