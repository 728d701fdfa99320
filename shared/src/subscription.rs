//! Subscriptions: where a tenant wants which events sent, and how.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::filter::EventFilter;
use crate::format::BodyFormat;
use crate::ids::{SubscriptionId, TenantId};
use crate::pattern::{self, EventTypePattern, MAX_PATTERNS};
use crate::signing::WebhookSecret;
use crate::url_guard::{SubscriptionUrl, UrlPolicy};

/// Longest description kept.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

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
    /// Current secret first, then previous ones still in their grace period.
    pub secrets: Vec<SigningSecret>,
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
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
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Result<Subscription, FieldError> {
        let url = SubscriptionUrl::parse(&self.url, policy)
            .map_err(|e| FieldError::new("url", e.to_string()))?;
        let event_types = parse_patterns(&self.event_types)?;
        let filter = parse_filter(self.filter)?;
        let description = parse_description(self.description)?;
        Ok(Subscription {
            tenant,
            id: SubscriptionId::generate(now, rng),
            url,
            description,
            event_types,
            filter,
            format: self.format.unwrap_or_default(),
            secrets: vec![SigningSecret {
                secret: WebhookSecret::generate(rng),
                expires_at: None,
            }],
            status: SubscriptionStatus::Active,
            disabled_reason: None,
            disabled_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}
