//! The deliver function's settings, read once at start-up.

use std::time::Duration;

use herald_aws::lambda::config::{self, ConfigError, Source};
use herald_core::delivery::retry::RetryPolicy;
use herald_core::subscription::url::UrlPolicy;

/// The longest a change to a subscription may take to reach deliver.
pub const MAX_SUBSCRIPTION_CACHE_SECONDS: u64 = 300;

#[derive(Debug)]
pub struct DeliverConfig {
    pub subscriptions_table: String,
    pub deliveries_table: String,
    pub events_table: String,
    pub delivery_queue_url: String,
    pub dead_letter_queue_url: String,
    pub retry: RetryPolicy,
    pub idempotency_key_prefix: String,
    pub url_policy: UrlPolicy,
    /// Per-attempt limit on the whole exchange with a receiver.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// How many records of a batch are delivered at once.
    pub concurrency: usize,
    /// POSTs to one host at once within a batch (`HERALD_DELIVERY_PER_HOST`, 10).
    pub per_host: usize,
    pub retention: Duration,
    /// A subscription failing this long without a success is disabled.
    pub auto_disable_after: Duration,
    /// How long a container keeps the subscriptions it read, so a change reaches it up to
    /// this late (`HERALD_SUBSCRIPTION_CACHE_SECONDS`, 5; 0 keeps none).
    pub subscription_cache: Duration,
    pub keys: herald_aws::lambda::config::KeyConfig,
}

impl DeliverConfig {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        let prefix = env.get("HERALD_IDEMPOTENCY_KEY_PREFIX").unwrap_or_default();
        if prefix.len() > 32
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ConfigError::Invalid {
                name: "HERALD_IDEMPOTENCY_KEY_PREFIX",
                reason: "at most 32 letters, digits, `_` or `-`".into(),
            });
        }
        Ok(Self {
            subscriptions_table: config::required(env, "HERALD_SUBSCRIPTIONS_TABLE")?,
            deliveries_table: config::required(env, "HERALD_DELIVERIES_TABLE")?,
            events_table: config::required(env, "HERALD_EVENTS_TABLE")?,
            delivery_queue_url: config::required(env, "HERALD_DELIVERY_QUEUE_URL")?,
            dead_letter_queue_url: config::required(env, "HERALD_DEAD_LETTER_QUEUE_URL")?,
            retry: config::retry_policy(env)?,
            idempotency_key_prefix: prefix,
            url_policy: config::url_policy(env)?,
            timeout: config::duration(env, "HERALD_DELIVERY_TIMEOUT", Duration::from_secs(30))?,
            connect_timeout: config::duration(
                env,
                "HERALD_CONNECT_TIMEOUT",
                Duration::from_secs(10),
            )?,
            concurrency: config::number(env, "HERALD_DELIVERY_CONCURRENCY", 10, 1000)?,
            per_host: config::number(env, "HERALD_DELIVERY_PER_HOST", 10, 1000)?,
            retention: config::retention(env)?,
            auto_disable_after: config::duration(
                env,
                "HERALD_AUTO_DISABLE_AFTER",
                Duration::from_secs(5 * 86_400),
            )?,
            subscription_cache: config::seconds(
                env,
                "HERALD_SUBSCRIPTION_CACHE_SECONDS",
                5,
                MAX_SUBSCRIPTION_CACHE_SECONDS,
            )?,
            keys: config::signing_keys(env)?,
        })
    }
}
