//! The public keys receivers verify with. Each tenant's deliveries are signed with key
//! pairs of its own (`herald_core::webhook::tenant_keys`), made here on first use: when a
//! subscription first asks for a `v1a` or RSA signature, or when the tenant first asks
//! for its keys. Manage makes a pair, has the store seal its private halves, and from
//! then on reads public halves only; it never holds the deployment's private keys.
//!
//! `GET /v1/signing-keys` shows the caller's tenant its own; `GET /v1/signing-keys/{tenant}`
//! shows any tenant's to its receivers, without a token (they are public keys), and makes
//! nothing; `POST /v1/signing-keys/rotate` announces a new pair that takes over after the
//! deployment's overlap.

use chrono::{DateTime, Utc};
use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::TenantId;
use herald_core::ports::{Clock, KeyStore, Ports, StoreError, SubscriptionStore};
use herald_core::subscription::Offer;
use herald_core::webhook::keys::PublicKeys;
use herald_core::webhook::tenant_keys::{OsRng, RotateError, TenantKeySet};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};

use crate::ManageDeps;

/// Whether this deployment signs with asymmetric keys at all (its `Offer`).
fn signs_asymmetric(offer: &Offer) -> bool {
    offer.ed25519 || offer.rsa
}

/// `set` as its receivers see it, under the deployment's RSA header names.
fn view(offer: &Offer, set: &TenantKeySet, now: DateTime<Utc>) -> PublicKeys {
    let mut keys = set.public(now, offer.rsa.then(|| offer.rsa_headers()));
    if !offer.ed25519 {
        keys.ed25519 = None;
    }
    keys
}

/// No keys: what a deployment without asymmetric signatures shows.
fn none() -> PublicKeys {
    PublicKeys {
        ed25519: None,
        rsa: None,
        rsa_sha512_header: None,
        rsa_md5_header: None,
        keys: Vec::new(),
    }
}

/// A fresh set for `tenant`, made off the async threads (an RSA key takes a moment).
async fn generate(
    tenant: &TenantId,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> Result<TenantKeySet, ApiError> {
    let tenant = tenant.clone();
    tokio::task::spawn_blocking(move || TenantKeySet::first(tenant, now, signs_from, &mut OsRng))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "making a signing key pair failed");
            ApiError::unavailable()
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "making a signing key pair failed");
            ApiError::unavailable()
        })
}

/// The tenant's set, made now if it has none. A tenant whose subscriptions already ask
/// for asymmetric signatures had its deliveries signed with the deployment's keys, which
/// its receivers trust: its first pair signs RSA only after the overlap, and the
/// deployment's keys sign beside it until then. None when the deployment signs with no
/// asymmetric keys.
pub async fn ensure<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
) -> Result<Option<TenantKeySet>, ApiError> {
    if !signs_asymmetric(&deps.ports.keys.offer()) {
        return Ok(None);
    }
    if let Some(set) = deps.ports.subscriptions.signing_keys(tenant).await? {
        return Ok(Some(set));
    }
    let now = deps.ports.clock.now();
    let signed_before = deps
        .ports
        .subscriptions
        .active(tenant)
        .await?
        .iter()
        .any(|s| s.signatures.ed25519 || s.signatures.rsa);
    let signs_from = if signed_before {
        now + chrono::Duration::from_std(deps.signing_key_overlap).unwrap_or_default()
    } else {
        now
    };
    let set = generate(tenant, now, signs_from).await?;
    match deps.ports.subscriptions.put_signing_keys(&set, None).await {
        Ok(()) => {
            tracing::info!(tenant = %tenant, kid = %set.keys[0].kid, "signing keys made");
            Ok(Some(set))
        }
        // Made by another call meanwhile: that one is the tenant's.
        Err(StoreError::Conflict) => Ok(deps.ports.subscriptions.signing_keys(tenant).await?),
        Err(e) => Err(e.into()),
    }
}

/// `GET /v1/signing-keys`: the caller's tenant's keys, made on first use.
pub async fn get<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
) -> Result<Response<Body>, ApiError> {
    let offer = deps.ports.keys.offer();
    let keys = match ensure(deps, tenant).await? {
        Some(set) => view(&offer, &set, deps.ports.clock.now()),
        None => none(),
    };
    Ok(api::json_response(StatusCode::OK, &keys))
}

/// `GET /v1/signing-keys/{tenant}`: a tenant's keys for its receivers, cacheable for five
/// minutes. Makes nothing: 404 for a tenant that has none yet.
pub async fn of_tenant<P: Ports>(
    deps: &ManageDeps<P>,
    raw: &str,
) -> Result<Response<Body>, ApiError> {
    let tenant = TenantId::parse(raw).ok_or_else(|| ApiError::not_found("signing keys"))?;
    let offer = deps.ports.keys.offer();
    let keys = if signs_asymmetric(&offer) {
        let set = deps
            .ports
            .subscriptions
            .signing_keys(&tenant)
            .await?
            .ok_or_else(|| ApiError::not_found("signing keys"))?;
        view(&offer, &set, deps.ports.clock.now())
    } else {
        none()
    };
    let mut response = api::json_response(StatusCode::OK, &keys);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// `POST /v1/signing-keys/rotate`: a new pair, served at once; its `v1a` entries go out
/// beside the old pair's, its RSA signatures begin and the old pair retires after the
/// deployment's overlap (`HERALD_SIGNING_KEY_OVERLAP`). A tenant without keys gets its
/// first pair.
pub async fn rotate<P: Ports>(
    deps: &ManageDeps<P>,
    tenant: &TenantId,
) -> Result<Response<Body>, ApiError> {
    let offer = deps.ports.keys.offer();
    if !signs_asymmetric(&offer) {
        return Err(ApiError::unprocessable(
            "this deployment signs with no asymmetric keys: there is nothing to rotate",
        ));
    }
    let Some(mut set) = deps.ports.subscriptions.signing_keys(tenant).await? else {
        let set = ensure(deps, tenant)
            .await?
            .ok_or_else(ApiError::unavailable)?;
        return Ok(api::json_response(
            StatusCode::OK,
            &view(&offer, &set, deps.ports.clock.now()),
        ));
    };
    let now = deps.ports.clock.now();
    let expected = set.version;
    let overlap = deps.signing_key_overlap;
    let rotated =
        tokio::task::spawn_blocking(move || set.rotate(now, overlap, &mut OsRng).map(|()| set))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "rotating signing keys failed");
                ApiError::unavailable()
            })?;
    let set = match rotated {
        Ok(set) => set,
        Err(e @ RotateError::TooMany(_)) => return Err(ApiError::conflict(e.to_string())),
        Err(e @ RotateError::Key(_)) => {
            tracing::error!(error = %e, "rotating signing keys failed");
            return Err(ApiError::unavailable());
        }
    };
    match deps
        .ports
        .subscriptions
        .put_signing_keys(&set, Some(expected))
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(ApiError::conflict(
                "the tenant's signing keys changed meanwhile; rotate again",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let newest = set.keys.last().map(|k| k.kid.as_str()).unwrap_or_default();
    tracing::info!(tenant = %tenant, kid = %newest, "signing keys rotated");
    Ok(api::json_response(StatusCode::OK, &view(&offer, &set, now)))
}
