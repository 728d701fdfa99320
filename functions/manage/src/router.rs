//! Routing of the management API. Every call is scoped to the caller's tenant: another
//! tenant's subscription or delivery is indistinguishable from one that does not exist.
//! Each route names the scopes it needs, as `template.yaml` does for API Gateway, and is
//! checked again here; the portal's calls come through [`dispatch`] with a portal caller.

use herald_aws::lambda::api::{self, ApiError, Caller};
use herald_aws::lambda::gateway::{SCOPE_MANAGE, SCOPE_OPERATOR, SCOPE_PUBLISH, SCOPE_READ};
use herald_core::ids::{DeliveryId, SubscriptionId};
use herald_core::ports::{Clock, Ports};
use lambda_http::http::Method;
use lambda_http::http::header::{self, HeaderValue};
use lambda_http::{Body, Request, Response};

use crate::ManageDeps;
use crate::portal;
use crate::routes::{deliveries, erase, events, feed, replay, seal, signing_keys, subscriptions};

/// Reading: what the `herald/read` scope (or `herald/manage`) allows.
pub const READ: &[&str] = &[SCOPE_READ, SCOPE_MANAGE];
/// Changing: only `herald/manage`.
pub const MANAGE: &[&str] = &[SCOPE_MANAGE];
/// Acting on a whole tenant: only `herald/operator`.
pub const OPERATOR: &[&str] = &[SCOPE_OPERATOR];
/// The public keys: any of Herald's scopes.
pub const ANY: &[&str] = &[SCOPE_READ, SCOPE_MANAGE, SCOPE_PUBLISH];

/// Every route this function serves behind the authorizer, as `openapi.yaml` names them.
/// `Route::scopes` says what each needs, as `template.yaml` does to API Gateway.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions/{id}"),
    ("PATCH", "/v1/subscriptions/{id}"),
    ("DELETE", "/v1/subscriptions/{id}"),
    ("POST", "/v1/subscriptions/{id}/secret/rotate"),
    ("POST", "/v1/subscriptions/{id}/test"),
    ("GET", "/v1/subscriptions/{id}/deliveries"),
    ("GET", "/v1/subscriptions/{id}/feed"),
    ("POST", "/v1/subscriptions/{id}/replay"),
    ("POST", "/v1/subscriptions/{id}/history/erase"),
    ("GET", "/v1/deliveries/{id}"),
    ("GET", "/v1/events/{id}"),
    ("POST", "/v1/deliveries/{id}/retry"),
    ("GET", "/v1/signing-keys"),
    ("GET", "/v1/signing-keys/{tenant}"),
    ("POST", "/v1/signing-keys/rotate"),
    ("POST", "/v1/portal/sessions"),
    ("POST", "/v1/tenant/erase"),
    ("POST", "/v1/tenant/seal"),
];

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<P: Ports>(deps: &ManageDeps<P>, request: Request) -> Response<Body> {
    let path = api::route_path(&request);
    if let Some(rest) = portal::page_path(&path) {
        return portal::handle(deps, &request, rest).await;
    }
    let mut response = api::answer(authorized(deps, &request, &path).await);
    // A tenant's answers (secrets among them: a new subscription's, a rotation's, a
    // portal session's token) are no cache's to keep; an answer that says otherwise
    // (the public keys) keeps its own.
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A call through API Gateway's authorizer: the caller is the token's.
async fn authorized<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
    path: &str,
) -> Result<Response<Body>, ApiError> {
    let route = Route::of(path, request.method())?;
    // Public keys are public: API Gateway routes this one without the authorizer.
    if let Route::TenantSigningKeys(tenant) = route {
        return signing_keys::of_tenant(deps, tenant).await;
    }
    let caller = api::caller_of(request, &deps.tenant_claim)?;
    dispatch(deps, request, route, &caller).await
}

/// A matched route; ids stay raw until the caller is known, so an unauthenticated call
/// learns nothing from how an id is spelled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Route<'a> {
    CreateSubscription,
    ListSubscriptions,
    GetSubscription(&'a str),
    PatchSubscription(&'a str),
    DeleteSubscription(&'a str),
    RotateSecret(&'a str),
    SendTest(&'a str),
    ListDeliveries(&'a str),
    Feed(&'a str),
    Replay(&'a str),
    EraseHistory(&'a str),
    GetDelivery(&'a str),
    RetryDelivery(&'a str),
    GetEvent(&'a str),
    SigningKeys,
    /// A tenant's public keys, for its receivers: no token needed.
    TenantSigningKeys(&'a str),
    /// A new pair for the caller's tenant, taking over after the overlap.
    RotateSigningKeys,
    OpenPortal,
    EraseTenant,
    /// Seals what a tenant's subscriptions still hold in the clear.
    SealTenant,
}

impl<'a> Route<'a> {
    /// The route `path` and `method` name: 404 for no route, 405 for a route that takes
    /// other methods.
    pub fn of(path: &'a str, method: &Method) -> Result<Self, ApiError> {
        let path = path.trim_end_matches('/');
        let segments: Vec<&'a str> = path.split('/').skip(1).collect();
        let route = match (segments.as_slice(), method.clone()) {
            (["v1", "subscriptions"], Method::POST) => Self::CreateSubscription,
            (["v1", "subscriptions"], Method::GET) => Self::ListSubscriptions,
            (["v1", "subscriptions", id], Method::GET) => Self::GetSubscription(id),
            (["v1", "subscriptions", id], Method::PATCH) => Self::PatchSubscription(id),
            (["v1", "subscriptions", id], Method::DELETE) => Self::DeleteSubscription(id),
            (["v1", "subscriptions", id, "secret", "rotate"], Method::POST) => {
                Self::RotateSecret(id)
            }
            (["v1", "subscriptions", id, "test"], Method::POST) => Self::SendTest(id),
            (["v1", "subscriptions", id, "deliveries"], Method::GET) => Self::ListDeliveries(id),
            (["v1", "subscriptions", id, "feed"], Method::GET) => Self::Feed(id),
            (["v1", "subscriptions", id, "replay"], Method::POST) => Self::Replay(id),
            (["v1", "subscriptions", id, "history", "erase"], Method::POST) => {
                Self::EraseHistory(id)
            }
            (["v1", "deliveries", id], Method::GET) => Self::GetDelivery(id),
            (["v1", "deliveries", id, "retry"], Method::POST) => Self::RetryDelivery(id),
            (["v1", "events", id], Method::GET) => Self::GetEvent(id),
            (["v1", "signing-keys"], Method::GET) => Self::SigningKeys,
            (["v1", "signing-keys", tenant], Method::GET) => Self::TenantSigningKeys(tenant),
            (["v1", "signing-keys", "rotate"], Method::POST) => Self::RotateSigningKeys,
            (["v1", "portal", "sessions"], Method::POST) => Self::OpenPortal,
            (["v1", "tenant", "erase"], Method::POST) => Self::EraseTenant,
            (["v1", "tenant", "seal"], Method::POST) => Self::SealTenant,
            (segments, _)
                if ROUTES
                    .iter()
                    .any(|(_, template)| same_shape(template, segments)) =>
            {
                return Err(ApiError::method_not_allowed());
            }
            _ => return Err(ApiError::not_found("route")),
        };
        Ok(route)
    }

    /// The scopes of which the caller needs one.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Self::ListSubscriptions
            | Self::GetSubscription(_)
            | Self::ListDeliveries(_)
            | Self::Feed(_)
            | Self::GetDelivery(_)
            | Self::GetEvent(_) => READ,
            Self::SigningKeys | Self::TenantSigningKeys(_) => ANY,
            Self::CreateSubscription
            | Self::PatchSubscription(_)
            | Self::DeleteSubscription(_)
            | Self::RotateSecret(_)
            | Self::SendTest(_)
            | Self::Replay(_)
            | Self::RetryDelivery(_)
            | Self::EraseHistory(_)
            | Self::RotateSigningKeys
            | Self::OpenPortal => MANAGE,
            Self::EraseTenant | Self::SealTenant => OPERATOR,
        }
    }
}

/// Runs `route` for `caller`, once its scopes are checked.
pub async fn dispatch<P: Ports>(
    deps: &ManageDeps<P>,
    request: &Request,
    route: Route<'_>,
    caller: &Caller,
) -> Result<Response<Body>, ApiError> {
    caller.require(route.scopes())?;
    let tenant = &caller.tenant;
    api::within_tenant_rate(
        &deps.ports.ledger,
        tenant,
        deps.max_requests_per_second,
        deps.ports.clock.now(),
    )
    .await?;
    let subscription =
        |raw: &str| SubscriptionId::parse(raw).ok_or_else(|| ApiError::not_found("subscription"));
    let delivery =
        |raw: &str| DeliveryId::parse(raw).ok_or_else(|| ApiError::not_found("delivery"));
    match route {
        Route::CreateSubscription => subscriptions::create(deps, tenant, request).await,
        Route::ListSubscriptions => subscriptions::list(deps, tenant, request).await,
        Route::GetSubscription(id) => subscriptions::get(deps, tenant, &subscription(id)?).await,
        Route::PatchSubscription(id) => {
            subscriptions::patch(deps, tenant, &subscription(id)?, request).await
        }
        Route::DeleteSubscription(id) => {
            subscriptions::delete(deps, tenant, &subscription(id)?).await
        }
        Route::RotateSecret(id) => {
            subscriptions::rotate(deps, tenant, &subscription(id)?, request).await
        }
        Route::SendTest(id) => {
            deliveries::send_test(deps, tenant, &subscription(id)?, request).await
        }
        Route::ListDeliveries(id) => {
            deliveries::list(deps, tenant, &subscription(id)?, request).await
        }
        Route::Feed(id) => feed::feed(deps, tenant, &subscription(id)?, request).await,
        Route::Replay(id) => replay::replay(deps, tenant, &subscription(id)?, request).await,
        Route::GetDelivery(id) => deliveries::get(deps, tenant, &delivery(id)?).await,
        Route::RetryDelivery(id) => deliveries::retry(deps, tenant, &delivery(id)?).await,
        Route::GetEvent(id) => events::get(deps, tenant, id).await,
        Route::SigningKeys => signing_keys::get(deps, tenant).await,
        Route::TenantSigningKeys(raw) => signing_keys::of_tenant(deps, raw).await,
        Route::RotateSigningKeys => signing_keys::rotate(deps, tenant).await,
        Route::OpenPortal => portal::open_session(deps, tenant, request).await,
        Route::EraseHistory(id) => erase::history(deps, tenant, &subscription(id)?, request).await,
        Route::EraseTenant => erase::tenant(deps, tenant, request).await,
        Route::SealTenant => seal::tenant(deps, tenant, request).await,
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
