//! The slow lane on in-memory ports (tokio's clock paused, so a 25 s receiver costs no
//! wall time): an attempt on the standard lane that gets no answer within the threshold
//! is cut, recorded, and its delivery queued on the slow lane with the subscription
//! marked slow; the subscription's next tasks are moved there unattempted; on the slow
//! lane the receiver gets its full timeout; an ordered line never leaves its queue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::delivery::{AttemptError, DeliveryState, DeliveryTask, Lane};
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{
    DeliveryLedger, OutgoingWebhook, SendOutcome, SubscriptionStore, WebhookSender,
};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, Disposition, process_batch};
use herald_testkit::{MemoryPortsWith, active_subscription, edit_subscription};
use serde_json::json;

const SUBSCRIPTION: &str = "sub_01JD5Q8Z6X0000000000000000";

/// Answers after 25 s of tokio's clock, counting the POSTs it was sent: 200, or the
/// status a test sets.
#[derive(Default)]
struct TwentyFiveSeconds(Mutex<usize>, std::sync::atomic::AtomicU16);

impl WebhookSender for TwentyFiveSeconds {
    async fn send(&self, _webhook: OutgoingWebhook) -> SendOutcome {
        *self.0.lock().unwrap() += 1;
        tokio::time::sleep(Duration::from_secs(25)).await;
        let status = match self.1.load(std::sync::atomic::Ordering::SeqCst) {
            0 => 200,
            set => set,
        };
        SendOutcome::Answered {
            status,
            retry_after: None,
            excerpt: String::new(),
            latency: Duration::from_secs(25),
        }
    }
}

type Deps = DeliverDeps<MemoryPortsWith<TwentyFiveSeconds>>;

async fn deps() -> Arc<Deps> {
    let deps = DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: herald_testkit::adapters_with(TwentyFiveSeconds::default()),
        settings: DeliverySettings {
            slow_after: Some(Duration::from_secs(2)),
            ..DeliverySettings::default()
        },
    };
    let subscription = active_subscription(
        "acme",
        SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        SubscriptionUrl::parse("https://slow.example.com/in", &UrlPolicy::default()).unwrap(),
        &["order.*"],
    );
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    Arc::new(deps)
}

fn task(n: usize) -> DeliveryTask {
    herald_testkit::paid_order_task("acme", SUBSCRIPTION, &format!("ord_{n}"))
}

fn batch(tasks: &[DeliveryTask]) -> SqsEvent {
    let records: Vec<_> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"messageId": format!("m-{i}"), "receiptHandle": format!("r-{i}"), "body": t.to_message_body()}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The attempt log's record of `task`'s delivery.
async fn record_of(deps: &Deps, task: &DeliveryTask) -> herald_core::delivery::DeliveryRecord {
    deps.ports
        .ledger
        .get(&task.tenant, &task.delivery_id, Utc::now())
        .await
        .unwrap()
        .expect("the delivery is recorded")
}

fn posts(deps: &Deps) -> usize {
    *deps.ports.sender.0.lock().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_receiver_is_cut_on_the_standard_lane_and_served_on_the_slow_lane() {
    let deps = deps().await;
    let first = task(1);

    // On the standard lane: cut after 2 s, recorded, queued on the slow lane, let go.
    let started = tokio::time::Instant::now();
    let outcome = process_batch(&deps, batch(std::slice::from_ref(&first))).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.reports[0].disposition, Disposition::ToSlowLane);
    assert!(
        outcome.response.batch_item_failures.is_empty(),
        "its message is let go"
    );
    let tenant = TenantId::parse("acme").unwrap();
    let record = record_of(&deps, &first).await;
    assert_eq!(record.state, DeliveryState::Pending);
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].error, Some(AttemptError::SlowLane));
    let subscription = deps
        .ports
        .subscriptions
        .get(&tenant, &SubscriptionId::parse(SUBSCRIPTION).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(subscription.is_slow(Utc::now()), "marked slow");
    assert_eq!(
        subscription.failing_since, None,
        "a cut is no failure of the receiver"
    );
    let queued = deps.ports.queue.enqueued.lock().unwrap().clone();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].lane(), Lane::Slow);
    assert_eq!(queued[0].delivery_id, first.delivery_id);

    // The subscription's next tasks on the standard lane are moved unattempted.
    let later = [task(2), task(3)];
    let outcome = process_batch(&deps, batch(&later)).await;
    assert!(
        outcome
            .reports
            .iter()
            .all(|r| r.disposition == Disposition::ToSlowLane && r.attempt.is_none())
    );
    assert_eq!(
        posts(&deps),
        1,
        "nothing more was POSTed on the standard lane"
    );
    assert_eq!(deps.ports.queue.enqueued.lock().unwrap().len(), 3);

    // On the slow lane the receiver has its full timeout: delivered after 25 s, under
    // the same delivery id, as its second attempt. Its mark, about to lapse, is kept by
    // the slow answer.
    let id = SubscriptionId::parse(SUBSCRIPTION).unwrap();
    edit_subscription(&deps.ports.subscriptions, &tenant, &id, |lapsing| {
        lapsing.slow_until = Some(Utc::now() + chrono::Duration::seconds(30));
    })
    .await;
    let outcome = process_batch(&deps, batch(&queued)).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    let record = record_of(&deps, &first).await;
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 2);
    assert_eq!(record.attempts[1].status, Some(200));
    let kept = deps
        .ports
        .subscriptions
        .get(&tenant, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        kept.slow_until.unwrap() > Utc::now() + chrono::Duration::minutes(9),
        "{:?}",
        kept.slow_until
    );
}

/// A cut takes no step of the retry schedule: the attempt on the slow lane went out at
/// once in its stead, so when that one fails the first retry waits the schedule's first
/// delay (a minute by default), as a delivery never cut would.
#[tokio::test(start_paused = true)]
async fn a_delivery_cut_to_the_slow_lane_retries_on_the_schedules_first_delay() {
    let deps = deps().await;
    let first = task(1);
    let outcome = process_batch(&deps, batch(std::slice::from_ref(&first))).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::ToSlowLane);
    let queued = deps.ports.queue.enqueued.lock().unwrap().clone();

    deps.ports
        .sender
        .1
        .store(500, std::sync::atomic::Ordering::SeqCst);
    let outcome = process_batch(&deps, batch(&queued)).await;
    let Disposition::RetryIn(delay) = outcome.reports[0].disposition else {
        panic!("{:?}", outcome.reports[0].disposition)
    };
    assert!(
        (Duration::from_secs(54)..=Duration::from_secs(66)).contains(&delay),
        "{delay:?}"
    );
    let record = record_of(&deps, &first).await;
    assert_eq!(record.attempts.len(), 2, "the log keeps both");
}

#[tokio::test(start_paused = true)]
async fn an_ordered_line_and_a_deployment_without_a_slow_lane_wait_for_the_answer() {
    let deps = deps().await;
    let mut ordered = task(1);
    ordered.line = Some(SUBSCRIPTION.to_owned());
    // A FIFO record: its ARN names a .fifo queue and it carries its message group.
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": ordered.to_message_body(),
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:herald-ordered.fifo",
        "attributes": {"MessageGroupId": SUBSCRIPTION},
    }]}))
    .unwrap();
    let outcome = process_batch(&deps, event).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);

    let without = Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: herald_testkit::adapters_with(TwentyFiveSeconds::default()),
        settings: DeliverySettings::default(),
    });
    let subscription = deps
        .ports
        .subscriptions
        .get(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse(SUBSCRIPTION).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    without
        .ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    let outcome = process_batch(&without, batch(&[task(2)])).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    assert!(without.ports.queue.enqueued.lock().unwrap().is_empty());
}
