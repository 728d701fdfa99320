//! `POST /v1/tenant/seal` (the operator scope, naming the tenant in `Herald-Tenant`):
//! seals what a tenant's subscriptions still hold in the clear, written before the
//! deployment had a secrets key (docs/DECISIONS.md, "Secrets at rest"). A call rewrites
//! one page of subscriptions through manage's store, which seals every value not yet
//! sealed; the caller repeats with the answer's `cursor` until `done`.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::TenantId;
use herald_core::ports::{Ports, StoreError, SubscriptionStore};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::ManageDeps;
use crate::http::Resume;

/// Subscriptions looked at a call.
const PAGE: usize = 100;

pub async fn tenant<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let store = &deps.ports.subscriptions;
    if !store.seals() {
        return Err(ApiError::unprocessable(
            "this deployment has no secrets key (HERALD_SECRETS_KEY): nothing can be sealed",
        ));
    }
    let resume = Resume::of(request)?;
    let page = store.list(tenant, PAGE, resume.cursor.as_deref()).await?;
    let mut sealed = 0u64;
    for subscription in page.items.iter().filter(|s| s.has_clear_values()) {
        // Rewritten as it is, version kept: the store seals on the way. A change made
        // meanwhile went through manage and was sealed then.
        match store.update(subscription, subscription.version).await {
            Ok(()) => sealed += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(tenant = %tenant, sealed, done = page.next.is_none(), "sealing step");
    Ok(api::json_response(
        StatusCode::OK,
        &json!({"done": page.next.is_none(), "sealed": sealed, "cursor": page.next}),
    ))
}
