//! The DynamoDB and SQS adapters against moto, each test on its own tables and queues.

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_shared::delivery::{Attempt, DeliveryState, DeliveryTask};
use herald_shared::dynamo::{DynamoDeliveryLedger, DynamoEventLog, DynamoSubscriptionStore};
use herald_shared::event::{Event, EventType};
use herald_shared::ids::{EventId, SubscriptionId, TenantId};
use herald_shared::ports::*;
use herald_shared::signing::WebhookSecret;
use herald_shared::sqs::SqsDeliveryQueue;
use herald_shared::subscription::{SigningSecret, Subscription, SubscriptionStatus};
use herald_shared::url_guard::{SubscriptionUrl, UrlPolicy};
use herald_tests::aws::TestAws;
use serde_json::json;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn subscription(tenant_name: &str, at: DateTime<Utc>) -> Subscription {
    let mut rng = rand::rng();
    Subscription {
        tenant: tenant(tenant_name),
        id: SubscriptionId::generate(at, &mut rng),
        url: SubscriptionUrl::parse("https://hooks.example.com/", &UrlPolicy::default()).unwrap(),
        description: String::new(),
        event_types: vec![herald_shared::pattern::EventTypePattern::parse("*").unwrap()],
        filter: None,
        format: Default::default(),
        selection: None,
        headers: Default::default(),
        signatures: Default::default(),
        supersede: false,
        secrets: vec![SigningSecret {
            secret: WebhookSecret::generate(&mut rng),
            expires_at: None,
        }],
        status: SubscriptionStatus::Active,
        disabled_reason: None,
        disabled_at: None,
        failing_since: None,
        version: 1,
        created_at: at,
        updated_at: at,
    }
}

fn event(id: &str, data: serde_json::Value) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::parse("order.shipped").unwrap(),
        occurred_at: Utc::now(),
        data: data.as_object().unwrap().clone(),
        subject: None,
    }
}

#[tokio::test]
async fn subscriptions_list_newest_first_per_tenant_with_cursors() {
    let aws = TestAws::new().await;
    let store = DynamoSubscriptionStore::new(
        aws.dynamo.clone(),
        aws.provisioned.subscriptions_table().into(),
    );
    let start = Utc::now();
    let mut mine = Vec::new();
    for i in 0..5 {
        let s = subscription("acme", start + chrono::Duration::milliseconds(i * 10));
        store.create(&s).await.unwrap();
        mine.push(s.id);
    }
    store.create(&subscription("other", start)).await.unwrap();
    mine.reverse();

    let first = store.list(&tenant("acme"), 2, None).await.unwrap();
    let second = store
        .list(&tenant("acme"), 2, first.next.as_deref())
        .await
        .unwrap();
    let third = store
        .list(&tenant("acme"), 2, second.next.as_deref())
        .await
        .unwrap();
    let listed: Vec<_> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, mine);
    assert!(third.next.is_none());
    assert!(matches!(
        store.list(&tenant("acme"), 2, Some("bogus")).await,
        Err(StoreError::InvalidCursor)
    ));

    let id = &mine[0];
    assert!(store.get(&tenant("other"), id).await.unwrap().is_none());
    assert!(!store.delete(&tenant("other"), id).await.unwrap());
    store
        .disable(&tenant("acme"), id, "testing", Utc::now())
        .await
        .unwrap();
    let disabled = store.get(&tenant("acme"), id).await.unwrap().unwrap();
    assert_eq!(
        (disabled.status, disabled.version),
        (SubscriptionStatus::Disabled, 2)
    );
    assert_eq!(store.active(&tenant("acme")).await.unwrap().len(), 4);
    assert!(store.delete(&tenant("acme"), id).await.unwrap());
    assert!(store.get(&tenant("acme"), id).await.unwrap().is_none());
}

#[tokio::test]
async fn the_event_log_remembers_each_event_once_until_it_expires() {
    let aws = TestAws::new().await;
    let log = DynamoEventLog::new(
        aws.dynamo.clone(),
        aws.provisioned.events_table().into(),
        Duration::from_secs(60),
    );
    let e = event("e1", json!({"x": 1}));
    let now = Utc::now();
    assert_eq!(
        log.accept(&tenant("acme"), &e, "f1", now).await.unwrap(),
        Acceptance::New
    );
    assert_eq!(
        log.accept(&tenant("acme"), &e, "f1", now).await.unwrap(),
        Acceptance::Seen {
            fingerprint: "f1".into(),
            deliveries: None
        }
    );
    log.complete(&tenant("acme"), &e.id, 3).await.unwrap();
    assert_eq!(
        log.accept(&tenant("acme"), &e, "f1", now).await.unwrap(),
        Acceptance::Seen {
            fingerprint: "f1".into(),
            deliveries: Some(3)
        }
    );
    assert_eq!(
        log.accept(&tenant("other"), &e, "f1", now).await.unwrap(),
        Acceptance::New,
        "ids are per tenant"
    );
    // TTL deletion lags; a record past its expiry counts as gone.
    let later = now + chrono::Duration::seconds(120);
    assert_eq!(
        log.accept(&tenant("acme"), &e, "f2", later).await.unwrap(),
        Acceptance::New
    );
}

fn claim(now: DateTime<Utc>, token: &str, forced: bool) -> Claim {
    Claim {
        task_forced: forced,
        token: token.into(),
        now,
        lease_until: now + chrono::Duration::seconds(30),
        expires_at: now + chrono::Duration::seconds(3600),
    }
}

fn attempt(number: u32, status: u16) -> Attempt {
    Attempt {
        number,
        at: Utc::now(),
        status: Some(status),
        error: None,
        latency_ms: 5,
        response: "ok".into(),
        forced: false,
    }
}

fn finish(state: DeliveryState, attempt: Attempt) -> AttemptResult {
    AttemptResult {
        attempt: Some(attempt),
        state,
        next_attempt_at: None,
        reason: None,
        now: Utc::now(),
    }
}

#[tokio::test]
async fn claims_lease_finish_and_refuse_as_the_ledger_promises() {
    let aws = TestAws::new().await;
    let ledger = DynamoDeliveryLedger::new(
        aws.dynamo.clone(),
        aws.provisioned.deliveries_table().into(),
    );
    let sub = subscription("acme", Utc::now());
    let mut task = DeliveryTask::new(&tenant("acme"), &sub.id, &event("e1", json!({})));
    let now = Utc::now();

    let ClaimOutcome::Claimed(fresh) = ledger.claim(&task, &claim(now, "a", false)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (fresh.state, fresh.attempts.len()),
        (DeliveryState::Delivering, 0)
    );
    assert!(matches!(
        ledger.claim(&task, &claim(now, "b", false)).await.unwrap(),
        ClaimOutcome::Leased { .. }
    ));
    assert!(matches!(
        ledger
            .finish(
                &task.delivery_id,
                "b",
                &finish(DeliveryState::Pending, attempt(1, 500))
            )
            .await,
        Err(StoreError::Conflict)
    ));
    ledger
        .finish(
            &task.delivery_id,
            "a",
            &finish(DeliveryState::Pending, attempt(1, 500)),
        )
        .await
        .unwrap();

    let ClaimOutcome::Claimed(second) = ledger.claim(&task, &claim(now, "c", false)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(second.attempts.len(), 1);
    ledger
        .finish(
            &task.delivery_id,
            "c",
            &finish(DeliveryState::Delivered, attempt(2, 200)),
        )
        .await
        .unwrap();

    let ClaimOutcome::Finished(done) = ledger.claim(&task, &claim(now, "d", false)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(done.state, DeliveryState::Delivered);
    assert_eq!(
        done.attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );

    task.forced = true;
    assert!(
        matches!(
            ledger.claim(&task, &claim(now, "e", false)).await.unwrap(),
            ClaimOutcome::Claimed(_)
        ),
        "a forced task reopens it"
    );

    let got = ledger
        .get(&tenant("acme"), &task.delivery_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.subscription_id, sub.id);
    assert!(
        ledger
            .get(&tenant("other"), &task.delivery_id, now)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_expired_lease_can_be_taken_over_and_an_expired_record_starts_afresh() {
    let aws = TestAws::new().await;
    let ledger = DynamoDeliveryLedger::new(
        aws.dynamo.clone(),
        aws.provisioned.deliveries_table().into(),
    );
    let sub = subscription("acme", Utc::now());
    let task = DeliveryTask::new(&tenant("acme"), &sub.id, &event("e2", json!({})));
    let now = Utc::now();
    ledger.claim(&task, &claim(now, "a", false)).await.unwrap();
    let after_lease = now + chrono::Duration::seconds(31);
    assert!(matches!(
        ledger
            .claim(&task, &claim(after_lease, "b", false))
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    assert!(matches!(
        ledger
            .finish(
                &task.delivery_id,
                "a",
                &finish(DeliveryState::Delivered, attempt(1, 200))
            )
            .await,
        Err(StoreError::Conflict)
    ));
    ledger
        .finish(
            &task.delivery_id,
            "b",
            &finish(DeliveryState::Delivered, attempt(1, 200)),
        )
        .await
        .unwrap();

    let after_expiry = now + chrono::Duration::seconds(7200);
    let ClaimOutcome::Claimed(restarted) = ledger
        .claim(&task, &claim(after_expiry, "c", false))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(restarted.attempts.is_empty());
    assert_eq!(
        restarted.first_attempt_at.timestamp_millis(),
        after_expiry.timestamp_millis()
    );
    assert!(
        ledger
            .get(
                &tenant("acme"),
                &task.delivery_id,
                after_expiry + chrono::Duration::seconds(7200)
            )
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_queue_batches_by_count_and_bytes_and_dead_letters_with_a_reason() {
    let aws = TestAws::new().await;
    let queue = SqsDeliveryQueue::new(
        aws.sqs.clone(),
        aws.provisioned.delivery_queue_url().into(),
        aws.provisioned.dead_letter_queue_url().into(),
    );
    let sub = subscription("acme", Utc::now());
    let big = "x".repeat(200 * 1024);
    let tasks: Vec<DeliveryTask> = (0..25)
        .map(|i| {
            let data = if i < 8 {
                json!({"blob": big})
            } else {
                json!({"n": i})
            };
            DeliveryTask::new(&tenant("acme"), &sub.id, &event(&format!("e{i}"), data))
        })
        .collect();
    queue.enqueue(&tasks).await.unwrap();
    let messages = aws.peek_queue(aws.provisioned.delivery_queue_url()).await;
    assert_eq!(messages.len(), 25);

    let receipt = messages[0].receipt_handle().unwrap();
    queue
        .retry_later(receipt, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        aws.peek_queue(aws.provisioned.delivery_queue_url())
            .await
            .len(),
        24,
        "hidden for the delay"
    );

    let why = DeadLetter {
        reason: "no success after 3 attempts".into(),
        delivery_id: Some(tasks[0].delivery_id.clone()),
    };
    queue
        .dead_letter(&tasks[0].to_message_body(), &why)
        .await
        .unwrap();
    let dead = aws
        .peek_queue(aws.provisioned.dead_letter_queue_url())
        .await;
    assert_eq!(dead.len(), 1);
    let attributes = dead[0].message_attributes().unwrap();
    assert_eq!(
        attributes["herald-reason"].string_value(),
        Some("no success after 3 attempts")
    );
    assert_eq!(
        attributes["herald-delivery-id"].string_value(),
        Some(tasks[0].delivery_id.as_str())
    );
}

#[tokio::test]
async fn provisioning_follows_the_template() {
    let aws = TestAws::new().await;
    let table = aws
        .dynamo
        .describe_table()
        .table_name(aws.provisioned.deliveries_table())
        .send()
        .await
        .unwrap();
    let table = table.table().unwrap();
    assert_eq!(table.key_schema()[0].attribute_name(), "id");
    let index = &table.global_secondary_indexes()[0];
    assert_eq!(index.index_name(), Some("by-subscription"));
    let ttl = aws
        .dynamo
        .describe_time_to_live()
        .table_name(aws.provisioned.deliveries_table())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("expires_at")
    );

    let attributes = aws
        .sqs
        .get_queue_attributes()
        .queue_url(aws.provisioned.delivery_queue_url())
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy])
            .unwrap();
    assert_eq!(
        redrive["deadLetterTargetArn"].as_str().unwrap(),
        aws.provisioned.queues["DeadLetterQueue"].1
    );
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "50"
    );
    assert_eq!(
        attributes[&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout],
        "360"
    );
}
