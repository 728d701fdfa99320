//! A subscription's feed: its deliveries in the order their events were accepted, each
//! with the body Herald POSTs for it, for a receiver that lost webhooks or would rather
//! pull (seed 001: "you can use our API to request data on your own schedule").

use herald_aws::graphql::GraphqlSource;
use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryRecord;
use herald_core::event::{Event, json_bytes};
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
        match page(deps, tenant, id, &subscription, &query).await? {
            Page::Whole(items, next) => {
                return Ok(api::json_response(
                    StatusCode::OK,
                    &json!({"data": items, "next_cursor": next}),
                ));
            }
            // Asked again for as many as fit, the page ends there and its cursor with it.
            Page::Cut(fit) => query.limit = fit,
        }
    }
}

/// A page as read: whole, with the cursor after it, or cut after the first `fit` items
/// because the next would pass [`MAX_PAGE_BYTES`].
enum Page {
    Whole(Vec<Value>, Option<String>),
    Cut(usize),
}

/// Events read and rendered at once. A page's events are read a few at a time and the
/// page stops at the first item past its bytes, so a page of a hundred 1 MiB events holds
/// a few of them in memory, not a hundred (manage runs in 256 MB).
const EVENTS_AT_ONCE: usize = 8;

/// One page of the feed's items.
async fn page<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    subscription: &Subscription,
    query: &DeliveryQuery,
) -> Result<Page, ApiError> {
    let now = deps.ports.clock.now();
    let page = deps.ports.ledger.list(tenant, id, query, now).await?;
    let mut items = Vec::with_capacity(page.items.len());
    let mut bytes = 0usize;
    for records in page.items.chunks(EVENTS_AT_ONCE) {
        let events = futures::future::try_join_all(
            records
                .iter()
                .map(|record| deps.ports.events.load(tenant, &record.event_id, now)),
        )
        .await?;
        let queried = queried(deps, tenant, subscription, &events).await;
        for ((record, event), queried) in records.iter().zip(&events).zip(queried) {
            let item = item(subscription, record, event.as_ref(), queried);
            // Counted as written, no copy of the item made (the answer writes it once).
            bytes = bytes.saturating_add(json_bytes(&item));
            // Never below one item, however large.
            if bytes > MAX_PAGE_BYTES && !items.is_empty() {
                return Ok(Page::Cut(items.len()));
            }
            items.push(item);
        }
    }
    Ok(Page::Whole(items, page.next))
}

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
    // At most EVENTS_AT_ONCE: the queries of a page's events run as they are read.
    futures::future::join_all(
        events
            .iter()
            .map(|event| run(&deps.graphql, tenant, query, event.as_ref())),
    )
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
