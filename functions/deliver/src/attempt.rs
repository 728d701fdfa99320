//! One record's delivery, in stages that each hand the next a value:
//! claim (the delivery is ours for a lease) → check (its subscription still wants it) →
//! send (the signed POST) → record (the decision, written with the attempt). A stage that
//! ends the record early answers its disposition instead. The decision itself is
//! `herald_core::delivery::decide`, a pure function.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use chrono::Utc;
use futures::FutureExt;
use futures::future::Either;
use herald_aws::graphql::SourceError;
use herald_core::delivery::decide::{
    GONE_REASON, Verdict, decide, window_spent, within_message_life, within_receive_limit,
};
use herald_core::delivery::settings::{ClaimMode, SLOW_HOLD};
use herald_core::delivery::{
    Attempt, AttemptError, DeliveryRecord, DeliveryState, DeliveryTask, Lane,
};
use herald_core::event::Event;
use herald_core::ids::TenantId;
use herald_core::ports::{
    AttemptResult, Claim, ClaimOutcome, Clock, DeliveryLedger, DeliveryQueue, EventLog, KeyStore,
    Ports, Reopens, SendOutcome, StoreError, SubscriptionStore, WebhookSender,
};
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::system_events;
use herald_core::trace::Span;
use herald_core::webhook::build;
use herald_core::webhook::keys::SigningKeys;
use rand::Rng;

use crate::DeliverDeps;
use crate::batch::{BatchShared, Subscriptions};
use crate::health;
use crate::report::Disposition;
use crate::settle::interrupted;

/// What came of a record: its disposition, where it was to go, and the attempt made.
pub(crate) struct Outcome {
    pub(crate) disposition: Disposition,
    pub(crate) url: Option<String>,
    pub(crate) attempt: Option<Attempt>,
}

impl Outcome {
    fn unsent(disposition: Disposition, url: Option<&Subscription>) -> Self {
        Self {
            disposition,
            url: url.map(|s| s.url.as_str().to_owned()),
            attempt: None,
        }
    }
}

/// The delivery, claimed: the claim that must still hold when its outcome is written, and
/// the record as it stood.
struct Claimed {
    claim: Claim,
    record: DeliveryRecord,
    taken: Taken,
}

/// How a delivery was taken for its attempt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Taken {
    /// With a lease (a conditional write).
    Leased,
    /// Found absent by a read (`ClaimMode::Read`): the attempt's outcome makes the record.
    Read,
    /// With neither a write nor a read (`ClaimMode::None`, a message handed out for the
    /// first time): the outcome makes the record unless it is a success.
    Unread,
}

/// An attempt made: what it recorded, what the receiver did, and when it ended.
struct Sent {
    attempt: Attempt,
    outcome: SendOutcome,
    finished_at: DateTime<Utc>,
}

/// How SQS handed a record over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received {
    /// How many times SQS has handed the message out, this time included.
    pub(crate) count: u32,
    /// Moved back from the dead-letter queue by an operator: it carries the attributes of
    /// Herald's dead letters (`DeadLetter::REASON_ATTRIBUTE`), which only a redrive brings
    /// onto the delivery queue.
    pub(crate) redriven: bool,
    /// When the message was sent (`SentTimestamp`): SQS deletes it 14 days after.
    pub(crate) sent_at: Option<DateTime<Utc>>,
}

impl Received {
    /// The finished deliveries the record's claim takes again: any for a forced
    /// redelivery, a failed one for a redriven dead letter, none otherwise.
    fn reopens(self, task: &DeliveryTask) -> Reopens {
        if task.forced {
            Reopens::Any
        } else if self.redriven {
            Reopens::Failed
        } else {
            Reopens::Nothing
        }
    }
}

/// The stages' spans, kept when the task's trace is recorded (`None` otherwise): each is
/// a subsegment of the delivery's segment (`crate::batch`).
pub(crate) type Spans = Option<Vec<Span>>;

/// Runs `work` as the span `name` when spans are kept, the span begun now: awaited at
/// once where it is made.
///
/// A combinator rather than an `async fn`: an `async fn`'s state keeps a future it is
/// given apart from the one it awaits, so every stage wrapped in it took twice its size
/// in the record's future, which each record of a batch allocates and moves whole
/// (docs/PERFORMANCE.md, "A record's future").
fn timed<'a, T>(
    clock: &'a impl Clock,
    spans: &'a mut Spans,
    name: &str,
    work: impl Future<Output = T> + 'a,
) -> impl Future<Output = T> + 'a {
    let begun = spans
        .is_some()
        .then(|| Span::begin(name, clock.now(), &mut rand::rng()));
    work.map(move |out| {
        if let (Some(spans), Some(mut span)) = (spans.as_mut(), begun) {
            span.end(clock.now());
            spans.push(span);
        }
        out
    })
}

pub(crate) async fn deliver<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    task: &DeliveryTask,
    received: Received,
    spans: &mut Spans,
) -> Outcome {
    // A task whose subscription is gone (deleted, or its tenant erased) is let go before
    // any claim, so nothing of it is recorded (docs/DECISIONS.md, "Erasure").
    let key = (task.tenant.clone(), task.subscription_id.clone());
    match shared.subscriptions.get(&key) {
        Some(Ok(None)) => {
            return Outcome::unsent(Disposition::Skipped("subscription deleted".into()), None);
        }
        Some(Ok(Some(subscription))) => {
            // Disabled by this delivery's own attempt, and its message seen again: the
            // disabling's announcement may have failed after the disable, so it is made
            // again (the same event: a repeat if it was made). Handed back if it fails.
            // Only this delivery's messages come here (the disabling keeps its id), so only
            // they ever repeat it.
            if health::disabled_by(subscription, task) {
                let announcing = Box::pin(health::announce_own(deps, task, subscription));
                if let Err(why) = announcing.await {
                    return Outcome::unsent(interrupted(why), Some(subscription));
                }
            }
            // Its receivers were found slow: its tasks take the slow lane, unattempted here.
            // Not a redriven dead letter: only this message carries the operator's redrive
            // (its attributes), which a copy would lose, and then find the delivery failed
            // and be let go. It is claimed here, which reopens the delivery; a cut attempt's
            // copy on the slow lane then finds it pending.
            if task.lane() == Lane::Standard
                && !received.redriven
                && deps.settings.slow_after.is_some()
                && subscription.is_slow(deps.ports.clock.now())
            {
                return Outcome::unsent(to_slow_lane(deps, task).await, Some(subscription));
            }
            // Too late in the invocation for an attempt to end in it (its query, if it
            // has one, and its POST): handed back before any claim or rate-limit ticket.
            let query = match subscription.query {
                Some(_) => deps.graphql.timeout(),
                None => Duration::ZERO,
            };
            if shared.too_late_for(query + attempt_limit(deps, task, subscription)) {
                return Outcome::unsent(Disposition::Deferred, Some(subscription));
            }
            if let Err(disposition) = within_rate(deps, task, subscription, received).await {
                return Outcome::unsent(disposition, Some(subscription));
            }
        }
        // Not readable: the claim and check below say so.
        _ => {}
    }
    let claimed = match timed(
        &deps.ports.clock,
        spans,
        "claim",
        claim(deps, task, received),
    )
    .await
    {
        Ok(claimed) => claimed,
        Err(disposition) => {
            let disposition = seen_again(deps, shared, task, received, disposition).await;
            return Outcome::unsent(disposition, None);
        }
    };
    let subscription = match check(deps, &shared.subscriptions, task, &claimed).await {
        Ok(subscription) => subscription,
        Err((disposition, subscription)) => return Outcome::unsent(disposition, subscription),
    };
    // A claim check's event is read back now that it is to be sent.
    let whole;
    let task = match &task.stored {
        None => task,
        Some(fingerprint) => {
            let read = stored_event(deps, shared, task, fingerprint, &claimed);
            match timed(&deps.ports.clock, spans, "event", read).await {
                Ok(event) => {
                    whole = task.with_event(event);
                    &whole
                }
                Err(disposition) => return Outcome::unsent(disposition, Some(subscription)),
            }
        }
    };
    let sent = match send(deps, shared, task, subscription, &claimed, spans).await {
        Ok(sent) => sent,
        Err(disposition) => return Outcome::unsent(disposition, Some(subscription)),
    };
    let recording = record(deps, task, subscription, &claimed, &sent, received);
    let disposition = timed(&deps.ports.clock, spans, "record", recording).await;
    Outcome {
        disposition,
        url: Some(subscription.url.as_str().to_owned()),
        attempt: Some(sent.attempt),
    }
}

/// A delivery found failed by the claim, its message handed out before: its attempt may
/// have disabled the subscription (a 410, or failing too long) and not announced it yet.
/// The batch's copy of the subscription shows such a disabling (`deliver` announced it
/// then); a copy that says active may have been read before it, and then the store is
/// asked. A failed delivery's message is seldom seen again, so this read is seldom made.
async fn seen_again<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    task: &DeliveryTask,
    received: Received,
    disposition: Disposition,
) -> Disposition {
    let failed = matches!(
        disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed) | Disposition::OwedDeadLetter(_)
    );
    if !failed || received.count <= 1 {
        return disposition;
    }
    let key = (task.tenant.clone(), task.subscription_id.clone());
    if let Some(Ok(Some(copy))) = shared.subscriptions.get(&key)
        && copy.status == SubscriptionStatus::Disabled
    {
        return disposition;
    }
    match Box::pin(health::announce_own_as_stored(deps, task)).await {
        Ok(()) => disposition,
        Err(why) => interrupted(why),
    }
}

/// Queues a copy of `task` on the slow lane; the message it came in is then let go.
async fn to_slow_lane<P: Ports>(deps: &DeliverDeps<P>, task: &DeliveryTask) -> Disposition {
    let copy = DeliveryTask {
        slow: true,
        ..task.clone()
    };
    match deps.ports.queue.enqueue(std::slice::from_ref(&copy)).await {
        Ok(()) => Disposition::ToSlowLane,
        Err(e) => interrupted(format!("slow lane: {e}")),
    }
}

/// An active subscription's rate limit: the record takes a ticket of this second's window
/// (before its claim, so a wait costs that one write) and waits for its window when the
/// ticket is past the limit. A message at the queue's last receive goes regardless: a
/// wait would hand it to the dead-letter queue unattempted.
async fn within_rate<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
    received: Received,
) -> Result<(), Disposition> {
    let Some(limit) = subscription.rate_limit else {
        return Ok(());
    };
    if subscription.status != SubscriptionStatus::Active
        || received.count >= deps.settings.max_receives
    {
        return Ok(());
    }
    let second = deps.ports.clock.now().timestamp();
    match deps
        .ports
        .ledger
        .take_ticket(&task.tenant, &task.subscription_id, second)
        .await
    {
        Ok(ticket) => match limit.wait_for(ticket) {
            None => Ok(()),
            Some(wait) => Err(Disposition::RateLimited(wait)),
        },
        Err(e) => Err(interrupted(format!("rate limit: {e}"))),
    }
}

/// Takes the delivery for a lease; a finished, leased or unreachable one ends here. With
/// `ClaimMode::Read`, a delivery with no record yet is taken by reading that there is
/// none, and its outcome makes the record; with `ClaimMode::None`, a message on the
/// standard lane handed out for the first time is taken without the read, and only an
/// outcome other than success makes the record (docs/DECISIONS.md, "Writes per
/// delivery").
async fn claim<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    received: Received,
) -> Result<Claimed, Disposition> {
    let settings = &deps.settings;
    let reopens = received.reopens(task);
    let now = deps.ports.clock.now();
    let claim = Claim {
        reopens,
        token: format!("{:032x}", rand::rng().random::<u128>()),
        now,
        lease_until: now + to_chrono(settings.lease),
        expires_at: now + to_chrono(settings.retention),
    };
    if settings.claim != ClaimMode::Lease && reopens == Reopens::Nothing {
        // A first hand-out of a message on the standard lane: a retry is the same message
        // handed out again, and a slow lane's or an ordered line's task may follow a
        // recorded attempt. Herald's own events (a test event, whose sender watches for
        // its record; a disable's notice) are always recorded.
        if settings.claim == ClaimMode::None
            && received.count <= 1
            && task.lane() == Lane::Standard
            && !system_events::is_reserved(task.event.event_type.as_str())
        {
            let record = DeliveryRecord::pending(task, now, claim.expires_at);
            return Ok(Claimed {
                claim,
                record,
                taken: Taken::Unread,
            });
        }
        match deps
            .ports
            .ledger
            .get(&task.tenant, &task.delivery_id, now)
            .await
        {
            Ok(None) => {
                let record = DeliveryRecord::pending(task, now, claim.expires_at);
                return Ok(Claimed {
                    claim,
                    record,
                    taken: Taken::Read,
                });
            }
            // Attempted before, finished, or leased: taken as a lease takes it.
            Ok(Some(_)) => {}
            Err(e) => return Err(interrupted(format!("ledger: {e}"))),
        }
    }
    match deps.ports.ledger.claim(task, &claim).await {
        Ok(ClaimOutcome::Claimed(record)) => Ok(Claimed {
            claim,
            record,
            taken: Taken::Leased,
        }),
        // Failed earlier, but its dead letter was refused: this copy sends it.
        Ok(ClaimOutcome::Finished(record)) if record.owes_dead_letter() => {
            let attempts = record.attempt_count();
            let reason = record.reason.unwrap_or_else(|| window_spent(attempts));
            Err(Disposition::OwedDeadLetter(reason))
        }
        Ok(ClaimOutcome::Finished(record)) => Err(Disposition::AlreadyFinished(record.state)),
        Ok(ClaimOutcome::Leased { until }) => {
            let wait = (until - now).to_std().unwrap_or_default() + Duration::from_secs(1);
            Err(Disposition::Leased(wait))
        }
        Err(e) => Err(interrupted(format!("ledger: {e}"))),
    }
}

/// The subscription the delivery is for, if it still wants it: not disabled or deleted,
/// and (when it wants only the newest event about a subject) this is the newest.
async fn check<'a, P: Ports>(
    deps: &DeliverDeps<P>,
    subscriptions: &'a Subscriptions,
    task: &DeliveryTask,
    claimed: &Claimed,
) -> Result<&'a Subscription, (Disposition, Option<&'a Subscription>)> {
    let key = (task.tenant.clone(), task.subscription_id.clone());
    let subscription = match subscriptions.get(&key) {
        Some(Ok(Some(s))) if s.status == SubscriptionStatus::Active => s,
        Some(Ok(Some(_))) => {
            let disposition = finish_unsent(
                deps,
                task,
                claimed,
                DeliveryState::Skipped,
                "subscription disabled",
            )
            .await;
            return Err((disposition, None));
        }
        Some(Ok(None)) | None => {
            let disposition = finish_unsent(
                deps,
                task,
                claimed,
                DeliveryState::Skipped,
                "subscription deleted",
            )
            .await;
            return Err((disposition, None));
        }
        Some(Err(e)) => {
            let disposition = release(deps, task, claimed, format!("subscriptions: {e}")).await;
            return Err((disposition, None));
        }
    };
    // A redelivery an operator asked for (forced or redriven) is sent all the same.
    // Otherwise the event is noted as the newest about its subject before it is sent, in
    // the call that finds a newer one: an older delivery still waiting, seen after this
    // one is sent, is superseded whether or not its publish got to note it (publish notes
    // only once its tasks are queued).
    if subscription.supersede
        && task.event.subject.is_some()
        && claimed.claim.reopens == Reopens::Nothing
    {
        match deps
            .ports
            .events
            .note_latest(
                &task.tenant,
                &task.subscription_id,
                &task.event,
                claimed.claim.now,
            )
            .await
        {
            // Only another event supersedes it: its own, recorded at a later time, is
            // the same event published again.
            Ok(Some(newest)) if task.event.superseded_by(&newest) => {
                let why = "a newer event about the same subject was queued";
                let disposition =
                    finish_unsent(deps, task, claimed, DeliveryState::Superseded, why).await;
                return Err((disposition, Some(subscription)));
            }
            Ok(_) => {}
            Err(e) => {
                let disposition = release(deps, task, claimed, format!("events: {e}")).await;
                return Err((disposition, Some(subscription)));
            }
        }
    }
    Ok(subscription)
}

/// The event a claim check names, read from the events table: the one queued, known by
/// its fingerprint. One no longer kept (its retention passed, or its tenant erased it)
/// cannot be sent, and the delivery ends skipped; one that cannot be read waits. The
/// batch reads each event once for all its records that name it.
async fn stored_event<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    task: &DeliveryTask,
    fingerprint: &str,
    claimed: &Claimed,
) -> Result<Arc<Event>, Disposition> {
    let now = claimed.claim.now;
    let events = &deps.ports.events;
    let read = |consistent: bool| async move {
        if consistent {
            events.load(&task.tenant, &task.event.id, now).await
        } else {
            events
                .load_eventually(&task.tenant, &task.event.id, now)
                .await
        }
    };
    match shared.events.get(task, fingerprint, read).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => {
            let why = "the event is no longer kept (its retention passed or it was erased)";
            Err(finish_unsent(deps, task, claimed, DeliveryState::Skipped, why).await)
        }
        Err(e) => Err(release(deps, task, claimed, format!("events: {e}")).await),
    }
}

/// The keys that sign `tenant`'s deliveries at `now`: the deployment's (when its own do
/// not yet suffice) and its own, built for this moment.
async fn signing_keys<P: Ports>(
    deps: &DeliverDeps<P>,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<(Option<Arc<SigningKeys>>, Option<SigningKeys>), String> {
    let own = deps
        .signers
        .signer(&deps.ports.subscriptions, tenant)
        .await?;
    let deployment = match &own {
        Some(signer) if !signer.needs_deployment(now) => None,
        _ => Some(deps.ports.keys.current().await.map_err(|e| e.to_string())?),
    };
    let offer = deps.ports.keys.offer();
    let own = own.map(|signer| signer.keys(now, deployment.as_deref(), offer.rsa_headers()));
    Ok((deployment, own))
}

/// The signed POST, within the batch's bound on the receiver's host.
async fn send<P: Ports>(
    deps: &DeliverDeps<P>,
    shared: &BatchShared,
    task: &DeliveryTask,
    subscription: &Subscription,
    claimed: &Claimed,
    spans: &mut Spans,
) -> Result<Sent, Disposition> {
    let now = claimed.claim.now;
    let number = claimed.record.attempt_count() + 1;
    // A secret or header value still sealed (a deployment whose deliver was not given the
    // key that sealed it) would send an unsigned or wrong request: released instead, it
    // waits for the key, like a signing key that cannot be read.
    if subscription.has_sealed_values() {
        return Err(release(
            deps,
            task,
            claimed,
            "sealed secrets: deliver has no key to open them (HERALD_SECRETS_KEY)".into(),
        )
        .await);
    }
    // Asymmetric signatures need the tenant's own keys (`herald_core::webhook::tenant_keys`)
    // and, for a tenant without any or none in force yet, the deployment's, read when
    // first needed. Keys that cannot be read or opened send nothing: released, the
    // delivery waits for them.
    let (deployment_keys, tenant_keys) =
        if subscription.signatures.ed25519 || subscription.signatures.rsa {
            match signing_keys(deps, &task.tenant, now).await {
                Ok(keys) => keys,
                Err(why) => {
                    return Err(release(deps, task, claimed, format!("signing keys: {why}")).await);
                }
            }
        } else {
            (None, None)
        };
    let keys = tenant_keys.as_ref().or(deployment_keys.as_deref());
    // The attempt made, whatever came of it. Marked `forced`: made outside the schedule,
    // at an operator's request.
    let sent = |outcome: SendOutcome| Sent {
        attempt: Attempt::of(
            number,
            now,
            claimed.claim.reopens != Reopens::Nothing,
            &outcome,
        ),
        outcome,
        finished_at: deps.ports.clock.now(),
    };
    // A payload built by the subscription's query: asked of the source first; a failure
    // there is this attempt's, retried like any other, with nothing POSTed.
    let queried = match &subscription.query {
        None => None,
        Some(query) => {
            let variables = query.bind(&task.event, &task.tenant);
            let started = std::time::Instant::now();
            // Boxed: the source's request is the largest state a record can be in, and
            // few subscriptions have a query, so held inline it would make every
            // record's future (a batch holds one a record) a third larger
            // (docs/PERFORMANCE.md, "A record's future").
            let running = Box::pin(deps.graphql.execute(&task.tenant, query.text(), &variables));
            match timed(&deps.ports.clock, spans, "GraphQL", running).await {
                Ok(result) => Some(result),
                Err(e) => {
                    let outcome = SendOutcome::Failed {
                        error: match e {
                            SourceError::Timeout(_) => AttemptError::GraphqlTimeout,
                            _ => AttemptError::Graphql,
                        },
                        detail: e.to_string(),
                        latency: started.elapsed(),
                    };
                    if let Some(span) = spans.as_mut().and_then(|spans| spans.last_mut()) {
                        span.set("fault", true.into());
                    }
                    return Ok(sent(outcome));
                }
            }
        }
    };
    let webhook = build::build(
        task,
        subscription,
        queried.as_ref(),
        keys,
        &deps.settings.idempotency_key_prefix,
        now,
    );
    let permit = shared.hosts.acquire(webhook.url.host()).await;
    // Its turn came after the POSTs ahead of it to the same host: if an attempt begun
    // now could not end before the invocation does, it is handed back unattempted.
    if shared.too_late_for(attempt_limit(deps, task, subscription)) {
        drop(permit);
        return Err(defer(deps, task, claimed).await);
    }
    // The span names the receiver by its origin alone: a path or query can hold a token.
    // Only written when spans are kept.
    let origin = spans
        .is_some()
        .then(|| webhook.url.url().origin().ascii_serialization());
    // On the standard lane, an answer slower than the slow lane's threshold is not waited
    // for: the request is cut and the delivery sent again on the slow lane, so slow
    // receivers do not hold the standard lane's capacity (docs/DECISIONS.md, "Slow
    // receivers").
    let cut_after = cut_after(deps, task);
    let sending = deps.ports.sender.send(webhook);
    // Combinators, not an `async` block: a block would keep `sending` apart from the
    // future it awaits, twice the sender's future in the record's (`timed`).
    let posting = match cut_after {
        None => Either::Left(sending),
        Some(after) => Either::Right(tokio::time::timeout(after, sending).map(move |answered| {
            answered.unwrap_or_else(|_| SendOutcome::Failed {
                error: AttemptError::SlowLane,
                detail: format!(
                    "no answer within {}s on the standard lane: sent again on the slow lane",
                    after.as_secs()
                ),
                latency: after,
            })
        })),
    };
    let outcome = timed(&deps.ports.clock, spans, "POST", posting).await;
    drop(permit);
    if let (Some(span), Some(origin)) = (spans.as_mut().and_then(|spans| spans.last_mut()), origin)
    {
        describe_post(span, &origin, &outcome);
    }
    Ok(sent(outcome))
}

/// The POST's span as X-Ray describes a call out: a remote call, its request, and the
/// answer's status; a 4xx is an `error`, a 5xx or no answer a `fault`.
fn describe_post(span: &mut Span, origin: &str, outcome: &SendOutcome) {
    let mut http = serde_json::json!({"request": {"method": "POST", "url": origin}});
    span.set("namespace", "remote".into());
    match outcome {
        SendOutcome::Answered { status, .. } => {
            http["response"] = serde_json::json!({ "status": status });
            if (400..500).contains(status) {
                span.set("error", true.into());
            } else if *status >= 500 {
                span.set("fault", true.into());
            }
        }
        SendOutcome::Failed { error, .. } => {
            span.set("fault", true.into())
                .annotate("error", error.code());
        }
    }
    span.set("http", http);
}

/// Decides what follows the attempt and writes it with the attempt, while the claim
/// holds; a `410` disables the subscription first, and the subscription's health is
/// tracked after.
async fn record<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
    claimed: &Claimed,
    sent: &Sent,
    received: Received,
) -> Disposition {
    if sent.attempt.error == Some(AttemptError::SlowLane) {
        return cut_to_slow_lane(deps, task, claimed, sent).await;
    }
    if task.lane() == Lane::Slow
        && let Some(after) = deps.settings.slow_after
        && sent.attempt.latency_ms >= after.as_millis() as u64
        && subscription.slow_mark_moves(sent.finished_at + to_chrono(SLOW_HOLD))
    {
        // Still slow on the slow lane: the mark is kept (written about once a minute;
        // the copy in hand says when, so most slow answers cost no store call).
        mark_slow(deps, task, sent.finished_at).await;
    }
    let jitter = rand::rng().random_range(-1.0..=1.0);
    // The subscription's own policy (checked when it was set), else the deployment's.
    let own = subscription
        .retry
        .as_ref()
        .and_then(|spec| spec.check(None).ok());
    let policy = own.as_ref().unwrap_or(&deps.settings.retry);
    // The schedule's count, not the log's: an attempt cut to move the delivery to the slow
    // lane is followed by this one at once, so it takes no step of the schedule (a first
    // retry waits the schedule's first delay).
    let decided = decide(
        &sent.outcome,
        claimed.record.scheduled_attempt_count() + 1,
        claimed.record.first_attempt_at,
        sent.finished_at,
        policy,
        jitter,
    );
    let decision = within_message_life(
        within_receive_limit(decided, received.count, deps.settings.max_receives),
        received.sent_at,
        sent.finished_at,
    );
    // A 410 disables the subscription, and the disabling is announced, before the outcome
    // is written: a write that fails then loses nothing. Only the delivery whose disable
    // the store took announces it (others racing to disable it find it done); when the
    // announcement fails, the outcome is written all the same and the record handed back,
    // so its message, seen again, announces it (`deliver`).
    let mut unannounced = None;
    if decision.verdict == Verdict::Gone {
        let why = decision.reason.as_deref().unwrap_or(GONE_REASON);
        let disabling = match deps
            .ports
            .subscriptions
            .disable(
                &task.tenant,
                &task.subscription_id,
                why,
                sent.finished_at,
                &task.delivery_id,
            )
            .await
        {
            Ok(disabling) => disabling,
            Err(e) => return release(deps, task, claimed, format!("subscriptions: {e}")).await,
        };
        unannounced = Box::pin(health::announce_disabling(deps, task, &disabling))
            .await
            .err();
    }
    let result = AttemptResult {
        attempt: Some(sent.attempt.clone()),
        state: decision.state,
        next_attempt_at: decision.next_attempt_at,
        reason: decision.reason.clone(),
        // In the same write, so a delivery that succeeds costs nothing more.
        dead_letter_owed: decision.verdict == Verdict::GiveUp,
        now: sent.finished_at,
    };
    // Taken unread (`ClaimMode::None`), a success is not recorded: one write fewer.
    let recorded = !(claimed.taken == Taken::Unread && decision.verdict == Verdict::Delivered);
    if recorded && let Err(disposition) = write_attempt(deps, task, claimed, &result).await {
        return disposition;
    }
    if let Some(why) = unannounced {
        return interrupted(why);
    }
    if decision.verdict != Verdict::Gone
        && !sent.attempt.error.is_some_and(AttemptError::spares_health)
    {
        // A failure at Herald's GraphQL source, or a cut to the slow lane, says nothing
        // of the receiver's health. A disable for failing too long that could not be
        // announced hands the record back, like a 410's.
        let succeeded = decision.state == DeliveryState::Delivered;
        let tracking = health::track(deps, task, subscription, succeeded, sent.finished_at);
        if let Err(why) = Box::pin(tracking).await {
            return interrupted(why);
        }
    }
    match decision.verdict {
        Verdict::Delivered => Disposition::Delivered,
        Verdict::Gone => Disposition::Gone,
        Verdict::RetryIn(delay) => Disposition::RetryIn(delay),
        Verdict::GiveUp => Disposition::Failed(decision.reason.unwrap_or_default()),
    }
}

/// Writes the attempt and what follows it while the claim holds; the disposition when
/// it cannot be written.
async fn write_attempt<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    result: &AttemptResult,
) -> Result<(), Disposition> {
    match write(deps, task, claimed, result).await {
        Ok(()) => Ok(()),
        // Another worker took the delivery over after our lease ran out; it owns the outcome.
        Err(StoreError::Conflict) => Err(Disposition::AlreadyFinished(DeliveryState::Delivering)),
        Err(e) => Err(interrupted(format!("ledger: {e}"))),
    }
}

/// Marks the task's subscription slow for `SLOW_HOLD` from `at`. Best effort: a mark
/// not written only means the next task is tried on the standard lane and cut again.
async fn mark_slow<P: Ports>(deps: &DeliverDeps<P>, task: &DeliveryTask, at: DateTime<Utc>) {
    let until = at + to_chrono(SLOW_HOLD);
    if let Err(e) = deps
        .ports
        .subscriptions
        .mark_slow(&task.tenant, &task.subscription_id, until)
        .await
    {
        tracing::warn!(subscription = %task.subscription_id, error = %e, "could not mark the subscription slow");
    }
}

/// An attempt cut on the standard lane: the subscription is marked slow (its next tasks
/// take the slow lane from the start), the attempt recorded with the delivery left
/// pending, and a copy queued on the slow lane at once. Should the copy not be queued,
/// the message comes back in a second and, the subscription marked, goes then.
async fn cut_to_slow_lane<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    sent: &Sent,
) -> Disposition {
    mark_slow(deps, task, sent.finished_at).await;
    let result = AttemptResult {
        attempt: Some(sent.attempt.clone()),
        state: DeliveryState::Pending,
        next_attempt_at: Some(sent.finished_at),
        reason: None,
        dead_letter_owed: false,
        now: sent.finished_at,
    };
    if let Err(disposition) = write_attempt(deps, task, claimed, &result).await {
        return disposition;
    }
    match to_slow_lane(deps, task).await {
        Disposition::Interrupted(why) => {
            tracing::warn!(delivery_id = %task.delivery_id, reason = %why, "could not queue on the slow lane; back in a second");
            Disposition::RetryIn(Duration::from_secs(1))
        }
        moved => moved,
    }
}

/// Writes `result` as the claim allows: on its lease, or by making the record.
async fn write<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    result: &AttemptResult,
) -> Result<(), StoreError> {
    let ledger = &deps.ports.ledger;
    if claimed.taken == Taken::Leased {
        let token = &claimed.claim.token;
        ledger
            .finish(&task.tenant, &task.delivery_id, token, result)
            .await
    } else {
        ledger.record_first(task, &claimed.claim, result).await
    }
}

/// Ends a claim without an attempt: in `state`, with `reason`.
async fn end_claim<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    state: DeliveryState,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    // Nothing was written to give back: the delivery is as the read found it.
    if claimed.taken != Taken::Leased && state == DeliveryState::Pending {
        return Ok(());
    }
    let result = AttemptResult {
        attempt: None,
        state,
        next_attempt_at: None,
        reason: reason.map(str::to_owned),
        dead_letter_owed: false,
        now: deps.ports.clock.now(),
    };
    write(deps, task, claimed, &result).await
}

/// Records a delivery that will not be attempted (skipped or superseded), and lets its
/// message go.
async fn finish_unsent<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    state: DeliveryState,
    why: &str,
) -> Disposition {
    match end_claim(deps, task, claimed, state, Some(why)).await {
        // Conflict: another worker took the delivery over; it owns the outcome.
        Ok(()) | Err(StoreError::Conflict) if state == DeliveryState::Superseded => {
            Disposition::Superseded
        }
        Ok(()) | Err(StoreError::Conflict) => Disposition::Skipped(why.to_owned()),
        Err(e) => interrupted(format!("ledger: {e}")),
    }
}

/// The longest an attempt of `task` may wait for its answer: its subscription's limit or
/// the deployment's, and on the standard lane no longer than the slow lane's threshold.
fn attempt_limit<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    subscription: &Subscription,
) -> Duration {
    let limit = subscription.timeout.map_or(deps.settings.timeout, |t| {
        t.get().min(deps.settings.timeout)
    });
    cut_after(deps, task).map_or(limit, |after| limit.min(after))
}

/// How long an attempt of `task` waits before it is cut and sent on the slow lane: on the
/// standard lane, the slow lane's threshold (docs/DECISIONS.md, "Slow receivers").
fn cut_after<P: Ports>(deps: &DeliverDeps<P>, task: &DeliveryTask) -> Option<Duration> {
    match task.lane() {
        Lane::Standard => deps.settings.slow_after,
        Lane::Slow | Lane::Ordered => None,
    }
}

/// Gives the claim back (pending, no attempt) for a record whose turn came too late in
/// the invocation; SQS hands its message back at once. Not a failure: a lease that could
/// not be given back lapses, and the copy that comes back waits for it.
async fn defer<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
) -> Disposition {
    if let Err(e) = end_claim(deps, task, claimed, DeliveryState::Pending, None).await {
        tracing::warn!(delivery_id = %task.delivery_id, error = %e, "could not give back a deferred delivery's claim; its lease will lapse");
    }
    Disposition::Deferred
}

/// Gives the claim back (pending, no attempt) after a failure of Herald's own; SQS hands
/// the message back shortly.
async fn release<P: Ports>(
    deps: &DeliverDeps<P>,
    task: &DeliveryTask,
    claimed: &Claimed,
    why: String,
) -> Disposition {
    if let Err(e) = end_claim(deps, task, claimed, DeliveryState::Pending, None).await {
        tracing::warn!(delivery_id = %task.delivery_id, error = %e, "could not release a claim; its lease will lapse");
    }
    interrupted(why)
}

pub(crate) fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// A clock a second later each time it is read.
    struct Ticking(AtomicI64);

    impl Clock for Ticking {
        fn now(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(1_700_000_000 + self.0.fetch_add(1, Ordering::SeqCst), 0)
                .unwrap()
        }
    }

    /// A stage that holds `N` bytes across its await, as a store's or the sender's
    /// future holds its request.
    async fn holding<const N: usize>() -> usize {
        let held = [1u8; N];
        tokio::task::yield_now().await;
        held.iter().map(|&b| usize::from(b)).sum()
    }

    #[test]
    fn a_timed_stage_takes_no_more_room_than_its_work() {
        let clock = Ticking(AtomicI64::new(0));
        for mut spans in [Some(Vec::new()), None] {
            let work = holding::<4096>();
            let work_bytes = std::mem::size_of_val(&work);
            let stage = timed(&clock, &mut spans, "claim", work);
            // The work, the span begun, and the references: not the work twice.
            let room = std::mem::size_of_val(&stage);
            assert!(
                room < work_bytes + 2 * std::mem::size_of::<Span>(),
                "a stage of {work_bytes} bytes took {room} timed"
            );
        }
    }

    #[tokio::test]
    async fn a_timed_stage_is_a_span_from_its_start_to_its_end_when_spans_are_kept() {
        let clock = Ticking(AtomicI64::new(0));
        let mut spans: Spans = Some(Vec::new());
        assert_eq!(timed(&clock, &mut spans, "POST", holding::<8>()).await, 8);
        let spans = spans.unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, "POST");
        assert_eq!((spans[0].end - spans[0].start).num_seconds(), 1);

        let mut none: Spans = None;
        assert_eq!(timed(&clock, &mut none, "POST", holding::<8>()).await, 8);
        assert!(none.is_none());
        // Unkept, the clock is not read.
        assert_eq!(clock.0.load(Ordering::SeqCst), 2);
    }
}
