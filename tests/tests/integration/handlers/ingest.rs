//! The ingest handler on in-memory ports, fed with the API Gateway events in `events/`.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_core::delivery::DeliveryState;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::ids::SubscriptionId;
use herald_core::ports::{Adapters, Clock, SubscriptionStore};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, Disposition, process_batch};
use herald_ingest::{IngestDeps, handle};
use herald_testkit::{InMemoryWebhookSender, MemoryPorts, active_subscription, edit_subscription};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

type Deps = IngestDeps<MemoryPorts>;

fn deps() -> Deps {
    IngestDeps {
        xray: herald_aws::xray::XRay::off(),
        ports: herald_testkit::adapters(),
        tenant_claim: "tenant".into(),
        max_deliveries_per_publish: 10_000,
        max_requests_per_second: 0,
    }
}

fn event_file(name: &str) -> Value {
    let path = format!("{}/../events/ingest/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn request(event: &Value) -> Request {
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The `publish-one` event with another body and tenant.
fn publish(tenant: &str, body: Value) -> Request {
    let mut event = event_file("publish-one.json");
    event["body"] = Value::String(body.to_string());
    event["requestContext"]["authorizer"]["jwt"]["claims"]["tenant"] = json!(tenant);
    request(&event)
}

/// A subscription created a second before the publishes of a test.
async fn subscribe(deps: &Deps, tenant: &str, patterns: &[&str]) -> SubscriptionId {
    let mut subscription = active_subscription(
        tenant,
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        patterns,
    );
    subscription.created_at = deps.ports.clock.now() - chrono::Duration::seconds(1);
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    subscription.id
}

fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

#[tokio::test]
async fn a_publish_reaches_every_matching_subscription_once() {
    let deps = deps();
    let wants_orders = subscribe(&deps, "acme", &["order.*"]).await;
    let wants_all = subscribe(&deps, "acme", &["*"]).await;
    subscribe(&deps, "acme", &["invoice.paid"]).await;
    subscribe(&deps, "other", &["*"]).await;

    let response = handle(&deps, request(&event_file("publish-one.json"))).await;

    assert_eq!(response.status(), 202);
    assert_eq!(
        json_of(&response),
        json!({"id": "ord_1001.shipped", "deliveries": 2, "duplicate": false})
    );
    let mut targets: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|t| t.subscription_id)
        .collect();
    targets.sort();
    let mut expected = vec![wants_orders, wants_all];
    expected.sort();
    assert_eq!(targets, expected);
}

#[tokio::test]
async fn the_same_event_id_twice_fans_out_once_and_answers_alike() {
    let deps = deps();
    subscribe(&deps, "acme", &["order.shipped"]).await;
    let first = handle(&deps, request(&event_file("publish-one.json"))).await;
    let second = handle(&deps, request(&event_file("publish-one.json"))).await;

    assert_eq!(second.status(), 202);
    assert_eq!(
        json_of(&first)["deliveries"],
        json_of(&second)["deliveries"]
    );
    assert_eq!(json_of(&second)["duplicate"], json!(true));
    // The second publish queues the same task again (it cannot know whether the first
    // finished queuing): one delivery id, which the deliver claim makes one POST.
    let ids: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|t| t.delivery_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_repeated_publish_reaches_only_subscriptions_that_existed_at_the_first() {
    let deps = deps();
    let mut early = active_subscription(
        "acme",
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        &["*"],
    );
    early.created_at = deps.ports.clock.now() - chrono::Duration::seconds(1);
    deps.ports.subscriptions.create(&early).await.unwrap();
    let first = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(json_of(&first)["deliveries"], json!(1));
    let mut late = early.clone();
    late.id = SubscriptionId::generate(Utc::now(), &mut rand::rng());
    late.created_at = deps.ports.clock.now() + chrono::Duration::seconds(1);
    deps.ports.subscriptions.create(&late).await.unwrap();

    let again = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(
        json_of(&again),
        json!({"id": "ord_1001.shipped", "deliveries": 1, "duplicate": true})
    );
    let targets: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|t| t.subscription_id)
        .collect();
    assert_eq!(targets, vec![early.id.clone(), early.id]);
}

#[tokio::test]
async fn a_reused_id_with_other_content_is_a_conflict() {
    let deps = deps();
    handle(
        &deps,
        publish("acme", json!({"id": "e1", "type": "a", "data": {"v": 1}})),
    )
    .await;
    let response = handle(
        &deps,
        publish("acme", json!({"id": "e1", "type": "a", "data": {"v": 2}})),
    )
    .await;
    assert_eq!(response.status(), 409);
    assert_eq!(json_of(&response)["error"]["code"], "conflict");
}

#[tokio::test]
async fn a_batch_answers_per_event() {
    let deps = deps();
    subscribe(&deps, "acme", &["invoice.paid"]).await;
    let response = handle(&deps, request(&event_file("publish-batch.json"))).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        json_of(&response),
        json!({"events": [
            {"id": "inv_1", "deliveries": 1, "duplicate": false},
            {"id": "inv_2", "deliveries": 0, "duplicate": false}
        ]})
    );
}

#[tokio::test]
async fn a_failed_enqueue_is_503_and_a_retry_completes_the_publish() {
    let deps = deps();
    subscribe(&deps, "acme", &["*"]).await;
    *deps.ports.queue.fail_next.lock().unwrap() = 1;

    let failed = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(failed.status(), 503);
    assert!(deps.ports.queue.enqueued().is_empty());

    let retried = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(retried.status(), 202);
    // The id was accepted by the first publish, so the retry is a duplicate that finishes
    // what the first could not.
    assert_eq!(
        json_of(&retried),
        json!({"id": "ord_1001.shipped", "deliveries": 1, "duplicate": true})
    );
    assert_eq!(deps.ports.queue.enqueued().len(), 1);
}

/// A subscription created within the millisecond before a publish that failed half-way
/// is in the retry too: the events table keeps the acceptance time to the millisecond,
/// and the first publish compares with that same instant.
#[tokio::test]
async fn a_retry_reaches_a_subscription_created_within_the_publishs_millisecond() {
    let mut deps = deps();
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-06T10:00:00.000900Z")
        .unwrap()
        .with_timezone(&Utc);
    deps.ports.clock = herald_testkit::FixedClock::at(at);
    let mut subscription = active_subscription(
        "acme",
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
        SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
        &["*"],
    );
    // Within the millisecond the publish falls in, before it.
    subscription.created_at = at - chrono::Duration::microseconds(400);
    deps.ports
        .subscriptions
        .create(&subscription)
        .await
        .unwrap();
    *deps.ports.queue.fail_next.lock().unwrap() = 1;

    let failed = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(failed.status(), 503);
    let retried = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(retried.status(), 202);
    assert_eq!(json_of(&retried)["deliveries"], 1, "{}", json_of(&retried));
    assert_eq!(deps.ports.queue.enqueued().len(), 1);
}

#[tokio::test]
async fn bad_input_is_a_json_4xx_and_nothing_is_written() {
    let big = "x".repeat(herald_core::event::MAX_DATA_BYTES);
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"id": format!("e{i}"), "type": "a", "data": {}}))
        .collect();
    let cases: Vec<(Request, u16)> = vec![
        (request(&event_file("bad-json.json")), 400),
        (request(&event_file("missing-type.json")), 422),
        (request(&event_file("no-tenant.json")), 401),
        (publish("acme", json!({"type": "a", "data": [1, 2]})), 422),
        (
            publish("acme", json!({"type": "a", "data": {}, "colour": "red"})),
            422,
        ),
        (publish("acme", json!({"type": "a b", "data": {}})), 422),
        // Dots alone: a dot segment, so `GET /v1/events/{id}` could never read it back.
        (
            publish("acme", json!({"id": "..", "type": "a.b", "data": {}})),
            422,
        ),
        (
            publish("acme", json!({"id": ".", "type": "a.b", "data": {}})),
            422,
        ),
        (
            publish("acme", json!({"type": "a", "data": {"s": big}})),
            413,
        ),
        (publish("acme", json!({"events": many})), 413),
        (
            publish(
                "acme",
                json!({"events": [{"type": "a", "data": {}}, {"type": "b"}]}),
            ),
            422,
        ),
        (
            publish("not a tenant!", json!({"type": "a", "data": {}})),
            401,
        ),
    ];
    for (i, (req, status)) in cases.into_iter().enumerate() {
        let deps = deps();
        subscribe(&deps, "acme", &["*"]).await;
        let response = handle(&deps, req).await;
        assert_eq!(response.status(), status, "case {i}");
        let body = json_of(&response);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "case {i}: {body}"
        );
        assert!(deps.ports.events.is_empty(), "case {i} wrote an event");
        assert!(
            deps.ports.queue.enqueued().is_empty(),
            "case {i} queued a task"
        );
    }
}

#[tokio::test]
async fn wrong_content_type_route_and_method_are_refused() {
    let deps = deps();
    let mut event = event_file("publish-one.json");
    event["headers"]["content-type"] = json!("text/plain");
    assert_eq!(handle(&deps, request(&event)).await.status(), 415);

    let mut event = event_file("publish-one.json");
    event["requestContext"]["http"]["method"] = json!("GET");
    assert_eq!(handle(&deps, request(&event)).await.status(), 405);

    // A path other than /v1/events, through a catch-all route (the template has none).
    let mut event = event_file("publish-one.json");
    event["routeKey"] = json!("$default");
    event["requestContext"]["routeKey"] = json!("$default");
    event["rawPath"] = json!("/dev/v1/other");
    event["requestContext"]["http"]["path"] = json!("/dev/v1/other");
    assert_eq!(handle(&deps, request(&event)).await.status(), 404);
    assert!(deps.ports.events.is_empty());
}

#[tokio::test]
async fn publishing_needs_the_publish_scope() {
    let deps = deps();
    subscribe(&deps, "acme", &["*"]).await;
    let mut event = event_file("publish-one.json");
    let jwt = &mut event["requestContext"]["authorizer"]["jwt"];
    jwt["scopes"] = json!(["herald/read", "herald/manage"]);
    jwt["claims"]["scope"] = json!("herald/read herald/manage");
    let response = handle(&deps, request(&event)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(json_of(&response)["error"]["code"], "forbidden");
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "nothing is enqueued"
    );
}

#[tokio::test]
async fn herald_s_own_event_types_cannot_be_published() {
    let deps = deps();
    subscribe(&deps, "acme", &["*"]).await;
    for (body, field) in [
        (
            json!({"type": "subscription.disabled", "data": {"subscription_id": "sub_x"}}),
            "type",
        ),
        (json!({"type": "herald.test", "data": {}}), "type"),
        (
            json!({"events": [
                {"type": "order.paid", "data": {}},
                {"type": "herald.audit", "data": {}}
            ]}),
            "events[1].type",
        ),
    ] {
        let response = handle(&deps, publish("acme", body.clone())).await;
        assert_eq!(response.status(), 422, "{body}");
        let message = json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(field), "{message}");
        assert!(message.contains("Herald's own event type"), "{message}");
    }
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "nothing is enqueued"
    );
}

#[tokio::test]
async fn an_operator_publishes_for_the_tenant_it_names() {
    let deps = deps();
    subscribe(&deps, "globex", &["*"]).await;
    let mut event = event_file("publish-one.json");
    let jwt = &mut event["requestContext"]["authorizer"]["jwt"];
    jwt["claims"].as_object_mut().unwrap().remove("tenant");
    jwt["scopes"] = json!(["herald/operator"]);
    jwt["claims"]["scope"] = json!("herald/operator");
    event["headers"]["herald-tenant"] = json!("globex");
    let response = handle(&deps, request(&event)).await;
    assert_eq!(response.status(), 202);
    assert_eq!(json_of(&response)["deliveries"], 1);
    let enqueued = deps.ports.queue.enqueued();
    assert_eq!(enqueued[0].tenant.as_str(), "globex");
}

#[tokio::test]
async fn text_the_queue_cannot_carry_is_refused_with_its_field() {
    let deps = deps();
    subscribe(&deps, "acme", &["*"]).await;
    // As a producer sends them: JSON escapes, which parse into U+FFFF and U+FFFE.
    for (body, field) in [
        (
            r#"{"type": "order.paid", "data": {"note": "a\uffffb"}}"#,
            "data.note",
        ),
        (
            r#"{"type": "order.paid", "data": {"lines": [{"sku": "\ufffe"}]}}"#,
            "data.lines[0].sku",
        ),
        (
            r#"{"type": "order.paid", "data": {}, "subject": {"type": "order", "id": "\uffff"}}"#,
            "subject.id",
        ),
        (
            r#"{"events": [{"type": "order.paid", "data": {}},
                {"type": "order.paid", "data": {}, "subject": {"type": "order", "id": "1", "status": "\uffff"}}]}"#,
            "events[1].subject.status",
        ),
    ] {
        let body: Value = serde_json::from_str(body).unwrap();
        let response = handle(&deps, publish("acme", body.clone())).await;
        assert_eq!(response.status(), 422, "{body}");
        let message = json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
        assert!(message.contains("U+FFF"), "{message}");
    }
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "nothing is enqueued"
    );

    // Control characters are written as escapes in the queue's message: they go through.
    let body: Value =
        serde_json::from_str(r#"{"type": "order.paid", "data": {"note": "a\u0000\u001bb"}}"#)
            .unwrap();
    let response = handle(&deps, publish("acme", body)).await;
    assert_eq!(response.status(), 202);
    assert_eq!(deps.ports.queue.enqueued().len(), 1);
}

#[tokio::test]
async fn a_publish_that_would_make_more_deliveries_than_allowed_is_refused_whole() {
    let mut deps = deps();
    deps.max_deliveries_per_publish = 3;
    subscribe(&deps, "acme", &["*"]).await;
    subscribe(&deps, "acme", &["order.*"]).await;
    let two = json!({"events": [
        {"id": "a", "type": "order.shipped", "data": {}},
        {"id": "b", "type": "order.paid", "data": {}}
    ]});
    let response = handle(&deps, publish("acme", two)).await;
    assert_eq!(response.status(), 422);
    let message = json_of(&response)["error"]["message"].to_string();
    assert!(
        message.contains("4 deliveries") && message.contains("at most 3"),
        "{message}"
    );
    assert!(deps.ports.events.is_empty(), "nothing recorded");
    assert!(deps.ports.queue.enqueued().is_empty(), "nothing queued");

    // Within the cap: accepted.
    let one = json!({"id": "c", "type": "order.shipped", "data": {}});
    assert_eq!(handle(&deps, publish("acme", one)).await.status(), 202);
    assert_eq!(deps.ports.queue.enqueued().len(), 2);
}

/// A publish answered 503 and repeated after the tenant added subscriptions counts as the
/// repeat it is: its event reaches only the subscriptions it was first accepted for, so
/// the limit holds it to those, and the repeat queues what the first could not. A new
/// event to all of them is still over it.
#[tokio::test]
async fn a_repeat_after_subscriptions_were_added_is_held_to_the_limit_as_first_accepted() {
    let mut deps = deps();
    deps.max_deliveries_per_publish = 2;
    subscribe(&deps, "acme", &["order.*"]).await;
    subscribe(&deps, "acme", &["order.*"]).await;
    let event = json!({"id": "a", "type": "order.shipped", "data": {}});
    *deps.ports.queue.fail_next.lock().unwrap() = 1;
    assert_eq!(
        handle(&deps, publish("acme", event.clone())).await.status(),
        503
    );
    deps.ports.clock.advance(std::time::Duration::from_secs(60));
    subscribe(&deps, "acme", &["order.*"]).await;

    let again = handle(&deps, publish("acme", event)).await;
    assert_eq!(again.status(), 202, "{}", json_of(&again));
    assert_eq!(
        json_of(&again),
        json!({"id": "a", "deliveries": 2, "duplicate": true})
    );
    assert_eq!(deps.ports.queue.enqueued().len(), 2);

    let new = json!({"id": "b", "type": "order.shipped", "data": {}});
    let response = handle(&deps, publish("acme", new)).await;
    assert_eq!(response.status(), 422);
    assert!(
        json_of(&response)["error"]["message"]
            .to_string()
            .contains("3 deliveries")
    );
}

/// Lambda's context for an invocation whose trace header is `header`.
fn traced(request: Request, header: &str) -> Request {
    use lambda_http::RequestExt;
    let mut context = lambda_http::Context::default();
    context.xray_trace_id = Some(header.to_owned());
    request.with_lambda_context(context)
}

#[tokio::test]
async fn a_sampled_invocation_traces_its_publish_and_an_unsampled_one_sends_nothing() {
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon.set_nonblocking(true).unwrap();
    let mut deps = deps();
    deps.xray = herald_aws::xray::XRay::to(daemon.local_addr().unwrap()).unwrap();
    subscribe(&deps, "acme", &["*"]).await;
    let root = "1-5759e988-bd862e3fe1be46a994272793";
    let mut buf = [0u8; 65536];

    let unsampled = format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=0");
    let body = json!({"id": "e-quiet", "type": "a", "data": {}});
    let response = handle(&deps, traced(publish("acme", body), &unsampled)).await;
    assert_eq!(response.status(), 202);
    // A malformed header is no trace either.
    let body = json!({"id": "e-odd", "type": "a", "data": {}});
    let response = handle(
        &deps,
        traced(publish("acme", body), "Root=nonsense;Sampled=1"),
    )
    .await;
    assert_eq!(response.status(), 202);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(daemon.recv(&mut buf).is_err(), "nothing sent for them");
    assert!(
        deps.ports
            .queue
            .enqueued()
            .iter()
            .all(|t| t.trace.is_none()),
        "their tasks carry no trace"
    );

    let sampled = format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1");
    let body = json!({"id": "e-traced", "type": "a", "data": {}});
    let response = handle(&deps, traced(publish("acme", body), &sampled)).await;
    assert_eq!(response.status(), 202);
    let mut doc = None;
    for _ in 0..50 {
        if let Ok(n) = daemon.recv(&mut buf) {
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            doc = Some(serde_json::from_str::<Value>(text.split_once('\n').unwrap().1).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let doc = doc.expect("the publish span");
    assert_eq!(doc["name"], "publish");
    assert_eq!(doc["trace_id"], root);
    assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
    let task = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .find(|t| t.event.id.as_str() == "e-traced")
        .unwrap();
    let carried = task.trace.expect("the task carries the trace");
    assert_eq!(carried.root, root);
    assert_eq!(carried.parent.as_deref(), doc["id"].as_str());
    assert!(carried.sampled);
}

#[tokio::test]
async fn a_subscription_marked_slow_gets_its_tasks_on_the_slow_lane_unless_ordered() {
    use herald_core::delivery::Lane;
    use herald_core::subscription::ordering::DeliveryOrder;
    let deps = deps();
    let now = deps.ports.clock.now();
    let steady = subscribe(&deps, "acme", &["order.*"]).await;
    let slow = subscribe(&deps, "acme", &["order.*"]).await;
    let ordered_slow = subscribe(&deps, "acme", &["order.*"]).await;
    let was_slow = subscribe(&deps, "acme", &["order.*"]).await;
    let tenant = herald_core::ids::TenantId::parse("acme").unwrap();
    for (id, until) in [
        (&slow, now + chrono::Duration::minutes(10)),
        (&ordered_slow, now + chrono::Duration::minutes(10)),
        (&was_slow, now - chrono::Duration::seconds(1)),
    ] {
        deps.ports
            .subscriptions
            .mark_slow(&tenant, id, until)
            .await
            .unwrap();
    }
    edit_subscription(
        &deps.ports.subscriptions,
        &tenant,
        &ordered_slow,
        |ordered| {
            ordered.ordering = Some(DeliveryOrder::Subscription);
        },
    )
    .await;

    let response = handle(&deps, request(&event_file("publish-one.json"))).await;
    assert_eq!(response.status(), 202);

    let lanes: std::collections::HashMap<_, _> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|t| (t.subscription_id.clone(), t.lane()))
        .collect();
    assert_eq!(lanes[&steady], Lane::Standard);
    assert_eq!(lanes[&slow], Lane::Slow);
    assert_eq!(lanes[&ordered_slow], Lane::Ordered);
    assert_eq!(
        lanes[&was_slow],
        Lane::Standard,
        "a mark past its time is gone"
    );
}

/// Past its requests a second, a tenant is answered 429 with `Retry-After: 1`, nothing
/// accepted; another tenant in the same second, and the same tenant a second later, are
/// served.
#[tokio::test]
async fn a_tenant_past_its_requests_a_second_waits_and_the_others_do_not() {
    let mut deps = deps();
    deps.max_requests_per_second = 3;
    for n in 0..3 {
        let body = json!({"id": format!("e{n}"), "type": "a", "data": {}});
        assert_eq!(handle(&deps, publish("acme", body)).await.status(), 202);
    }
    let refused = handle(
        &deps,
        publish("acme", json!({"id": "e3", "type": "a", "data": {}})),
    )
    .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        json_of(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 API requests a second")
    );
    let theirs = handle(
        &deps,
        publish("globex", json!({"id": "e3", "type": "a", "data": {}})),
    )
    .await;
    assert_eq!(theirs.status(), 202, "another tenant is not held back");
    deps.ports.clock.advance(std::time::Duration::from_secs(1));
    let later = handle(
        &deps,
        publish("acme", json!({"id": "e3", "type": "a", "data": {}})),
    )
    .await;
    assert_eq!(later.status(), 202);
    // The refused event was not accepted: published again, it is new.
    assert_eq!(
        json_of(&later)["duplicate"],
        json!(false),
        "{}",
        json_of(&later)
    );
}

#[tokio::test]
async fn a_large_events_tasks_are_claim_checks_and_a_small_ones_carry_it() {
    use herald_core::delivery::INLINE_DATA_BYTES;
    use herald_core::ports::EventLog;
    let deps = deps();
    for _ in 0..3 {
        subscribe(&deps, "acme", &["*"]).await;
    }
    // `{"s":"…"}`: 8 bytes and the text. One byte over the bound, and exactly at it.
    let over = json!({"s": "x".repeat(INLINE_DATA_BYTES - 7)});
    let at = json!({"s": "y".repeat(INLINE_DATA_BYTES - 8)});
    let body = json!({"events": [
        {"id": "big", "type": "report.ready", "data": over},
        {"id": "fits", "type": "report.ready", "data": at},
    ]});
    let response = handle(&deps, publish("acme", body)).await;
    assert_eq!(response.status(), 202, "{}", json_of(&response));

    let tasks = deps.ports.queue.enqueued();
    assert_eq!(tasks.len(), 6);
    let acme = herald_core::ids::TenantId::parse("acme").unwrap();
    let now = deps.ports.clock.now();
    let events = &deps.ports.events;
    let id = |id: &str| herald_core::ids::EventId::parse(id).unwrap();
    let big = events.load(&acme, &id("big"), now).await.unwrap().unwrap();
    for task in tasks.iter().filter(|t| t.event.id.as_str() == "big") {
        // Made without the data, and named by the kept event's fingerprint.
        assert!(task.event.data.is_empty());
        assert_eq!(task.stored.as_deref(), Some(big.fingerprint().as_str()));
        assert!(task.to_message_body().len() < 1024);
    }
    let fits = events.load(&acme, &id("fits"), now).await.unwrap().unwrap();
    for task in tasks.iter().filter(|t| t.event.id.as_str() == "fits") {
        assert_eq!((&*task.event, &task.stored), (&fits, &None));
    }
}

/// A subscription that wants only the newest event about a subject, created a second
/// before the publishes of a test.
async fn subscribe_superseding(deps: &Deps) -> SubscriptionId {
    let id = subscribe(deps, "acme", &["order.*"]).await;
    let tenant = herald_core::ids::TenantId::parse("acme").unwrap();
    edit_subscription(&deps.ports.subscriptions, &tenant, &id, |s| {
        s.supersede = true;
    })
    .await;
    id
}

/// An order update about order 5, its `occurred_at` left to default to the publish.
fn order_update(id: &str, status: &str) -> Request {
    publish(
        "acme",
        json!({"id": id, "type": "order.updated", "data": {"status": status},
               "subject": {"type": "ORDER", "id": "5"}}),
    )
}

/// A producer's retry of an accepted event (after a 503, or the CLI's own retry) with
/// `occurred_at` left to default is the same event: its tasks carry the event as first
/// accepted, and it does not become the newest about its subject over a later event.
#[tokio::test]
async fn a_repeated_publish_queues_the_event_as_first_accepted() {
    use herald_core::ports::EventLog;
    let deps = deps();
    let subscription = subscribe_superseding(&deps).await;
    assert_eq!(
        handle(&deps, order_update("ord_5.0", "PLACED"))
            .await
            .status(),
        202
    );
    deps.ports.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(
        handle(&deps, order_update("ord_5.1", "PACKED"))
            .await
            .status(),
        202
    );
    deps.ports.clock.advance(std::time::Duration::from_secs(60));
    let again = handle(&deps, order_update("ord_5.0", "PLACED")).await;
    assert_eq!(
        json_of(&again),
        json!({"id": "ord_5.0", "deliveries": 1, "duplicate": true})
    );

    let queued = deps.ports.queue.enqueued();
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[2].delivery_id, queued[0].delivery_id);
    assert_eq!(
        queued[2].event, queued[0].event,
        "the event as first accepted"
    );
    assert_eq!(queued[2].to_message_body(), queued[0].to_message_body());
    // The later event is still the newest about order 5.
    let tenant = herald_core::ids::TenantId::parse("acme").unwrap();
    let newest = deps
        .ports
        .events
        .latest(
            &tenant,
            &subscription,
            &queued[0].event,
            deps.ports.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(newest, Some(queued[1].event.order_key()));
}

/// An SQS record of the delivery queue carrying `task`.
fn delivery_record(task: &herald_core::delivery::DeliveryTask, message: &str) -> SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": message, "receiptHandle": format!("r-{message}"),
        "body": task.to_message_body(),
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:herald-DeliveryQueue-Ab12Cd34Ef56",
    }]}))
    .unwrap()
}

/// Deliver on the ports ingest used, with the deployment's defaults.
fn deliver_on(ports: Adapters<MemoryPorts>) -> Arc<DeliverDeps<MemoryPorts>> {
    Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports,
        settings: DeliverySettings::default(),
    })
}

/// Ingest again on the ports deliver used.
fn ingest_on(deliver: Arc<DeliverDeps<MemoryPorts>>) -> Deps {
    let Ok(deliver) = Arc::try_unwrap(deliver) else {
        panic!("deliver's batch is done with its ports")
    };
    IngestDeps {
        ports: deliver.ports,
        ..deps()
    }
}

/// The case reported: a subscription that wants only the newest event about a subject,
/// its receiver down. The first task (M1) fails and waits for its retry; the producer
/// publishes the event again (`occurred_at` unset, so defaulted to another time), and
/// its task (M2) fails at once. M1 comes back: it is the same event, not a newer one, so
/// it is sent, under the same `webhook-id` with the same body as every attempt before,
/// and delivered. It was recorded superseded by itself, M2 then deleted, nothing sent.
#[tokio::test]
async fn a_repeated_publish_never_makes_a_delivery_supersede_itself() {
    let down_twice = [500, 500].map(InMemoryWebhookSender::status);
    let ingest = IngestDeps {
        ports: Adapters {
            sender: InMemoryWebhookSender::answering(down_twice),
            ..herald_testkit::adapters()
        },
        ..deps()
    };
    subscribe_superseding(&ingest).await;
    assert_eq!(
        handle(&ingest, order_update("ord_5.0", "PLACED"))
            .await
            .status(),
        202
    );
    let m1 = ingest.ports.queue.enqueued()[0].clone();

    let deliver = deliver_on(ingest.ports);
    let outcome = process_batch(&deliver, delivery_record(&m1, "m1")).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::RetryIn(_)
    ));

    let ingest = ingest_on(deliver);
    ingest
        .ports
        .clock
        .advance(std::time::Duration::from_secs(60));
    let again = handle(&ingest, order_update("ord_5.0", "PLACED")).await;
    assert_eq!(json_of(&again)["duplicate"], json!(true));
    let m2 = ingest.ports.queue.enqueued()[1].clone();
    assert_eq!(m2.delivery_id, m1.delivery_id);

    let deliver = deliver_on(ingest.ports);
    let outcome = process_batch(&deliver, delivery_record(&m2, "m2")).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::RetryIn(_)
    ));
    deliver
        .ports
        .clock
        .advance(std::time::Duration::from_secs(120));
    let outcome = process_batch(&deliver, delivery_record(&m1, "m1")).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);
    let record = deliver.ports.ledger.record(&m1.delivery_id).unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 3);

    let bodies: Vec<_> = deliver
        .ports
        .sender
        .sent()
        .into_iter()
        .map(|w| w.body)
        .collect();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "one webhook, the same body each time"
    );
    // M2, back for its retry, finds the delivery done.
    let outcome = process_batch(&deliver, delivery_record(&m2, "m2")).await;
    assert!(matches!(
        outcome.reports[0].disposition,
        Disposition::AlreadyFinished(DeliveryState::Delivered)
    ));
}

/// A newer event about a subject whose publish could not queue its tasks (answered 503)
/// does not supersede the older delivery still waiting: should its producer never publish
/// it again, the older one is sent, where before it was recorded superseded by an event
/// never sent. Once the newer one is queued (its repeat), it supersedes.
#[tokio::test]
async fn a_newer_event_whose_tasks_were_not_queued_supersedes_nothing() {
    let ingest = deps();
    subscribe_superseding(&ingest).await;
    assert_eq!(
        handle(&ingest, order_update("ord_5.0", "PLACED"))
            .await
            .status(),
        202
    );
    let older = ingest.ports.queue.enqueued()[0].clone();
    ingest
        .ports
        .clock
        .advance(std::time::Duration::from_secs(60));
    *ingest.ports.queue.fail_next.lock().unwrap() = 1;
    assert_eq!(
        handle(&ingest, order_update("ord_5.1", "PACKED"))
            .await
            .status(),
        503
    );
    assert_eq!(ingest.ports.queue.enqueued().len(), 1);

    let deliver = deliver_on(ingest.ports);
    let outcome = process_batch(&deliver, delivery_record(&older, "m1")).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Delivered);

    // The same, with the newer one's repeat queued before the older is attempted.
    let ingest = ingest_on(deliver);
    ingest
        .ports
        .clock
        .advance(std::time::Duration::from_secs(60));
    assert_eq!(
        handle(&ingest, order_update("ord_6.0", "PLACED"))
            .await
            .status(),
        202
    );
    let waiting = ingest.ports.queue.enqueued().last().unwrap().clone();
    assert_eq!(
        handle(&ingest, order_update("ord_6.1", "PACKED"))
            .await
            .status(),
        202
    );
    let deliver = deliver_on(ingest.ports);
    let outcome = process_batch(&deliver, delivery_record(&waiting, "m2")).await;
    assert_eq!(outcome.reports[0].disposition, Disposition::Superseded);
}
