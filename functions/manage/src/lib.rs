//! The manage function: subscriptions, their secrets, the attempt log, redelivery and
//! replay, all scoped to the caller's tenant.

mod http;
mod portal;
mod router;
mod routes;
mod views;

use herald_aws::lambda::api::TenantClaim;
use herald_aws::lambda::wiring::{AwsPorts, Function, HttpFunction, Started};
use herald_core::portal::PortalSettings;
use herald_core::ports::{Adapters, Ports};
use herald_core::subscription::url::UrlPolicy;
use lambda_http::{Body, Request, Response};

pub use portal::{PAGE as PORTAL_PAGE, content_security_policy};
pub use router::{ROUTES, Route, handle};
pub use routes::replay::MAX_REPLAY;

pub struct ManageDeps<P: Ports> {
    pub ports: Adapters<P>,
    pub tenant_claim: TenantClaim,
    pub url_policy: UrlPolicy,
    pub portal: PortalSettings,
    /// The most attempts a delivery can make in this deployment (the queue's receives
    /// less those kept for receives without an attempt): a bound on a subscription's own
    /// retry policy.
    pub max_attempts: u32,
    /// The longest an attempt may take in this deployment (`HERALD_DELIVERY_TIMEOUT`): a
    /// bound on a subscription's own `timeout`.
    pub max_timeout: std::time::Duration,
    /// The most subscriptions a tenant may have (`HERALD_MAX_SUBSCRIPTIONS_PER_TENANT`).
    pub max_subscriptions: usize,
    /// Deliveries a tenant may queue again (`retry`, `replay`) a minute.
    pub max_redeliveries_per_minute: usize,
    /// API requests a tenant may make a second (`HERALD_MAX_REQUESTS_PER_SECOND`; 0: no
    /// limit).
    pub max_requests_per_second: u32,
    /// How long after a tenant's subscriptions are erased deliver may still record a
    /// delivery of theirs: the sweep of its erasure waits this long.
    pub erasure_settle: std::time::Duration,
    /// Where subscriptions' GraphQL queries are checked (off without a source).
    pub graphql: herald_aws::graphql::GraphqlSource,
    /// How long a tenant's rotated signing key and its new one overlap
    /// (`HERALD_SIGNING_KEY_OVERLAP`).
    pub signing_key_overlap: std::time::Duration,
}

use herald_core::delivery::settings::RECEIVES_WITHOUT_ATTEMPT;

/// Manage on AWS, for `herald_aws::lambda::wiring::run_http`.
pub enum Manage {}

impl HttpFunction for Manage {
    const FUNCTION: Function = Function::Manage;
    type Deps = ManageDeps<AwsPorts>;

    fn deps(started: Started) -> Self::Deps {
        ManageDeps {
            ports: started.adapters,
            tenant_claim: started.config.tenant_claim,
            url_policy: started.config.url_policy,
            max_attempts: started
                .config
                .delivery
                .max_receives
                .saturating_sub(RECEIVES_WITHOUT_ATTEMPT),
            portal: started.config.portal,
            erasure_settle: started.config.erasure_settle,
            max_timeout: started.config.timeout,
            max_subscriptions: started.config.limits.subscriptions_per_tenant,
            max_redeliveries_per_minute: started.config.limits.redeliveries_per_minute,
            max_requests_per_second: started.config.limits.requests_per_second,
            graphql: started.graphql,
            signing_key_overlap: started.config.signing_key_overlap,
        }
    }

    fn handle(deps: &Self::Deps, request: Request) -> impl Future<Output = Response<Body>> + Send {
        handle(deps, request)
    }
}
