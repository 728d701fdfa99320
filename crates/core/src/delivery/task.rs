//! The task that travels on the delivery queue: one event for one subscription.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Event;
use crate::ids::{DeliveryId, SubscriptionId, TenantId};
use crate::trace::TraceHeader;

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
    /// The trace the publish belongs to, its parent the span that queued the task, when
    /// that trace is recorded (`herald_core::trace`). A task without one is not traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceHeader>,
    /// The ordered line the task waits in (its FIFO message group), for an ordered
    /// subscription (`subscription::ordering`); None for the standard queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// On the slow lane: its subscription's receivers were found slow, so its attempts
    /// use capacity of their own (docs/DECISIONS.md, "Slow receivers").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slow: bool,
}

/// Which delivery queue a task travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The delivery queue: most tasks.
    Standard,
    /// The slow lane's queue: tasks of subscriptions whose receivers answer slowly, so
    /// they do not hold the standard lane's capacity.
    Slow,
    /// The ordered (FIFO) queue: ordered subscriptions' tasks, each in its line.
    Ordered,
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
            trace: None,
            line: None,
            slow: false,
        }
    }

    /// The queue the task travels on: an ordered line's stays in it.
    pub fn lane(&self) -> Lane {
        match (&self.line, self.slow) {
            (Some(_), _) => Lane::Ordered,
            (None, true) => Lane::Slow,
            (None, false) => Lane::Standard,
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
