//! One SQS batch: each record is claimed, sent and recorded, concurrently up to a bound.
//! A record is reported as a batch item failure only when SQS should hand it back (a
//! retry after the delay set with ChangeMessageVisibility, or an interruption); every
//! other outcome, including the dead-letter queue, removes it from the queue. The queue
//! calls the records need are made once they are all done, as batch calls: the dead
//! letters first, then the visibility changes. A delivery whose retry window is spent is
//! recorded failed with its dead letter owed, and marked sent once SQS took it: a copy
//! of its message that comes back after the dead letter was refused sends it then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use herald_aws::secrets::KeySource;
use herald_core::delivery::retry::{RetryDecision, RetryPolicy};
use herald_core::delivery::{Attempt, AttemptError, DeliveryState, DeliveryTask, decode_message};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{
    AttemptResult, Claim, ClaimOutcome, Clock, DeadLetter, DeliveryLedger, DeliveryQueue, EventLog,
    OutgoingWebhook, SendOutcome, StoreError, SubscriptionStore, VisibilityChange, WebhookSender,
};
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::webhook::keys::SigningKeys;
use herald_core::webhook::render;
use herald_core::webhook::sign::signature_header;
use rand::Rng;

use crate::config::DeliverConfig;
use crate::report::{Disposition, RecordReport};

/// How long a message stays hidden after Herald's own storage failed.
const INTERRUPTED_DELAY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct DeliverSettings {
    pub retry: RetryPolicy,
    pub idempotency_key_prefix: String,
    pub concurrency: usize,
    /// At most this many POSTs to one host at once within a batch, so a batch aimed at
    /// one receiver does not arrive as a burst of `concurrency` connections.
    pub per_host: usize,
    /// How long a claim keeps other copies of a message away: the timeout and a margin.
    pub lease: Duration,
    pub retention: Duration,
    pub auto_disable_after: Duration,
    pub keys: KeySource,
}

impl DeliverSettings {
    /// The settings of a configuration; keys in Secrets Manager are read through `sdk`.
    pub fn new(c: DeliverConfig, sdk: &aws_config::SdkConfig) -> Self {
        Self {
            retry: c.retry,
            idempotency_key_prefix: c.idempotency_key_prefix,
            concurrency: c.concurrency,
            per_host: c.per_host,
            lease: c.timeout + Duration::from_secs(30),
            retention: c.retention,
            auto_disable_after: c.auto_disable_after,
            keys: c.keys.into_source(sdk),
        }
    }
}

pub struct DeliverDeps<S, L, E, Q, W, C> {
    pub subscriptions: S,
    pub ledger: L,
    /// Read only for subscriptions that want the newest event about a subject.
    pub events: E,
    pub queue: Q,
    pub sender: W,
    pub clock: C,
    pub settings: DeliverSettings,
}

pub struct BatchOutcome {
    pub response: SqsBatchResponse,
    pub reports: Vec<RecordReport>,
}

/// The POSTs in flight to each host within one batch, bounded by `per_host`.
struct HostLimits {
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

    async fn acquire(&self, host: &str) -> tokio::sync::OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self
                .hosts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            hosts
                .entry(host.to_ascii_lowercase())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_host)))
                .clone()
        };
        semaphore
            .acquire_owned()
            .await
            .expect("a host's semaphore is never closed")
    }
}

type SubscriptionCache = HashMap<(TenantId, SubscriptionId), Result<Option<Subscription>, String>>;

/// What every record of a batch reads: the subscriptions the batch names, and the bound
/// on POSTs to each host.
struct BatchShared {
    subscriptions: SubscriptionCache,
    hosts: HostLimits,
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

/// Runs the records, at most `concurrency` at once. With one worker they run in this
/// task. With more, each runs as a task of its own, so that the CPU a record costs
/// (signing, rendering, the HTTP client, recording) is spread over the workers instead
/// of all falling on the thread that polls the handler.
async fn run_records<S, L, E, Q, W, C>(
    deps: &Arc<DeliverDeps<S, L, E, Q, W, C>>,
    shared: &Arc<BatchShared>,
    decoded: Vec<(SqsMessage, Result<DeliveryTask, String>)>,
) -> Vec<Settling>
where
    S: SubscriptionStore + 'static,
    L: DeliveryLedger + 'static,
    E: EventLog + 'static,
    Q: DeliveryQueue + 'static,
    W: WebhookSender + 'static,
    C: Clock + 'static,
{
    let concurrency = deps.settings.concurrency.max(1);
    if parallel_workers() <= 1 || decoded.len() <= 1 {
        return futures::stream::iter(decoded)
            .map(|(message, task)| {
                process_record(deps, &shared.subscriptions, &shared.hosts, message, task)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    }
    let bound = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut running = tokio::task::JoinSet::new();
    // The message each task holds, so that one which never finishes is handed back.
    let mut held: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    for (message, task) in decoded {
        let permit = Arc::clone(&bound)
            .acquire_owned()
            .await
            .expect("the batch's bound is never closed");
        let ids = (
            message.message_id.clone().unwrap_or_default(),
            message.receipt_handle.clone().unwrap_or_default(),
        );
        let (deps, shared) = (Arc::clone(deps), Arc::clone(shared));
        let spawned = running.spawn(async move {
            let settling =
                process_record(&deps, &shared.subscriptions, &shared.hosts, message, task).await;
            drop(permit);
            settling
        });
        held.insert(spawned.id(), ids);
    }
    let mut settled = Vec::with_capacity(held.len());
    while let Some(joined) = running.join_next_with_id().await {
        match joined {
            Ok((id, settling)) => {
                held.remove(&id);
                settled.push(settling);
            }
            // A record that panics fails the invocation, as it would in this task.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled (the runtime is shutting down): not done, so SQS hands it back.
            Err(e) => {
                let (message_id, receipt) = held.remove(&e.id()).unwrap_or_default();
                settled.push(Settling {
                    report: RecordReport::new(
                        &message_id,
                        interrupted(format!("its task ended unfinished: {e}")),
                    ),
                    receipt,
                    dead_letter: None,
                    owed_by: None,
                });
            }
        }
    }
    settled
}

/// Delivers one SQS batch. The deps are shared (`Arc`) because on a runtime with more than
/// one worker the records run as tasks of their own, spread over the workers.
pub async fn process_batch<S, L, E, Q, W, C>(
    deps: &Arc<DeliverDeps<S, L, E, Q, W, C>>,
    event: SqsEvent,
) -> BatchOutcome
where
    S: SubscriptionStore + 'static,
    L: DeliveryLedger + 'static,
    E: EventLog + 'static,
    Q: DeliveryQueue + 'static,
    W: WebhookSender + 'static,
    C: Clock + 'static,
{
    let decoded: Vec<(SqsMessage, Result<DeliveryTask, String>)> = event
        .records
        .into_iter()
        .map(|m| {
            let task =
                decode_message(m.body.as_deref().unwrap_or_default()).map_err(|e| e.to_string());
            (m, task)
        })
        .collect();
    let shared = Arc::new(BatchShared {
        subscriptions: load_subscriptions(deps, &decoded).await,
        hosts: HostLimits::new(deps.settings.per_host),
    });
    let settling = run_records(deps, &shared, decoded).await;
    let reports = settle(deps, settling).await;

    log_batch(&reports);
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

/// The batch's log lines: one for the batch, and one for each record that did not end
/// routinely (a retry, a failure, a skip, a dead letter, a lease, an interruption).
/// Deliveries, and copies of deliveries already finished, are only counted in the
/// batch's line (and logged one by one at `debug`): each delivery's attempts are in its
/// record, which the attempt log shows, and a line for every success was most of the
/// CloudWatch Logs a delivery cost (docs/DECISIONS.md, "Logging").
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
    let (mut delivered, mut handed_back) = (0, 0);
    for report in reports {
        delivered += usize::from(report.disposition == Disposition::Delivered);
        handed_back += usize::from(report.disposition.keeps_message());
        if report.disposition.is_routine() {
            record_line!(tracing::Level::DEBUG, report);
        } else {
            record_line!(tracing::Level::INFO, report);
        }
    }
    tracing::info!(
        records = reports.len(),
        delivered,
        handed_back,
        "batch processed"
    );
}

/// Each subscription named in the batch, read once (through the store's cache when
/// deliver is wired with one: `CachedSubscriptions`).
async fn load_subscriptions<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    decoded: &[(SqsMessage, Result<DeliveryTask, String>)],
) -> SubscriptionCache
where
    S: SubscriptionStore,
{
    let mut keys: Vec<(TenantId, SubscriptionId)> = decoded
        .iter()
        .filter_map(|(_, t)| t.as_ref().ok())
        .map(|t| (t.tenant.clone(), t.subscription_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let loaded = futures::future::join_all(
        keys.iter()
            .map(|(tenant, id)| deps.subscriptions.get(tenant, id)),
    )
    .await;
    keys.into_iter()
        .zip(loaded)
        .map(|(key, result)| (key, result.map_err(|e| e.to_string())))
        .collect()
}

/// A record done with, before the batch's queue calls: what it asks of the queue follows
/// from its disposition (`hide_for`) and its copy for the dead-letter queue.
struct Settling {
    report: RecordReport,
    receipt: String,
    dead_letter: Option<DeadLetter>,
    /// The delivery whose record owes `dead_letter`, to be marked sent once it is.
    owed_by: Option<(TenantId, DeliveryId)>,
}

/// The batch's queue calls, made once every record is done. Dead letters go first: a
/// message is let go only once its copy is in the dead-letter queue, and a copy that
/// could not be sent leaves its message interrupted, which needs its visibility
/// shortened. Then the visibility changes of every record SQS should hand back, and
/// beside them the marks that the dead letters sent are no longer owed.
async fn settle<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    records: Vec<Settling>,
) -> Vec<RecordReport>
where
    L: DeliveryLedger,
    Q: DeliveryQueue,
    C: Clock,
{
    let mut reports = Vec::with_capacity(records.len());
    let mut receipts = Vec::with_capacity(records.len());
    let (mut letters, mut lettered) = (Vec::new(), Vec::new());
    for (i, record) in records.into_iter().enumerate() {
        if let Some(letter) = record.dead_letter {
            letters.push(letter);
            lettered.push((i, record.owed_by));
        }
        reports.push(record.report);
        receipts.push(record.receipt);
    }

    let mut sent = Vec::new();
    if !letters.is_empty() {
        let mut results = deps.queue.dead_letter(&letters).await.into_iter();
        for (i, owed_by) in lettered {
            let why = match results.next() {
                Some(Ok(())) => {
                    if let Some((tenant, id)) = owed_by {
                        sent.push((reports[i].message_id.clone(), tenant, id));
                    }
                    continue;
                }
                Some(Err(e)) => e.to_string(),
                None => "no answer for the message".to_owned(),
            };
            reports[i].disposition = interrupted(format!("dead-letter queue: {why}"));
        }
    }

    futures::future::join(
        change_visibility(deps, &mut reports, &receipts),
        mark_dead_letters_sent(deps, sent),
    )
    .await;
    reports
}

/// Records each dead letter sent as no longer owed. A mark that cannot be written is
/// only logged: the message is let go all the same, since its copy is in the dead-letter
/// queue; should SQS hand it back once more, that copy sends a second dead letter.
async fn mark_dead_letters_sent<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    sent: Vec<(String, TenantId, DeliveryId)>,
) where
    L: DeliveryLedger,
    C: Clock,
{
    if sent.is_empty() {
        return;
    }
    let now = deps.clock.now();
    let results = futures::future::join_all(
        sent.iter()
            .map(|(_, tenant, id)| deps.ledger.dead_lettered(tenant, id, now)),
    )
    .await;
    for ((message_id, _, id), result) in sent.iter().zip(results) {
        if let Err(e) = result {
            tracing::warn!(message_id = %message_id, delivery_id = %id, error = %e, "could not mark a dead letter sent; it stays owed");
        }
    }
}

/// Hides each record SQS should hand back for its delay, in the batch's visibility
/// changes; a record whose change failed becomes an interruption.
async fn change_visibility<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    reports: &mut [RecordReport],
    receipts: &[String],
) where
    Q: DeliveryQueue,
{
    let (hidden, changes): (Vec<usize>, Vec<VisibilityChange>) = reports
        .iter()
        .enumerate()
        .filter_map(|(i, report)| {
            let delay = hide_for(&report.disposition)?;
            let receipt_handle = receipts[i].clone();
            Some((
                i,
                VisibilityChange {
                    receipt_handle,
                    delay,
                },
            ))
        })
        .unzip();
    if !changes.is_empty() {
        let mut results = deps.queue.retry_later(&changes).await.into_iter();
        for i in hidden {
            let why = match results.next() {
                Some(Ok(())) => continue,
                Some(Err(e)) => e.to_string(),
                None => "no answer for the message".to_owned(),
            };
            let report = &mut reports[i];
            if let Disposition::Interrupted(_) = report.disposition {
                // It comes back after the queue's visibility timeout instead: late, not lost.
                tracing::warn!(message_id = %report.message_id, error = %why, "could not shorten the visibility of an interrupted message");
            } else {
                report.disposition = Disposition::Interrupted(format!("queue: {why}"));
            }
        }
    }
}

/// How long SQS keeps a message hidden before handing it back, for the records it
/// should hand back (`Disposition::keeps_message`).
fn hide_for(disposition: &Disposition) -> Option<Duration> {
    match disposition {
        Disposition::RetryIn(delay) | Disposition::Leased(delay) => Some(*delay),
        Disposition::Interrupted(_) => Some(INTERRUPTED_DELAY),
        _ => None,
    }
}

/// The reason recorded, and kept on the dead letter, when the retry window is spent.
fn window_spent(attempts: u32) -> String {
    format!("no success after {attempts} attempts; the retry window is spent")
}

async fn process_record<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    subscriptions: &SubscriptionCache,
    hosts: &HostLimits,
    message: SqsMessage,
    task: Result<DeliveryTask, String>,
) -> Settling
where
    S: SubscriptionStore,
    L: DeliveryLedger,
    E: EventLog,
    Q: DeliveryQueue,
    W: WebhookSender,
    C: Clock,
{
    let message_id = message.message_id.clone().unwrap_or_default();
    let receipt = message.receipt_handle.clone().unwrap_or_default();
    let body = message.body.as_deref().unwrap_or_default();

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
                }),
                owed_by: None,
            };
        }
    };

    let mut report = RecordReport::new(&message_id, Disposition::Delivered);
    report.delivery_id = Some(task.delivery_id.to_string());
    report.subscription_id = Some(task.subscription_id.to_string());
    report.disposition = deliver(deps, subscriptions, hosts, &task, &mut report).await;
    let reason = match &report.disposition {
        Disposition::Failed => Some(window_spent(report.attempt.unwrap_or_default())),
        Disposition::OwedDeadLetter(reason) => Some(reason.clone()),
        _ => None,
    };
    let dead_letter = reason.map(|reason| DeadLetter {
        body: body.to_owned(),
        reason,
        delivery_id: Some(task.delivery_id.clone()),
    });
    let owed_by = dead_letter
        .is_some()
        .then(|| (task.tenant.clone(), task.delivery_id.clone()));
    Settling {
        report,
        receipt,
        dead_letter,
        owed_by,
    }
}

async fn deliver<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    subscriptions: &SubscriptionCache,
    hosts: &HostLimits,
    task: &DeliveryTask,
    report: &mut RecordReport,
) -> Disposition
where
    S: SubscriptionStore,
    L: DeliveryLedger,
    E: EventLog,
    Q: DeliveryQueue,
    W: WebhookSender,
    C: Clock,
{
    let settings = &deps.settings;
    let now = deps.clock.now();
    let claim = Claim {
        task_forced: task.forced,
        token: format!("{:032x}", rand::rng().random::<u128>()),
        now,
        lease_until: now + to_chrono(settings.lease),
        expires_at: now + to_chrono(settings.retention),
    };
    let record = match deps.ledger.claim(task, &claim).await {
        Ok(ClaimOutcome::Claimed(record)) => record,
        // Failed earlier, but its dead letter was refused: this copy sends it.
        Ok(ClaimOutcome::Finished(record)) if record.owes_dead_letter() => {
            let attempts = record.attempt_count();
            let reason = record.reason.unwrap_or_else(|| window_spent(attempts));
            return Disposition::OwedDeadLetter(reason);
        }
        Ok(ClaimOutcome::Finished(record)) => return Disposition::AlreadyFinished(record.state),
        Ok(ClaimOutcome::Leased { until }) => {
            let wait = (until - now).to_std().unwrap_or_default() + Duration::from_secs(1);
            return Disposition::Leased(wait);
        }
        Err(e) => return interrupted(format!("ledger: {e}")),
    };

    let key = (task.tenant.clone(), task.subscription_id.clone());
    let subscription = match subscriptions.get(&key) {
        Some(Ok(Some(s))) if s.status == SubscriptionStatus::Active => s,
        Some(Ok(Some(_))) => {
            return skip(deps, task, &claim, "subscription disabled").await;
        }
        Some(Ok(None)) | None => {
            return skip(deps, task, &claim, "subscription deleted").await;
        }
        Some(Err(e)) => {
            let why = format!("subscriptions: {e}");
            return release(deps, task, &claim, why).await;
        }
    };
    report.url = Some(subscription.url.as_str().to_owned());

    if subscription.supersede && task.event.subject.is_some() && !task.forced {
        match deps
            .events
            .latest(&task.tenant, &task.subscription_id, &task.event, now)
            .await
        {
            Ok(Some(newest)) if newest > task.event.order_key() => {
                let why = "a newer event about the same subject was queued";
                return finish_unsent(deps, task, &claim, DeliveryState::Superseded, why).await;
            }
            Ok(_) => {}
            Err(e) => return release(deps, task, &claim, format!("events: {e}")).await,
        }
    }

    let number = record.attempt_count() + 1;
    report.attempt = Some(number);
    // Asymmetric signatures need the deployment's keys, read when first needed.
    let keys = if subscription.signatures.ed25519 || subscription.signatures.rsa {
        match settings.keys.current().await {
            Ok(keys) => Some(keys),
            Err(e) => return release(deps, task, &claim, format!("signing keys: {e}")).await,
        }
    } else {
        None
    };
    let webhook = build_webhook(task, subscription, settings, keys.as_deref(), now);
    let permit = hosts.acquire(webhook.url.host()).await;
    let outcome = deps.sender.send(webhook).await;
    drop(permit);
    let attempt = attempt_of(number, now, task.forced, &outcome);
    report.status = attempt.status;
    report.error = attempt
        .error
        .filter(|e| *e != AttemptError::Http)
        .map(AttemptError::code);
    report.latency_ms = Some(attempt.latency_ms);
    let finished_at = deps.clock.now();

    let (state, next_attempt_at, reason, disposition) = if attempt.succeeded() {
        (DeliveryState::Delivered, None, None, Disposition::Delivered)
    } else if attempt.status == Some(410) {
        let why = "the endpoint answered 410 Gone";
        if let Err(e) = deps
            .subscriptions
            .disable(&task.tenant, &task.subscription_id, why, finished_at)
            .await
        {
            return release(deps, task, &claim, format!("subscriptions: {e}")).await;
        }
        (
            DeliveryState::Failed,
            None,
            Some(why.to_owned()),
            Disposition::Gone,
        )
    } else {
        let retry_after = match &outcome {
            SendOutcome::Answered {
                status: 429 | 503,
                retry_after,
                ..
            } => *retry_after,
            _ => None,
        };
        let jitter = rand::rng().random_range(-1.0..=1.0);
        match settings.retry.decide(
            number,
            record.first_attempt_at,
            finished_at,
            retry_after,
            jitter,
        ) {
            RetryDecision::RetryAfter(delay) => (
                DeliveryState::Pending,
                Some(finished_at + to_chrono(delay)),
                None,
                Disposition::RetryIn(delay),
            ),
            RetryDecision::GiveUp => (
                DeliveryState::Failed,
                None,
                Some(window_spent(number)),
                Disposition::Failed,
            ),
        }
    };

    let result = AttemptResult {
        attempt: Some(attempt),
        state,
        next_attempt_at,
        reason: reason.clone(),
        // In the same write, so a delivery that succeeds costs nothing more.
        dead_letter_owed: disposition == Disposition::Failed,
        now: finished_at,
    };
    match deps
        .ledger
        .finish(&task.tenant, &task.delivery_id, &claim.token, &result)
        .await
    {
        Ok(()) => {}
        // Another worker took the delivery over after our lease ran out; it owns the outcome.
        Err(StoreError::Conflict) => {
            return Disposition::AlreadyFinished(DeliveryState::Delivering);
        }
        Err(e) => return interrupted(format!("ledger: {e}")),
    }

    if disposition != Disposition::Gone {
        track_health(
            deps,
            task,
            subscription,
            state == DeliveryState::Delivered,
            finished_at,
        )
        .await;
    }

    disposition
}

/// The first failure after a success starts a subscription's clock and a success stops
/// it; failing for longer than `auto_disable_after` disables the subscription and tells
/// the tenant with a `subscription.disabled` event. Best effort: the delivery's own
/// outcome is already recorded, so a failure here is only logged.
///
/// `subscription` may be a few seconds old (the cache in front of the store), so it only
/// says whether to look further: a disable is decided on a fresh read, since another
/// worker may have had a success meanwhile, and the store keeps an earlier start when
/// a stale copy that looked healthy marks it failing.
async fn track_health<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    task: &DeliveryTask,
    subscription: &Subscription,
    succeeded: bool,
    now: DateTime<Utc>,
) where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
{
    let (tenant, id) = (&task.tenant, &task.subscription_id);
    let limit = to_chrono(deps.settings.auto_disable_after);
    let result = match (succeeded, subscription.failing_since) {
        (true, Some(_)) => deps.subscriptions.set_failing_since(tenant, id, None).await,
        (true, None) => Ok(()),
        (false, None) => {
            deps.subscriptions
                .set_failing_since(tenant, id, Some(now))
                .await
        }
        (false, Some(since)) if now - since >= limit => {
            match deps.subscriptions.get_fresh(tenant, id).await {
                Ok(Some(current)) if current.status == SubscriptionStatus::Active => {
                    match current.failing_since {
                        Some(since) if now - since >= limit => {
                            disable_for_failing(deps, &current, since, now).await
                        }
                        Some(_) => Ok(()),
                        // Healthy again elsewhere: this failure starts the clock anew.
                        None => {
                            deps.subscriptions
                                .set_failing_since(tenant, id, Some(now))
                                .await
                        }
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        }
        (false, Some(_)) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(subscription = %id, error = %e, "could not record the subscription's health");
    }
}

async fn disable_for_failing<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    subscription: &Subscription,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
{
    let (tenant, id) = (&subscription.tenant, &subscription.id);
    let reason = format!(
        "no successful delivery since {}",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    deps.subscriptions.disable(tenant, id, &reason, now).await?;
    announce_disabled(deps, tenant, subscription, &reason, now).await
}

/// Publishes `subscription.disabled` to the tenant's own subscriptions for that type.
async fn announce_disabled<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    tenant: &herald_core::ids::TenantId,
    subscription: &Subscription,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError>
where
    S: SubscriptionStore,
    E: EventLog,
    Q: DeliveryQueue,
{
    tracing::warn!(tenant = %tenant, subscription = %subscription.id, "subscription disabled for failing");
    let id = format!(
        "subscription.disabled:{}:{}",
        subscription.id,
        at.timestamp_millis()
    );
    let data = serde_json::json!({
        "subscription_id": subscription.id,
        "url": subscription.url.as_str(),
        "reason": reason,
        "disabled_at": at,
    });
    let (Some(id), Ok(event_type), Some(data)) = (
        herald_core::ids::EventId::parse(&id),
        herald_core::event::EventType::parse(DISABLED_EVENT_TYPE),
        data.as_object().cloned(),
    ) else {
        return Ok(());
    };
    let event = herald_core::event::Event {
        id,
        event_type,
        occurred_at: at,
        data,
        subject: None,
    };
    let wanting: Vec<Subscription> = deps
        .subscriptions
        .active(tenant)
        .await?
        .into_iter()
        .filter(|s| s.wants(&event))
        .collect();
    let count = wanting.len() as u32;
    // Seen already (this disable was announced, perhaps only in part): the same tasks
    // again, which the claim makes harmless.
    let accepted_at = match deps
        .events
        .accept(tenant, &event, &event.fingerprint(), count, at)
        .await?
    {
        herald_core::ports::Acceptance::New => at,
        herald_core::ports::Acceptance::Seen { accepted_at, .. } => accepted_at,
    };
    let tasks: Vec<DeliveryTask> = wanting
        .iter()
        .filter(|s| s.created_at <= accepted_at)
        .map(|s| DeliveryTask::new(tenant, &s.id, &event, accepted_at))
        .collect();
    if tasks.is_empty() {
        return Ok(());
    }
    if let Err(e) = deps.queue.enqueue(&tasks).await {
        tracing::warn!(error = %e, "could not queue subscription.disabled");
    }
    Ok(())
}

/// The event a tenant receives when Herald disables one of its subscriptions.
pub const DISABLED_EVENT_TYPE: &str = "subscription.disabled";

/// The signed request for one attempt. The timestamp is this attempt's, so receivers
/// can refuse stale ones; the id is the delivery's, so they can drop duplicates.
fn build_webhook(
    task: &DeliveryTask,
    subscription: &Subscription,
    settings: &DeliverSettings,
    keys: Option<&SigningKeys>,
    now: DateTime<Utc>,
) -> OutgoingWebhook {
    let ctx = render::RenderContext {
        tenant: &task.tenant,
        delivery_id: &task.delivery_id,
    };
    let body = render::render(
        &task.event,
        subscription.format,
        subscription.selection.as_ref(),
        &ctx,
    );
    let timestamp = now.timestamp();
    let id = task.delivery_id.as_str();
    let mut signature = signature_header(subscription.live_secrets(now), id, timestamp, &body);
    if subscription.signatures.ed25519
        && let Some(entry) = keys.and_then(|k| k.ed25519_entry(id, timestamp, &body))
    {
        signature.push(' ');
        signature.push_str(&entry);
    }
    // Custom headers first: Herald's own are added after them and were refused as names.
    let mut headers: Vec<(String, String)> = subscription
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.extend([
        ("content-type".to_owned(), "application/json".to_owned()),
        ("user-agent".to_owned(), herald_core::USER_AGENT.to_owned()),
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("webhook-signature".to_owned(), signature),
        (
            "idempotency-key".to_owned(),
            format!("{}{id}", settings.idempotency_key_prefix),
        ),
    ]);
    if subscription.signatures.rsa
        && let Some(keys) = keys
    {
        headers.extend(keys.rsa_headers(&body));
    }
    OutgoingWebhook {
        url: subscription.url.clone(),
        headers,
        body,
    }
}

fn attempt_of(number: u32, at: DateTime<Utc>, forced: bool, outcome: &SendOutcome) -> Attempt {
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

/// Ends a claim without an attempt: in `state`, with `reason`.
async fn end_claim<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    task: &DeliveryTask,
    claim: &Claim,
    state: DeliveryState,
    reason: Option<&str>,
) -> Result<(), StoreError>
where
    L: DeliveryLedger,
    C: Clock,
{
    let result = AttemptResult {
        attempt: None,
        state,
        next_attempt_at: None,
        reason: reason.map(str::to_owned),
        dead_letter_owed: false,
        now: deps.clock.now(),
    };
    deps.ledger
        .finish(&task.tenant, &task.delivery_id, &claim.token, &result)
        .await
}

/// Records a delivery that will not be attempted, and lets its message go.
async fn skip<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    task: &DeliveryTask,
    claim: &Claim,
    why: &str,
) -> Disposition
where
    L: DeliveryLedger,
    C: Clock,
{
    finish_unsent(deps, task, claim, DeliveryState::Skipped, why).await
}

async fn finish_unsent<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    task: &DeliveryTask,
    claim: &Claim,
    state: DeliveryState,
    why: &str,
) -> Disposition
where
    L: DeliveryLedger,
    C: Clock,
{
    match end_claim(deps, task, claim, state, Some(why)).await {
        // Conflict: another worker took the delivery over; it owns the outcome.
        Ok(()) | Err(StoreError::Conflict) if state == DeliveryState::Superseded => {
            Disposition::Superseded
        }
        Ok(()) | Err(StoreError::Conflict) => Disposition::Skipped(why.to_owned()),
        Err(e) => interrupted(format!("ledger: {e}")),
    }
}

/// Gives the claim back (pending, no attempt) after a failure of Herald's own; SQS hands
/// the message back shortly.
async fn release<S, L, E, Q, W, C>(
    deps: &DeliverDeps<S, L, E, Q, W, C>,
    task: &DeliveryTask,
    claim: &Claim,
    why: String,
) -> Disposition
where
    L: DeliveryLedger,
    C: Clock,
{
    if let Err(e) = end_claim(deps, task, claim, DeliveryState::Pending, None).await {
        tracing::warn!(delivery_id = %task.delivery_id, error = %e, "could not release a claim; its lease will lapse");
    }
    interrupted(why)
}

/// A failure of Herald's own: the message's visibility is shortened to
/// `INTERRUPTED_DELAY` with the batch's visibility changes, so SQS hands it back shortly.
fn interrupted(why: String) -> Disposition {
    tracing::error!(reason = %why, "delivery interrupted by a failure of Herald's own");
    Disposition::Interrupted(why)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
