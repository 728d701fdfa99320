//! Subscriptions: where a tenant wants which events sent, and how.

mod input;
pub mod ordering;
pub mod timeout;
pub mod transitions;
pub mod url;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::event::filter::EventFilter;
use crate::event::pattern::{self, EventTypePattern};
use crate::ids::{SubscriptionId, TenantId};
use crate::subscription::url::SubscriptionUrl;
use crate::webhook::render::BodyFormat;
use crate::webhook::select::Selection;
use crate::webhook::sign::WebhookSecret;

pub use input::{
    FieldError, MASKED_HEADER_VALUE, MAX_DESCRIPTION_LEN, MAX_HEADERS, NewSubscription, Offer,
    check_signatures, herald_sets_header, moves_origin, one_payload, parse_description,
    parse_filter, parse_headers, parse_ordering, parse_patterns, parse_query, parse_rate_limit,
    parse_retry, parse_selection, parse_timeout, unmask_headers,
};

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

/// Its `Debug` shows the custom headers' names alone: their values are often a
/// receiver's credentials, opened in the clear once deliver has read them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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
    /// A GraphQL query run at each attempt: its result is the body's `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<crate::webhook::graphql::PayloadQuery>,
    /// Sent with every delivery; names are lower-case.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "SignatureOptions::is_default")]
    pub signatures: SignatureOptions,
    /// Of several deliveries about one subject, send only the newest; older ones still
    /// pending are recorded `superseded`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub supersede: bool,
    /// Its own retry policy, in place of the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::delivery::retry::RetrySpec>,
    /// Its own limit on one attempt, within the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<timeout::AttemptTimeout>,
    /// At most this many deliveries a second, across every deliver container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::delivery::rate::RateLimit>,
    /// Deliveries sent one at a time in publish order (`ordering::DeliveryOrder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering: Option<ordering::DeliveryOrder>,
    /// Current secret first, then previous ones still in their grace period.
    pub secrets: Vec<SigningSecret>,
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// The delivery whose attempt disabled it (a `410 Gone`, or failing too long), so that
    /// delivery's message, seen again, announces the disabling if it could not before.
    /// Herald's own record: not shown to the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_by: Option<crate::ids::DeliveryId>,
    /// The first failure since the last success, for auto-disable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Its receivers were found slow: until then its tasks take the slow lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_until: Option<DateTime<Utc>>,
    /// Incremented on every change, for optimistic concurrency.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As stored, each header value masked (the secrets' own `Debug` redacts them).
        let mut shown = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        if let Some(headers) = shown.get_mut("headers").and_then(Value::as_object_mut) {
            for value in headers.values_mut() {
                *value = Value::String(MASKED_HEADER_VALUE.to_owned());
            }
        }
        if let Some(secrets) = shown.get_mut("secrets").and_then(Value::as_array_mut) {
            for secret in secrets {
                secret["secret"] = Value::String("redacted".to_owned());
            }
        }
        write!(f, "Subscription {shown}")
    }
}

impl Subscription {
    /// Whether this subscription wants this event: active, a pattern matches, the filter passes.
    pub fn wants(&self, event: &Event) -> bool {
        self.status == SubscriptionStatus::Active
            && pattern::any_matches(&self.event_types, &event.event_type)
            && self.filter.as_ref().is_none_or(|f| f.matches(event))
    }

    /// The ordered line `event`'s delivery waits in, if the subscription is ordered.
    pub fn line_of(&self, event: &Event) -> Option<String> {
        self.ordering.map(|order| order.line(&self.id, event))
    }

    /// Whether its tasks take the slow lane at `now`: its receivers were found slow and
    /// it is not ordered (an ordered line stays on its own queue).
    pub fn is_slow(&self, now: DateTime<Utc>) -> bool {
        self.ordering.is_none() && self.slow_until.is_some_and(|until| until > now)
    }

    /// Whether a secret or a header value is still in its stored, sealed form: such a
    /// subscription signs and sends nothing until deliver unseals it.
    pub fn has_sealed_values(&self) -> bool {
        self.secrets.iter().any(|s| s.secret.is_sealed())
            || self
                .headers
                .values()
                .any(|v| crate::webhook::sign::is_sealed(v))
    }

    /// Whether a secret or a header value is stored in the clear (written before the
    /// deployment had a secrets key): what `POST /v1/tenant/seal` seals.
    pub fn has_clear_values(&self) -> bool {
        self.secrets.iter().any(|s| !s.secret.is_sealed())
            || self
                .headers
                .values()
                .any(|v| !crate::webhook::sign::is_sealed(v))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_header_value_and_no_secret() {
        let new: NewSubscription = serde_json::from_value(serde_json::json!({
            "url": "https://hooks.example.com/", "event_types": ["*"],
            "headers": {"Authorization": "Bearer s3cret-value"}
        }))
        .unwrap();
        let subscription = new
            .into_subscription(
                TenantId::parse("acme").unwrap(),
                &url::UrlPolicy::default(),
                &Offer::default(),
                Utc::now(),
                &mut rand::rng(),
            )
            .unwrap();
        let secret = serde_json::to_value(&subscription).unwrap()["secrets"][0]["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        let shown = format!("{subscription:?}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(shown.contains("hooks.example.com"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
        assert!(!shown.contains(&secret), "{shown}");
    }

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
        let sealed = headers(&[("x-key", "sealed:v1:abc")]).unwrap_err();
        assert!(sealed.reason.contains("sealed value"), "{sealed}");
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
