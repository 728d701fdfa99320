//! What the routes share: the caller's own subscriptions and deliveries (another
//! tenant's are not found), pages, query parameters, and queuing.

use chrono::{DateTime, Utc};
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::{DeliveryRecord, DeliveryState, DeliveryTask};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{
    Clock, DeliveryLedger, DeliveryQueue, EventLog, KeyStore, Ports, SubscriptionStore,
};
use lambda_http::{Body, Request, Response};

use crate::ManageDeps;

/// The caller's subscription, or 404.
pub async fn owned_subscription<S: SubscriptionStore>(
    store: &S,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<herald_core::subscription::Subscription, ApiError> {
    store
        .get(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))
}

/// Spends `amount` of the tenant's redeliveries this minute (`retry` and `replay` share
/// them); 429 with `Retry-After` (the minute's end) when they would go over.
pub async fn spend_redeliveries<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    amount: usize,
) -> Result<(), ApiError> {
    if amount == 0 {
        return Ok(());
    }
    let now = deps.ports.clock.now().timestamp();
    let (minute, into) = (now.div_euclid(60), now.rem_euclid(60));
    let limit = deps.max_redeliveries_per_minute;
    let spent = deps
        .ports
        .ledger
        .spend(tenant, "redeliveries", minute, amount as u64, limit as u64)
        .await?;
    if spent {
        Ok(())
    } else {
        Err(ApiError::too_many(
            format!(
                "this would queue {amount} deliveries again; a tenant may queue at most \
                 {limit} a minute by retry and replay"
            ),
            (60 - into).max(1) as u64,
        ))
    }
}

/// What this deployment offers a subscription.
pub fn offer<P: Ports>(deps: &ManageDeps<P>) -> herald_core::subscription::Offer {
    herald_core::subscription::Offer {
        max_attempts: Some(deps.max_attempts),
        max_timeout: Some(deps.max_timeout),
        ..deps.ports.keys.offer()
    }
}

/// One page of a listing as `{"data": [...], "next_cursor": …}`.
pub fn page_response<'a, T, V: serde::Serialize>(
    page: &'a herald_core::ports::Page<T>,
    view: impl Fn(&'a T) -> V,
) -> Response<Body> {
    let data: Vec<V> = page.items.iter().map(view).collect();
    api::json_response(
        lambda_http::http::StatusCode::OK,
        &serde_json::json!({"data": data, "next_cursor": page.next}),
    )
}

/// A `limit` query parameter within 1..=max.
pub fn limit_param(request: &Request, default: usize, max: usize) -> Result<usize, ApiError> {
    match api::query_param(request, "limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: must be a number from 1 to {max}"))
            }),
    }
}

pub fn time_param(request: &Request, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    api::query_param(request, name)
        .map(|raw| parse_time(name, &raw))
        .transpose()
}

pub fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name}: must be an RFC 3339 time like 2026-11-22T12:00:00Z"
            ))
        })
}

pub fn parse_state(name: &str, raw: &str) -> Result<DeliveryState, ApiError> {
    DeliveryState::parse(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name}: one of pending, delivering, delivered, failed, skipped, superseded"
        ))
    })
}

/// The caller's delivery, or 404 (another tenant's or an expired one too).
pub async fn owned_delivery<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<herald_core::delivery::DeliveryRecord, ApiError> {
    deps.ports
        .ledger
        .get(tenant, id, deps.ports.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))
}

/// A forced task for a delivery that exists: same delivery id, so receivers dedupe.
pub async fn forced_task<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    record: &DeliveryRecord,
) -> Result<Option<DeliveryTask>, ApiError> {
    let now = deps.ports.clock.now();
    let Some(event) = deps
        .ports
        .events
        .load(tenant, &record.event_id, now)
        .await?
    else {
        return Ok(None);
    };
    let task = DeliveryTask {
        delivery_id: record.id.clone(),
        tenant: tenant.clone(),
        subscription_id: record.subscription_id.clone(),
        event: std::sync::Arc::new(event),
        forced: true,
        trace: None,
        // Sent at once, outside its line: an operator's redelivery (docs/DECISIONS.md,
        // "Ordering").
        line: None,
        // The standard lane: deliver moves it to the slow lane if its receivers are slow.
        slow: false,
        // Queued as a claim check if it is long (`DeliveryTask::to_message_body`).
        stored: None,
    };
    Ok(Some(task))
}

pub async fn enqueue<P: Ports>(
    deps: &ManageDeps<P>,
    tasks: &[DeliveryTask],
) -> Result<(), ApiError> {
    deps.ports.queue.enqueue(tasks).await.map_err(|e| {
        tracing::error!(error = %e, "queuing a redelivery failed");
        ApiError::unavailable()
    })
}

/// The body of a call that resumes a bounded, repeated operation (an erasure, a
/// sealing): the previous answer's `cursor`, or nothing to begin.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub cursor: Option<String>,
}

impl Resume {
    /// The request's body, empty or `{"cursor": …}`.
    pub fn of(request: &lambda_http::Request) -> Result<Self, ApiError> {
        if request.body().is_empty() {
            Ok(Self::default())
        } else {
            api::json_body(request)
        }
    }
}
