//! The task that travels on the delivery queue: one event for one subscription.
//!
//! A task carries its event inline when the event's `data` is at most
//! [`INLINE_DATA_BYTES`] serialized. A larger one (up to 1 MiB of `data`) travels as a
//! claim check: the event without its `data`, and the fingerprint of the whole event
//! (`DeliveryTask::stored`).
//! The event itself was stored once, in the events table, before any task was queued,
//! and deliver reads it back from there (docs/DECISIONS.md, "Large events").

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Event;
use crate::ids::{DeliveryId, SubscriptionId, TenantId};
use crate::trace::TraceHeader;
use serde_json::Map;

/// One message on the delivery queue. Versioned and tagged so that a deployment can
/// read what the previous one wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueMessage {
    /// Deliver `event` to one subscription.
    #[serde(rename = "deliver.v1")]
    DeliverV1(DeliveryTask),
}

/// Most `data` (serialized) a task carries inline; above it the task is a claim check.
/// Below it, carrying the event costs less than reading it back (SQS bills a request per
/// 64 KiB a message carries, DynamoDB a read unit per 4 KiB), every event of up to
/// 256 KiB (the limit before 1 MiB) travels as it did, and a batch of ten messages stays
/// within the 6 MB Lambda is handed.
pub const INLINE_DATA_BYTES: usize = 256 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub delivery_id: DeliveryId,
    pub tenant: TenantId,
    pub subscription_id: SubscriptionId,
    /// Shared by the tasks of one publish that carry the same event: ten thousand tasks
    /// of a hundred events hold a hundred events, not ten thousand copies.
    pub event: Arc<Event>,
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
    /// A claim check: `event` came without its `data`, which is in the events table, and
    /// this is the whole event's fingerprint (`Event::fingerprint`), so the event read
    /// back is known to be the one queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
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
    /// What the tasks of `event` (whose fingerprint is `fingerprint`) carry: the event
    /// itself, or, when its `data` is longer than [`INLINE_DATA_BYTES`], the event without
    /// it and the fingerprint for a claim check. Made once per event at publish, so a
    /// large event fanned out to many subscriptions is not copied (or serialized) once
    /// for each of them.
    pub fn carried(event: &Event, fingerprint: &str) -> (Arc<Event>, Option<String>) {
        if !data_too_large(event) {
            return (Arc::new(event.clone()), None);
        }
        let stripped = Event {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            occurred_at: event.occurred_at,
            data: Map::new(),
            subject: event.subject.clone(),
        };
        (Arc::new(stripped), Some(fingerprint.to_owned()))
    }

    /// The task for `event`, accepted at `accepted_at`, at one subscription.
    pub fn new(
        tenant: &TenantId,
        subscription_id: &SubscriptionId,
        event: &Event,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        Self::sharing(
            tenant,
            subscription_id,
            &Arc::new(event.clone()),
            accepted_at,
        )
    }

    /// The same, sharing `event` with the other tasks made from it.
    pub fn sharing(
        tenant: &TenantId,
        subscription_id: &SubscriptionId,
        event: &Arc<Event>,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        Self {
            delivery_id: DeliveryId::derive(tenant, &event.id, subscription_id, accepted_at),
            tenant: tenant.clone(),
            subscription_id: subscription_id.clone(),
            event: Arc::clone(event),
            forced: false,
            trace: None,
            line: None,
            slow: false,
            stored: None,
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

    /// The message: the task with its event inline, or a claim check when its `data` is
    /// longer than [`INLINE_DATA_BYTES`] (as [`DeliveryTask::carried`] decides).
    pub fn to_message_body(&self) -> String {
        let body =
            serde_json::to_string(&QueueMessage::DeliverV1(self.clone())).unwrap_or_default();
        // A message no longer than the bound cannot hold more `data` than it.
        if body.len() <= INLINE_DATA_BYTES || self.stored.is_some() || !data_too_large(&self.event)
        {
            return body;
        }
        let event = Event {
            id: self.event.id.clone(),
            event_type: self.event.event_type.clone(),
            occurred_at: self.event.occurred_at,
            data: Map::new(),
            subject: self.event.subject.clone(),
        };
        let check = self.carrying(Arc::new(event), Some(self.event.fingerprint()));
        serde_json::to_string(&QueueMessage::DeliverV1(check)).unwrap_or_default()
    }

    /// The task carrying `event`, read back for its claim check, inline (shared with the
    /// batch's other records that name it).
    pub fn with_event(&self, event: Arc<Event>) -> Self {
        self.carrying(event, None)
    }

    fn carrying(&self, event: Arc<Event>, stored: Option<String>) -> Self {
        Self {
            delivery_id: self.delivery_id.clone(),
            tenant: self.tenant.clone(),
            subscription_id: self.subscription_id.clone(),
            event,
            forced: self.forced,
            trace: self.trace.clone(),
            line: self.line.clone(),
            slow: self.slow,
            stored,
        }
    }
}

/// Whether `event`'s `data` is too long to travel inline.
fn data_too_large(event: &Event) -> bool {
    crate::event::data_bytes(&event.data) > INLINE_DATA_BYTES
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
