//! The ingest function's settings, read once at start-up.

use herald_aws::lambda::config::{self, ConfigError, Source};

#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub subscriptions_table: String,
    pub events_table: String,
    pub delivery_queue_url: String,
    pub dead_letter_queue_url: String,
    pub tenant_claim: herald_aws::lambda::api::TenantClaim,
    pub retention: std::time::Duration,
}

impl IngestConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: config::required(env, "HERALD_SUBSCRIPTIONS_TABLE")?,
            events_table: config::required(env, "HERALD_EVENTS_TABLE")?,
            delivery_queue_url: config::required(env, "HERALD_DELIVERY_QUEUE_URL")?,
            dead_letter_queue_url: config::required(env, "HERALD_DEAD_LETTER_QUEUE_URL")?,
            tenant_claim: config::tenant_claim(env),
            retention: config::retention(env)?,
        })
    }
}
