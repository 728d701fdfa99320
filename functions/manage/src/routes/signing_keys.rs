//! The public keys receivers verify with. `v1a` keys are per tenant
//! (`herald_core::webhook::keys`): `GET /v1/signing-keys` shows the caller's tenant its
//! own, and `GET /v1/signing-keys/{tenant}` shows any tenant's to its receivers, without a
//! token (they are public keys; a tenant id reveals nothing else).

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::TenantId;
use herald_core::ports::{KeyStore, Ports};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};

use crate::ManageDeps;

/// `GET /v1/signing-keys`: the caller's tenant's keys.
pub async fn get<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
) -> Result<Response<Body>, ApiError> {
    let keys = deps.ports.keys.current().await.map_err(|e| {
        tracing::error!(error = %e, "reading the signing keys failed");
        ApiError::unavailable()
    })?;
    Ok(api::json_response(StatusCode::OK, &keys.public_for(tenant)))
}

/// `GET /v1/signing-keys/{tenant}`: a tenant's keys for its receivers, cacheable for five
/// minutes (the deployment's key is read again as often).
pub async fn of_tenant<P: Ports>(
    deps: &ManageDeps<P>,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let tenant = TenantId::parse(raw).ok_or_else(|| ApiError::not_found("tenant"))?;
    let mut response = get(deps, &tenant).await?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
