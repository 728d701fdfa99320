use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use herald_aws::sqs::SqsDeliveryQueue;
use herald_core::delivery::{DeliveryTask, decode_message};
use herald_core::ids::SubscriptionId;
use herald_core::ports::{DeadLetter, DeliveryQueue, QueueError, VisibilityChange};
use herald_tests::aws::TestAws;
use serde_json::json;

use super::{event, tenant};

/// The same, with the ordered lane's queues.
async fn ordered_queue() -> (TestAws, SqsDeliveryQueue) {
    let (aws, queue) = queue().await;
    let queue = queue.with_ordered(
        aws.provisioned.ordered_queue_url().into(),
        aws.provisioned.ordered_dead_letter_queue_url().into(),
    );
    (aws, queue)
}

async fn queue() -> (TestAws, SqsDeliveryQueue) {
    let aws = TestAws::new().await;
    let queue = SqsDeliveryQueue::new(
        aws.sqs.clone(),
        aws.provisioned.delivery_queue_url().into(),
        aws.provisioned.dead_letter_queue_url().into(),
    );
    (aws, queue)
}

fn tasks(count: usize, data: serde_json::Value) -> Vec<DeliveryTask> {
    let sub = SubscriptionId::generate(Utc::now(), &mut rand::rng());
    (0..count)
        .map(|i| {
            DeliveryTask::new(
                &tenant("acme"),
                &sub,
                &event(&format!("e{i}"), data.clone()),
                Utc::now(),
            )
        })
        .collect()
}

/// The delivery ids of the tasks on a queue right now.
async fn queued(aws: &TestAws, url: &str) -> BTreeSet<String> {
    aws.peek_queue(url)
        .await
        .iter()
        .map(|m| {
            decode_message(m.body().unwrap())
                .unwrap()
                .delivery_id
                .to_string()
        })
        .collect()
}

fn ids(tasks: &[DeliveryTask]) -> BTreeSet<String> {
    tasks.iter().map(|t| t.delivery_id.to_string()).collect()
}

#[tokio::test]
async fn more_tasks_than_a_batch_are_all_queued() {
    let (aws, queue) = queue().await;
    let tasks = tasks(25, json!({"n": 1}));
    queue.enqueue(&tasks).await.unwrap();
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(&tasks)
    );
    queue.enqueue(&[]).await.unwrap();
}

#[tokio::test]
async fn batches_are_split_by_bytes_as_well_as_by_count() {
    let (aws, queue) = queue().await;
    // Eight of these are 1.6 MiB: over SQS's (and moto's) 1 MiB limit for one call.
    let tasks = tasks(8, json!({"blob": "x".repeat(200 * 1024)}));
    queue.enqueue(&tasks).await.unwrap();
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(&tasks)
    );
}

fn hide(receipt_handle: &str, seconds: u64) -> VisibilityChange {
    VisibilityChange {
        receipt_handle: receipt_handle.to_owned(),
        delay: Duration::from_secs(seconds),
        lane: herald_core::delivery::Lane::Standard,
    }
}

#[tokio::test]
async fn retry_later_hides_each_message_for_its_delay() {
    let (aws, queue) = queue().await;
    let url = aws.provisioned.delivery_queue_url();
    let tasks = tasks(2, json!({}));
    queue.enqueue(&tasks).await.unwrap();
    let messages = aws.peek_queue(url).await;
    assert_eq!(messages.len(), 2);

    let hidden = messages[0].receipt_handle().unwrap();
    let shown = messages[1].receipt_handle().unwrap();
    let results = queue.retry_later(&[hide(hidden, 60), hide(shown, 0)]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(aws.peek_queue(url).await.len(), 1, "hidden for the delay");
    let results = queue.retry_later(&[hide(hidden, 0)]).await;
    assert!(results[0].is_ok());
    assert_eq!(aws.peek_queue(url).await.len(), 2, "no delay, back at once");
    let results = queue.retry_later(&[hide(hidden, 3 * 24 * 3600)]).await;
    assert!(
        results[0].is_ok(),
        "a delay past SQS's 12 hours is clamped, not refused: {results:?}"
    );
    assert_eq!(aws.peek_queue(url).await.len(), 1);
    assert!(queue.retry_later(&[]).await.is_empty());
}

#[tokio::test]
async fn more_visibility_changes_than_a_batch_all_apply_and_a_stale_receipt_fails_alone() {
    let (aws, queue) = queue().await;
    let url = aws.provisioned.delivery_queue_url();
    queue.enqueue(&tasks(14, json!({}))).await.unwrap();
    let messages = aws.peek_queue(url).await;
    assert_eq!(messages.len(), 14);
    let mut changes: Vec<VisibilityChange> = messages
        .iter()
        .map(|m| hide(m.receipt_handle().unwrap(), 60))
        .collect();
    // Among them, in the second batch call, a receipt handle SQS never gave out.
    changes.insert(12, hide("not-a-receipt-handle", 60));

    let results = queue.retry_later(&changes).await;

    assert_eq!(results.len(), 15);
    for (i, result) in results.iter().enumerate() {
        if i == 12 {
            assert!(
                matches!(result, Err(QueueError::Refused { code, .. }) if code == "ReceiptHandleIsInvalid"),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "entry {i}: {result:?}");
        }
    }
    assert!(
        aws.peek_queue(url).await.is_empty(),
        "all fourteen hidden, across two calls"
    );
}

#[tokio::test]
async fn a_dead_letter_carries_its_reason_and_delivery_id() {
    let (aws, queue) = queue().await;
    let tasks = tasks(1, json!({}));
    let letters = [
        DeadLetter {
            body: tasks[0].to_message_body(),
            reason: "no success after 3 attempts".into(),
            delivery_id: Some(tasks[0].delivery_id.clone()),
            line: None,
        },
        DeadLetter {
            body: "{not json".into(),
            reason: "not a Herald delivery task".into(),
            delivery_id: None,
            line: None,
        },
    ];
    let results = queue.dead_letter(&letters).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let dead = aws
        .peek_queue(aws.provisioned.dead_letter_queue_url())
        .await;
    assert_eq!(dead.len(), 2);
    let text = |m: &aws_sdk_sqs::types::Message, name: &str| {
        m.message_attributes()
            .and_then(|a| a.get(name))
            .and_then(|v| v.string_value())
            .map(str::to_owned)
    };
    let task = dead
        .iter()
        .find(|m| m.body() == Some(tasks[0].to_message_body().as_str()))
        .unwrap();
    assert_eq!(
        text(task, "herald-reason").as_deref(),
        Some("no success after 3 attempts")
    );
    assert_eq!(
        text(task, "herald-delivery-id").as_deref(),
        Some(tasks[0].delivery_id.as_str())
    );
    let garbage = dead.iter().find(|m| m.body() == Some("{not json")).unwrap();
    assert_eq!(
        text(garbage, "herald-reason").as_deref(),
        Some("not a Herald delivery task")
    );
    assert_eq!(text(garbage, "herald-delivery-id"), None);
    assert!(
        aws.peek_queue(aws.provisioned.delivery_queue_url())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn more_dead_letters_than_a_batch_or_a_mebibyte_all_arrive() {
    let (aws, queue) = queue().await;
    // Twelve of 200 KiB: more entries than one call takes, and more bytes (2.4 MiB).
    let letters: Vec<DeadLetter> = (0..12)
        .map(|i| DeadLetter {
            body: format!("{i:02}{}", "x".repeat(200 * 1024)),
            reason: format!("reason {i}"),
            delivery_id: None,
            line: None,
        })
        .collect();
    let results = queue.dead_letter(&letters).await;
    assert_eq!(results.len(), 12);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut arrived: Vec<String> = aws
        .peek_queue(aws.provisioned.dead_letter_queue_url())
        .await
        .iter()
        .map(|m| m.body().unwrap()[..2].to_owned())
        .collect();
    arrived.sort();
    let expected: Vec<String> = (0..12).map(|i| format!("{i:02}")).collect();
    assert_eq!(arrived, expected);
    assert!(queue.dead_letter(&[]).await.is_empty());
}

#[tokio::test]
async fn a_queue_that_builds_its_client_on_first_use_queues_and_dead_letters() {
    let aws = TestAws::new().await;
    let queue = SqsDeliveryQueue::on_first_use(
        &aws.sdk,
        aws.provisioned.delivery_queue_url().into(),
        aws.provisioned.dead_letter_queue_url().into(),
    );
    let tasks = tasks(3, json!({"n": 1}));
    queue.enqueue(&tasks).await.unwrap();
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(&tasks)
    );
    let letter = DeadLetter {
        body: tasks[0].to_message_body(),
        reason: "no success after 1 attempts; the retry window is spent".into(),
        delivery_id: Some(tasks[0].delivery_id.clone()),
        line: None,
    };
    let results = queue.dead_letter(&[letter]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        queued(&aws, aws.provisioned.dead_letter_queue_url()).await,
        ids(&tasks[..1])
    );
}

#[tokio::test]
async fn each_task_goes_in_its_tenants_message_group_for_fair_queueing() {
    let (aws, queue) = queue().await;
    let sub = SubscriptionId::generate(Utc::now(), &mut rand::rng());
    let tasks: Vec<DeliveryTask> = ["acme", "globex", "acme"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            DeliveryTask::new(
                &tenant(name),
                &sub,
                &event(&format!("e{i}"), json!({})),
                Utc::now(),
            )
        })
        .collect();
    queue.enqueue(&tasks).await.unwrap();
    let messages = aws.peek_queue(aws.provisioned.delivery_queue_url()).await;
    assert_eq!(messages.len(), 3);
    for message in &messages {
        let task = decode_message(message.body().unwrap()).unwrap();
        let group = message
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
            .map(String::as_str);
        assert_eq!(group, Some(task.tenant.as_str()));
    }
}

/// Every message on a FIFO queue, in the order SQS hands them out, each deleted once seen.
async fn drain_in_order(aws: &TestAws, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let output = aws
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            return all;
        }
        for message in output.messages() {
            aws.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        all.extend(output.messages().iter().cloned());
    }
}

#[tokio::test]
async fn the_ordered_lane_queues_each_line_in_order_once_and_dead_letters_in_the_line() {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
    let (aws, queue) = ordered_queue().await;
    let mut ordered = tasks(25, json!({}));
    for task in &mut ordered {
        task.line = Some(format!("{}", task.subscription_id));
    }
    let unordered = tasks(2, json!({}));
    let mut all = ordered.clone();
    all.insert(3, unordered[0].clone());
    all.push(unordered[1].clone());
    queue.enqueue(&all).await.unwrap();
    // The same tasks again (a publish retried): deduplicated by delivery id. (SQS keeps a
    // deduplication id five minutes; moto only while its message is on the queue.)
    queue.enqueue(&ordered).await.unwrap();

    let got = drain_in_order(&aws, aws.provisioned.ordered_queue_url()).await;
    let order: Vec<String> = got
        .iter()
        .map(|m| {
            decode_message(m.body().unwrap())
                .unwrap()
                .delivery_id
                .to_string()
        })
        .collect();
    let expected: Vec<String> = ordered.iter().map(|t| t.delivery_id.to_string()).collect();
    assert_eq!(order, expected, "in the order given, each once");
    for (message, task) in got.iter().zip(&ordered) {
        let attribute = |name: &Name| message.attributes().and_then(|a| a.get(name)).cloned();
        assert_eq!(attribute(&Name::MessageGroupId), task.line);
        assert_eq!(
            attribute(&Name::MessageDeduplicationId).as_deref(),
            Some(task.delivery_id.as_str())
        );
    }
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(&unordered),
        "the others on the standard queue"
    );

    // A dead letter of the line goes to the lane's FIFO dead-letter queue, in the line.
    let line = ordered[0].line.clone().unwrap();
    let letters = [DeadLetter {
        body: ordered[0].to_message_body(),
        reason: "window spent".into(),
        delivery_id: Some(ordered[0].delivery_id.clone()),
        line: Some(line.clone()),
    }];
    assert!(queue.dead_letter(&letters).await.iter().all(Result::is_ok));
    let dead = drain_in_order(&aws, aws.provisioned.ordered_dead_letter_queue_url()).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0]
            .attributes()
            .and_then(|a| a.get(&Name::MessageGroupId)),
        Some(&line)
    );
    assert_eq!(
        dead[0].message_attributes().unwrap()[DeadLetter::REASON_ATTRIBUTE].string_value(),
        Some("window spent")
    );

    // A message of the line hidden for its retry holds the line.
    let mut retry = tasks(2, json!({}));
    for task in &mut retry {
        task.line = Some("retry-line".into());
    }
    queue.enqueue(&retry).await.unwrap();
    let first = aws
        .sqs
        .receive_message()
        .queue_url(aws.provisioned.ordered_queue_url())
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    let handle = first.messages()[0].receipt_handle().unwrap().to_owned();
    let hidden = queue
        .retry_later(&[VisibilityChange {
            receipt_handle: handle,
            delay: Duration::from_secs(30),
            lane: herald_core::delivery::Lane::Ordered,
        }])
        .await;
    assert!(hidden.iter().all(Result::is_ok), "{hidden:?}");
    assert!(
        drain_in_order(&aws, aws.provisioned.ordered_queue_url())
            .await
            .is_empty(),
        "nothing of the line while its first waits"
    );
}

#[tokio::test]
async fn slow_tasks_go_on_the_slow_lanes_queue_and_without_one_on_the_standard_queue() {
    let (aws, standard_only) = queue().await;
    let with_slow = SqsDeliveryQueue::new(
        aws.sqs.clone(),
        aws.provisioned.delivery_queue_url().into(),
        aws.provisioned.dead_letter_queue_url().into(),
    )
    .with_slow(Some(aws.provisioned.slow_queue_url().into()));
    let mut all = tasks(14, json!({"n": 1}));
    for task in all.iter_mut().skip(4) {
        task.slow = true;
    }
    let (fast, slow) = all.split_at(4);
    with_slow.enqueue(&all).await.unwrap();
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(fast)
    );
    assert_eq!(
        queued(&aws, aws.provisioned.slow_queue_url()).await,
        ids(slow)
    );

    // A slow-lane message handed back hides on the slow lane's queue.
    let received = aws
        .sqs
        .receive_message()
        .queue_url(aws.provisioned.slow_queue_url())
        .max_number_of_messages(1)
        .send()
        .await
        .unwrap();
    let handle = received.messages()[0].receipt_handle().unwrap();
    let change = VisibilityChange {
        receipt_handle: handle.into(),
        delay: Duration::from_secs(30),
        lane: herald_core::delivery::Lane::Slow,
    };
    assert!(
        with_slow
            .retry_later(&[change])
            .await
            .iter()
            .all(Result::is_ok)
    );

    // A deployment without a slow lane queues them with the rest.
    let more = tasks(3, json!({"n": 2}))
        .into_iter()
        .map(|t| DeliveryTask { slow: true, ..t })
        .collect::<Vec<_>>();
    standard_only.enqueue(&more).await.unwrap();
    let standard = queued(&aws, aws.provisioned.delivery_queue_url()).await;
    assert!(ids(&more).is_subset(&standard));
}

/// A publish's messages are made and sent a share at a time (what one round of ten batch
/// calls carries, 10 MiB), so ingest's memory does not grow with fan-out times event
/// size: 48 messages of 240 KiB are more than one share, and all arrive, an ordered
/// line's in the order given across the shares.
#[tokio::test]
async fn more_than_a_share_of_messages_all_arrive_and_a_line_keeps_its_order() {
    let (aws, queue) = ordered_queue().await;
    let blob = json!({"blob": "x".repeat(240 * 1024)});
    let mut ordered = tasks(48, blob.clone());
    for task in &mut ordered {
        task.line = Some("one-line".into());
    }
    let unordered = tasks(48, blob);
    let bytes: usize = ordered
        .iter()
        .chain(&unordered)
        .map(|t| t.to_message_body().len())
        .sum();
    assert!(bytes > 2 * 10 * 1024 * 1024, "{bytes} bytes");
    let mut all = Vec::new();
    for (a, b) in ordered.iter().zip(&unordered) {
        all.push(a.clone());
        all.push(b.clone());
    }

    queue.enqueue(&all).await.unwrap();

    let order: Vec<String> = drain_in_order(&aws, aws.provisioned.ordered_queue_url())
        .await
        .iter()
        .map(|m| {
            decode_message(m.body().unwrap())
                .unwrap()
                .delivery_id
                .to_string()
        })
        .collect();
    let expected: Vec<String> = ordered.iter().map(|t| t.delivery_id.to_string()).collect();
    assert_eq!(order, expected);
    assert_eq!(
        queued(&aws, aws.provisioned.delivery_queue_url()).await,
        ids(&unordered)
    );
}
