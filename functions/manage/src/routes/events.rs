//! An event as it was published, read back by its id within the retention period (seed
//! 001: "use the ID from the webhook and pull the rest of the data").

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::{EventId, TenantId};
use herald_core::ports::{Clock, EventLog, Ports};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

use crate::ManageDeps;

/// `GET /v1/events/{id}`: the caller's tenant's event; another tenant's, an expired or an
/// unknown one is 404 alike.
pub async fn get<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let id = EventId::parse(raw).ok_or_else(|| ApiError::not_found("event"))?;
    let event = deps
        .ports
        .events
        .load(tenant, &id, deps.ports.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    Ok(api::json_response(StatusCode::OK, &event))
}
