//! Delivery under the subscriber's control, through the local runner on moto as the
//! template deploys it: how fast one ordered line goes, and how close a rate-limited
//! subscription keeps to its limit. moto is the bottleneck here (one Python process for
//! SQS and DynamoDB), so both are floors, not what Lambda reaches.

use std::time::{Duration, Instant};

use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

use crate::Table;

/// Events through the ordered line.
const ORDERED_EVENTS: u64 = 200;
/// Events to the rate-limited subscription, and its limit.
const LIMITED_EVENTS: u64 = 100;
const LIMIT: u64 = 5;

async fn subscribe(herald: &TestHerald, receiver: &TestReceiver, extra: Value) {
    let mut body = json!({"url": receiver.url(), "event_types": ["order.*"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
}

async fn publish(herald: &TestHerald, count: u64) -> Instant {
    let started = Instant::now();
    let ids: Vec<u64> = (0..count).collect();
    for chunk in ids.chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"id": format!("e-{n:04}"), "type": "order.paid", "data": {"n": n}}))
            .collect();
        let (status, answer) = herald.publish("acme", json!({"events": events})).await;
        assert_eq!(status, 202, "{answer}");
    }
    started
}

/// The event numbers the receiver got, in order of arrival, with when each arrived.
fn numbers(receiver: &TestReceiver) -> Vec<(u64, Instant)> {
    receiver
        .requests()
        .iter()
        .filter_map(|r| Some((r.json()["data"]["n"].as_u64()?, r.at)))
        .collect()
}

async fn ordered_line() -> (f64, f64) {
    let herald = TestHerald::start(&[]).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscribe(&herald, &receiver, json!({"ordering": "subscription"})).await;
    let started = publish(&herald, ORDERED_EVENTS).await;
    let got = receiver
        .wait_for(ORDERED_EVENTS as usize, Duration::from_secs(600))
        .await;
    herald.shutdown().await;
    let arrived = numbers(&receiver);
    let order: Vec<u64> = arrived.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        order,
        (0..ORDERED_EVENTS).collect::<Vec<_>>(),
        "the line kept publish order, each once"
    );
    let first = got.first().map(|r| r.at).unwrap_or(started);
    let last = got.last().map(|r| r.at).unwrap_or(started);
    let rate = (ORDERED_EVENTS - 1) as f64 / last.duration_since(first).as_secs_f64();
    let overall = ORDERED_EVENTS as f64 / last.duration_since(started).as_secs_f64();
    (rate, overall)
}

async fn rate_limited() -> (f64, usize) {
    // Four pollers, as several deliver containers would take the burst at once.
    let herald = TestHerald::start_polling(herald_tests::aws::sdk_config(), &[], Some(30), 4).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    subscribe(&herald, &receiver, json!({"rate_limit": LIMIT})).await;
    publish(&herald, LIMITED_EVENTS).await;
    receiver
        .wait_for(LIMITED_EVENTS as usize, Duration::from_secs(600))
        .await;
    herald.shutdown().await;
    let arrived = numbers(&receiver);
    let mut distinct: Vec<u64> = arrived.iter().map(|(n, _)| *n).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len() as u64, LIMITED_EVENTS, "nothing lost");
    let (first, last) = (arrived[0].1, arrived[arrived.len() - 1].1);
    let rate = (arrived.len() - 1) as f64 / last.duration_since(first).as_secs_f64();
    // The most that landed within any one second on the receiver's clock.
    let most_in_a_second = arrived
        .iter()
        .map(|(_, at)| {
            arrived
                .iter()
                .filter(|(_, other)| {
                    *other >= *at && other.duration_since(*at) < Duration::from_secs(1)
                })
                .count()
        })
        .max()
        .unwrap_or(0);
    (rate, most_in_a_second)
}

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (line_rate, line_overall) = ordered_line().await;
        table.row(
            "one ordered line, steady receiver, on moto",
            format!("{line_rate:.1} events/s"),
            format!(
                "{ORDERED_EVENTS} events in publish order, one at a time (the ordered event source's batch of 1); {line_overall:.1}/s from the first publish; moto's ceiling, not Lambda's"
            ),
        );
        let (limited_rate, most) = rate_limited().await;
        let off = (limited_rate / LIMIT as f64 - 1.0) * 100.0;
        table.row(
            format!("rate limit {LIMIT}/s, {LIMITED_EVENTS} events, four pollers"),
            format!("{limited_rate:.2}/s"),
            format!(
                "{off:+.1}% of the limit over the run (target ±10%); at most {most} within one second on the receiver's clock"
            ),
        );
        json!({
            "ordered_line_events_per_second": line_rate,
            "ordered_line_from_publish_per_second": line_overall,
            "rate_limit": LIMIT,
            "rate_limited_events_per_second": limited_rate,
            "rate_limited_off_percent": off,
            "rate_limited_most_in_one_second": most,
        })
    })
}
