//! The management API through the local runner against moto: changes with versions,
//! secret rotation seen by a real receiver, test events, the attempt log, redelivery,
//! replay, and tenant isolation on every route.

use std::time::Duration;

use herald_testkit::signatures::{signature_entries, v1_signature};
use herald_testkit::wait::{self, PATIENCE};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

fn signature_with(request: &Recorded, secret: &str) -> String {
    v1_signature(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
    )
}

fn entries(request: &Recorded) -> Vec<String> {
    signature_entries(request.header("webhook-signature"))
}

/// Polls a GET until `done` holds for its JSON answer.
async fn eventually(
    herald: &TestHerald,
    tenant: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait::until(path, PATIENCE, Duration::from_millis(200), || async {
        let (status, body) = herald.call("GET", path, Some(tenant), None).await;
        if status == 200 && done(&body) {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    })
    .await
}

#[tokio::test]
async fn changes_need_the_current_version() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (id, _) = herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    let path = format!("/v1/subscriptions/{id}");

    let (status, changed) = herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"description": "orders", "version": 1})),
        )
        .await;
    assert_eq!(
        (
            status,
            changed["version"].as_u64(),
            changed["description"].as_str()
        ),
        (200, Some(2), Some("orders"))
    );
    let (status, _) = herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"description": "stale", "version": 1})),
        )
        .await;
    assert_eq!(status, 409);

    let url = format!("{}{path}", herald.local.api_url());
    let stale = herald
        .http
        .patch(&url)
        .header("authorization", "Bearer acme")
        .header("if-match", "\"1\"")
        .header("content-type", "application/json")
        .body(r#"{"event_types": ["*"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 409);
    let fresh = herald
        .http
        .patch(&url)
        .header("authorization", "Bearer acme")
        .header("if-match", "\"2\"")
        .header("content-type", "application/json")
        .body(r#"{"event_types": ["*"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status().as_u16(), 200);

    for bad in [
        json!({"url": "https://10.0.0.8/"}),
        json!({"event_types": []}),
        json!({"colour": "red"}),
        json!({"status": "paused"}),
    ] {
        let (status, body) = herald.call("PATCH", &path, Some("acme"), Some(&bad)).await;
        assert!(status == 422, "{bad}: {status} {body}");
    }
    let (_, shown) = herald.call("GET", &path, Some("acme"), None).await;
    assert_eq!(shown["version"], 3, "refused changes change nothing");

    herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"status": "disabled"})),
        )
        .await;
    let (_, answer) = herald
        .publish("acme", json!({"type": "invoice.paid", "data": {}}))
        .await;
    assert_eq!(answer["deliveries"], 0);
    let (_, enabled) = herald
        .call(
            "PATCH",
            &path,
            Some("acme"),
            Some(&json!({"status": "active"})),
        )
        .await;
    assert_eq!(
        (enabled["status"].as_str(), enabled.get("disabled_reason")),
        (Some("active"), None)
    );
    let (_, answer) = herald
        .publish("acme", json!({"type": "invoice.paid", "data": {}}))
        .await;
    assert_eq!(answer["deliveries"], 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_after_it_one() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (id, old) = herald.subscribe("acme", &receiver.url(), &["*"]).await;

    let (status, rotated) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/secret/rotate"),
            Some("acme"),
            Some(&json!({"grace_period": "3s"})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    herald
        .publish("acme", json!({"type": "a", "data": {"n": 1}}))
        .await;
    let first = receiver.wait_for(1, PATIENCE).await.remove(0);
    let signatures = entries(&first);
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    assert!(signatures.contains(&signature_with(&first, &new)));
    assert!(signatures.contains(&signature_with(&first, &old)));

    tokio::time::sleep(Duration::from_secs(4)).await;
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 2}}))
        .await;
    let second = receiver.wait_for(2, PATIENCE).await.remove(1);
    assert_eq!(entries(&second), vec![signature_with(&second, &new)]);

    let too_long = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/secret/rotate"),
            Some("acme"),
            Some(&json!({"grace_period": "8d"})),
        )
        .await;
    assert_eq!(too_long.0, 422);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_test_event_goes_to_that_endpoint_alone() {
    let herald = TestHerald::start(&[]).await;
    let (target, other) = (
        TestReceiver::start(Script::always(200)).await,
        TestReceiver::start(Script::always(200)).await,
    );
    let (id, _) = herald
        .subscribe("acme", &target.url(), &["order.shipped"])
        .await;
    herald.subscribe("acme", &other.url(), &["*"]).await;

    let (status, sent) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/test"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{sent}");
    let got = target.wait_for(1, PATIENCE).await;
    assert_eq!(got[0].json()["type"], "herald.test");
    assert_eq!(
        got[0].header("webhook-id"),
        sent["delivery_id"].as_str().unwrap()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(other.requests().is_empty());
    herald.shutdown().await;
}

#[tokio::test]
async fn a_subscriptions_feed_gives_the_bodies_it_posted_oldest_first_to_its_tenant_alone() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (id, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    for n in 0..3 {
        herald
            .publish(
                "acme",
                json!({"id": format!("f{n}"), "type": "order.shipped", "data": {"n": n}}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posted = receiver.wait_for(3, PATIENCE).await;
    let feed_path = format!("/v1/subscriptions/{id}/feed");
    let feed = eventually(&herald, "acme", &feed_path, |b| {
        b["data"].as_array().unwrap().len() == 3
    })
    .await;
    let items = feed["data"].as_array().unwrap();
    let events: Vec<&str> = items
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["f0", "f1", "f2"], "oldest first");
    assert_eq!(feed["next_cursor"], Value::Null);
    for item in items {
        let delivery = item["delivery_id"].as_str().unwrap();
        let request = posted
            .iter()
            .find(|r| r.header("webhook-id") == delivery)
            .unwrap_or_else(|| panic!("no POST of {delivery}"));
        assert_eq!(item["body"], request.json(), "the body as POSTed");
        assert_eq!(item["event_type"], "order.shipped");
        assert!(item["accepted_at"].is_string());
    }

    let (_, page) = herald
        .call("GET", &format!("{feed_path}?limit=2"), Some("acme"), None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = herald
        .call(
            "GET",
            &format!("{feed_path}?limit=2&cursor={cursor}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["event_id"], "f2");
    assert_eq!(rest["next_cursor"], Value::Null);

    let later = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, none) = herald
        .call(
            "GET",
            &format!("{feed_path}?since={later}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!((status, none["data"].clone()), (200, json!([])));
    let (status, _) = herald
        .call("GET", &format!("{feed_path}?limit=0"), Some("acme"), None)
        .await;
    assert_eq!(status, 400);
    let (status, _) = herald.call("GET", &feed_path, Some("globex"), None).await;
    assert_eq!(
        status, 404,
        "another tenant's subscription does not exist for it"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn the_attempt_log_shows_every_attempt_and_pages_newest_first() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "1s,1s")]).await;
    let receiver = TestReceiver::start(Script::sequence([500, 200])).await;
    let (id, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    for n in 0..3 {
        herald
            .publish(
                "acme",
                json!({"id": format!("e{n}"), "type": "a", "data": {"n": n}}),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list_path = format!("/v1/subscriptions/{id}/deliveries");
    let all = eventually(
        &herald,
        "acme",
        &format!("{list_path}?state=delivered"),
        |b| b["data"].as_array().unwrap().len() == 3,
    )
    .await;
    let events: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events, vec!["e2", "e1", "e0"], "newest first");

    let (_, page) = herald
        .call("GET", &format!("{list_path}?limit=2"), Some("acme"), None)
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = herald
        .call(
            "GET",
            &format!("{list_path}?limit=2&cursor={cursor}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(rest["data"][0]["event_id"], "e0");
    let (_, failed) = herald
        .call(
            "GET",
            &format!("{list_path}?state=failed"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(failed["data"], json!([]));

    let retried = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["attempts"].as_array().unwrap().len() == 2)
        .unwrap();
    let (status, one) = herald
        .call(
            "GET",
            &format!("/v1/deliveries/{}", retried["id"].as_str().unwrap()),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let attempts = one["attempts"].as_array().unwrap();
    assert_eq!(
        (
            attempts[0]["status"].as_u64(),
            attempts[0]["error"].as_str()
        ),
        (Some(500), Some("E_HTTP"))
    );
    assert_eq!(
        (
            attempts[1]["status"].as_u64(),
            attempts[1]["response"].as_str()
        ),
        (Some(200), Some("ok"))
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["latency_ms"].is_u64() && a["at"].is_string())
    );

    for bad in [
        "?state=lost",
        "?since=yesterday",
        "?limit=0",
        "?cursor=nope",
    ] {
        let (status, _) = herald
            .call("GET", &format!("{list_path}{bad}"), Some("acme"), None)
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    herald.shutdown().await;
}

#[tokio::test]
async fn retry_redelivers_with_the_same_id_and_replay_requeues_failures() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "1s")]).await;
    let receiver = TestReceiver::start(Script::sequence([500, 500, 500, 500, 200])).await;
    let (id, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let since = chrono::Utc::now() - chrono::Duration::seconds(5);
    herald
        .publish("acme", json!({"id": "r1", "type": "a", "data": {}}))
        .await;
    herald
        .publish("acme", json!({"id": "r2", "type": "a", "data": {}}))
        .await;
    let list_path = format!("/v1/subscriptions/{id}/deliveries?state=failed");
    eventually(&herald, "acme", &list_path, |b| {
        b["data"].as_array().unwrap().len() == 2
    })
    .await;

    let replay = json!({"since": since.to_rfc3339()});
    let (status, answer) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/replay"),
            Some("acme"),
            Some(&replay),
        )
        .await;
    assert_eq!(
        (status, answer["queued"].as_u64()),
        (202, Some(2)),
        "{answer}"
    );
    let delivered = eventually(
        &herald,
        "acme",
        &format!("/v1/subscriptions/{id}/deliveries?state=delivered"),
        |b| b["data"].as_array().unwrap().len() == 2,
    )
    .await;
    let delivery = delivered["data"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        delivered["data"][0]["attempts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["forced"]
            .as_bool()
            .unwrap()
    );

    let before = receiver.requests().len();
    let (status, _) = herald
        .call(
            "POST",
            &format!("/v1/deliveries/{delivery}/retry"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    let got = receiver.wait_for(before + 1, PATIENCE).await;
    assert_eq!(
        got.last().unwrap().header("webhook-id"),
        delivery,
        "a redelivery keeps its id"
    );

    let (status, _) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/replay"),
            Some("acme"),
            Some(&json!({"until": "2026-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 422, "since is required");
    herald.shutdown().await;
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_on_every_route() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (sub, _) = herald.subscribe("tenant-a", &receiver.url(), &["*"]).await;
    herald
        .publish("tenant-a", json!({"id": "a1", "type": "a", "data": {}}))
        .await;
    let log = eventually(
        &herald,
        "tenant-a",
        &format!("/v1/subscriptions/{sub}/deliveries"),
        |b| b["data"].as_array().unwrap().len() == 1,
    )
    .await;
    let delivery = log["data"][0]["id"].as_str().unwrap().to_owned();

    let calls = [
        ("GET", format!("/v1/subscriptions/{sub}"), None),
        (
            "PATCH",
            format!("/v1/subscriptions/{sub}"),
            Some(json!({"description": "mine now"})),
        ),
        ("DELETE", format!("/v1/subscriptions/{sub}"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/secret/rotate"),
            None,
        ),
        ("POST", format!("/v1/subscriptions/{sub}/test"), None),
        ("GET", format!("/v1/subscriptions/{sub}/deliveries"), None),
        ("GET", format!("/v1/subscriptions/{sub}/feed"), None),
        (
            "POST",
            format!("/v1/subscriptions/{sub}/replay"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        ("GET", format!("/v1/deliveries/{delivery}"), None),
        ("POST", format!("/v1/deliveries/{delivery}/retry"), None),
    ];
    for (method, path, body) in &calls {
        let (status, answer) = herald
            .call(method, path, Some("tenant-b"), body.as_ref())
            .await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (_, shown) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{sub}"),
            Some("tenant-a"),
            None,
        )
        .await;
    assert_eq!(shown["version"], 1);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_portal_session_opens_a_page_the_local_runner_serves_for_one_tenant() {
    let herald = TestHerald::start(&[]).await;
    let (own, _) = herald
        .subscribe("acme", "http://127.0.0.1:9/acme", &["*"])
        .await;
    herald
        .subscribe("globex", "http://127.0.0.1:9/globex", &["*"])
        .await;
    let (status, session) = herald
        .call("POST", "/v1/portal/sessions", Some("acme"), None)
        .await;
    assert_eq!(status, 201, "{session}");
    let url = session["url"].as_str().unwrap();
    let token = session["token"].as_str().unwrap();
    let (page, fragment) = url.split_once('#').unwrap();
    assert_eq!(
        page,
        format!("{}/portal/index.html", herald.local.stage_url()),
        "the page is where the client reached the API, port and stage kept"
    );
    assert_eq!(fragment, format!("token={token}"));

    let http = reqwest::Client::new();
    let html = http.get(page).send().await.unwrap();
    assert_eq!(html.status(), 200);
    assert!(
        html.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let api = page.replace("index.html", "api/v1/subscriptions");
    let listed = http
        .get(&api)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![own.as_str()]);
    let refused = http.get(&api).bearer_auth("acme").send().await.unwrap();
    assert_eq!(
        refused.status(),
        401,
        "the portal takes session tokens alone"
    );
    herald.shutdown().await;
}

#[tokio::test]
async fn no_webhook_goes_to_the_local_runner_s_aws_endpoint() {
    use herald_core::ports::SubscriptionStore;
    use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};

    let herald = TestHerald::start(&[]).await;
    // moto, whose own API answers there too: `POST /moto-api/reset` would empty every
    // table of every test. The local runner allows loopback targets, yet not this one.
    let endpoint = herald.sdk.endpoint_url().unwrap().to_owned();
    let port = endpoint.rsplit(':').next().unwrap().to_owned();
    for url in [
        format!("{endpoint}/moto-api/reset"),
        format!("http://localhost:{port}/moto-api/reset"),
        format!("http://[::1]:{port}/moto-api/reset"),
        format!("http://127.0.0.2:{port}/moto-api/reset"),
    ] {
        let body = json!({"url": url, "event_types": ["*"]});
        let (status, refused) = herald
            .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
            .await;
        assert_eq!(status, 422, "{url}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("Herald keeps for itself"), "{message}");
    }
    let (_, listed) = herald
        .call("GET", "/v1/subscriptions", Some("acme"), None)
        .await;
    assert_eq!(listed["data"], json!([]), "none was stored");
    // Another port of this machine is a receiver's, as ever.
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;

    // A subscription that reached the table some other way is refused by the sender: no
    // request goes out (a path moto would answer, harmlessly, were one to).
    let store = herald_aws::dynamo::DynamoSubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&herald.sdk),
        herald.local.provisioned().subscriptions_table().to_owned(),
    );
    let loopback = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
        ..UrlPolicy::default()
    };
    let mut stored = herald_testkit::active_subscription(
        "acme",
        herald_core::ids::SubscriptionId::generate(
            chrono::Utc::now() - chrono::Duration::seconds(5),
            &mut rand::rng(),
        ),
        SubscriptionUrl::parse(&format!("{endpoint}/moto-api/data.json"), &loopback).unwrap(),
        &["*"],
    );
    stored.created_at = chrono::Utc::now() - chrono::Duration::seconds(5);
    store.create(&stored).await.unwrap();
    let (status, _) = herald
        .publish("acme", json!({"type": "order.paid", "data": {}}))
        .await;
    assert_eq!(status, 202);
    let deliveries = eventually(
        &herald,
        "acme",
        &format!("/v1/subscriptions/{}/deliveries", stored.id),
        |b| {
            b["data"][0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    )
    .await;
    let attempt = &deliveries["data"][0]["attempts"][0];
    assert_eq!(attempt["error"], "E_SSRF", "{deliveries}");
    assert!(attempt["status"].is_null(), "{deliveries}");
    herald.shutdown().await;
}

/// Repeats an operator's tenant erasure with each answer's cursor until it is done
/// (waiting out its sweep's settle time); answers the last answer and the calls made.
async fn erase_tenant_until_done(herald: &TestHerald, tenant: &str) -> (Value, usize) {
    let mut body: Option<Value> = None;
    for calls in 1..=200 {
        let (status, answer) = herald
            .call_as_operator("POST", "/v1/tenant/erase", tenant, body.as_ref())
            .await;
        assert_eq!(status, 200, "{answer}");
        if answer["done"] == true {
            assert_eq!(answer["cursor"], Value::Null);
            return (answer, calls);
        }
        if answer["stage"] == "sweep" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        body = Some(json!({"cursor": answer["cursor"]}));
    }
    panic!("the erasure of {tenant} never finished");
}

#[tokio::test]
async fn an_operator_erases_a_tenant_and_nothing_of_it_can_be_read_or_delivered_after() {
    // Deliver keeps subscriptions a second; the sweep waits two (its batches here are
    // short, so the settle time need not cover deliver's whole timeout).
    let herald = TestHerald::start(&[
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "1"),
        ("HERALD_ERASURE_SETTLE_SECONDS", "2"),
    ])
    .await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (first, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let (second, _) = herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    let (theirs, _) = herald.subscribe("globex", &receiver.url(), &["*"]).await;
    for n in 0..3 {
        let event = json!({"id": format!("x{n}"), "type": "order.shipped", "data": {"n": n}});
        herald.publish("acme", event.clone()).await;
        herald.publish("globex", event).await;
    }
    receiver.wait_for(9, PATIENCE).await;
    let mut delivered = Vec::new();
    for (tenant, sub) in [("acme", &first), ("acme", &second), ("globex", &theirs)] {
        let log = eventually(
            &herald,
            tenant,
            &format!("/v1/subscriptions/{sub}/deliveries?state=delivered"),
            |b| b["data"].as_array().unwrap().len() == 3,
        )
        .await;
        delivered.push(log["data"][0]["id"].as_str().unwrap().to_owned());
    }
    let (_, session) = herald
        .call("POST", "/v1/portal/sessions", Some("acme"), None)
        .await;
    let portal_token = session["token"].as_str().unwrap().to_owned();

    // Only an operator erases a tenant, and names it.
    let (status, _) = herald
        .call("POST", "/v1/tenant/erase", Some("acme"), None)
        .await;
    assert_eq!(status, 403, "a tenant's own token cannot");
    let (status, _) = herald
        .call_with("POST", "/v1/tenant/erase", Some("ops:operator"), &[], None)
        .await;
    assert_eq!(status, 400, "an operator names the tenant");
    let (status, _) = herald
        .call_as_operator(
            "POST",
            "/v1/tenant/erase",
            "acme",
            Some(&json!({"cursor": "bm90IGEgY3Vyc29y"})),
        )
        .await;
    assert_eq!(status, 400, "a cursor it did not hand out");

    let (done, calls) = erase_tenant_until_done(&herald, "acme").await;
    assert!(
        calls >= 2,
        "the sweep waits out the settle time: {calls} calls"
    );
    assert_eq!(done["erased"]["subscriptions"], 2, "{done}");
    assert_eq!(done["erased"]["deliveries"], 6, "{done}");
    assert_eq!(done["erased"]["events"], 3, "{done}");
    assert_eq!(done["erased"]["portal_sessions"], 1, "{done}");

    // Nothing of acme is readable.
    let (_, listed) = herald
        .call("GET", "/v1/subscriptions", Some("acme"), None)
        .await;
    assert_eq!(listed["data"], json!([]));
    for path in [
        format!("/v1/subscriptions/{first}"),
        format!("/v1/subscriptions/{first}/deliveries"),
        format!("/v1/deliveries/{}", delivered[0]),
        format!("/v1/deliveries/{}", delivered[1]),
        "/v1/events/x0".to_owned(),
    ] {
        let (status, answer) = herald.call("GET", &path, Some("acme"), None).await;
        assert_eq!(status, 404, "{path}: {answer}");
    }
    let (status, _) = herald
        .call_with(
            "GET",
            "/portal/api/v1/subscriptions",
            Some(&portal_token),
            &[],
            None,
        )
        .await;
    assert_eq!(status, 401, "the portal session is gone");

    // A task still queued for it is let go: not sent, not recorded.
    let event = herald_core::event::Event {
        id: herald_core::ids::EventId::parse("x9").unwrap(),
        event_type: herald_core::event::EventType::parse("order.shipped").unwrap(),
        occurred_at: chrono::Utc::now(),
        data: serde_json::Map::new(),
        subject: None,
    };
    let task = herald_core::delivery::DeliveryTask::new(
        &herald_core::ids::TenantId::parse("acme").unwrap(),
        &herald_core::ids::SubscriptionId::parse(&first).unwrap(),
        &event,
        chrono::Utc::now(),
    );
    aws_sdk_sqs::Client::new(&herald.sdk)
        .send_message()
        .queue_url(herald.local.provisioned().delivery_queue_url())
        .message_body(task.to_message_body())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        receiver.requests().len(),
        9,
        "nothing sent for the erased tenant"
    );
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/deliveries/{}", task.delivery_id),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 404, "nothing recorded for the erased tenant");

    // The other tenant keeps everything.
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{theirs}"),
            Some("globex"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = herald
        .call("GET", "/v1/events/x0", Some("globex"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/deliveries/{}", delivered[2]),
            Some("globex"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_subscriptions_history_is_erased_and_the_subscription_kept() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (erased, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let (kept, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    for n in 0..3 {
        herald
            .publish(
                "acme",
                json!({"id": format!("h{n}"), "type": "order.shipped", "data": {}}),
            )
            .await;
    }
    for sub in [&erased, &kept] {
        eventually(
            &herald,
            "acme",
            &format!("/v1/subscriptions/{sub}/deliveries?state=delivered"),
            |b| b["data"].as_array().unwrap().len() == 3,
        )
        .await;
    }
    let path = format!("/v1/subscriptions/{erased}/history/erase");
    let (status, _) = herald.call("POST", &path, Some("globex"), None).await;
    assert_eq!(status, 404, "another tenant's subscription");
    let tenant_cursor = {
        let (_, started) = herald
            .call_as_operator("POST", "/v1/tenant/erase", "nobody", None)
            .await;
        started["cursor"].clone()
    };
    if tenant_cursor.is_string() {
        let (status, _) = herald
            .call(
                "POST",
                &path,
                Some("acme"),
                Some(&json!({"cursor": tenant_cursor})),
            )
            .await;
        assert_eq!(
            status, 400,
            "a tenant erasure's cursor does not continue a history's"
        );
    }

    let mut body = None;
    let done = loop {
        let (status, answer) = herald
            .call("POST", &path, Some("acme"), body.as_ref())
            .await;
        assert_eq!(status, 200, "{answer}");
        if answer["done"] == true {
            break answer;
        }
        body = Some(json!({"cursor": answer["cursor"]}));
    };
    assert_eq!(done["erased"]["deliveries"], 3, "{done}");
    assert_eq!(done["erased"]["subscriptions"], 0, "{done}");

    let (_, log) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{erased}/deliveries"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(log["data"], json!([]));
    let (_, feed) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{erased}/feed"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(feed["data"], json!([]));
    let (status, _) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{erased}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 200, "the subscription stays");
    let (_, other) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{kept}/deliveries"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(other["data"].as_array().unwrap().len(), 3);
    let (status, _) = herald
        .call("GET", "/v1/events/h0", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "the events stay");
    herald.shutdown().await;
}

#[tokio::test]
async fn a_delivery_is_found_by_the_number_a_typed_object_body_carries() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let body = json!({"url": receiver.url(), "event_types": ["*"], "format": "typed_object"});
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        herald
            .publish(
                "acme",
                json!({"id": format!("n{n}"), "type": "order.shipped", "data": {"n": n}}),
            )
            .await;
    }
    let posted = receiver.wait_for(3, PATIENCE).await;
    let list_path = format!("/v1/subscriptions/{id}/deliveries");
    eventually(&herald, "acme", &list_path, |b| {
        b["data"].as_array().unwrap().len() == 3
    })
    .await;
    for request in &posted {
        let number = request.json()["id"].as_u64().unwrap();
        let (status, found) = herald
            .call(
                "GET",
                &format!("{list_path}?number={number}"),
                Some("acme"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{found}");
        let data = found["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "{found}");
        assert_eq!(data[0]["id"], request.header("webhook-id"));
    }
    let (_, none) = herald
        .call(
            "GET",
            &format!("{list_path}?number=12345"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(none["data"], json!([]));
    for bad in ["0", "-1", "9007199254740992", "x"] {
        let (status, _) = herald
            .call(
                "GET",
                &format!("{list_path}?number={bad}"),
                Some("acme"),
                None,
            )
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    herald.shutdown().await;
}

/// One tenant flooding the API is held to its requests a second, across the runner's
/// functions, while another tenant's publish in the same moment goes through; what was
/// refused, published again after `Retry-After`, is delivered, each once.
#[tokio::test]
async fn a_tenant_flooding_the_api_is_held_to_its_rate_and_another_is_served() {
    let herald = TestHerald::start(&[("HERALD_MAX_REQUESTS_PER_SECOND", "5")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &receiver.url(), &["*"]).await;
    herald.subscribe("globex", &receiver.url(), &["*"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = std::time::Instant::now();
    let flood = futures::future::join_all((0..20).map(|n| {
        herald.publish(
            "acme",
            json!({"id": format!("a{n}"), "type": "flood", "data": {"n": n}}),
        )
    }));
    let other = herald.publish("globex", json!({"id": "g0", "type": "calm", "data": {}}));
    let (answers, (other_status, other_answer)) = tokio::join!(flood, other);
    let seconds = started.elapsed().as_secs() + 1;
    assert_eq!(other_status, 202, "globex was held back: {other_answer}");
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let refused: Vec<usize> = (0..20).filter(|n| answers[*n].0 == 429).collect();
    assert_eq!(accepted + refused.len(), 20, "{answers:?}");
    assert!(!refused.is_empty(), "nothing was refused: {answers:?}");
    assert!(
        accepted as u64 <= 5 * (seconds + 1),
        "{accepted} accepted within {seconds} s"
    );

    // Published again after Retry-After, each refused event is accepted and delivered.
    for n in refused {
        let event = json!({"id": format!("a{n}"), "type": "flood", "data": {"n": n}});
        let mut tries = 0;
        loop {
            let (status, answer) = herald.publish("acme", event.clone()).await;
            if status == 202 {
                break;
            }
            assert_eq!(status, 429, "{answer}");
            tries += 1;
            assert!(tries < 30, "a{n} never accepted");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let received = receiver.wait_for(21, PATIENCE).await;
    let mut ids: Vec<String> = received
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["data"]["n"].to_string() + body["type"].as_str().unwrap_or("")
        })
        .collect();
    let delivered = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        (delivered, ids.len()),
        (21, 21),
        "each delivered once: {ids:?}"
    );
    herald.shutdown().await;
}
