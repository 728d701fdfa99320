//! Replay: a time range of one subscription's deliveries queued again.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::delivery::DeliveryState;
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQuery, Ports};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::ManageDeps;
use crate::http::{
    enqueue, forced_task, owned_subscription, parse_state, parse_time, spend_redeliveries,
};

/// Most deliveries one replay call queues; call again with `since` moved on for more.
pub const MAX_REPLAY: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Replay {
    since: String,
    until: Option<String>,
    state: Option<String>,
}

pub async fn replay<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
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
    owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let query = DeliveryQuery {
        state: Some(state),
        since: Some(since),
        until,
        limit: MAX_REPLAY,
        ..Default::default()
    };
    let page = deps
        .ports
        .ledger
        .list(tenant, id, &query, deps.ports.clock.now())
        .await?;
    let mut tasks = Vec::with_capacity(page.items.len());
    for record in &page.items {
        // A delivery at the most attempts a record keeps is not sent again.
        if record.attempt_count() >= herald_core::delivery::MAX_ATTEMPTS_KEPT {
            continue;
        }
        if let Some(task) = forced_task(deps, tenant, record).await? {
            tasks.push(task);
        }
    }
    spend_redeliveries(deps, tenant, tasks.len()).await?;
    enqueue(deps, &tasks).await?;
    tracing::info!(tenant = %tenant, subscription = %id, queued = tasks.len(), "replay queued");
    Ok(api::json_response(
        StatusCode::ACCEPTED,
        &json!({"queued": tasks.len(), "more": page.next.is_some(), "state": state}),
    ))
}
