//! What the API shows of a subscription. The secret appears only in the answer to the
//! call that made it.

use chrono::{DateTime, Utc};
use herald_shared::filter::EventFilter;
use herald_shared::format::BodyFormat;
use herald_shared::subscription::{Subscription, SubscriptionStatus};
use serde::Serialize;

#[derive(Serialize)]
pub struct SubscriptionView<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<&'a EventFilter>,
    pub format: BodyFormat,
    pub status: SubscriptionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
}

impl<'a> SubscriptionView<'a> {
    pub fn of(s: &'a Subscription) -> Self {
        Self {
            id: s.id.as_str(),
            url: s.url.as_str(),
            description: &s.description,
            event_types: s.event_types.iter().map(|p| p.as_str()).collect(),
            filter: s.filter.as_ref(),
            format: s.format,
            status: s.status,
            disabled_reason: s.disabled_reason.as_deref(),
            disabled_at: s.disabled_at,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            secret: None,
        }
    }

    pub fn with_secret(s: &'a Subscription) -> Self {
        Self {
            secret: s.secrets.first().map(|k| k.secret.expose()),
            ..Self::of(s)
        }
    }
}
