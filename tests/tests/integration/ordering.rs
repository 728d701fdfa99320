//! Strict ordering through the local runner on moto: ordered subscriptions' tasks on the
//! template's FIFO queue, each line held by its own failures and no other's.

use std::time::{Duration, Instant};

use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Chaos, Recorded, Script, TestReceiver};
use serde_json::{Value, json};

/// Each request's event number (`data.n`), in order of arrival, and whether it succeeded.
fn arrivals(requests: &[Recorded]) -> Vec<(u64, bool)> {
    detailed(requests)
        .into_iter()
        .map(|(n, status, _)| (n, status == 200))
        .collect()
}

/// Each request's event number, the status the receiver recorded, and its webhook id.
fn detailed(requests: &[Recorded]) -> Vec<(u64, u16, String)> {
    requests
        .iter()
        .filter_map(|r| {
            let body: Value = serde_json::from_slice(&r.body).ok()?;
            Some((
                body["data"]["n"].as_u64()?,
                r.status,
                r.header("webhook-id").to_owned(),
            ))
        })
        .collect()
}

/// Waits until `receiver` has had a success for each of `count` events.
async fn wait_for_successes(receiver: &TestReceiver, count: usize, patience: Duration) -> Instant {
    let deadline = Instant::now() + patience;
    loop {
        let done = arrivals(&receiver.requests())
            .iter()
            .filter(|(_, ok)| *ok)
            .count();
        if done >= count {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {count} delivered within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The order a line must keep: every request is for the event after the last one that
/// succeeded, or a retry of the one that has not yet; each event succeeds once, all in
/// publish order.
fn assert_in_line(name: &str, arrivals: &[(u64, bool)], count: u64) {
    let mut next = 0;
    for (i, &(n, ok)) in arrivals.iter().enumerate() {
        assert_eq!(
            n, next,
            "{name}: request {i} is for event {n} while event {next} is not yet delivered"
        );
        if ok {
            next += 1;
        }
    }
    assert_eq!(next, count, "{name}: every event delivered once, in order");
}

#[tokio::test]
async fn ordered_lines_keep_publish_order_through_failures_and_hold_only_themselves() {
    const EVENTS: u64 = 300;
    let herald = TestHerald::start(&[("HERALD_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s,1s,1s")]).await;
    // A fifth of its requests fail: a 500, a 2 s hang past its 1 s timeout, or a reset.
    let flaky = TestReceiver::start(Script::always(200).with_chaos(Chaos {
        seed: 7,
        percent: 20,
        hang: Duration::from_secs(2),
    }))
    .await;
    let steady = TestReceiver::start(Script::always(200)).await;
    for (receiver, timeout) in [(&flaky, "1s"), (&steady, "5s")] {
        let body = json!({
            "url": receiver.url(),
            "event_types": ["order.*"],
            "ordering": "subscription",
            "timeout": timeout,
        });
        let (status, created) = herald
            .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["ordering"], "subscription");
    }

    let started = Instant::now();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"id": format!("e-{n:03}"), "type": "order.paid", "data": {"n": n}}))
            .collect();
        let (status, answer) = herald.publish("acme", json!({"events": events})).await;
        assert_eq!(status, 202, "{answer}");
    }
    let steady_done = wait_for_successes(&steady, EVENTS as usize, Duration::from_secs(300)).await;
    let flaky_done = wait_for_successes(&flaky, EVENTS as usize, Duration::from_secs(600)).await;
    // Nothing more arrives: each event once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    herald.shutdown().await;

    let flaky_arrivals = arrivals(&flaky.requests());
    for (i, line) in detailed(&flaky.requests()).iter().enumerate().take(80) {
        eprintln!("{i}: {line:?}");
    }
    assert_in_line("the failing line", &flaky_arrivals, EVENTS);
    assert_in_line("the steady line", &arrivals(&steady.requests()), EVENTS);
    let failures = flaky_arrivals.iter().filter(|(_, ok)| !ok).count();
    assert!(
        failures >= 30,
        "only {failures} failures: the chaos did not bite"
    );
    // The failing line's retries (a second each, at least) held it alone.
    assert!(
        steady_done < flaky_done,
        "the steady line finished after the failing one"
    );
    let rate = |done: Instant| EVENTS as f64 / done.duration_since(started).as_secs_f64();
    println!(
        "ordered lines on moto: steady {:.1} events/s; failing ({failures} failed requests) {:.1} events/s",
        rate(steady_done),
        rate(flaky_done)
    );
}
