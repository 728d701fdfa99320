//! Load with nothing lost: thousands of events fanned out to several subscriptions whose
//! receivers fail a few percent of requests (500, a timeout, a dropped connection). At the
//! end every delivery was answered 200 by its receiver, none is in the dead-letter queue,
//! and duplicates are counted.
//!
//! `make test` runs a small soak; `make soak` the big one (`HERALD_SOAK_EVENTS`, default
//! 2000, and `HERALD_SOAK_SUBSCRIPTIONS`, default 2), printing its figures and writing them
//! to `target/soak.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald_tests::aws::{queue_depth, sdk_config};
use herald_tests::herald::TestHerald;
use herald_tests::percentile;
use herald_tests::receiver::{Chaos, Script, TestReceiver};
use serde_json::{Value, json};

/// Events per publish call: the API's maximum.
const PER_PUBLISH: usize = 100;
const FAILURE_PERCENT: u32 = 3;
/// Deliveries allowed to wait in the queue before the next publish.
const BACKLOG: usize = 100;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soak with deliver taking first attempts as `claim` says (`HERALD_DELIVERY_CLAIM`),
/// handed batches of up to `batch` (`DeliveryBatchSize`: above ten, gathered within the
/// template's batching window and run all at once, as the template deploys them).
async fn soak(events: usize, subscriptions: usize, claim: &str, batch: usize) -> Value {
    let concurrency = batch.max(20).to_string();
    let settings = [
        ("HERALD_DELIVERY_TIMEOUT", "1s"),
        ("HERALD_RETRY_SCHEDULE", "1s,1s,2s,2s,5s,5s"),
        ("HERALD_RETRY_WINDOW", "10m"),
        ("HERALD_DELIVERY_CONCURRENCY", concurrency.as_str()),
        ("HERALD_DELIVERY_CLAIM", claim),
    ];
    let herald = if batch > 10 {
        let poll = herald_local::PollSettings {
            batch_size: Some(batch as i32),
            wait_seconds: 1,
            print_attempts: false,
            ..herald_local::PollSettings::default()
        };
        TestHerald::start_with_poll(sdk_config(), &settings, poll).await
    } else {
        TestHerald::start_with(sdk_config(), &settings, None).await
    };
    let mut receivers = Vec::new();
    for i in 0..subscriptions {
        let receiver = TestReceiver::start(Script::always(200).with_chaos(Chaos {
            seed: i as u64 + 1,
            percent: FAILURE_PERCENT,
            hang: Duration::from_secs(2),
        }))
        .await;
        herald
            .subscribe("acme", &receiver.url(), &["order.*"])
            .await;
        receivers.push(receiver);
    }

    let ids: Vec<String> = (0..events).map(|i| format!("ord_{i}")).collect();
    let started = Instant::now();
    let mut published_at: BTreeMap<String, Instant> = BTreeMap::new();
    for chunk in ids.chunks(PER_PUBLISH) {
        // Paced so the queue holds at most about BACKLOG messages: moto's SQS scans the
        // whole queue on every receive, so a deep queue measures moto, not Herald.
        let published = published_at.len() * subscriptions;
        let pace_deadline = Instant::now() + Duration::from_secs(120);
        while published > BACKLOG
            && receivers.iter().map(|r| r.requests().len()).sum::<usize>() + BACKLOG < published
            && Instant::now() < pace_deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body: Vec<Value> = chunk
            .iter()
            .map(|id| json!({"id": id, "type": "order.paid", "data": {"order": id}}))
            .collect();
        let at = Instant::now();
        // A 503 is retried, as a producer would; the same ids make it idempotent.
        let mut accepted = false;
        for _ in 0..10 {
            let (status, answer) = herald.publish("acme", json!({"events": body})).await;
            if status == 202 {
                accepted = true;
                break;
            }
            assert_eq!(status, 503, "{answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(accepted, "a publish was never accepted");
        for id in chunk {
            published_at.insert(id.clone(), at);
        }
    }
    let published_in = started.elapsed();

    // Wait until every receiver answered 200 for every event.
    let expected: BTreeSet<&String> = ids.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(120 + events as u64 / 10);
    loop {
        let done = receivers.iter().all(|r| {
            let answered: BTreeSet<String> = r
                .requests()
                .iter()
                .filter(|q| q.status == 200)
                .filter_map(|q| q.json()["data"]["order"].as_str().map(str::to_owned))
                .collect();
            answered.len() == expected.len()
        });
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let wall = started.elapsed();

    let mut lost = Vec::new();
    let mut duplicates = 0;
    let mut failed_attempts = 0;
    let mut requests = 0;
    let mut latencies = Vec::new();
    for (index, receiver) in receivers.iter().enumerate() {
        let mut first: BTreeMap<String, Instant> = BTreeMap::new();
        let mut successes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut success_count: BTreeMap<String, usize> = BTreeMap::new();
        for request in receiver.requests() {
            requests += 1;
            let order = request.json()["data"]["order"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            first.entry(order.clone()).or_insert(request.at);
            if request.status == 200 {
                *success_count.entry(order.clone()).or_default() += 1;
                successes
                    .entry(order)
                    .or_default()
                    .insert(request.header("webhook-id").to_owned());
            } else {
                failed_attempts += 1;
            }
        }
        for id in &ids {
            match successes.get(id) {
                None => lost.push(format!("{id} to receiver {index}")),
                Some(webhook_ids) => assert_eq!(
                    webhook_ids.len(),
                    1,
                    "{id} was delivered under two webhook-ids"
                ),
            }
        }
        duplicates += success_count.values().map(|n| n - 1).sum::<usize>();
        for (id, at) in first {
            if let Some(published) = published_at.get(&id) {
                latencies.push(at.saturating_duration_since(*published));
            }
        }
    }
    latencies.sort();

    let dead_letter = herald
        .local
        .provisioned()
        .dead_letter_queue_url()
        .to_owned();
    let depth = queue_depth(&aws_sdk_sqs::Client::new(&herald.sdk), &dead_letter).await;
    let invocations = herald.local.deliver_invocations();
    herald.shutdown().await;

    let deliveries = events * subscriptions;
    let figures = json!({
        "events": events,
        "subscriptions": subscriptions,
        "deliveries": deliveries,
        "receiver_failure_percent": FAILURE_PERCENT,
        "requests": requests,
        "deliver_invocations": invocations,
        "failed_attempts": failed_attempts,
        "lost": lost.len(),
        "duplicates": duplicates,
        "dead_letter_depth": depth,
        "publish_seconds": published_in.as_secs_f64(),
        "wall_seconds": wall.as_secs_f64(),
        "deliveries_per_second": deliveries as f64 / wall.as_secs_f64(),
        "first_attempt_latency_ms_p50": percentile(&latencies, 50.0).as_millis() as u64,
        "first_attempt_latency_ms_p99": percentile(&latencies, 99.0).as_millis() as u64,
    });
    eprintln!("soak: {figures}");
    assert!(
        lost.is_empty(),
        "lost {} deliveries: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(depth, 0, "deliveries in the dead-letter queue");
    assert!(
        failed_attempts > 0,
        "no receiver failed: the soak showed no retry"
    );
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_soak_loses_nothing() {
    soak(150, 3, "lease", 10).await;
}

/// With `DeliveryClaim: none` a first success leaves no record: failing receivers still
/// lose nothing, and every delivery arrives under one webhook-id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_soak_with_no_claim_loses_nothing() {
    soak(150, 3, "none", 10).await;
}

/// The same in batches of up to 50 (`DeliveryBatchSize: 50`), the cheapest deployment the
/// bench prices: a batch's failing records are handed back and its others let go, and
/// nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_soak_in_batches_of_fifty_with_no_claim_loses_nothing() {
    let figures = soak(150, 3, "none", 50).await;
    // Batches above ten were handed over: fewer invocations than a batch of ten a
    // handful of requests would take.
    let (requests, invocations) = (
        figures["requests"].as_u64(),
        figures["deliver_invocations"].as_u64(),
    );
    assert!(invocations.unwrap() * 10 < requests.unwrap(), "{figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the big soak: `make soak`"]
async fn soak_loses_nothing() {
    let figures = soak(
        setting("HERALD_SOAK_EVENTS", 2000),
        setting("HERALD_SOAK_SUBSCRIPTIONS", 2),
        "lease",
        10,
    )
    .await;
    let path = herald_tests::emulator::workspace_root().join("target/soak.json");
    std::fs::write(&path, serde_json::to_string_pretty(&figures).unwrap()).unwrap();
    eprintln!("wrote {}", path.display());
}
