//! The manage function: subscriptions (create, read, list, delete), scoped to the caller's
//! tenant.

pub mod config;
pub mod handler;
mod views;

use aws_config::SdkConfig;
use herald_shared::config::{ConfigError, Source};
use herald_shared::dynamo::DynamoSubscriptionStore;
use herald_shared::ports::SystemClock;
use herald_shared::url_guard::SystemResolver;

pub use config::ManageConfig;
pub use handler::{ManageDeps, handle};

/// Manage wired to DynamoDB and the system's DNS resolver.
pub type AwsManage = ManageDeps<DynamoSubscriptionStore, SystemResolver, SystemClock>;

pub fn aws_deps(env: &dyn Source, sdk: &SdkConfig) -> Result<AwsManage, ConfigError> {
    let config = ManageConfig::from_source(env)?;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    Ok(ManageDeps {
        subscriptions: DynamoSubscriptionStore::new(dynamo, config.subscriptions_table.clone()),
        resolver: SystemResolver,
        clock: SystemClock,
        tenant_claim: config.tenant_claim,
        url_policy: config.url_policy,
    })
}
