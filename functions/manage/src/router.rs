//! Routing of the management API. Every call is scoped to the caller's tenant: another
//! tenant's subscription or delivery is indistinguishable from one that does not exist.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::{DeliveryId, SubscriptionId};
use herald_core::ports::Ports;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::ManageDeps;
use crate::routes::{deliveries, replay, signing_keys, subscriptions};

/// Every route this function serves, as `openapi.yaml` names them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{id}"),
    ("PATCH", "/v1/subscriptions/{id}"),
    ("DELETE", "/v1/subscriptions/{id}"),
    ("POST", "/v1/subscriptions/{id}/secret/rotate"),
    ("POST", "/v1/subscriptions/{id}/test"),
    ("GET", "/v1/subscriptions/{id}/deliveries"),
    ("POST", "/v1/subscriptions/{id}/replay"),
    ("GET", "/v1/deliveries/{id}"),
    ("POST", "/v1/deliveries/{id}/retry"),
    ("GET", "/v1/signing-keys"),
];

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<P: Ports>(deps: &ManageDeps<P>, request: Request) -> Response<Body> {
    api::answer(route(deps, &request).await)
}

async fn route<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let path = api::route_path(request);
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();
    let tenant = || api::tenant_of(request, &deps.tenant_claim);
    let subscription_id =
        |raw: &str| SubscriptionId::parse(raw).ok_or_else(|| ApiError::not_found("subscription"));
    match (segments.as_slice(), method) {
        (["v1", "subscriptions"], Method::POST) => {
            subscriptions::create(deps, &tenant()?, request).await
        }
        (["v1", "subscriptions"], Method::GET) => {
            subscriptions::list(deps, &tenant()?, request).await
        }
        (["v1", "subscriptions", id], Method::GET) => {
            subscriptions::get(deps, &tenant()?, &subscription_id(id)?).await
        }
        (["v1", "subscriptions", id], Method::PATCH) => {
            subscriptions::patch(deps, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id], Method::DELETE) => {
            subscriptions::delete(deps, &tenant()?, &subscription_id(id)?).await
        }
        (["v1", "subscriptions", id, "secret", "rotate"], Method::POST) => {
            subscriptions::rotate(deps, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "test"], Method::POST) => {
            deliveries::send_test(deps, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "deliveries"], Method::GET) => {
            deliveries::list(deps, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "replay"], Method::POST) => {
            replay::replay(deps, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "deliveries", id], Method::GET) => {
            let id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery"))?;
            deliveries::get(deps, &tenant()?, &id).await
        }
        (["v1", "deliveries", id, "retry"], Method::POST) => {
            let id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery"))?;
            deliveries::retry(deps, &tenant()?, &id).await
        }
        (["v1", "signing-keys"], Method::GET) => {
            tenant()?;
            signing_keys::get(deps).await
        }
        (segments, _)
            if ROUTES
                .iter()
                .any(|(_, template)| same_shape(template, segments)) =>
        {
            Err(ApiError::method_not_allowed())
        }
        _ => Err(ApiError::not_found("route")),
    }
}

/// Whether a path fits a route template, `{…}` matching any one segment.
fn same_shape(template: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = template.split('/').skip(1).collect();
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(t, s)| t.starts_with('{') || t == s)
}
