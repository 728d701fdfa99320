//! Fan-out at scale: one publish of 100 events (1 KiB of `data` each) matching 100
//! subscriptions, 10,000 deliveries queued, through the ingest handler as Lambda runs it
//! (a current-thread runtime) against moto's DynamoDB and SQS. Measured in a process of
//! its own (`herald-bench fanout`), so its peak memory is the publish's alone: the wall
//! time, the CPU (every thread's), and the peak resident memory; then priced at the
//! template's 256 MB, where Lambda gives a seventh of a vCPU and the CPU takes that much
//! longer, against API Gateway's 29 s.

use std::time::{Duration, Instant};

use chrono::Utc;
use herald_aws::lambda::wiring::{Function, HttpFunction};

use herald_core::ids::SubscriptionId;
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_testkit::active_subscription;
use serde_json::{Value, json};

use crate::Table;

pub const EVENTS: usize = 100;
/// Events of the publish through moto: a tenth, scaled up.
pub const EVENTS_ON_MOTO: usize = 10;
pub const SUBSCRIPTIONS: usize = 100;
/// Bytes of `data` in each event.
pub const DATA_BYTES: usize = 1024;
/// The template's memory for ingest.
const TEMPLATE_MB: f64 = 256.0;
/// API Gateway's limit on an integration's answer.
const GATEWAY_LIMIT: Duration = Duration::from_secs(29);

/// Process CPU so far, every thread's (user and system).
fn process_cpu() -> Duration {
    // SAFETY: `usage` is a valid rusage for the call to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A `VmHWM`/`VmRSS` line of /proc/self/status, in kB.
fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The API Gateway event of the publish: `events` events of `data_bytes` of `data`.
fn publish_event(events: usize, data_bytes: usize) -> String {
    let body = json!({"events": (0..events).map(|i| json!({
        "id": format!("ord_{i}"),
        "type": "order.paid",
        "data": crate::ingest_cpu::order_data(&format!("ord_{i}"), data_bytes),
    })).collect::<Vec<_>>()});
    crate::publish_request(&body)
}

/// Large events fanned out: as many 1 MiB events as a call takes (6 MiB) to every
/// subscription, on in-memory stores, for the memory a large fan-out holds.
const LARGE_EVENTS: usize = 5;
const LARGE_DATA_BYTES: usize = 1024 * 1024;

/// The largest events a task carries inline (under `INLINE_DATA_BYTES`, 256 KiB), as many
/// as a call takes, to `INLINE_SUBSCRIPTIONS` subscriptions through moto's SQS: 460
/// messages, 110 MB of them, for the memory the SQS adapter holds while it queues them.
const INLINE_EVENTS: usize = 23;
const INLINE_DATA_BYTES: usize = 240 * 1024;
const INLINE_SUBSCRIPTIONS: usize = 20;

/// Subscribes `count` endpoints of `acme` to `order.*` in `store`.
async fn subscribe_all(store: &impl SubscriptionStore, count: usize) {
    let policy = UrlPolicy::default();
    for _ in 0..count {
        let mut subscription = active_subscription(
            "acme",
            SubscriptionId::generate(Utc::now(), &mut rand::rng()),
            SubscriptionUrl::parse("https://hooks.example.com/in", &policy).unwrap(),
            &["order.*"],
        );
        subscription.created_at = Utc::now() - chrono::Duration::seconds(1);
        store.create(&subscription).await.unwrap();
    }
}

/// One publish of `events` events through `deps`, measured.
async fn measure<P: herald_core::ports::Ports>(
    deps: &herald_ingest::IngestDeps<P>,
    events: usize,
    data_bytes: usize,
) -> Value {
    let event = publish_event(events, data_bytes);
    let rss_before = status_kb("VmRSS:");
    let (cpu_before, at) = (process_cpu(), Instant::now());
    let request = lambda_http::request::from_str(&event).expect("a gateway event");
    let response = herald_ingest::handle(deps, request).await;
    let (wall, cpu) = (at.elapsed(), process_cpu().saturating_sub(cpu_before));
    let answer: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
    assert_eq!(response.status(), 202, "{answer}");
    let queued: u64 = answer["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["deliveries"].as_u64().unwrap_or(0))
        .sum();
    json!({
        "deliveries": queued,
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "cpu_ms": cpu.as_secs_f64() * 1000.0,
        "rss_before_kb": rss_before,
        "peak_rss_kb": status_kb("VmHWM:"),
    })
}

/// `herald-bench fanout memory|moto|large|inline`: the publish, measured in a process of its own;
/// prints one JSON line of figures. `memory`: the whole fan-out on in-memory stores
/// (Herald's own CPU and memory). `moto`: a tenth of it ([`EVENTS_ON_MOTO`] events)
/// through the real DynamoDB and SQS adapters, for the cost of the calls (moto slows to
/// a crawl with ten thousand messages on one queue).
pub fn child(mode: &str) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let figures = runtime.block_on(async {
        if mode == "memory" || mode == "large" {
            let deps = herald_ingest::IngestDeps {
                xray: herald_aws::xray::XRay::off(),
                ports: herald_testkit::adapters(),
                tenant_claim: "tenant".into(),
                max_deliveries_per_publish: 10_000,
                max_requests_per_second: 0,
            };
            subscribe_all(&deps.ports.subscriptions, SUBSCRIPTIONS).await;
            return if mode == "large" {
                measure(&deps, LARGE_EVENTS, LARGE_DATA_BYTES).await
            } else {
                measure(&deps, EVENTS, DATA_BYTES).await
            };
        }
        let sdk = herald_tests::aws::sdk_config();
        let provisioned = herald_local::provision(
            &sdk,
            &herald_tests::aws::unique_prefix(),
            &herald_local::template_path(),
        )
        .await
        .expect("provisioning on moto");
        let mut env = provisioned.environment();
        env.insert("HERALD_MAX_DELIVERIES_PER_PUBLISH".into(), "10000".into());
        let source = move |name: &str| env.get(name).cloned();
        let started = herald_aws::lambda::wiring::started(Function::Ingest, &source, &sdk)
            .expect("ingest's settings");
        let deps = herald_ingest::Ingest::deps(started);
        if mode == "inline" {
            subscribe_all(&deps.ports.subscriptions, INLINE_SUBSCRIPTIONS).await;
            return measure(&deps, INLINE_EVENTS, INLINE_DATA_BYTES).await;
        }
        subscribe_all(&deps.ports.subscriptions, SUBSCRIPTIONS).await;
        measure(&deps, EVENTS_ON_MOTO, DATA_BYTES).await
    });
    println!("{figures}");
    0
}

fn run_child(mode: &str) -> Value {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["fanout", mode])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running the fan-out child");
    assert!(output.status.success(), "the fan-out child ({mode}) failed");
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim().lines().last().unwrap_or_default())
        .expect("the fan-out child's figures")
}

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    let memory = run_child("memory");
    let moto = run_child("moto");
    let large = run_child("large");
    let inline = run_child("inline");
    let ms = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    // Herald's CPU at full scale, in memory; the AWS calls' CPU and waiting from a tenth
    // of it through moto, less that tenth's own Herald CPU, times ten.
    let scale = (EVENTS / EVENTS_ON_MOTO) as f64;
    let herald_cpu = ms(&memory, "cpu_ms");
    let moto_wait = (ms(&moto, "wall_ms") - ms(&moto, "cpu_ms")).max(0.0) * scale;
    let calls_cpu = (ms(&moto, "cpu_ms") - herald_cpu / scale).max(0.0) * scale;
    let cpu_ms = herald_cpu + calls_cpu;
    // In AWS the waiting is SQS's and DynamoDB's, as the cost section counts it
    // (bench/prices.json): one SQS round trip per ten SendMessageBatch calls (ten at
    // once), one DynamoDB round trip per 16 events recorded and one for the
    // subscriptions. moto answers far slower; its figure is printed beside.
    let prices: Value = serde_json::from_str(include_str!("../prices.json")).unwrap();
    let assumed = |key: &str| prices["assumptions"][key].as_f64().unwrap_or(0.0);
    let sqs_calls = (memory["deliveries"].as_f64().unwrap_or(0.0) / 10.0).ceil();
    let aws_wait = (sqs_calls / 10.0).ceil() * assumed("sqs_round_trip_ms")
        + ((EVENTS as f64 / 16.0).ceil() + 1.0) * assumed("dynamodb_round_trip_ms");
    let at_template_ms = crate::aws::billed_ms(aws_wait, cpu_ms, TEMPLATE_MB);
    let on_moto_ms = crate::aws::billed_ms(moto_wait, cpu_ms, TEMPLATE_MB);
    let peak_mb = ms(&memory, "peak_rss_kb") / 1024.0;
    let growth_mb = peak_mb - ms(&memory, "rss_before_kb") / 1024.0;
    let within = at_template_ms < GATEWAY_LIMIT.as_secs_f64() * 1000.0;
    table.row(
        format!("fan-out: {EVENTS} events × {SUBSCRIPTIONS} subscriptions"),
        format!("{} deliveries", memory["deliveries"]),
        format!("{DATA_BYTES} B of data each, one publish call"),
    );
    table.row(
        "fan-out: Herald's CPU (in memory)",
        format!("{:.2} s", herald_cpu / 1000.0),
        format!(
            "answered in {:.2} s on in-memory stores",
            ms(&memory, "wall_ms") / 1000.0
        ),
    );
    table.row(
        "fan-out: AWS calls (moto, a tenth × 10)",
        format!("{:.2} s waiting", moto_wait / 1000.0),
        format!(
            "CPU {:.2} s; {} deliveries through moto in {:.2} s",
            calls_cpu / 1000.0,
            moto["deliveries"],
            ms(&moto, "wall_ms") / 1000.0
        ),
    );
    table.row(
        "fan-out: answered in, at the template's 256 MB",
        format!("{:.1} s", at_template_ms / 1000.0),
        format!(
            "CPU {:.1} s on a seventh of a vCPU + {:.1} s of SQS and DynamoDB round trips; {} API Gateway's 29 s",
            cpu_ms * crate::aws::ONE_VCPU_MB / TEMPLATE_MB / 1000.0,
            aws_wait / 1000.0,
            if within { "within" } else { "OVER" }
        ),
    );
    table.row(
        "fan-out: the same with moto's round trips",
        format!("{:.1} s", on_moto_ms / 1000.0),
        "moto's SQS answers a SendMessageBatch in about 100 ms (SQS in low tens)",
    );
    table.row(
        "fan-out: peak memory",
        format!("{peak_mb:.0} MB"),
        format!("{growth_mb:.0} MB for the publish; the template gives ingest 256 MB"),
    );
    let large_peak_mb = ms(&large, "peak_rss_kb") / 1024.0;
    table.row(
        format!(
            "fan-out of large events: {LARGE_EVENTS} × 1 MiB × {SUBSCRIPTIONS} subscriptions"
        ),
        format!("{large_peak_mb:.0} MB peak"),
        format!(
            "{} deliveries as claim checks, in memory: {:.0} MB for the publish, Herald's CPU {:.2} s",
            large["deliveries"],
            large_peak_mb - ms(&large, "rss_before_kb") / 1024.0,
            ms(&large, "cpu_ms") / 1000.0
        ),
    );
    let inline_peak_mb = ms(&inline, "peak_rss_kb") / 1024.0;
    table.row(
        format!(
            "fan-out of the largest inline events: {INLINE_EVENTS} × 240 KiB × {INLINE_SUBSCRIPTIONS} subscriptions"
        ),
        format!("{inline_peak_mb:.0} MB peak"),
        format!(
            "{} deliveries, {:.0} MB of messages through moto's SQS: {:.0} MB for the publish",
            inline["deliveries"],
            inline["deliveries"].as_f64().unwrap_or(0.0) * INLINE_DATA_BYTES as f64 / 1e6,
            inline_peak_mb - ms(&inline, "rss_before_kb") / 1024.0,
        ),
    );
    json!({
        "inline_events": inline,
        "large_events": large,
        "deliveries": memory["deliveries"],
        "herald_cpu_ms": herald_cpu,
        "aws_calls_cpu_ms": calls_cpu,
        "moto_wait_ms": moto_wait,
        "aws_wait_assumed_ms": aws_wait,
        "at_template_memory_ms": at_template_ms,
        "at_template_memory_with_moto_ms": on_moto_ms,
        "within_gateway_limit": within,
        "peak_rss_mb": peak_mb,
        "publish_rss_growth_mb": growth_mb,
    })
}
