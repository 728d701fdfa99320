//! AWS requests and DynamoDB capacity per delivered webhook, counted on a real run of the
//! local runner on moto through a recording proxy, priced with `bench/prices.json`; and
//! the same run's end-to-end throughput and latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_tests::aws::{moto_url, sdk_config_for};
use herald_tests::aws_proxy::{AwsCall, RecordingProxy};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

use crate::Table;

const BATCHED_EVENTS: usize = 500;
const SINGLE_EVENTS: usize = 100;

/// Events an ingest call records at once (`WRITE_CONCURRENCY` in functions/ingest) and
/// SendMessageBatch calls it makes at once (`SEND_CONCURRENCY` in shared/src/sqs.rs).
const INGEST_WRITE_CONCURRENCY: f64 = 16.0;
const INGEST_SEND_CONCURRENCY: f64 = 10.0;

/// Capacity units of one call, by DynamoDB's rounding: writes per started KiB, reads per
/// started 4 KiB (half for eventually consistent reads). No table has a secondary index
/// (tests/tests/adapters/provisioning.rs checks), so a write is written once.
fn capacity(call: &AwsCall) -> (f64, f64) {
    let bytes = call.item_bytes.unwrap_or(0).max(1) as f64;
    let action = call.action.trim_start_matches("dynamodb:");
    match action {
        "PutItem" | "UpdateItem" | "DeleteItem" => ((bytes / 1024.0).ceil(), 0.0),
        "GetItem" | "Query" | "Scan" => {
            let units = (bytes / 4096.0).ceil().max(1.0);
            (0.0, if call.consistent { units } else { units / 2.0 })
        }
        _ => (0.0, 0.0),
    }
}

struct Run {
    deliveries: usize,
    publishes: usize,
    calls: Vec<AwsCall>,
    wall: Duration,
    latencies: Vec<Duration>,
}

async fn run_once(batched: bool) -> Run {
    let proxy = RecordingProxy::start_measuring(moto_url()).await;
    let herald = TestHerald::start_with(sdk_config_for(&proxy.url()), &[], None).await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    let before = proxy.calls().len();

    let events = if batched {
        BATCHED_EVENTS
    } else {
        SINGLE_EVENTS
    };
    let ids: Vec<String> = (0..events).map(|i| format!("ord_{i}")).collect();
    let mut published_at = BTreeMap::new();
    let started = Instant::now();
    let per_call = if batched { 100 } else { 1 };
    let mut publishes = 0;
    for chunk in ids.chunks(per_call) {
        let body: Vec<Value> = chunk
            .iter()
            .map(
                |id| json!({"id": id, "type": "order.paid", "data": {"order": id, "amount": 1250}}),
            )
            .collect();
        let at = Instant::now();
        let (status, answer) = herald.publish("acme", json!({"events": body})).await;
        assert_eq!(status, 202, "{answer}");
        publishes += 1;
        for id in chunk {
            published_at.insert(id.clone(), at);
        }
    }
    let got = receiver.wait_for(events, Duration::from_secs(300)).await;
    assert_eq!(got.len(), events, "not every event arrived");
    let wall = started.elapsed();
    // Let the last batches be deleted from the queue before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = proxy.calls()[before..].to_vec();
    let mut latencies: Vec<Duration> = got
        .iter()
        .filter_map(|r| {
            let order = r.json()["data"]["order"].as_str()?.to_owned();
            Some(r.at.saturating_duration_since(*published_at.get(&order)?))
        })
        .collect();
    latencies.sort();
    herald.shutdown().await;
    Run {
        deliveries: events,
        publishes,
        calls,
        wall,
        latencies,
    }
}

fn price(prices: &Value, key: &str) -> f64 {
    prices["prices"][key]["usd"]
        .as_f64()
        .unwrap_or_else(|| panic!("bench/prices.json has no {key}"))
}

fn analyse(table: &mut Table, name: &str, run: &Run, prices: &Value, batch_of_10_ms: f64) -> Value {
    let per = |n: f64| n / run.deliveries as f64;
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    let (mut wru, mut rru) = (0.0, 0.0);
    for call in &run.calls {
        *by_action.entry(call.action.clone()).or_default() += 1;
        let (w, r) = capacity(call);
        wru += w;
        rru += r;
    }
    let sqs_requests: usize = by_action
        .iter()
        .filter(|(a, _)| a.starts_with("sqs:"))
        .map(|(_, n)| n)
        .sum();
    let dynamodb_requests: usize = by_action
        .iter()
        .filter(|(a, _)| a.starts_with("dynamodb:"))
        .map(|(_, n)| n)
        .sum();
    // Lambda: one ingest invocation per publish call; one deliver invocation per batch the
    // event source hands over, which the runner deletes with one DeleteMessageBatch.
    let deliver_invocations = by_action
        .get("sqs:DeleteMessageBatch")
        .copied()
        .unwrap_or(0);
    let invocations = run.publishes + deliver_invocations;
    // Billed durations, built from measured figures and the round trips in prices.json.
    let assumed = &prices["assumptions"];
    let dynamodb_ms = assumed["dynamodb_round_trip_ms"].as_f64().unwrap();
    let sqs_ms = assumed["sqs_round_trip_ms"].as_f64().unwrap();
    let events_per_call = run.deliveries as f64 / run.publishes as f64;
    let ingest_ms = dynamodb_ms * (1.0 + (events_per_call / INGEST_WRITE_CONCURRENCY).ceil())
        + sqs_ms * (events_per_call / 10.0 / INGEST_SEND_CONCURRENCY).ceil();
    let deliver_ms = batch_of_10_ms + 3.0 * dynamodb_ms;
    let gb_seconds = run.publishes as f64 * ingest_ms / 1000.0 * 0.25
        + deliver_invocations as f64 * deliver_ms / 1000.0 * 0.5;
    let million = 1e6;
    let lambda = per(invocations as f64) * million * price(prices, "lambda_request")
        + per(gb_seconds) * million * price(prices, "lambda_arm64_gb_second");
    let api = per(run.publishes as f64) * million * price(prices, "http_api_request");
    let sqs = per(sqs_requests as f64) * million * price(prices, "sqs_request");
    let on_demand = per(wru) * million * price(prices, "dynamodb_write_request_unit")
        + per(rru) * million * price(prices, "dynamodb_read_request_unit");
    // Provisioned: a unit per second for an hour, paid at 70% utilisation.
    let hours_per_unit = 1.0 / 3600.0 / 0.7;
    let provisioned = per(wru) * million * hours_per_unit * price(prices, "dynamodb_wcu_hour")
        + per(rru) * million * hours_per_unit * price(prices, "dynamodb_rcu_hour");
    let others = lambda + api + sqs;
    let total_on_demand = others + on_demand;
    let total_provisioned = others + provisioned;

    table.row(
        format!("{name}: AWS requests per delivery"),
        format!("{:.2}", per((sqs_requests + dynamodb_requests) as f64)),
        format!(
            "DynamoDB {:.2}, SQS {:.2}; {}",
            per(dynamodb_requests as f64),
            per(sqs_requests as f64),
            by_action
                .iter()
                .map(|(a, n)| format!("{a} {:.2}", per(*n as f64)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    table.row(
        format!("{name}: DynamoDB capacity per delivery"),
        format!("{:.2} WRU", per(wru)),
        format!("{:.2} RRU (by item size; no secondary index)", per(rru)),
    );
    table.row(
        format!("{name}: $ per million, on-demand"),
        format!("{total_on_demand:.2}"),
        format!(
            "DynamoDB {on_demand:.2}, SQS {sqs:.2}, Lambda {lambda:.2} (ingest {ingest_ms:.0} ms a call, deliver {deliver_ms:.0} ms a batch), API {api:.2} (target ≤ 2.20 batched)"
        ),
    );
    table.row(
        format!("{name}: $ per million, provisioned 70%"),
        format!("{total_provisioned:.2}"),
        format!("DynamoDB {provisioned:.2} + the same others (target ≤ 1.00 batched)"),
    );
    let p50 = crate::percentile(&run.latencies, 50.0);
    let p99 = crate::percentile(&run.latencies, 99.0);
    table.row(
        format!("{name}: end to end on moto"),
        format!(
            "{:.0} events/s",
            run.deliveries as f64 / run.wall.as_secs_f64()
        ),
        format!(
            "publish to receive p50 {:.0} ms, p99 {:.0} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        ),
    );
    json!({
        "deliveries": run.deliveries,
        "publish_calls": run.publishes,
        "requests_by_action": by_action,
        "requests_per_delivery": per((sqs_requests + dynamodb_requests) as f64),
        "wru_per_delivery": per(wru),
        "rru_per_delivery": per(rru),
        "lambda_ms_assumed": {"ingest_per_call": ingest_ms, "deliver_per_batch": deliver_ms},
        "usd_per_million_on_demand": {
            "total": total_on_demand, "dynamodb": on_demand, "sqs": sqs, "lambda": lambda, "api_gateway": api,
        },
        "usd_per_million_provisioned_70": {
            "total": total_provisioned, "dynamodb": provisioned, "sqs": sqs, "lambda": lambda, "api_gateway": api,
        },
        "events_per_second": run.deliveries as f64 / run.wall.as_secs_f64(),
        "latency_ms_p50": p50.as_secs_f64() * 1e3,
        "latency_ms_p99": p99.as_secs_f64() * 1e3,
    })
}

pub fn run(table: &mut Table, before: &serde_json::Map<String, Value>) -> Value {
    // The deliver handler's measured wall time for a batch of 10 (the template's batch
    // size) on the runtime of the template's 512 MB (one thread).
    let batch_of_10_ms = before["deliver_handler"]["batches"]
        .as_array()
        .and_then(|batches| {
            batches
                .iter()
                .find(|b| b["batch"] == 10 && b["runtime"] == "current_thread")
        })
        .and_then(|b| b["wall_ms"].as_f64())
        .expect("the deliver handler section runs first");
    let path = herald_tests::emulator::workspace_root().join("bench/prices.json");
    let prices: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let batched = run_once(true).await;
        let single = run_once(false).await;
        json!({
            "prices_as_of": prices["as_of"],
            "batched_publishing": analyse(table, "batched (100 per publish)", &batched, &prices, batch_of_10_ms),
            "single_publishing": analyse(table, "single (1 per publish)", &single, &prices, batch_of_10_ms),
        })
    })
}
