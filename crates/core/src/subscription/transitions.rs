//! How a subscription changes state, written once for every store and the API: disabled
//! (by Herald or the tenant), enabled again, its health, and its secret rotated. The
//! version and `updated_at` move where a change is saved (`Subscription::changed`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{SigningSecret, Subscription, SubscriptionStatus};
use crate::webhook::sign::WebhookSecret;

/// How long a rotated-out secret keeps signing when the caller names no grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);
/// The longest grace period a rotation may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A rotation's outcome: the new secret, shown once, and when the previous ones stop.
#[derive(Debug)]
pub struct Rotated {
    pub secret: WebhookSecret,
    /// None when the grace period is zero: the previous secrets stopped at once.
    pub previous_until: Option<DateTime<Utc>>,
}

/// The most secrets that sign a delivery at once: the current one and the previous ones
/// still in their grace period, newest first.
pub const MAX_LIVE_SECRETS: usize = 3;

impl Subscription {
    /// Disabled, with why and when; false (and unchanged) when it already was.
    pub fn disable(&mut self, reason: &str, at: DateTime<Utc>) -> bool {
        self.disable_by(reason, at, None)
    }

    /// The same, by a delivery's attempt (`by`), which is kept with it.
    pub fn disable_by(
        &mut self,
        reason: &str,
        at: DateTime<Utc>,
        by: Option<&crate::ids::DeliveryId>,
    ) -> bool {
        if self.status == SubscriptionStatus::Disabled {
            return false;
        }
        self.status = SubscriptionStatus::Disabled;
        self.disabled_reason = Some(reason.to_owned());
        self.disabled_at = Some(at);
        self.disabled_by = by.cloned();
        true
    }

    /// Active again, its failures forgotten; false when it already was.
    pub fn enable(&mut self) -> bool {
        if self.status == SubscriptionStatus::Active {
            return false;
        }
        self.status = SubscriptionStatus::Active;
        self.disabled_reason = None;
        self.disabled_at = None;
        self.disabled_by = None;
        self.failing_since = None;
        true
    }

    /// Records since when deliveries fail without a success (`None`: healthy), keeping
    /// an earlier start (`super::next_failing_since`); false when nothing changes. Health
    /// is no change of the subscription: the version stays.
    pub fn record_health(&mut self, failing_since: Option<DateTime<Utc>>) -> bool {
        let next = super::next_failing_since(self.failing_since, failing_since);
        let changed = next != self.failing_since;
        self.failing_since = next;
        changed
    }

    /// Whether marking its receivers slow until `until` moves the mark later by more than
    /// a tenth of the hold (a burst of slow answers writes once, not each time).
    pub fn slow_mark_moves(&self, until: DateTime<Utc>) -> bool {
        let margin = chrono::Duration::from_std(crate::delivery::settings::SLOW_HOLD / 10)
            .unwrap_or_default();
        self.slow_until.is_none_or(|held| held + margin < until)
    }

    /// Marks its receivers slow until `until`; true when that moved the mark
    /// ([`Subscription::slow_mark_moves`]).
    pub fn mark_slow(&mut self, until: DateTime<Utc>) -> bool {
        if !self.slow_mark_moves(until) {
            return false;
        }
        self.slow_until = Some(until);
        true
    }

    /// A new secret signs from now on (with at most [`MAX_LIVE_SECRETS`] signing at once); the current ones keep signing beside it until
    /// `grace` from now (or their own earlier end), and expired ones are dropped.
    pub fn rotate_secret(
        &mut self,
        grace: Duration,
        now: DateTime<Utc>,
        rng: &mut impl rand::Rng,
    ) -> Rotated {
        let until = now + chrono::Duration::from_std(grace).unwrap_or_default();
        let mut secrets: Vec<SigningSecret> = std::mem::take(&mut self.secrets)
            .into_iter()
            .filter(|s| s.expires_at.is_none_or(|at| at > now))
            .map(|s| SigningSecret {
                expires_at: Some(s.expires_at.map_or(until, |at| at.min(until))),
                ..s
            })
            .filter(|s| s.expires_at.is_some_and(|at| at > now))
            .collect();
        let fresh = WebhookSecret::generate(rng);
        secrets.insert(
            0,
            SigningSecret {
                secret: fresh.clone(),
                expires_at: None,
            },
        );
        // Rotations in quick succession keep the newest few; the oldest stop signing.
        secrets.truncate(MAX_LIVE_SECRETS);
        self.secrets = secrets;
        Rotated {
            secret: fresh,
            previous_until: (grace > Duration::ZERO).then_some(until),
        }
    }

    /// A change saved at `at`: the next version.
    pub fn changed(&mut self, at: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::subscription::url::UrlPolicy;
    use chrono::TimeZone;

    fn subscription(now: DateTime<Utc>) -> Subscription {
        let new: crate::subscription::NewSubscription = serde_json::from_value(
            serde_json::json!({"url": "https://hooks.example.com/", "event_types": ["*"]}),
        )
        .unwrap();
        new.into_subscription(
            TenantId::parse("acme").unwrap(),
            &UrlPolicy::default(),
            &crate::subscription::Offer::default(),
            now,
            &mut rand::rng(),
        )
        .unwrap()
    }

    #[test]
    fn disabling_says_why_once_and_enabling_forgets_it() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = subscription(at);
        s.failing_since = Some(at);
        let by = crate::ids::DeliveryId::derive(
            &s.tenant,
            &crate::ids::EventId::parse("e1").unwrap(),
            &s.id,
            at,
        );
        assert!(s.disable_by("gone", at, Some(&by)));
        assert_eq!(s.status, SubscriptionStatus::Disabled);
        assert_eq!(s.disabled_reason.as_deref(), Some("gone"));
        assert_eq!(s.disabled_at, Some(at));
        assert_eq!(s.disabled_by.as_ref(), Some(&by));
        let later = at + chrono::Duration::hours(1);
        assert!(!s.disable("again", later), "already disabled");
        assert_eq!(s.disabled_reason.as_deref(), Some("gone"));
        assert_eq!(s.disabled_by.as_ref(), Some(&by), "the first disabling's");
        assert_eq!(s.version, 1, "a transition is saved by its store");
        assert!(s.enable());
        assert_eq!(s.status, SubscriptionStatus::Active);
        assert_eq!(
            (s.disabled_reason.clone(), s.disabled_at, s.failing_since),
            (None, None, None)
        );
        assert_eq!(s.disabled_by, None);
        assert!(!s.enable());
        s.changed(later);
        assert_eq!((s.version, s.updated_at), (2, later));
    }

    #[test]
    fn health_keeps_the_earliest_failure_and_clears_on_success() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = subscription(at);
        let later = at + chrono::Duration::minutes(5);
        assert!(s.record_health(Some(later)));
        assert!(s.record_health(Some(at)), "an earlier start wins");
        assert!(!s.record_health(Some(later)), "a later one does not");
        assert_eq!(s.failing_since, Some(at));
        assert!(s.record_health(None));
        assert!(!s.record_health(None));
        assert_eq!(s.version, 1, "health is no change of the subscription");
    }

    #[test]
    fn quick_rotations_keep_the_newest_few_secrets() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = subscription(at);
        let mut issued = Vec::new();
        for minute in 0..5 {
            let rotated = s.rotate_secret(
                Duration::from_secs(86_400),
                at + chrono::Duration::minutes(minute),
                &mut rand::rng(),
            );
            issued.push(rotated.secret);
        }
        assert_eq!(s.secrets.len(), MAX_LIVE_SECRETS);
        let live: Vec<_> = s.secrets.iter().map(|k| k.secret.clone()).collect();
        issued.reverse();
        assert_eq!(live, issued[..MAX_LIVE_SECRETS].to_vec(), "newest first");
    }

    #[test]
    fn a_rotation_signs_with_the_new_secret_and_the_old_for_the_grace() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let mut s = subscription(at);
        let old = s.secrets[0].secret.clone();
        let rotated = s.rotate_secret(Duration::from_secs(3600), at, &mut rand::rng());
        assert_eq!(s.secrets[0].secret, rotated.secret);
        assert_eq!(s.secrets[0].expires_at, None);
        let until = at + chrono::Duration::hours(1);
        assert_eq!(rotated.previous_until, Some(until));
        assert_eq!(s.secrets[1].secret, old);
        assert_eq!(s.secrets[1].expires_at, Some(until));
        assert_eq!(s.live_secrets(at).count(), 2);
        assert_eq!(s.live_secrets(until).count(), 1);
        // A second rotation keeps the earlier end, and a zero grace ends the others now.
        let newer = s.rotate_secret(Duration::from_secs(7200), at, &mut rand::rng());
        assert_eq!(s.secrets.len(), 3);
        assert_eq!(s.secrets[2].expires_at, Some(until));
        let now = s.rotate_secret(Duration::ZERO, at, &mut rand::rng());
        assert_eq!(now.previous_until, None);
        assert_eq!(s.secrets.len(), 1);
        assert_ne!(now.secret, newer.secret);
    }
}
