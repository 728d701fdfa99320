//! Each seed's wire contract on real deliveries: formats, selections, custom headers, and
//! signatures verified by libraries Herald did not write (`standardwebhooks` for `v1`,
//! `cryptography` for ed25519 and both RSA signatures).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

use herald_testkit::wait::PATIENCE;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs tests/verify/verify.py on a recorded delivery; returns whether it verified, and
/// what it said.
async fn verify(request: &Recorded, secrets: &[&str], keys: Option<&Value>) -> (bool, String) {
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "run the tests with `make test`, which sets up .venv"
    );
    let input = json!({
        "body": base64::engine::general_purpose::STANDARD.encode(&request.body),
        "headers": request.headers,
        "secrets": secrets,
        "keys": keys,
    });
    let mut child = tokio::process::Command::new(python)
        .arg(root().join("tests/verify/verify.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .await
        .unwrap();
    let output = child.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

async fn keyed_herald() -> TestHerald {
    keyed_herald_with(&[]).await.0
}

/// A deployment with both signing keys, deliver reading every change at once, and
/// `extra`; and its (ed25519, RSA PEM) keys.
async fn keyed_herald_with(extra: &[(&str, &str)]) -> (TestHerald, String, String) {
    let ed25519 = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
    let rsa = std::fs::read_to_string(root().join("crates/testkit/testdata/rsa-2048.pem")).unwrap();
    let mut settings = vec![
        ("HERALD_ED25519_SIGNING_KEY", ed25519.as_str()),
        ("HERALD_RSA_SIGNING_KEY", rsa.as_str()),
        // The delivery right after a rotation must carry the new secret (or key), not wait
        // for deliver's kept copy of the subscription (or the tenant's keys) to expire.
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
    ];
    settings.extend_from_slice(extra);
    let herald = TestHerald::start(&settings).await;
    (herald, ed25519, rsa)
}

#[tokio::test]
async fn every_signature_verifies_with_independent_libraries_during_a_rotation_too() {
    let herald = keyed_herald().await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let body = json!({
        "url": receiver.url(), "event_types": ["*"],
        "signatures": {"ed25519": true, "rsa": true},
        "headers": {"X-Api-Key": "k-123", "X-Team": "fulfilment"}
    });
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    let (id, old) = (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    );
    let (status, keys) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200);
    assert!(keys["ed25519"].as_str().unwrap().starts_with("whpk_"));
    assert_eq!(keys["rsa_sha512_header"], "fluent-signature");

    herald
        .publish(
            "acme",
            json!({"type": "order.shipped", "data": {"order_id": "o-1"}}),
        )
        .await;
    let first = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert_eq!(first.header("x-api-key"), "k-123");
    assert_eq!(first.header("x-team"), "fulfilment");
    assert_eq!(first.header("accept"), "*/*");
    let (ok, said) = verify(&first, &[&old], Some(&keys)).await;
    assert!(ok, "{said}");
    assert!(
        said.contains("v1a ed25519 verified") && said.contains("flex.signature verified"),
        "{said}"
    );

    // A tampered body must fail, or the check above proves nothing.
    let mut tampered = first.clone();
    tampered.body = br#"{"forged":true}"#.to_vec();
    assert!(!verify(&tampered, &[&old], None).await.0);
    assert!(!verify(&tampered, &[], Some(&keys)).await.0);

    let rotate = format!("/v1/subscriptions/{id}/secret/rotate");
    let (_, rotated) = herald
        .call(
            "POST",
            &rotate,
            Some("acme"),
            Some(&json!({"grace_period": "1h"})),
        )
        .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    herald
        .publish(
            "acme",
            json!({"type": "order.shipped", "data": {"order_id": "o-2"}}),
        )
        .await;
    let second = receiver.wait_for(2, PATIENCE).await.remove(1);
    let (ok, said) = verify(&second, &[&old, &new], Some(&keys)).await;
    assert!(ok, "both secrets verify during the grace period: {said}");
    herald.shutdown().await;
}

#[tokio::test]
async fn reserved_or_malformed_headers_and_bad_selections_are_refused() {
    let herald = TestHerald::start(&[]).await;
    let cases = [
        (
            json!({"headers": {"Webhook-Id": "x"}}),
            "headers.Webhook-Id",
        ),
        (
            json!({"headers": {"Idempotency-Key": "x"}}),
            "headers.Idempotency-Key",
        ),
        (
            json!({"headers": {"fluent-signature": "x"}}),
            "headers.fluent-signature",
        ),
        (
            json!({"headers": {"X-A": "a\r\nInjected: 1"}}),
            "no CR or LF",
        ),
        (json!({"headers": {"bad name": "x"}}), "headers.bad name"),
        (json!({"selection": "{ id "}), "selection: does not parse"),
        (
            json!({"signatures": {"ed25519": true}}),
            "no ed25519 signing key",
        ),
    ];
    for (extra, why) in cases {
        let mut body = json!({"url": "http://127.0.0.1:9/in", "event_types": ["*"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = herald
            .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
            .await;
        assert_eq!(status, 422, "{extra}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(why),
            "{extra}: {answer}"
        );
    }
    let (_, listed) = herald
        .call("GET", "/v1/subscriptions", Some("acme"), None)
        .await;
    assert_eq!(listed["data"], json!([]));
    herald.shutdown().await;
}

#[tokio::test]
async fn each_format_and_selection_arrives_as_its_provider_sends_it() {
    let herald = TestHerald::start(&[]).await;
    let formats = [
        ("event_data", Some("{ order_id lines { sku } }")),
        ("typed_object", None),
        ("entity_event", Some("{ order_id }")),
        ("standard", None),
    ];
    let mut receivers = Vec::new();
    for (format, selection) in formats {
        let receiver = TestReceiver::start(Script::always(200)).await;
        let mut body = json!({"url": receiver.url(), "event_types": ["order.*"], "format": format});
        if let Some(selection) = selection {
            body["selection"] = json!(selection);
        }
        let (status, created) = herald
            .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["format"], format);
        receivers.push(receiver);
    }
    let event = json!({
        "id": "ord_9.shipped", "type": "order.shipped",
        "data": {"order_id": "ord_9", "retailerId": "7", "lines": [{"sku": "A", "qty": 2}], "total": 40},
        "subject": {"type": "ORDER", "id": "9", "ref": "0_9", "status": "SHIPPED"}
    });
    herald.publish("acme", event).await;
    let bodies: Vec<Value> =
        futures::future::join_all(receivers.iter().map(|r| r.wait_for(1, PATIENCE)))
            .await
            .into_iter()
            .map(|got| got[0].json())
            .collect();

    assert_eq!(
        bodies[0],
        json!({"event": "order.shipped", "data": {"order_id": "ord_9", "lines": [{"sku": "A"}]}})
    );
    let typed = &bodies[1];
    assert_eq!(
        (
            typed["object"].as_str(),
            typed["event_type"].as_str(),
            typed["version"].as_str()
        ),
        (Some("event"), Some("order.shipped"), Some("1.0"))
    );
    let id = typed["id"].as_u64().unwrap();
    assert!(
        id > 0 && id < (1 << 53),
        "numeric and safe in JavaScript: {id}"
    );
    assert_eq!(typed["payload"]["total"], 40);
    let entity = &bodies[2];
    assert_eq!(
        (
            entity["name"].as_str(),
            entity["accountId"].as_str(),
            entity["retailerId"].as_str(),
            entity["entityRef"].as_str(),
            entity["rootEntityType"].as_str()
        ),
        (
            Some("order.shipped"),
            Some("acme"),
            Some("7"),
            Some("0_9"),
            Some("ORDER")
        )
    );
    assert_eq!(
        entity["attributes"],
        json!({"order_id": "ord_9"}),
        "a lightweight webhook"
    );
    assert_eq!(bodies[3]["type"], "order.shipped");
    herald.shutdown().await;
}

#[tokio::test]
async fn only_the_newest_update_of_a_subject_is_sent_after_an_outage() {
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "2s,2s,2s,2s")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    receiver.answer_all_with(Some(503));
    let body = json!({"url": receiver.url(), "event_types": ["order.*"], "supersede": true});
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["supersede"], true);

    for (n, state) in ["PLACED", "PACKED", "SHIPPED"].iter().enumerate() {
        let event = json!({
            "id": format!("ord_5.{n}"), "type": "order.updated",
            "occurred_at": format!("2026-11-22T10:00:0{n}Z"),
            "data": {"status": state},
            "subject": {"type": "ORDER", "id": "5"}
        });
        herald.publish("acme", event).await;
    }
    // Another subject is not affected.
    herald
        .publish("acme", json!({"id": "ord_6.0", "type": "order.updated", "data": {}, "subject": {"type": "ORDER", "id": "6"}}))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.answer_all_with(None);

    let path = format!("/v1/subscriptions/{id}/deliveries");
    let deadline = std::time::Instant::now() + PATIENCE;
    let states = loop {
        let (status, page) = herald.call("GET", &path, Some("acme"), None).await;
        assert_eq!(status, 200, "{page}");
        let states: std::collections::BTreeMap<String, String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["event_id"].as_str().unwrap().to_owned(),
                    d["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let settled =
            states.len() == 4 && states.values().all(|s| s != "pending" && s != "delivering");
        if settled || std::time::Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(states["ord_5.0"], "superseded", "{states:?}");
    assert_eq!(states["ord_5.1"], "superseded", "{states:?}");
    assert_eq!(states["ord_5.2"], "delivered", "{states:?}");
    assert_eq!(states["ord_6.0"], "delivered", "{states:?}");
    let received: Vec<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.json()["data"]["status"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        !received.contains(&"PLACED".to_owned()) && !received.contains(&"PACKED".to_owned()),
        "{received:?}"
    );
    assert!(received.contains(&"SHIPPED".to_owned()), "{received:?}");
    herald.shutdown().await;
}

/// A webhook's `v1a` entry verifies with the ed25519 key `GET /v1/signing-keys` showed.
async fn verifies_v1a(request: &Recorded, keys: &Value) -> bool {
    let keys = json!({"ed25519": keys["ed25519"]});
    let (ok, said) = verify(request, &[], Some(&keys)).await;
    ok && said.contains("v1a ed25519 verified")
}

/// A webhook's RSA headers verify with the RSA key `GET /v1/signing-keys` showed.
async fn verifies_rsa(request: &Recorded, keys: &Value) -> bool {
    let keys = json!({
        "rsa": keys["rsa"],
        "rsa_sha512_header": keys["rsa_sha512_header"],
        "rsa_md5_header": keys["rsa_md5_header"],
    });
    let (ok, said) = verify(request, &[], Some(&keys)).await;
    ok && said.contains("flex.signature verified")
}

/// The keys of one of a tenant's pairs, as the top of `GET /v1/signing-keys` shows them.
fn pair(keys: &Value, index: usize) -> Value {
    json!({
        "ed25519": keys["keys"][index]["ed25519"],
        "rsa": keys["keys"][index]["rsa"],
        "rsa_sha512_header": keys["rsa_sha512_header"],
        "rsa_md5_header": keys["rsa_md5_header"],
    })
}

async fn signed_subscription(herald: &TestHerald, tenant: &str, receiver: &TestReceiver) {
    let body = json!({
        "url": receiver.url(), "event_types": ["*"],
        "signatures": {"ed25519": true, "rsa": true}
    });
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some(tenant), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test]
async fn a_tenants_keys_rotate_with_an_overlap_and_no_deploy() {
    let (herald, _, _) = keyed_herald_with(&[("HERALD_SIGNING_KEY_OVERLAP", "4s")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    signed_subscription(&herald, "acme", &receiver).await;
    let (status, old) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["keys"].as_array().unwrap().len(), 1, "{old}");
    let kid = old["keys"][0]["kid"].clone();
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 1}}))
        .await;
    let before = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert!(verifies_v1a(&before, &old).await && verifies_rsa(&before, &old).await);

    let (status, rotated) = herald
        .call("POST", "/v1/signing-keys/rotate", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let keys = rotated["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{rotated}");
    assert_eq!(keys[1]["kid"], kid, "newest first: {rotated}");
    assert!(keys[1]["retires_at"].is_string(), "{rotated}");
    assert_eq!(
        rotated["rsa"], old["rsa"],
        "the old RSA key is in force: {rotated}"
    );
    let new = pair(&rotated, 0);
    assert_ne!(new["ed25519"], old["ed25519"]);
    assert_ne!(new["rsa"], old["rsa"]);

    // During the overlap: v1a verifies with the old key and with the new, RSA with the old.
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 2}}))
        .await;
    let during = receiver.wait_for(2, PATIENCE).await.remove(1);
    assert!(
        verifies_v1a(&during, &old).await,
        "old v1a during the overlap"
    );
    assert!(
        verifies_v1a(&during, &new).await,
        "new v1a during the overlap"
    );
    assert!(verifies_rsa(&during, &old).await && !verifies_rsa(&during, &new).await);

    // After it: the new pair alone, and the old one is no longer served.
    tokio::time::sleep(Duration::from_secs(5)).await;
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 3}}))
        .await;
    let after = receiver.wait_for(3, PATIENCE).await.remove(2);
    assert!(verifies_v1a(&after, &new).await && verifies_rsa(&after, &new).await);
    assert!(!verifies_v1a(&after, &old).await && !verifies_rsa(&after, &old).await);
    let (_, served) = herald
        .call("GET", "/v1/signing-keys/acme", None, None)
        .await;
    assert_eq!(served["keys"].as_array().unwrap().len(), 1, "{served}");
    assert_eq!(served["rsa"], new["rsa"], "{served}");
    herald.shutdown().await;
}

#[tokio::test]
async fn a_tenant_signed_with_the_deployments_keys_moves_to_its_own_after_the_overlap() {
    let (herald, ed25519, rsa) = keyed_herald_with(&[("HERALD_SIGNING_KEY_OVERLAP", "4s")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    signed_subscription(&herald, "acme", &receiver).await;
    // A subscription from before tenants had keys of their own: its tenant has none.
    aws_sdk_dynamodb::Client::new(&herald_tests::aws::sdk_config())
        .delete_item()
        .table_name(herald.local.provisioned().subscriptions_table())
        .key(
            "tenant",
            aws_sdk_dynamodb::types::AttributeValue::S("#signing-keys#acme".into()),
        )
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("set".into()),
        )
        .send()
        .await
        .unwrap();
    let (status, _) = herald
        .call("GET", "/v1/signing-keys/acme", None, None)
        .await;
    assert_eq!(
        status, 404,
        "no keys of its own, and the public route makes none"
    );
    // What its receivers were told before: the deployment's derived v1a key and RSA key.
    let deployment = herald_core::webhook::keys::SigningKeys::new(
        Some(&ed25519),
        Some(&rsa),
        "fluent-signature",
        "flex.signature",
    )
    .unwrap()
    .public_for(&herald_core::ids::TenantId::parse("acme").unwrap());
    let deployment = serde_json::to_value(deployment).unwrap();
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 1}}))
        .await;
    let legacy = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert!(verifies_v1a(&legacy, &deployment).await && verifies_rsa(&legacy, &deployment).await);

    // Its first own pair, made when it asks: served at once, in force after the overlap.
    let (status, own) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(
        own["rsa"],
        Value::Null,
        "none of its own RSA keys is in force: {own}"
    );
    let own = pair(&own, 0);
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 2}}))
        .await;
    let during = receiver.wait_for(2, PATIENCE).await.remove(1);
    assert!(verifies_v1a(&during, &deployment).await && verifies_v1a(&during, &own).await);
    assert!(verifies_rsa(&during, &deployment).await && !verifies_rsa(&during, &own).await);

    tokio::time::sleep(Duration::from_secs(5)).await;
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 3}}))
        .await;
    let after = receiver.wait_for(3, PATIENCE).await.remove(2);
    assert!(verifies_v1a(&after, &own).await && verifies_rsa(&after, &own).await);
    assert!(!verifies_v1a(&after, &deployment).await && !verifies_rsa(&after, &deployment).await);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_tenants_own_keys_sign_while_the_deployments_key_cannot_be_read() {
    let secret = format!("herald/{}", herald_tests::aws::unique_prefix());
    // The deployment's key is named but not there: Secrets Manager answers "not found".
    let herald = TestHerald::start(&[
        ("HERALD_ED25519_SIGNING_KEY_SECRET", &secret),
        ("HERALD_SIGNING_KEY_REFRESH", "1s"),
    ])
    .await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let body =
        json!({"url": receiver.url(), "event_types": ["*"], "signatures": {"ed25519": true}});
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    // Manage neither reads nor needs the deployment's private key to show the tenant's.
    let (status, keys) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    herald
        .publish("acme", json!({"type": "a", "data": {"n": 1}}))
        .await;
    let webhook = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert!(verifies_v1a(&webhook, &keys).await);
    herald.shutdown().await;
}

#[tokio::test]
async fn a_webhook_signed_for_one_tenant_fails_with_the_keys_another_tenant_is_told_to_trust() {
    let herald = keyed_herald().await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    for tenant in ["acme", "globex"] {
        signed_subscription(&herald, tenant, &receiver).await;
    }
    // acme publishes a body of its choosing to its own endpoint…
    herald
        .publish(
            "acme",
            json!({"type": "order.refunded", "data": {"amount": 1000}}),
        )
        .await;
    let signed_for_acme = receiver.wait_for(1, PATIENCE).await.remove(0);

    // …and replays the signed request to globex's receiver, which checks it with the
    // keys globex is told to trust: with its token, and on the public route without one.
    let (status, acme_keys) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200);
    let (status, globex_keys) = herald
        .call("GET", "/v1/signing-keys", Some("globex"), None)
        .await;
    assert_eq!(status, 200);
    let (status, public_globex) = herald
        .call("GET", "/v1/signing-keys/globex", None, None)
        .await;
    assert_eq!(status, 200, "{public_globex}");
    assert_eq!(
        public_globex, globex_keys,
        "the public route shows the same keys"
    );
    assert_ne!(acme_keys["ed25519"], globex_keys["ed25519"]);

    assert!(
        verifies_v1a(&signed_for_acme, &acme_keys).await,
        "acme's own check passes"
    );
    assert!(
        !verifies_v1a(&signed_for_acme, &globex_keys).await,
        "globex's check refuses acme's request"
    );
    // The same for seed 002's RSA headers: each tenant's RSA key is its own.
    assert_ne!(acme_keys["rsa"], globex_keys["rsa"]);
    assert!(verifies_rsa(&signed_for_acme, &acme_keys).await);
    assert!(
        !verifies_rsa(&signed_for_acme, &globex_keys).await,
        "globex's RSA check refuses acme's request"
    );
    let (status, _) = herald
        .call("GET", "/v1/signing-keys/not%20a%20tenant", None, None)
        .await;
    assert_eq!(status, 404);
    herald.shutdown().await;
}
