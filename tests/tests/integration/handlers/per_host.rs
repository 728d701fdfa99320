//! A batch aimed at one host keeps at most `per_host` POSTs to it in flight, while the
//! batch's other hosts go on beside it; on a runtime with several workers the batch's
//! records run on all of them, within the batch's bound.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_core::delivery::DeliveryTask;
use herald_core::delivery::settings::DeliverySettings;
use herald_core::event::{Event, EventType};
use herald_core::ids::{EventId, SubscriptionId, TenantId};
use herald_core::ports::{OutgoingWebhook, SendOutcome, SubscriptionStore, WebhookSender};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_deliver::{DeliverDeps, process_batch};
use herald_testkit::{MemoryPortsWith, active_subscription};
use serde_json::json;

/// Answers 200 after a pause and remembers the most POSTs in flight to each host.
#[derive(Default)]
struct CountingSender {
    state: Mutex<(HashMap<String, usize>, HashMap<String, usize>)>,
}

impl CountingSender {
    fn peak(&self, host: &str) -> usize {
        self.state.lock().unwrap().1.get(host).copied().unwrap_or(0)
    }
}

impl WebhookSender for CountingSender {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        let host = webhook.url.host().to_owned();
        {
            let mut state = self.state.lock().unwrap();
            let now = {
                let in_flight = state.0.entry(host.clone()).or_default();
                *in_flight += 1;
                *in_flight
            };
            let peak = state.1.entry(host.clone()).or_default();
            *peak = (*peak).max(now);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        *self.state.lock().unwrap().0.get_mut(&host).unwrap() -= 1;
        SendOutcome::Answered {
            status: 200,
            retry_after: None,
            excerpt: String::new(),
            latency: Duration::from_millis(30),
        }
    }
}

/// The SQS record of a task for `subscription` (tenant `acme`), the `i`th of a batch.
pub(crate) fn task(subscription: &str, i: usize) -> serde_json::Value {
    let event = Event {
        id: EventId::parse(&format!("ord_{subscription}_{i}")).unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: Utc::now(),
        data: serde_json::Map::new(),
        subject: None,
    };
    let task = DeliveryTask::new(
        &TenantId::parse("acme").unwrap(),
        &SubscriptionId::parse(subscription).unwrap(),
        &event,
        Utc::now(),
    );
    json!({"messageId": format!("m-{subscription}-{i}"), "receiptHandle": format!("r-{i}"), "body": task.to_message_body()})
}

/// Deliver on in-memory stores with this sender and these bounds.
pub(crate) fn deps<W: WebhookSender + 'static>(
    sender: W,
    concurrency: usize,
    per_host: usize,
) -> Arc<DeliverDeps<MemoryPortsWith<W>>> {
    Arc::new(DeliverDeps {
        xray: herald_aws::xray::XRay::off(),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        signers: Default::default(),
        ports: herald_testkit::adapters_with(sender),
        settings: DeliverySettings {
            concurrency,
            per_host,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
            ..DeliverySettings::default()
        },
    })
}

#[tokio::test]
async fn posts_to_one_host_are_bounded_and_other_hosts_are_not_held_up() {
    let deps = deps(CountingSender::default(), 20, 3);
    let busy = "sub_01JD5Q8Z6X0000000000000001";
    let other = "sub_01JD5Q8Z6X0000000000000002";
    for (id, url) in [
        (busy, "https://busy.example.com/in"),
        (other, "https://other.example.com/in"),
    ] {
        deps.ports
            .subscriptions
            .create(&active_subscription(
                "acme",
                SubscriptionId::parse(id).unwrap(),
                SubscriptionUrl::parse(url, &UrlPolicy::default()).unwrap(),
                &["order.*"],
            ))
            .await
            .unwrap();
    }
    let records: Vec<_> = (0..12)
        .map(|i| task(busy, i))
        .chain((0..4).map(|i| task(other, i)))
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({"Records": records})).unwrap();

    let outcome = process_batch(&deps, event).await;

    assert!(outcome.response.batch_item_failures.is_empty());
    assert_eq!(deps.ports.ledger.records().len(), 16);
    assert_eq!(deps.ports.sender.peak("busy.example.com"), 3);
    // The other host's four ran beside the busy host's, bounded by their own limit.
    assert_eq!(deps.ports.sender.peak("other.example.com"), 3);
}

/// Answers 200 after holding its thread for a moment and then waiting; remembers the most
/// POSTs in flight at once and the threads they ran on.
#[derive(Default)]
struct ThreadRecordingSender {
    state: Mutex<(usize, usize, HashSet<ThreadId>)>,
}

impl WebhookSender for ThreadRecordingSender {
    async fn send(&self, _webhook: OutgoingWebhook) -> SendOutcome {
        {
            let mut state = self.state.lock().unwrap();
            state.0 += 1;
            state.1 = state.1.max(state.0);
            state.2.insert(std::thread::current().id());
        }
        // CPU work of a record (signing, rendering): the thread is busy meanwhile, so
        // another record can only start at once on another worker.
        std::thread::sleep(Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.state.lock().unwrap().0 -= 1;
        SendOutcome::Answered {
            status: 200,
            retry_after: None,
            excerpt: String::new(),
            latency: Duration::from_millis(25),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_workers_a_batch_runs_on_all_of_them_within_its_bound() {
    let deps = deps(ThreadRecordingSender::default(), 4, 100);
    let subscription = "sub_01JD5Q8Z6X0000000000000003";
    deps.ports
        .subscriptions
        .create(&active_subscription(
            "acme",
            SubscriptionId::parse(subscription).unwrap(),
            SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
            &["order.*"],
        ))
        .await
        .unwrap();
    let records: Vec<_> = (0..24).map(|i| task(subscription, i)).collect();
    let event: SqsEvent = serde_json::from_value(json!({"Records": records})).unwrap();

    let outcome = process_batch(&deps, event).await;

    assert!(outcome.response.batch_item_failures.is_empty());
    assert_eq!(outcome.reports.len(), 24);
    assert_eq!(deps.ports.ledger.records().len(), 24);
    let (in_flight, peak, threads) = deps.ports.sender.state.lock().unwrap().clone();
    assert_eq!(in_flight, 0);
    assert_eq!(
        peak, 4,
        "the batch's bound holds across workers and is reached"
    );
    assert_eq!(threads.len(), 2, "every worker ran records: {threads:?}");
    assert!(
        !threads.contains(&std::thread::current().id()),
        "the records ran on the workers, not on the thread polling the handler"
    );
}
