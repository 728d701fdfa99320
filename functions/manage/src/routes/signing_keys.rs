//! `GET /v1/signing-keys`: the deployment's public keys, for receivers to verify with.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ports::{KeyStore, Ports};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

use crate::ManageDeps;

pub async fn get<P: Ports>(deps: &ManageDeps<P>) -> Result<Response<Body>, ApiError> {
    let keys = deps.ports.keys.current().await.map_err(|e| {
        tracing::error!(error = %e, "reading the signing keys failed");
        ApiError::unavailable()
    })?;
    Ok(api::json_response(StatusCode::OK, &keys.public()))
}
