//! What the API shows of a subscription. The secret appears only in the answer to the
//! call that made it.

use chrono::{DateTime, Utc};
use herald_core::event::filter::EventFilter;
use herald_core::subscription::{SignatureOptions, Subscription, SubscriptionStatus};
use herald_core::webhook::render::BodyFormat;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selection: Option<&'a str>,
    /// A GraphQL query whose result is the body's `data`, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a herald_core::webhook::graphql::PayloadQuery>,
    /// Names only: each value is shown as `MASKED_HEADER_VALUE` (write-only).
    pub headers: std::collections::BTreeMap<&'a str, &'static str>,
    pub signatures: SignatureOptions,
    pub supersede: bool,
    /// Its own retry policy; the deployment's when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<&'a herald_core::delivery::retry::RetrySpec>,
    /// Its own limit on an attempt; the deployment's when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<herald_core::subscription::timeout::AttemptTimeout>,
    /// Deliveries a second at most; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<herald_core::delivery::rate::RateLimit>,
    /// Its deliveries sent one at a time in publish order; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering: Option<herald_core::subscription::ordering::DeliveryOrder>,
    pub status: SubscriptionStatus,
    /// Its receivers were found slow: until then its deliveries take the slow lane.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Deliveries have failed without a success since then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
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
            selection: s.selection.as_ref().map(|x| x.as_str()),
            query: s.query.as_ref(),
            headers: s
                .headers
                .keys()
                .map(|name| {
                    (
                        name.as_str(),
                        herald_core::subscription::MASKED_HEADER_VALUE,
                    )
                })
                .collect(),
            signatures: s.signatures,
            supersede: s.supersede,
            retry: s.retry.as_ref(),
            timeout: s.timeout,
            rate_limit: s.rate_limit,
            ordering: s.ordering,
            status: s.status,
            slow_until: s.slow_until,
            disabled_reason: s.disabled_reason.as_deref(),
            disabled_at: s.disabled_at,
            failing_since: s.failing_since,
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

use herald_core::delivery::{Attempt, DeliveryRecord, DeliveryState};

/// One delivery and its attempt log.
#[derive(Serialize)]
pub struct DeliveryView<'a> {
    pub id: &'a str,
    pub subscription_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub state: DeliveryState,
    pub attempts: Vec<AttemptView<'a>>,
    pub created_at: DateTime<Utc>,
    pub first_attempt_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize)]
pub struct AttemptView<'a> {
    pub number: u32,
    pub at: DateTime<Utc>,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub latency_ms: u64,
    pub response: &'a str,
    pub forced: bool,
}

impl<'a> DeliveryView<'a> {
    pub fn of(r: &'a DeliveryRecord) -> Self {
        Self {
            id: r.id.as_str(),
            subscription_id: r.subscription_id.as_str(),
            event_id: r.event_id.as_str(),
            event_type: &r.event_type,
            state: r.state,
            attempts: r.attempts.iter().map(AttemptView::of).collect(),
            created_at: r.created_at,
            first_attempt_at: r.first_attempt_at,
            next_attempt_at: r.next_attempt_at,
            reason: r.reason.as_deref(),
            updated_at: r.updated_at,
        }
    }
}

impl<'a> AttemptView<'a> {
    fn of(a: &'a Attempt) -> Self {
        Self {
            number: a.number,
            at: a.at,
            status: a.status,
            error: a.error.map(|e| e.code()),
            latency_ms: a.latency_ms,
            response: &a.response,
            forced: a.forced,
        }
    }
}
