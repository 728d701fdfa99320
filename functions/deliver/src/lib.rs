//! The deliver function: the SQS-triggered worker that POSTs each delivery task, signed,
//! and decides what happens next (done, retry later, failed, disabled).

pub mod config;
pub mod handler;
pub mod report;

use std::sync::Arc;

use aws_config::SdkConfig;
use herald_aws::cache::CachedSubscriptions;
use herald_aws::dynamo::{DynamoDeliveryLedger, DynamoEventLog, DynamoSubscriptionStore};
use herald_aws::http::resolver::SystemResolver;
use herald_aws::http::sender::{HttpWebhookSender, SenderSettings};
use herald_aws::lambda::config::{ConfigError, Source};
use herald_aws::sqs::SqsDeliveryQueue;
use herald_core::ports::SystemClock;

pub use config::DeliverConfig;
pub use handler::{BatchOutcome, DeliverDeps, DeliverSettings, process_batch};
pub use report::{Disposition, RecordReport};

/// Deliver wired to DynamoDB (its subscriptions kept briefly across invocations), SQS and
/// the real HTTP client.
pub type AwsDeliver = DeliverDeps<
    CachedSubscriptions<DynamoSubscriptionStore>,
    DynamoDeliveryLedger,
    DynamoEventLog,
    SqsDeliveryQueue,
    HttpWebhookSender,
    SystemClock,
>;

pub fn aws_deps(env: &dyn Source, sdk: &SdkConfig) -> Result<AwsDeliver, ConfigError> {
    let config = DeliverConfig::from_source(env)?;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let settings = SenderSettings {
        timeout: config.timeout,
        connect_timeout: config.connect_timeout,
        policy: config.url_policy,
        ..SenderSettings::default()
    };
    let sender = HttpWebhookSender::new(settings, Arc::new(SystemResolver)).map_err(|e| {
        ConfigError::Invalid {
            name: "HERALD_DELIVERY_TIMEOUT",
            reason: format!("the HTTP client could not be built: {e}"),
        }
    })?;
    Ok(DeliverDeps {
        subscriptions: CachedSubscriptions::new(
            DynamoSubscriptionStore::new(dynamo.clone(), config.subscriptions_table.clone()),
            config.subscription_cache,
            SystemClock,
        ),
        ledger: DynamoDeliveryLedger::new(dynamo.clone(), config.deliveries_table.clone()),
        events: DynamoEventLog::new(dynamo, config.events_table.clone(), config.retention),
        queue: SqsDeliveryQueue::on_first_use(
            sdk,
            config.delivery_queue_url.clone(),
            config.dead_letter_queue_url.clone(),
        ),
        sender,
        clock: SystemClock,
        settings: DeliverSettings::new(config, sdk),
    })
}
