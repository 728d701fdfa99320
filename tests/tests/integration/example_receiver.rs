//! The example receiver, as a subscriber would run it, taking real deliveries from Herald:
//! it accepts them, and processes a redelivery of the same webhook only once.

use std::process::Stdio;
use std::time::Duration;

use herald_tests::herald::TestHerald;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn it_accepts_herald_deliveries_and_processes_each_once() {
    let herald = TestHerald::start(&[]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/webhooks");
    let (id, secret) = herald.subscribe("acme", &url, &["*"]).await;

    let mut receiver = tokio::process::Command::new(herald_tests::runner::workspace_binary(
        "herald-example-receiver",
    ))
    .env("WEBHOOK_SECRET", &secret)
    .env("ADDR", format!("127.0.0.1:{port}"))
    .stdout(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    assert!(
        lines
            .next_line()
            .await
            .unwrap()
            .unwrap()
            .starts_with("receiving webhooks")
    );

    herald
        .publish(
            "acme",
            json!({"id": "e-ex", "type": "order.shipped", "data": {"n": 1}}),
        )
        .await;
    let accepted = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        accepted.starts_with("accepted msg_") && accepted.ends_with("order.shipped"),
        "{accepted}"
    );

    // A redelivery reuses the webhook id: acknowledged, not processed again.
    let (_, page) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{id}/deliveries"),
            Some("acme"),
            None,
        )
        .await;
    let delivery = page["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        herald
            .call(
                "POST",
                &format!("/v1/deliveries/{delivery}/retry"),
                Some("acme"),
                None
            )
            .await
            .0,
        202
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, one) = herald
            .call(
                "GET",
                &format!("/v1/deliveries/{delivery}"),
                Some("acme"),
                None,
            )
            .await;
        let attempts = one["attempts"].as_array().unwrap();
        if attempts.len() == 2 {
            assert_eq!(attempts[1]["status"], 200, "a duplicate is acknowledged");
            assert_eq!(attempts[0]["status"], 204);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the redelivery never arrived: {one}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let more = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await;
    assert!(more.is_err(), "processed twice: {more:?}");
    herald.shutdown().await;
}
