//! Routing of the management API. Every call is scoped to the caller's tenant: another
//! tenant's subscription or delivery is indistinguishable from one that does not exist.

use herald_aws::lambda::api::{self, ApiError};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{Clock, DeliveryLedger, DeliveryQueue, EventLog, SubscriptionStore};
use herald_core::subscription::url::{Resolver, UrlPolicy};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::{deliveries, subscriptions};

pub struct ManageDeps<S, L, E, Q, R, C> {
    pub subscriptions: S,
    pub ledger: L,
    pub events: E,
    pub queue: Q,
    pub resolver: R,
    /// The deployment's asymmetric keys; manage shows the public halves.
    pub keys: herald_aws::secrets::KeySource,
    pub clock: C,
    pub tenant_claim: herald_aws::lambda::api::TenantClaim,
    pub url_policy: UrlPolicy,
}

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

/// The dependencies of one `Ports` implementation.
pub type DepsOf<P> = ManageDeps<
    <P as Ports>::S,
    <P as Ports>::L,
    <P as Ports>::E,
    <P as Ports>::Q,
    <P as Ports>::R,
    <P as Ports>::C,
>;

/// The ports manage needs, named once so route functions take one type parameter.
pub trait Ports {
    type S: SubscriptionStore;
    type L: DeliveryLedger;
    type E: EventLog;
    type Q: DeliveryQueue;
    type R: Resolver;
    type C: Clock;
    fn deps(&self) -> &DepsOf<Self>;
}

impl<S, L, E, Q, R, C> Ports for ManageDeps<S, L, E, Q, R, C>
where
    S: SubscriptionStore,
    L: DeliveryLedger,
    E: EventLog,
    Q: DeliveryQueue,
    R: Resolver,
    C: Clock,
{
    type S = S;
    type L = L;
    type E = E;
    type Q = Q;
    type R = R;
    type C = C;
    fn deps(&self) -> &Self {
        self
    }
}

/// Answers one API Gateway request. Never fails: every error is a JSON answer.
pub async fn handle<P: Ports>(ports: &P, request: Request) -> Response<Body> {
    match route(ports, &request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn route<P: Ports>(ports: &P, request: &Request) -> Result<Response<Body>, ApiError> {
    let deps = ports.deps();
    let path = api::route_path(request);
    let path = path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();
    let tenant = || api::tenant_of(request, &deps.tenant_claim);
    let subscription_id =
        |raw: &str| SubscriptionId::parse(raw).ok_or_else(|| ApiError::not_found("subscription"));
    match (segments.as_slice(), method) {
        (["v1", "subscriptions"], Method::POST) => {
            subscriptions::create(ports, &tenant()?, request).await
        }
        (["v1", "subscriptions"], Method::GET) => {
            subscriptions::list(ports, &tenant()?, request).await
        }
        (["v1", "subscriptions", id], Method::GET) => {
            subscriptions::get(ports, &tenant()?, &subscription_id(id)?).await
        }
        (["v1", "subscriptions", id], Method::PATCH) => {
            subscriptions::patch(ports, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id], Method::DELETE) => {
            subscriptions::delete(ports, &tenant()?, &subscription_id(id)?).await
        }
        (["v1", "subscriptions", id, "secret", "rotate"], Method::POST) => {
            subscriptions::rotate(ports, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "test"], Method::POST) => {
            deliveries::send_test(ports, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "deliveries"], Method::GET) => {
            deliveries::list(ports, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "subscriptions", id, "replay"], Method::POST) => {
            deliveries::replay(ports, &tenant()?, &subscription_id(id)?, request).await
        }
        (["v1", "deliveries", id], Method::GET) => {
            let id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery"))?;
            deliveries::get(ports, &tenant()?, &id).await
        }
        (["v1", "deliveries", id, "retry"], Method::POST) => {
            let id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery"))?;
            deliveries::retry(ports, &tenant()?, &id).await
        }
        (["v1", "signing-keys"], Method::GET) => {
            tenant()?;
            let keys = deps.keys.current().await.map_err(|e| {
                tracing::error!(error = %e, "reading the signing keys failed");
                ApiError::unavailable()
            })?;
            Ok(api::json_response(
                lambda_http::http::StatusCode::OK,
                &keys.public(),
            ))
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

/// The caller's subscription, or 404.
pub(crate) async fn owned_subscription<S: SubscriptionStore>(
    store: &S,
    tenant: &TenantId,
    id: &SubscriptionId,
) -> Result<herald_core::subscription::Subscription, ApiError> {
    store
        .get(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("subscription"))
}

/// What this deployment offers a subscription.
pub(crate) fn offer<P: Ports>(ports: &P) -> herald_core::subscription::Offer {
    let offer = ports.deps().keys.offer();
    herald_core::subscription::Offer {
        reserved_headers: offer.rsa_headers,
        ed25519: offer.ed25519,
        rsa: offer.rsa,
    }
}

/// One page of a listing as `{"data": [...], "next_cursor": …}`.
pub(crate) fn page_response<'a, T, V: serde::Serialize>(
    page: &'a herald_core::ports::Page<T>,
    view: impl Fn(&'a T) -> V,
) -> Response<Body> {
    let data: Vec<V> = page.items.iter().map(view).collect();
    api::json_response(
        lambda_http::http::StatusCode::OK,
        &serde_json::json!({"data": data, "next_cursor": page.next}),
    )
}

/// A `limit` query parameter within 1..=max.
pub(crate) fn limit_param(
    request: &Request,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match api::query_param(request, "limit") {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: must be a number from 1 to {max}"))
            }),
    }
}
