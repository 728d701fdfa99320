//! Configuration, read once at start-up from the environment into typed values. Every
//! error names the variable that is missing or wrong.

use std::time::Duration;

use thiserror::Error;

use crate::lambda::api::TenantClaim;
use herald_core::delivery::retry::{RetryPolicy, parse_duration};
use herald_core::delivery::settings::ClaimMode;
use herald_core::subscription::url::UrlPolicy;

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Source for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

pub fn required(env: &dyn Source, name: &'static str) -> Result<String, ConfigError> {
    env.get(name).ok_or(ConfigError::Missing(name))
}

pub fn duration(
    env: &dyn Source,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(raw) => parse_duration(&raw).map_err(|e| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }),
    }
}

pub fn flag(env: &dyn Source, name: &'static str) -> Result<bool, ConfigError> {
    match env.get(name).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name,
            reason: format!("`{other}` is not true or false"),
        }),
    }
}

pub fn number(
    env: &dyn Source,
    name: &'static str,
    default: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("`{raw}` is not a number from 1 to {max}"),
            }),
        },
    }
}

/// A whole number of seconds from 0 to `max`.
pub fn seconds(
    env: &dyn Source,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    match env.get(name) {
        None => Ok(Duration::from_secs(default)),
        Some(raw) => match raw.parse::<u64>() {
            Ok(n) if n <= max => Ok(Duration::from_secs(n)),
            _ => Err(ConfigError::Invalid {
                name,
                reason: format!("`{raw}` is not a whole number of seconds from 0 to {max}"),
            }),
        },
    }
}

/// `HERALD_DELIVERY_CLAIM`: `lease` (the default), `read` or `none`
/// (`herald_core::delivery::settings::ClaimMode`).
fn claim_mode(env: &dyn Source) -> Result<ClaimMode, ConfigError> {
    match env.get("HERALD_DELIVERY_CLAIM") {
        None => Ok(ClaimMode::Lease),
        Some(raw) => ClaimMode::parse(raw.trim()).ok_or_else(|| ConfigError::Invalid {
            name: "HERALD_DELIVERY_CLAIM",
            reason: format!("`{raw}` is not `lease`, `read` or `none`"),
        }),
    }
}

/// `HERALD_ALLOW_HTTP` and `HERALD_ALLOW_LOOPBACK`; both off in a deployment by default.
pub fn url_policy(env: &dyn Source) -> Result<UrlPolicy, ConfigError> {
    Ok(UrlPolicy {
        allow_http: flag(env, "HERALD_ALLOW_HTTP")?,
        allow_loopback: flag(env, "HERALD_ALLOW_LOOPBACK")?,
        // Set by the local runner's wiring alone, from its AWS endpoint.
        denied: Vec::new(),
    })
}

/// `HERALD_RETRY_SCHEDULE` (`exponential`, `exponential:<first>`, or `5s,5m,30m…`) and
/// `HERALD_RETRY_WINDOW` (default 3d).
pub fn retry_policy(env: &dyn Source) -> Result<RetryPolicy, ConfigError> {
    let schedule = env
        .get("HERALD_RETRY_SCHEDULE")
        .unwrap_or_else(|| "exponential".into());
    let window = env
        .get("HERALD_RETRY_WINDOW")
        .unwrap_or_else(|| "3d".into());
    RetryPolicy::parse(&schedule, &window).map_err(|e| ConfigError::Invalid {
        name: "HERALD_RETRY_SCHEDULE",
        reason: e.to_string(),
    })
}

/// Where the deployment's asymmetric keys come from.
#[derive(Clone, Debug)]
pub enum KeyConfig {
    /// Given in the environment: `HERALD_ED25519_SIGNING_KEY` (`whsk_…`) and
    /// `HERALD_RSA_SIGNING_KEY` (PEM). The local runner and tests.
    Fixed(std::sync::Arc<herald_core::webhook::keys::SigningKeys>),
    /// Named Secrets Manager secrets, read at run time: `HERALD_ED25519_SIGNING_KEY_SECRET`
    /// and `HERALD_RSA_SIGNING_KEY_SECRET`, read again every `HERALD_SIGNING_KEY_REFRESH`
    /// (5m). What the template deploys.
    Secrets(crate::secrets::SecretNames),
}

impl KeyConfig {
    pub fn into_source(self, sdk: &aws_config::SdkConfig) -> crate::secrets::KeySource {
        use crate::secrets::KeySource;
        match self {
            Self::Fixed(keys) => KeySource::Fixed(keys),
            Self::Secrets(names) => KeySource::secrets(sdk, names),
        }
    }
}

/// The deployment's asymmetric keys, or the secrets holding them, and the RSA headers'
/// names (`HERALD_RSA_SHA512_HEADER`, `HERALD_RSA_MD5_HEADER`). All optional; a key and
/// its secret are not both set.
pub fn signing_keys(env: &dyn Source) -> Result<KeyConfig, ConfigError> {
    use herald_core::webhook::keys::{
        DEFAULT_RSA_MD5_HEADER, DEFAULT_RSA_SHA512_HEADER, KeyError, SigningKeys,
    };
    let sha512 = env
        .get("HERALD_RSA_SHA512_HEADER")
        .unwrap_or_else(|| DEFAULT_RSA_SHA512_HEADER.into());
    let md5 = env
        .get("HERALD_RSA_MD5_HEADER")
        .unwrap_or_else(|| DEFAULT_RSA_MD5_HEADER.into());
    let ed25519_secret = env.get("HERALD_ED25519_SIGNING_KEY_SECRET");
    let rsa_secret = env.get("HERALD_RSA_SIGNING_KEY_SECRET");
    for (key, secret) in [
        ("HERALD_ED25519_SIGNING_KEY", &ed25519_secret),
        ("HERALD_RSA_SIGNING_KEY", &rsa_secret),
    ] {
        if secret.is_some() && env.get(key).is_some() {
            return Err(ConfigError::Invalid {
                name: key,
                reason: format!("set the key or its secret ({key}_SECRET), not both"),
            });
        }
    }
    if ed25519_secret.is_some() || rsa_secret.is_some() {
        // Checked now, as they would be with the key in hand.
        if rsa_secret.is_some() {
            headers_ok(&sha512, &md5)?;
        }
        return Ok(KeyConfig::Secrets(crate::secrets::SecretNames {
            ed25519: ed25519_secret,
            rsa: rsa_secret,
            sha512_header: sha512,
            md5_header: md5,
            refresh: duration(env, "HERALD_SIGNING_KEY_REFRESH", Duration::from_secs(300))?,
        }));
    }
    SigningKeys::new(
        env.get("HERALD_ED25519_SIGNING_KEY").as_deref(),
        env.get("HERALD_RSA_SIGNING_KEY").as_deref(),
        &sha512,
        &md5,
    )
    .map(|keys| KeyConfig::Fixed(std::sync::Arc::new(keys)))
    .map_err(|e| {
        let name = match e {
            KeyError::Ed25519 => "HERALD_ED25519_SIGNING_KEY",
            KeyError::Rsa => "HERALD_RSA_SIGNING_KEY",
            KeyError::HeaderName => "HERALD_RSA_SHA512_HEADER",
        };
        ConfigError::Invalid {
            name,
            reason: e.to_string(),
        }
    })
}

/// The RSA headers' names are header names, and two.
fn headers_ok(sha512: &str, md5: &str) -> Result<(), ConfigError> {
    if herald_core::webhook::keys::rsa_header_names_ok(sha512, md5) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: "HERALD_RSA_SHA512_HEADER",
            reason: herald_core::webhook::keys::KeyError::HeaderName.to_string(),
        })
    }
}

/// How long delivery records and event acceptance records are kept (`HERALD_RETENTION`, 30d).
pub fn retention(env: &dyn Source) -> Result<Duration, ConfigError> {
    duration(env, "HERALD_RETENTION", Duration::from_secs(30 * 86_400))
}

/// The JWT claim that names the tenant (`HERALD_TENANT_CLAIM`, default `tenant`), read
/// from the unchecked token under `sam local` alone (`AWS_SAM_LOCAL=true`, which the SAM
/// CLI sets in its containers and Lambda never does), where no JWT authorizer runs.
pub fn tenant_claim(env: &dyn Source) -> TenantClaim {
    TenantClaim {
        name: env
            .get("HERALD_TENANT_CLAIM")
            .unwrap_or_else(|| "tenant".into()),
        unverified_under_sam_local: env.get("AWS_SAM_LOCAL").as_deref() == Some("true"),
    }
}

/// The names of the stack's tables and queues, as the template sets them.
#[derive(Clone, Debug)]
pub struct Resources {
    pub subscriptions_table: String,
    pub deliveries_table: String,
    pub events_table: String,
    pub delivery_queue_url: String,
    pub dead_letter_queue_url: String,
    /// The FIFO queue of ordered subscriptions' tasks, and its own dead-letter queue.
    pub ordered_queue_url: String,
    pub ordered_dead_letter_queue_url: String,
    /// The slow lane's queue (`HERALD_SLOW_QUEUE_URL`); none, no slow lane.
    pub slow_queue_url: Option<String>,
    pub portal_sessions_table: String,
}

/// `HERALD_SLOW_LANE_AFTER` (10 s; `0` turns the slow lane off): how long an attempt on
/// the standard lane waits for an answer before it is cut and sent again on the slow
/// lane. Only with a slow lane's queue; not shorter than the delivery timeout, no attempt
/// would ever be cut, so there is no slow lane either.
fn slow_after(
    env: &dyn Source,
    slow_queue: Option<&str>,
    timeout: Duration,
) -> Result<Option<Duration>, ConfigError> {
    if slow_queue.is_none() {
        return Ok(None);
    }
    let after = duration(env, "HERALD_SLOW_LANE_AFTER", Duration::from_secs(10))?;
    if !after.is_zero() && after < Duration::from_secs(1) {
        return Err(ConfigError::Invalid {
            name: "HERALD_SLOW_LANE_AFTER",
            reason: "at least 1s, or 0 for no slow lane".into(),
        });
    }
    Ok((!after.is_zero() && after < timeout).then_some(after))
}

/// The longest a change to a subscription may take to reach deliver.
pub const MAX_SUBSCRIPTION_CACHE_SECONDS: u64 = 300;

/// Every setting of a Herald function, read once at start-up; the template gives every
/// function the same variables, and each uses what it needs.
#[derive(Debug)]
pub struct Config {
    pub resources: Resources,
    pub tenant_claim: TenantClaim,
    pub url_policy: UrlPolicy,
    pub retention: Duration,
    pub keys: KeyConfig,
    pub delivery: herald_core::delivery::settings::DeliverySettings,
    /// Per-attempt limit on the whole exchange with a receiver.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// How long deliver keeps the subscriptions it read, so a change reaches it up to this
    /// late (`HERALD_SUBSCRIPTION_CACHE_SECONDS`, 5; 0 keeps none).
    pub subscription_cache: Duration,
    /// The consumer portal's looks, framing and session lifetime.
    pub portal: herald_core::portal::PortalSettings,
    /// How long after a tenant's subscriptions are erased deliver may still record a
    /// delivery of theirs (`HERALD_ERASURE_SETTLE_SECONDS`; by default the subscription
    /// cache's time and deliver's 60 s timeout, the longest a batch that read them
    /// before can go on).
    pub erasure_settle: Duration,
    /// Per-tenant caps.
    pub limits: Limits,
    /// How long a tenant's rotated signing key and its new one both verify
    /// (`HERALD_SIGNING_KEY_OVERLAP`, 24h; 1s to 30 days): the new key is served at once,
    /// its RSA signatures begin and the old key retires after this.
    pub signing_key_overlap: Duration,
    /// How long attempt excerpts are kept (`HERALD_EXCERPT_RETENTION`).
    pub excerpt_retention: crate::dynamo::ExcerptRetention,
    /// The X-Ray daemon Lambda runs beside the function (`AWS_XRAY_DAEMON_ADDRESS`); spans
    /// are sent to it for sampled traces (`crate::xray`).
    pub xray_daemon: Option<String>,
    /// The GraphQL source subscriptions' queries run against (`HERALD_GRAPHQL_URL`), if any.
    pub graphql: Option<crate::graphql::GraphqlConfig>,
    /// The KMS key subscriptions' secrets and header values are sealed under
    /// (`HERALD_SECRETS_KEY`: an id, ARN or alias; unset or empty, they are stored as they
    /// are, `crate::seal`).
    pub secrets_key: Option<String>,
}

/// Longest `HERALD_GRAPHQL_TIMEOUT`: the source's time comes before the POST's within one
/// lease.
pub const MAX_GRAPHQL_TIMEOUT: Duration = Duration::from_secs(15);

/// `HERALD_GRAPHQL_URL` (empty or unset: none), `HERALD_GRAPHQL_SECRET` (a Secrets
/// Manager secret with the credentials), `HERALD_GRAPHQL_TIMEOUT` (10 s, at most 15 s: with a 30 s POST an attempt stays within deliver's 60 s).
fn graphql(
    env: &dyn Source,
    policy: &UrlPolicy,
) -> Result<Option<crate::graphql::GraphqlConfig>, ConfigError> {
    let Some(raw) = env
        .get("HERALD_GRAPHQL_URL")
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let invalid = |reason: &str| ConfigError::Invalid {
        name: "HERALD_GRAPHQL_URL",
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        _ => {
            return Err(invalid(
                "must be an https:// URL (http:// only with HERALD_ALLOW_HTTP)",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials belong in HERALD_GRAPHQL_SECRET, not the URL",
        ));
    }
    let timeout = duration(env, "HERALD_GRAPHQL_TIMEOUT", Duration::from_secs(10))?;
    if timeout.is_zero() || timeout > MAX_GRAPHQL_TIMEOUT {
        return Err(ConfigError::Invalid {
            name: "HERALD_GRAPHQL_TIMEOUT",
            reason: format!("between 1s and {}s", MAX_GRAPHQL_TIMEOUT.as_secs()),
        });
    }
    Ok(Some(crate::graphql::GraphqlConfig {
        url,
        secret: env
            .get("HERALD_GRAPHQL_SECRET")
            .filter(|v| !v.trim().is_empty()),
        timeout,
        refresh: duration(env, "HERALD_SIGNING_KEY_REFRESH", Duration::from_secs(300))?,
    }))
}

/// What one tenant may use of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `HERALD_MAX_SUBSCRIPTIONS_PER_TENANT` (100; at most 10,000).
    pub subscriptions_per_tenant: usize,
    /// `HERALD_MAX_DELIVERIES_PER_PUBLISH`: deliveries one publish call may make (10,000:
    /// 100 events to 100 subscriptions; at most 100,000).
    pub deliveries_per_publish: usize,
    /// `HERALD_MAX_REDELIVERIES_PER_MINUTE`: deliveries a tenant may queue again by
    /// `retry` and `replay` in one minute (1,000; at most 1,000,000).
    pub redeliveries_per_minute: usize,
    /// `HERALD_MAX_REQUESTS_PER_SECOND`: API requests one tenant may make a second, across
    /// every container (0, the default here: no limit; the template's default is 100).
    pub requests_per_second: u32,
}

/// `HERALD_MAX_REQUESTS_PER_SECOND`: 0 (no limit) to 100,000.
fn requests_per_second(env: &dyn Source) -> Result<u32, ConfigError> {
    const NAME: &str = "HERALD_MAX_REQUESTS_PER_SECOND";
    match env.get(NAME) {
        None => Ok(0),
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if n <= 100_000 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name: NAME,
                reason: format!("`{raw}` is not a number from 0 (no limit) to 100000"),
            }),
        },
    }
}

fn limits(env: &dyn Source) -> Result<Limits, ConfigError> {
    Ok(Limits {
        subscriptions_per_tenant: number(env, "HERALD_MAX_SUBSCRIPTIONS_PER_TENANT", 100, 10_000)?,
        deliveries_per_publish: number(env, "HERALD_MAX_DELIVERIES_PER_PUBLISH", 10_000, 100_000)?,
        redeliveries_per_minute: number(
            env,
            "HERALD_MAX_REDELIVERIES_PER_MINUTE",
            1_000,
            1_000_000,
        )?,
        requests_per_second: requests_per_second(env)?,
    })
}

fn signing_key_overlap(env: &dyn Source) -> Result<Duration, ConfigError> {
    const NAME: &str = "HERALD_SIGNING_KEY_OVERLAP";
    let overlap = duration(env, NAME, Duration::from_secs(24 * 3600))?;
    if overlap < Duration::from_secs(1) || overlap > Duration::from_secs(30 * 24 * 3600) {
        return Err(ConfigError::Invalid {
            name: NAME,
            reason: "must be from 1s to 30 days".into(),
        });
    }
    Ok(overlap)
}

/// Deliver's `Timeout` in `template.yaml`.
pub const DELIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// `HERALD_PORTAL_NAME`, `HERALD_PORTAL_COLOR` (`#rrggbb`), `HERALD_PORTAL_LOGO` (a `data:`
/// URL), `HERALD_PORTAL_FRAME_ANCESTORS` (origins, comma-separated), `HERALD_PORTAL_URL`
/// and `HERALD_PORTAL_SESSION_LIFETIME` (1h; at most 12h).
pub fn portal(env: &dyn Source) -> Result<herald_core::portal::PortalSettings, ConfigError> {
    use herald_core::portal::{
        DEFAULT_LIFETIME, MAX_LIFETIME, MIN_LIFETIME, check_color, check_frame_ancestor, check_logo,
    };
    let invalid = |name: &'static str| move |reason: String| ConfigError::Invalid { name, reason };
    let color = env.get("HERALD_PORTAL_COLOR");
    if let Some(color) = &color {
        check_color(color).map_err(invalid("HERALD_PORTAL_COLOR"))?;
    }
    let logo = env.get("HERALD_PORTAL_LOGO");
    if let Some(logo) = &logo {
        check_logo(logo).map_err(invalid("HERALD_PORTAL_LOGO"))?;
    }
    let frame_ancestors: Vec<String> = env
        .get("HERALD_PORTAL_FRAME_ANCESTORS")
        .unwrap_or_default()
        .split(',')
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    for origin in &frame_ancestors {
        check_frame_ancestor(origin).map_err(invalid("HERALD_PORTAL_FRAME_ANCESTORS"))?;
    }
    let base_url = env.get("HERALD_PORTAL_URL");
    if let Some(base) = &base_url {
        let parsed = url::Url::parse(base).map_err(|e| ConfigError::Invalid {
            name: "HERALD_PORTAL_URL",
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(ConfigError::Invalid {
                name: "HERALD_PORTAL_URL",
                reason: "must be an http(s) URL".into(),
            });
        }
    }
    let default_lifetime = duration(env, "HERALD_PORTAL_SESSION_LIFETIME", DEFAULT_LIFETIME)?;
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&default_lifetime) {
        return Err(ConfigError::Invalid {
            name: "HERALD_PORTAL_SESSION_LIFETIME",
            reason: "must be from 1m to 12h".into(),
        });
    }
    Ok(herald_core::portal::PortalSettings {
        name: env
            .get("HERALD_PORTAL_NAME")
            .map(|n| n.chars().take(80).collect()),
        color,
        logo,
        frame_ancestors,
        base_url: base_url.map(|b| b.trim_end_matches('/').to_owned()),
        default_lifetime,
    })
}

/// `HERALD_MAX_RECEIVE_COUNT`: the delivery queue's `maxReceiveCount` (the template sets
/// both from one parameter). The retry schedule must fit under it with room for receives
/// without an attempt, or deliveries would be dead-lettered by SQS before their schedule
/// ends; a deployment whose schedule does not fit is refused at start-up.
fn max_receives(
    env: &dyn Source,
    retry: &herald_core::delivery::retry::RetryPolicy,
) -> Result<u32, ConfigError> {
    use herald_core::delivery::settings::{DEFAULT_MAX_RECEIVES, RECEIVES_WITHOUT_ATTEMPT};
    let max = number(
        env,
        "HERALD_MAX_RECEIVE_COUNT",
        DEFAULT_MAX_RECEIVES as usize,
        herald_core::delivery::MAX_ATTEMPTS_KEPT as usize,
    )? as u32;
    let needed = retry.max_attempts() + RECEIVES_WITHOUT_ATTEMPT;
    if max < needed {
        return Err(ConfigError::Invalid {
            name: "HERALD_MAX_RECEIVE_COUNT",
            reason: format!(
                "the retry schedule allows {} attempts, which with {RECEIVES_WITHOUT_ATTEMPT} \
                 receives without an attempt needs a maxReceiveCount of at least {needed}: raise \
                 the queue's (the template's MaxReceiveCount) or shorten the schedule",
                retry.max_attempts()
            ),
        });
    }
    Ok(max)
}

/// `HERALD_EXCERPT_RETENTION`: how long the excerpts of receivers' answers are kept, when
/// shorter than the records (`crate::dynamo::ExcerptRetention`); unset or empty, as long
/// as the records; `0`, not at all.
fn excerpt_retention(
    env: &dyn Source,
    retention: Duration,
) -> Result<crate::dynamo::ExcerptRetention, ConfigError> {
    use crate::dynamo::ExcerptRetention;
    let name = "HERALD_EXCERPT_RETENTION";
    let raw = env.get(name).unwrap_or_default();
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(ExcerptRetention::WithRecords);
    }
    if raw == "0" {
        return Ok(ExcerptRetention::For(Duration::ZERO));
    }
    let excerpts = parse_duration(raw).map_err(|e| ConfigError::Invalid {
        name,
        reason: e.to_string(),
    })?;
    if excerpts >= retention {
        return Err(ConfigError::Invalid {
            name,
            reason: format!(
                "{raw} is not shorter than the records' retention ({} days); leave it empty to keep excerpts as long as their records",
                retention.as_secs() / 86_400
            ),
        });
    }
    Ok(ExcerptRetention::For(excerpts))
}

/// `HERALD_ERASURE_SETTLE_SECONDS`: by default the subscription cache's time and
/// deliver's timeout; never less than the cache's time.
fn erasure_settle(env: &dyn Source, subscription_cache: Duration) -> Result<Duration, ConfigError> {
    let settle = seconds(
        env,
        "HERALD_ERASURE_SETTLE_SECONDS",
        (subscription_cache + DELIVER_TIMEOUT).as_secs(),
        86_400,
    )?;
    if settle < subscription_cache {
        return Err(ConfigError::Invalid {
            name: "HERALD_ERASURE_SETTLE_SECONDS",
            reason: "at least HERALD_SUBSCRIPTION_CACHE_SECONDS: deliver may hold an erased \
                     subscription that long"
                .into(),
        });
    }
    Ok(settle)
}

impl Config {
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
        let timeout = duration(env, "HERALD_DELIVERY_TIMEOUT", Duration::from_secs(30))?;
        let url_policy = url_policy(env)?;
        let graphql = graphql(env, &url_policy)?;
        // An attempt of a subscription with a query asks the source before its POST.
        let attempt = timeout + graphql.as_ref().map_or(Duration::ZERO, |g| g.timeout);
        let retention = retention(env)?;
        let retry = retry_policy(env)?;
        let max_receives = max_receives(env, &retry)?;
        let subscription_cache = seconds(
            env,
            "HERALD_SUBSCRIPTION_CACHE_SECONDS",
            5,
            MAX_SUBSCRIPTION_CACHE_SECONDS,
        )?;
        let erasure_settle = erasure_settle(env, subscription_cache)?;
        let slow_queue_url = env
            .get("HERALD_SLOW_QUEUE_URL")
            .filter(|v| !v.trim().is_empty());
        let slow_after = slow_after(env, slow_queue_url.as_deref(), timeout)?;
        // Deliver knows the slow lane's records by their event source, this queue's ARN.
        let slow_queue = slow_queue_url
            .as_deref()
            .and_then(herald_core::delivery::settings::queue_name);
        Ok(Self {
            resources: Resources {
                subscriptions_table: required(env, "HERALD_SUBSCRIPTIONS_TABLE")?,
                deliveries_table: required(env, "HERALD_DELIVERIES_TABLE")?,
                events_table: required(env, "HERALD_EVENTS_TABLE")?,
                delivery_queue_url: required(env, "HERALD_DELIVERY_QUEUE_URL")?,
                dead_letter_queue_url: required(env, "HERALD_DEAD_LETTER_QUEUE_URL")?,
                ordered_queue_url: required(env, "HERALD_ORDERED_QUEUE_URL")?,
                ordered_dead_letter_queue_url: required(
                    env,
                    "HERALD_ORDERED_DEAD_LETTER_QUEUE_URL",
                )?,
                slow_queue_url,
                portal_sessions_table: required(env, "HERALD_PORTAL_SESSIONS_TABLE")?,
            },
            portal: portal(env)?,
            tenant_claim: tenant_claim(env),
            url_policy,
            retention,
            keys: signing_keys(env)?,
            delivery: herald_core::delivery::settings::DeliverySettings {
                retry,
                max_receives,
                idempotency_key_prefix: prefix,
                concurrency: number(env, "HERALD_DELIVERY_CONCURRENCY", 10, 1000)?,
                per_host: number(env, "HERALD_DELIVERY_PER_HOST", 10, 1000)?,
                lease: herald_core::delivery::settings::DeliverySettings::lease_for(attempt),
                timeout,
                retention,
                auto_disable_after: duration(
                    env,
                    "HERALD_AUTO_DISABLE_AFTER",
                    Duration::from_secs(5 * 86_400),
                )?,
                slow_after,
                slow_queue,
                claim: claim_mode(env)?,
            },
            timeout,
            connect_timeout: duration(env, "HERALD_CONNECT_TIMEOUT", Duration::from_secs(10))?,
            subscription_cache,
            erasure_settle,
            limits: limits(env)?,
            signing_key_overlap: signing_key_overlap(env)?,
            xray_daemon: env.get("AWS_XRAY_DAEMON_ADDRESS"),
            excerpt_retention: excerpt_retention(env, retention)?,
            graphql,
            secrets_key: env
                .get("HERALD_SECRETS_KEY")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_claim_is_a_lease_unless_a_read_or_none_is_asked_for() {
        assert_eq!(claim_mode(&env(&[])).unwrap(), ClaimMode::Lease);
        let read = env(&[("HERALD_DELIVERY_CLAIM", "read")]);
        assert_eq!(claim_mode(&read).unwrap(), ClaimMode::Read);
        let none = env(&[("HERALD_DELIVERY_CLAIM", " none ")]);
        assert_eq!(claim_mode(&none).unwrap(), ClaimMode::None);
        let lease = env(&[("HERALD_DELIVERY_CLAIM", "lease")]);
        assert_eq!(claim_mode(&lease).unwrap(), ClaimMode::Lease);
        let other = env(&[("HERALD_DELIVERY_CLAIM", "off")]);
        assert_eq!(
            claim_mode(&other).unwrap_err().to_string(),
            "HERALD_DELIVERY_CLAIM is invalid: `off` is not `lease`, `read` or `none`"
        );
    }

    #[test]
    fn the_slow_lane_needs_its_queue_and_a_threshold_under_the_timeout() {
        let timeout = Duration::from_secs(30);
        let after = |pairs: &'static [(&'static str, &'static str)], queue, timeout| {
            slow_after(&env(pairs), queue, timeout)
        };
        assert_eq!(after(&[], None, timeout).unwrap(), None);
        assert_eq!(
            after(&[], Some("q"), timeout).unwrap(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            after(&[("HERALD_SLOW_LANE_AFTER", "2s")], Some("q"), timeout).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            after(&[("HERALD_SLOW_LANE_AFTER", "0")], Some("q"), timeout).unwrap(),
            None
        );
        // Never cut: the timeout comes first.
        assert_eq!(after(&[], Some("q"), Duration::from_secs(5)).unwrap(), None);
        for bad in ["500ms", "soon"] {
            let pairs: &'static [(&str, &str)] = match bad {
                "500ms" => &[("HERALD_SLOW_LANE_AFTER", "500ms")],
                _ => &[("HERALD_SLOW_LANE_AFTER", "soon")],
            };
            let err = after(pairs, Some("q"), timeout).unwrap_err();
            assert!(
                err.to_string().starts_with("HERALD_SLOW_LANE_AFTER"),
                "{err}"
            );
        }
    }

    #[test]
    fn errors_name_the_variable() {
        assert_eq!(
            required(&env(&[]), "HERALD_X"),
            Err(ConfigError::Missing("HERALD_X"))
        );
        let err = flag(&env(&[("HERALD_ALLOW_HTTP", "yes")]), "HERALD_ALLOW_HTTP").unwrap_err();
        assert!(err.to_string().starts_with("HERALD_ALLOW_HTTP is invalid"));
        let err = retry_policy(&env(&[("HERALD_RETRY_SCHEDULE", "soon")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("HERALD_RETRY_SCHEDULE is invalid")
        );
        assert!(number(&env(&[("N", "0")]), "N", 5, 10).is_err());
        for bad in ["301", "-1", "5s", "1.5", "soon"] {
            let source = move |name: &str| (name == "S").then(|| bad.to_owned());
            let err = seconds(&source, "S", 5, 300).unwrap_err();
            assert!(err.to_string().starts_with("S is invalid"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_schedule_must_fit_under_the_queues_receive_limit() {
        let default = RetryPolicy::default();
        assert_eq!(max_receives(&env(&[]), &default), Ok(50));
        // Five-minutely attempts for a day: 61, more than 50 receives allow.
        let long = RetryPolicy::parse(&vec!["5m"; 60].join(","), "1d").unwrap();
        let err = max_receives(&env(&[]), &long).unwrap_err().to_string();
        assert!(
            err.starts_with("HERALD_MAX_RECEIVE_COUNT is invalid"),
            "{err}"
        );
        assert!(err.contains("MaxReceiveCount"), "{err}");
        assert_eq!(
            max_receives(&env(&[("HERALD_MAX_RECEIVE_COUNT", "120")]), &long),
            Ok(120)
        );
        assert!(
            max_receives(&env(&[("HERALD_MAX_RECEIVE_COUNT", "151")]), &long).is_err(),
            "above the most attempts a record keeps"
        );
    }

    #[test]
    fn excerpts_are_kept_with_their_records_not_at_all_or_for_less() {
        use crate::dynamo::ExcerptRetention::{For, WithRecords};
        let month = Duration::from_secs(30 * 86_400);
        let read = |raw: &'static str| {
            let pairs: &'static [(&str, &str)] =
                Box::leak(Box::new([("HERALD_EXCERPT_RETENTION", raw)]));
            excerpt_retention(&env(pairs), month)
        };
        assert_eq!(excerpt_retention(&env(&[]), month), Ok(WithRecords));
        assert_eq!(read(""), Ok(WithRecords));
        assert_eq!(read("0"), Ok(For(Duration::ZERO)));
        assert_eq!(read("7d"), Ok(For(Duration::from_secs(7 * 86_400))));
        let err = read("30d").unwrap_err().to_string();
        assert!(
            err.contains("HERALD_EXCERPT_RETENTION") && err.contains("not shorter"),
            "{err}"
        );
        assert!(read("soon").is_err());
    }

    #[test]
    fn an_erasures_sweep_waits_out_delivers_cache_and_timeout() {
        let cache = Duration::from_secs(5);
        assert_eq!(
            erasure_settle(&env(&[]), cache),
            Ok(Duration::from_secs(65))
        );
        assert_eq!(
            erasure_settle(&env(&[("HERALD_ERASURE_SETTLE_SECONDS", "5")]), cache),
            Ok(cache)
        );
        let err = erasure_settle(&env(&[("HERALD_ERASURE_SETTLE_SECONDS", "4")]), cache)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HERALD_SUBSCRIPTION_CACHE_SECONDS"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        assert_eq!(retry_policy(&env(&[])).unwrap(), RetryPolicy::default());
        assert_eq!(
            retention(&env(&[])).unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(tenant_claim(&env(&[])), TenantClaim::from("tenant"));
        let sam_local = tenant_claim(&env(&[
            ("HERALD_TENANT_CLAIM", "org"),
            ("AWS_SAM_LOCAL", "true"),
        ]));
        assert_eq!(sam_local.name, "org");
        assert!(sam_local.unverified_under_sam_local);
        assert_eq!(seconds(&env(&[]), "S", 5, 300), Ok(Duration::from_secs(5)));
        assert_eq!(
            seconds(&env(&[("S", "0")]), "S", 5, 300),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            seconds(&env(&[("S", "300")]), "S", 5, 300),
            Ok(Duration::from_secs(300))
        );
    }

    #[test]
    fn signing_keys_come_from_the_environment_or_from_secrets_not_both() {
        let key = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
        let direct = move |name: &str| (name == "HERALD_ED25519_SIGNING_KEY").then(|| key.clone());
        assert!(matches!(signing_keys(&direct), Ok(KeyConfig::Fixed(k)) if k.has_ed25519()));

        let secrets = env(&[
            ("HERALD_ED25519_SIGNING_KEY_SECRET", "herald/ed25519"),
            ("HERALD_RSA_SIGNING_KEY_SECRET", "herald/rsa"),
        ]);
        match signing_keys(&secrets) {
            Ok(KeyConfig::Secrets(names)) => {
                assert_eq!(names.ed25519.as_deref(), Some("herald/ed25519"));
                assert_eq!(names.rsa.as_deref(), Some("herald/rsa"));
                assert_eq!(names.refresh, Duration::from_secs(300));
            }
            other => panic!("{other:?}"),
        }
        let both = env(&[
            ("HERALD_ED25519_SIGNING_KEY_SECRET", "herald/ed25519"),
            ("HERALD_ED25519_SIGNING_KEY", "whsk_x"),
        ]);
        let error = signing_keys(&both).unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");
        let bad_headers = env(&[
            ("HERALD_RSA_SIGNING_KEY_SECRET", "herald/rsa"),
            ("HERALD_RSA_MD5_HEADER", "fluent-signature"),
        ]);
        assert!(signing_keys(&bad_headers).is_err());
        let bad_refresh = env(&[
            ("HERALD_ED25519_SIGNING_KEY_SECRET", "herald/ed25519"),
            ("HERALD_SIGNING_KEY_REFRESH", "often"),
        ]);
        assert!(
            signing_keys(&bad_refresh)
                .unwrap_err()
                .to_string()
                .starts_with("HERALD_SIGNING_KEY_REFRESH")
        );
    }
}
