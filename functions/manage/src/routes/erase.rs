//! Erasure on request (`herald_core::flow::erase`): a tenant, by an operator, or one
//! subscription's history. Each call does a bounded step and answers where the erasure
//! stands; the caller repeats with the answer's `cursor` until `done`.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::flow::erase::{self, Progress, Scope};
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::Ports;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::ManageDeps;
use crate::http::Resume;
use crate::http::owned_subscription;

/// `POST /v1/tenant/erase` (the operator scope, naming the tenant in `Herald-Tenant`):
/// every subscription, secret, delivery, event and portal session of the tenant.
pub async fn tenant<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let progress = run(deps, tenant, Scope::Tenant, request).await?;
    tracing::info!(
        tenant = %tenant,
        done = progress.done(),
        subscriptions = progress.erased.subscriptions,
        deliveries = progress.erased.deliveries,
        events = progress.erased.events,
        portal_sessions = progress.erased.portal_sessions,
        "tenant erasure step"
    );
    Ok(answer(&progress))
}

/// `POST /v1/subscriptions/{id}/history/erase`: the subscription's attempt log and its
/// newest-about-a-subject records; the subscription stays.
pub async fn history<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    id: &SubscriptionId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    owned_subscription(&deps.ports.subscriptions, tenant, id).await?;
    let progress = run(deps, tenant, Scope::History(id), request).await?;
    tracing::info!(
        tenant = %tenant,
        subscription = %id,
        done = progress.done(),
        deliveries = progress.erased.deliveries,
        "history erasure step"
    );
    Ok(answer(&progress))
}

async fn run<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    scope: Scope<'_>,
    request: &Request,
) -> Result<Progress, ApiError> {
    let resume = Resume::of(request)?;
    let progress = match resume.cursor.as_deref() {
        None => Progress::start(scope),
        Some(cursor) => Progress::resume(cursor, scope)
            .map_err(|e| ApiError::bad_request(format!("cursor: {e}")))?,
    };
    Ok(erase::run(&deps.ports, tenant, scope, progress, deps.erasure_settle).await?)
}

/// `{"done", "stage", "erased", "cursor", "sweep_after"}`: `cursor` is null once done;
/// `sweep_after` says when the last stage of a tenant's erasure may run.
fn answer(progress: &Progress) -> Response<Body> {
    api::json_response(
        StatusCode::OK,
        &json!({
            "done": progress.done(),
            "stage": progress.stage,
            "erased": progress.erased,
            "cursor": (!progress.done()).then(|| progress.cursor()),
            "sweep_after": progress.sweep_after,
        }),
    )
}
