//! The DynamoDB, SQS and Secrets Manager adapters and the provisioning from `template.yaml`,
//! against moto.
//! Each test provisions its own tables and queues, so they run in parallel.

mod events;

mod ledger;

mod provisioning;

mod queue;

mod sessions;

mod signing_keys;

mod subscriptions;

use chrono::{DateTime, Utc};
use herald_core::delivery::{Attempt, DeliveryState};
use herald_core::event::{Event, EventType, Subject};
use herald_core::ids::{EventId, TenantId};
use herald_core::ports::{AttemptResult, Claim, Reopens};
use herald_core::subscription::url::UrlPolicy;
use herald_core::subscription::{NewSubscription, Offer, Subscription};
use serde_json::json;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// A subscription as the API would make it, created at `at` (ids sort by it).
fn subscription(tenant_name: &str, at: DateTime<Utc>) -> Subscription {
    let new: NewSubscription = serde_json::from_value(json!({
        "url": "https://hooks.example.com/",
        "event_types": ["*"],
    }))
    .unwrap();
    new.into_subscription(
        tenant(tenant_name),
        &UrlPolicy::default(),
        &Offer::default(),
        at,
        &mut rand::rng(),
    )
    .unwrap()
}

fn event(id: &str, data: serde_json::Value) -> Event {
    Event {
        id: EventId::parse(id).unwrap(),
        event_type: EventType::parse("order.shipped").unwrap(),
        occurred_at: Utc::now(),
        data: data.as_object().unwrap().clone(),
        subject: None,
    }
}

fn event_about(id: &str, order: &str, occurred_at: DateTime<Utc>) -> Event {
    Event {
        occurred_at,
        subject: Some(Subject {
            kind: "order".into(),
            id: order.into(),
            reference: None,
            status: None,
            root: None,
        }),
        ..event(id, json!({}))
    }
}

fn seconds(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// A claim at `now` with a 30 s lease on a record kept for an hour.
fn claim(now: DateTime<Utc>, token: &str, forced: bool) -> Claim {
    Claim {
        reopens: if forced {
            Reopens::Any
        } else {
            Reopens::Nothing
        },
        token: token.into(),
        now,
        lease_until: now + seconds(30),
        expires_at: now + seconds(3600),
    }
}

fn attempt(number: u32, status: u16) -> Attempt {
    Attempt {
        number,
        at: Utc::now(),
        status: Some(status),
        error: None,
        latency_ms: 5,
        response: "ok".into(),
        forced: false,
    }
}

fn finish(state: DeliveryState, attempt: Attempt) -> AttemptResult {
    AttemptResult {
        attempt: Some(attempt),
        state,
        next_attempt_at: None,
        reason: None,
        dead_letter_owed: false,
        now: Utc::now(),
    }
}
