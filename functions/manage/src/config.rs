//! The manage function's settings, read once at start-up.

use herald_aws::lambda::config::{self, ConfigError, Source};
use herald_core::subscription::url::UrlPolicy;

#[derive(Debug)]
pub struct ManageConfig {
    pub subscriptions_table: String,
    pub deliveries_table: String,
    pub events_table: String,
    pub delivery_queue_url: String,
    pub dead_letter_queue_url: String,
    pub tenant_claim: herald_aws::lambda::api::TenantClaim,
    pub url_policy: UrlPolicy,
    pub retention: std::time::Duration,
    pub keys: herald_aws::lambda::config::KeyConfig,
}

impl ManageConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: config::required(env, "HERALD_SUBSCRIPTIONS_TABLE")?,
            deliveries_table: config::required(env, "HERALD_DELIVERIES_TABLE")?,
            events_table: config::required(env, "HERALD_EVENTS_TABLE")?,
            delivery_queue_url: config::required(env, "HERALD_DELIVERY_QUEUE_URL")?,
            dead_letter_queue_url: config::required(env, "HERALD_DEAD_LETTER_QUEUE_URL")?,
            tenant_claim: config::tenant_claim(env),
            url_policy: config::url_policy(env)?,
            retention: config::retention(env)?,
            keys: config::signing_keys(env)?,
        })
    }
}
