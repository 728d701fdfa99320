//! The ingest function: `POST /v1/events`. Validates, then publishes through
//! `herald_core::flow::publish`: deduplicated on the producer's event id, matched against
//! the tenant's subscriptions, one delivery task queued per match.

mod publish;

use herald_aws::lambda::api::TenantClaim;
use herald_aws::lambda::wiring::{Function, HttpFunction, Started};
use herald_core::ports::{Adapters, Ports};
use lambda_http::{Body, Request, Response};

pub use publish::{ROUTES, handle, publish_metrics};

pub struct IngestDeps<P: Ports> {
    pub ports: Adapters<P>,
    pub tenant_claim: TenantClaim,
    /// The most deliveries one publish may make (`HERALD_MAX_DELIVERIES_PER_PUBLISH`).
    pub max_deliveries_per_publish: usize,
    /// API requests a tenant may make a second (`HERALD_MAX_REQUESTS_PER_SECOND`; 0: no
    /// limit).
    pub max_requests_per_second: u32,
    /// Where the `publish` span of a sampled invocation goes (off without a daemon).
    pub xray: herald_aws::xray::XRay,
}

/// Ingest on AWS, for `herald_aws::lambda::wiring::run_http`.
pub enum Ingest {}

impl HttpFunction for Ingest {
    const FUNCTION: Function = Function::Ingest;
    type Deps = IngestDeps<herald_aws::lambda::wiring::AwsPorts>;

    fn deps(started: Started) -> Self::Deps {
        IngestDeps {
            ports: started.adapters,
            tenant_claim: started.config.tenant_claim,
            max_deliveries_per_publish: started.config.limits.deliveries_per_publish,
            max_requests_per_second: started.config.limits.requests_per_second,
            xray: herald_aws::xray::XRay::from_address(started.config.xray_daemon.as_deref()),
        }
    }

    fn handle(deps: &Self::Deps, request: Request) -> impl Future<Output = Response<Body>> + Send {
        handle(deps, request)
    }
}
