//! The attempt log, redelivery, replay and test events.

use chrono::{DateTime, Utc};
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::{DeliveryRecord, DeliveryState, DeliveryTask};
use herald_core::event::{Event, EventType, MAX_DATA_BYTES};
use herald_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use herald_core::ports::{
    Acceptance, Clock, DeliveryLedger, DeliveryQuery, DeliveryQueue, EventLog,
};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::handler::{Ports, limit_param, owned_subscription, page_response};
use crate::views::DeliveryView;

const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;
/// Most deliveries one replay call queues; call again with `since` moved on for more.
pub const MAX_REPLAY: usize = 100;
/// The type of the events `POST /v1/subscriptions/{id}/test` sends.
pub const TEST_EVENT_TYPE: &str = "herald.test";

fn time_param(request: &Request, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    api::query_param(request, name)
        .map(|raw| parse_time(name, &raw))
        .transpose()
}

fn parse_time(name: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name}: must be an RFC 3339 time like 2026-11-22T12:00:00Z"
            ))
        })
}

fn parse_state(name: &str, raw: &str) -> Result<DeliveryState, ApiError> {
    DeliveryState::parse(raw).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name}: one of pending, delivering, delivered, failed, skipped, superseded"
        ))
    })
}

pub async fn list<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let deps = ports.deps();
    let query = DeliveryQuery {
        state: api::query_param(request, "state")
            .map(|s| parse_state("state", &s))
            .transpose()?,
        since: time_param(request, "since")?,
        until: time_param(request, "until")?,
        limit: limit_param(request, DEFAULT_PAGE, MAX_PAGE)?,
        cursor: api::query_param(request, "cursor"),
    };
    owned_subscription(&deps.subscriptions, tenant, id).await?;
    let page = deps
        .ledger
        .list(tenant, id, &query, deps.clock.now())
        .await?;
    Ok(page_response(&page, DeliveryView::of))
}

/// The caller's delivery, or 404 (another tenant's or an expired one too).
async fn owned_delivery<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<herald_core::delivery::DeliveryRecord, ApiError> {
    let deps = ports.deps();
    deps.ledger
        .get(tenant, id, deps.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))
}

pub async fn get<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<Response<Body>, ApiError> {
    let record = owned_delivery(ports, tenant, id).await?;
    Ok(api::json_response(
        StatusCode::OK,
        &DeliveryView::of(&record),
    ))
}

/// A forced task for a delivery that exists: same delivery id, so receivers dedupe.
async fn forced_task<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    record: &DeliveryRecord,
) -> Result<Option<DeliveryTask>, ApiError> {
    let deps = ports.deps();
    let now = deps.clock.now();
    let Some(event) = deps.events.load(tenant, &record.event_id, now).await? else {
        return Ok(None);
    };
    let task = DeliveryTask {
        delivery_id: record.id.clone(),
        tenant: tenant.clone(),
        subscription_id: record.subscription_id.clone(),
        event,
        forced: true,
    };
    Ok(Some(task))
}

async fn enqueue<P: Ports>(ports: &P, tasks: &[DeliveryTask]) -> Result<(), ApiError> {
    ports.deps().queue.enqueue(tasks).await.map_err(|e| {
        tracing::error!(error = %e, "queuing a redelivery failed");
        ApiError::unavailable()
    })
}

pub async fn retry<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<Response<Body>, ApiError> {
    let record = owned_delivery(ports, tenant, id).await?;
    let task = forced_task(ports, tenant, &record)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::GONE, "gone", "the event is no longer kept"))?;
    enqueue(ports, std::slice::from_ref(&task)).await?;
    tracing::info!(tenant = %tenant, delivery_id = %id, "redelivery queued");
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"delivery_id": id, "queued": true, "forced": true}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    since: String,
    until: Option<String>,
    state: Option<String>,
}

pub async fn replay<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let deps = ports.deps();
    let input: Replay = api::json_body(request)?;
    let since =
        parse_time("since", &input.since).map_err(|e| ApiError::unprocessable(e.message))?;
    let until = input
        .until
        .as_deref()
        .map(|u| parse_time("until", u))
        .transpose()
        .map_err(|e| ApiError::unprocessable(e.message))?;
    if until.is_some_and(|u| u <= since) {
        return Err(ApiError::unprocessable("until: must be after since"));
    }
    let state = match input.state.as_deref() {
        None => DeliveryState::Failed,
        Some(raw) => parse_state("state", raw).map_err(|e| ApiError::unprocessable(e.message))?,
    };
    owned_subscription(&deps.subscriptions, tenant, id).await?;
    let query = DeliveryQuery {
        state: Some(state),
        since: Some(since),
        until,
        limit: MAX_REPLAY,
        cursor: None,
    };
    let page = deps
        .ledger
        .list(tenant, id, &query, deps.clock.now())
        .await?;
    let mut tasks = Vec::with_capacity(page.items.len());
    for record in &page.items {
        if let Some(task) = forced_task(ports, tenant, record).await? {
            tasks.push(task);
        }
    }
    enqueue(ports, &tasks).await?;
    tracing::info!(tenant = %tenant, subscription = %id, queued = tasks.len(), "replay queued");
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"queued": tasks.len(), "more": page.next.is_some(), "state": state}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEvent {
    data: Option<Map<String, Value>>,
}

pub async fn send_test<P: Ports>(
    ports: &P,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let deps = ports.deps();
    let input: TestEvent = if request.body().is_empty() {
        TestEvent::default()
    } else {
        api::json_body(request)?
    };
    if let Some(data) = &input.data {
        let size = serde_json::to_vec(data)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DATA_BYTES {
            return Err(ApiError::too_large(format!(
                "data: more than {MAX_DATA_BYTES} bytes"
            )));
        }
    }
    let subscription = owned_subscription(&deps.subscriptions, tenant, id).await?;
    let now = deps.clock.now();
    let event = Event {
        id: EventId::generate(now, &mut rand::rng()),
        event_type: EventType::parse(TEST_EVENT_TYPE).map_err(ApiError::unprocessable)?,
        occurred_at: now,
        data: input.data.unwrap_or_else(|| {
            json!({"message": "A test event from Herald", "subscription_id": id})
                .as_object()
                .cloned()
                .unwrap_or_default()
        }),
        subject: None,
    };
    // Kept like any event, so the test delivery can be retried and inspected.
    if deps
        .events
        .accept(tenant, &event, &event.fingerprint(), 1, now)
        .await?
        != Acceptance::New
    {
        return Err(ApiError::conflict("try again"));
    }
    let task = DeliveryTask::new(tenant, &subscription.id, &event, now);
    enqueue(ports, std::slice::from_ref(&task)).await?;
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"event_id": event.id, "delivery_id": task.delivery_id, "event_type": TEST_EVENT_TYPE}),
    ))
}
