//! The record the ledger keeps of a delivery: its state and every attempt made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DeliveryId, SubscriptionId, TenantId};

/// The most attempts one delivery's record keeps: each holds up to 2 KiB of the answer,
/// and the record must stay well within DynamoDB's 400 KB item. The queue's
/// `maxReceiveCount` (at most 150) bounds scheduled attempts below it, and forced
/// redeliveries of a delivery that has made this many are refused.
pub const MAX_ATTEMPTS_KEPT: u32 = 150;

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
    /// The subscription's GraphQL query failed at the source (an error answered, or no
    /// answer): nothing was POSTed.
    #[serde(rename = "E_GRAPHQL")]
    Graphql,
    /// The GraphQL source did not answer the query in time: nothing was POSTed.
    #[serde(rename = "E_GRAPHQL_TIMEOUT")]
    GraphqlTimeout,
    /// No answer within `HERALD_SLOW_LANE_AFTER` on the standard lane: the request was
    /// cut and the delivery sent again at once on the slow lane, with its full timeout.
    #[serde(rename = "E_SLOW_LANE")]
    SlowLane,
}

impl AttemptError {
    /// Whether the failure says nothing of the receiver's health: the GraphQL source
    /// failed, or a slow answer was cut to move the delivery to the slow lane.
    pub fn spares_health(self) -> bool {
        matches!(self, Self::Graphql | Self::GraphqlTimeout | Self::SlowLane)
    }

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
            Self::Graphql => "E_GRAPHQL",
            Self::GraphqlTimeout => "E_GRAPHQL_TIMEOUT",
            Self::SlowLane => "E_SLOW_LANE",
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
    /// A delivery of `task` not attempted yet, as a claim at `now` starts it.
    pub fn pending(
        task: &super::DeliveryTask,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: task.delivery_id.clone(),
            tenant: task.tenant.clone(),
            subscription_id: task.subscription_id.clone(),
            event_id: task.event.id.clone(),
            event_type: task.event.event_type.to_string(),
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            created_at: task.delivery_id.accepted_at(),
            first_attempt_at: now,
            next_attempt_at: None,
            reason: None,
            updated_at: now,
            expires_at,
            dead_letter: None,
        }
    }

    pub fn attempt_count(&self) -> u32 {
        self.attempts.len() as u32
    }

    /// The attempts the retry schedule counts: every one but those cut to move the
    /// delivery to the slow lane, whose attempt there went out at once, in their stead.
    pub fn scheduled_attempt_count(&self) -> u32 {
        self.attempts
            .iter()
            .filter(|a| a.error != Some(AttemptError::SlowLane))
            .count() as u32
    }

    /// A failed delivery whose copy for the dead-letter queue is still to be sent.
    pub fn owes_dead_letter(&self) -> bool {
        self.state == DeliveryState::Failed && self.dead_letter == Some(DeadLetterMark::Owed)
    }
}
