//! CPU of one publish call in the ingest handler, for the billed duration of an ingest
//! invocation: the API Gateway event parsed, the events validated, matched and recorded,
//! the tasks queued, the answer serialised; with in-memory stores, so only Herald's CPU
//! (the round trips are priced apart).

use std::time::Duration;

use chrono::Utc;
use herald_core::ids::SubscriptionId;
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_testkit::active_subscription;
use serde_json::json;

/// Calls measured; the median is the figure.
pub const CALLS: usize = 21;

/// An order event's `data`: the order and its amount, and with `pad` > 0 a `note` that
/// brings the serialised `data` to `pad` bytes (a realistic payload's size).
pub fn order_data(order: &str, pad: usize) -> serde_json::Value {
    let mut data = json!({"order": order, "amount": 1250});
    let bare = data.to_string().len() + r#","note":"""#.len();
    if pad > bare {
        data["note"] = json!("x".repeat(pad - bare));
    }
    data
}

/// An API Gateway (HTTP API, payload 2.0) event publishing `events` events for `acme`,
/// as Lambda hands it to the function.
fn publish_event(round: usize, events: usize, pad: usize) -> String {
    let body = json!({"events": (0..events).map(|i| json!({
        "id": format!("ord_{round}_{i}"),
        "type": "order.paid",
        "data": order_data(&format!("ord_{round}_{i}"), pad),
    })).collect::<Vec<_>>()});
    crate::publish_request(&body)
}

/// The median CPU of a publish call of `events` events (`data` of `pad` bytes, 0 for the
/// bare order) to `subscriptions` subscriptions.
pub fn per_call(events: usize, pad: usize, subscriptions: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let deps = herald_ingest::IngestDeps {
            xray: herald_aws::xray::XRay::off(),
            ports: herald_testkit::adapters(),
            tenant_claim: "tenant".into(),
            max_deliveries_per_publish: 10_000,
            max_requests_per_second: 0,
        };
        let policy = UrlPolicy::default();
        for _ in 0..subscriptions {
            deps.ports
                .subscriptions
                .create(&active_subscription(
                    "acme",
                    SubscriptionId::generate(Utc::now(), &mut rand::rng()),
                    SubscriptionUrl::parse("https://hooks.example.com/in", &policy).unwrap(),
                    &["order.*"],
                ))
                .await
                .unwrap();
        }
        let mut cpu = Vec::with_capacity(CALLS);
        for round in 0..CALLS {
            let event = publish_event(round, events, pad);
            let before = crate::thread_cpu();
            let request = lambda_http::request::from_str(&event).expect("a gateway event");
            let response = herald_ingest::handle(&deps, request).await;
            // As the runtime hands it back to API Gateway.
            let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
            let answer = json!({"statusCode": response.status().as_u16(), "body": body});
            let answer = serde_json::to_vec(&answer).unwrap();
            cpu.push(crate::thread_cpu().saturating_sub(before));
            assert_eq!(
                response.status(),
                202,
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        cpu.sort();
        cpu[cpu.len() / 2]
    })
}
