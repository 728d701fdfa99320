//! Publishing: what a producer's `POST /v1/events`, Herald's own `subscription.disabled`
//! and a `herald.test` all do.
//!
//! Each event is recorded under (tenant, id) with the number of deliveries it makes: one
//! conditional write per event. Only when all of them are recorded does fan-out start,
//! so an id reused with other content refuses the whole call with nothing queued. An
//! event seen before (a retry of a publish) fans out again to the subscriptions that
//! existed when it was first accepted: a subscription created after that never had it
//! coming. Delivery ids come from the event, the subscription and the acceptance time, and
//! a repeat carries the event as first accepted (read back: its `occurred_at` may have
//! defaulted to another time), so the tasks of a repeat are the same tasks, which the
//! claim makes harmless: a repeat costs a read and a message per task instead of a second
//! write per event to mark the fan-out done (docs/DECISIONS.md, "Writes per delivery").

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use thiserror::Error;

use crate::delivery::DeliveryTask;
use crate::event::Event;
use crate::ids::{EventId, TenantId};
use crate::ports::{
    Acceptance, Adapters, DeliveryQueue, EventLog, Ports, QueueError, StoreError, SubscriptionStore,
};
use crate::subscription::Subscription;
use crate::trace::TraceHeader;

/// Event records written (or, for repeats, read back) at once for one publish.
const WRITE_CONCURRENCY: usize = 16;

/// Which subscriptions an event goes to.
pub enum Audience<'a> {
    /// The tenant's active subscriptions that want it: at most `max_deliveries` for the
    /// whole call, or it is refused before anything is recorded or queued.
    Matching { max_deliveries: usize },
    /// This one alone, whatever it wants (a test event).
    Only(&'a Subscription),
}

/// What became of one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub id: EventId,
    /// The deliveries it made when it was first accepted.
    pub deliveries: u32,
    /// Accepted before; its deliveries were queued again.
    pub duplicate: bool,
}

#[derive(Debug, Error)]
pub enum PublishError {
    /// These ids were published before with other content; nothing was queued.
    #[error("event id already published with different content: {}", .0.join(", "))]
    Conflict(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recorded, but not every task is on the queue: publishing again finishes it.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The call's events would make more deliveries than one publish may; nothing was
    /// recorded or queued.
    #[error(
        "these events would make {deliveries} deliveries; one publish makes at most {max} \
         (publish fewer events a call)"
    )]
    TooManyDeliveries { deliveries: usize, max: usize },
}

/// Records and fans out `events` for `tenant`, answering in their order. Each task
/// carries `trace`, when the publish is traced, so deliver continues the trace.
pub async fn publish<P: Ports>(
    ports: &Adapters<P>,
    tenant: &TenantId,
    events: &[Event],
    audience: Audience<'_>,
    now: DateTime<Utc>,
    trace: Option<&TraceHeader>,
) -> Result<Vec<Published>, PublishError> {
    // The acceptance time as the events table keeps it, to the millisecond: a repeat
    // reads it back from there and compares subscriptions' creation times with it
    // ([`existed_by`]), so the first publish compares with the same instant.
    let now = to_millis(now);
    // One read of the tenant's subscriptions serves every event of the call.
    let active = match audience {
        Audience::Matching { .. } => ports.subscriptions.active(tenant).await?,
        Audience::Only(_) => Vec::new(),
    };
    let audiences: Vec<Vec<&Subscription>> = events
        .iter()
        .map(|event| match audience {
            Audience::Matching { .. } => active.iter().filter(|s| s.wants(event)).collect(),
            Audience::Only(subscription) => vec![subscription],
        })
        .collect();
    if let Audience::Matching { max_deliveries } = audience {
        let mut deliveries: usize = audiences.iter().map(Vec::len).sum();
        if deliveries > max_deliveries {
            deliveries = counted_as_repeats(ports, tenant, events, &audiences, now).await?;
        }
        if deliveries > max_deliveries {
            return Err(PublishError::TooManyDeliveries {
                deliveries,
                max: max_deliveries,
            });
        }
    }

    // The records are independent writes: a batch of 100 costs a few round trips of
    // DynamoDB's latency instead of 100 (the futures are made first: a closure inside
    // the stream would not be Send).
    let accepts: Vec<_> = events
        .iter()
        .zip(&audiences)
        .map(|(event, wanting)| {
            let fingerprint = event.fingerprint();
            let count = wanting.len() as u32;
            async move {
                let acceptance = ports
                    .events
                    .accept(tenant, event, &fingerprint, count, now)
                    .await?;
                Ok::<_, StoreError>((fingerprint, acceptance))
            }
        })
        .collect();
    let acceptances: Vec<(String, Acceptance)> = futures::stream::iter(accepts)
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;

    // When each event was accepted, the count recorded then, and whether it was seen
    // before; an id seen with other content refuses the whole call.
    let mut conflicts = Vec::new();
    let mut accepted = Vec::with_capacity(events.len());
    for (event, (fingerprint, acceptance)) in events.iter().zip(&acceptances) {
        accepted.push(match acceptance {
            Acceptance::New => (now, None, false),
            Acceptance::Seen {
                fingerprint: seen, ..
            } if seen != fingerprint => {
                conflicts.push(event.id.to_string());
                continue;
            }
            Acceptance::Seen {
                deliveries,
                accepted_at,
                ..
            } => (*accepted_at, *deliveries, true),
        });
    }
    if !conflicts.is_empty() {
        return Err(PublishError::Conflict(conflicts));
    }

    // A repeat fans out the event as it was first accepted, read back: the fingerprint
    // leaves `occurred_at` out (it defaults to the time of publishing), and a task
    // carrying the repeat's own would send another body under the same webhook-id and,
    // noted as the newest about its subject, supersede the deliveries of the event's
    // first publish, and later events about the subject too. Read only for a repeat
    // that queues anything.
    let reads: Vec<_> = events
        .iter()
        .zip(&audiences)
        .zip(&accepted)
        .map(|((event, wanting), &(accepted_at, _, duplicate))| {
            let queues = duplicate && wanting.iter().any(|s| existed_by(s, accepted_at));
            async move {
                if !queues {
                    return Ok::<_, StoreError>(None);
                }
                match ports.events.load(tenant, &event.id, now).await? {
                    Some(kept) => Ok(Some(kept)),
                    // Erased since it was accepted: a race to retry, like a conflict.
                    None => Err(StoreError::Conflict),
                }
            }
        })
        .collect();
    let kept: Vec<Option<Event>> = futures::stream::iter(reads)
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;

    let mut answers = Vec::with_capacity(events.len());
    let mut tasks = Vec::new();
    let mut supersede: Vec<(&Event, &Subscription)> = Vec::new();
    for ((((event, kept), wanting), (fingerprint, _)), &(accepted_at, recorded, duplicate)) in
        events
            .iter()
            .zip(&kept)
            .zip(&audiences)
            .zip(&acceptances)
            .zip(&accepted)
    {
        let event = kept.as_ref().unwrap_or(event);
        let before = tasks.len();
        // A large event's tasks are claim checks from the start: no copy of it for each.
        let (carried, stored) = DeliveryTask::carried(event, fingerprint);
        for subscription in wanting.iter().filter(|s| existed_by(s, accepted_at)) {
            let mut task = DeliveryTask::sharing(tenant, &subscription.id, &carried, accepted_at);
            task.stored = stored.clone();
            task.trace = trace.cloned();
            task.line = subscription.line_of(event);
            // Receivers found slow: straight to the slow lane (docs/DECISIONS.md).
            task.slow = subscription.is_slow(now);
            tasks.push(task);
            if subscription.supersede && event.subject.is_some() {
                supersede.push((event, subscription));
            }
        }
        answers.push(Published {
            id: event.id.clone(),
            // The count the event was first accepted with (records older than counts
            // have none: then the tasks made now).
            deliveries: recorded.unwrap_or((tasks.len() - before) as u32),
            duplicate,
        });
    }
    if !tasks.is_empty() {
        ports.queue.enqueue(&tasks).await?;
    }
    // Subscriptions that want only the newest event about a subject learn of it once its
    // tasks are queued, so their older deliveries still waiting are superseded. Not
    // before: a publish answered 503 whose repeat never comes would have superseded them
    // with an event that is never sent. Deliver notes each event again before sending
    // it, which is what keeps an older delivery from going out after a newer one.
    for (event, subscription) in supersede {
        ports
            .events
            .note_latest(tenant, &subscription.id, event, now)
            .await?;
    }
    Ok(answers)
}

/// The deliveries a call over the limit makes when its events accepted before are counted
/// as the repeats they are: each reaches only the subscriptions that existed when it was
/// first accepted ([`existed_by`]). A publish answered 503 and repeated after the tenant
/// added subscriptions is then not refused for them, which would leave the first
/// publish's unqueued tasks unqueued for good. Read only for a call over the limit.
async fn counted_as_repeats<P: Ports>(
    ports: &Adapters<P>,
    tenant: &TenantId,
    events: &[Event],
    audiences: &[Vec<&Subscription>],
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let reads: Vec<_> = events
        .iter()
        .map(|event| ports.events.acceptance(tenant, &event.id, now))
        .collect();
    let acceptances: Vec<Acceptance> = futures::stream::iter(reads)
        .buffered(WRITE_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(audiences
        .iter()
        .zip(&acceptances)
        .map(|(wanting, acceptance)| match acceptance {
            Acceptance::New => wanting.len(),
            Acceptance::Seen { accepted_at, .. } => wanting
                .iter()
                .filter(|s| existed_by(s, *accepted_at))
                .count(),
        })
        .sum())
}

/// `at` to the millisecond, as the events table keeps an acceptance time.
pub fn to_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// Whether `subscription` existed when an event was accepted at `accepted_at` (to the
/// millisecond): one created within that millisecond counts, in the first publish and in
/// every repeat alike, so a repeat completing a publish that failed half-way reaches the
/// same subscriptions it did.
fn existed_by(subscription: &Subscription, accepted_at: DateTime<Utc>) -> bool {
    to_millis(subscription.created_at) <= accepted_at
}
