//! The deliver function: the SQS-triggered worker that POSTs each delivery task, signed,
//! and decides what happens next (done, retry later, failed, disabled).
//!
//! - `batch`: a batch's records decoded, their subscriptions read once, the records run
//!   within the batch's bounds (per batch and per host), and the batch's answer.
//! - `attempt`: one record: claim → check → send → record, each step a value.
//! - `settle`: the batch's queue calls, made once every record is done.
//! - `health`: a subscription's failing clock, and its disable when it runs out.

mod attempt;
mod batch;
mod health;
pub mod report;
mod settle;
pub mod signers;

use herald_aws::lambda::wiring::{AwsPorts, Function, SqsFunction, Started};
use herald_core::delivery::settings::DeliverySettings;
use herald_core::ports::{Adapters, Ports};

pub use batch::{
    BatchOutcome, batch_metrics, process_batch, process_batch_until, record_future_bytes,
};
pub use report::{Disposition, RecordReport};

pub struct DeliverDeps<P: Ports> {
    pub ports: Adapters<P>,
    pub settings: DeliverySettings,
    /// Where a traced task's segment goes (off without a daemon).
    pub xray: herald_aws::xray::XRay,
    /// Where subscriptions' GraphQL queries run (off without a source).
    pub graphql: herald_aws::graphql::GraphqlSource,
    /// Tenants' own signing keys, kept per container.
    pub signers: signers::Signers,
}

/// Deliver on AWS, for `herald_aws::lambda::wiring::run_sqs`.
pub enum Deliver {}

impl SqsFunction for Deliver {
    const FUNCTION: Function = Function::Deliver;
    type Deps = DeliverDeps<AwsPorts>;

    fn deps(started: Started) -> Self::Deps {
        DeliverDeps {
            ports: started.adapters,
            settings: started.config.delivery,
            xray: herald_aws::xray::XRay::from_address(started.config.xray_daemon.as_deref()),
            graphql: started.graphql,
            signers: signers::Signers::new(started.config.subscription_cache),
        }
    }

    async fn handle(
        deps: &std::sync::Arc<Self::Deps>,
        event: aws_lambda_events::sqs::SqsEvent,
        deadline: Option<tokio::time::Instant>,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        process_batch_until(deps, event, deadline).await.response
    }
}
