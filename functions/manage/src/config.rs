//! The manage function's settings, read once at start-up.

use herald_shared::config::{self, ConfigError, Source};
use herald_shared::url_guard::UrlPolicy;

#[derive(Clone, Debug)]
pub struct ManageConfig {
    pub subscriptions_table: String,
    pub deliveries_table: String,
    pub tenant_claim: String,
    pub url_policy: UrlPolicy,
}

impl ManageConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: config::required(env, "HERALD_SUBSCRIPTIONS_TABLE")?,
            deliveries_table: config::required(env, "HERALD_DELIVERIES_TABLE")?,
            tenant_claim: config::tenant_claim(env),
            url_policy: config::url_policy(env)?,
        })
    }
}
