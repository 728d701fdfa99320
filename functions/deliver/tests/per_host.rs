//! A batch aimed at one host keeps at most `per_host` POSTs to it in flight, while the
//! batch's other hosts go on beside it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_deliver::handler::DeliverSettings;
use herald_deliver::{DeliverDeps, process_batch};
use herald_shared::delivery::DeliveryTask;
use herald_shared::event::{Event, EventType};
use herald_shared::ids::{EventId, SubscriptionId, TenantId};
use herald_shared::memory::{
    FixedClock, InMemoryDeliveryLedger, InMemoryDeliveryQueue, InMemoryEventLog,
    InMemorySubscriptionStore, active_subscription,
};
use herald_shared::ports::{OutgoingWebhook, SendOutcome, SubscriptionStore, WebhookSender};
use herald_shared::retry::RetryPolicy;
use herald_shared::url_guard::{SubscriptionUrl, UrlPolicy};
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

fn task(subscription: &str, i: usize) -> serde_json::Value {
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

#[tokio::test]
async fn posts_to_one_host_are_bounded_and_other_hosts_are_not_held_up() {
    let deps = DeliverDeps {
        subscriptions: InMemorySubscriptionStore::default(),
        ledger: InMemoryDeliveryLedger::default(),
        events: InMemoryEventLog::default(),
        queue: InMemoryDeliveryQueue::default(),
        sender: CountingSender::default(),
        clock: FixedClock::at(Utc::now()),
        settings: DeliverSettings {
            retry: RetryPolicy::parse("exponential", "3d").unwrap(),
            idempotency_key_prefix: String::new(),
            concurrency: 20,
            per_host: 3,
            lease: Duration::from_secs(60),
            retention: Duration::from_secs(86_400),
            auto_disable_after: Duration::from_secs(5 * 86_400),
            keys: Default::default(),
        },
    };
    let busy = "sub_01JD5Q8Z6X0000000000000001";
    let other = "sub_01JD5Q8Z6X0000000000000002";
    for (id, url) in [
        (busy, "https://busy.example.com/in"),
        (other, "https://other.example.com/in"),
    ] {
        deps.subscriptions
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
    assert_eq!(deps.ledger.records().len(), 16);
    assert_eq!(deps.sender.peak("busy.example.com"), 3);
    // The other host's four ran beside the busy host's, bounded by their own limit.
    assert_eq!(deps.sender.peak("other.example.com"), 3);
}
