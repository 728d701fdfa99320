//! What Herald logs during a full run (subscribe, publish, deliver with retries, rotate,
//! redeliver) carries ids and outcomes, never a secret, a signature or a body.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_no_secret_signature_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    // The most Herald can be asked to log: trace, through its own filter.
    use tracing_subscriber::util::SubscriberInitExt;
    herald_aws::lambda::telemetry::json_subscriber("trace", move || writer.clone()).init();

    let ed25519 = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
    let herald = TestHerald::start(&[("HERALD_ED25519_SIGNING_KEY", &ed25519)]).await;
    let receiver = TestReceiver::start(Script::sequence([500, 200])).await;
    let body = json!({"url": receiver.url(), "event_types": ["*"], "signatures": {"ed25519": true}, "headers": {"X-Api-Key": "hdr-7c1e"}});
    let (_, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let marker = "body-marker-5d0b";
    herald
        .publish(
            "acme",
            json!({"type": "order.shipped", "data": {"note": marker}}),
        )
        .await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    let (rotate_status, rotated) = herald
        .call(
            "POST",
            &format!("/v1/subscriptions/{id}/secret/rotate"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(rotate_status, 200, "{rotated}");
    herald
        .call(
            "POST",
            "/v1/events",
            Some("acme"),
            Some(&json!({"type": "a", "data": "not an object"})),
        )
        .await;
    herald.shutdown().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("record processed") && logs.contains(&id),
        "the run was logged: {logs}"
    );
    let signatures: Vec<&str> = got
        .iter()
        .flat_map(|r| r.header("webhook-signature").split(' '))
        .collect();
    let forbidden = [
        secret.as_str(),
        rotated["secret"].as_str().unwrap(),
        ed25519.as_str(),
        marker,
        "hdr-7c1e",
    ];
    for needle in forbidden
        .iter()
        .copied()
        .chain(signatures.iter().map(|s| s.split(',').nth(1).unwrap()))
    {
        if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
            panic!("the logs show `{needle}`: {}", &line[..line.len().min(400)]);
        }
    }
}
