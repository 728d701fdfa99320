//! Throttling and 5xx from SQS and DynamoDB, injected by a proxy between Herald and moto:
//! a publish that cannot be completed is answered with a retryable error and its retry
//! completes it with nothing duplicated; deliver loses nothing, also when SQS takes its
//! batch calls only in part, dead letters included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_aws::dynamo::DynamoDeliveryLedger;
use herald_core::delivery::{DeadLetterMark, DeliveryState};
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{DeliveryLedger, DeliveryQuery};
use herald_tests::aws::{moto_url, queue_depth, sdk_config, sdk_config_for};
use herald_tests::aws_proxy::{Fault, FaultKind, RecordingProxy};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

async fn herald_behind_a_proxy() -> (RecordingProxy, TestHerald, TestReceiver) {
    let proxy = RecordingProxy::start(moto_url()).await;
    // A message whose visibility could not be shortened comes back after 5 s instead of
    // the template's 360 s, so the test sees it come back.
    let herald = TestHerald::start_with(sdk_config_for(&proxy.url()), &[], Some(5)).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    (proxy, herald, receiver)
}

fn order(id: &str) -> Value {
    json!({"id": id, "type": "order.paid", "data": {"order": id}})
}

/// What arrived, by event, after waiting a little longer for stragglers.
async fn arrivals_settled(
    receiver: &TestReceiver,
    expected: usize,
) -> BTreeMap<String, Vec<Recorded>> {
    receiver.wait_for(expected, Duration::from_secs(90)).await;
    // Long enough for a duplicate from a retry or a second copy to turn up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut by_event: BTreeMap<String, Vec<Recorded>> = BTreeMap::new();
    for request in receiver.requests() {
        let order = request.json()["data"]["order"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by_event.entry(order).or_default().push(request);
    }
    by_event
}

async fn a_failed_publish_is_retryable_and_its_retry_delivers_once(fault: Fault) {
    let (proxy, herald, receiver) = herald_behind_a_proxy().await;
    proxy.inject(fault.clone());

    let (status, answer) = herald.publish("acme", order("ord_1")).await;
    assert_eq!(status, 503, "{fault:?}: {answer}");
    assert_eq!(answer["error"]["code"], "unavailable", "{answer}");
    assert!(proxy.injected() > 0);

    proxy.heal();
    let (status, answer) = herald.publish("acme", order("ord_1")).await;
    assert_eq!(status, 202, "{answer}");
    let by_event = arrivals_settled(&receiver, 1).await;
    assert_eq!(by_event.len(), 1, "{by_event:?}");
    assert_eq!(
        by_event["ord_1"].len(),
        1,
        "{fault:?}: the event arrived more than once"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn sqs_errors_while_queuing_are_503_and_the_retry_delivers_once() {
    a_failed_publish_is_retryable_and_its_retry_delivers_once(Fault {
        action: "sqs:SendMessageBatch".into(),
        kind: FaultKind::ServerError,
        times: usize::MAX,
    })
    .await;
}

#[tokio::test]
async fn sqs_throttling_while_queuing_is_503_and_the_retry_delivers_once() {
    a_failed_publish_is_retryable_and_its_retry_delivers_once(Fault {
        action: "sqs:SendMessageBatch".into(),
        kind: FaultKind::Throttling,
        times: usize::MAX,
    })
    .await;
}

#[tokio::test]
async fn dynamodb_throttling_while_recording_is_503_and_the_retry_delivers_once() {
    a_failed_publish_is_retryable_and_its_retry_delivers_once(Fault {
        action: "dynamodb:PutItem".into(),
        kind: FaultKind::Throttling,
        times: usize::MAX,
    })
    .await;
}

#[tokio::test]
async fn dynamodb_errors_reading_subscriptions_are_503_and_the_retry_delivers_once() {
    a_failed_publish_is_retryable_and_its_retry_delivers_once(Fault {
        action: "dynamodb:Query".into(),
        kind: FaultKind::ServerError,
        times: usize::MAX,
    })
    .await;
}

#[tokio::test]
async fn deliver_loses_nothing_while_dynamodb_and_sqs_fail_for_a_while() {
    let (proxy, herald, receiver) = herald_behind_a_proxy().await;
    let events: Vec<Value> = (0..20).map(|i| order(&format!("ord_{i}"))).collect();
    // Claims, outcomes and reads of deliver fail for a while, and so do the first
    // attempts to hide messages for later.
    proxy.inject(Fault {
        action: "dynamodb:UpdateItem".into(),
        kind: FaultKind::ServerError,
        times: 24,
    });
    proxy.inject(Fault {
        action: "dynamodb:".into(),
        kind: FaultKind::Throttling,
        times: 12,
    });
    proxy.inject(Fault {
        action: "sqs:ChangeMessageVisibilityBatch".into(),
        kind: FaultKind::Throttling,
        times: 6,
    });
    // The publish may itself meet the faults: retrying it until it is accepted is what a
    // producer does with a 503.
    let started = Instant::now();
    loop {
        let (status, answer) = herald.publish("acme", json!({"events": events})).await;
        if status == 202 {
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never accepted"
        );
    }

    let by_event = arrivals_settled(&receiver, events.len()).await;
    let missing: Vec<String> = (0..20)
        .map(|i| format!("ord_{i}"))
        .filter(|id| !by_event.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost: {missing:?} ({} faults injected)",
        proxy.injected()
    );
    for (event, copies) in &by_event {
        let first = copies[0].header("webhook-id");
        assert!(
            copies.iter().all(|c| c.header("webhook-id") == first),
            "{event} arrived under two webhook-ids"
        );
    }
    let duplicates: usize = by_event.values().map(|c| c.len() - 1).sum();
    eprintln!(
        "faults: {} injected, 20 events delivered, {duplicates} duplicates (same webhook-id)",
        proxy.injected()
    );
    assert!(proxy.injected() >= 24, "the faults were not all met");
    herald.shutdown().await;
}

#[tokio::test]
async fn deliver_loses_nothing_when_sqs_takes_its_batch_calls_in_part() {
    let proxy = RecordingProxy::start(moto_url()).await;
    // The test schedule (1s, 1s, 1s): four attempts, then the dead-letter queue.
    let herald = TestHerald::start_with(sdk_config_for(&proxy.url()), &[], Some(5)).await;
    let events: Vec<Value> = (0..10).map(|i| order(&format!("ord_{i}"))).collect();
    // Every event meets a 503 first (retried with a visibility change), then 200s.
    let flaky = TestReceiver::start(Script::sequence(
        std::iter::repeat_n(503, events.len()).chain([200]),
    ))
    .await;
    // Every attempt fails: each delivery ends in the dead-letter queue.
    let failing = TestReceiver::start(Script::always(500)).await;
    herald.subscribe("acme", &flaky.url(), &["order.*"]).await;
    let (failing_subscription, _) = herald.subscribe("acme", &failing.url(), &["order.*"]).await;
    let (status, answer) = herald.publish("acme", json!({"events": events})).await;
    assert_eq!(status, 202, "{answer}");
    // From here on, SQS refuses the first entry of some batch calls, more often than the
    // adapter sends one again (its first try and 3 more): some visibility changes are
    // interruptions, handed back after the visibility timeout, and so are some dead
    // letters, refused for good. Every call of a refused entry's resends is refused while
    // refusals are left, and a batch's dead letters are one call with one refused entry,
    // so with 2 pollers at most 2 entries are being refused at once: of 12 refusals, at
    // least two entries take 4 each. Their deliveries are already recorded failed, so
    // only the mark that their dead letters are owed gets them into the queue.
    proxy.inject(Fault {
        action: "sqs:ChangeMessageVisibilityBatch".into(),
        kind: FaultKind::RefuseFirstEntry,
        times: 6,
    });
    proxy.inject(Fault {
        action: "sqs:SendMessageBatch".into(),
        kind: FaultKind::RefuseFirstEntry,
        times: 12,
    });

    let by_event = arrivals_settled(&flaky, events.len() * 2).await;
    assert_eq!(by_event.len(), events.len(), "lost: {by_event:?}");
    for (event, copies) in &by_event {
        let first = copies[0].header("webhook-id");
        assert!(
            copies.iter().all(|c| c.header("webhook-id") == first),
            "{event} arrived under two webhook-ids"
        );
        assert!(
            copies.iter().any(|c| c.status == 200),
            "{event} was never delivered"
        );
    }
    let dead_letter_queue = herald
        .local
        .provisioned()
        .dead_letter_queue_url()
        .to_owned();
    let sqs = aws_sdk_sqs::Client::new(&sdk_config());
    let started = Instant::now();
    while queue_depth(&sqs, &dead_letter_queue).await < events.len()
        && started.elapsed() < Duration::from_secs(90)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Long enough for a second copy to turn up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        queue_depth(&sqs, &dead_letter_queue).await,
        events.len(),
        "one dead letter per failing delivery, none lost or doubled"
    );
    assert_eq!(failing.requests().len(), events.len() * 4);
    assert_eq!(proxy.injected(), 18, "the refusals were not all met");
    let ledger = DynamoDeliveryLedger::new(
        aws_sdk_dynamodb::Client::new(&sdk_config()),
        herald.local.provisioned().deliveries_table().to_owned(),
    );
    let query = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    let records = ledger
        .list(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse(&failing_subscription).unwrap(),
            &query,
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .items;
    assert_eq!(records.len(), events.len());
    assert!(
        records.iter().all(
            |r| r.state == DeliveryState::Failed && r.dead_letter == Some(DeadLetterMark::Sent)
        ),
        "every dead letter is marked sent: {:?}",
        records
            .iter()
            .map(|r| (r.state, r.dead_letter))
            .collect::<Vec<_>>()
    );
    herald.shutdown().await;
}
