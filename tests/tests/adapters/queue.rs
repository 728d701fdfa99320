use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use herald_shared::delivery::{DeliveryTask, decode_message};
use herald_shared::ids::SubscriptionId;
use herald_shared::ports::{DeadLetter, DeliveryQueue};
use herald_shared::sqs::SqsDeliveryQueue;
use herald_tests::aws::TestAws;
use serde_json::json;

use super::{event, tenant};

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

#[tokio::test]
async fn retry_later_hides_a_message_for_the_delay() {
    let (aws, queue) = queue().await;
    let url = aws.provisioned.delivery_queue_url();
    let tasks = tasks(2, json!({}));
    queue.enqueue(&tasks).await.unwrap();
    let messages = aws.peek_queue(url).await;
    assert_eq!(messages.len(), 2);

    let hidden = messages[0].receipt_handle().unwrap();
    queue
        .retry_later(hidden, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(aws.peek_queue(url).await.len(), 1, "hidden for the delay");
    queue.retry_later(hidden, Duration::ZERO).await.unwrap();
    assert_eq!(aws.peek_queue(url).await.len(), 2, "no delay, back at once");
    queue
        .retry_later(hidden, Duration::from_secs(3 * 24 * 3600))
        .await
        .expect("a delay past SQS's 12 hours is clamped, not refused");
    assert_eq!(aws.peek_queue(url).await.len(), 1);
}

#[tokio::test]
async fn a_dead_letter_carries_its_reason_and_delivery_id() {
    let (aws, queue) = queue().await;
    let tasks = tasks(1, json!({}));
    let why = DeadLetter {
        reason: "no success after 3 attempts".into(),
        delivery_id: Some(tasks[0].delivery_id.clone()),
    };
    queue
        .dead_letter(&tasks[0].to_message_body(), &why)
        .await
        .unwrap();
    let poison = DeadLetter {
        reason: "not a Herald delivery task".into(),
        delivery_id: None,
    };
    queue.dead_letter("{not json", &poison).await.unwrap();

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
