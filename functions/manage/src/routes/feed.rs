//! A subscription's feed: its deliveries in the order their events were accepted, each
//! with the body Herald POSTs for it, for a receiver that lost webhooks or would rather
//! pull (seed 001: "you can use our API to request data on your own schedule").

use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryRecord;
use herald_core::event::Event;
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQuery, EventLog, Ports};
use herald_core::subscription::Subscription;
use herald_core::webhook::render::{self, RenderContext};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use crate::ManageDeps;
use crate::http::{limit_param, owned_subscription, time_param};

const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 50;

/// `GET /v1/subscriptions/{id}/feed`: a page of the subscription's deliveries, oldest
/// first, from `since` (when given) or after `cursor`. Each item carries the body as it is
/// POSTed (in the subscription's format and selection) and the delivery's state; `body` is
/// null when the event is no longer kept. `next_cursor` continues after the last item.
pub async fn feed<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let query = DeliveryQuery {
        since: time_param(request, "since")?,
        limit: limit_param(request, DEFAULT_PAGE, MAX_PAGE)?,
        cursor: api::query_param(request, "cursor"),
        oldest_first: true,
        ..Default::default()
    };
    let subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let now = deps.ports.clock.now();
    let page = deps.ports.ledger.list(tenant, id, &query, now).await?;
    // Each page's events are read at once; a page holds at most MAX_PAGE.
    let events = futures::future::try_join_all(
        page.items
            .iter()
            .map(|record| deps.ports.events.load(tenant, &record.event_id, now)),
    )
    .await?;
    let items: Vec<Value> = page
        .items
        .iter()
        .zip(&events)
        .map(|(record, event)| item(&subscription, record, event.as_ref()))
        .collect();
    Ok(api::json_response(
        StatusCode::OK,
        &json!({"data": items, "next_cursor": page.next}),
    ))
}

/// One delivery of the feed, with its body rendered as deliver renders it.
fn item(subscription: &Subscription, record: &DeliveryRecord, event: Option<&Event>) -> Value {
    let body = event.map(|event| {
        let rendered = render::render(
            event,
            subscription.format,
            render::Payload::Event(subscription.selection.as_ref()),
            &RenderContext {
                tenant: &record.tenant,
                delivery_id: &record.id,
            },
        );
        // Every format renders JSON.
        serde_json::from_slice::<Value>(&rendered).unwrap_or(Value::Null)
    });
    json!({
        "delivery_id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "accepted_at": record.created_at,
        "state": record.state.as_str(),
        "body": body,
    })
}
