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
use crate::logs::{self, Logged};

const BATCHED_EVENTS: usize = 500;
const SINGLE_EVENTS: usize = 100;
/// Events a batched publish call carries.
const BATCHED_PER_CALL: usize = 100;

/// Events an ingest call records at once (`WRITE_CONCURRENCY` in functions/ingest) and
/// SendMessageBatch calls it makes at once (`SEND_CONCURRENCY` in crates/aws/src/sqs.rs).
const INGEST_WRITE_CONCURRENCY: f64 = 16.0;
const INGEST_SEND_CONCURRENCY: f64 = 10.0;

/// Capacity units of one call, by DynamoDB's rounding: writes per started KiB, reads per
/// started 4 KiB (half for eventually consistent reads). No table has a secondary index
/// (tests/tests/integration/adapters/provisioning.rs checks), so a write is written once.
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
    /// What Herald's functions logged during the run, at `info` as deployed.
    logged: Logged,
    wall: Duration,
    latencies: Vec<Duration>,
}

async fn run_once(batched: bool) -> Run {
    let proxy = RecordingProxy::start_measuring(moto_url()).await;
    // Each tenant's API requests counted, as the template deploys them
    // (`TenantRequestsPerSecond`): a limit this run never reaches, so every request is
    // counted and none refused.
    let herald = TestHerald::start_with(
        sdk_config_for(&proxy.url()),
        &[("HERALD_MAX_REQUESTS_PER_SECOND", "100000")],
        None,
    )
    .await;
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald
        .subscribe("acme", &receiver.url(), &["order.*"])
        .await;
    let before = proxy.calls().len();
    let logged_before = logs::logged();

    let events = if batched {
        BATCHED_EVENTS
    } else {
        SINGLE_EVENTS
    };
    let ids: Vec<String> = (0..events).map(|i| format!("ord_{i}")).collect();
    let mut published_at = BTreeMap::new();
    let started = Instant::now();
    let per_call = if batched { BATCHED_PER_CALL } else { 1 };
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
    let logged = logs::logged() - logged_before;
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
        logged,
        wall,
        latencies,
    }
}

fn price(prices: &Value, key: &str) -> f64 {
    prices["prices"][key]["usd"]
        .as_f64()
        .unwrap_or_else(|| panic!("bench/prices.json has no {key}"))
}

fn assumption(prices: &Value, key: &str) -> f64 {
    prices["assumptions"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("bench/prices.json assumes no {key}"))
}

/// The memory at which Lambda gives a function one whole vCPU; below it, a share.
pub(crate) const ONE_VCPU_MB: f64 = 1769.0;

/// Billed milliseconds of an invocation that waits `wait_ms` and computes for `cpu_ms`
/// on a whole core, at `memory_mb`: below one vCPU Lambda gives the function a share of
/// a core in proportion to its memory, so its computing takes that much longer. The CPU
/// is counted as if it never overlapped the waiting, which rounds up.
pub(crate) fn billed_ms(wait_ms: f64, cpu_ms: f64, memory_mb: f64) -> f64 {
    wait_ms + cpu_ms * (ONE_VCPU_MB / memory_mb).max(1.0)
}

/// Bytes CloudWatch Logs bills for `lines` log events of `bytes` bytes in all: each event
/// counts its message and a fixed overhead.
fn log_bytes(bytes: f64, lines: f64, prices: &Value) -> f64 {
    bytes + lines * assumption(prices, "cloudwatch_log_event_overhead_bytes")
}

/// Lambda's own log events for one invocation (`platform.start` and `platform.report`
/// at the default system log level), as CloudWatch Logs bills them.
fn platform_log_bytes_per_invocation(prices: &Value) -> f64 {
    let lines = prices["assumptions"]["lambda_platform_log_lines"]
        .as_array()
        .expect("bench/prices.json gives the platform's log lines");
    let bytes: usize = lines.iter().filter_map(Value::as_str).map(str::len).sum();
    log_bytes(bytes as f64, lines.len() as f64, prices)
}

/// What the functions cost apart from their round trips: the memory each is deployed
/// with, and the CPU (on a whole core) of a deliver batch of 10 and of an ingest call.
struct Functions {
    deliver_memory_mb: f64,
    ingest_memory_mb: f64,
    /// Wall and CPU time of the deliver handler's batch of 10 to the 50 ms receiver.
    deliver_batch_of_10_ms: f64,
    deliver_batch_of_10_cpu_ms: f64,
    /// CPU of an ingest call, by the events it publishes.
    ingest_call_cpu_ms: BTreeMap<usize, f64>,
}

fn analyse(
    table: &mut Table,
    name: &str,
    run: &Run,
    prices: &Value,
    functions: &Functions,
) -> Value {
    let per = |n: f64| n / run.deliveries as f64;
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    let (mut wru, mut rru) = (0.0, 0.0);
    for call in &run.calls {
        *by_action.entry(call.action.clone()).or_default() += 1;
        let (w, r) = capacity(call);
        wru += w;
        rru += r;
    }
    let count = |action: &str| by_action.get(action).copied().unwrap_or(0) as f64;
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
    let deliver_invocations = count("sqs:DeleteMessageBatch");
    let invocations = run.publishes as f64 + deliver_invocations;
    // Billed durations: the measured CPU, at the share of a core each function's memory
    // buys, and the round trips stated in prices.json.
    let dynamodb_ms = assumption(prices, "dynamodb_round_trip_ms");
    let sqs_ms = assumption(prices, "sqs_round_trip_ms");
    let events_per_call = run.deliveries as f64 / run.publishes as f64;
    let ingest_cpu_ms = functions
        .ingest_call_cpu_ms
        .get(&(events_per_call.round() as usize))
        .copied()
        .expect("the ingest call of this size was measured");
    let ingest_ms = billed_ms(
        dynamodb_ms * (1.0 + (events_per_call / INGEST_WRITE_CONCURRENCY).ceil())
            + sqs_ms * (events_per_call / 10.0 / INGEST_SEND_CONCURRENCY).ceil(),
        ingest_cpu_ms,
        functions.ingest_memory_mb,
    );
    // Each record claims, then records its outcome, one round trip each; the batch reads
    // the subscriptions its container has not kept (the GetItems counted, per batch).
    let subscription_reads = count("dynamodb:GetItem") / deliver_invocations.max(1.0);
    let deliver_ms = billed_ms(
        functions.deliver_batch_of_10_ms - functions.deliver_batch_of_10_cpu_ms
            + dynamodb_ms * (2.0 + subscription_reads),
        functions.deliver_batch_of_10_cpu_ms,
        functions.deliver_memory_mb,
    );
    let gb_seconds = run.publishes as f64 * ingest_ms / 1000.0 * functions.ingest_memory_mb
        / 1024.0
        + deliver_invocations * deliver_ms / 1000.0 * functions.deliver_memory_mb / 1024.0;
    let million = 1e6;
    let lambda = per(invocations) * million * price(prices, "lambda_request")
        + per(gb_seconds) * million * price(prices, "lambda_arm64_gb_second");
    let api = per(run.publishes as f64) * million * price(prices, "http_api_request");
    let sqs = per(sqs_requests as f64) * million * price(prices, "sqs_request");
    // KMS: the secrets key's data key made by manage and opened by each deliver container.
    let kms_requests: usize = by_action
        .iter()
        .filter(|(a, _)| a.starts_with("kms:"))
        .map(|(_, n)| n)
        .sum();
    let kms = per(kms_requests as f64) * million * price(prices, "kms_request");
    // CloudWatch Logs: what Herald logged (counted), and Lambda's own lines per invocation.
    let app_log_bytes = log_bytes(run.logged.bytes as f64, run.logged.lines as f64, prices);
    let platform_log_bytes = invocations * platform_log_bytes_per_invocation(prices);
    let log_gb = per(app_log_bytes + platform_log_bytes) * million / 1e9;
    let logs = log_gb * price(prices, "cloudwatch_logs_lambda_gb");
    // The metrics' share: their EMF lines, billed as log ingestion like any line.
    let metric_log_bytes = log_bytes(
        run.logged.metric_bytes as f64,
        run.logged.metric_lines as f64,
        prices,
    );
    let metric_logs =
        per(metric_log_bytes) * million / 1e9 * price(prices, "cloudwatch_logs_lambda_gb");
    let on_demand = per(wru) * million * price(prices, "dynamodb_write_request_unit")
        + per(rru) * million * price(prices, "dynamodb_read_request_unit");
    // Provisioned: a unit per second for an hour, paid at 70% utilisation.
    let hours_per_unit = 1.0 / 3600.0 / 0.7;
    let provisioned = per(wru) * million * hours_per_unit * price(prices, "dynamodb_wcu_hour")
        + per(rru) * million * hours_per_unit * price(prices, "dynamodb_rcu_hour");
    let others = lambda + api + sqs + kms + logs;
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
        format!("{name}: CloudWatch Logs per delivery"),
        format!("{:.0} B", per(app_log_bytes + platform_log_bytes)),
        format!(
            "Herald's lines {:.0} B ({:.2} lines, counted; of them the EMF metrics {:.0} B, {:.2} lines, ${:.3} a million), Lambda's START and REPORT {:.0} B ({:.2} invocations), {} B an event's overhead included",
            per(app_log_bytes),
            per(run.logged.lines as f64),
            per(metric_log_bytes),
            per(run.logged.metric_lines as f64),
            metric_logs,
            per(platform_log_bytes),
            per(invocations),
            assumption(prices, "cloudwatch_log_event_overhead_bytes")
        ),
    );
    table.row(
        format!("{name}: $ per million, on-demand"),
        format!("{total_on_demand:.2}"),
        format!(
            "DynamoDB {on_demand:.2}, SQS {sqs:.2}, KMS {kms:.3}, Lambda {lambda:.2} (ingest {ingest_ms:.0} ms a call at {} MB, deliver {deliver_ms:.0} ms a batch at {} MB), CloudWatch Logs {logs:.3}, API {api:.2} (target ≤ 2.20 batched)",
            functions.ingest_memory_mb, functions.deliver_memory_mb
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
        "log_bytes_per_delivery": {
            "herald": per(app_log_bytes),
            "herald_lines": per(run.logged.lines as f64),
            "emf_metrics": per(metric_log_bytes),
            "emf_metrics_lines": per(run.logged.metric_lines as f64),
            "emf_metrics_usd_per_million": metric_logs,
            "lambda_platform": per(platform_log_bytes),
        },
        "lambda_billed_ms": {
            "ingest_per_call": ingest_ms,
            "ingest_cpu_ms_per_call": ingest_cpu_ms,
            "deliver_per_batch": deliver_ms,
            "deliver_cpu_ms_per_batch": functions.deliver_batch_of_10_cpu_ms,
            "ingest_memory_mb": functions.ingest_memory_mb,
            "deliver_memory_mb": functions.deliver_memory_mb,
        },
        "usd_per_million_on_demand": {
            "total": total_on_demand, "dynamodb": on_demand, "sqs": sqs, "lambda": lambda,
            "cloudwatch_logs": logs, "api_gateway": api,
        },
        "usd_per_million_provisioned_70": {
            "total": total_provisioned, "dynamodb": provisioned, "sqs": sqs, "lambda": lambda,
            "cloudwatch_logs": logs, "api_gateway": api,
        },
        "events_per_second": run.deliveries as f64 / run.wall.as_secs_f64(),
        "latency_ms_p50": p50.as_secs_f64() * 1e3,
        "latency_ms_p99": p99.as_secs_f64() * 1e3,
    })
}

pub fn run(table: &mut Table, before: &serde_json::Map<String, Value>) -> Value {
    // The deliver handler's batch of 10 (the template's batch size) on the runtime of the
    // template's memory (one thread), measured by the first section.
    let batch_of_10 = before["deliver_handler"]["batches"]
        .as_array()
        .and_then(|batches| {
            batches
                .iter()
                .find(|b| b["batch"] == 10 && b["runtime"] == "current_thread")
        })
        .expect("the deliver handler section runs first");
    let template = crate::coldstart::read_template();
    let memory = |resource: &str| -> f64 {
        crate::coldstart::template_memory_mb(&template, resource)
            .parse()
            .expect("a MemorySize in MB")
    };
    let ingest_call_cpu_ms: BTreeMap<usize, f64> = [BATCHED_PER_CALL, 1]
        .into_iter()
        .map(|events| {
            (
                events,
                crate::ingest_cpu::per_call(events).as_secs_f64() * 1e3,
            )
        })
        .collect();
    let functions = Functions {
        deliver_memory_mb: memory("DeliverFunction"),
        ingest_memory_mb: memory("IngestFunction"),
        deliver_batch_of_10_ms: batch_of_10["wall_ms"].as_f64().unwrap(),
        deliver_batch_of_10_cpu_ms: batch_of_10["cpu_us_per_webhook"].as_f64().unwrap() * 10.0
            / 1e3,
        ingest_call_cpu_ms,
    };
    for (events, cpu) in &functions.ingest_call_cpu_ms {
        table.row(
            format!("CPU per ingest call of {events} event(s)"),
            format!("{cpu:.2} ms"),
            format!(
                "ingest handler, in-memory stores: the gateway event parsed, validated, matched, recorded, queued, answered; median of {}",
                crate::ingest_cpu::CALLS
            ),
        );
    }
    let path = herald_tests::emulator::workspace_root().join("bench/prices.json");
    let prices: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let batched = run_once(true).await;
        let single = run_once(false).await;
        json!({
            "prices_as_of": prices["as_of"],
            "batched_publishing": analyse(table, "batched (100 per publish)", &batched, &prices, &functions),
            "single_publishing": analyse(table, "single (1 per publish)", &single, &prices, &functions),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_takes_longer_below_one_vcpu_and_waiting_does_not() {
        assert_eq!(billed_ms(50.0, 1.0, ONE_VCPU_MB), 51.0);
        assert_eq!(billed_ms(50.0, 1.0, 3538.0), 51.0);
        let at_256 = billed_ms(50.0, 1.0, 256.0);
        assert!((at_256 - (50.0 + 1769.0 / 256.0)).abs() < 1e-9, "{at_256}");
    }

    #[test]
    fn every_log_event_is_billed_with_its_overhead() {
        let prices = json!({"assumptions": {
            "cloudwatch_log_event_overhead_bytes": 26,
            "lambda_platform_log_lines": ["abc", "de"],
        }});
        assert_eq!(log_bytes(100.0, 2.0, &prices), 152.0);
        assert_eq!(platform_log_bytes_per_invocation(&prices), 5.0 + 52.0);
    }

    #[test]
    fn the_price_table_has_every_figure_the_bench_uses() {
        let path = herald_tests::emulator::workspace_root().join("bench/prices.json");
        let prices: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for key in [
            "lambda_request",
            "lambda_arm64_gb_second",
            "http_api_request",
            "sqs_request",
            "dynamodb_write_request_unit",
            "dynamodb_read_request_unit",
            "dynamodb_wcu_hour",
            "dynamodb_rcu_hour",
            "cloudwatch_logs_lambda_gb",
        ] {
            assert!(price(&prices, key) > 0.0, "{key}");
        }
        for key in [
            "dynamodb_round_trip_ms",
            "sqs_round_trip_ms",
            "cloudwatch_log_event_overhead_bytes",
        ] {
            assert!(assumption(&prices, key) > 0.0, "{key}");
        }
        assert!(platform_log_bytes_per_invocation(&prices) > 300.0);
    }
}
