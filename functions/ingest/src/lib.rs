//! The ingest function: `POST /v1/events`. Validates, deduplicates on the producer's event
//! id, matches the tenant's subscriptions and queues one delivery task per match.

pub mod config;
pub mod handler;

use aws_config::SdkConfig;
use herald_aws::dynamo::{DynamoEventLog, DynamoSubscriptionStore};
use herald_aws::lambda::config::{ConfigError, Source};
use herald_aws::sqs::SqsDeliveryQueue;
use herald_core::ports::SystemClock;

pub use config::IngestConfig;
pub use handler::{IngestDeps, ROUTES, handle};

/// Ingest wired to DynamoDB and SQS.
pub type AwsIngest =
    IngestDeps<DynamoSubscriptionStore, DynamoEventLog, SqsDeliveryQueue, SystemClock>;

/// Builds the AWS-backed dependencies from configuration; clients are made once here.
pub fn aws_deps(env: &dyn Source, sdk: &SdkConfig) -> Result<AwsIngest, ConfigError> {
    let config = IngestConfig::from_source(env)?;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    Ok(IngestDeps {
        subscriptions: DynamoSubscriptionStore::new(
            dynamo.clone(),
            config.subscriptions_table.clone(),
        ),
        events: DynamoEventLog::new(dynamo, config.events_table.clone(), config.retention),
        queue: SqsDeliveryQueue::new(
            sqs,
            config.delivery_queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        ),
        clock: SystemClock,
        tenant_claim: config.tenant_claim,
    })
}
