//! The manage function: subscriptions, their secrets, the attempt log, redelivery and
//! replay, all scoped to the caller's tenant.

pub mod config;
mod deliveries;
pub mod handler;
mod subscriptions;
mod views;

use aws_config::SdkConfig;
use herald_aws::dynamo::{DynamoDeliveryLedger, DynamoEventLog, DynamoSubscriptionStore};
use herald_aws::http::resolver::SystemResolver;
use herald_aws::lambda::config::{ConfigError, Source};
use herald_aws::sqs::SqsDeliveryQueue;
use herald_core::ports::SystemClock;

pub use config::ManageConfig;
pub use handler::{ManageDeps, ROUTES, handle};

/// Manage wired to DynamoDB, SQS and the system's DNS resolver.
pub type AwsManage = ManageDeps<
    DynamoSubscriptionStore,
    DynamoDeliveryLedger,
    DynamoEventLog,
    SqsDeliveryQueue,
    SystemResolver,
    SystemClock,
>;

pub fn aws_deps(env: &dyn Source, sdk: &SdkConfig) -> Result<AwsManage, ConfigError> {
    let config = ManageConfig::from_source(env)?;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    Ok(ManageDeps {
        subscriptions: DynamoSubscriptionStore::new(
            dynamo.clone(),
            config.subscriptions_table.clone(),
        ),
        ledger: DynamoDeliveryLedger::new(dynamo.clone(), config.deliveries_table.clone()),
        events: DynamoEventLog::new(dynamo, config.events_table.clone(), config.retention),
        queue: SqsDeliveryQueue::on_first_use(
            sdk,
            config.delivery_queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        ),
        resolver: SystemResolver,
        keys: config.keys.into_source(sdk),
        clock: SystemClock,
        tenant_claim: config.tenant_claim,
        url_policy: config.url_policy,
    })
}
