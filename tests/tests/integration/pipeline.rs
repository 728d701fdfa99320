//! The whole pipeline against moto: the local runner's API, the delivery queue, the
//! deliver function driven the way the event source mapping drives it, and real HTTP
//! receivers.

use std::time::Duration;

use herald_aws::dynamo::DynamoDeliveryLedger;
use herald_core::delivery::{DeadLetterMark, DeliveryRecord, DeliveryState, DeliveryTask};
use herald_core::event::{Event, EventType};
use herald_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use herald_core::ports::{DeliveryLedger, DeliveryQuery};
use herald_testkit::signatures::{signature_entries, v1_signature};
use herald_testkit::wait::{self, PATIENCE};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

/// The delivery of `event` to `subscription`, found in the subscription's attempt log once
/// its first attempt has begun. Its id is checked to be the one Herald derives for them.
async fn delivery_id(
    herald: &TestHerald,
    tenant: &str,
    event: &str,
    subscription: &str,
) -> DeliveryId {
    let (tenant, event, subscription) = (
        TenantId::parse(tenant).unwrap(),
        EventId::parse(event).unwrap(),
        SubscriptionId::parse(subscription).unwrap(),
    );
    let query = DeliveryQuery {
        limit: 100,
        ..Default::default()
    };
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let page = ledger(herald)
            .list(&tenant, &subscription, &query, chrono::Utc::now())
            .await
            .unwrap();
        if let Some(found) = page.items.iter().find(|r| r.event_id == event) {
            assert!(found.id.belongs_to(&tenant, &event, &subscription));
            assert_eq!(found.id.subscription(), subscription);
            return found.id.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery of {event} to {subscription}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ledger(herald: &TestHerald) -> DynamoDeliveryLedger {
    DynamoDeliveryLedger::new(
        aws_sdk_dynamodb::Client::new(&herald.sdk),
        herald.local.provisioned().deliveries_table().to_owned(),
    )
}

/// Verifies a Standard Webhooks signature independently of Herald's signing code.
fn verify_signature(request: &Recorded, secret: &str) {
    let expected = v1_signature(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
    );
    assert!(
        signature_entries(request.header("webhook-signature")).contains(&expected),
        "signature {} does not verify",
        request.header("webhook-signature")
    );
}

async fn record(herald: &TestHerald, tenant: &str, id: &DeliveryId) -> Option<DeliveryRecord> {
    ledger(herald)
        .get(&TenantId::parse(tenant).unwrap(), id, chrono::Utc::now())
        .await
        .unwrap()
}

/// Waits until the delivery reaches `state`.
async fn wait_for_state(
    herald: &TestHerald,
    tenant: &str,
    id: &DeliveryId,
    state: DeliveryState,
) -> DeliveryRecord {
    let what = format!("delivery {id} becoming {state:?}");
    wait::until(what, PATIENCE, Duration::from_millis(100), || async {
        match record(herald, tenant, id).await {
            Some(r) if r.state == state => Ok(r),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

async fn send_raw(herald: &TestHerald, queue_url: &str, bodies: &[String]) {
    let sqs = aws_sdk_sqs::Client::new(&herald.sdk);
    let entries = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
                .unwrap()
        })
        .collect();
    sqs.send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
}

fn task_body(tenant: &str, subscription: &str, event_id: &str) -> String {
    let event = Event {
        id: EventId::parse(event_id).unwrap(),
        event_type: EventType::parse("order.shipped").unwrap(),
        occurred_at: chrono::Utc::now(),
        data: json!({"order_id": event_id}).as_object().unwrap().clone(),
        subject: None,
    };
    DeliveryTask::new(
        &TenantId::parse(tenant).unwrap(),
        &SubscriptionId::parse(subscription).unwrap(),
        &event,
        chrono::Utc::now(),
    )
    .to_message_body()
}

async fn dead_letters(herald: &TestHerald) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(&herald.sdk);
    let output = sqs
        .receive_message()
        .queue_url(herald.local.provisioned().dead_letter_queue_url())
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    output.messages().to_vec()
}

#[tokio::test]
async fn one_publish_reaches_every_matching_subscription_exactly_once() {
    let herald = TestHerald::start(&[]).await;
    let (orders, all, invoices) = (
        TestReceiver::start(Script::always(200)).await,
        TestReceiver::start(Script::always(204)).await,
        TestReceiver::start(Script::always(200)).await,
    );
    let (orders_id, orders_secret) = herald.subscribe("acme", &orders.url(), &["order.*"]).await;
    let (all_id, all_secret) = herald.subscribe("acme", &all.url(), &["*"]).await;
    herald
        .subscribe("acme", &invoices.url(), &["invoice.paid"])
        .await;

    let before = chrono::Utc::now().timestamp();
    let (status, answer) = herald
        .publish("acme", json!({"id": "ord_7.shipped", "type": "order.shipped", "data": {"order_id": "ord_7", "total": 12.5}}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer,
        json!({"id": "ord_7.shipped", "deliveries": 2, "duplicate": false})
    );

    for (receiver, id, secret) in [
        (&orders, &orders_id, &orders_secret),
        (&all, &all_id, &all_secret),
    ] {
        let got = receiver.wait_for(1, PATIENCE).await;
        assert_eq!(got.len(), 1);
        let request = &got[0];
        let expected_id = DeliveryId::parse(request.header("webhook-id")).unwrap();
        assert!(expected_id.belongs_to(
            &TenantId::parse("acme").unwrap(),
            &EventId::parse("ord_7.shipped").unwrap(),
            &SubscriptionId::parse(id).unwrap()
        ));
        let accepted = expected_id.accepted_at().timestamp();
        assert!((before - 5..=chrono::Utc::now().timestamp()).contains(&accepted));
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("idempotency-key"),
            format!("ffm_wh_{expected_id}")
        );
        assert_eq!(request.header("content-type"), "application/json");
        let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
        assert!((before - 5..=chrono::Utc::now().timestamp()).contains(&timestamp));
        verify_signature(request, secret);
        let body = request.json();
        assert_eq!(body["type"], "order.shipped");
        assert_eq!(body["data"], json!({"order_id": "ord_7", "total": 12.5}));
        wait_for_state(&herald, "acme", &expected_id, DeliveryState::Delivered).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        orders.requests().len() + all.requests().len(),
        2,
        "each exactly once"
    );
    assert!(
        invoices.requests().is_empty(),
        "a non-matching subscription gets nothing"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn failures_are_retried_on_the_schedule_until_success() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "2s,2s,2s")]).await;
    let receiver = TestReceiver::start(Script::sequence([500, 500, 200])).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald
        .publish(
            "acme",
            json!({"id": "e-retry", "type": "order.shipped", "data": {}}),
        )
        .await;

    let got = receiver.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 3);
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(1700),
            "attempts {gap:?} apart, sooner than the schedule"
        );
    }
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id") == got[0].header("webhook-id")),
        "one delivery id on every retry"
    );
    let id = delivery_id(&herald, "acme", "e-retry", &sub).await;
    let done = wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;
    assert_eq!(
        done.attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        vec![Some(500), Some(500), Some(200)]
    );
    assert_eq!(
        done.attempts.iter().map(|a| a.number).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_failed_in_the_dead_letter_queue() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "1s,1s")]).await;
    let receiver = TestReceiver::start(Script::always(500)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald
        .publish(
            "acme",
            json!({"id": "e-doomed", "type": "order.shipped", "data": {}}),
        )
        .await;

    let id = delivery_id(&herald, "acme", "e-doomed", &sub).await;
    let failed = wait_for_state(&herald, "acme", &id, DeliveryState::Failed).await;
    assert_eq!(failed.attempts.len(), 3);
    assert!(failed.reason.unwrap().contains("retry window"));
    let dead = dead_letters(&herald).await;
    assert_eq!(dead.len(), 1);
    let attrs = dead[0].message_attributes().unwrap();
    assert_eq!(
        attrs["herald-delivery-id"].string_value(),
        Some(id.as_str())
    );
    assert!(dead[0].body().unwrap().contains("e-doomed"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.requests().len(), 3, "nothing after the window");
    herald.shutdown().await;
}

/// What an operator's "Start DLQ redrive" (`StartMessageMoveTask`) does, which moto does
/// not implement: each message in the dead-letter queue becomes a new message on the
/// delivery queue with the same body and message attributes, and leaves the dead-letter
/// queue. Answers the messages moved.
async fn redrive(herald: &TestHerald) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(&herald.sdk);
    let provisioned = herald.local.provisioned();
    let moved = dead_letters(herald).await;
    for message in &moved {
        sqs.send_message()
            .queue_url(provisioned.delivery_queue_url())
            .message_body(message.body().unwrap())
            .set_message_attributes(message.message_attributes().cloned())
            .send()
            .await
            .unwrap();
        sqs.delete_message()
            .queue_url(provisioned.dead_letter_queue_url())
            .receipt_handle(message.receipt_handle().unwrap())
            .send()
            .await
            .unwrap();
    }
    moved
}

#[tokio::test]
async fn a_dead_letter_an_operator_redrives_is_delivered_again_under_its_webhook_id() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "1s,1s")]).await;
    let receiver = TestReceiver::start(Script::always(500)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald
        .publish(
            "acme",
            json!({"id": "e-redriven", "type": "order.shipped", "data": {}}),
        )
        .await;
    let id = delivery_id(&herald, "acme", "e-redriven", &sub).await;
    wait_for_state(&herald, "acme", &id, DeliveryState::Failed).await;
    wait::until(
        "its dead letter sent",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            match record(&herald, "acme", &id).await {
                Some(r) if r.dead_letter == Some(DeadLetterMark::Sent) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // The receiver is fixed, and the operator moves the dead letter back.
    receiver.answer_all_with(Some(200));
    let moved = redrive(&herald).await;
    assert_eq!(moved.len(), 1);
    let got = receiver.wait_for(4, PATIENCE).await;
    assert!(
        got.iter().all(|r| r.header("webhook-id") == id.as_str()),
        "the same webhook id"
    );
    let done = wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;
    assert_eq!(
        done.attempts
            .iter()
            .map(|a| (a.status, a.forced))
            .collect::<Vec<_>>(),
        vec![
            (Some(500), false),
            (Some(500), false),
            (Some(500), false),
            (Some(200), true)
        ]
    );

    // The same dead letter redriven again is a duplicate: no POST, nothing dead-lettered.
    let sqs = aws_sdk_sqs::Client::new(&herald.sdk);
    sqs.send_message()
        .queue_url(herald.local.provisioned().delivery_queue_url())
        .message_body(moved[0].body().unwrap())
        .set_message_attributes(moved[0].message_attributes().cloned())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.requests().len(), 4);
    assert!(dead_letters(&herald).await.is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn the_same_message_twice_or_after_success_is_one_post() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let queue = herald.local.provisioned().delivery_queue_url().to_owned();

    let body = task_body("acme", &sub, "e-dup");
    send_raw(&herald, &queue, &[body.clone(), body.clone()]).await;
    receiver.wait_for(1, PATIENCE).await;
    wait_for_state(
        &herald,
        "acme",
        &delivery_id(&herald, "acme", "e-dup", &sub).await,
        DeliveryState::Delivered,
    )
    .await;
    send_raw(&herald, &queue, &[body]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(receiver.requests().len(), 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn the_same_event_id_published_twice_fans_out_once() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let event = json!({"id": "e-once", "type": "order.shipped", "data": {"n": 1}});

    let (_, first) = herald.publish("acme", event.clone()).await;
    let (status, second) = herald.publish("acme", event).await;
    assert_eq!(status, 202);
    assert_eq!(first["deliveries"], second["deliveries"]);
    assert_eq!(second["duplicate"], true);
    receiver.wait_for(1, PATIENCE).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.requests().len(), 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_malformed_task_goes_to_the_dead_letter_queue_and_the_rest_is_delivered() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let queue = herald.local.provisioned().delivery_queue_url().to_owned();

    send_raw(
        &herald,
        &queue,
        &[
            "{\"kind\": \"mystery\"}".to_owned(),
            task_body("acme", &sub, "e-good"),
        ],
    )
    .await;

    assert_eq!(receiver.wait_for(1, PATIENCE).await.len(), 1);
    let dead = dead_letters(&herald).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{\"kind\": \"mystery\"}"));
    let reason = dead[0].message_attributes().unwrap()["herald-reason"]
        .string_value()
        .unwrap()
        .to_owned();
    assert!(reason.starts_with("malformed task"), "{reason}");
    herald.shutdown().await;
}

#[tokio::test]
async fn gone_disables_the_subscription() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(410)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald
        .publish("acme", json!({"id": "e-gone", "type": "a", "data": {}}))
        .await;
    wait_for_state(
        &herald,
        "acme",
        &delivery_id(&herald, "acme", "e-gone", &sub).await,
        DeliveryState::Failed,
    )
    .await;

    let (_, shown) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{sub}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(shown["status"], "disabled");
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));
    let (_, answer) = herald
        .publish("acme", json!({"id": "e-after", "type": "a", "data": {}}))
        .await;
    assert_eq!(
        answer["deliveries"], 0,
        "a disabled subscription matches nothing"
    );
    assert_eq!(receiver.requests().len(), 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let herald = TestHerald::start(&[]).await;
    let (a_receiver, b_receiver) = (
        TestReceiver::start(Script::always(200)).await,
        TestReceiver::start(Script::always(200)).await,
    );
    let (a_sub, _) = herald
        .subscribe("tenant-a", &a_receiver.url(), &["*"])
        .await;
    herald
        .subscribe("tenant-b", &b_receiver.url(), &["*"])
        .await;

    let path = format!("/v1/subscriptions/{a_sub}");
    assert_eq!(
        herald.call("GET", &path, Some("tenant-b"), None).await.0,
        404
    );
    assert_eq!(
        herald.call("DELETE", &path, Some("tenant-b"), None).await.0,
        404
    );
    let (_, listed) = herald
        .call("GET", "/v1/subscriptions", Some("tenant-b"), None)
        .await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != Value::String(a_sub.clone()))
    );
    assert_eq!(
        herald.call("GET", &path, Some("tenant-a"), None).await.0,
        200
    );

    herald
        .publish("tenant-a", json!({"id": "e-a", "type": "a", "data": {}}))
        .await;
    assert_eq!(a_receiver.wait_for(1, PATIENCE).await.len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(b_receiver.requests().is_empty(), "A's event reached B");
    herald.shutdown().await;
}

#[tokio::test]
async fn bad_input_through_the_gateway_is_a_json_4xx_with_nothing_queued() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let cases = [
        (
            "POST",
            "/v1/events",
            Some("acme"),
            Some(json!("{\"type\": ")),
        ),
        (
            "POST",
            "/v1/events",
            None,
            Some(json!({"type": "a", "data": {}})),
        ),
        (
            "POST",
            "/v1/events",
            Some("acme"),
            Some(json!({"data": {}})),
        ),
        (
            "POST",
            "/v1/events",
            Some("acme"),
            Some(json!({"type": "a", "data": "text"})),
        ),
        (
            "POST",
            "/v1/events",
            Some("acme"),
            Some(json!({"type": "a", "data": {}, "unknown": true})),
        ),
        (
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(json!({"url": "https://10.0.0.1/", "event_types": ["*"]})),
        ),
        (
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(json!({"url": "not a url", "event_types": ["*"]})),
        ),
    ];
    for (method, path, tenant, body) in cases {
        let (status, answer) = match &body {
            Some(Value::String(raw)) => {
                let response = herald
                    .http
                    .post(format!("{}{path}", herald.local.api_url()))
                    .header("authorization", "Bearer acme")
                    .header("content-type", "application/json")
                    .body(raw.clone())
                    .send()
                    .await
                    .unwrap();
                (
                    response.status().as_u16(),
                    serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
                )
            }
            _ => herald.call(method, path, tenant, body.as_ref()).await,
        };
        assert!((400..500).contains(&status), "{path} {body:?}: {status}");
        if tenant.is_none() {
            // No token: API Gateway's authorizer answers, in its own words.
            assert_eq!(status, 401);
            assert_eq!(answer, json!({"message": "Unauthorized"}));
        } else {
            assert!(
                answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
                "{answer}"
            );
        }
    }
    let (_, listed) = herald
        .call("GET", "/v1/subscriptions", Some("acme"), None)
        .await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "no subscription was stored"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(receiver.requests().is_empty(), "nothing was queued");
    herald.shutdown().await;
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_disabled_announced_and_can_be_revived() {
    let herald = TestHerald::start(&[
        ("HERALD_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s"),
        ("HERALD_AUTO_DISABLE_AFTER", "2s"),
        // The revived subscription must be delivered to at once, not after deliver's
        // kept copy (disabled) expires.
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
    ])
    .await;
    let failing = TestReceiver::start(Script::always(200)).await;
    failing.answer_all_with(Some(500));
    let watcher = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald.subscribe("acme", &failing.url(), &["order.*"]).await;
    herald
        .subscribe("acme", &watcher.url(), &["subscription.disabled"])
        .await;
    herald
        .publish(
            "acme",
            json!({"id": "e-sick", "type": "order.shipped", "data": {}}),
        )
        .await;

    let announced = watcher.wait_for(1, PATIENCE).await;
    assert_eq!(announced.len(), 1, "the tenant is told");
    let body = announced[0].json();
    assert_eq!(body["type"], "subscription.disabled");
    assert_eq!(body["data"]["subscription_id"], sub.as_str());
    let path = format!("/v1/subscriptions/{sub}");
    let (_, shown) = herald.call("GET", &path, Some("acme"), None).await;
    assert_eq!(shown["status"], "disabled");
    assert!(
        shown["disabled_reason"]
            .as_str()
            .unwrap()
            .starts_with("no successful delivery since")
    );

    // Re-enabled, with the endpoint fixed: deliveries resume.
    failing.answer_all_with(None);
    let (status, revived) = herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"status": "active"})),
        )
        .await;
    assert_eq!((status, revived["status"].as_str()), (200, Some("active")));
    assert!(revived.get("failing_since").is_none());
    let before = failing.requests().len();
    herald
        .publish(
            "acme",
            json!({"id": "e-well", "type": "order.shipped", "data": {}}),
        )
        .await;
    let got = failing.wait_for(before + 1, PATIENCE).await;
    assert_eq!(got.last().unwrap().status, 200);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_disable_reaches_deliver_once_its_kept_copy_expires() {
    let herald = TestHerald::start(&[("HERALD_SUBSCRIPTION_CACHE_SECONDS", "1")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    herald
        .publish(
            "acme",
            json!({"id": "e-kept", "type": "order.shipped", "data": {}}),
        )
        .await;
    let id = delivery_id(&herald, "acme", "e-kept", sub.as_str()).await;
    wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;

    // Deliver now holds the subscription as active; the tenant disables it.
    let path = format!("/v1/subscriptions/{sub}");
    let (status, _) = herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A redelivery after the kept copy's second is skipped, not sent.
    let (status, _) = herald
        .call(
            "POST",
            &format!("/v1/deliveries/{id}/retry"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let skipped = wait_for_state(&herald, "acme", &id, DeliveryState::Skipped).await;
    assert_eq!(skipped.attempts.len(), 1, "no second attempt");
    assert_eq!(receiver.requests().len(), 1);
    herald.shutdown().await;
}

/// Subscribes `url` for acme with extra fields (a retry policy, a timeout); answers its id.
async fn subscribe_with(herald: &TestHerald, url: &str, extra: Value) -> String {
    let mut body = json!({"url": url, "event_types": ["*"]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn subscriptions_keep_their_own_retry_policies_and_timeouts_side_by_side() {
    // The deployment's own policy would retry in an hour, and wait 30 s for an answer.
    let herald = TestHerald::start(&[
        ("HERALD_RETRY_SCHEDULE", "1h"),
        ("HERALD_RETRY_WINDOW", "1d"),
    ])
    .await;
    // Seed 002's kind: three retries at fixed delays (seconds here, minutes there).
    let three_retries = TestReceiver::start(Script::always(500)).await;
    let fixed = subscribe_with(
        &herald,
        &three_retries.url(),
        json!({"retry": {"schedule": "1s,1s,1s", "window": "1m"}}),
    )
    .await;
    // Seed 001's kind: doubling delays (2, 4, 8 s here; minutes there) within a window.
    let doubling_receiver = TestReceiver::start(Script::sequence([500, 500, 500, 200])).await;
    let doubling = subscribe_with(
        &herald,
        &doubling_receiver.url(),
        json!({"retry": {"schedule": "exponential:2s", "window": "1m"}}),
    )
    .await;
    // A receiver answering after 3 s, and a subscription that waits 1 s for it.
    let slow_receiver =
        TestReceiver::start(Script::always(200).with_delay(Duration::from_secs(3))).await;
    let impatient = subscribe_with(
        &herald,
        &slow_receiver.url(),
        json!({"timeout": "1s", "retry": {"schedule": "1s", "window": "1m"}}),
    )
    .await;
    herald
        .publish(
            "acme",
            json!({"id": "e-policies", "type": "order.shipped", "data": {}}),
        )
        .await;

    let record_of = |sub: String| {
        let herald = &herald;
        async move {
            let id = delivery_id(herald, "acme", "e-policies", &sub).await;
            wait_for_state(herald, "acme", &id, DeliveryState::Failed).await
        }
    };
    // Gaps carry up to a batch's duration on top of the delay (a batch's queue calls are
    // made once its records are done), so they are compared, not timed exactly.
    let gaps = |record: &DeliveryRecord| -> Vec<i64> {
        record
            .attempts
            .windows(2)
            .map(|w| (w[1].at - w[0].at).num_milliseconds())
            .collect()
    };
    let fixed = record_of(fixed).await;
    assert_eq!(fixed.attempts.len(), 4, "the first and three retries");
    let fixed_gaps = gaps(&fixed);
    assert!(
        fixed_gaps.iter().all(|g| (900..6000).contains(g)),
        "{fixed_gaps:?}"
    );

    let id = delivery_id(&herald, "acme", "e-policies", &doubling).await;
    let doubling = wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;
    assert_eq!(doubling.attempts.len(), 4);
    let doubling_gaps = gaps(&doubling);
    assert!(
        doubling_gaps[2] >= 7000 && doubling_gaps[2] > doubling_gaps[0],
        "doubling: {doubling_gaps:?}"
    );
    assert!(
        doubling_gaps[2] > *fixed_gaps.iter().max().unwrap(),
        "{doubling_gaps:?} against {fixed_gaps:?}"
    );

    let impatient = record_of(impatient).await;
    assert_eq!(impatient.attempts.len(), 2, "{:?}", impatient.attempts);
    for attempt in &impatient.attempts {
        assert_eq!(
            attempt.error,
            Some(herald_core::delivery::AttemptError::Timeout),
            "{attempt:?}"
        );
        assert!(attempt.latency_ms < 2500, "{attempt:?}");
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn a_burst_to_a_rate_limited_subscription_leaves_at_its_rate_across_pollers() {
    const RATE: u32 = 5;
    const EVENTS: usize = 100;
    // Four pollers: four deliver instances sharing the limit only through DynamoDB. A
    // received message comes back after 30 s, not the queue's 360, should its visibility
    // change not apply (twice in about ten loaded runs some came later than 3 minutes;
    // not yet explained, see the issue's note).
    let herald = TestHerald::start_polling(herald_tests::aws::sdk_config(), &[], Some(30), 4).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscribe_with(&herald, &receiver.url(), json!({"rate_limit": RATE})).await;
    // The burst: 100 events at once.
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"id": format!("burst-{i}"), "type": "order.shipped", "data": {}}))
        .collect();
    let (status, answer) = herald
        .call(
            "POST",
            "/v1/events",
            Some("acme"),
            Some(&json!({"events": events})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    // 20 s at the limit; a busy machine delivers slower, never faster.
    let got = receiver.wait_for(EVENTS, Duration::from_secs(180)).await;
    assert_eq!(got.len(), EVENTS, "nothing lost");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = receiver.requests();
    let mut ids: Vec<&str> = all.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), EVENTS, "each once");
    assert_eq!(all.len(), EVENTS, "no extra POST");

    // The rate from the first POST to the last never passes the limit by more than 10%
    // (the windows hold it down): a busy machine delivers slower, never faster. How close
    // to the limit the pace comes is the deliverers' capacity, not the limiter's
    // correctness: `make bench` prints it (4.75/s for 5/s on a quiet machine,
    // docs/PERFORMANCE.md), and the paced windows themselves are shown on a paused clock
    // by `handlers::deliver::a_rate_limited_subscriptions_burst_waits_for_its_windows_…`.
    let span = all.last().unwrap().at - all[0].at;
    let rate = (EVENTS - 1) as f64 / span.as_secs_f64();
    // The busiest second, on the receiver's clock (the windows are deliver's whole
    // seconds, so a second here can straddle two of them).
    let busiest = all
        .iter()
        .map(|first| {
            all.iter()
                .filter(|r| r.at >= first.at && r.at - first.at < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    let longest_gap = all
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .max()
        .unwrap_or_default();
    println!(
        "rate-limited to {RATE}/s: {EVENTS} POSTs in {:.1} s, {rate:.2}/s, at most {busiest} in any second, longest gap {:.1} s",
        span.as_secs_f64(),
        longest_gap.as_secs_f64()
    );
    assert!(rate <= f64::from(RATE) * 1.1, "{rate:.2}/s over {span:?}");
    herald.shutdown().await;
}

#[tokio::test]
async fn with_an_excerpt_retention_the_attempt_log_shows_excerpts_stored_sealed() {
    let herald = TestHerald::start(&[("HERALD_EXCERPT_RETENTION", "1d")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald
        .publish(
            "acme",
            json!({"id": "e-sealed", "type": "order.shipped", "data": {}}),
        )
        .await;
    receiver.wait_for(1, PATIENCE).await;
    let id = delivery_id(&herald, "acme", "e-sealed", &sub).await;
    wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;

    let (status, log) = herald
        .call("GET", &format!("/v1/deliveries/{id}"), Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["attempts"][0]["response"], "ok", "{log}");
    // As stored: sealed, the receiver's answer nowhere in the item.
    let stored = aws_sdk_dynamodb::Client::new(&herald.sdk)
        .scan()
        .table_name(herald.local.provisioned().deliveries_table())
        .send()
        .await
        .unwrap();
    let delivery = stored
        .items()
        .iter()
        .find(|item| item.get("id").and_then(|v| v.as_s().ok()) == Some(&id.to_string()))
        .expect("the delivery item");
    let attempts = format!("{:?}", delivery["attempts"]);
    assert!(attempts.contains("sealed_response"), "{attempts}");
    assert!(!attempts.contains("\\\"response\\\""), "{attempts}");
    herald.shutdown().await;
}

#[tokio::test]
async fn an_event_of_a_mebibyte_is_stored_once_and_reaches_every_subscription_whole() {
    use herald_core::event::MAX_DATA_BYTES;
    let herald = TestHerald::start(&[]).await;
    let (one, two) = (
        TestReceiver::start(Script::always(200)).await,
        TestReceiver::start(Script::always(200)).await,
    );
    let (_, one_secret) = herald.subscribe("acme", &one.url(), &["*"]).await;
    let (_, two_secret) = herald.subscribe("acme", &two.url(), &["*"]).await;

    // `{"blob":"…"}` is 11 bytes and the text: 1 MiB of `data`, the most there may be,
    // random, so that it deflates only to about three-quarters and is kept in parts.
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let blob: String = (0..MAX_DATA_BYTES - 11)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect();
    let data = json!({ "blob": blob });
    assert_eq!(serde_json::to_vec(&data).unwrap().len(), MAX_DATA_BYTES);
    let (status, answer) = herald
        .publish(
            "acme",
            json!({"id": "big", "type": "report.ready", "data": data}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["deliveries"], 2);
    for (receiver, secret) in [(&one, &one_secret), (&two, &two_secret)] {
        let got = receiver.wait_for(1, PATIENCE).await;
        assert_eq!(got.len(), 1);
        verify_signature(&got[0], secret);
        assert_eq!(got[0].json()["data"], data);
    }

    // Stored once for both subscriptions: one set of parts beside the event's record
    // (counted over every page: a query reads at most 1 MB a page).
    let pages: Vec<_> = aws_sdk_dynamodb::Client::new(&herald.sdk)
        .query()
        .table_name(herald.local.provisioned().events_table())
        .key_condition_expression("tenant = :t AND begins_with(id, :p)")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S("acme".into()),
        )
        .expression_attribute_values(
            ":p",
            aws_sdk_dynamodb::types::AttributeValue::S("part#big#".into()),
        )
        .select(aws_sdk_dynamodb::types::Select::Count)
        .into_paginator()
        .send()
        .collect()
        .await;
    let parts: i32 = pages.into_iter().map(|page| page.unwrap().count).sum();
    assert_eq!(
        parts, 3,
        "1 MiB deflated to about 780 KB, in 350 KiB parts, once"
    );
    let (status, kept) = herald
        .call("GET", "/v1/events/big", Some("acme"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(kept["data"], data);

    // A byte more is refused, naming the limit, and nothing is queued.
    let over = json!({"blob": "x".repeat(MAX_DATA_BYTES - 10)});
    let (status, answer) = herald
        .publish(
            "acme",
            json!({"id": "bigger", "type": "report.ready", "data": over}),
        )
        .await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "too_large");
    assert_eq!(
        answer["error"]["message"],
        "data: is 1048577 bytes, more than the limit of 1048576 bytes"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(one.requests().len() + two.requests().len(), 2);
    herald.shutdown().await;
}

/// The calls through `proxy` since the `before`th, once `writes` of them have written to
/// the deliveries table `table`.
async fn calls_once_written(
    proxy: &herald_tests::aws_proxy::RecordingProxy,
    before: usize,
    table: &str,
    writes: usize,
) -> Vec<herald_tests::aws_proxy::AwsCall> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let calls = proxy.calls()[before..].to_vec();
        if delivery_writes_and_reads(&calls, table).0 >= writes {
            return calls;
        }
        assert!(std::time::Instant::now() < deadline, "{calls:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The writes to the deliveries table (`UpdateItem`s) the calls make, and the consistent
/// reads of it (`GetItem`s).
fn delivery_writes_and_reads(
    calls: &[herald_tests::aws_proxy::AwsCall],
    table: &str,
) -> (usize, usize) {
    let on_table = |action: &str| {
        calls
            .iter()
            .filter(|c| c.action == action && c.resource.ends_with(table))
            .count()
    };
    (
        on_table("dynamodb:UpdateItem"),
        on_table("dynamodb:GetItem"),
    )
}

#[tokio::test]
async fn with_no_claim_a_first_success_costs_no_write_and_a_failure_is_in_the_attempt_log() {
    use herald_tests::aws::{moto_url, sdk_config_for};
    use herald_tests::aws_proxy::RecordingProxy;
    let proxy = RecordingProxy::start(moto_url()).await;
    let herald = TestHerald::start_with(
        sdk_config_for(&proxy.url()),
        &[
            ("HERALD_DELIVERY_CLAIM", "none"),
            ("HERALD_RETRY_SCHEDULE", "1s,1s"),
        ],
        None,
    )
    .await;
    // The first request to arrive is refused, every other one taken.
    let receiver = TestReceiver::start(Script::sequence([503, 200])).await;
    let (sub, secret) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let table = herald.local.provisioned().deliveries_table().to_owned();
    let before = proxy.calls().len();

    let events: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("n{i}"), "type": "order.paid", "data": {"n": i}}))
        .collect();
    let (status, answer) = herald.publish("acme", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver.wait_for(6, PATIENCE).await;
    for request in &got {
        verify_signature(request, &secret);
    }
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    let retried = DeliveryId::parse(ids[0]).unwrap();
    assert_eq!(
        ids.iter().filter(|id| **id == retried.as_str()).count(),
        2,
        "the refused delivery was sent again under its webhook-id: {ids:?}"
    );

    // Herald's own calls on the deliveries table: the failed first attempt's record, then
    // the retry's read and lease and its outcome. Nothing for the four.
    let calls = calls_once_written(&proxy, before, &table, 3).await;
    // Taken before the test's own reads of the records below, which go through the
    // proxy too.
    assert_eq!(
        delivery_writes_and_reads(&calls, &table),
        (3, 1),
        "{calls:?}"
    );

    // The refused delivery is in the attempt log, both attempts.
    let record = wait_for_state(&herald, "acme", &retried, DeliveryState::Delivered).await;
    let statuses: Vec<Option<u16>> = record.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(503), Some(200)]);
    // The four answered 2xx at their first attempt left no record.
    let page = ledger(&herald)
        .list(
            &TenantId::parse("acme").unwrap(),
            &SubscriptionId::parse(&sub).unwrap(),
            &DeliveryQuery {
                limit: 100,
                ..Default::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let recorded: Vec<&DeliveryId> = page.items.iter().map(|r| &r.id).collect();
    assert_eq!(recorded, [&retried]);

    // The same event published again (docs/OPERATIONS.md): nothing recorded stops it, so
    // it is sent again, under the webhook-id it had.
    let first_id = got
        .iter()
        .find(|r| r.json()["data"]["n"] == 1)
        .map(|r| r.header("webhook-id").to_owned())
        .unwrap();
    let again = json!({"id": "n1", "type": "order.paid", "data": {"n": 1}});
    let (status, answer) = herald.publish("acme", again).await;
    assert_eq!(
        (status, &answer["duplicate"]),
        (202, &json!(true)),
        "{answer}"
    );
    let got = receiver.wait_for(7, PATIENCE).await;
    assert_eq!(got[6].json()["data"]["n"], 1);
    assert_eq!(got[6].header("webhook-id"), first_id);
    herald.shutdown().await;
}

#[tokio::test]
async fn with_reads_for_claims_a_delivery_is_one_write_and_a_copy_after_it_is_no_post() {
    use herald_tests::aws::{moto_url, sdk_config_for};
    use herald_tests::aws_proxy::RecordingProxy;
    let proxy = RecordingProxy::start(moto_url()).await;
    let herald = TestHerald::start_with(
        sdk_config_for(&proxy.url()),
        &[("HERALD_DELIVERY_CLAIM", "read")],
        None,
    )
    .await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, secret) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let table = herald.local.provisioned().deliveries_table().to_owned();
    let before = proxy.calls().len();

    let events: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("r{i}"), "type": "order.paid", "data": {"n": i}}))
        .collect();
    let (status, answer) = herald.publish("acme", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    let got = receiver.wait_for(5, PATIENCE).await;
    for request in &got {
        verify_signature(request, &secret);
    }
    // Herald's calls alone, taken once the five outcomes are written (the test's own
    // reads of the records below go through the proxy too).
    let calls = calls_once_written(&proxy, before, &table, 5).await;
    let (writes, reads) = delivery_writes_and_reads(&calls, &table);
    for i in 0..5 {
        let id = delivery_id(&herald, "acme", &format!("r{i}"), &sub).await;
        wait_for_state(&herald, "acme", &id, DeliveryState::Delivered).await;
    }
    // One write a delivery (its outcome) and one read (the claim), where a lease would
    // have been two writes.
    assert_eq!((writes, reads), (5, 5), "{calls:?}");

    // A copy of a delivered task, handed over after it: found by its read, not sent.
    let queue = herald.local.provisioned().delivery_queue_url().to_owned();
    let copy = DeliveryTask::new(
        &TenantId::parse("acme").unwrap(),
        &SubscriptionId::parse(&sub).unwrap(),
        &Event {
            id: EventId::parse("r0").unwrap(),
            event_type: EventType::parse("order.paid").unwrap(),
            occurred_at: chrono::Utc::now(),
            data: json!({"n": 0}).as_object().unwrap().clone(),
            subject: None,
        },
        delivery_id(&herald, "acme", "r0", &sub).await.accepted_at(),
    );
    send_raw(&herald, &queue, &[copy.to_message_body()]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.requests().len(), 5, "nothing sent twice");
    assert!(
        aws_sdk_sqs::Client::new(&herald.sdk)
            .receive_message()
            .queue_url(&queue)
            .send()
            .await
            .unwrap()
            .messages()
            .is_empty(),
        "the copy was let go"
    );
    herald.shutdown().await;
}

/// Messages on `url` that are waiting or handed out and not yet deleted.
async fn messages_on(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName::{
        ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
    };
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let count = |name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap()
    };
    count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible)
}

/// Given no batching window, the local runner takes the template's
/// (`MaximumBatchingWindowInSeconds: 1` on the delivery queue), as `make run` and the bench
/// do: two events published a moment apart are one batch, one invocation. With no window
/// (the harness's default) each would be a batch of its own.
#[tokio::test]
async fn without_a_window_given_the_runner_gathers_a_batch_over_the_templates() {
    let poll = herald_local::PollSettings {
        batch_size: Some(5),
        batching_window: None,
        wait_seconds: 1,
        pollers: 1,
        print_attempts: false,
        ..herald_local::PollSettings::default()
    };
    let herald = TestHerald::start_with_poll(herald_tests::aws::sdk_config(), &[], poll).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;

    for id in ["w1", "w2"] {
        let (status, answer) = herald
            .publish("acme", json!({"id": id, "type": "order.paid", "data": {}}))
            .await;
        assert_eq!(status, 202, "{answer}");
        // Well within the template's second, which begins when the first arrives.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(receiver.wait_for(2, PATIENCE).await.len(), 2);
    assert_eq!(
        herald.local.deliver_invocations(),
        1,
        "the two tasks were gathered into one batch"
    );
    herald.shutdown().await;
}

/// A deployment's `DeliveryBatchSize` above SQS's ten: the event source gathers the batch
/// over several receives within its batching window, deliver takes it in one invocation,
/// and what it delivered is deleted, ten a call.
#[tokio::test]
async fn a_batch_larger_than_ten_is_gathered_delivered_in_one_invocation_and_deleted() {
    let poll = herald_local::PollSettings {
        batch_size: Some(25),
        batching_window: Some(Duration::from_secs(5)),
        wait_seconds: 1,
        pollers: 1,
        print_attempts: false,
        ..herald_local::PollSettings::default()
    };
    let herald = TestHerald::start_with_poll(
        herald_tests::aws::sdk_config(),
        &[("HERALD_DELIVERY_CONCURRENCY", "25")],
        poll,
    )
    .await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;

    let events: Vec<Value> = (0..25)
        .map(|i| json!({"id": format!("b{i}"), "type": "order.paid", "data": {"n": i}}))
        .collect();
    let (status, answer) = herald.publish("acme", json!({ "events": events })).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(receiver.wait_for(25, PATIENCE).await.len(), 25);
    assert_eq!(
        herald.local.deliver_invocations(),
        1,
        "the 25 tasks came in one batch"
    );
    let sqs = aws_sdk_sqs::Client::new(&herald.sdk);
    let queue = herald.local.provisioned().delivery_queue_url().to_owned();
    wait::until(
        "the batch's 25 messages deleted",
        PATIENCE,
        Duration::from_millis(100),
        || async {
            match messages_on(&sqs, &queue).await {
                0 => Ok(()),
                n => Err(format!("{n} left")),
            }
        },
    )
    .await;
    herald.shutdown().await;
}

/// The local gateway holds a call to Lambda's 6 MB as AWS does: the whole event counts, so
/// a 5 MiB binary body (base64 in the event, about 6.7 MB) never reaches ingest and is
/// answered in the gateway's shape, where 5 MiB of JSON text reaches ingest, which answers
/// in Herald's own.
#[tokio::test]
async fn the_gateway_counts_lambdas_six_megabytes_on_the_whole_event() {
    let herald = TestHerald::start(&[]).await;
    let url = format!("{}/v1/events", herald.local.stage_url());
    let send = |content_type: &'static str, body: Vec<u8>| {
        herald
            .http
            .post(&url)
            .header("authorization", "Bearer acme")
            .header("content-type", content_type)
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
    };
    let five_mib = 5 * 1024 * 1024;

    let binary = send("application/octet-stream", vec![b'x'; five_mib])
        .await
        .unwrap();
    assert_eq!(binary.status(), 413);
    let answer: Value = serde_json::from_slice(&binary.bytes().await.unwrap()).unwrap();
    assert_eq!(answer, json!({"message": "Request Entity Too Large"}));

    let mut text = br#"{"type": "a.b", "data": {"blob": ""#.to_vec();
    text.extend(std::iter::repeat_n(b'x', five_mib));
    text.extend(br#""}}"#);
    let json_text = send("application/json", text).await.unwrap();
    assert_eq!(json_text.status(), 413);
    let answer: Value = serde_json::from_slice(&json_text.bytes().await.unwrap()).unwrap();
    assert_eq!(answer["error"]["code"], "too_large", "{answer}");
}
