//! The local runner killed with SIGKILL in the middle of a load and started again: every
//! delivery still arrives, and a delivery sent twice carries the same webhook-id.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use herald_tests::aws::{moto_url, queue_depth, sdk_config, unique_prefix};
use herald_tests::free_port;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const EVENTS: usize = 240;

fn start_runner(prefix: &str, port: u16) -> Child {
    Command::new(herald_tests::runner::workspace_binary("herald-local"))
        .env("AWS_ENDPOINT_URL", moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("HERALD_LOCAL_PREFIX", prefix)
        .env("HERALD_LOCAL_ADDR", format!("127.0.0.1:{port}"))
        // A batch held by the killed runner comes back after 3 s, not the queue's 360 s.
        .env("HERALD_LOCAL_VISIBILITY_TIMEOUT", "3")
        // Claims lapse 32 s after they are taken (delivery timeout + 30 s).
        .env("HERALD_DELIVERY_TIMEOUT", "2s")
        .env("HERALD_RETRY_SCHEDULE", "1s,1s,2s")
        .env("HERALD_RETRY_WINDOW", "5m")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting herald-local")
}

async fn call(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("http://127.0.0.1:{port}{path}"),
        )
        .bearer_auth("acme")
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("calling the local runner");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn wait_until_serving(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/v1/subscriptions"))
            .bearer_auth("acme")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the runner did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deliveries of the subscription recorded `delivered`, read through the attempt log.
async fn delivered_count(port: u16, subscription: &str) -> usize {
    let mut count = 0;
    let mut cursor = String::new();
    loop {
        let path = format!(
            "/v1/subscriptions/{subscription}/deliveries?state=delivered&limit=100{cursor}"
        );
        let (status, page) = call(port, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        count += page["data"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return count,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_load_loses_nothing_when_started_again() {
    // Slow answers keep deliveries in flight when the kill comes.
    let receiver =
        TestReceiver::start(Script::always(200).with_delay(Duration::from_secs(1))).await;
    let prefix = unique_prefix();
    let port = free_port();
    let mut runner = start_runner(&prefix, port);
    wait_until_serving(port).await;

    let (status, subscription) = call(
        port,
        "POST",
        "/v1/subscriptions",
        Some(json!({"url": receiver.url(), "event_types": ["order.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{subscription}");

    let expected: BTreeSet<String> = (0..EVENTS).map(|i| format!("ord_{i}.paid")).collect();
    let ids: Vec<&String> = expected.iter().collect();
    for chunk in ids.chunks(60) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"id": id, "type": "order.paid", "data": {"order": id}}))
            .collect();
        let (status, answer) =
            call(port, "POST", "/v1/events", Some(json!({"events": events}))).await;
        assert_eq!(status, 202, "{answer}");
    }

    // Kill it while a part is delivered and the rest is queued or in flight.
    let got = receiver
        .wait_for(EVENTS / 4, Duration::from_secs(120))
        .await;
    assert!(
        got.len() >= EVENTS / 4,
        "only {} arrived before the kill",
        got.len()
    );
    runner.start_kill().unwrap();
    let at_kill = receiver.requests().len();
    runner.wait().await.unwrap();
    assert!(
        at_kill < EVENTS,
        "everything arrived before the kill; the test would show nothing"
    );

    let mut runner = start_runner(&prefix, port);
    wait_until_serving(port).await;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let requests = receiver.requests();
        let events: BTreeSet<String> = requests
            .iter()
            .map(|r| {
                r.json()["data"]["order"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        if events == expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Herald itself records every delivery delivered: what was in flight at the kill is
    // redelivered once its claim's lease lapses, nothing stays pending.
    let subscription_id = subscription["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let delivered = delivered_count(port, subscription_id).await;
        if delivered == EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {EVENTS} deliveries recorded delivered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let arrived = receiver.requests();

    // Every event arrived; every copy of one carries the same webhook-id.
    let mut by_event: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in &arrived {
        let order = request.json()["data"]["order"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by_event
            .entry(order)
            .or_default()
            .insert(request.header("webhook-id").to_owned());
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !by_event.contains_key(*e))
        .collect();
    assert!(missing.is_empty(), "lost after the crash: {missing:?}");
    assert!(
        by_event.values().all(|ids| ids.len() == 1),
        "an event arrived under two webhook-ids"
    );
    let duplicates = arrived.len() - expected.len();
    eprintln!(
        "crash: {EVENTS} events, {at_kill} requests before the kill, {} in all, {duplicates} duplicates (same webhook-id)",
        arrived.len()
    );

    // Nothing was given up on.
    let sqs = aws_sdk_sqs::Client::new(&sdk_config());
    let dead_letter = sqs
        .get_queue_url()
        .queue_name(format!("{prefix}-DeadLetterQueue"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        queue_depth(&sqs, dead_letter.queue_url().unwrap()).await,
        0,
        "deliveries in the dead-letter queue"
    );
    runner.start_kill().unwrap();
}
