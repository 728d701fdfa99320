//! Secrets at rest: through the local runner against moto's DynamoDB and KMS, a
//! subscription's `whsec_` secrets and custom header values are stored sealed, each
//! bound to its subscription, and opened by deliver alone to sign and send.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use herald_aws::dynamo::{DynamoSubscriptionStore, VaultUse};
use herald_aws::seal::Vault;
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{StoreError, SubscriptionStore};
use herald_testkit::signatures::{signature_entries, v1_signature};
use herald_testkit::wait::PATIENCE;
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

const TOKEN: &str = "Bearer tok_live_5a1d0b8c9e";

/// The subscription's item as DynamoDB holds it, every attribute as text.
async fn stored_item(herald: &TestHerald, id: &str) -> String {
    let item = aws_sdk_dynamodb::Client::new(&herald_tests::aws::sdk_config())
        .get_item()
        .table_name(herald.local.provisioned().subscriptions_table())
        .key("tenant", AttributeValue::S("acme".into()))
        .key("id", AttributeValue::S(id.into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("the subscription's item");
    format!("{item:?}")
}

/// The runner's subscriptions table as stored (`raw`: sealed values stay sealed) and as
/// deliver's store reads it (`opening`: sealed values opened with the runner's key).
fn stores(herald: &TestHerald) -> (DynamoSubscriptionStore, DynamoSubscriptionStore) {
    let sdk = herald_tests::aws::sdk_config();
    let table = herald.local.provisioned().subscriptions_table().to_owned();
    let key = herald.local.provisioned().keys["SecretsKey"].clone();
    let raw = DynamoSubscriptionStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
    let opening = DynamoSubscriptionStore::new(aws_sdk_dynamodb::Client::new(&sdk), table)
        .with_vault(Arc::new(Vault::new(&sdk, key)), VaultUse::Open);
    (raw, opening)
}

fn signs_with(request: &Recorded, secret: &str) -> bool {
    signature_entries(request.header("webhook-signature")).contains(&v1_signature(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
    ))
}

#[tokio::test]
async fn secrets_and_header_values_are_stored_sealed_and_opened_only_to_send() {
    // Deliver reads each change at once (no cache of subscriptions read).
    let herald = TestHerald::start(&[("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (status, created) = herald
        .call(
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(&json!({
                "url": receiver.url(),
                "event_types": ["*"],
                "headers": {"Authorization": TOKEN, "X-Region": "eu-1"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    assert!(first.starts_with("whsec_"), "{created}");

    // At rest: neither the secret nor any header value, only sealed text.
    let item = stored_item(&herald, &id).await;
    assert!(!item.contains(&first), "the secret is stored in the clear");
    assert!(!item.contains("tok_live_5a1d0b8c9e"), "{item}");
    assert!(!item.contains("eu-1"), "{item}");
    assert_eq!(item.matches("sealed:v1:").count(), 3, "{item}");

    // Deliver opens them: the request carries the header and verifies with the secret.
    herald
        .publish("acme", json!({"type": "order.shipped", "data": {"n": 1}}))
        .await;
    let got = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert_eq!(got.header("authorization"), TOKEN);
    assert_eq!(got.header("x-region"), "eu-1");
    assert!(signs_with(&got, &first));

    // A rotation seals the new secret beside the old one; a change that keeps a header
    // by its placeholder keeps it sealed as stored; a new value is sealed too.
    let (status, rotated) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/secret/rotate"),
            Some("acme"),
            Some(&json!({"grace_period": "1h"})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    let (status, changed) = herald
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            Some(&json!({"headers": {"Authorization": "********", "X-Region": "us-2"}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        changed["headers"],
        json!({"authorization": "********", "x-region": "********"})
    );
    let item = stored_item(&herald, &id).await;
    for clear in [
        first.as_str(),
        second.as_str(),
        "tok_live_5a1d0b8c9e",
        "us-2",
    ] {
        assert!(!item.contains(clear), "{clear} is stored in the clear");
    }
    assert_eq!(item.matches("sealed:v1:").count(), 4, "{item}");
    herald
        .publish("acme", json!({"type": "order.shipped", "data": {"n": 2}}))
        .await;
    let got = receiver.wait_for(2, PATIENCE).await.remove(1);
    assert_eq!(got.header("authorization"), TOKEN);
    assert_eq!(got.header("x-region"), "us-2");
    assert!(signs_with(&got, &first) && signs_with(&got, &second));

    // Sealed text is Herald's own: a header value that looks like it is refused.
    let (status, refused) = herald
        .call(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            Some(&json!({"headers": {"X-Region": "sealed:v1:abc.def"}})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused.to_string().contains("sealed value"), "{refused}");
    herald.shutdown().await;
}

/// A value sealed for one subscription does not open in another's item; a store without
/// the vault carries sealed values as they are, opening nothing; and deliver's store
/// opens and never seals.
#[tokio::test]
async fn a_sealed_value_opens_only_for_the_subscription_it_was_sealed_for() {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (a, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let (b, _) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let (raw, opening) = stores(&herald);
    let tenant = TenantId::parse("acme").unwrap();
    let (a, b) = (
        SubscriptionId::parse(&a).unwrap(),
        SubscriptionId::parse(&b).unwrap(),
    );

    let stored_a = raw.get(&tenant, &a).await.unwrap().unwrap();
    assert!(stored_a.has_sealed_values());
    let opened_a = opening.get(&tenant, &a).await.unwrap().unwrap();
    assert!(!opened_a.has_sealed_values());
    assert!(opened_a.secrets[0].secret.expose().starts_with("whsec_"));

    // B's item carrying A's sealed secret: written as it is (already sealed), it does not
    // open there.
    let mut stored_b = raw.get(&tenant, &b).await.unwrap().unwrap();
    stored_b.secrets = stored_a.secrets.clone();
    raw.update(&stored_b, stored_b.version).await.unwrap();
    match opening.get(&tenant, &b).await {
        Err(StoreError::Corrupt(why)) => {
            assert!(why.contains("not sealed for this place"), "{why}")
        }
        other => panic!("A's secret opened in B's item: {other:?}"),
    }
    let listed: Value = herald
        .call("GET", &format!("/v1/subscriptions/{a}"), Some("acme"), None)
        .await
        .1;
    assert!(listed.get("secret").is_none(), "{listed}");

    // A subscription stored in the clear (before the deployment had a key): deliver's
    // store reads it as it is, and its writes (the slow mark here) seal nothing, since
    // deliver may not make data keys.
    let mut clear = raw.get(&tenant, &b).await.unwrap().unwrap();
    clear.id = SubscriptionId::parse("sub_01JD5Q8Z6X00000000000000C1").unwrap();
    clear.secrets = opened_a.secrets.clone();
    clear.headers = [("x-region".to_owned(), "eu-1".to_owned())].into();
    raw.create(&clear).await.unwrap();
    let read = opening.get(&tenant, &clear.id).await.unwrap().unwrap();
    assert_eq!(read.secrets, clear.secrets);
    let until = chrono::Utc::now() + chrono::Duration::minutes(10);
    opening.mark_slow(&tenant, &clear.id, until).await.unwrap();
    let after = raw.get(&tenant, &clear.id).await.unwrap().unwrap();
    assert!(after.slow_until.is_some(), "the mark was written");
    assert!(!after.has_sealed_values(), "deliver's write sealed a value");
    assert_eq!(after.secrets, clear.secrets);
    assert_eq!(after.headers, clear.headers);
    herald.shutdown().await;
}

/// A tenant's own signing keys (made by manage on first use) are stored with their
/// private halves sealed, each bound to its tenant and pair: deliver's store opens them,
/// and a set copied under another tenant does not open.
#[tokio::test]
async fn a_tenants_private_signing_keys_are_stored_sealed_and_open_only_for_it() {
    let ed25519 = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
    let herald = TestHerald::start(&[("HERALD_ED25519_SIGNING_KEY", &ed25519)]).await;
    let (status, keys) = herald
        .call("GET", "/v1/signing-keys", Some("acme"), None)
        .await;
    assert_eq!(status, 200, "{keys}");
    let (raw, opening) = stores(&herald);
    let (acme, globex) = (
        TenantId::parse("acme").unwrap(),
        TenantId::parse("globex").unwrap(),
    );

    let stored = raw.signing_keys(&acme).await.unwrap().expect("acme's keys");
    let pair = &stored.keys[0];
    assert_eq!(keys["keys"][0]["kid"], json!(pair.kid));
    assert!(herald_core::webhook::sign::is_sealed(&pair.ed25519_private));
    assert!(herald_core::webhook::sign::is_sealed(&pair.rsa_private));
    assert_eq!(
        keys["ed25519"],
        json!(pair.ed25519_public),
        "public halves in the clear"
    );

    let opened = opening.signing_keys(&acme).await.unwrap().unwrap();
    assert!(opened.keys[0].ed25519_private.starts_with("whsk_"));
    assert!(
        opened.open().is_ok(),
        "deliver's store opens a set that signs"
    );

    // acme's stored set under globex's name: written as it is, it does not open there.
    let mut copied = stored.clone();
    copied.tenant = globex.clone();
    raw.put_signing_keys(&copied, None).await.unwrap();
    match opening.signing_keys(&globex).await {
        Err(StoreError::Corrupt(why)) => {
            assert!(why.contains("not sealed for this place"), "{why}")
        }
        other => panic!("acme's private keys opened as globex's: {other:?}"),
    }
    herald.shutdown().await;
}

/// Subscriptions written before the deployment had a secrets key keep their values in
/// the clear; an operator's `POST /v1/tenant/seal` seals them in place (versions kept),
/// and deliver goes on signing and sending with them. Only the operator may.
#[tokio::test]
async fn an_operator_seals_what_a_tenant_still_holds_in_the_clear() {
    let herald = TestHerald::start(&[("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0")]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    let (id, secret) = herald.subscribe("acme", &receiver.url(), &["*"]).await;
    let (raw, _) = stores(&herald);
    let tenant = TenantId::parse("acme").unwrap();
    let id = SubscriptionId::parse(&id).unwrap();
    // As a deployment without a key wrote it: the secret and a header in the clear.
    let mut clear = raw.get(&tenant, &id).await.unwrap().unwrap();
    clear.secrets[0].secret = herald_core::webhook::sign::WebhookSecret::parse(&secret).unwrap();
    clear.headers = [("authorization".to_owned(), TOKEN.to_owned())].into();
    raw.update(&clear, clear.version).await.unwrap();
    assert!(stored_item(&herald, id.as_str()).await.contains(&secret));

    let (status, _) = herald
        .call("POST", "/v1/tenant/seal", Some("acme"), None)
        .await;
    assert_eq!(status, 403, "a tenant's token may not");
    let (status, answer) = herald
        .call_as_operator("POST", "/v1/tenant/seal", "acme", None)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"done": true, "sealed": 1, "cursor": null}));
    let item = stored_item(&herald, id.as_str()).await;
    assert!(!item.contains(&secret) && !item.contains(TOKEN), "{item}");
    let sealed = raw.get(&tenant, &id).await.unwrap().unwrap();
    assert!(!sealed.has_clear_values());
    assert_eq!(sealed.version, clear.version, "a sealing is not a change");
    // Nothing left: a second sealing seals nothing.
    let (_, again) = herald
        .call_as_operator("POST", "/v1/tenant/seal", "acme", None)
        .await;
    assert_eq!(again["sealed"], 0, "{again}");

    herald
        .publish("acme", json!({"type": "a", "data": {"n": 1}}))
        .await;
    let webhook = receiver.wait_for(1, PATIENCE).await.remove(0);
    assert!(signs_with(&webhook, &secret));
    assert_eq!(webhook.header("authorization"), TOKEN);
    herald.shutdown().await;
}
