//! One tenant's slow receivers do not delay another tenant's deliveries (docs/DECISIONS.md,
//! "Slow receivers"), through the local runner with several pollers on each queue.
//!
//! Two deployments side by side on the same moto and the same machine, so both feel the
//! same load from everything else: in one, tenant A's receivers answer after 25 s and A
//! keeps publishing; the other has no tenant A. Tenant B publishes the same events to both
//! at the same moments to receivers answering in 10 ms; B's publish-to-receive p99 where A
//! is busy stays within twice its p99 where A is absent, or that p99 and 5 s, whichever
//! is more: a delivery of B's that waited behind one of A's receivers would wait their
//! 25 s, while the busy side's extra work (A's publishes and deliveries) on a machine
//! running the rest of the suite can cost B a second or two. Measured from 5 s after A's
//! first publish: A's first attempts are cut at `HERALD_SLOW_LANE_AFTER` (2 s here),
//! which is how long a newly slow receiver can hold standard-lane pollers, once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use herald_tests::aws::sdk_config;
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Recorded, Script, TestReceiver};
use serde_json::{Value, json};

const SETTINGS: [(&str, &str); 2] = [
    ("HERALD_DELIVERY_TIMEOUT", "30s"),
    ("HERALD_SLOW_LANE_AFTER", "2s"),
];
const POLLERS: usize = 4;
const B_EVENTS: usize = 60;

/// B's latency per event number: from just before its publish to its first arrival.
fn latencies(requests: &[Recorded], published: &[SystemTime]) -> Vec<Duration> {
    let mut first: HashMap<usize, SystemTime> = HashMap::new();
    for request in requests {
        let n = request.json()["data"]["n"]
            .as_u64()
            .expect("the event's number") as usize;
        let at = first.entry(n).or_insert(request.received);
        *at = (*at).min(request.received);
    }
    let mut latencies: Vec<Duration> = first
        .into_iter()
        .map(|(n, at)| at.duration_since(published[n]).unwrap_or_default())
        .collect();
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_slow_receivers_do_not_delay_another_tenants_deliveries() {
    let busy = Arc::new(TestHerald::start_polling(sdk_config(), &SETTINGS, None, POLLERS).await);
    let quiet = TestHerald::start_polling(sdk_config(), &SETTINGS, None, POLLERS).await;

    // Tenant A, on the busy deployment only: two endpoints answering after 25 s.
    let slow = Script::always(200).with_delay(Duration::from_secs(25));
    let (a1, a2) = (
        TestReceiver::start(slow.clone()).await,
        TestReceiver::start(slow).await,
    );
    let (a1_id, _) = busy.subscribe("tenant-a", &a1.url(), &["order.*"]).await;
    busy.subscribe("tenant-a", &a2.url(), &["order.*"]).await;
    // Tenant B, on both: one endpoint each answering in 10 ms.
    let fast = Script::always(200).with_delay(Duration::from_millis(10));
    let (b_busy, b_quiet) = (
        TestReceiver::start(fast.clone()).await,
        TestReceiver::start(fast).await,
    );
    busy.subscribe("tenant-b", &b_busy.url(), &["order.*"])
        .await;
    quiet
        .subscribe("tenant-b", &b_quiet.url(), &["order.*"])
        .await;

    // A's load: 100 events at once (200 deliveries), then 10 a second throughout.
    let burst: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("a-burst-{i}"), "type": "order.paid", "data": {"n": i}}))
        .collect();
    let (status, answer) = busy.publish("tenant-a", json!({ "events": burst })).await;
    assert_eq!(status, 202, "{answer}");
    let publishing = Arc::new(AtomicBool::new(true));
    let a_publisher = {
        let (busy, publishing) = (Arc::clone(&busy), Arc::clone(&publishing));
        tokio::spawn(async move {
            let mut i = 0;
            while publishing.load(Ordering::Relaxed) {
                let event = json!({"id": format!("a-{i}"), "type": "order.paid", "data": {"n": i}});
                busy.publish("tenant-a", event).await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            i
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;

    // B: 60 events at 5 a second, each to both deployments at the same moment.
    let mut published = Vec::with_capacity(B_EVENTS);
    let start = tokio::time::Instant::now();
    for n in 0..B_EVENTS {
        tokio::time::sleep_until(start + Duration::from_millis(200) * n as u32).await;
        let event = json!({"id": format!("b-{n}"), "type": "order.paid", "data": {"n": n}});
        published.push(SystemTime::now());
        let (to_busy, to_quiet) = tokio::join!(
            busy.publish("tenant-b", event.clone()),
            quiet.publish("tenant-b", event)
        );
        assert_eq!((to_busy.0, to_quiet.0), (202, 202));
    }
    let patience = Duration::from_secs(60);
    let (busy_requests, quiet_requests) = tokio::join!(
        b_busy.wait_for(B_EVENTS, patience),
        b_quiet.wait_for(B_EVENTS, patience)
    );
    let (busy_latencies, quiet_latencies) = (
        latencies(&busy_requests, &published),
        latencies(&quiet_requests, &published),
    );
    assert_eq!(busy_latencies.len(), B_EVENTS, "every B event delivered");
    assert_eq!(quiet_latencies.len(), B_EVENTS, "every B event delivered");
    let busy_p99 = herald_tests::percentile(&busy_latencies, 99.0);
    let quiet_p99 = herald_tests::percentile(&quiet_latencies, 99.0);
    let busy_p50 = herald_tests::percentile(&busy_latencies, 50.0);
    let quiet_p50 = herald_tests::percentile(&quiet_latencies, 50.0);
    println!(
        "tenant B publish-to-receive: p50 {busy_p50:?} / p99 {busy_p99:?} beside tenant A's \
         25 s receivers, p50 {quiet_p50:?} / p99 {quiet_p99:?} without them"
    );
    let allowed = (quiet_p99 * 2).max(quiet_p99 + Duration::from_secs(5));
    assert!(
        busy_p99 <= allowed,
        "B's p99 {busy_p99:?} beside A's slow receivers, {quiet_p99:?} without"
    );

    // Meanwhile A is served on the slow lane: its first deliveries were cut once on the
    // standard lane and delivered there after their receivers' 25 s.
    let delivered = herald_testkit::wait::until(
        "an A delivery delivered on the slow lane",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let path = format!("/v1/subscriptions/{a1_id}/deliveries?state=delivered");
            let (status, page) = busy.call("GET", &path, Some("tenant-a"), None).await;
            assert_eq!(status, 200, "{page}");
            match page["data"].as_array().and_then(|d| d.first()) {
                Some(d) => Ok(d.clone()),
                None => Err(format!("{page}")),
            }
        },
    )
    .await;
    let attempts = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["status"], 200, "{delivered}");
    assert!(
        attempts
            .iter()
            .filter(|a| a["error"] == "E_SLOW_LANE")
            .count()
            <= 1,
        "cut at most once: {delivered}"
    );
    assert!(attempts.len() <= 2, "{delivered}");
    let (_, subscription) = busy
        .call(
            "GET",
            &format!("/v1/subscriptions/{a1_id}"),
            Some("tenant-a"),
            None,
        )
        .await;
    assert_eq!(subscription["status"], "active", "{subscription}");
    assert!(subscription["slow_until"].is_string(), "{subscription}");

    publishing.store(false, Ordering::Relaxed);
    let a_published = a_publisher.await.unwrap();
    assert!(a_published > 100, "A kept publishing: {a_published}");
    quiet.shutdown().await;
    if let Ok(busy) = Arc::try_unwrap(busy) {
        busy.shutdown().await;
    }
}
