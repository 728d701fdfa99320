//! Subscriptions: where a tenant wants which events sent, and how.

pub mod transitions;
pub mod url;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::event::filter::EventFilter;
use crate::event::pattern::{self, EventTypePattern, MAX_PATTERNS};
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

/// Which asymmetric signatures a subscription's deliveries carry besides `v1` HMAC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureOptions {
    /// A `v1a,` ed25519 entry in `webhook-signature`.
    #[serde(default)]
    pub ed25519: bool,
    /// SHA512withRSA and MD5withRSA signatures of the body in their own headers.
    #[serde(default)]
    pub rsa: bool,
}

impl SignatureOptions {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Disabled,
}

/// A secret that still signs until `expires_at` (None: the current secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SigningSecret {
    pub secret: WebhookSecret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub tenant: TenantId,
    pub id: SubscriptionId,
    pub url: SubscriptionUrl,
    #[serde(default)]
    pub description: String,
    pub event_types: Vec<EventTypePattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventFilter>,
    #[serde(default)]
    pub format: BodyFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection: Option<Selection>,
    /// Sent with every delivery; names are lower-case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "SignatureOptions::is_default")]
    pub signatures: SignatureOptions,
    /// Of several deliveries about one subject, send only the newest; older ones still
    /// pending are recorded `superseded`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub supersede: bool,
    /// Current secret first, then previous ones still in their grace period.
    pub secrets: Vec<SigningSecret>,
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// The first failure since the last success, for auto-disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Incremented on every change, for optimistic concurrency.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// Whether this subscription wants this event: active, a pattern matches, the filter passes.
    pub fn wants(&self, event: &Event) -> bool {
        self.status == SubscriptionStatus::Active
            && pattern::any_matches(&self.event_types, &event.event_type)
            && self.filter.as_ref().is_none_or(|f| f.matches(event))
    }

    /// The secrets that sign a delivery made at `now`.
    pub fn live_secrets(&self, now: DateTime<Utc>) -> impl Iterator<Item = &WebhookSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|at| at > now))
            .map(|s| &s.secret)
    }
}

/// What a subscription's `failing_since` becomes when a worker asks for `asked`: a
/// success clears it, and a failure starts it unless an earlier start is stored (the
/// worker may have read a copy from before another worker's first failure).
pub fn next_failing_since(
    stored: Option<DateTime<Utc>>,
    asked: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match (stored, asked) {
        (Some(stored), Some(asked)) => Some(stored.min(asked)),
        (_, asked) => asked,
    }
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
}

/// What a deployment can offer a subscription: its reserved header names and keys.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    pub reserved_headers: Vec<String>,
    pub ed25519: bool,
    pub rsa: bool,
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
        if RESERVED_HEADERS.contains(&lower.as_str())
            || lower.starts_with("webhook-")
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
        if value.len() > MAX_HEADER_VALUE_LEN || value.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(FieldError::new(
                field,
                format!(
                    "a value is at most {MAX_HEADER_VALUE_LEN} bytes with no control characters (no CR or LF)"
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
        Ok(Subscription {
            tenant,
            id: SubscriptionId::generate(now, rng),
            url,
            description,
            event_types,
            filter,
            format: self.format.unwrap_or_default(),
            selection,
            headers,
            signatures,
            supersede: self.supersede.unwrap_or(false),
            secrets: vec![SigningSecret {
                secret: WebhookSecret::generate(rng),
                expires_at: None,
            }],
            status: SubscriptionStatus::Active,
            disabled_reason: None,
            disabled_at: None,
            failing_since: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_an_earlier_start_and_a_success_clears_it() {
        let early = Utc::now() - chrono::Duration::hours(3);
        let now = Utc::now();
        assert_eq!(next_failing_since(None, Some(now)), Some(now));
        assert_eq!(next_failing_since(Some(early), Some(now)), Some(early));
        assert_eq!(next_failing_since(Some(now), Some(early)), Some(early));
        assert_eq!(next_failing_since(Some(early), None), None);
        assert_eq!(next_failing_since(None, None), None);
    }

    fn headers(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>, FieldError> {
        let offer = Offer {
            reserved_headers: vec!["fluent-signature".into(), "flex.signature".into()],
            ..Offer::default()
        };
        parse_headers(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            &offer,
        )
    }

    #[test]
    fn custom_headers_are_checked() {
        let ok = headers(&[("X-Api-Key", "abc"), ("x-tenant", "t 1")]).unwrap();
        assert_eq!(ok.get("x-api-key").map(String::as_str), Some("abc"));
        for (name, value, why) in [
            ("Content-Type", "text/plain", "set by Herald"),
            ("webhook-id", "x", "set by Herald"),
            ("Idempotency-Key", "x", "set by Herald"),
            ("Flex.Signature", "x", "set by Herald"),
            ("bad name", "x", "a header name"),
            ("x-a", "line\r\nInjected: yes", "no CR or LF"),
        ] {
            let err = headers(&[(name, value)]).unwrap_err();
            assert!(err.reason.contains(why), "{name}: {err}");
        }
        let many: Vec<(String, String)> = (0..21).map(|i| (format!("x-{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(headers(&many).is_err());
        assert!(headers(&[("X-A", "1"), ("x-a", "2")]).is_err());
    }

    #[test]
    fn signatures_need_the_deployments_keys() {
        let none = Offer::default();
        assert!(
            check_signatures(
                SignatureOptions {
                    ed25519: true,
                    rsa: false
                },
                &none
            )
            .is_err()
        );
        let both = Offer {
            ed25519: true,
            rsa: true,
            ..Offer::default()
        };
        assert!(
            check_signatures(
                SignatureOptions {
                    ed25519: true,
                    rsa: true
                },
                &both
            )
            .is_ok()
        );
    }
}
