//! What a tenant sends to make a subscription, checked field by field: each error names
//! its field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;

use super::{SignatureOptions, SigningSecret, Subscription, SubscriptionStatus};
use crate::event::filter::EventFilter;
use crate::event::pattern::{EventTypePattern, MAX_PATTERNS};
use crate::ids::{SubscriptionId, TenantId};
use crate::subscription::url::{SubscriptionUrl, UrlPolicy};
use crate::webhook::render::BodyFormat;
use crate::webhook::select::Selection;
use crate::webhook::sign::WebhookSecret;

/// Longest description kept.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most custom headers a subscription may send.
pub const MAX_HEADERS: usize = 20;
const MAX_HEADER_NAME_LEN: usize = 64;
const MAX_HEADER_VALUE_LEN: usize = 1024;
/// Header names Herald sets itself; the RSA signature headers are added per deployment.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "user-agent",
    "idempotency-key",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
];

/// Whether Herald sets the header `lower` (a lowercase name) itself, or the transport
/// does: a subscription's own header may not take its place. The deployment's RSA
/// signature headers are checked beside it.
pub fn herald_sets_header(lower: &str) -> bool {
    RESERVED_HEADERS.contains(&lower) || lower.starts_with("webhook-")
}

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    pub event_types: Vec<String>,
    #[serde(default)]
    pub filter: Option<Value>,
    #[serde(default)]
    pub format: Option<BodyFormat>,
    #[serde(default)]
    pub selection: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub signatures: Option<SignatureOptions>,
    #[serde(default)]
    pub supersede: Option<bool>,
    #[serde(default)]
    pub retry: Option<crate::delivery::retry::RetrySpec>,
    /// A duration such as `"10s"` (checked in `into_subscription`, so that any other JSON
    /// is refused naming the field).
    #[serde(default)]
    pub timeout: Option<Value>,
    /// Deliveries a second at most (checked in `into_subscription`).
    #[serde(default)]
    pub rate_limit: Option<Value>,
    /// `"subscription"` or `"subject"` (checked in `into_subscription`).
    #[serde(default)]
    pub ordering: Option<Value>,
    /// A GraphQL query whose result is the body's `data` (checked in `into_subscription`;
    /// against the source's schema by the caller).
    #[serde(default)]
    pub query: Option<Value>,
}

/// A subscription's query from JSON: `{"text", "variables"}`, or null for none.
pub fn parse_query(
    raw: Option<&Value>,
) -> Result<Option<crate::webhook::graphql::PayloadQuery>, FieldError> {
    use crate::webhook::graphql::{PayloadQuery, QueryInput};
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let input: QueryInput = serde_json::from_value(value.clone()).map_err(|e| {
                FieldError::new(
                    "query",
                    format!(
                        "{{\"text\": \"query($id: ID!) {{ … }}\", \"variables\": \
                         {{\"id\": \"subject.id\"}}}}, or null ({e})"
                    ),
                )
            })?;
            PayloadQuery::parse(input)
                .map(Some)
                .map_err(|e| FieldError::new("query", e))
        }
    }
}

/// A subscription's payload is picked by its selection or built by its query, not both.
pub fn one_payload(subscription: &super::Subscription) -> Result<(), FieldError> {
    if subscription.selection.is_some() && subscription.query.is_some() {
        return Err(FieldError::new(
            "query",
            "a subscription has a selection or a query, not both".to_owned(),
        ));
    }
    Ok(())
}

/// A subscription's ordering from JSON: `"subscription"`, `"subject"`, or null for none.
pub fn parse_ordering(
    raw: Option<&Value>,
) -> Result<Option<super::ordering::DeliveryOrder>, FieldError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => super::ordering::DeliveryOrder::parse(name)
            .map(Some)
            .map_err(|e| FieldError::new("ordering", e)),
        Some(_) => Err(FieldError::new(
            "ordering",
            "\"subscription\", \"subject\" or null".to_owned(),
        )),
    }
}

/// A subscription's rate limit from JSON: a whole number of deliveries a second, or null
/// for none.
pub fn parse_rate_limit(
    raw: Option<&Value>,
) -> Result<Option<crate::delivery::rate::RateLimit>, FieldError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| "a whole number of deliveries a second".to_owned())
            .and_then(crate::delivery::rate::RateLimit::new)
            .map(Some)
            .map_err(|e| FieldError::new("rate_limit", e)),
    }
}

/// What a deployment can offer a subscription: its reserved header names and keys, and
/// the most attempts its queue lets a delivery make (None: not bounded here).
#[derive(Clone, Debug, Default)]
pub struct Offer {
    pub reserved_headers: Vec<String>,
    pub ed25519: bool,
    pub rsa: bool,
    pub max_attempts: Option<u32>,
    /// The longest an attempt may take here (`HERALD_DELIVERY_TIMEOUT`; None: not bounded).
    pub max_timeout: Option<std::time::Duration>,
}

impl Offer {
    /// The names of the RSA signature headers (SHA512withRSA, MD5withRSA): the first two
    /// reserved headers, which are those (`KeyStore::offer`), else the defaults.
    pub fn rsa_headers(&self) -> (&str, &str) {
        match self.reserved_headers.as_slice() {
            [sha512, md5, ..] => (sha512.as_str(), md5.as_str()),
            _ => (
                crate::webhook::keys::DEFAULT_RSA_SHA512_HEADER,
                crate::webhook::keys::DEFAULT_RSA_MD5_HEADER,
            ),
        }
    }
}

/// A subscription's own limit on an attempt, checked against the deployment's.
pub fn parse_timeout(
    raw: Option<&str>,
    offer: &Offer,
) -> Result<Option<super::timeout::AttemptTimeout>, FieldError> {
    raw.map(|raw| super::timeout::AttemptTimeout::parse(raw, offer.max_timeout))
        .transpose()
        .map_err(|e| FieldError::new("timeout", e))
}

/// A subscription's own retry policy, checked against what the deployment allows.
pub fn parse_retry(
    raw: Option<crate::delivery::retry::RetrySpec>,
    offer: &Offer,
) -> Result<Option<crate::delivery::retry::RetrySpec>, FieldError> {
    match raw {
        None => Ok(None),
        Some(spec) => spec
            .check(offer.max_attempts)
            .map(|_| Some(spec))
            .map_err(|e| FieldError::new("retry", e.to_string())),
    }
}

pub fn parse_selection(raw: Option<String>) -> Result<Option<Selection>, FieldError> {
    match raw {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => Selection::parse(&text)
            .map(Some)
            .map_err(|r| FieldError::new("selection", r)),
    }
}

/// What the API shows in place of a custom header's value: values are write-only (they
/// often hold a receiver's credentials). Sent back in a change, it keeps the stored value.
pub const MASKED_HEADER_VALUE: &str = "********";

/// A header change read against the stored headers: a value of [`MASKED_HEADER_VALUE`]
/// keeps the stored value of that name (so a read-modify-write keeps secrets it never
/// saw); for a name without one it is refused. When the change also moves the URL to
/// another origin (`moved`), no stored value is kept: a value is only ever sent to the
/// origin it was given for, so whoever may change the URL cannot have the stored
/// credentials sent to a receiver of their own.
pub fn unmask_headers(
    raw: BTreeMap<String, String>,
    stored: &BTreeMap<String, String>,
    moved: bool,
) -> Result<BTreeMap<String, String>, FieldError> {
    raw.into_iter()
        .map(|(name, value)| {
            if value != MASKED_HEADER_VALUE {
                return Ok((name, value));
            }
            match stored.get(&name.to_ascii_lowercase()) {
                Some(_) if moved => Err(FieldError::new(
                    format!("headers.{name}"),
                    "is the masked placeholder, but the URL moves to another origin: send the value itself, which is only ever sent where it was given",
                )),
                Some(kept) => Ok((name, kept.clone())),
                None => Err(FieldError::new(
                    format!("headers.{name}"),
                    "is the masked placeholder, but the subscription has no such header to keep",
                )),
            }
        })
        .collect()
}

/// Whether a change of a subscription's URL from `from` to `to` takes its stored custom
/// header values to another origin (scheme, host or port).
pub fn moves_origin(from: &SubscriptionUrl, to: &SubscriptionUrl) -> bool {
    from.url().origin() != to.url().origin()
}

/// Custom headers: at most 20, token names that Herald does not set itself, values
/// without control characters (no CR/LF: no header injection).
pub fn parse_headers(
    raw: BTreeMap<String, String>,
    offer: &Offer,
) -> Result<BTreeMap<String, String>, FieldError> {
    if raw.len() > MAX_HEADERS {
        return Err(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut headers = BTreeMap::new();
    for (name, value) in raw {
        let lower = name.to_ascii_lowercase();
        let field = format!("headers.{name}");
        let token = !lower.is_empty()
            && lower.len() <= MAX_HEADER_NAME_LEN
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(FieldError::new(
                field,
                format!(
                    "a header name is 1 to {MAX_HEADER_NAME_LEN} letters, digits or !#$%&'*+-.^_`|~"
                ),
            ));
        }
        if herald_sets_header(&lower)
            || offer
                .reserved_headers
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&lower))
        {
            return Err(FieldError::new(
                field,
                "is set by Herald and cannot be replaced",
            ));
        }
        if value.chars().count() > MAX_HEADER_VALUE_LEN
            || value.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(FieldError::new(
                field,
                format!(
                    "a value is at most {MAX_HEADER_VALUE_LEN} characters with no control characters (no CR or LF)"
                ),
            ));
        }
        if crate::webhook::sign::is_sealed(&value) {
            return Err(FieldError::new(
                field,
                format!(
                    "a value may not begin with `{}`: Herald's mark of a sealed value",
                    crate::webhook::sign::SEALED_PREFIX
                ),
            ));
        }
        if headers.insert(lower, value).is_some() {
            return Err(FieldError::new(
                field,
                "appears twice (names are case-insensitive)",
            ));
        }
    }
    Ok(headers)
}

pub fn check_signatures(
    options: SignatureOptions,
    offer: &Offer,
) -> Result<SignatureOptions, FieldError> {
    if options.ed25519 && !offer.ed25519 {
        return Err(FieldError::new(
            "signatures.ed25519",
            "this deployment has no ed25519 signing key",
        ));
    }
    if options.rsa && !offer.rsa {
        return Err(FieldError::new(
            "signatures.rsa",
            "this deployment has no RSA signing key",
        ));
    }
    Ok(options)
}

/// A refused field and why, for a 422.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub fn parse_patterns(raw: &[String]) -> Result<Vec<EventTypePattern>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(
            "event_types",
            "list at least one event type or pattern",
        ));
    }
    if raw.len() > MAX_PATTERNS {
        return Err(FieldError::new(
            "event_types",
            format!("at most {MAX_PATTERNS} patterns"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, p)| {
            EventTypePattern::parse(p).map_err(|r| FieldError::new(format!("event_types[{i}]"), r))
        })
        .collect()
}

pub fn parse_filter(raw: Option<Value>) -> Result<Option<EventFilter>, FieldError> {
    match raw {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => EventFilter::try_from(map)
            .map(Some)
            .map_err(|r| FieldError::new("filter", r)),
        Some(_) => Err(FieldError::new("filter", "must be a JSON object")),
    }
}

pub fn parse_description(raw: Option<String>) -> Result<String, FieldError> {
    let description = raw.unwrap_or_default();
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(FieldError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(description)
}

impl NewSubscription {
    /// Checks every field and builds the subscription with a fresh secret. The URL check
    /// here is the syntactic one; the caller resolves the host before storing.
    pub fn into_subscription(
        self,
        tenant: TenantId,
        policy: &UrlPolicy,
        offer: &Offer,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Result<Subscription, FieldError> {
        let url = SubscriptionUrl::parse(&self.url, policy)
            .map_err(|e| FieldError::new("url", e.to_string()))?;
        let event_types = parse_patterns(&self.event_types)?;
        let filter = parse_filter(self.filter)?;
        let description = parse_description(self.description)?;
        let selection = parse_selection(self.selection)?;
        let headers = parse_headers(self.headers.unwrap_or_default(), offer)?;
        let signatures = check_signatures(self.signatures.unwrap_or_default(), offer)?;
        let retry = parse_retry(self.retry, offer)?;
        let timeout = match self.timeout {
            None | Some(Value::Null) => None,
            Some(Value::String(raw)) => parse_timeout(Some(&raw), offer)?,
            Some(_) => {
                return Err(FieldError::new(
                    "timeout",
                    "a duration such as \"10s\"".to_owned(),
                ));
            }
        };
        let rate_limit = parse_rate_limit(self.rate_limit.as_ref())?;
        let ordering = parse_ordering(self.ordering.as_ref())?;
        let query = parse_query(self.query.as_ref())?;
        let subscription = Subscription {
            tenant,
            id: SubscriptionId::generate(now, rng),
            url,
            description,
            event_types,
            filter,
            format: self.format.unwrap_or_default(),
            selection,
            query,
            headers,
            signatures,
            supersede: self.supersede.unwrap_or(false),
            retry,
            timeout,
            rate_limit,
            ordering,
            secrets: vec![SigningSecret {
                secret: WebhookSecret::generate(rng),
                expires_at: None,
            }],
            status: SubscriptionStatus::Active,
            disabled_reason: None,
            disabled_at: None,
            disabled_by: None,
            failing_since: None,
            slow_until: None,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        one_payload(&subscription)?;
        Ok(subscription)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value is at most 1024 characters, as the API's schema counts them (`maxLength`):
    /// not bytes.
    #[test]
    fn header_values_are_counted_in_characters() {
        let headers = |value: String| {
            parse_headers(
                BTreeMap::from([("x-note".into(), value)]),
                &Offer::default(),
            )
        };
        assert!(headers("é".repeat(1024)).is_ok());
        assert!(headers("é".repeat(1025)).is_err());
        assert!(headers("e".repeat(1025)).is_err());
    }

    #[test]
    fn the_rsa_headers_are_the_reserved_ones_or_the_defaults() {
        let named = Offer {
            reserved_headers: vec!["x-sig-512".into(), "x-sig-md5".into()],
            ..Offer::default()
        };
        assert_eq!(named.rsa_headers(), ("x-sig-512", "x-sig-md5"));
        assert_eq!(
            Offer::default().rsa_headers(),
            ("fluent-signature", "flex.signature")
        );
    }

    fn url(raw: &str) -> SubscriptionUrl {
        let policy = UrlPolicy {
            allow_http: true,
            ..UrlPolicy::default()
        };
        SubscriptionUrl::parse(raw, &policy).unwrap()
    }

    #[test]
    fn another_scheme_host_or_port_is_another_origin_and_a_path_is_not() {
        let from = url("https://a.example.com/in");
        for other in [
            "http://a.example.com/in",
            "https://b.example.com/in",
            "https://a.example.com:8443/in",
            "https://sub.a.example.com/in",
        ] {
            assert!(moves_origin(&from, &url(other)), "{other}");
        }
        for same in [
            "https://a.example.com/v2",
            "https://a.example.com:443/in",
            "https://A.EXAMPLE.com/in?x=1",
        ] {
            assert!(!moves_origin(&from, &url(same)), "{same}");
        }
    }

    #[test]
    fn a_placeholder_keeps_its_stored_value_only_where_it_was_given() {
        let stored = BTreeMap::from([("authorization".to_owned(), "Bearer s3cret".to_owned())]);
        let sent = || {
            BTreeMap::from([
                ("Authorization".to_owned(), MASKED_HEADER_VALUE.to_owned()),
                ("X-Team".to_owned(), "billing".to_owned()),
            ])
        };
        let kept = unmask_headers(sent(), &stored, false).unwrap();
        assert_eq!(kept["Authorization"], "Bearer s3cret");
        assert_eq!(kept["X-Team"], "billing");

        let moved = unmask_headers(sent(), &stored, true).unwrap_err();
        assert_eq!(moved.field, "headers.Authorization");
        assert!(moved.reason.contains("another origin"), "{}", moved.reason);
        let new_value = BTreeMap::from([("Authorization".to_owned(), "Bearer new".to_owned())]);
        assert_eq!(
            unmask_headers(new_value, &stored, true).unwrap()["Authorization"],
            "Bearer new"
        );
    }
}
