//! A subscription's feed: its deliveries in the order their events were accepted, each
//! with the body Herald POSTs for it, for a receiver that lost webhooks or would rather
//! pull (seed 001: "you can use our API to request data on your own schedule").

use futures::StreamExt;
use herald_aws::graphql::GraphqlSource;
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryRecord;
use herald_core::event::Event;
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQuery, EventLog, Ports};
use herald_core::subscription::Subscription;
use herald_core::webhook::graphql::PayloadQuery;
use herald_core::webhook::render::{self, RenderContext};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};

use crate::ManageDeps;
use crate::http::{limit_param, owned_subscription, time_param};

const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 50;
/// Most bytes of items a page answers with: a Lambda function's answer is at most 6 MB,
/// and events of up to 1 MiB would pass that in a few items. A page that would be longer
/// is cut short at the last item that fits (never below one), and its cursor continues
/// from there.
const MAX_PAGE_BYTES: usize = 5 * 1024 * 1024;

/// `GET /v1/subscriptions/{id}/feed`: a page of the subscription's deliveries, oldest
/// first, from `since` (when given) or after `cursor`. Each item carries the body as it is
/// POSTed (in the subscription's format and selection, or with its query's result as it
/// stands now) and the delivery's state; `body` is null when the event is no longer kept,
/// or when the query got no result (`body_error` says why). `next_cursor` continues after the last item.
pub async fn feed<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let mut query = DeliveryQuery {
        since: time_param(request, "since")?,
        limit: limit_param(request, DEFAULT_PAGE, MAX_PAGE)?,
        cursor: api::query_param(request, "cursor"),
        oldest_first: true,
        ..Default::default()
    };
    let subscription = owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    loop {
        let (items, next) = page(deps, tenant, id, &subscription, &query).await?;
        let mut bytes = 0;
        let fit = items
            .iter()
            .take_while(|item| {
                bytes += serde_json::to_vec(item).map_or(usize::MAX, |b| b.len());
                bytes <= MAX_PAGE_BYTES
            })
            .count()
            .max(1);
        if fit >= items.len() {
            return Ok(api::json_response(
                StatusCode::OK,
                &json!({"data": items, "next_cursor": next}),
            ));
        }
        // Asked again for as many as fit, the page ends there and its cursor with it.
        query.limit = fit;
    }
}

/// One page of the feed's items, with the cursor after it.
async fn page<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    subscription: &Subscription,
    query: &DeliveryQuery,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let now = deps.ports.clock.now();
    let page = deps.ports.ledger.list(tenant, id, query, now).await?;
    // Each page's events are read at once; a page holds at most MAX_PAGE.
    let events = futures::future::try_join_all(
        page.items
            .iter()
            .map(|record| deps.ports.events.load(tenant, &record.event_id, now)),
    )
    .await?;
    let queried = queried(deps, tenant, subscription, &events).await;
    let items: Vec<Value> = page
        .items
        .iter()
        .zip(&events)
        .zip(queried)
        .map(|((record, event), queried)| item(subscription, record, event.as_ref(), queried))
        .collect();
    Ok((items, page.next))
}

/// Most queries a page runs at the source at once.
const QUERIES_AT_ONCE: usize = 8;

/// For a subscription with a GraphQL query, each kept event's query result now (as an
/// attempt made now would send it), or why there is none; nothing otherwise.
async fn queried<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    subscription: &Subscription,
    events: &[Option<Event>],
) -> Vec<Option<Result<Map<String, Value>, String>>> {
    let Some(query) = &subscription.query else {
        return events.iter().map(|_| None).collect();
    };
    let runs: Vec<_> = events
        .iter()
        .map(|event| run(&deps.graphql, tenant, query, event.as_ref()))
        .collect();
    futures::stream::iter(runs)
        .buffered(QUERIES_AT_ONCE)
        .collect()
        .await
}

async fn run(
    source: &GraphqlSource,
    tenant: &TenantId,
    query: &PayloadQuery,
    event: Option<&Event>,
) -> Option<Result<Map<String, Value>, String>> {
    let variables = query.bind(event?, tenant);
    Some(
        source
            .execute(tenant, query.text(), &variables)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// One delivery of the feed, with its body rendered as deliver renders it; for a query's
/// subscription, with the query's result now, or `body_error` when the source gave none.
fn item(
    subscription: &Subscription,
    record: &DeliveryRecord,
    event: Option<&Event>,
    queried: Option<Result<Map<String, Value>, String>>,
) -> Value {
    let (queried, body_error) = match queried {
        Some(Ok(result)) => (Some(result), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let payload = match &queried {
        Some(result) => render::Payload::Queried(result),
        None => render::Payload::Event(subscription.selection.as_ref()),
    };
    let body = event.filter(|_| body_error.is_none()).map(|event| {
        let rendered = render::render(
            event,
            subscription.format,
            payload,
            &RenderContext {
                tenant: &record.tenant,
                delivery_id: &record.id,
            },
        );
        // Every format renders JSON.
        serde_json::from_slice::<Value>(&rendered).unwrap_or(Value::Null)
    });
    let mut item = json!({
        "delivery_id": record.id,
        "event_id": record.event_id,
        "event_type": record.event_type,
        "accepted_at": record.created_at,
        "state": record.state.as_str(),
        "body": body,
    });
    if let Some(e) = body_error {
        item["body_error"] = Value::String(e);
    }
    item
}
