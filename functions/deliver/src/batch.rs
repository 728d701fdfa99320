//! One SQS batch: each record is claimed, sent and recorded, concurrently up to a bound.
//! A record is reported as a batch item failure only when SQS should hand it back (a
//! retry after the delay set with ChangeMessageVisibility, or an interruption); every
//! other outcome, including the dead-letter queue, removes it from the queue. The queue
//! calls the records need are made once they are all done (`settle`).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::delivery::{DeliveryTask, Lane, decode_message};
use herald_core::event::Event;
use herald_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeadLetter, Ports, StoreError, SubscriptionStore};
use herald_core::subscription::Subscription;
use herald_core::trace::Span;

use herald_aws::lambda::metrics::Metrics;

use crate::DeliverDeps;
use crate::attempt::{self, Outcome, Received};
use crate::report::{Disposition, RecordReport};
use crate::settle::{interrupted, settle};

pub struct BatchOutcome {
    pub response: SqsBatchResponse,
    pub reports: Vec<RecordReport>,
}

/// Each subscription the batch names, as read once for the whole batch.
pub(crate) type Subscriptions =
    HashMap<(TenantId, SubscriptionId), Result<Option<Subscription>, String>>;

/// The POSTs in flight to each host within one batch, bounded by `per_host`.
pub(crate) struct HostLimits {
    per_host: usize,
    hosts: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl HostLimits {
    fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn acquire(&self, host: &str) -> tokio::sync::OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self
                .hosts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Looked up before a key is made: the url crate lowercases a name already, so
            // the lowercase copy is made only for a host not seen before in the batch.
            match hosts.get(host) {
                Some(semaphore) => Arc::clone(semaphore),
                None => Arc::clone(
                    hosts
                        .entry(host.to_ascii_lowercase())
                        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_host))),
                ),
            }
        };
        semaphore
            .acquire_owned()
            .await
            .expect("a host's semaphore is never closed")
    }
}

/// What every record of a batch reads: the subscriptions the batch names, and the bound
/// on POSTs to each host.
pub(crate) struct BatchShared {
    pub(crate) subscriptions: Subscriptions,
    pub(crate) hosts: HostLimits,
    /// The events the batch's claim checks name, each read once for the batch however
    /// many of its records carry it (a large event's fan-out arrives together).
    pub(crate) events: StoredEvents,
    /// When the invocation ends, if it had time for an attempt when the batch began: a
    /// record whose turn comes too late to finish by then is handed back unattempted
    /// (`Disposition::Deferred`).
    pub(crate) deadline: Option<tokio::time::Instant>,
}

/// What an invocation keeps back from its deadline after an attempt's longest wait: the
/// attempt's record, the batch's queue calls and the answer to Lambda.
const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

impl BatchShared {
    /// Whether an attempt that may wait `limit` for its answer, started now, could not
    /// end (and be recorded) before the invocation's deadline.
    pub(crate) fn too_late_for(&self, limit: std::time::Duration) -> bool {
        self.deadline
            .is_some_and(|deadline| too_late(deadline, limit))
    }
}

/// Whether an attempt that may wait `limit`, started now, ends too close to `deadline`.
fn too_late(deadline: tokio::time::Instant, limit: std::time::Duration) -> bool {
    tokio::time::Instant::now() + limit + DEADLINE_MARGIN > deadline
}

/// An event a claim check names: by tenant, id and fingerprint.
type StoredKey = (TenantId, EventId, String);
/// One such event, read once: None when it is not kept (or kept with other content).
type StoredCell = Arc<tokio::sync::OnceCell<Option<Arc<Event>>>>;

/// The batch's claim-checked events, each read by the first record that needs it while
/// the others wait for that read. A read that fails is not kept: the next record tries.
#[derive(Default)]
pub(crate) struct StoredEvents(std::sync::Mutex<HashMap<StoredKey, StoredCell>>);

impl StoredEvents {
    /// The event `task` names with `fingerprint`, read by `read` unless the batch has it:
    /// None when it is not kept (or kept with other content). `read(false)` reads without
    /// waiting for the latest writes, at half the price; when that finds nothing, other
    /// content or an error (the event accepted moments ago and not yet seen everywhere),
    /// `read(true)` reads it consistently, and that answer stands.
    pub(crate) async fn get<F, Fut>(
        &self,
        task: &DeliveryTask,
        fingerprint: &str,
        read: F,
    ) -> Result<Option<Arc<Event>>, StoreError>
    where
        F: Fn(bool) -> Fut,
        Fut: std::future::Future<Output = Result<Option<Event>, StoreError>>,
    {
        let key = (
            task.tenant.clone(),
            task.event.id.clone(),
            fingerprint.to_owned(),
        );
        let cell = {
            let mut cells = self.0.lock().unwrap_or_else(|e| e.into_inner());
            cells.entry(key).or_default().clone()
        };
        let named = |event: Event| (event.fingerprint() == fingerprint).then(|| Arc::new(event));
        let found = cell
            .get_or_try_init(|| async {
                if let Ok(Some(event)) = read(false).await
                    && let Some(event) = named(event)
                {
                    return Ok(Some(event));
                }
                Ok::<_, StoreError>(read(true).await?.and_then(named))
            })
            .await?;
        Ok(found.clone())
    }
}

/// A record done with, before the batch's queue calls: what it asks of the queue follows
/// from its disposition and its copy for the dead-letter queue.
pub(crate) struct Settling {
    pub(crate) report: RecordReport,
    pub(crate) receipt: String,
    pub(crate) dead_letter: Option<DeadLetter>,
    /// The delivery whose record owes `dead_letter`, to be marked sent once it is.
    pub(crate) owed_by: Option<(TenantId, DeliveryId)>,
    /// The queue it was received from.
    pub(crate) lane: Lane,
}

/// A record as received: its message and its task, if it decoded.
type Record = (SqsMessage, Result<DeliveryTask, String>);

/// The ordered line (FIFO message group) a record came in, if it came from the ordered
/// delivery queue. A FIFO queue's name ends in `.fifo`, so its ARN does; the standard
/// queue's records carry a message group too (fair queues), which is not a line.
fn line_of(message: &SqsMessage) -> Option<&str> {
    let fifo = message
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| arn.ends_with(".fifo"));
    fifo.then(|| message.attributes.get("MessageGroupId").map(String::as_str))
        .flatten()
}

/// The queue a record came from, where its visibility changes go (its receipt handle is
/// that queue's): by its event source, the ordered queue's ARN or the slow lane's. Not by
/// its task's `slow`, which says where the task was queued: the slow lane dead-letters to
/// the delivery queue's dead-letter queue, so a slow task an operator redrives from there
/// arrives on the delivery queue still marked slow. The mark still decides how its
/// attempt runs (`attempt`).
fn lane_of(message: &SqsMessage, settings: &DeliverySettings) -> Lane {
    let slow_queue = message
        .event_source_arn
        .as_deref()
        .is_some_and(|arn| settings.is_slow_queue(arn));
    match line_of(message) {
        Some(_) => Lane::Ordered,
        None if slow_queue => Lane::Slow,
        None => Lane::Standard,
    }
}

/// The batch's records in units, each run one record after another: an ordered line's
/// records in the order SQS gave them, and every other record alone.
fn units(decoded: Vec<Record>) -> Vec<Vec<Record>> {
    let mut units: Vec<Vec<Record>> = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for received in decoded {
        match line_of(&received.0).map(str::to_owned) {
            Some(line) => match lines.get(&line) {
                Some(&unit) => units[unit].push(received),
                None => {
                    lines.insert(line, units.len());
                    units.push(vec![received]);
                }
            },
            None => units.push(vec![received]),
        }
    }
    units
}

/// A unit's records, one after another. In an ordered line, once a record is not done
/// (its message is handed back: a retry, a lease, a rate limit, an interruption) the
/// records behind it are handed back untouched, so none goes out before it.
async fn process_unit<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    unit: Vec<Record>,
) -> Vec<Settling> {
    let mut settled = Vec::with_capacity(unit.len());
    let mut held = false;
    for (message, task) in unit {
        if held {
            settled.push(Settling {
                report: RecordReport::new(
                    message.message_id.as_deref().unwrap_or_default(),
                    Disposition::Behind,
                ),
                receipt: message.receipt_handle.clone().unwrap_or_default(),
                dead_letter: None,
                owed_by: None,
                lane: Lane::Ordered,
            });
            continue;
        }
        let settling = process_record(deps, shared, message, task).await;
        held = settling.lane == Lane::Ordered && settling.report.disposition.keeps_message();
        settled.push(settling);
    }
    settled
}

/// The bytes of one record's future, with `P`'s stores and sender: what each record of
/// a batch allocates when it starts, and holds until it ends (a thousand of them for a
/// batch of 1000). Printed by `make bench` (docs/PERFORMANCE.md, "A record's future").
pub fn record_future_bytes<P: Ports>() -> usize {
    fn returned<A, B, C, Fut>(_: impl Fn(A, B, C) -> Fut) -> usize {
        std::mem::size_of::<Fut>()
    }
    returned::<&DeliverDeps<P>, &BatchShared, Vec<Record>, _>(process_unit::<P>)
}

/// Delivers one SQS batch with no deadline: every record is attempted, however long the
/// batch takes (the handler tests, the bench).
pub async fn process_batch<P: Ports>(deps: &Arc<DeliverDeps<P>>, event: SqsEvent) -> BatchOutcome {
    process_batch_until(deps, event, None).await
}

/// Delivers one SQS batch within an invocation that ends at `deadline` (Lambda's, from
/// the Runtime API's `Lambda-Runtime-Deadline-Ms`). A record is attempted only if its
/// attempt can end, and be recorded, by then; one whose turn comes later (a batch larger
/// than its hosts' bound lets through in the time) is handed back at once, not attempted.
/// A deadline that leaves less than the deployment's attempt timeout from the start is
/// not applied: every record is attempted, as with none (a function timeout set below
/// `HERALD_DELIVERY_TIMEOUT` would otherwise hand every record back for ever). The deps
/// are shared (`Arc`) because on a runtime with more than one worker the records run as
/// tasks of their own, spread over the workers.
pub async fn process_batch_until<P: Ports>(
    deps: &Arc<DeliverDeps<P>>,
    event: SqsEvent,
    deadline: Option<tokio::time::Instant>,
) -> BatchOutcome {
    let decoded: Vec<Record> = event
        .records
        .into_iter()
        .map(|m| {
            let task =
                decode_message(m.body.as_deref().unwrap_or_default()).map_err(|e| e.to_string());
            (m, task)
        })
        .collect();
    let deadline = deadline.filter(|&deadline| {
        let applies = !too_late(deadline, deps.settings.timeout);
        if !applies {
            tracing::warn!(
                timeout_s = deps.settings.timeout.as_secs(),
                "the invocation is shorter than an attempt's timeout and its margin: every record is attempted; raise the function's timeout"
            );
        }
        applies
    });
    let shared = Arc::new(BatchShared {
        subscriptions: load_subscriptions(deps, &decoded).await,
        hosts: HostLimits::new(deps.settings.per_host),
        events: StoredEvents::default(),
        deadline,
    });
    let settling = run_records(deps, &shared, decoded).await;
    let reports = settle(deps, settling).await;

    log_batch(&reports);
    batch_metrics(&reports).emit();
    let mut response = SqsBatchResponse::default();
    for report in &reports {
        if report.disposition.keeps_message() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = report.message_id.clone();
            response.batch_item_failures.push(failure);
        }
    }
    BatchOutcome { response, reports }
}

/// Each subscription named in the batch, read once (through the store's cache when
/// deliver is wired with one).
async fn load_subscriptions<P: Ports>(deps: &DeliverDeps<P>, decoded: &[Record]) -> Subscriptions {
    let mut keys: Vec<(TenantId, SubscriptionId)> = decoded
        .iter()
        .filter_map(|(_, t)| t.as_ref().ok())
        .map(|t| (t.tenant.clone(), t.subscription_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let loaded = futures::future::join_all(
        keys.iter()
            .map(|(tenant, id)| deps.ports.subscriptions.get(tenant, id)),
    )
    .await;
    keys.into_iter()
        .zip(loaded)
        .map(|(key, result)| (key, result.map_err(|e| e.to_string())))
        .collect()
}

/// The runtime's workers that can run records in parallel: one on a current-thread
/// runtime (deliver below two vCPUs, `herald_aws::lambda::runtime`), a worker each on a
/// multi-thread one.
fn parallel_workers() -> usize {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            handle.metrics().num_workers()
        }
        _ => 1,
    }
}

/// Runs the records, at most `concurrency` units (`units`) at once. With one worker they
/// run in this task. With more, each unit runs as a task of its own, so that the CPU a
/// record costs (signing, rendering, the HTTP client, recording) is spread over the
/// workers instead of all falling on the thread that polls the handler.
async fn run_records<P: Ports>(
    deps: &Arc<DeliverDeps<P>>,
    shared: &Arc<BatchShared>,
    decoded: Vec<Record>,
) -> Vec<Settling> {
    let concurrency = deps.settings.concurrency.max(1);
    let units = units(decoded);
    if parallel_workers() <= 1 || units.len() <= 1 {
        let settled: Vec<Vec<Settling>> = futures::stream::iter(units)
            .map(|unit| process_unit(deps, shared, unit))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        return settled.into_iter().flatten().collect();
    }
    let bound = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    // The messages each task holds, so that one which never finishes hands them back.
    let mut held: HashMap<tokio::task::Id, Vec<(String, String, Lane)>> = HashMap::new();
    for unit in units {
        let permit = Arc::clone(&bound)
            .acquire_owned()
            .await
            .expect("the batch's bound is never closed");
        let ids = unit
            .iter()
            .map(|(message, _)| {
                (
                    message.message_id.clone().unwrap_or_default(),
                    message.receipt_handle.clone().unwrap_or_default(),
                    lane_of(message, &deps.settings),
                )
            })
            .collect();
        let (deps, shared) = (Arc::clone(deps), Arc::clone(shared));
        let spawned = running.spawn(async move {
            let settled = process_unit(&deps, &shared, unit).await;
            drop(permit);
            settled
        });
        held.insert(spawned.id(), ids);
    }
    let mut settled = Vec::new();
    while let Some(joined) = running.join_next_with_id().await {
        match joined {
            Ok((id, unit)) => {
                held.remove(&id);
                settled.extend(unit);
            }
            // A record that panics fails the invocation, as it would in this task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled (the runtime is shutting down): not done, so SQS hands it back.
            Err(e) => {
                for (message_id, receipt, lane) in held.remove(&e.id()).unwrap_or_default() {
                    settled.push(Settling {
                        report: RecordReport::new(
                            &message_id,
                            interrupted(format!("its task ended unfinished: {e}")),
                        ),
                        receipt,
                        dead_letter: None,
                        owed_by: None,
                        lane,
                    });
                }
            }
        }
    }
    settled
}

/// One record: a malformed one goes to the dead letters; a task is delivered
/// (`attempt::deliver`), and its report and its dead letter, if it owes one, follow from
/// the outcome.
async fn process_record<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    message: SqsMessage,
    task: Result<DeliveryTask, String>,
) -> Settling {
    let message_id = message.message_id.clone().unwrap_or_default();
    let receipt = message.receipt_handle.clone().unwrap_or_default();
    let body = message.body.as_deref().unwrap_or_default();
    let line = line_of(&message).map(str::to_owned);
    let lane = lane_of(&message, &deps.settings);

    let task = match task {
        Ok(task) => task,
        Err(reason) => {
            let reason = format!("malformed task: {reason}");
            return Settling {
                report: RecordReport::new(&message_id, Disposition::DeadLettered(reason.clone())),
                receipt,
                dead_letter: Some(DeadLetter {
                    body: body.to_owned(),
                    reason,
                    delivery_id: None,
                    line,
                }),
                owed_by: None,
                lane,
            };
        }
    };

    let received = Received {
        count: message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(1),
        redriven: message
            .message_attributes
            .contains_key(DeadLetter::REASON_ATTRIBUTE),
        sent_at: message
            .attributes
            .get("SentTimestamp")
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis),
    };
    // A task of a recorded trace is a segment of it, continuing the publish's span.
    let traced = deps.xray.records(task.trace.as_ref());
    let started = deps.ports.clock.now();
    let mut spans = traced.then(Vec::new);
    let outcome = attempt::deliver(deps, shared, &task, received, &mut spans).await;
    if let (Some(spans), Some(header)) = (spans, &task.trace) {
        let mut segment = Span::begin("herald-deliver", started, &mut rand::rng());
        segment
            .end(deps.ports.clock.now())
            .set("origin", "AWS::Lambda::Function".into())
            .annotate("tenant", task.tenant.as_str())
            .annotate("subscription_id", task.subscription_id.as_str())
            .annotate("delivery_id", task.delivery_id.as_str())
            .annotate("disposition", outcome.disposition.to_string());
        if let Some(attempt) = &outcome.attempt {
            segment.annotate("attempt", attempt.number);
        }
        segment.subsegments = spans;
        deps.xray.send_segment(&segment, header);
    }
    let reason = match &outcome.disposition {
        Disposition::Failed(reason) => Some(reason.clone()),
        Disposition::OwedDeadLetter(reason) => Some(reason.clone()),
        _ => None,
    };
    let dead_letter = reason.map(|reason| DeadLetter {
        body: body.to_owned(),
        reason,
        delivery_id: Some(task.delivery_id.clone()),
        line,
    });
    let owed_by = dead_letter
        .is_some()
        .then(|| (task.tenant.clone(), task.delivery_id.clone()));
    Settling {
        report: report_of(&message_id, &task, outcome),
        receipt,
        dead_letter,
        owed_by,
        lane,
    }
}

/// The record's report: its delivery, where it went, and its attempt if one was made.
fn report_of(message_id: &str, task: &DeliveryTask, outcome: Outcome) -> RecordReport {
    let mut report = RecordReport::new(message_id, outcome.disposition);
    report.delivery_id = Some(task.delivery_id.to_string());
    report.subscription_id = Some(task.subscription_id.to_string());
    report.url = outcome.url;
    if let Some(attempt) = outcome.attempt {
        report.attempt = Some(attempt.number);
        report.status = attempt.status;
        report.error = attempt
            .error
            .filter(|e| *e != herald_core::delivery::AttemptError::Http)
            .map(herald_core::delivery::AttemptError::code);
        report.latency_ms = Some(attempt.latency_ms);
        if attempt.number == 1 && !attempt.forced {
            let lag = attempt.at - task.delivery_id.accepted_at();
            report.lag_ms = Some(lag.num_milliseconds().max(0) as u64);
        }
    }
    report
}

/// The batch's log lines: one for the batch, and one for each record that did not end
/// routinely (a retry, a failure, a skip, a dead letter, a lease, an interruption).
/// Deliveries, and copies of deliveries already finished, are only counted in the
/// batch's line (and logged one by one at `debug`): each delivery's attempts are in its
/// record, which the attempt log shows, and a line for every success was most of the
/// CloudWatch Logs a delivery cost (docs/DECISIONS.md, "Logging").
/// The batch's metrics (docs/OPERATIONS.md): each record's outcome counted, the
/// attempts' latencies and error codes, and the lag from acceptance to first attempt.
pub fn batch_metrics(reports: &[RecordReport]) -> Metrics {
    let mut counts: [(&str, u64); 15] = [
        ("Delivered", 0),
        ("Retried", 0),
        ("Failed", 0),
        ("Gone", 0),
        ("Skipped", 0),
        ("Superseded", 0),
        ("DeadLettered", 0),
        ("Duplicates", 0),
        ("Leased", 0),
        ("RateLimited", 0),
        ("Interrupted", 0),
        ("Behind", 0),
        ("ToSlowLane", 0),
        ("Deferred", 0),
        ("Attempts", 0),
    ];
    let mut bump = |name: &str| {
        if let Some((_, n)) = counts.iter_mut().find(|(k, _)| *k == name) {
            *n += 1;
        }
    };
    let mut errors: std::collections::BTreeMap<&str, u64> = Default::default();
    for report in reports {
        bump(match &report.disposition {
            Disposition::Delivered => "Delivered",
            Disposition::RetryIn(_) => "Retried",
            Disposition::Failed(_) => "Failed",
            Disposition::Gone => "Gone",
            Disposition::Skipped(_) => "Skipped",
            Disposition::Superseded => "Superseded",
            Disposition::DeadLettered(_) | Disposition::OwedDeadLetter(_) => "DeadLettered",
            Disposition::AlreadyFinished(_) => "Duplicates",
            Disposition::Leased(_) => "Leased",
            Disposition::RateLimited(_) => "RateLimited",
            Disposition::Interrupted(_) => "Interrupted",
            Disposition::Behind => "Behind",
            Disposition::ToSlowLane => "ToSlowLane",
            Disposition::Deferred => "Deferred",
        });
        if report.attempt.is_some() {
            bump("Attempts");
        }
        if let Some(code) = report.error {
            *errors.entry(code).or_default() += 1;
        }
    }
    let count_of = |name: &str| {
        counts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, n)| *n)
    };
    // A copy goes to the dead-letter queue for each delivery failed for good and each
    // malformed or owed one.
    let dead_letters = count_of("Failed") + count_of("DeadLettered");
    let mut metrics = Metrics::new("deliver");
    for (name, n) in counts {
        metrics.count(name, n);
    }
    metrics.count("DeadLetters", dead_letters);
    for (code, n) in errors {
        metrics.count(&format!("Errors.{code}"), n);
    }
    metrics.milliseconds(
        "AttemptLatency",
        reports.iter().filter_map(|r| r.latency_ms),
    );
    metrics.milliseconds("DeliveryLag", reports.iter().filter_map(|r| r.lag_ms));
    metrics
}

fn log_batch(reports: &[RecordReport]) {
    macro_rules! record_line {
        ($level:expr, $report:expr) => {
            tracing::event!(
                $level,
                message_id = %$report.message_id,
                delivery_id = $report.delivery_id.as_deref().unwrap_or(""),
                attempt = $report.attempt,
                status = $report.status,
                error = $report.error,
                disposition = %$report.disposition,
                "record processed"
            )
        };
    }
    let (mut delivered, mut handed_back, mut routine) = (0, 0, true);
    for report in reports {
        delivered += usize::from(report.disposition == Disposition::Delivered);
        handed_back += usize::from(report.disposition.keeps_message());
        if report.disposition.is_routine() {
            record_line!(tracing::Level::DEBUG, report);
        } else {
            routine = false;
            record_line!(tracing::Level::INFO, report);
        }
    }
    // A batch where every record ended routinely says nothing its metrics line does not
    // (a count of each ending), so its line is at debug like its records' lines.
    macro_rules! batch_line {
        ($level:expr) => {
            tracing::event!(
                $level,
                records = reports.len(),
                delivered,
                handed_back,
                "batch processed"
            )
        };
    }
    if routine {
        batch_line!(tracing::Level::DEBUG);
    } else {
        batch_line!(tracing::Level::INFO);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::Utc;
    use herald_core::event::EventType;

    use super::*;

    fn event(amount: u32) -> Event {
        Event {
            id: EventId::parse("ord_1").unwrap(),
            event_type: EventType::parse("order.paid").unwrap(),
            occurred_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            data: serde_json::json!({"amount": amount})
                .as_object()
                .unwrap()
                .clone(),
            subject: None,
        }
    }

    /// The event a claim check names, got through `StoredEvents` from a store that answers
    /// `eventual` to reads that do not wait for the latest writes and `consistent` to
    /// those that do; and the reads made, `true` for consistent.
    async fn got(
        eventual: Result<Option<Event>, StoreError>,
        consistent: Option<Event>,
    ) -> (Option<Arc<Event>>, Vec<bool>) {
        let named = event(1250);
        let task = DeliveryTask::new(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000001").unwrap(),
            &named,
            Utc::now(),
        );
        let answers = Mutex::new((Some(eventual), Some(consistent)));
        let reads = Mutex::new(Vec::new());
        let found = StoredEvents::default()
            .get(&task, &named.fingerprint(), |consistently| {
                reads.lock().unwrap().push(consistently);
                let mut answers = answers.lock().unwrap();
                let answer = if consistently {
                    Ok(answers.1.take().expect("one consistent read"))
                } else {
                    answers.0.take().expect("one eventual read")
                };
                async move { answer }
            })
            .await
            .unwrap();
        (found, reads.into_inner().unwrap())
    }

    #[tokio::test]
    async fn an_eventual_read_of_the_named_event_is_enough() {
        let (found, reads) = got(Ok(Some(event(1250))), None).await;
        assert_eq!(found.as_deref(), Some(&event(1250)));
        assert_eq!(reads, [false]);
    }

    #[tokio::test]
    async fn an_eventual_read_of_other_content_is_read_again_consistently() {
        let (found, reads) = got(Ok(Some(event(9999))), Some(event(1250))).await;
        assert_eq!(found.as_deref(), Some(&event(1250)));
        assert_eq!(reads, [false, true]);
    }

    #[tokio::test]
    async fn an_eventual_read_that_fails_or_misses_is_read_again_consistently() {
        let failed = StoreError::Corrupt("not readable".into());
        let (found, reads) = got(Err(failed), Some(event(1250))).await;
        assert_eq!(found.as_deref(), Some(&event(1250)));
        assert_eq!(reads, [false, true]);
        let (found, reads) = got(Ok(None), Some(event(1250))).await;
        assert_eq!(found.as_deref(), Some(&event(1250)));
        assert_eq!(reads, [false, true]);
    }

    #[tokio::test]
    async fn other_content_read_consistently_is_no_event() {
        let (found, reads) = got(Ok(Some(event(9999))), Some(event(9999))).await;
        assert_eq!(found, None);
        assert_eq!(reads, [false, true]);
        let (found, _) = got(Ok(None), None).await;
        assert_eq!(found, None);
    }
}
