//! Routes of the management API. Every call is scoped to the caller's tenant: another
//! tenant's subscription is indistinguishable from one that does not exist (404).

use herald_shared::api::{self, ApiError};
use herald_shared::ids::{SubscriptionId, TenantId};
use herald_shared::ports::{Clock, SubscriptionStore};
use herald_shared::subscription::NewSubscription;
use herald_shared::url_guard::{Resolver, UrlPolicy, resolve_checked};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use crate::views::SubscriptionView;

/// Most items one list call returns.
pub const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 20;

pub struct ManageDeps<S, R, C> {
    pub subscriptions: S,
    pub resolver: R,
    pub clock: C,
    pub tenant_claim: String,
    pub url_policy: UrlPolicy,
}

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<S, R, C>(deps: &ManageDeps<S, R, C>, request: Request) -> Response<Body>
where
    S: SubscriptionStore,
    R: Resolver,
    C: Clock,
{
    match route(deps, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route<S, R, C>(
    deps: &ManageDeps<S, R, C>,
    request: &Request,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
    R: Resolver,
    C: Clock,
{
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();
    match segments.as_slice() {
        ["v1", "subscriptions"] => {
            let tenant = api::tenant_of(request, &deps.tenant_claim)?;
            match method {
                Method::POST => create(deps, &tenant, request).await,
                Method::GET => list(deps, &tenant, request).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        ["v1", "subscriptions", id] => {
            let tenant = api::tenant_of(request, &deps.tenant_claim)?;
            let id =
                SubscriptionId::parse(id).ok_or_else(|| ApiError::not_found("subscription"))?;
            match method {
                Method::GET => get(deps, &tenant, &id).await,
                Method::DELETE => delete(deps, &tenant, &id).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        _ => Err(ApiError::not_found("route")),
    }
}

async fn create<S, R, C>(
    deps: &ManageDeps<S, R, C>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
    R: Resolver,
    C: Clock,
{
    let input: NewSubscription = api::json_body(request)?;
    let subscription = input
        .into_subscription(
            tenant.clone(),
            &deps.url_policy,
            deps.clock.now(),
            &mut rand::rng(),
        )
        .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    resolve_checked(&deps.resolver, &subscription.url, &deps.url_policy)
        .await
        .map_err(|e| ApiError::unprocessable(format!("url: {e}")))?;
    deps.subscriptions.create(&subscription).await?;
    tracing::info!(tenant = %tenant, subscription = %subscription.id, "subscription created");
    Ok(api::json_response(
        StatusCode::CREATED,
        &SubscriptionView::with_secret(&subscription),
    ))
}

async fn list<S, R, C>(
    deps: &ManageDeps<S, R, C>,
    tenant: &TenantId,
    request: &Request,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
{
    let limit = match api::query_param(request, "limit") {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: must be a number from 1 to {MAX_PAGE}"))
            })?,
    };
    let cursor = api::query_param(request, "cursor");
    let page = deps
        .subscriptions
        .list(tenant, limit, cursor.as_deref())
        .await?;
    let data: Vec<_> = page.items.iter().map(SubscriptionView::of).collect();
    Ok(api::json_response(
        StatusCode::OK,
        &json!({"data": data, "next_cursor": page.next}),
    ))
}

async fn get<S, R, C>(
    deps: &ManageDeps<S, R, C>,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
{
    let subscription = deps
        .subscriptions
        .get(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))?;
    Ok(api::json_response(
        StatusCode::OK,
        &SubscriptionView::of(&subscription),
    ))
}

async fn delete<S, R, C>(
    deps: &ManageDeps<S, R, C>,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<Response<Body>, ApiError>
where
    S: SubscriptionStore,
{
    if !deps.subscriptions.delete(tenant, id).await? {
        return Err(ApiError::not_found("subscription"));
    }
    tracing::info!(tenant = %tenant, subscription = %id, "subscription deleted");
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
