//! The deliver handler on in-memory ports, fed with the SQS events in `events/`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_aws::cache::CachedSubscriptions;
use herald_core::delivery::retry::{RetryPolicy, RetrySpec};
use herald_core::delivery::settings::DeliverySettings;
use herald_core::delivery::{
    AttemptError, DeadLetterMark, DeliveryState, DeliveryTask, decode_message,
};
use herald_core::event::{Event, EventType};
use herald_core::ids::{EventId, SubscriptionId, TenantId};
use herald_core::ports::{Adapters, DeadLetter, Ports};
use herald_core::ports::{Clock, SendOutcome, SubscriptionStore};
use herald_core::subscription::SubscriptionStatus;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_core::webhook::keys::SigningKeys;
use herald_core::webhook::sign::WebhookSecret;
use herald_deliver::{DeliverDeps, Disposition, process_batch};
use herald_testkit::{
    FixedClock, InMemoryDeliveryLedger, InMemoryDeliveryQueue, InMemoryEventLog,
    InMemorySessionStore, InMemorySubscriptionStore, InMemoryWebhookSender, MemoryPorts,
    StaticResolver, active_subscription,
};
use serde_json::json;

use super::CapturedLogs;

type Deps = DeliverDeps<MemoryPorts>;

const SUBSCRIPTION: &str = "sub_01JD5Q8Z6X0000000000000000";
/// A subscription of the same tenant to Herald's own `subscription.disabled`.
const WATCHER: &str = "sub_01JD5Q8Z6X0000000000000001";
const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn deps(sender: InMemoryWebhookSender, schedule: &str, window: &str) -> Arc<Deps> {
    Arc::new(unshared_deps(sender, schedule, window))
}

fn unshared_deps(sender: InMemoryWebhookSender, schedule: &str, window: &str) -> Deps {
    DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: Adapters {
            sender,
            ..herald_testkit::adapters()
        },
        settings: DeliverySettings {
            retry: RetryPolicy::parse(schedule, window).unwrap(),
            idempotency_key_prefix: "ffm_wh_".into(),
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
            ..DeliverySettings::default()
        },
    }
}

async fn with_subscription(deps: &Deps, status: SubscriptionStatus) {
    let mut subscription = active_subscription(
        "acme",
        SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    );
    subscription.status = status;
    subscription.secrets[0].secret = WebhookSecret::parse(SECRET).unwrap();
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
}

/// `events/deliver/<name>`, its messages sent just now.
fn sqs_event(name: &str) -> SqsEvent {
    serde_json::from_value(herald_tests::emulator::event_file(&format!(
        "deliver/{name}"
    )))
    .unwrap()
}

fn failures(outcome: &herald_deliver::BatchOutcome) -> Vec<String> {
    outcome
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn a_batch_is_delivered_signed_with_standard_webhooks_headers() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = sqs_event("batch-of-two.json");
    let first_task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    let outcome = process_batch(&deps, event).await;

    assert!(failures(&outcome).is_empty());
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 2);
    let webhook = sent
        .iter()
        .find(|w| {
            w.headers
                .iter()
                .any(|(_, v)| v == first_task.delivery_id.as_str())
        })
        .unwrap();
    let header = |name: &str| {
        webhook
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let expected = WebhookSecret::parse(SECRET).unwrap().sign(
        first_task.delivery_id.as_str(),
        timestamp,
        &webhook.body,
    );
    assert_eq!(header("webhook-signature"), expected);
    assert_eq!(
        header("idempotency-key"),
        format!("ffm_wh_{}", first_task.delivery_id)
    );
    assert_eq!(header("content-type"), "application/json");
    assert!(header("user-agent").starts_with("Herald-Webhooks/"));
    assert_eq!(header("accept"), "*/*");
    let body: serde_json::Value = serde_json::from_slice(&webhook.body).unwrap();
    assert_eq!(body["type"], "order.shipped");
    assert_eq!(body["data"]["order_id"], "ord_1001");
    let record = deps.ports.ledger.record(&first_task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 1);
}

/// A subscription's own `accept` is sent instead of Herald's `*/*`, not beside it.
#[tokio::test]
async fn a_subscriptions_own_accept_header_replaces_the_default() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let mut subscription = active_subscription(
        "acme",
        SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    );
    subscription
        .headers
        .insert("accept".into(), "application/vnd.acme+json".into());
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();

    let outcome = process_batch(&deps, sqs_event("batch-of-two.json")).await;

    assert!(failures(&outcome).is_empty());
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 2);
    for webhook in &sent {
        let accepts: Vec<&str> = webhook
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("accept"))
            .map(|(_, value)| value.as_ref())
            .collect();
        assert_eq!(accepts, ["application/vnd.acme+json"]);
    }
}

/// `batch-of-two` handed to deliver: both come back, nothing sent, no attempt recorded.
async fn both_come_back_unsent(deps: &Arc<Deps>) {
    let event = sqs_event("batch-of-two.json");
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    let outcome = process_batch(deps, event).await;

    assert_eq!(failures(&outcome).len(), 2, "both come back");
    assert!(deps.ports.sender.sent().is_empty(), "nothing was sent");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Pending);
    assert!(record.attempts.is_empty(), "{:?}", record.attempts);
}

/// A subscription whose secret reaches deliver still sealed (its deliver has no key to
/// open it) sends nothing: unsigned or wrongly signed requests never leave. The message
/// comes back shortly, no attempt recorded.
#[tokio::test]
async fn a_secret_still_sealed_sends_nothing_and_comes_back() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let mut subscription = test_subscription();
    subscription.secrets[0].secret = WebhookSecret::sealed("sealed:v1:a2V5.Ym9keQ".into()).unwrap();
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    both_come_back_unsent(&deps).await;
}

/// A tenant whose own signing keys reach deliver still sealed sends nothing: the request
/// would go out without the signatures its subscription asks for. It comes back, no
/// attempt recorded, and the deployment's keys do not sign in their place.
#[tokio::test]
async fn a_tenants_signing_keys_still_sealed_send_nothing_and_come_back() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let mut subscription = test_subscription();
    subscription.signatures.ed25519 = true;
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    let now = deps.ports.clock.now();
    let mut keys = herald_core::webhook::tenant_keys::TenantKeySet::first(
        subscription.tenant.clone(),
        now,
        now,
        &mut herald_core::webhook::tenant_keys::OsRng,
    )
    .unwrap();
    keys.keys[0].ed25519_private = "sealed:v1:a2V5.Ym9keQ".into();
    deps.ports
        .subscriptions
        .put_signing_keys(&keys, None)
        .await
        .unwrap();
    both_come_back_unsent(&deps).await;
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_queue_and_the_rest_is_delivered() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let outcome = process_batch(&deps, sqs_event("poison-message.json")).await;

    assert!(
        failures(&outcome).is_empty(),
        "a poison message must not loop"
    );
    let dead = deps.ports.queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "this is not a delivery task");
    assert!(dead[0].reason.starts_with("malformed task"));
    assert_eq!(deps.ports.sender.sent().len(), 1);
}

#[tokio::test]
async fn a_failure_hides_the_message_for_the_next_delay_and_reports_it() {
    let deps = deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(500)]),
        "2s,4s",
        "1h",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = sqs_event("batch-of-two.json");
    event.records.truncate(1);
    let message_id = event.records[0].message_id.clone().unwrap();

    let outcome = process_batch(&deps, event.clone()).await;
    assert_eq!(failures(&outcome), vec![message_id.clone()]);
    let delayed = deps.ports.queue.delayed();
    assert_eq!(delayed.len(), 1);
    assert!(
        delayed[0].delay >= Duration::from_millis(1800)
            && delayed[0].delay <= Duration::from_millis(2200)
    );
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Pending);
    assert_eq!(record.attempts[0].status, Some(500));
    assert_eq!(record.attempts[0].error, Some(AttemptError::Http));

    // SQS hands it back: the second attempt succeeds and is numbered 2.
    let outcome = process_batch(&deps, event).await;
    assert!(failures(&outcome).is_empty());
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(
        record.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn when_the_schedule_is_spent_the_delivery_fails_into_the_dead_letter_queue() {
    let refusals = (0..3).map(|_| SendOutcome::Failed {
        error: AttemptError::Connect,
        detail: "connection refused".into(),
        latency: Duration::from_millis(1),
    });
    let deps = deps(InMemoryWebhookSender::answering(refusals), "1s,1s", "1h");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = sqs_event("batch-of-two.json");
    event.records.truncate(1);
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    for _ in 0..2 {
        let outcome = process_batch(&deps, event.clone()).await;
        let Disposition::RetryIn(delay) = outcome.reports[0].disposition else {
            panic!("not a retry")
        };
        assert!(
            delay >= Duration::from_secs(1) && delay <= Duration::from_millis(1100),
            "{delay:?}"
        );
    }
    let outcome = process_batch(&deps, event.clone()).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::Failed(_)
    ));
    assert!(failures(&outcome).is_empty());
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.attempts.len(), 3);
    let dead = deps.ports.queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].delivery_id.as_ref(), Some(&task.delivery_id));
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Sent));

    // A late copy of the message (or one redriven from the dead-letter queue) changes
    // nothing: its dead letter was sent, so none goes again.
    let outcome = process_batch(&deps, event).await;
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed)
    );
    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 3);
    assert_eq!(
        deps.ports.queue.dead_letters().len(),
        1,
        "no second dead letter"
    );
}

#[tokio::test]
async fn the_same_message_twice_or_after_success_is_one_post() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = sqs_event("batch-of-two.json");
    event.records.truncate(1);
    let mut twice = event.clone();
    twice.records.push(event.records[0].clone());

    let outcome = process_batch(&deps, twice).await;
    process_batch(&deps, event).await;

    assert_eq!(deps.ports.sender.sent().len(), 1);
    let copies = outcome
        .reports
        .iter()
        .filter(|r| {
            matches!(
                r.disposition,
                Disposition::Leased(_) | Disposition::AlreadyFinished(_)
            )
        })
        .count();
    assert_eq!(
        copies, 1,
        "the second copy either waits for the lease or finds the delivery done"
    );
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let deps = deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(410)]),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut watcher = active_subscription(
        "acme",
        SubscriptionId::parse(WATCHER).unwrap(),
        SubscriptionUrl::parse("https://watch.example.com/in", &UrlPolicy::default()).unwrap(),
        &["subscription.disabled"],
    );
    watcher.created_at = deps.ports.clock.now() - chrono::Duration::seconds(1);
    deps.ports.subscriptions.create(&watcher).await.unwrap();
    let event = sqs_event("batch-of-two.json");
    let (mut first, mut second) = (event.clone(), event);
    first.records.truncate(1);
    second.records.remove(0);

    let outcome = process_batch(&deps, first).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(outcome.reports[0].disposition, Disposition::Gone);
    let subscription = deps.ports.subscriptions.all().remove(0);
    assert_eq!(subscription.status, SubscriptionStatus::Disabled);
    assert!(subscription.disabled_reason.unwrap().contains("410"));
    // Announced as the disable for failing is: to the tenant's watcher.
    let announced: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .filter(|t| t.event.event_type.as_str() == "subscription.disabled")
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(announced[0].subscription_id.as_str(), WATCHER);
    assert_eq!(announced[0].event.data["subscription_id"], SUBSCRIPTION);
    assert!(
        announced[0].event.data["reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );

    let outcome = process_batch(&deps, second).await;
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::Skipped("subscription disabled".into())
    );
    assert_eq!(
        deps.ports.sender.sent().len(),
        1,
        "nothing more goes to a disabled subscription"
    );
}

#[tokio::test]
async fn deliveries_to_a_disabled_subscription_are_skipped_and_to_a_deleted_one_let_go_unrecorded()
{
    for status in [None, Some(SubscriptionStatus::Disabled)] {
        let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
        if let Some(status) = status {
            with_subscription(&deps, status).await;
        }
        let outcome = process_batch(&deps, sqs_event("batch-of-two.json")).await;
        assert!(failures(&outcome).is_empty());
        assert!(deps.ports.sender.sent().is_empty());
        let records = deps.ports.ledger.records();
        match status {
            // Deleted (or its tenant erased): nothing of the delivery is kept.
            None => {
                assert!(records.is_empty(), "{records:?}");
                assert!(
                    outcome
                        .reports
                        .iter()
                        .all(|r| r.disposition
                            == Disposition::Skipped("subscription deleted".into()))
                );
            }
            Some(_) => {
                assert_eq!(records.len(), 2);
                assert!(records.iter().all(|r| r.state == DeliveryState::Skipped));
            }
        }
    }
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let throttled = SendOutcome::Answered {
        status: 429,
        retry_after: Some(Duration::from_secs(120)),
        excerpt: "slow down".into(),
        latency: Duration::from_millis(3),
    };
    let deps = deps(
        InMemoryWebhookSender::answering([throttled]),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = sqs_event("batch-of-two.json");
    event.records.truncate(1);
    let outcome = process_batch(&deps, event).await;
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::RetryIn(Duration::from_secs(120))
    );
    assert_eq!(
        deps.ports.queue.delayed()[0].delay,
        Duration::from_secs(120)
    );
}

/// The record of a new delivery of event `ord_{i}` to the test subscription: message
/// `m-{i}`, receipt handle `r-{i}`.
fn record(i: usize) -> serde_json::Value {
    let event = Event {
        id: EventId::parse(&format!("ord_{i}")).unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: Utc::now(),
        data: serde_json::Map::new(),
        subject: None,
    };
    let task = DeliveryTask::new(
        &TenantId::parse("acme").unwrap(),
        &SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        &event,
        Utc::now(),
    );
    json!({"messageId": format!("m-{i}"), "receiptHandle": format!("r-{i}"), "body": task.to_message_body()})
}

/// `count` records for the subscription, each its own event (`record`).
fn batch_of(count: usize) -> SqsEvent {
    let records: Vec<_> = (0..count).map(record).collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    sorted((0..count).map(|i| format!("{prefix}-{i}")).collect())
}

/// SQS deletes a message 14 days after it was sent, whatever its schedule, with no dead
/// letter: a task that waited long before its first attempt (behind an ordered line's
/// failing deliveries) is failed and dead-lettered rather than retried past that, while
/// one sent recently is retried as scheduled.
#[tokio::test]
async fn a_retry_past_the_messages_fourteen_days_is_a_dead_letter_instead() {
    let deps = deps(
        InMemoryWebhookSender::answering((0..2).map(|_| InMemoryWebhookSender::status(500))),
        "1h",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let sent = |days_ago: i64, i: usize| {
        let mut record = record(i);
        let at = Utc::now() - chrono::Duration::days(days_ago) - chrono::Duration::hours(12);
        record["attributes"] = json!({
            "ApproximateReceiveCount": "1",
            "SentTimestamp": at.timestamp_millis().to_string(),
        });
        record
    };
    let batch: SqsEvent =
        serde_json::from_value(json!({"Records": [sent(13, 0), sent(0, 1)]})).unwrap();
    let outcome = process_batch(&deps, batch).await;

    assert_eq!(failures(&outcome), ["m-1"], "the young one is retried");
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].reason,
        herald_core::delivery::decide::MESSAGE_LIFE_SPENT
    );
    let old = decode_message(&letters[0].body).unwrap();
    let record = deps.ports.ledger.record(&old.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.attempts.len(), 1);
}

#[tokio::test]
async fn ten_records_answered_503_are_hidden_with_one_request_of_ten_entries() {
    let deps = deps(
        InMemoryWebhookSender::answering((0..10).map(|_| InMemoryWebhookSender::status(503))),
        "2s,4s",
        "1h",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;

    let outcome = process_batch(&deps, batch_of(10)).await;

    assert_eq!(sorted(failures(&outcome)), names("m", 10));
    let calls = deps.ports.queue.visibility_calls();
    assert_eq!(calls.len(), 1, "one request for the whole batch");
    let receipts = calls[0].iter().map(|c| c.receipt_handle.clone()).collect();
    assert_eq!(sorted(receipts), names("r", 10));
    assert!(
        calls[0]
            .iter()
            .all(|c| c.delay >= Duration::from_millis(1800))
    );
    assert!(deps.ports.queue.dead_letter_calls().is_empty());
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| matches!(r.disposition, Disposition::RetryIn(_)))
    );
}

/// A schedule whose first delay is past the window: the first failure spends it.
fn spent_on_the_first_failure(failing: usize) -> Arc<Deps> {
    deps(
        InMemoryWebhookSender::answering((0..failing).map(|_| InMemoryWebhookSender::status(500))),
        "1m",
        "1s",
    )
}

#[tokio::test]
async fn three_spent_windows_are_dead_lettered_in_one_request_and_let_go() {
    let deps = spent_on_the_first_failure(3);
    with_subscription(&deps, SubscriptionStatus::Active).await;

    let outcome = process_batch(&deps, batch_of(5)).await;

    assert!(failures(&outcome).is_empty(), "every message is let go");
    let calls = deps.ports.queue.dead_letter_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].len(), 3);
    assert!(calls[0].iter().all(|d| d.delivery_id.is_some()
        && d.reason == "no success after 1 attempts; the retry window is spent"));
    assert_eq!(deps.ports.queue.dead_letters().len(), 3);
    assert!(
        deps.ports.queue.visibility_calls().is_empty(),
        "no visibility change for a message that is let go"
    );
    let failed = outcome
        .reports
        .iter()
        .filter(|r| matches!(r.disposition, Disposition::Failed(_)))
        .count();
    assert_eq!(failed, 3);
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_sent_keeps_its_message_and_shortens_its_visibility() {
    let deps = spent_on_the_first_failure(3);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    *deps.ports.queue.refuse_next_dead_letters.lock().unwrap() = 1;

    let outcome = process_batch(&deps, batch_of(3)).await;

    assert_eq!(deps.ports.queue.dead_letter_calls()[0].len(), 3);
    assert_eq!(deps.ports.queue.dead_letters().len(), 2);
    let kept: Vec<_> = outcome
        .reports
        .iter()
        .filter(|r| !matches!(r.disposition, Disposition::Failed(_)))
        .collect();
    assert_eq!(kept.len(), 1);
    let Disposition::Interrupted(why) = &kept[0].disposition else {
        panic!("{:?}", kept[0].disposition)
    };
    assert!(why.starts_with("dead-letter queue:"), "{why}");
    assert_eq!(failures(&outcome), vec![kept[0].message_id.clone()]);
    // Its dead letter went first; then its visibility was shortened, in the one change.
    let calls = deps.ports.queue.visibility_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].len(), 1);
    assert_eq!(
        calls[0][0].receipt_handle,
        kept[0].message_id.replace("m-", "r-")
    );
    assert_eq!(calls[0][0].delay, Duration::from_secs(10));
    // The two sent are marked so; the refused one is still owed.
    let mut marks: Vec<_> = deps
        .ports
        .ledger
        .records()
        .iter()
        .map(|r| (r.state, r.dead_letter))
        .collect();
    marks.sort_by_key(|(_, mark)| mark.map(DeadLetterMark::as_str));
    assert_eq!(
        marks,
        vec![
            (DeliveryState::Failed, Some(DeadLetterMark::Owed)),
            (DeliveryState::Failed, Some(DeadLetterMark::Sent)),
            (DeliveryState::Failed, Some(DeadLetterMark::Sent)),
        ]
    );
}

/// A dead letter as an operator's redrive ("Start DLQ redrive", `StartMessageMoveTask`)
/// brings it back to the delivery queue: its body and message attributes as Herald sent
/// them, under a new message id, received for the first time.
fn redriven(letter: &DeadLetter, message_id: &str) -> SqsEvent {
    let mut attributes = serde_json::Map::new();
    attributes.insert(
        DeadLetter::REASON_ATTRIBUTE.into(),
        json!({"stringValue": letter.reason, "dataType": "String"}),
    );
    if let Some(id) = &letter.delivery_id {
        attributes.insert(
            DeadLetter::DELIVERY_ATTRIBUTE.into(),
            json!({"stringValue": id.as_str(), "dataType": "String"}),
        );
    }
    serde_json::from_value(json!({"Records": [{
        "messageId": message_id,
        "receiptHandle": format!("r-{message_id}"),
        "body": letter.body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": attributes,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:000000000000:herald-deliveries",
        "awsRegion": "eu-west-1"
    }]}))
    .unwrap()
}

#[tokio::test]
async fn a_dead_letter_redriven_by_an_operator_is_delivered_again_and_a_second_copy_is_not() {
    // The first attempt fails and spends the window; the receiver is fixed after.
    let deps = spent_on_the_first_failure(1);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let batch = batch_of(1);
    let task = decode_message(batch.records[0].body.as_deref().unwrap()).unwrap();
    process_batch(&deps, batch).await;
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 1);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.dead_letter),
        (DeliveryState::Failed, Some(DeadLetterMark::Sent))
    );

    // Redriven: a new attempt under the same webhook id, marked forced, and delivered.
    let outcome = process_batch(&deps, redriven(&letters[0], "moved-1")).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(webhook_ids(&sent), [task.delivery_id.as_str(); 2]);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(
        record
            .attempts
            .iter()
            .map(|a| (a.number, a.forced))
            .collect::<Vec<_>>(),
        vec![(1, false), (2, true)]
    );
    assert_eq!(
        deps.ports.queue.dead_letters().len(),
        1,
        "no new dead letter"
    );

    // A second copy of the redriven message (redriven twice, or handed out twice) finds
    // the delivery delivered: a duplicate, let go without a POST.
    let outcome = process_batch(&deps, redriven(&letters[0], "moved-2")).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Delivered)
    );
    assert_eq!(deps.ports.sender.sent().len(), 2);
}

/// A redrive is an operator's say-so, and only the redriven message carries it (its
/// dead letter's attributes). Moved unattempted to the slow lane because its
/// subscription is marked slow, the copy would lose it, find the delivery failed and be
/// let go: the redrive lost without a word. So it is attempted where it arrives.
#[tokio::test]
async fn a_redriven_dead_letter_of_a_subscription_marked_slow_is_attempted_not_moved() {
    let mut deps = unshared_deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(500)]),
        "1m",
        "1s",
    );
    deps.settings.slow_after = Some(Duration::from_secs(10));
    let deps = Arc::new(deps);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let batch = batch_of(1);
    let task = decode_message(batch.records[0].body.as_deref().unwrap()).unwrap();
    process_batch(&deps, batch).await;
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 1);

    // Its receiver was found slow since (another delivery's attempt was cut).
    deps.ports
        .subscriptions
        .mark_slow(
            &task.tenant,
            &task.subscription_id,
            Utc::now() + chrono::Duration::minutes(10),
        )
        .await
        .unwrap();
    let outcome = process_batch(&deps, redriven(&letters[0], "moved-1")).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "no copy on the slow lane"
    );
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
}

#[tokio::test]
async fn a_redriven_dead_letter_that_fails_again_goes_back_to_the_dead_letter_queue() {
    let deps = spent_on_the_first_failure(2);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let batch = batch_of(1);
    let task = decode_message(batch.records[0].body.as_deref().unwrap()).unwrap();
    process_batch(&deps, batch).await;
    let letter = deps.ports.queue.dead_letters().remove(0);

    let outcome = process_batch(&deps, redriven(&letter, "moved-1")).await;

    assert!(
        failures(&outcome).is_empty(),
        "let go: its copy is dead-lettered"
    );
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::Failed(_)
    ));
    assert_eq!(deps.ports.sender.sent().len(), 2);
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 2, "dead-lettered again, not dropped");
    assert_eq!(letters[1].body, letter.body);
    assert_eq!(letters[1].delivery_id.as_ref(), Some(&task.delivery_id));
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.dead_letter, record.attempts.len()),
        (DeliveryState::Failed, Some(DeadLetterMark::Sent), 2)
    );
}

#[tokio::test]
async fn a_redriven_malformed_message_is_dead_lettered_again() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let letter = DeadLetter {
        body: "{\"kind\": \"mystery\"}".into(),
        reason: "malformed task: unknown variant".into(),
        delivery_id: None,
        line: None,
    };

    let outcome = process_batch(&deps, redriven(&letter, "moved-1")).await;

    assert!(failures(&outcome).is_empty());
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::DeadLettered(_)
    ));
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, letter.body);
    assert!(deps.ports.sender.sent().is_empty());
}

#[tokio::test]
async fn a_dead_letter_refused_for_good_is_sent_by_the_copy_that_comes_back() {
    let deps = spent_on_the_first_failure(1);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    *deps.ports.queue.refuse_next_dead_letters.lock().unwrap() = 1;
    let batch = batch_of(1);
    let body = batch.records[0].body.clone().unwrap();
    let task = decode_message(&body).unwrap();

    // The window is spent and the dead letter refused: the message is kept.
    let outcome = process_batch(&deps, batch.clone()).await;
    assert_eq!(failures(&outcome), vec!["m-0".to_owned()]);
    assert!(
        matches!(&outcome.reports[0].disposition, Disposition::Interrupted(why) if why.starts_with("dead-letter queue:")),
        "{:?}",
        outcome.reports[0].disposition
    );
    assert!(deps.ports.queue.dead_letters().is_empty());
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Owed));

    // SQS hands it back: the delivery is finished, but its dead letter is still owed, so
    // this copy sends it (not the webhook) and is let go.
    let outcome = process_batch(&deps, batch.clone()).await;
    assert!(failures(&outcome).is_empty(), "the message is let go");
    let reason = "no success after 1 attempts; the retry window is spent";
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::OwedDeadLetter(reason.into())
    );
    let dead = deps.ports.queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, body);
    assert_eq!(dead[0].reason, reason);
    assert_eq!(dead[0].delivery_id.as_ref(), Some(&task.delivery_id));
    assert_eq!(deps.ports.sender.sent().len(), 1, "no second POST");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.dead_letter, record.attempts.len()),
        (DeliveryState::Failed, Some(DeadLetterMark::Sent), 1)
    );

    // A copy after that (a duplicate) is not dead-lettered again.
    let outcome = process_batch(&deps, batch).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(
        outcome.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed)
    );
    assert_eq!(deps.ports.queue.dead_letters().len(), 1);
}

#[tokio::test]
async fn a_dead_letter_whose_mark_cannot_be_written_still_lets_its_message_go() {
    let deps = spent_on_the_first_failure(1);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    *deps.ports.ledger.fail_next_dead_lettered.lock().unwrap() = 1;
    let batch = batch_of(1);
    let task = decode_message(batch.records[0].body.as_deref().unwrap()).unwrap();

    let outcome = process_batch(&deps, batch.clone()).await;
    assert!(failures(&outcome).is_empty(), "its copy is in the queue");
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::Failed(_)
    ));
    assert_eq!(deps.ports.queue.dead_letters().len(), 1);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Owed));

    // At least once: a duplicate of the message sends a second copy, and the mark then.
    let outcome = process_batch(&deps, batch).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::OwedDeadLetter(_)
    ));
    assert_eq!(deps.ports.queue.dead_letters().len(), 2);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Sent));
}

#[tokio::test]
async fn a_delivery_failed_for_another_reason_is_not_dead_lettered_when_seen_again() {
    // 410 Gone fails a delivery without a dead letter; a copy of its message is only a
    // duplicate.
    let deps = deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(410)]),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let batch = batch_of(1);
    process_batch(&deps, batch.clone()).await;
    let record = deps.ports.ledger.records().remove(0);
    assert_eq!(
        (record.state, record.dead_letter),
        (DeliveryState::Failed, None),
        "a 410 owes no dead letter"
    );
    let again = process_batch(&deps, batch).await;
    assert_eq!(
        again.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed)
    );
    assert!(deps.ports.queue.dead_letters().is_empty());
}

#[tokio::test]
async fn a_poison_message_whose_dead_letter_fails_comes_back_shortly() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    *deps.ports.queue.refuse_next_dead_letters.lock().unwrap() = 1;
    let event = sqs_event("poison-message.json");
    let poison = event
        .records
        .iter()
        .find(|r| decode_message(r.body.as_deref().unwrap_or_default()).is_err())
        .unwrap()
        .clone();

    let outcome = process_batch(&deps, event).await;

    assert_eq!(failures(&outcome), vec![poison.message_id.clone().unwrap()]);
    assert!(deps.ports.queue.dead_letters().is_empty());
    let delayed = deps.ports.queue.delayed();
    assert_eq!(delayed.len(), 1);
    assert_eq!(
        Some(&delayed[0].receipt_handle),
        poison.receipt_handle.as_ref()
    );
    assert_eq!(delayed[0].delay, Duration::from_secs(10));
}

#[tokio::test]
async fn visibility_changes_that_fail_keep_their_records_as_failures() {
    let deps = deps(
        InMemoryWebhookSender::answering((0..10).map(|_| InMemoryWebhookSender::status(503))),
        "2s,4s",
        "1h",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    *deps
        .ports
        .queue
        .refuse_next_visibility_changes
        .lock()
        .unwrap() = 4;

    let outcome = process_batch(&deps, batch_of(10)).await;

    // Late, not lost: SQS hands each back after the queue's own visibility timeout.
    assert_eq!(sorted(failures(&outcome)), names("m", 10));
    assert_eq!(deps.ports.queue.visibility_calls().len(), 1);
    let interrupted: Vec<&str> = outcome
        .reports
        .iter()
        .filter_map(|r| match &r.disposition {
            Disposition::Interrupted(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(interrupted.len(), 4);
    assert!(interrupted.iter().all(|why| why.starts_with("queue:")));
    let retried = outcome
        .reports
        .iter()
        .filter(|r| matches!(r.disposition, Disposition::RetryIn(_)))
        .count();
    assert_eq!(retried, 6);
}

/// The in-memory set, with deliver's cache in front of the subscriptions on one clock
/// shared with the handler.
enum CachedPorts {}

impl Ports for CachedPorts {
    type Subscriptions = CachedSubscriptions<InMemorySubscriptionStore, Arc<FixedClock>>;
    type Ledger = InMemoryDeliveryLedger;
    type Events = InMemoryEventLog;
    type Queue = InMemoryDeliveryQueue;
    type Sender = InMemoryWebhookSender;
    type Resolver = StaticResolver;
    type Keys = Arc<SigningKeys>;
    type Clock = Arc<FixedClock>;
    type Sessions = InMemorySessionStore;
}

/// Deliver with its subscriptions kept for `ttl`, on one clock shared with the cache.
fn cached_deps(sender: InMemoryWebhookSender, ttl: Duration) -> Arc<DeliverDeps<CachedPorts>> {
    let plain = unshared_deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let clock = Arc::new(FixedClock::at(Utc::now()));
    Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: Adapters {
            subscriptions: CachedSubscriptions::new(
                InMemorySubscriptionStore::default(),
                ttl,
                Arc::clone(&clock),
            ),
            ledger: plain.ports.ledger,
            events: plain.ports.events,
            queue: plain.ports.queue,
            sender,
            resolver: plain.ports.resolver,
            keys: plain.ports.keys,
            clock,
            sessions: plain.ports.sessions,
        },
        settings: plain.settings,
    })
}

/// A batch of one new delivery of event `n` to the test subscription.
fn one_task(n: usize) -> SqsEvent {
    serde_json::from_value(json!({ "Records": [record(n)] })).unwrap()
}

fn test_subscription() -> herald_core::subscription::Subscription {
    active_subscription(
        "acme",
        SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    )
}

#[tokio::test]
async fn batches_within_the_cache_lifetime_read_the_subscription_once() {
    let deps = cached_deps(InMemoryWebhookSender::default(), Duration::from_secs(5));
    deps.ports
        .subscriptions
        .create(&test_subscription())
        .await
        .unwrap();
    let store = deps.ports.subscriptions.inner();

    process_batch(&deps, one_task(1)).await;
    deps.ports.clock.advance(Duration::from_secs(4));
    process_batch(&deps, one_task(2)).await;
    assert_eq!(store.gets(), 1, "the second batch used the kept copy");

    deps.ports.clock.advance(Duration::from_secs(1));
    process_batch(&deps, one_task(3)).await;
    assert_eq!(store.gets(), 2, "after the lifetime it is read again");
    assert_eq!(deps.ports.sender.sent().len(), 3);
    assert!(
        deps.ports
            .ledger
            .records()
            .iter()
            .all(|r| r.state == DeliveryState::Delivered)
    );
}

#[tokio::test]
async fn a_stale_failing_since_does_not_disable_a_subscription_healthy_elsewhere() {
    let failures = (0..3).map(|_| InMemoryWebhookSender::status(500));
    let mut deps = cached_deps(
        InMemoryWebhookSender::answering(failures),
        Duration::from_secs(300),
    );
    Arc::get_mut(&mut deps)
        .expect("not shared yet")
        .settings
        .auto_disable_after = Duration::from_secs(60);
    let start = deps.ports.clock.now();
    let mut subscription = test_subscription();
    subscription.failing_since = Some(start - chrono::Duration::seconds(30));
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    let (tenant, id) = (subscription.tenant.clone(), subscription.id.clone());

    // Failing for 30 s: too soon to disable, and the cache keeps that copy.
    process_batch(&deps, one_task(1)).await;
    // Another container delivers successfully and clears the mark.
    deps.ports
        .subscriptions
        .inner()
        .set_failing_since(&tenant, &id, None)
        .await
        .unwrap();

    // 70 s by the kept copy, but healthy in the store: not disabled, the clock starts anew.
    deps.ports.clock.advance(Duration::from_secs(40));
    process_batch(&deps, one_task(2)).await;
    let stored = deps.ports.subscriptions.inner().all().remove(0);
    assert_eq!(stored.status, SubscriptionStatus::Active);
    assert_eq!(
        stored.failing_since,
        Some(start + chrono::Duration::seconds(40))
    );
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "no disable announced"
    );

    // Failing for 61 s by the store: now it is disabled.
    deps.ports.clock.advance(Duration::from_secs(61));
    process_batch(&deps, one_task(3)).await;
    let stored = deps.ports.subscriptions.inner().all().remove(0);
    assert_eq!(stored.status, SubscriptionStatus::Disabled);
}

/// A batch of three, the first POST answered 503, logged at `level` as Herald logs.
async fn logs_of_a_batch_with_one_retry(level: tracing::Level) -> CapturedLogs {
    logs_of_a_batch_of_three(true, level).await
}

/// A batch of three, the first POST answered 503 if `first_refused` (the others 200),
/// logged at `level` as Herald logs.
async fn logs_of_a_batch_of_three(first_refused: bool, level: tracing::Level) -> CapturedLogs {
    let refusals = first_refused.then(|| InMemoryWebhookSender::status(503));
    let deps = deps(
        InMemoryWebhookSender::answering(refusals),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let (logs, _default) = CapturedLogs::install(level);
    let outcome = process_batch(&deps, batch_of(3)).await;
    assert_eq!(failures(&outcome).len(), usize::from(first_refused));
    logs
}

#[tokio::test]
async fn a_batch_logs_one_line_and_one_for_each_record_that_did_not_end_routinely() {
    let logs = logs_of_a_batch_with_one_retry(tracing::Level::INFO).await;
    let records = logs.lines("record processed");
    assert_eq!(records.len(), 1, "only the retry has a line: {records:?}");
    assert_eq!(records[0]["status"], 503);
    assert!(
        records[0]["disposition"]
            .as_str()
            .unwrap()
            .starts_with("retry in"),
        "{records:?}"
    );
    assert!(
        records[0]["delivery_id"]
            .as_str()
            .unwrap()
            .starts_with("msg_")
    );
    let batches = logs.lines("batch processed");
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (
            &batches[0]["records"],
            &batches[0]["delivered"],
            &batches[0]["handed_back"]
        ),
        (&json!(3), &json!(2), &json!(1))
    );

    // Asked for debug, every record has its line.
    let logs = logs_of_a_batch_with_one_retry(tracing::Level::DEBUG).await;
    assert_eq!(logs.lines("record processed").len(), 3);
    assert_eq!(logs.lines("batch processed").len(), 1);
}

#[tokio::test]
async fn a_batch_where_every_record_was_delivered_has_no_line_at_info() {
    // Its metrics line counts the deliveries; a line of its own would be bytes to ingest
    // for nothing more.
    let logs = logs_of_a_batch_of_three(false, tracing::Level::INFO).await;
    assert_eq!(
        logs.lines("batch processed"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(logs.lines("record processed").len(), 0);

    let logs = logs_of_a_batch_of_three(false, tracing::Level::DEBUG).await;
    let batches = logs.lines("batch processed");
    assert_eq!(batches.len(), 1);
    assert_eq!(
        (&batches[0]["records"], &batches[0]["delivered"]),
        (&json!(3), &json!(3))
    );
    assert_eq!(logs.lines("record processed").len(), 3);
}

#[tokio::test]
async fn a_retry_from_the_messages_last_receive_is_recorded_failed_and_dead_lettered() {
    let refusals = (0..3).map(|_| InMemoryWebhookSender::status(500));
    let mut deps = unshared_deps(
        InMemoryWebhookSender::answering(refusals),
        "1s,1s,1s,1s",
        "1h",
    );
    deps.settings.max_receives = 3;
    let deps = Arc::new(deps);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = sqs_event("batch-of-two.json");
    event.records.truncate(1);
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    // Receives 1 and 2 retry as the schedule says.
    for receive in ["1", "2"] {
        event.records[0]
            .attributes
            .insert("ApproximateReceiveCount".into(), receive.into());
        let outcome = process_batch(&deps, event.clone()).await;
        assert!(
            matches!(outcome.reports[0].disposition, Disposition::RetryIn(_)),
            "receive {receive}: {:?}",
            outcome.reports[0].disposition
        );
    }
    // The third is the queue's last: SQS would move the message away unseen after it, so
    // the delivery is failed here, with its reason, and its dead letter sent by Herald.
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "3".into());
    let outcome = process_batch(&deps, event).await;
    let Disposition::Failed(reason) = &outcome.reports[0].disposition else {
        panic!("{:?}", outcome.reports[0].disposition)
    };
    assert!(reason.contains("receive limit (3)"), "{reason}");
    assert!(failures(&outcome).is_empty(), "the message is let go");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(record.attempts.len(), 3);
    let dead = deps.ports.queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].reason, reason);
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Sent));
}

/// One event's task for `subscription`, as an SQS batch of one.
fn task_for(subscription: &str, event_id: &str) -> SqsEvent {
    let event = Event {
        id: EventId::parse(event_id).unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: Utc::now(),
        data: serde_json::Map::new(),
        subject: None,
    };
    let task = DeliveryTask::new(
        &TenantId::parse("acme").unwrap(),
        &SubscriptionId::parse(subscription).unwrap(),
        &event,
        Utc::now(),
    );
    serde_json::from_value(json!({"Records": [
        {"messageId": format!("m-{subscription}"), "receiptHandle": "r", "body": task.to_message_body()}
    ]}))
    .unwrap()
}

#[tokio::test]
async fn each_subscription_retries_by_its_own_policy_or_the_deployments() {
    // Seed 002 retries three times; seed 001 retries 1, 2, 4, 8 … minutes for 3 days (the
    // deployment's default). Both in one deployment, both endpoints failing.
    let deps = deps(
        InMemoryWebhookSender::answering((0..10).map(|_| InMemoryWebhookSender::status(500))),
        "exponential",
        "3d",
    );
    let mut three_times = active_subscription(
        "acme",
        SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        SubscriptionUrl::parse("https://seed002.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    );
    three_times.retry = Some(RetrySpec {
        schedule: "1s,1s,1s".into(),
        window: "1h".into(),
    });
    deps.ports.subscriptions.create(&three_times).await.unwrap();
    let default = active_subscription(
        "acme",
        SubscriptionId::parse(WATCHER).unwrap(),
        SubscriptionUrl::parse("https://seed001.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    );
    deps.ports.subscriptions.create(&default).await.unwrap();

    let own = task_for(SUBSCRIPTION, "ord_own");
    for attempt in 1..=3 {
        let outcome = process_batch(&deps, own.clone()).await;
        let Disposition::RetryIn(delay) = outcome.reports[0].disposition else {
            panic!("attempt {attempt}: {:?}", outcome.reports[0].disposition)
        };
        assert!(
            delay >= Duration::from_secs(1) && delay <= Duration::from_millis(1100),
            "attempt {attempt}: its own second, not the deployment's minute: {delay:?}"
        );
    }
    let outcome = process_batch(&deps, own).await;
    assert!(
        matches!(&outcome.reports[0].disposition, Disposition::Failed(why) if why.contains("4 attempts")),
        "{:?}",
        outcome.reports[0].disposition
    );

    let outcome = process_batch(&deps, task_for(WATCHER, "ord_default")).await;
    let Disposition::RetryIn(delay) = outcome.reports[0].disposition else {
        panic!("{:?}", outcome.reports[0].disposition)
    };
    assert!(
        delay >= Duration::from_secs(54) && delay <= Duration::from_secs(66),
        "the deployment's minute, ±10%: {delay:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_subscriptions_burst_waits_for_its_windows_without_attempts() {
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let mut subscription = test_subscription();
    subscription.rate_limit = Some(herald_core::delivery::rate::RateLimit::new(3).unwrap());
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();

    // Ten at once, within one second of the (fixed) clock: three go, seven wait.
    let outcome = process_batch(&deps, batch_of(10)).await;

    assert_eq!(deps.ports.sender.sent().len(), 3);
    let mut waits: Vec<u64> = outcome
        .reports
        .iter()
        .filter_map(|r| match r.disposition {
            Disposition::RateLimited(wait) => Some(wait.as_secs()),
            _ => None,
        })
        .collect();
    waits.sort();
    // Three a second, the waiting booked five (half again over) to each later window.
    assert_eq!(waits, vec![1, 1, 1, 1, 1, 2, 2], "each to its window");
    assert_eq!(failures(&outcome).len(), 7, "handed back, not failed");
    assert_eq!(
        deps.ports.ledger.records().len(),
        3,
        "a wait is not an attempt: nothing recorded for it"
    );
    let hidden: Vec<u64> = deps.ports.queue.visibility_calls()[0]
        .iter()
        .map(|c| c.delay.as_secs())
        .collect();
    assert_eq!(hidden.len(), 7);

    // A second later, the window's first three go again.
    deps.ports.clock.advance(Duration::from_secs(1));
    let again = process_batch(&deps, batch_of(10)).await;
    let delivered = again
        .reports
        .iter()
        .filter(|r| r.disposition == Disposition::Delivered)
        .count();
    let already = again
        .reports
        .iter()
        .filter(|r| matches!(r.disposition, Disposition::AlreadyFinished(_)))
        .count();
    assert_eq!(delivered + already, 3, "{:?}", again.reports);
}

/// `records` as the ordered (FIFO) queue's event source hands them over, all in `line`.
fn ordered_batch(records: Vec<serde_json::Value>, line: &str) -> SqsEvent {
    let records: Vec<_> = records
        .into_iter()
        .map(|mut record| {
            record["eventSourceARN"] =
                json!("arn:aws:sqs:us-east-1:123456789012:herald-OrderedDeliveryQueue.fifo");
            record["attributes"] = json!({"MessageGroupId": line, "ApproximateReceiveCount": "1"});
            record
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

#[tokio::test]
async fn in_an_ordered_line_nothing_goes_out_behind_a_delivery_that_is_not_done() {
    let deps = deps(
        InMemoryWebhookSender::answering([
            InMemoryWebhookSender::status(200),
            InMemoryWebhookSender::status(503),
        ]),
        "2s,4s",
        "1h",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;

    let outcome = process_batch(
        &deps,
        ordered_batch((0..4).map(record).collect(), "acme.line"),
    )
    .await;

    let ids: Vec<&str> = outcome
        .reports
        .iter()
        .map(|r| r.message_id.as_str())
        .collect();
    assert_eq!(ids, ["m-0", "m-1", "m-2", "m-3"]);
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    assert!(matches!(
        outcome.reports[1].disposition,
        Disposition::RetryIn(delay) if delay > Duration::ZERO
    ));
    assert_eq!(outcome.reports[2].disposition, Disposition::Behind);
    assert_eq!(outcome.reports[3].disposition, Disposition::Behind);
    assert_eq!(deps.ports.sender.sent().len(), 2, "nothing sent behind m-1");
    assert_eq!(failures(&outcome), ["m-1", "m-2", "m-3"]);
    // Handed back on the ordered queue: m-1 after its delay, the rest at once (the line
    // holds them until m-1 is done).
    let changes = deps.ports.queue.visibility_calls().concat();
    let hidden: Vec<_> = changes
        .iter()
        .map(|c| {
            (
                c.receipt_handle.as_str(),
                c.delay.is_zero(),
                c.lane == herald_core::delivery::Lane::Ordered,
            )
        })
        .collect();
    assert_eq!(
        hidden,
        [
            ("r-1", false, true),
            ("r-2", true, true),
            ("r-3", true, true)
        ]
    );
}

#[tokio::test]
async fn a_line_goes_on_past_a_delivery_that_is_finished_or_dead_lettered() {
    let deps = deps(InMemoryWebhookSender::default(), "2s", "1h");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let poison = json!({"messageId": "m-poison", "receiptHandle": "r-poison", "body": "{}"});
    let batch = ordered_batch(vec![poison, record(1), record(2)], "acme.line");

    let outcome = process_batch(&deps, batch).await;

    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 2);
    let letters = deps.ports.queue.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].line.as_deref(),
        Some("acme.line"),
        "to the ordered lane's dead-letter queue, in its line"
    );
}

#[tokio::test]
async fn a_claim_check_is_sent_with_the_stored_event_and_skipped_once_it_is_gone() {
    use herald_core::ports::EventLog;
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let acme = TenantId::parse("acme").unwrap();
    let sub = SubscriptionId::parse(SUBSCRIPTION).unwrap();
    let big = |id: &str| Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: Utc::now(),
        data: json!({"blob": "x".repeat(herald_core::delivery::INLINE_DATA_BYTES)})
            .as_object()
            .unwrap()
            .clone(),
        subject: None,
    };
    let message = |task: &DeliveryTask| {
        let body = task.to_message_body();
        assert!(body.len() < 1024, "a claim check: {} bytes", body.len());
        serde_json::from_value::<SqsEvent>(json!({"Records": [
            {"messageId": "m-1", "receiptHandle": "r-1", "body": body}
        ]}))
        .unwrap()
    };

    // Stored, as ingest stores it before queuing: sent whole.
    let kept = big("ord_big");
    let now = deps.ports.clock.now();
    deps.ports
        .events
        .accept(&acme, &kept, &kept.fingerprint(), 1, now)
        .await
        .unwrap();
    let task = DeliveryTask::new(&acme, &sub, &kept, now);
    let outcome = process_batch(&deps, message(&task)).await;
    assert!(failures(&outcome).is_empty());
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["data"], serde_json::Value::Object(kept.data.clone()));
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);

    // Not kept (erased, or past its retention): nothing is sent and the delivery ends.
    let gone = big("ord_gone");
    let task = DeliveryTask::new(&acme, &sub, &gone, now);
    let outcome = process_batch(&deps, message(&task)).await;
    assert!(failures(&outcome).is_empty(), "not retried");
    assert_eq!(deps.ports.sender.sent().len(), 1, "nothing more sent");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Skipped);
    assert!(record.attempts.is_empty());

    // Kept under its id with other content (the id published again after the first
    // expired): not the event queued, so not sent either.
    let other = big("ord_other");
    let task = DeliveryTask::new(&acme, &sub, &other, now);
    let replaced = Event {
        data: json!({"blob": "y"}).as_object().unwrap().clone(),
        ..other.clone()
    };
    deps.ports
        .events
        .accept(&acme, &replaced, &replaced.fingerprint(), 1, now)
        .await
        .unwrap();
    let outcome = process_batch(&deps, message(&task)).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 1, "nothing more sent");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Skipped);
}

/// Deliver taking first attempts as `claim` says.
fn claiming_deps(
    sender: InMemoryWebhookSender,
    claim: herald_core::delivery::settings::ClaimMode,
) -> Arc<Deps> {
    let mut deps = unshared_deps(sender, "1s,1s", "1h");
    deps.settings.claim = claim;
    Arc::new(deps)
}

/// Deliver taking first attempts by a read (`ClaimMode::Read`).
fn reading_deps(sender: InMemoryWebhookSender) -> Arc<Deps> {
    claiming_deps(sender, herald_core::delivery::settings::ClaimMode::Read)
}

/// The tasks `event`'s records carry.
fn tasks_in(event: &SqsEvent) -> Vec<DeliveryTask> {
    event
        .records
        .iter()
        .map(|r| decode_message(r.body.as_deref().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn with_reads_for_claims_a_first_attempt_makes_the_record_and_a_later_copy_sends_nothing() {
    let deps = reading_deps(InMemoryWebhookSender::default());
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = sqs_event("batch-of-two.json");
    let tasks = tasks_in(&event);

    let outcome = process_batch(&deps, event.clone()).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 2);
    assert_eq!(
        deps.ports.ledger.claims(),
        0,
        "taken by reads, no lease written"
    );
    for task in &tasks {
        let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
        assert_eq!(record.state, DeliveryState::Delivered);
        assert_eq!(record.attempts.len(), 1);
        assert_eq!(record.event_id, task.event.id);
    }

    // The same messages again (SQS handing them out after the delivery): found, not sent.
    let again = process_batch(&deps, event).await;
    assert!(failures(&again).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 2, "nothing sent twice");
    assert_eq!(
        deps.ports.ledger.claims(),
        2,
        "a copy finding a record is taken as a lease takes it"
    );
}

#[tokio::test]
async fn with_reads_for_claims_a_retry_takes_a_lease_and_keeps_the_first_attempt() {
    let deps = reading_deps(InMemoryWebhookSender::answering([
        InMemoryWebhookSender::status(503),
        InMemoryWebhookSender::status(200),
    ]));
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = task_for(SUBSCRIPTION, "ord_retried");
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    let first = process_batch(&deps, event.clone()).await;
    assert_eq!(failures(&first).len(), 1, "handed back for its retry");
    assert_eq!(deps.ports.ledger.claims(), 0);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.attempts.len()),
        (DeliveryState::Pending, 1)
    );

    let second = process_batch(&deps, event).await;
    assert!(failures(&second).is_empty());
    assert_eq!(deps.ports.ledger.claims(), 1, "the retry took a lease");
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    let statuses: Vec<Option<u16>> = record.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)]);
    assert_eq!(deps.ports.sender.sent().len(), 2);
}

/// Deliver taking first hand-outs with neither a write nor a read (`ClaimMode::None`).
fn unclaimed_deps(sender: InMemoryWebhookSender) -> Arc<Deps> {
    claiming_deps(sender, herald_core::delivery::settings::ClaimMode::None)
}

/// `event` as SQS hands its messages out for the `count`th time.
fn handed_out(mut event: SqsEvent, count: u32) -> SqsEvent {
    for record in &mut event.records {
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), count.to_string());
    }
    event
}

fn webhook_ids(sent: &[herald_core::ports::OutgoingWebhook]) -> Vec<String> {
    sent.iter()
        .map(|w| {
            w.headers
                .iter()
                .find(|(k, _)| k == "webhook-id")
                .map(|(_, v)| v.to_string())
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn with_no_claim_a_first_success_writes_and_reads_nothing_and_a_copy_is_sent_again() {
    let deps = unclaimed_deps(InMemoryWebhookSender::default());
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = sqs_event("batch-of-two.json");
    let tasks = tasks_in(&event);

    let outcome = process_batch(&deps, event.clone()).await;
    assert!(failures(&outcome).is_empty());
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.disposition == Disposition::Delivered)
    );
    assert_eq!(deps.ports.sender.sent().len(), 2);
    assert_eq!(deps.ports.ledger.claims(), 0, "no lease written");
    assert_eq!(deps.ports.ledger.reads(), 0, "no record read");
    for task in &tasks {
        assert!(
            deps.ports.ledger.record(&task.delivery_id).is_none(),
            "a first success leaves no record"
        );
    }

    // The same messages handed out for the first time again (a standard queue's
    // duplicate): nothing says they were delivered, so they are sent again, under the
    // same webhook-ids.
    let again = process_batch(&deps, event).await;
    assert!(failures(&again).is_empty());
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 4);
    let ids = webhook_ids(&sent);
    assert_eq!(ids[..2], ids[2..]);
    assert_eq!(ids[0], tasks[0].delivery_id.as_str());
}

#[tokio::test]
async fn with_no_claim_a_failed_first_attempt_is_recorded_and_its_retry_is_read_and_leased() {
    let deps = unclaimed_deps(InMemoryWebhookSender::answering([
        InMemoryWebhookSender::status(503),
        InMemoryWebhookSender::status(200),
    ]));
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = task_for(SUBSCRIPTION, "ord_unclaimed");
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    let first = process_batch(&deps, handed_out(event.clone(), 1)).await;
    assert_eq!(failures(&first).len(), 1, "handed back for its retry");
    assert_eq!(
        (deps.ports.ledger.claims(), deps.ports.ledger.reads()),
        (0, 0)
    );
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.attempts.len()),
        (DeliveryState::Pending, 1),
        "the failure is in the attempt log"
    );

    // The retry is the same message handed out again: read, found, and leased.
    let second = process_batch(&deps, handed_out(event.clone(), 2)).await;
    assert!(failures(&second).is_empty());
    assert_eq!(
        (deps.ports.ledger.claims(), deps.ports.ledger.reads()),
        (1, 1)
    );
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    let statuses: Vec<Option<u16>> = record.attempts.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [Some(503), Some(200)],
        "a success after a failure is recorded"
    );

    // Handed out once more after that success: found delivered, not sent.
    let third = process_batch(&deps, handed_out(event, 3)).await;
    assert!(failures(&third).is_empty());
    assert_eq!(
        deps.ports.sender.sent().len(),
        2,
        "nothing sent a third time"
    );
}

#[tokio::test]
async fn with_no_claim_a_message_handed_out_again_is_read_before_it_is_sent() {
    // A message back after a first success whose deletion was lost (the function ended
    // before SQS heard of it): read, no record found, sent again under its webhook-id and
    // this time recorded, as `read` would.
    let deps = unclaimed_deps(InMemoryWebhookSender::default());
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let event = task_for(SUBSCRIPTION, "ord_back");
    let task = decode_message(event.records[0].body.as_deref().unwrap()).unwrap();

    process_batch(&deps, handed_out(event.clone(), 1)).await;
    assert!(deps.ports.ledger.record(&task.delivery_id).is_none());
    let back = process_batch(&deps, handed_out(event.clone(), 2)).await;
    assert!(failures(&back).is_empty());
    assert_eq!(
        (deps.ports.ledger.claims(), deps.ports.ledger.reads()),
        (0, 1)
    );
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.attempts.len()),
        (DeliveryState::Delivered, 1)
    );
    let ids = webhook_ids(&deps.ports.sender.sent());
    assert_eq!(ids, [task.delivery_id.as_str(); 2]);

    // Handed out a third time: the record stops it.
    process_batch(&deps, handed_out(event, 3)).await;
    assert_eq!(deps.ports.sender.sent().len(), 2);
}

#[tokio::test]
async fn with_no_claim_a_slow_lanes_first_hand_out_is_read_and_recorded() {
    // A slow lane's task follows an attempt cut on the standard lane, whose record it
    // must find: it is never taken unread, even at its first hand-out.
    let deps = unclaimed_deps(InMemoryWebhookSender::default());
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let mut event = task_for(SUBSCRIPTION, "ord_slow");
    let task = DeliveryTask {
        slow: true,
        ..decode_message(event.records[0].body.as_deref().unwrap()).unwrap()
    };
    event.records[0].body = Some(task.to_message_body());

    let outcome = process_batch(&deps, handed_out(event, 1)).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 1);
    assert_eq!(deps.ports.ledger.reads(), 1);
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
}

#[tokio::test]
async fn with_no_claim_a_herald_test_event_is_recorded_for_its_sender_to_see() {
    let deps = unclaimed_deps(InMemoryWebhookSender::default());
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let subscription = SubscriptionId::parse(SUBSCRIPTION).unwrap();
    let now = Utc::now();
    let test =
        herald_core::system_events::TestEvent::to(&subscription).event(None, now, &mut rand::rng());
    let task = DeliveryTask::new(&TenantId::parse("acme").unwrap(), &subscription, &test, now);
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "m-test", "receiptHandle": "r", "body": task.to_message_body()}
    ]}))
    .unwrap();

    let outcome = process_batch(&deps, handed_out(event, 1)).await;
    assert!(failures(&outcome).is_empty());
    assert_eq!(deps.ports.sender.sent().len(), 1);
    assert_eq!(
        deps.ports.ledger.reads(),
        1,
        "taken by a read, as `read` takes it"
    );
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(
        (record.state, record.attempts.len()),
        (DeliveryState::Delivered, 1)
    );
}

/// Three claim checks of one event in a batch, every one sent with the stored event;
/// with `lagging`, reads that do not wait for the latest writes see none of them.
async fn deliver_three_claim_checks_of_one_event(lagging: bool) -> Arc<Deps> {
    use herald_core::ports::EventLog;
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    if lagging {
        deps.ports.events.lag();
    }
    let acme = TenantId::parse("acme").unwrap();
    let subscriptions: Vec<SubscriptionId> = (0..3)
        .map(|i| SubscriptionId::parse(&format!("sub_01JD5Q8Z6X000000000000001{i}")).unwrap())
        .collect();
    for id in &subscriptions {
        let subscription = herald_core::subscription::Subscription {
            id: id.clone(),
            ..test_subscription()
        };
        deps.ports
            .subscriptions
            .create(&subscription)
            .await
            .unwrap();
    }
    let now = deps.ports.clock.now();
    let big = Event {
        id: EventId::parse("ord_shared").unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: now,
        data: json!({"blob": "x".repeat(herald_core::delivery::INLINE_DATA_BYTES)})
            .as_object()
            .unwrap()
            .clone(),
        subject: None,
    };
    deps.ports
        .events
        .accept(&acme, &big, &big.fingerprint(), 3, now)
        .await
        .unwrap();
    let records: Vec<serde_json::Value> = subscriptions
        .iter()
        .enumerate()
        .map(|(i, sub)| {
            let task = DeliveryTask::new(&acme, sub, &big, now);
            json!({"messageId": format!("m-{i}"), "receiptHandle": format!("r-{i}"), "body": task.to_message_body()})
        })
        .collect();
    let batch: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    let outcome = process_batch(&deps, batch).await;
    assert!(failures(&outcome).is_empty());
    let sent = deps.ports.sender.sent();
    assert_eq!(sent.len(), 3);
    for webhook in &sent {
        let body: serde_json::Value = serde_json::from_slice(&webhook.body).unwrap();
        assert_eq!(body["data"], serde_json::Value::Object(big.data.clone()));
    }
    deps
}

#[tokio::test]
async fn a_batch_reads_an_event_its_claim_checks_share_once_at_the_eventual_price() {
    let deps = deliver_three_claim_checks_of_one_event(false).await;
    assert_eq!(
        deps.ports.events.eventual_loads(),
        1,
        "read once for the batch"
    );
    assert_eq!(
        deps.ports.events.loads(),
        0,
        "no consistent read was needed"
    );
}

#[tokio::test]
async fn a_claim_checked_event_not_yet_seen_by_an_eventual_read_is_read_again_consistently() {
    let deps = deliver_three_claim_checks_of_one_event(true).await;
    assert_eq!(deps.ports.events.eventual_loads(), 1);
    assert_eq!(
        deps.ports.events.loads(),
        1,
        "one consistent read for the batch"
    );
}

/// A batch holds one future a record (a thousand for a batch of 1000), each as large as
/// its largest state. Every AWS request and the GraphQL query are awaited boxed, and a
/// stage's wrapper takes its work's room once (docs/PERFORMANCE.md, "A record's future"):
/// 8,432 bytes with deliver's DynamoDB stores and 7,120 with in-memory ones in a release
/// build, within a few dozen bytes of that in a test build. A future held inline again
/// (an SDK request is 7–9 KB) fails this.
#[test]
fn a_records_future_stays_within_its_bound() {
    use herald_aws::http::sender::HttpWebhookSender;
    use herald_aws::lambda::wiring::AwsPorts;
    use herald_deliver::record_future_bytes;
    let dynamodb = record_future_bytes::<AwsPorts>();
    let in_memory = record_future_bytes::<herald_testkit::MemoryPortsWith<HttpWebhookSender>>();
    assert!(
        dynamodb <= 9 * 1024,
        "{dynamodb} bytes with DynamoDB stores"
    );
    assert!(
        in_memory <= 7 * 1024 + 512,
        "{in_memory} bytes with in-memory stores"
    );
}

/// Of deliveries about one subject to a subscription that wants only the newest, one is
/// superseded by another event recorded newer about the subject, and never by its own
/// event recorded at a later time (as a repeated publish whose `occurred_at` defaulted to
/// its own time recorded it before a repeat carried the event as first accepted).
#[tokio::test]
async fn a_delivery_is_superseded_by_a_newer_event_never_by_itself() {
    use herald_core::event::Subject;
    use herald_core::ports::EventLog;
    let deps = deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let mut subscription = test_subscription();
    subscription.supersede = true;
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    let (tenant, now) = (subscription.tenant.clone(), deps.ports.clock.now());
    let update = |id: &str, seconds: i64| Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::parse("order.updated").unwrap(),
        occurred_at: now + chrono::Duration::seconds(seconds),
        data: serde_json::Map::new(),
        subject: Some(Subject {
            kind: "ORDER".into(),
            id: "5".into(),
            reference: None,
            status: None,
            root: None,
        }),
    };
    let note = |event: Event| {
        let (deps, tenant, id) = (&deps, &tenant, &subscription.id);
        async move {
            deps.ports
                .events
                .note_latest(tenant, id, &event, now)
                .await
                .unwrap()
        }
    };
    let deliver = |event: Event| {
        let task = DeliveryTask::new(&tenant, &subscription.id, &event, now);
        let records = json!({"Records": [{"messageId": event.id.to_string(),
            "receiptHandle": "r", "body": task.to_message_body()}]});
        let deps = Arc::clone(&deps);
        async move {
            let outcome = process_batch(&deps, serde_json::from_value(records).unwrap()).await;
            let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
            (outcome.reports[0].disposition.clone(), record.state)
        }
    };

    // Another event, newer, supersedes it.
    note(update("ord_5.0", 0)).await;
    note(update("ord_5.1", 30)).await;
    assert_eq!(
        deliver(update("ord_5.0", 0)).await,
        (Disposition::Superseded, DeliveryState::Superseded)
    );
    // Its own event recorded a minute later does not: it is the newest.
    note(update("ord_5.1", 90)).await;
    assert_eq!(
        deliver(update("ord_5.1", 30)).await,
        (Disposition::Delivered, DeliveryState::Delivered)
    );
    assert_eq!(deps.ports.sender.sent().len(), 1);
    // A delivery notes its event as the newest before it is sent, though its publish did
    // not (yet): an older delivery seen after it is superseded, never sent after it.
    assert_eq!(
        deliver(update("ord_5.3", 300)).await,
        (Disposition::Delivered, DeliveryState::Delivered)
    );
    assert_eq!(
        deliver(update("ord_5.2", 200)).await,
        (Disposition::Superseded, DeliveryState::Superseded)
    );
    assert_eq!(deps.ports.sender.sent().len(), 2);
}

/// The slow lane dead-letters to the delivery queue's dead-letter queue, and an operator
/// redrives that one to the delivery queue: a slow lane's task can then arrive on the
/// delivery queue, its body still saying `"slow":true`. A retry hides its message on the
/// queue it came from (its event source), whose receipt handle it holds; SQS refuses a
/// visibility change on another queue, and the message would come back only after the
/// queue's whole visibility timeout. From the slow lane's queue, it is hidden there.
#[tokio::test]
async fn a_retry_hides_the_message_on_the_queue_it_came_from_whatever_its_task_says() {
    let mut deps = unshared_deps(
        InMemoryWebhookSender::answering([500, 500].map(InMemoryWebhookSender::status)),
        "2s,4s",
        "1h",
    );
    deps.settings.slow_after = Some(Duration::from_secs(10));
    deps.settings.slow_queue = Some("herald-SlowDeliveryQueue-Ab12Cd34Ef56".into());
    let deps = Arc::new(deps);
    with_subscription(&deps, SubscriptionStatus::Active).await;
    let on_the_slow_lane = sqs_event("slow-lane.json");
    let mut moved = on_the_slow_lane.clone();
    let record = &mut moved.records[0];
    record.event_source_arn = sqs_event("batch-of-two.json").records[0]
        .event_source_arn
        .clone();
    record.message_id = Some("moved".into());
    record.receipt_handle = Some("r-moved".into());
    assert!(
        decode_message(record.body.as_deref().unwrap())
            .unwrap()
            .slow
    );

    let outcome = process_batch(&deps, moved).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::RetryIn(_)
    ));
    let calls = deps.ports.queue.visibility_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0][0].receipt_handle, "r-moved");
    assert_eq!(calls[0][0].lane, herald_core::delivery::Lane::Standard);

    let outcome = process_batch(&deps, on_the_slow_lane).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::RetryIn(_)
    ));
    let calls = deps.ports.queue.visibility_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1][0].lane, herald_core::delivery::Lane::Slow);
}

// One announcement for each disabling: `subscription.disabled` is queued once however
// many records race to disable the subscription, and not lost when a write or the queue
// fails after the disable (docs/RELIABILITY.md).

const WATCHED: &str = "https://watch.example.com/in";

/// The tenant's subscription to `subscription.disabled`, made a second before `now`.
async fn with_watcher(store: &impl SubscriptionStore, now: chrono::DateTime<Utc>) {
    let mut watcher = active_subscription(
        "acme",
        SubscriptionId::parse(WATCHER).unwrap(),
        SubscriptionUrl::parse(WATCHED, &UrlPolicy::default()).unwrap(),
        &["subscription.disabled"],
    );
    watcher.created_at = now - chrono::Duration::seconds(1);
    store.create(&watcher).await.unwrap();
}

/// The `subscription.disabled` tasks queued so far.
fn announcements(queue: &InMemoryDeliveryQueue) -> Vec<DeliveryTask> {
    queue
        .enqueued()
        .into_iter()
        .filter(|t| t.event.event_type.as_str() == "subscription.disabled")
        .collect()
}

/// How many distinct values `key` takes over `tasks`.
fn distinct<T: Ord>(tasks: &[DeliveryTask], key: impl Fn(&DeliveryTask) -> T) -> usize {
    tasks
        .iter()
        .map(key)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// `tasks` as SQS hands them to deliver, each its own message.
fn messages_of(tasks: &[DeliveryTask]) -> SqsEvent {
    let records: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, task)| {
            json!({"messageId": format!("a-{i}"), "receiptHandle": format!("ra-{i}"), "body": task.to_message_body()})
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Asserts the announcements queued are one event under one delivery id (a task queued
/// again is the same task), and that delivering them POSTs the watcher once.
async fn announced_once(deps: &Arc<Deps>) -> DeliveryTask {
    let announced = announcements(&deps.ports.queue);
    assert!(!announced.is_empty(), "the disable was never announced");
    assert_eq!(
        distinct(&announced, |t| t.event.id.clone()),
        1,
        "{announced:?}"
    );
    assert_eq!(
        distinct(&announced, |t| t.delivery_id.clone()),
        1,
        "{announced:?}"
    );
    let before = deps.ports.sender.sent().len();
    process_batch(deps, messages_of(&announced)).await;
    let told: Vec<_> = deps.ports.sender.sent()[before..]
        .iter()
        .filter(|w| w.url.as_str() == WATCHED)
        .cloned()
        .collect();
    assert_eq!(told.len(), 1, "the watcher is told once");
    announced[0].clone()
}

/// Answers from a script, each answer taking a few milliseconds on the clock the handler
/// reads: no two attempts end at the same instant.
struct TakingTime {
    answers: InMemoryWebhookSender,
    clock: Arc<FixedClock>,
}

impl herald_core::ports::WebhookSender for TakingTime {
    async fn send(&self, webhook: herald_core::ports::OutgoingWebhook) -> SendOutcome {
        self.clock.advance(Duration::from_millis(7));
        self.answers.send(webhook).await
    }
}

/// The in-memory set, its answers taking time on a clock shared with the handler.
enum TakingTimePorts {}

impl Ports for TakingTimePorts {
    type Subscriptions = InMemorySubscriptionStore;
    type Ledger = InMemoryDeliveryLedger;
    type Events = InMemoryEventLog;
    type Queue = InMemoryDeliveryQueue;
    type Sender = TakingTime;
    type Resolver = StaticResolver;
    type Keys = Arc<SigningKeys>;
    type Clock = Arc<FixedClock>;
    type Sessions = InMemorySessionStore;
}

#[tokio::test]
async fn two_records_answered_410_at_different_instants_announce_the_disable_once() {
    let plain = unshared_deps(InMemoryWebhookSender::default(), "exponential", "3d");
    let clock = Arc::new(FixedClock::at(Utc::now()));
    let gone = [410, 410].map(InMemoryWebhookSender::status);
    let deps: Arc<DeliverDeps<TakingTimePorts>> = Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: Adapters {
            subscriptions: plain.ports.subscriptions,
            ledger: plain.ports.ledger,
            events: plain.ports.events,
            queue: plain.ports.queue,
            sender: TakingTime {
                answers: InMemoryWebhookSender::answering(gone),
                clock: Arc::clone(&clock),
            },
            resolver: plain.ports.resolver,
            keys: plain.ports.keys,
            clock,
            sessions: plain.ports.sessions,
        },
        settings: plain.settings,
    });
    let store = &deps.ports.subscriptions;
    store.create(&test_subscription()).await.unwrap();
    with_watcher(store, deps.ports.clock.now()).await;

    // Both read the subscription active with the batch, so both are POSTed and answered
    // 410, 7 ms apart, and both disable it.
    let outcome = process_batch(&deps, batch_of(2)).await;
    assert!(failures(&outcome).is_empty());
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.disposition == Disposition::Gone)
    );
    assert_eq!(deps.ports.sender.answers.sent().len(), 2);

    let announced = announcements(&deps.ports.queue);
    assert_eq!(
        announced.len(),
        1,
        "one disabling, one announcement: {announced:?}"
    );
    let stored = store
        .get(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, SubscriptionStatus::Disabled);
    // The announcement is the disabling as stored: its time, and its id made of it.
    let disabled_at = stored.disabled_at.unwrap();
    assert_eq!(
        announced[0].event.id.as_str(),
        format!(
            "subscription.disabled:{SUBSCRIPTION}:{}",
            disabled_at.timestamp_millis()
        )
    );
    assert_eq!(
        announced[0].event.data["disabled_at"],
        serde_json::to_value(disabled_at).unwrap()
    );
    assert_eq!(
        announced[0].event.data["reason"].as_str(),
        stored.disabled_reason.as_deref()
    );
}

#[tokio::test]
async fn a_410_whose_outcome_cannot_be_written_is_announced_once_when_its_message_comes_back() {
    let deps = deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(410)]),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    with_watcher(&deps.ports.subscriptions, deps.ports.clock.now()).await;
    let event = task_for(SUBSCRIPTION, "ord_gone");
    *deps.ports.ledger.fail_next_outcomes.lock().unwrap() = 1;

    let first = process_batch(&deps, event.clone()).await;
    assert_eq!(
        failures(&first).len(),
        1,
        "handed back: its outcome was not written"
    );
    let stored = deps.ports.subscriptions.all().remove(0);
    assert_eq!(stored.status, SubscriptionStatus::Disabled);

    // Seen again once the lease the outcome was to end has lapsed: the subscription is
    // disabled, so nothing is POSTed, and the disable this delivery made is announced,
    // once.
    deps.ports.clock.advance(Duration::from_secs(61));
    let again = process_batch(&deps, handed_out(event, 2)).await;
    assert!(failures(&again).is_empty());
    assert_eq!(
        again.reports[0].disposition,
        Disposition::Skipped("subscription disabled".into())
    );
    assert_eq!(deps.ports.sender.sent().len(), 1, "POSTed once");
    let announced = announced_once(&deps).await;
    assert_eq!(announced.event.data["subscription_id"], SUBSCRIPTION);
    assert!(
        announced.event.data["reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
}

#[tokio::test]
async fn a_410_whose_announcement_cannot_be_queued_is_handed_back_and_announced_when_it_comes_back()
{
    let deps = deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(410)]),
        "exponential",
        "3d",
    );
    with_subscription(&deps, SubscriptionStatus::Active).await;
    with_watcher(&deps.ports.subscriptions, deps.ports.clock.now()).await;
    let event = task_for(SUBSCRIPTION, "ord_gone");
    let task = tasks_in(&event).remove(0);
    *deps.ports.queue.fail_next.lock().unwrap() = 1;

    let first = process_batch(&deps, event.clone()).await;
    assert_eq!(
        failures(&first).len(),
        1,
        "handed back: the disable is not announced yet"
    );
    assert!(announcements(&deps.ports.queue).is_empty());
    // The outcome is written all the same.
    let record = deps.ports.ledger.record(&task.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Failed);
    assert_eq!(record.attempts[0].status, Some(410));

    let again = process_batch(&deps, handed_out(event, 2)).await;
    assert!(failures(&again).is_empty());
    assert_eq!(
        again.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed)
    );
    announced_once(&deps).await;
    let queued = announcements(&deps.ports.queue).len();

    // Another delivery's message to the disabled subscription, seen again, announces
    // nothing: the disabling is not its own.
    let other = process_batch(&deps, handed_out(task_for(SUBSCRIPTION, "ord_other"), 2)).await;
    assert_eq!(
        other.reports[0].disposition,
        Disposition::Skipped("subscription disabled".into())
    );
    assert_eq!(announcements(&deps.ports.queue).len(), queued);
}

#[tokio::test]
async fn a_disable_for_failing_whose_announcement_cannot_be_queued_is_announced_when_its_message_comes_back()
 {
    let mut deps = unshared_deps(
        InMemoryWebhookSender::answering([InMemoryWebhookSender::status(500)]),
        "exponential",
        "3d",
    );
    deps.settings.auto_disable_after = Duration::from_secs(60);
    let deps = Arc::new(deps);
    let mut subscription = test_subscription();
    subscription.failing_since = Some(deps.ports.clock.now() - chrono::Duration::seconds(120));
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    with_watcher(&deps.ports.subscriptions, deps.ports.clock.now()).await;
    let event = task_for(SUBSCRIPTION, "ord_failing");
    let task = tasks_in(&event).remove(0);
    *deps.ports.queue.fail_next.lock().unwrap() = 1;

    let first = process_batch(&deps, event.clone()).await;
    assert!(
        matches!(first.reports[0].disposition, Disposition::Interrupted(_)),
        "handed back: the disable is not announced yet ({:?})",
        first.reports[0].disposition
    );
    let stored = deps.ports.subscriptions.all().remove(0);
    assert_eq!(stored.status, SubscriptionStatus::Disabled);
    let reason = stored.disabled_reason.unwrap();
    assert!(
        reason.starts_with("no successful delivery since"),
        "{reason}"
    );
    assert_eq!(stored.disabled_by.as_ref(), Some(&task.delivery_id));
    assert!(announcements(&deps.ports.queue).is_empty());

    let again = process_batch(&deps, handed_out(event, 2)).await;
    assert!(failures(&again).is_empty());
    assert_eq!(
        again.reports[0].disposition,
        Disposition::Skipped("subscription disabled".into())
    );
    let announced = announced_once(&deps).await;
    assert_eq!(
        announced.event.data["reason"].as_str(),
        Some(reason.as_str())
    );
}

#[tokio::test]
async fn a_failed_deliverys_message_seen_through_a_copy_kept_from_before_its_disable_still_announces_it()
 {
    let deps = cached_deps(InMemoryWebhookSender::default(), Duration::from_secs(300));
    deps.ports
        .subscriptions
        .create(&test_subscription())
        .await
        .unwrap();
    with_watcher(&deps.ports.subscriptions, deps.ports.clock.now()).await;
    // This container keeps the subscription as active: a batch read it.
    process_batch(&deps, one_task(1)).await;

    // Meanwhile another container's attempt of this delivery was answered 410: it
    // disabled the subscription and wrote the outcome, and could not announce the disable.
    let event = task_for(SUBSCRIPTION, "ord_gone");
    let task = tasks_in(&event).remove(0);
    let now = deps.ports.clock.now();
    let (tenant, id) = (task.tenant.clone(), task.subscription_id.clone());
    let disabling = deps
        .ports
        .subscriptions
        .inner()
        .disable(
            &tenant,
            &id,
            "the endpoint answered 410 Gone",
            now,
            &task.delivery_id,
        )
        .await
        .unwrap();
    assert!(matches!(
        disabling,
        herald_core::ports::Disabling::Disabled(_)
    ));
    let claim = herald_core::ports::Claim {
        reopens: herald_core::ports::Reopens::Nothing,
        token: "elsewhere".into(),
        now,
        lease_until: now + chrono::Duration::seconds(60),
        expires_at: now + chrono::Duration::days(1),
    };
    let gone = herald_core::ports::AttemptResult {
        attempt: Some(herald_core::delivery::Attempt::of(
            1,
            now,
            false,
            &InMemoryWebhookSender::status(410),
        )),
        state: DeliveryState::Failed,
        next_attempt_at: None,
        reason: Some("the endpoint answered 410 Gone".into()),
        dead_letter_owed: false,
        now,
    };
    use herald_core::ports::DeliveryLedger;
    deps.ports
        .ledger
        .record_first(&task, &claim, &gone)
        .await
        .unwrap();
    assert!(announcements(&deps.ports.queue).is_empty());

    // Its message comes back here, where the kept copy still says active.
    let again = process_batch(&deps, handed_out(event, 2)).await;
    assert!(failures(&again).is_empty());
    assert_eq!(
        again.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Failed)
    );
    let announced = announcements(&deps.ports.queue);
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        announced[0].event.data["reason"],
        "the endpoint answered 410 Gone"
    );
}
