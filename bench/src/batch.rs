//! Batch efficiency and CPU per webhook of the deliver handler.
//!
//! The handler runs with in-memory stores and queue (so the figures are Herald's
//! concurrency and CPU, not moto's serialised writes) and the real HTTP sender, POSTing to
//! a receiver on its own threads that answers after 50 ms. The handler runs on each
//! runtime its bootstrap may use (one thread, or a worker per vCPU); the CPU of its
//! threads is the handler's (signing, JSON, HTTP client, recording, logging), and the
//! receiver's is counted apart: it is not Herald's, but it shares the same cores. Beside
//! them, what bare loopback connections cost the thread that opens them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_aws::http::resolver::SystemResolver;
use herald_aws::http::sender::{HttpWebhookSender, SenderSettings};
use herald_aws::lambda::wiring::AwsPorts;
use herald_core::delivery::DeliveryTask;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::event::{Event, EventType};
use herald_core::ids::{EventId, SubscriptionId, TenantId};
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, process_batch, record_future_bytes};
use herald_testkit::{MemoryPortsWith, active_subscription};
use herald_tests::receiver::{CertificateDer, Offer, Script, TestReceiver};
use serde_json::{Value, json};

use crate::{Table, allocations};

mod bare;

const RECEIVER_DELAY: Duration = Duration::from_millis(50);
const SIZES: [usize; 3] = [10, 100, 1000];
/// The handler's bound on deliveries at once (HERALD_DELIVERY_CONCURRENCY's maximum).
const CONCURRENCY: usize = 1000;

type Deps = DeliverDeps<MemoryPortsWith<HttpWebhookSender>>;

/// The handler with a new HTTP client: trusting the receiver's own root beside Mozilla's
/// when it listens over TLS.
async fn deps(url: &str, root: Option<&CertificateDer<'static>>) -> (Arc<Deps>, SubscriptionId) {
    let policy = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
        ..UrlPolicy::default()
    };
    let settings = SenderSettings {
        policy: policy.clone(),
        ..SenderSettings::default()
    };
    let sender = match root {
        Some(root) => HttpWebhookSender::trusting(settings, Arc::new(SystemResolver), root),
        None => HttpWebhookSender::new(settings, Arc::new(SystemResolver)),
    }
    .unwrap();
    let deps = Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: herald_testkit::adapters_with(sender),
        settings: DeliverySettings {
            concurrency: CONCURRENCY,
            per_host: CONCURRENCY,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
            ..DeliverySettings::default()
        },
    });
    let now = Utc::now();
    let id = SubscriptionId::generate(now, &mut rand::rng());
    deps.ports
        .subscriptions
        .create(&active_subscription(
            "acme",
            id.clone(),
            SubscriptionUrl::parse(url, &policy).unwrap(),
            &["order.*"],
        ))
        .await
        .unwrap();
    (deps, id)
}

fn batch(subscription: &SubscriptionId, size: usize, round: usize) -> SqsEvent {
    let tenant = TenantId::parse("acme").unwrap();
    let records: Vec<Value> = (0..size)
        .map(|i| {
            let event = Event {
                id: EventId::parse(&format!("ord_{round}_{i}")).unwrap(),
                event_type: EventType::parse("order.paid").unwrap(),
                occurred_at: Utc::now(),
                data: json!({"order_id": format!("ord_{i}"), "amount": 1250})
                    .as_object()
                    .unwrap()
                    .clone(),
                subject: None,
            };
            let task = DeliveryTask::new(&tenant, subscription, &event, Utc::now());
            json!({
                "messageId": format!("m-{round}-{i}"),
                "receiptHandle": format!("r-{round}-{i}"),
                "body": task.to_message_body(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

/// The name of the handler runtime's worker threads.
const HANDLER_THREADS: &str = "deliver-handler";

/// The name of the receiver's threads.
const RECEIVER_THREADS: &str = "bench-receiver";

/// CPU time of the handler: this thread (where the handler's future runs) and its
/// runtime's workers, from the scheduler's own counts; the receiver's threads are not
/// counted.
fn handler_cpu() -> Duration {
    crate::thread_cpu() + threads_cpu(HANDLER_THREADS)
}

/// CPU time of this process's threads of that name.
fn threads_cpu(name: &str) -> Duration {
    std::fs::read_dir("/proc/thread-self/..")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .map(|task| crate::schedstat_cpu(&task.path().join("schedstat")))
        .sum()
}

/// Time for a dropped client's connections to close before the next measurement.
const SETTLE: Duration = Duration::from_millis(100);

/// Batches of each size and kind measured; the median is the figure.
const REPEATS: usize = 5;

/// The median measurement by wall time, and the lowest and highest efficiency.
fn median_by_wall(mut runs: Vec<Measured>) -> (Measured, (f64, f64)) {
    sort_by_wall(&mut runs, |m| m.wall_ms);
    let range = (
        runs.first().map_or(0.0, |m| m.efficiency),
        runs.last().map_or(0.0, |m| m.efficiency),
    );
    let median = runs.swap_remove(runs.len() / 2);
    (median, range)
}

/// Runs in order of their wall time, so the middle one is the median.
fn sort_by_wall<T>(runs: &mut [T], wall_ms: impl Fn(&T) -> f64) {
    runs.sort_by(|a, b| wall_ms(a).total_cmp(&wall_ms(b)));
}

struct Measured {
    wall_ms: f64,
    efficiency: f64,
    cpu_us_per_webhook: f64,
    /// The receiver's CPU per webhook: not Herald's, but on the same two cores.
    receiver_cpu_us_per_webhook: f64,
    /// Connections the receiver accepted during the batch (over TLS, each a handshake).
    connections: usize,
    /// Heap allocations of the handler's threads per webhook, and the bytes they asked for.
    allocations_per_webhook: f64,
    allocated_bytes_per_webhook: f64,
}

/// One batch through the handler: its wall time over the receiver's 50 ms, the handler
/// thread's CPU per webhook, and the connections the receiver accepted meanwhile.
async fn measure(deps: &Arc<Deps>, event: SqsEvent, receiver: &TestReceiver) -> Measured {
    let size = event.records.len();
    let connections = receiver.connections();
    let cpu = handler_cpu();
    let receiver_cpu = threads_cpu(RECEIVER_THREADS);
    let allocated = allocations::so_far();
    let started = Instant::now();
    let outcome = process_batch(deps, event).await;
    let wall = started.elapsed();
    let allocated = allocations::so_far() - allocated;
    let cpu = handler_cpu().saturating_sub(cpu);
    let receiver_cpu = threads_cpu(RECEIVER_THREADS).saturating_sub(receiver_cpu);
    let failures = outcome.response.batch_item_failures.len();
    assert_eq!(failures, 0, "a batch of {size} had failures");
    Measured {
        wall_ms: wall.as_secs_f64() * 1e3,
        efficiency: wall.as_secs_f64() / RECEIVER_DELAY.as_secs_f64(),
        cpu_us_per_webhook: cpu.as_secs_f64() * 1e6 / size as f64,
        receiver_cpu_us_per_webhook: receiver_cpu.as_secs_f64() * 1e6 / size as f64,
        connections: receiver.connections() - connections,
        allocations_per_webhook: allocated.calls as f64 / size as f64,
        allocated_bytes_per_webhook: allocated.bytes as f64 / size as f64,
    }
}

/// A receiver on its own thread and runtime (so its work is not counted), answering
/// after 50 ms; in plain HTTP/1.1, or over TLS offering what `offer` says.
struct ReceiverThread {
    receiver: Arc<TestReceiver>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ReceiverThread {
    fn start(offer: Option<Offer>) -> Self {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(RECEIVER_THREADS.into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name(RECEIVER_THREADS)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let script = Script::always(200).with_delay(RECEIVER_DELAY);
                    let receiver = Arc::new(match offer {
                        Some(offer) => TestReceiver::start_https(script, offer).await,
                        None => TestReceiver::start(script).await,
                    });
                    url_tx.send(Arc::clone(&receiver)).unwrap();
                    let _ = stop_rx.await;
                });
            })
            .unwrap();
        Self {
            receiver: url_rx.recv().unwrap(),
            stop,
            thread,
        }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }
}

/// A size's batches: the first on a new client's new connections, the second on what the
/// first left in the pool, each the median of [`REPEATS`] with the range beside it.
struct Series {
    first: Measured,
    first_range: (f64, f64),
    steady: Measured,
    steady_range: (f64, f64),
}

/// Five times: a new client, its first batch (opening every connection, as a container's
/// first batch to a receiver does), then a second on the connections the first left in
/// the pool (a warm container's steady state). The median by wall time is the figure: one
/// batch moves by a quarter between runs on a shared machine.
async fn series(receiver: &ReceiverThread, size: usize, round: usize) -> Series {
    let (mut firsts, mut steadies) = (Vec::new(), Vec::new());
    for rep in 0..REPEATS {
        let receiver = &receiver.receiver;
        let (deps, subscription) = deps(&receiver.url(), receiver.root()).await;
        let base = 2 * (round * REPEATS + rep);
        firsts.push(measure(&deps, batch(&subscription, size, base + 1), receiver).await);
        steadies.push(measure(&deps, batch(&subscription, size, base + 2), receiver).await);
        // The client's connections close on the runtime's tasks once it is dropped: let
        // them, so the next first batch does not pay for it (a new container has no old
        // client to close).
        drop(deps);
        tokio::time::sleep(SETTLE).await;
    }
    let (first, first_range) = median_by_wall(firsts);
    let (steady, steady_range) = median_by_wall(steadies);
    Series {
        first,
        first_range,
        steady,
        steady_range,
    }
}

/// A size's figures for bench.json: the steady state, its first batch inside.
fn series_json(series: &Series, runtime: &str, size: usize) -> Value {
    let one = |m: &Measured, range: (f64, f64)| {
        json!({
            "wall_ms": m.wall_ms,
            "efficiency": m.efficiency,
            "efficiency_range": [range.0, range.1],
            "cpu_us_per_webhook": m.cpu_us_per_webhook,
            "receiver_cpu_us_per_webhook": m.receiver_cpu_us_per_webhook,
            "connections_opened": m.connections,
            "allocations_per_webhook": m.allocations_per_webhook,
            "allocated_bytes_per_webhook": m.allocated_bytes_per_webhook,
        })
    };
    let mut steady = one(&series.steady, series.steady_range);
    steady["first_batch"] = one(&series.first, series.first_range);
    steady["runtime"] = json!(runtime);
    steady["batch"] = json!(size);
    steady
}

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    // What each record of a batch allocates when it starts and holds until it is done.
    let record_future = json!({
        "dynamodb_stores": record_future_bytes::<AwsPorts>(),
        "in_memory_stores": record_future_bytes::<MemoryPortsWith<HttpWebhookSender>>(),
    });
    table.row(
        "a record's future, deliver",
        format!("{} B", record_future["dynamodb_stores"]),
        format!(
            "with deliver's DynamoDB stores; {} B with the in-memory stores below; each record of a batch allocates one as it starts and holds it until it is done",
            record_future["in_memory_stores"]
        ),
    );
    let plain = ReceiverThread::start(None);
    // The runtimes the deliver bootstrap runs on (herald_aws::lambda::runtime): one thread
    // below two vCPUs' worth of memory (the template's 256 MB), a worker per vCPU above
    // (here the machine's two cores, as at 3538 MB). The handler's future runs on this
    // thread, as under `lambda_runtime`; on the multi-thread runtime the batch's records
    // and hyper's connection tasks run on the workers.
    // This thread blocks on the one-thread runtime: its allocations are the handler's, as
    // are the workers'.
    allocations::count_this_thread();
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(HANDLER_THREADS)
        .on_thread_start(allocations::count_this_thread)
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    for (runtime, flavor, label) in [
        (
            &one_thread,
            "current_thread",
            "one thread (< 2 vCPUs, the template's 256 MB)",
        ),
        (
            &multi_thread,
            "multi_thread",
            "two workers (2 vCPUs, 3538 MB)",
        ),
    ] {
        runtime.block_on(async {
            for (round, size) in SIZES.into_iter().enumerate() {
                let series = series(&plain, size, round).await;
                let Series {
                    first,
                    first_range,
                    steady,
                    steady_range,
                } = &series;
                let target = match size {
                    100 => " (target ≤ 1.3)",
                    1000 => " (target ≤ 2)",
                    _ => "",
                };
                // #21: a first batch of 1000 on all-new connections, on one thread.
                let first_target = if size == 1000 && flavor == "current_thread" {
                    " (target ≤ 1.5)"
                } else {
                    ""
                };
                table.row(
                    format!("batch efficiency, {size} webhooks, {label}"),
                    format!("{:.2}", steady.efficiency),
                    format!(
                        "{:.0} ms / 50 ms, pooled connections{target}, {:.2}–{:.2} over {REPEATS}; {:.2} ({:.0} ms; {:.2}–{:.2}) for the first batch, all new connections{first_target}",
                        steady.wall_ms,
                        steady_range.0,
                        steady_range.1,
                        first.efficiency,
                        first.wall_ms,
                        first_range.0,
                        first_range.1
                    ),
                );
                table.row(
                    format!("CPU per webhook, batch of {size}, {label}"),
                    format!("{:.0} µs", steady.cpu_us_per_webhook),
                    format!(
                        "deliver handler: sign, POST, record; {:.0} µs with new connections; the receiver, on the same cores: {:.0} µs ({:.0} µs); the handler's allocations a webhook {:.0} ({:.0} B), {:.0} ({:.0} B) with new connections",
                        first.cpu_us_per_webhook,
                        steady.receiver_cpu_us_per_webhook,
                        first.receiver_cpu_us_per_webhook,
                        steady.allocations_per_webhook,
                        steady.allocated_bytes_per_webhook,
                        first.allocations_per_webhook,
                        first.allocated_bytes_per_webhook,
                    ),
                );
                results.push(series_json(&series, flavor, size));
            }
        });
    }
    // The floor under those: the same receiver, the same number of POSTs on one thread,
    // written by hand with nothing of Herald's.
    let bare = one_thread.block_on(bare::series(plain.receiver.addr(), 1000, SETTLE));
    table.row(
        "1000 POSTs by hand, no client, one thread",
        format!("{:.2}", bare.first.efficiency),
        format!(
            "the floor under the first batch above: {:.0} ms / 50 ms on new connections, {:.0} µs of CPU a POST; {:.2} ({:.0} ms, {:.0} µs) on the same connections again; no signing, record, pool or connection task, median of {REPEATS}",
            bare.first.wall_ms,
            bare.first.cpu_us_per_post,
            bare.pooled.efficiency,
            bare.pooled.wall_ms,
            bare.pooled.cpu_us_per_post,
        ),
    );
    plain.stop();
    // Receivers as they are deployed: over TLS, offering HTTP/2 (one connection carries
    // every POST once the client knows) or HTTP/1.1 only (a connection, and a TLS
    // handshake, for each POST in flight). One thread, the template's.
    let mut over_tls = Vec::new();
    for (offer, name, label) in [
        (Offer::Http2, "h2", "HTTPS offering HTTP/2"),
        (Offer::Http1, "http/1.1", "HTTPS, HTTP/1.1 only"),
    ] {
        let receiver = ReceiverThread::start(Some(offer));
        one_thread.block_on(async {
            for (round, size) in SIZES.into_iter().enumerate() {
                let series = series(&receiver, size, SIZES.len() + round).await;
                let Series {
                    first,
                    first_range,
                    steady,
                    steady_range,
                } = &series;
                table.row(
                    format!("batch efficiency, {size} webhooks, one thread, {label}"),
                    format!("{:.2}", steady.efficiency),
                    format!(
                        "{:.0} ms / 50 ms pooled, {:.2}–{:.2}; first batch {:.2} ({:.0} ms; {:.2}–{:.2}), connections opened: {}; CPU a webhook {:.0} µs pooled, {:.0} µs first; the receiver {:.0} µs ({:.0} µs); allocations a webhook {:.0} pooled, {:.0} first",
                        steady.wall_ms,
                        steady_range.0,
                        steady_range.1,
                        first.efficiency,
                        first.wall_ms,
                        first_range.0,
                        first_range.1,
                        first.connections,
                        steady.cpu_us_per_webhook,
                        first.cpu_us_per_webhook,
                        steady.receiver_cpu_us_per_webhook,
                        first.receiver_cpu_us_per_webhook,
                        steady.allocations_per_webhook,
                        first.allocations_per_webhook,
                    ),
                );
                let mut result = series_json(&series, "current_thread", size);
                result["alpn_offered"] = json!(name);
                over_tls.push(result);
            }
        });
        receiver.stop();
    }
    let floor = one_thread.block_on(connection_floor(1000));
    table.row(
        "1000 new loopback connections alone, one thread",
        format!("{:.0} µs", floor.cpu_us_per_connection),
        format!(
            "CPU a connection on the connecting thread, no HTTP (socket, connect, the kernel's work for both ends of the handshake), median of {REPEATS}; {:.0} ms for the 1000: part of every first batch's extra CPU above",
            floor.wall_ms
        ),
    );
    json!({
        "receiver_delay_ms": RECEIVER_DELAY.as_millis() as u64,
        "concurrency": CONCURRENCY,
        "stores": "in-memory (Herald's concurrency, not moto's)",
        "record_future_bytes": record_future,
        "batches": results,
        "over_tls": over_tls,
        "posts_by_hand": {
            "posts": 1000,
            "first": {
                "wall_ms": bare.first.wall_ms,
                "efficiency": bare.first.efficiency,
                "cpu_us_per_post": bare.first.cpu_us_per_post,
            },
            "pooled": {
                "wall_ms": bare.pooled.wall_ms,
                "efficiency": bare.pooled.efficiency,
                "cpu_us_per_post": bare.pooled.cpu_us_per_post,
            },
        },
        "loopback_connections_alone": {
            "connections": 1000,
            "cpu_us_per_connection": floor.cpu_us_per_connection,
            "wall_ms": floor.wall_ms,
        },
    })
}

struct ConnectionFloor {
    cpu_us_per_connection: f64,
    wall_ms: f64,
}

/// What `n` new connections to a loopback listener cost the thread that opens them, with
/// nothing sent: on loopback the kernel's work for both ends of each handshake runs in
/// the connecting thread, so this is the share of a first batch's CPU that no HTTP
/// client can save here. The listener accepts on a thread of its own; the median of
/// five rounds.
async fn connection_floor(n: usize) -> ConnectionFloor {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let acceptor = std::thread::Builder::new()
        .name(RECEIVER_THREADS.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = herald_tests::receiver::listen_on_loopback();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                for _ in 0..n * REPEATS {
                    drop(listener.accept().await.unwrap());
                }
            });
        })
        .unwrap();
    let addr = addr_rx.recv().unwrap();
    let mut rounds = Vec::new();
    for _ in 0..REPEATS {
        let cpu = handler_cpu();
        let started = Instant::now();
        let connections =
            futures::future::join_all((0..n).map(|_| tokio::net::TcpStream::connect(addr))).await;
        let wall = started.elapsed();
        let cpu = handler_cpu().saturating_sub(cpu);
        assert!(
            connections.iter().all(Result::is_ok),
            "a loopback connect failed"
        );
        rounds.push(ConnectionFloor {
            cpu_us_per_connection: cpu.as_secs_f64() * 1e6 / n as f64,
            wall_ms: wall.as_secs_f64() * 1e3,
        });
    }
    acceptor.join().unwrap();
    rounds.sort_by(|a, b| a.cpu_us_per_connection.total_cmp(&b.cpu_us_per_connection));
    rounds.swap_remove(rounds.len() / 2)
}
