//! A batch within its invocation's deadline: a record whose turn comes too late for its
//! attempt to end (and be recorded) before the invocation does is handed back at once,
//! unattempted, its claim given back, so the next invocation delivers it. Tokio's clock
//! is paused, so the receiver's pauses and the deadline are exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use herald_core::delivery::settings::{ClaimMode, DeliverySettings};
use herald_core::delivery::{DeliveryState, DeliveryTask};
use herald_core::ids::SubscriptionId;
use herald_core::ports::{OutgoingWebhook, SendOutcome, SubscriptionStore, WebhookSender};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, Disposition, process_batch_until};
use herald_testkit::{MemoryPortsWith, active_subscription, edit_subscription, paid_order_task};
use serde_json::json;
use tokio::time::Instant;

use super::CapturedLogs;

const SUBSCRIPTION: &str = "sub_01JD5Q8Z6X0000000000000009";
/// How long the receiver takes to answer each POST.
const ANSWER: Duration = Duration::from_secs(2);
/// The deployment's attempt timeout in these tests.
const TIMEOUT: Duration = Duration::from_secs(3);
/// What deliver keeps back after an attempt's timeout (`DEADLINE_MARGIN`).
const MARGIN: Duration = Duration::from_secs(5);

/// Answers 200 after `ANSWER`, counting the POSTs.
#[derive(Default)]
struct SlowReceiver {
    sent: AtomicUsize,
}

impl SlowReceiver {
    fn sent_count(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

impl WebhookSender for SlowReceiver {
    async fn send(&self, _webhook: OutgoingWebhook) -> SendOutcome {
        self.sent.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(ANSWER).await;
        SendOutcome::Answered {
            status: 200,
            retry_after: None,
            excerpt: String::new(),
            latency: ANSWER,
        }
    }
}

async fn deps(
    concurrency: usize,
    per_host: usize,
    claim: ClaimMode,
) -> Arc<DeliverDeps<MemoryPortsWith<SlowReceiver>>> {
    let deps = Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: herald_testkit::adapters_with(SlowReceiver::default()),
        settings: DeliverySettings {
            concurrency,
            per_host,
            timeout: TIMEOUT,
            claim,
            ..DeliverySettings::default()
        },
    });
    deps.ports
        .subscriptions
        .create(&active_subscription(
            "acme",
            SubscriptionId::parse(SUBSCRIPTION).unwrap(),
            SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
            &["order.*"],
        ))
        .await
        .unwrap();
    deps
}

/// `n` tasks of the one subscription.
fn tasks(n: usize) -> Vec<DeliveryTask> {
    (0..n)
        .map(|i| paid_order_task("acme", SUBSCRIPTION, &format!("ord_{i}")))
        .collect()
}

/// A batch of `tasks`' messages at the positions `which`, message ids `m-<position>`.
fn batch(tasks: &[DeliveryTask], which: impl IntoIterator<Item = usize>) -> SqsEvent {
    let records: Vec<_> = which
        .into_iter()
        .map(|i| {
            json!({
                "messageId": format!("m-{i}"),
                "receiptHandle": format!("r-{i}"),
                "body": tasks[i].to_message_body(),
                "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

/// The position a message id names.
fn position(message_id: &str) -> usize {
    message_id.trim_start_matches("m-").parse().unwrap()
}

fn deferred_ids(outcome: &herald_deliver::BatchOutcome) -> Vec<String> {
    outcome
        .reports
        .iter()
        .filter(|r| r.disposition == Disposition::Deferred)
        .map(|r| r.message_id.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn records_whose_turn_comes_too_late_are_handed_back_unattempted_and_delivered_next_time() {
    // Two POSTs to the host at once, two seconds each: waves start at 0, 2, 4, 6 s. With
    // 12.5 s left, an attempt (3 s) and the margin (5 s) fit at 0, 2 and 4 s, not at 6.
    let deps = deps(10, 2, ClaimMode::Lease).await;
    let tasks = tasks(10);
    let event = batch(&tasks, 0..10);
    let started = Instant::now();
    let deadline = started + TIMEOUT + MARGIN + Duration::from_millis(4_500);

    let outcome = process_batch_until(&deps, event, Some(deadline)).await;

    let delivered = outcome
        .reports
        .iter()
        .filter(|r| r.disposition == Disposition::Delivered)
        .count();
    let deferred = deferred_ids(&outcome);
    assert_eq!((delivered, deferred.len()), (6, 4), "{:?}", outcome.reports);
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "the batch ended once its last wave that fit was answered: {:?}",
        started.elapsed()
    );
    // Handed back (batch item failures), visible again at once.
    let failures: Vec<_> = outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failures, deferred);
    let hidden = deps.ports.queue.delayed();
    assert_eq!(hidden.len(), 4);
    assert!(
        hidden.iter().all(|c| c.delay == Duration::ZERO),
        "{hidden:?}"
    );
    // Not attempted, and their claims given back: pending, no attempt.
    for id in &deferred {
        let record = deps
            .ports
            .ledger
            .record(&tasks[position(id)].delivery_id)
            .unwrap();
        assert_eq!(record.state, DeliveryState::Pending);
        assert!(record.attempts.is_empty(), "{record:?}");
    }
    assert_eq!(deps.ports.sender.sent_count(), 6);

    // The next invocation, with its own time, delivers them (no lease keeps them away).
    let again = batch(&tasks, deferred.iter().map(|id| position(id)));
    let outcome =
        process_batch_until(&deps, again, Some(Instant::now() + Duration::from_secs(60))).await;
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.disposition == Disposition::Delivered),
        "{:?}",
        outcome.reports
    );
    assert_eq!(deps.ports.sender.sent_count(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_record_not_yet_started_when_time_runs_short_takes_no_claim() {
    // Two records at once (the batch's bound), the host unbounded: records start in
    // waves at 0, 2, 4 s; with 10.5 s left, the third wave (4 + 3 + 5 > 10.5) is handed
    // back before its claim.
    let deps = deps(2, 100, ClaimMode::Lease).await;
    let tasks = tasks(6);
    let event = batch(&tasks, 0..6);
    let deadline = Instant::now() + TIMEOUT + MARGIN + Duration::from_millis(2_500);

    let outcome = process_batch_until(&deps, event, Some(deadline)).await;

    let deferred = deferred_ids(&outcome);
    assert_eq!(deferred.len(), 2, "{:?}", outcome.reports);
    for id in &deferred {
        assert!(
            deps.ports
                .ledger
                .record(&tasks[position(id)].delivery_id)
                .is_none(),
            "no claim was written for {id}"
        );
    }
    assert_eq!(deps.ports.ledger.claims(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_invocation_shorter_than_one_attempt_defers_nothing() {
    // 4 s left cannot hold an attempt's 3 s and the 5 s margin even at the start: the
    // function's timeout is set below the deployment's attempt timeout. Deferring would
    // hand every record back for ever, so every record is attempted.
    let deps = deps(10, 2, ClaimMode::None).await;
    let event = batch(&tasks(6), 0..6);
    let deadline = Instant::now() + Duration::from_secs(4);
    let (logs, _capturing) = CapturedLogs::install(tracing::Level::INFO);

    let outcome = process_batch_until(&deps, event, Some(deadline)).await;

    assert!(deferred_ids(&outcome).is_empty(), "{:?}", outcome.reports);
    assert_eq!(deps.ports.sender.sent_count(), 6);
    // The operator is told why and what to change, once for the batch.
    let warnings = logs.at("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let message = warnings[0]["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("raise the function's timeout"),
        "{message}"
    );
    assert_eq!(warnings[0]["fields"]["timeout_s"], 3);
}

#[tokio::test(start_paused = true)]
async fn an_invocation_long_enough_for_its_attempts_warns_of_nothing() {
    let deps = deps(10, 10, ClaimMode::None).await;
    let event = batch(&tasks(3), 0..3);
    let deadline = Instant::now() + TIMEOUT + MARGIN + Duration::from_secs(1);
    let (logs, _capturing) = CapturedLogs::install(tracing::Level::INFO);

    let outcome = process_batch_until(&deps, event, Some(deadline)).await;

    assert!(deferred_ids(&outcome).is_empty(), "{:?}", outcome.reports);
    assert_eq!(logs.at("WARN"), Vec::<serde_json::Value>::new());
}

#[tokio::test(start_paused = true)]
async fn a_record_whose_query_and_post_cannot_both_end_in_time_is_handed_back_before_its_claim() {
    // The POST alone (3 s and the 5 s margin) fits in 12 s, the source's 10 s before it
    // does not: handed back unclaimed, its query not asked.
    let mut deps = Arc::into_inner(deps(10, 10, ClaimMode::Lease).await).unwrap();
    deps.graphql = herald_aws::graphql::GraphqlSource::new(
        herald_aws::graphql::GraphqlConfig {
            url: "http://127.0.0.1:9/graphql".parse().unwrap(),
            secret: None,
            timeout: Duration::from_secs(10),
            refresh: Duration::from_secs(300),
        },
        None,
    )
    .unwrap();
    let tenant = herald_core::ids::TenantId::parse("acme").unwrap();
    let id = SubscriptionId::parse(SUBSCRIPTION).unwrap();
    edit_subscription(&deps.ports.subscriptions, &tenant, &id, |subscription| {
        subscription.query = herald_core::subscription::parse_query(Some(
            &json!({"text": "query { shop { name } }"}),
        ))
        .unwrap();
    })
    .await;
    let deps = Arc::new(deps);
    let tasks = tasks(1);
    let deadline = Instant::now() + Duration::from_secs(12);

    let outcome = process_batch_until(&deps, batch(&tasks, 0..1), Some(deadline)).await;

    assert_eq!(outcome.reports[0].disposition, Disposition::Deferred);
    assert!(deps.ports.ledger.record(&tasks[0].delivery_id).is_none());
    assert_eq!(deps.ports.sender.sent_count(), 0);
}
