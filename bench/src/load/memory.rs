//! Herald's own handlers with in-memory stores: ingest's handler answers each publish (the
//! API Gateway event parsed, validated, matched, recorded, queued), a small event source
//! here plays SQS for the tasks it queued, and deliver's handler POSTs them with the real
//! HTTP sender. No DynamoDB, SQS or API Gateway round trip, so what this target reaches is
//! Herald's own ceiling on this machine's cores.
//!
//! The event source keeps SQS's contract as deliver relies on it: a task is visible as
//! soon as it is queued; a batch of up to ten goes to one of `pollers` handlers at once
//! (as concurrent Lambda instances); a record the handler reports failed comes back after
//! the visibility it set (its retry delay), or after the queue's visibility timeout when it
//! set none; every other record is deleted. Tasks deliver queues itself (to the slow
//! lane, whose tasks are marked so) join the same queue. The stores' clock follows the
//! wall clock.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_aws::http::resolver::SystemResolver;
use herald_aws::http::sender::{HttpWebhookSender, SenderSettings};
use herald_core::delivery::DeliveryState;
use herald_core::delivery::retry::RetryPolicy;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::ids::SubscriptionId;
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, process_batch};
use herald_ingest::IngestDeps;
use herald_testkit::{MemoryPorts, MemoryPortsWith, active_subscription};
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Settings, event_number_of};

type Deliver = DeliverDeps<MemoryPortsWith<HttpWebhookSender>>;
type Ingest = IngestDeps<MemoryPorts>;

/// Records a batch holds at most: the template's batch size.
const BATCH_SIZE: usize = 10;
/// How long a record reported failed without a visibility of its own stays hidden.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle poller looks for hidden records whose time has come.
const IDLE_LOOK: Duration = Duration::from_millis(5);
/// A delivery attempt's timeout, as `make test`'s local runner sets it.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Message {
    id: String,
    body: String,
    receives: u32,
}

/// The queue the tasks wait on between ingest and deliver.
#[derive(Default)]
struct Queue {
    visible: Mutex<VecDeque<Message>>,
    hidden: Mutex<Vec<(Instant, Message)>>,
    /// Visibility changes deliver made, by receipt handle, not yet matched to their record.
    changes: Mutex<HashMap<String, Duration>>,
    arrived: Notify,
    next_id: AtomicU64,
}

impl Queue {
    fn push(&self, bodies: impl IntoIterator<Item = String>) {
        let mut visible = lock(&self.visible);
        for body in bodies {
            let id = format!("m-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
            visible.push_back(Message {
                id,
                body,
                receives: 0,
            });
        }
        drop(visible);
        self.arrived.notify_one();
    }

    /// Up to a batch of visible records, hidden ones whose time has come first made
    /// visible again.
    fn receive(&self) -> Vec<Message> {
        let now = Instant::now();
        {
            let mut hidden = lock(&self.hidden);
            if hidden.iter().any(|(until, _)| *until <= now) {
                let mut visible = lock(&self.visible);
                let (due, later): (Vec<_>, Vec<_>) =
                    hidden.drain(..).partition(|(until, _)| *until <= now);
                *hidden = later;
                visible.extend(due.into_iter().map(|(_, m)| m));
            }
        }
        let mut visible = lock(&self.visible);
        let take = visible.len().min(BATCH_SIZE);
        let batch: Vec<Message> = visible.drain(..take).collect();
        if !visible.is_empty() {
            // More for another poller.
            self.arrived.notify_one();
        }
        batch
    }
}

pub struct MemoryTarget {
    ingest: Arc<Ingest>,
    deliver: Arc<Deliver>,
    queue: Arc<Queue>,
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<()>>,
    clock: Option<std::thread::JoinHandle<()>>,
}

/// An API Gateway (HTTP API, payload 2.0) event publishing event `n` for `acme`, as
/// Lambda hands it to ingest.
fn publish_request(n: u64) -> String {
    let body = json!({"id": format!("load-{n}"), "type": "load.tick", "data": {"n": n}});
    crate::publish_request(&body)
}

/// The batch as the event source mapping hands it to deliver.
fn sqs_event(batch: &[Message]) -> SqsEvent {
    let records: Vec<_> = batch
        .iter()
        .map(|m| {
            json!({
                "messageId": m.id,
                "receiptHandle": receipt(m),
                "body": m.body,
                "attributes": {"ApproximateReceiveCount": m.receives.to_string()},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:load-delivery",
            })
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).expect("an SQS event")
}

fn receipt(message: &Message) -> String {
    format!("{}#{}", message.id, message.receives)
}

/// One event source poller: a batch at a time, as one Lambda instance takes them.
async fn poll(deliver: Arc<Deliver>, queue: Arc<Queue>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mut batch = queue.receive();
        if batch.is_empty() {
            let _ = tokio::time::timeout(IDLE_LOOK, queue.arrived.notified()).await;
            continue;
        }
        for message in &mut batch {
            message.receives += 1;
        }
        let outcome = process_batch(&deliver, sqs_event(&batch)).await;
        // Tasks deliver queued itself (a delivery moved to the slow lane, which its task
        // is marked for) wait on the same queue.
        let requeued = std::mem::take(&mut *lock(&deliver.ports.queue.enqueued));
        if !requeued.is_empty() {
            queue.push(requeued.iter().map(|task| task.to_message_body()));
        }
        // The visibility changes deliver asked of the queue, this batch's and maybe
        // another's, matched to their records by receipt handle.
        let calls = std::mem::take(&mut *lock(&deliver.ports.queue.visibility_calls));
        let mut changes = lock(&queue.changes);
        changes.extend(
            calls
                .into_iter()
                .flatten()
                .map(|c| (c.receipt_handle, c.delay)),
        );
        let handed_back: HashSet<&str> = outcome
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let now = Instant::now();
        let mut back = Vec::new();
        for message in batch {
            let delay = changes.remove(&receipt(&message));
            if handed_back.contains(message.id.as_str()) {
                back.push((now + delay.unwrap_or(VISIBILITY_TIMEOUT), message));
            }
        }
        drop(changes);
        lock(&queue.hidden).extend(back);
    }
}

impl MemoryTarget {
    pub async fn start(receiver_url: &str, settings: &Settings) -> Self {
        let policy = UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            ..UrlPolicy::default()
        };
        let sender = HttpWebhookSender::new(
            SenderSettings {
                policy: policy.clone(),
                timeout: DELIVERY_TIMEOUT,
                ..SenderSettings::default()
            },
            Arc::new(SystemResolver),
        )
        .expect("the HTTP sender");
        let retry = RetryPolicy::parse(&settings.retry_schedule, &settings.retry_window)
            .expect("a retry schedule and window");
        let deliver = Arc::new(DeliverDeps {
            xray: herald_aws::xray::XRay::off(),
            graphql: herald_aws::graphql::GraphqlSource::off(),
            signers: Default::default(),
            ports: herald_testkit::adapters_with(sender),
            settings: DeliverySettings {
                retry,
                lease: DeliverySettings::lease_for(DELIVERY_TIMEOUT),
                ..DeliverySettings::default()
            },
        });
        let ingest = Arc::new(IngestDeps {
            xray: herald_aws::xray::XRay::off(),
            ports: herald_testkit::adapters(),
            tenant_claim: "tenant".into(),
            max_deliveries_per_publish: 10_000,
            max_requests_per_second: 0,
        });
        // The same subscription in ingest's store and deliver's.
        let subscription = active_subscription(
            "acme",
            SubscriptionId::generate(Utc::now(), &mut rand::rng()),
            SubscriptionUrl::parse(receiver_url, &policy).expect("the receiver's URL"),
            &["load.*"],
        );
        for store in [&ingest.ports.subscriptions, &deliver.ports.subscriptions] {
            store.create(&subscription).await.expect("the subscription");
        }
        let stop = Arc::new(AtomicBool::new(false));
        // The stores' clocks stand still unless moved: keep them on the wall clock.
        let clock = {
            let (ingest, deliver, stop) =
                (Arc::clone(&ingest), Arc::clone(&deliver), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("load-clock".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let now = Utc::now();
                        *lock(&ingest.ports.clock.0) = now;
                        *lock(&deliver.ports.clock.0) = now;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
                .expect("the clock's thread")
        };
        let queue = Arc::new(Queue::default());
        let pollers = (0..settings.memory_pollers.max(1))
            .map(|_| {
                tokio::spawn(poll(
                    Arc::clone(&deliver),
                    Arc::clone(&queue),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        Self {
            ingest,
            deliver,
            queue,
            stop,
            pollers,
            clock: Some(clock),
        }
    }

    /// Publishes event `n` through ingest's handler; true when it answered 202. The tasks
    /// it queued are visible to the pollers at once, as SQS makes a sent message.
    pub async fn publish(&self, n: u64) -> bool {
        let Ok(request) = lambda_http::request::from_str(&publish_request(n)) else {
            return false;
        };
        let response = herald_ingest::handle(&self.ingest, request).await;
        let queued = std::mem::take(&mut *lock(&self.ingest.ports.queue.enqueued));
        self.queue
            .push(queued.iter().map(|task| task.to_message_body()));
        response.status() == 202
    }

    /// How many dead letters deliver has sent so far: cheap, for watching the drain.
    pub fn dead_letters_sent(&self) -> usize {
        lock(&self.deliver.ports.queue.dead_letter_calls)
            .iter()
            .map(Vec::len)
            .sum()
    }

    /// The events whose delivery the attempt log records failed (each sent to the
    /// dead-letter queue).
    pub fn dead_lettered(&self) -> BTreeSet<u64> {
        self.deliver
            .ports
            .ledger
            .records()
            .into_iter()
            .filter(|r| r.state == DeliveryState::Failed)
            .filter_map(|r| event_number_of(r.event_id.as_str()))
            .collect()
    }

    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for poller in self.pollers.drain(..) {
            let _ = poller.await;
        }
        if let Some(clock) = self.clock.take() {
            let _ = clock.join();
        }
    }
}
