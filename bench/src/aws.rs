//! AWS requests and DynamoDB capacity per delivered webhook, counted on a real run of the
//! local runner on moto through a recording proxy, priced with `bench/prices.json`; and
//! the same run's end-to-end throughput and latency.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_local::PollSettings;
use herald_tests::aws::{moto_url, sdk_config_for};
use herald_tests::aws_proxy::{AwsCall, RecordingProxy};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::TestReceiver;
use serde_json::{Value, json};

use crate::Table;
use crate::logs::{self, Logged};
use crate::on_moto;

/// One run's traffic: how many events, published how many a call, with how much
/// `data`, to how many subscriptions, answered with how large a body.
#[derive(Clone, Copy, Debug)]
struct Traffic {
    name: &'static str,
    events: usize,
    per_call: usize,
    /// Bytes of each event's `data` (0: the bare order, about 40 bytes).
    data_bytes: usize,
    /// Subscriptions each event matches: deliveries per event.
    fan_out: usize,
    /// Bytes of each receiver's answer (0: `ok`).
    answer_bytes: usize,
    /// How deliver takes a first attempt (`HERALD_DELIVERY_CLAIM`): `lease`, `read` or
    /// `none`.
    claim: &'static str,
    /// The deliver event source's batch size (`DeliveryBatchSize`, ten by default), and
    /// deliver's `HERALD_DELIVERY_CONCURRENCY` as the template sets it from that.
    batch: usize,
}

/// The runs, side by side: the bare events of the earlier rounds, then realistic traffic
/// (1 KiB of `data`, receivers answering 200 with about 100 bytes) at fan-out 1 and 3,
/// batched and single, and larger events. A 100 KiB event is published ten a call and a
/// 1 MiB one five a call (the API takes 6 MiB a call); the 1 MiB events, at the limit,
/// travel as claim checks (docs/DECISIONS.md, "Large events").
const RUNS: [Traffic; 12] = [
    Traffic {
        name: "batched (100 per publish)",
        events: 500,
        per_call: 100,
        data_bytes: 0,
        fan_out: 1,
        answer_bytes: 0,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "single (1 per publish)",
        events: 100,
        per_call: 1,
        data_bytes: 0,
        fan_out: 1,
        answer_bytes: 0,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, batched, fan-out 1",
        events: 500,
        per_call: 100,
        data_bytes: 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, batched, fan-out 1, claim by read",
        events: 500,
        per_call: 100,
        data_bytes: 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "read",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, batched, fan-out 1, no claim",
        events: 500,
        per_call: 100,
        data_bytes: 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "none",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, batched, fan-out 1, no claim, batches of 100",
        events: 500,
        per_call: 100,
        data_bytes: 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "none",
        batch: 100,
    },
    Traffic {
        name: "1 KiB, batched, fan-out 3",
        events: 300,
        per_call: 100,
        data_bytes: 1024,
        fan_out: 3,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, single, fan-out 1",
        events: 100,
        per_call: 1,
        data_bytes: 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "1 KiB, single, fan-out 3",
        events: 100,
        per_call: 1,
        data_bytes: 1024,
        fan_out: 3,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "10 KiB, batched, fan-out 1",
        events: 200,
        per_call: 100,
        data_bytes: 10 * 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "100 KiB, batched, fan-out 1",
        events: 50,
        per_call: 10,
        data_bytes: 100 * 1024,
        fan_out: 1,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
    Traffic {
        name: "1 MiB, batched, fan-out 3",
        events: 10,
        per_call: 5,
        data_bytes: 1024 * 1024,
        fan_out: 3,
        answer_bytes: 100,
        claim: "lease",
        batch: 10,
    },
];

/// SQS bills a request per started 64 KiB of the messages' payload it carries.
const SQS_CHUNK: usize = 64 * 1024;

/// Requests SQS bills for `call`: one per started 64 KiB of its payload, at least one.
fn sqs_billed_requests(call: &AwsCall) -> f64 {
    (call.payload_bytes.unwrap_or(0) as f64 / SQS_CHUNK as f64)
        .ceil()
        .max(1.0)
}

/// Receives of a queue no delivery of the run went through (the ordered and slow lanes,
/// and their pollers waiting): on AWS, Lambda's pollers long-poll an idle queue whatever
/// the traffic, a cost per month rather than per delivery.
fn idle_receive(call: &AwsCall, busy_queue: &str) -> bool {
    call.action == "sqs:ReceiveMessage" && call.resource != busy_queue
}

/// POSTs deliver makes to one host at once within a batch (`HERALD_DELIVERY_PER_HOST`'s
/// default; the runs leave it).
const PER_HOST: f64 = 10.0;

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
    traffic: Traffic,
    /// The queue the run's deliveries went through (its name).
    busy_queue: String,
    deliveries: usize,
    publishes: usize,
    /// Batches the event source handed deliver: its invocations.
    deliver_invocations: u64,
    calls: Vec<AwsCall>,
    /// What Herald's functions logged during the run, at `info` as deployed.
    logged: Logged,
    wall: Duration,
    latencies: Vec<Duration>,
    /// POSTs of a delivery that had arrived already: none expected with a claim; with
    /// `DeliveryClaim: none` a message received twice is sent twice (docs/RELIABILITY.md).
    duplicates: usize,
}

async fn run_once(traffic: Traffic) -> Run {
    let proxy = RecordingProxy::start_measuring(moto_url()).await;
    // Each tenant's API requests counted, as the template deploys them
    // (`TenantRequestsPerSecond`): a limit this run never reaches, so every request is
    // counted and none refused.
    let claim = traffic.claim;
    // The event source as the template maps it with `DeliveryBatchSize` at the run's
    // batch: its batching window (a second) fills batches, and deliver runs a batch's
    // records all at once (`HERALD_DELIVERY_CONCURRENCY`, as the template sets it).
    let concurrency = traffic.batch.to_string();
    let poll = PollSettings {
        batch_size: Some(traffic.batch as i32),
        wait_seconds: 1,
        print_attempts: false,
        ..PollSettings::default()
    };
    let herald = TestHerald::start_with_poll(
        sdk_config_for(&proxy.url()),
        &[
            ("HERALD_MAX_REQUESTS_PER_SECOND", "100000"),
            ("HERALD_DELIVERY_CLAIM", claim),
            ("HERALD_DELIVERY_CONCURRENCY", &concurrency),
        ],
        poll,
    )
    .await;
    let receiver = TestReceiver::start(on_moto::answer(traffic.answer_bytes)).await;
    for _ in 0..traffic.fan_out {
        herald
            .subscribe("acme", &receiver.url(), &["order.*"])
            .await;
    }
    let busy_queue = herald
        .local
        .provisioned()
        .delivery_queue_url()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let before = proxy.calls().len();
    let logged_before = logs::logged();
    let invocations_before = herald.local.deliver_invocations();

    let ids: Vec<String> = (0..traffic.events).map(|i| format!("ord_{i}")).collect();
    let mut published_at = BTreeMap::new();
    let started = Instant::now();
    let mut publishes = 0;
    for chunk in ids.chunks(traffic.per_call) {
        let body: Vec<Value> = chunk
            .iter()
            .map(|id| {
                json!({
                    "id": id,
                    "type": "order.paid",
                    "data": crate::ingest_cpu::order_data(id, traffic.data_bytes),
                })
            })
            .collect();
        let at = Instant::now();
        let (status, answer) = herald.publish("acme", json!({"events": body})).await;
        assert_eq!(status, 202, "{answer}");
        publishes += 1;
        for id in chunk {
            published_at.insert(id.clone(), at);
        }
    }
    let deliveries = traffic.events * traffic.fan_out;
    // Every delivery once, counted by its `webhook-id`: a POST sent again is not one more.
    let waiting = Instant::now() + Duration::from_secs(600);
    let mut got = receiver
        .wait_for(deliveries, Duration::from_secs(600))
        .await;
    while distinct_deliveries(&got) < deliveries && Instant::now() < waiting {
        got = receiver
            .wait_for(
                got.len() + 1,
                waiting.saturating_duration_since(Instant::now()),
            )
            .await;
    }
    let distinct = distinct_deliveries(&got);
    assert_eq!(
        distinct, deliveries,
        "{}: not every delivery arrived",
        traffic.name
    );
    let wall = started.elapsed();
    // Let the last batches be deleted from the queue before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = proxy.calls()[before..].to_vec();
    let logged = logs::logged() - logged_before;
    let deliver_invocations = herald.local.deliver_invocations() - invocations_before;
    // Each delivery's first arrival.
    let mut seen = std::collections::HashSet::new();
    let mut latencies: Vec<Duration> = got
        .iter()
        .filter(|r| seen.insert(r.headers.get("webhook-id").cloned()))
        .filter_map(|r| {
            let order = r.json()["data"]["order"].as_str()?.to_owned();
            Some(r.at.saturating_duration_since(*published_at.get(&order)?))
        })
        .collect();
    latencies.sort();
    herald.shutdown().await;
    Run {
        traffic,
        busy_queue,
        deliveries,
        publishes,
        deliver_invocations,
        calls,
        logged,
        wall,
        latencies,
        duplicates: got.len() - distinct,
    }
}

/// The deliveries among `got`, each counted once however often it was POSTed.
fn distinct_deliveries(got: &[herald_tests::receiver::Recorded]) -> usize {
    got.iter()
        .map(|r| r.headers.get("webhook-id"))
        .collect::<std::collections::HashSet<_>>()
        .len()
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
    /// Wall and CPU time of the deliver handler's batch of 10 to the 50 ms receiver, with
    /// in-memory stores: the wall time less the CPU is the batch's waiting.
    deliver_batch_of_10_ms: f64,
    deliver_batch_of_10_cpu_ms: f64,
    /// CPU of an ingest call with in-memory stores, by its events, their `data` size and
    /// the subscriptions they match ([`ingest_key`]): Herald's handler alone.
    ingest_call_cpu_ms: BTreeMap<(usize, usize, usize), f64>,
    /// CPU of an ingest call and of a deliver batch (of the run's size, and of 10 beside
    /// a larger one) with their AWS adapters on moto, by the run's traffic: what the bill
    /// counts.
    on_moto: BTreeMap<on_moto::Shape, on_moto::Measured>,
}

/// The traffic's shape as `on_moto` measures it.
fn shape(traffic: &Traffic) -> on_moto::Shape {
    on_moto::Shape {
        per_call: traffic.per_call,
        data_bytes: traffic.data_bytes,
        fan_out: traffic.fan_out,
        answer_bytes: traffic.answer_bytes,
        claim: traffic.claim,
        batch: traffic.batch,
    }
}

/// The same traffic in deliver batches of ten: measured beside a larger batch size, so a
/// batch between the two is priced from both ([`deliver_cpu_ms`]).
fn shape_of_ten(traffic: &Traffic) -> on_moto::Shape {
    on_moto::Shape {
        batch: 10,
        ..shape(traffic)
    }
}

/// The CPU of a deliver invocation of `records` records, from the measured CPU of a
/// batch of ten (`of_ten`) and of a full batch of `batch` (`of_batch`, the same when
/// `batch` is ten). A batch of ten or fewer costs what a full ten does (rounding up). A
/// larger one is a line through the two measurements: what a batch costs once (its
/// subscriptions read, its logging) and what each record does, each measured, not
/// scaled from ten.
fn deliver_cpu_ms(records: f64, batch: usize, of_ten: f64, of_batch: f64) -> f64 {
    if batch <= 10 || records <= 10.0 {
        return of_ten * (records / 10.0).max(1.0);
    }
    let records = records.min(batch as f64);
    of_ten + (of_batch - of_ten) * (records - 10.0) / (batch as f64 - 10.0)
}

/// The ingest measurement a run's calls are priced with: events a call, `data` size and
/// subscriptions matched.
fn ingest_key(traffic: &Traffic) -> (usize, usize, usize) {
    (traffic.per_call, traffic.data_bytes, traffic.fan_out)
}

/// The target for this run, where it has one (1 KiB, batched, fan-out 1).
fn target(traffic: &Traffic, figure: &str) -> String {
    if traffic.data_bytes == 1024 && traffic.per_call > 1 && traffic.fan_out == 1 {
        format!(" (target {figure})")
    } else {
        String::new()
    }
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
    // SQS: the calls on the run's queue, billed per started 64 KiB of payload; the idle
    // lanes' receives apart (priced per month in `idle_queues`).
    let busy_sqs: Vec<&AwsCall> = run
        .calls
        .iter()
        .filter(|c| c.action.starts_with("sqs:") && !idle_receive(c, &run.busy_queue))
        .collect();
    let idle_receives = run
        .calls
        .iter()
        .filter(|c| idle_receive(c, &run.busy_queue))
        .count();
    let sqs_requests = busy_sqs.len();
    let sqs_billed: f64 = busy_sqs.iter().map(|c| sqs_billed_requests(c)).sum();
    let dynamodb_requests: usize = by_action
        .iter()
        .filter(|(a, _)| a.starts_with("dynamodb:"))
        .map(|(_, n)| n)
        .sum();
    // Lambda: one ingest invocation per publish call; one deliver invocation per batch the
    // event source hands over (the runner's pollers count them).
    let deliver_invocations = run.deliver_invocations as f64;
    let invocations = run.publishes as f64 + deliver_invocations;
    // A deliver invocation's records, and the waves they go out in to the run's one
    // receiver (`HERALD_DELIVERY_PER_HOST`, ten by default, at once).
    let records = run.deliveries as f64 / deliver_invocations.max(1.0);
    let waves = (records / PER_HOST).ceil().max(1.0);
    // Billed durations: the measured CPU, at the share of a core each function's memory
    // buys, and the round trips stated in prices.json.
    let dynamodb_ms = assumption(prices, "dynamodb_round_trip_ms");
    let sqs_ms = assumption(prices, "sqs_round_trip_ms");
    let events_per_call = run.traffic.events as f64 / run.publishes as f64;
    let measured = functions
        .on_moto
        .get(&shape(&run.traffic))
        .copied()
        .expect("this traffic's CPU was measured on moto");
    let of_ten = functions
        .on_moto
        .get(&shape_of_ten(&run.traffic))
        .copied()
        .expect("this traffic's CPU in batches of ten was measured on moto");
    let ingest_cpu_ms = measured.ingest_call_cpu_ms;
    let deliver_cpu_ms = deliver_cpu_ms(
        records,
        run.traffic.batch,
        of_ten.deliver_batch_cpu_ms,
        measured.deliver_batch_cpu_ms,
    );
    let ingest_ms = billed_ms(
        dynamodb_ms * (1.0 + (events_per_call / INGEST_WRITE_CONCURRENCY).ceil())
            + sqs_ms * (events_per_call / 10.0 / INGEST_SEND_CONCURRENCY).ceil(),
        ingest_cpu_ms,
        functions.ingest_memory_mb,
    );
    // Each record claims (a write, a read with `read`, nothing at a first hand-out with
    // `none`), then records its outcome (nothing for a first success with `none`), one
    // round trip each, the records at once: the deliveries table's calls a delivery, as
    // counted; the batch reads the subscriptions its container has not kept (their
    // GetItems counted, per batch); a claim check's record reads its event back, one
    // round trip more.
    let calls_on = |actions: &[&str], table: &str| {
        run.calls
            .iter()
            .filter(|c| actions.contains(&c.action.as_str()) && c.resource.ends_with(table))
            .count() as f64
    };
    let gets_on = |table: &str| calls_on(&["dynamodb:GetItem"], table);
    let ledger_trips = calls_on(
        &["dynamodb:GetItem", "dynamodb:UpdateItem"],
        "DeliveriesTable",
    ) / run.deliveries.max(1) as f64;
    let subscription_reads = gets_on("SubscriptionsTable") / deliver_invocations.max(1.0);
    let event_reads = (gets_on("EventsTable") / run.deliveries.max(1) as f64).min(1.0);
    // Each wave waits as the batch of 10 does, and makes its records' round trips; the
    // invocation computes what its records do, from the batches measured on moto.
    let deliver_ms = billed_ms(
        waves
            * (functions.deliver_batch_of_10_ms - functions.deliver_batch_of_10_cpu_ms
                + dynamodb_ms * (ledger_trips + event_reads))
            + dynamodb_ms * subscription_reads,
        deliver_cpu_ms,
        functions.deliver_memory_mb,
    );
    let gb_seconds = run.publishes as f64 * ingest_ms / 1000.0 * functions.ingest_memory_mb
        / 1024.0
        + deliver_invocations * deliver_ms / 1000.0 * functions.deliver_memory_mb / 1024.0;
    let million = 1e6;
    let lambda = per(invocations) * million * price(prices, "lambda_request")
        + per(gb_seconds) * million * price(prices, "lambda_arm64_gb_second");
    let api = per(run.publishes as f64) * million * price(prices, "http_api_request");
    let sqs = per(sqs_billed) * million * price(prices, "sqs_request");
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
    // A deployment's `LambdaSystemLogLevel: WARN` leaves Lambda's START and REPORT lines
    // out: the same run without their share of the logs.
    let platform_logs =
        per(platform_log_bytes) * million / 1e9 * price(prices, "cloudwatch_logs_lambda_gb");

    table.row(
        format!("{name}: AWS requests per delivery"),
        format!("{:.2}", per((sqs_requests + dynamodb_requests) as f64)),
        format!(
            "DynamoDB {:.2}, SQS {:.2} (billed {:.2}, per started 64 KiB; the idle lanes' {:.2} receives apart); {}",
            per(dynamodb_requests as f64),
            per(sqs_requests as f64),
            per(sqs_billed),
            per(idle_receives as f64),
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
            "DynamoDB {on_demand:.2}, SQS {sqs:.2}, KMS {kms:.3}, Lambda {lambda:.2} (ingest {ingest_ms:.0} ms a call at {} MB, deliver {deliver_ms:.0} ms a batch at {} MB), CloudWatch Logs {logs:.3}, API {api:.2}; {:.3} with LambdaSystemLogLevel WARN{}",
            functions.ingest_memory_mb,
            functions.deliver_memory_mb,
            total_on_demand - platform_logs,
            target(&run.traffic, "≤ 1.00")
        ),
    );
    table.row(
        format!("{name}: $ per million, provisioned 70%"),
        format!("{total_provisioned:.2}"),
        format!(
            "DynamoDB {provisioned:.2} + the same others; {:.3} with LambdaSystemLogLevel WARN{}",
            total_provisioned - platform_logs,
            target(&run.traffic, "≤ 0.50")
        ),
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
            "publish to receive p50 {:.0} ms, p99 {:.0} ms; {} sent twice",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            run.duplicates
        ),
    );
    json!({
        "traffic": {
            "events": run.traffic.events, "per_call": run.traffic.per_call,
            "data_bytes": run.traffic.data_bytes, "fan_out": run.traffic.fan_out,
            "answer_bytes": run.traffic.answer_bytes,
        },
        "deliveries": run.deliveries,
        "publish_calls": run.publishes,
        "delivery_batch_size": run.traffic.batch,
        "deliver_invocations": run.deliver_invocations,
        "records_per_deliver_invocation": records,
        "sqs_billed_requests_per_delivery": per(sqs_billed),
        "idle_receives_per_delivery_apart": per(idle_receives as f64),
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
            "deliver_cpu_ms_per_batch": deliver_cpu_ms,
            "cpu_measured": "with the AWS adapters on moto (moto's CPU not counted), one thread",
            "ingest_memory_mb": functions.ingest_memory_mb,
            "deliver_memory_mb": functions.deliver_memory_mb,
        },
        "usd_per_million_on_demand": {
            "total": total_on_demand, "dynamodb": on_demand, "sqs": sqs, "lambda": lambda,
            "cloudwatch_logs": logs, "api_gateway": api, "kms": kms,
        },
        "usd_per_million_provisioned_70": {
            "total": total_provisioned, "dynamodb": provisioned, "sqs": sqs, "lambda": lambda,
            "cloudwatch_logs": logs, "api_gateway": api, "kms": kms,
        },
        "usd_per_million_with_system_log_level_warn": {
            "on_demand": total_on_demand - platform_logs,
            "provisioned_70": total_provisioned - platform_logs,
            "lambda_platform_logs_left_out": platform_logs,
        },
        "events_per_second": run.deliveries as f64 / run.wall.as_secs_f64(),
        "latency_ms_p50": p50.as_secs_f64() * 1e3,
        "latency_ms_p99": p99.as_secs_f64() * 1e3,
        "sent_twice": run.duplicates,
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
    let ingest_call_cpu_ms: BTreeMap<(usize, usize, usize), f64> = RUNS
        .iter()
        .map(ingest_key)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|key @ (events, pad, subscriptions)| {
            let cpu = crate::ingest_cpu::per_call(events, pad, subscriptions);
            (key, cpu.as_secs_f64() * 1e3)
        })
        .collect();
    let on_moto: BTreeMap<on_moto::Shape, on_moto::Measured> = RUNS
        .iter()
        .flat_map(|traffic| [shape(traffic), shape_of_ten(traffic)])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|shape| (shape, on_moto::measure(shape)))
        .collect();
    let functions = Functions {
        deliver_memory_mb: memory("DeliverFunction"),
        ingest_memory_mb: memory("IngestFunction"),
        deliver_batch_of_10_ms: batch_of_10["wall_ms"].as_f64().unwrap(),
        deliver_batch_of_10_cpu_ms: batch_of_10["cpu_us_per_webhook"].as_f64().unwrap() * 10.0
            / 1e3,
        ingest_call_cpu_ms,
        on_moto,
    };
    for traffic in RUNS {
        let shape = shape(&traffic);
        let measured = functions.on_moto[&shape];
        let in_memory = functions.ingest_call_cpu_ms[&ingest_key(&traffic)];
        table.row(
            format!(
                "{}: CPU of an ingest call / a deliver batch of {}",
                traffic.name, traffic.batch
            ),
            format!(
                "{:.2} / {:.2} ms",
                measured.ingest_call_cpu_ms, measured.deliver_batch_cpu_ms
            ),
            format!(
                "with the AWS adapters on moto (the SDK's requests, deflating, reading back; moto's CPU not counted), one thread, medians; the bill's Lambda time uses these; in-memory stores: ingest {in_memory:.2} ms, deliver {:.2} ms (figure 1's batch of bare events)",
                functions.deliver_batch_of_10_cpu_ms
            ),
        );
    }
    for ((events, pad, subscriptions), cpu) in &functions.ingest_call_cpu_ms {
        table.row(
            format!(
                "CPU per ingest call of {events} event(s), {} data, {subscriptions} subscription(s)",
                if *pad == 0 { "bare".to_owned() } else { format!("{pad} B of") }
            ),
            format!("{cpu:.2} ms"),
            format!(
                "ingest handler, in-memory stores: the gateway event parsed, validated, matched, recorded, queued, answered; median of {}",
                crate::ingest_cpu::CALLS
            ),
        );
    }
    let sizes: std::collections::BTreeSet<usize> = RUNS
        .iter()
        .map(|r| r.data_bytes)
        .filter(|&b| b > 0)
        .collect();
    for size in sizes {
        let text = crate::ingest_cpu::order_data("ord_1", size).to_string();
        let deflated = miniz_oxide::deflate::compress_to_vec(text.as_bytes(), 1).len();
        table.row(
            format!("{size} B of `data` deflated"),
            format!(
                "{deflated} B ({:.0}%)",
                deflated as f64 * 100.0 / size as f64
            ),
            "the runs' order payload at deflate level 1, as the events table keeps an event",
        );
    }
    let path = herald_tests::emulator::workspace_root().join("bench/prices.json");
    let prices: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut runs = serde_json::Map::new();
        let mut idle_queues = std::collections::BTreeSet::new();
        for traffic in RUNS {
            let run = run_once(traffic).await;
            idle_queues.extend(
                run.calls
                    .iter()
                    .filter(|c| idle_receive(c, &run.busy_queue))
                    .map(|c| c.resource.rsplit_once('-').map_or(c.resource.clone(), |(_, q)| q.to_owned())),
            );
            let figures = analyse(table, traffic.name, &run, &prices, &functions);
            runs.insert(traffic.name.to_owned(), figures);
        }
        // The idle lanes' receives, per month: Lambda's pollers long-poll each queue an
        // event source maps whether or not anything arrives.
        let pollers = assumption(&prices, "lambda_sqs_pollers_per_queue");
        let wait = assumption(&prices, "sqs_long_poll_seconds");
        let receives = idle_queues.len() as f64 * pollers * 30.0 * 86_400.0 / wait;
        let monthly = receives * price(&prices, "sqs_request");
        table.row(
            "idle lanes' receives, a month (apart from the per-delivery figures)",
            format!("${monthly:.2}"),
            format!(
                "{} queues with nothing on them ({}), {pollers} pollers each, a receive per {wait} s long poll: {receives:.0} receives a month",
                idle_queues.len(),
                idle_queues.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        // The earlier rounds' keys, kept for comparison across runs of target/bench.json.
        let batched = runs["batched (100 per publish)"].clone();
        let single = runs["single (1 per publish)"].clone();
        json!({
            "prices_as_of": prices["as_of"],
            "batched_publishing": batched,
            "single_publishing": single,
            "runs": runs,
            "idle_lanes_usd_per_month": monthly,
            "idle_lanes": idle_queues,
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
    fn sqs_bills_a_request_per_started_64_kib_and_an_empty_call_as_one() {
        let call = |bytes: Option<usize>| AwsCall {
            action: "sqs:SendMessageBatch".into(),
            resource: "q".into(),
            item_bytes: None,
            consistent: false,
            payload_bytes: bytes,
            key_values: Vec::new(),
        };
        assert_eq!(sqs_billed_requests(&call(None)), 1.0);
        assert_eq!(sqs_billed_requests(&call(Some(0))), 1.0);
        assert_eq!(sqs_billed_requests(&call(Some(64 * 1024))), 1.0);
        assert_eq!(sqs_billed_requests(&call(Some(64 * 1024 + 1))), 2.0);
        assert_eq!(sqs_billed_requests(&call(Some(1024 * 1024))), 16.0);
        let mut receive = call(Some(10));
        receive.action = "sqs:ReceiveMessage".into();
        assert!(idle_receive(&receive, "other"));
        assert!(!idle_receive(&receive, "q"));
        assert!(
            !idle_receive(&call(Some(10)), "other"),
            "a send is never idle"
        );
    }

    #[test]
    fn a_batch_above_ten_is_priced_between_the_two_batches_measured() {
        // Batches of ten: a short one costs a full ten, a full one its own measure.
        assert_eq!(deliver_cpu_ms(4.0, 10, 3.0, 3.0), 3.0);
        assert_eq!(deliver_cpu_ms(10.0, 10, 3.0, 3.0), 3.0);
        // Batches of 100, ten measured at 3 ms and a hundred at 21 ms: 0.2 ms a record
        // beyond the first ten, not 0.3 as ten's alone would say.
        assert_eq!(deliver_cpu_ms(100.0, 100, 3.0, 21.0), 21.0);
        assert!((deliver_cpu_ms(55.0, 100, 3.0, 21.0) - 12.0).abs() < 1e-9);
        assert_eq!(deliver_cpu_ms(6.0, 100, 3.0, 21.0), 3.0);
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
            "lambda_sqs_pollers_per_queue",
            "sqs_long_poll_seconds",
        ] {
            assert!(assumption(&prices, key) > 0.0, "{key}");
        }
        assert!(platform_log_bytes_per_invocation(&prices) > 300.0);
    }
}
