//! CPU of one publish call in the ingest handler, for the billed duration of an ingest
//! invocation: the API Gateway event parsed, the events validated, matched and recorded,
//! the tasks queued, the answer serialised; with in-memory stores, so only Herald's CPU
//! (the round trips are priced apart).

use std::time::Duration;

use chrono::Utc;
use herald_core::ids::SubscriptionId;
use herald_core::ports::{Ports, SubscriptionStore};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_ingest::IngestDeps;
use herald_testkit::active_subscription;
use serde_json::json;

/// Calls measured; the median is the figure.
pub const CALLS: usize = 21;

/// An order event's `data`: the order and its amount, and with `pad` > 0 the order's
/// lines and a `note`, to `pad` bytes serialised. The lines are what a shop sends (SKUs,
/// product names, quantities, prices), drawn from a generator seeded with the order's id;
/// the note is words. So the payload is as compressible as real JSON is, not a run of
/// one character: Herald keeps events deflated (docs/DECISIONS.md, "Large events"), and
/// the bench's payloads must not flatter that. `make bench` prints how far they deflate.
pub fn order_data(order: &str, pad: usize) -> serde_json::Value {
    use rand::{Rng, SeedableRng};
    let mut data = json!({"order": order, "amount": 1250});
    // `,"lines":[]` and `,"note":""` around what is drawn.
    let frame = data.to_string().len() + r#","lines":[],"note":"""#.len();
    if pad <= frame {
        return data;
    }
    let seed = order.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let word = |rng: &mut rand::rngs::StdRng| WORDS[rng.random_range(0..WORDS.len())];
    let mut lines = Vec::new();
    let mut used = frame;
    loop {
        let line = json!({
            "sku": format!("SKU-{:06}", rng.random_range(0..1_000_000)),
            "name": format!("{} {} {}", word(&mut rng), word(&mut rng), word(&mut rng)),
            "quantity": rng.random_range(1..6),
            "unit_price": {"amount": rng.random_range(100..20_000), "currency": "EUR"},
        });
        let len = line.to_string().len() + usize::from(!lines.is_empty());
        // Leave at least a short note, so every size is reached exactly.
        if used + len + 40 > pad {
            break;
        }
        used += len;
        lines.push(line);
    }
    let mut note = String::new();
    while note.len() < pad - used {
        if !note.is_empty() {
            note.push(' ');
        }
        note.push_str(word(&mut rng));
    }
    note.truncate(pad - used);
    data["lines"] = json!(lines);
    data["note"] = json!(note);
    data
}

const WORDS: [&str; 40] = [
    "steel", "bottle", "water", "blue", "green", "large", "small", "cotton", "shirt", "lamp",
    "desk", "chair", "oak", "walnut", "glass", "ceramic", "mug", "black", "white", "linen",
    "towel", "set", "pack", "of", "two", "four", "organic", "coffee", "beans", "tea", "gift",
    "card", "wrapped", "express", "delivery", "leave", "at", "door", "please", "thanks",
];

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
        let deps = IngestDeps {
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
            cpu.push(call_cpu(&deps, round, events, pad).await);
        }
        cpu.sort();
        cpu[cpu.len() / 2]
    })
}

/// The CPU of this thread for one publish call of `events` events (`data` of `pad`
/// bytes) through the ingest handler on `deps`: the gateway event parsed, handled, and
/// the answer serialised as the runtime hands it back to API Gateway. A call that is not
/// accepted stops the bench.
pub(crate) async fn call_cpu<P: Ports>(
    deps: &IngestDeps<P>,
    round: usize,
    events: usize,
    pad: usize,
) -> Duration {
    let event = publish_event(round, events, pad);
    let before = crate::thread_cpu();
    let request = lambda_http::request::from_str(&event).expect("a gateway event");
    let response = herald_ingest::handle(deps, request).await;
    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    let answer = json!({"statusCode": response.status().as_u16(), "body": body});
    let answer = serde_json::to_vec(&answer).unwrap();
    let cpu = crate::thread_cpu().saturating_sub(before);
    assert_eq!(
        response.status(),
        202,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    cpu
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_data_is_the_size_asked_and_not_one_repeated_character() {
        for pad in [0, 1024, 10 * 1024, 100 * 1024, 1024 * 1024] {
            let data = order_data("ord_7", pad);
            let text = data.to_string();
            if pad == 0 {
                assert!(text.len() < 64);
                continue;
            }
            assert_eq!(text.len(), pad);
            let most = (b' '..=b'~')
                .map(|c| text.bytes().filter(|&b| b == c).count())
                .max()
                .unwrap();
            assert!(most * 5 < pad, "{most} of {pad} one character");
        }
        assert_eq!(order_data("ord_7", 1024), order_data("ord_7", 1024));
        assert_ne!(order_data("ord_7", 1024), order_data("ord_8", 1024));
    }
}
