//! The attempt log, one delivery, redelivery, and test events.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryTask;
use herald_core::delivery::MAX_ATTEMPTS_KEPT;
use herald_core::event::{EventError, check_data};
use herald_core::flow::publish::{Audience, PublishError, publish};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQuery, Ports};
use herald_core::system_events;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::ManageDeps;
use crate::http::{
    enqueue, forced_task, limit_param, owned_delivery, owned_subscription, page_response,
    parse_state, spend_redeliveries, time_param,
};
use crate::views::DeliveryView;

const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

pub async fn list<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let query = DeliveryQuery {
        state: api::query_param(request, "state")
            .map(|s| parse_state("state", &s))
            .transpose()?,
        since: time_param(request, "since")?,
        until: time_param(request, "until")?,
        limit: limit_param(request, DEFAULT_PAGE, MAX_PAGE)?,
        cursor: api::query_param(request, "cursor"),
        oldest_first: false,
        number: api::query_param(request, "number")
            .map(|raw| {
                raw.parse::<u64>()
                    .ok()
                    .filter(|n| (1..1 << 53).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "number: the numeric id of a typed_object body (1 to 2^53 - 1)",
                        )
                    })
            })
            .transpose()?,
    };
    owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let page = deps
        .ports
        .ledger
        .list(tenant, id, &query, deps.ports.clock.now())
        .await?;
    Ok(page_response(&page, DeliveryView::of))
}

pub async fn get<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<Response<Body>, ApiError> {
    let record = owned_delivery(deps, tenant, id).await?;
    Ok(api::json_response(
        StatusCode::OK,
        &DeliveryView::of(&record),
    ))
}

pub async fn retry<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &DeliveryId,
) -> Result<Response<Body>, ApiError> {
    let record = owned_delivery(deps, tenant, id).await?;
    if record.attempt_count() >= MAX_ATTEMPTS_KEPT {
        return Err(ApiError::conflict(format!(
            "the delivery has made {} attempts, the most one delivery keeps; publish the \
             event again under a new id to send it anew",
            record.attempt_count()
        )));
    }
    let task = forced_task(deps, tenant, &record)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::GONE, "gone", "the event is no longer kept"))?;
    spend_redeliveries(deps, tenant, 1).await?;
    enqueue(deps, std::slice::from_ref(&task)).await?;
    tracing::info!(tenant = %tenant, delivery_id = %id, "redelivery queued");
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"delivery_id": id, "queued": true, "forced": true}),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEvent {
    data: Option<Map<String, Value>>,
}

pub async fn send_test<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let input: TestEvent = if request.body().is_empty() {
        TestEvent::default()
    } else {
        api::json_body(request)?
    };
    // Held to what a publish is: a test event travels the same way.
    if let Some(data) = &input.data {
        check_data(data, "data").map_err(|e| match e {
            EventError::TooLarge { .. } => ApiError::too_large(e.to_string()),
            EventError::Invalid { .. } => ApiError::unprocessable(e.to_string()),
        })?;
    }
    let subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let now = deps.ports.clock.now();
    let event = system_events::TestEvent::to(id).event(input.data, now, &mut rand::rng());
    // Published like any event, to this endpoint alone: kept, so the test delivery can be
    // retried and inspected.
    publish(
        &deps.ports,
        tenant,
        std::slice::from_ref(&event),
        Audience::Only(&subscription),
        now,
        None,
    )
    .await
    .map_err(|e| match e {
        PublishError::Conflict(_) => ApiError::conflict("try again"),
        PublishError::TooManyDeliveries { .. } => ApiError::unprocessable(e.to_string()),
        PublishError::Store(e) => ApiError::from(e),
        PublishError::Queue(e) => {
            tracing::error!(error = %e, "queuing a test event failed");
            ApiError::unavailable()
        }
    })?;
    let task = DeliveryTask::new(tenant, &subscription.id, &event, now);
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"event_id": event.id, "delivery_id": task.delivery_id, "event_type": system_events::TestEvent::TYPE}),
    ))
}
