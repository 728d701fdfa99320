//! Batch efficiency and CPU per webhook of the deliver handler.
//!
//! The handler runs with in-memory stores and queue (so the figures are Herald's
//! concurrency and CPU, not moto's serialised writes) and the real HTTP sender, POSTing to
//! a receiver on another thread that answers after 50 ms. The handler's runtime has one
//! thread, so that thread's CPU time is the handler's (signing, JSON, HTTP client).

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_deliver::handler::DeliverSettings;
use herald_deliver::{DeliverDeps, process_batch};
use herald_shared::delivery::DeliveryTask;
use herald_shared::event::{Event, EventType};
use herald_shared::http_sender::{HttpWebhookSender, SenderSettings};
use herald_shared::ids::{EventId, SubscriptionId, TenantId};
use herald_shared::memory::{
    InMemoryDeliveryLedger, InMemoryDeliveryQueue, InMemoryEventLog, InMemorySubscriptionStore,
    active_subscription,
};
use herald_shared::ports::{SubscriptionStore, SystemClock};
use herald_shared::retry::RetryPolicy;
use herald_shared::url_guard::{SubscriptionUrl, SystemResolver, UrlPolicy};
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

use crate::Table;

const RECEIVER_DELAY: Duration = Duration::from_millis(50);
const SIZES: [usize; 3] = [10, 100, 1000];
/// The handler's bound on deliveries at once (HERALD_DELIVERY_CONCURRENCY's maximum).
const CONCURRENCY: usize = 1000;

type Deps = DeliverDeps<
    InMemorySubscriptionStore,
    InMemoryDeliveryLedger,
    InMemoryEventLog,
    InMemoryDeliveryQueue,
    HttpWebhookSender,
    SystemClock,
>;

async fn deps(url: &str) -> (Deps, SubscriptionId) {
    let policy = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
    };
    let sender = HttpWebhookSender::new(
        SenderSettings {
            policy,
            ..SenderSettings::default()
        },
        Arc::new(SystemResolver),
    )
    .unwrap();
    let deps = DeliverDeps {
        subscriptions: InMemorySubscriptionStore::default(),
        ledger: InMemoryDeliveryLedger::default(),
        events: InMemoryEventLog::default(),
        queue: InMemoryDeliveryQueue::default(),
        sender,
        clock: SystemClock,
        settings: DeliverSettings {
            retry: RetryPolicy::parse("exponential", "3d").unwrap(),
            idempotency_key_prefix: String::new(),
            concurrency: CONCURRENCY,
            per_host: CONCURRENCY,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
            auto_disable_after: Duration::from_secs(5 * 86_400),
            keys: Default::default(),
        },
    };
    let now = Utc::now();
    let id = SubscriptionId::generate(now, &mut rand::rng());
    deps.subscriptions
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

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    // The receiver on its own thread and runtime, so its work is not counted.
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let receiver_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let receiver =
                TestReceiver::start(Script::always(200).with_delay(RECEIVER_DELAY)).await;
            url_tx.send(receiver.url()).unwrap();
            let _ = stop_rx.await;
        });
    });
    let url = url_rx.recv().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = Vec::new();
    runtime.block_on(async {
        let (deps, subscription) = deps(&url).await;
        // One warm-up batch: the connection pool and the first TLS-free handshakes.
        let _ = process_batch(&deps, batch(&subscription, 10, 0)).await;
        for (round, size) in SIZES.into_iter().enumerate() {
            let event = batch(&subscription, size, round + 1);
            let cpu = crate::thread_cpu();
            let started = Instant::now();
            let outcome = process_batch(&deps, event).await;
            let wall = started.elapsed();
            let cpu = crate::thread_cpu().saturating_sub(cpu);
            let failures = outcome.response.batch_item_failures.len();
            assert_eq!(failures, 0, "a batch of {size} had failures");
            let efficiency = wall.as_secs_f64() / RECEIVER_DELAY.as_secs_f64();
            let cpu_per_webhook = cpu.as_secs_f64() * 1e6 / size as f64;
            results.push(json!({
                "batch": size,
                "wall_ms": wall.as_secs_f64() * 1e3,
                "efficiency": efficiency,
                "cpu_us_per_webhook": cpu_per_webhook,
            }));
            let target = match size {
                100 => " (target ≤ 1.3)",
                1000 => " (target ≤ 2)",
                _ => "",
            };
            table.row(
                format!("batch efficiency, {size} webhooks"),
                format!("{efficiency:.2}"),
                format!("{:.0} ms / 50 ms{target}", wall.as_secs_f64() * 1e3),
            );
            table.row(
                format!("CPU per webhook, batch of {size}"),
                format!("{cpu_per_webhook:.0} µs"),
                "deliver handler: sign, POST, record",
            );
        }
    });
    let _ = stop_tx.send(());
    receiver_thread.join().unwrap();
    json!({
        "receiver_delay_ms": RECEIVER_DELAY.as_millis() as u64,
        "concurrency": CONCURRENCY,
        "stores": "in-memory (Herald's concurrency, not moto's)",
        "batches": results,
    })
}
