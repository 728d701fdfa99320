//! Prefixed identifiers. Generated ids are time-sortable (48 bits of milliseconds then
//! 80 random bits, Crockford base32, like a ULID) so "newest first" is a key order.
//! Delivery ids are derived, not generated: the same tenant, event and subscription always
//! give the same delivery id, which is what makes re-publishing and replay idempotent. A
//! delivery id also carries its subscription and the time its event was accepted, so the
//! deliveries table can be keyed by subscription and time (see `DeliveryId`).

use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `digits` characters of Crockford base32 for the low `5 × digits` bits of a value.
fn base32(value: u128, digits: u32) -> String {
    (0..digits)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 0x1f) as usize] as char)
        .collect()
}

/// 26 characters of Crockford base32 for a 128-bit value.
fn base32_128(value: u128) -> String {
    base32(value, 26)
}

/// The value of Crockford base32 digits this module wrote (upper case only).
fn base32_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| {
        let digit = CROCKFORD.iter().position(|&c| c == b)? as u128;
        Some((acc << 5) | digit)
    })
}

/// A sortable 26-character id body: time first, then randomness.
pub fn sortable_id(now: DateTime<Utc>, rng: &mut impl Rng) -> String {
    let millis = now.timestamp_millis().max(0) as u128 & ((1 << 48) - 1);
    let random: u128 = rng.random::<u128>() & ((1 << 80) - 1);
    base32_128((millis << 80) | random)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The tenant a call acts for, taken from the authorizer's claim. Never from a body.
    TenantId
);
id_type!(
    /// `sub_` followed by a sortable id.
    SubscriptionId
);
id_type!(
    /// The producer's own event id, or `evt_` and a sortable id when the producer gave none.
    EventId
);
id_type!(
    /// `msg_` followed by 52 Crockford base32 digits: the subscription id's 26, then 10 of
    /// the event's acceptance time (milliseconds), then 16 (80 bits) of a SHA-256 of tenant,
    /// event id and subscription id. The deliveries table is keyed by (tenant and
    /// subscription, delivery id), so one subscription's deliveries sort by acceptance time
    /// and a delivery is found from its id and the caller's tenant alone.
    DeliveryId
);

/// Longest tenant id accepted from an authorizer claim.
pub const MAX_TENANT_LEN: usize = 128;
/// Longest producer event id accepted.
pub const MAX_EVENT_ID_LEN: usize = 128;

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

impl TenantId {
    /// A tenant id is 1..=128 characters of `[A-Za-z0-9_.:-]`: it ends up in keys and
    /// logs, so nothing else is allowed in.
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.len() <= MAX_TENANT_LEN && raw.chars().all(is_id_char))
            .then(|| Self(raw.to_owned()))
    }
}

impl SubscriptionId {
    pub fn generate(now: DateTime<Utc>, rng: &mut impl Rng) -> Self {
        Self(format!("sub_{}", sortable_id(now, rng)))
    }

    /// Accepts only what `generate` produces, so a path segment cannot smuggle anything.
    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix("sub_")?;
        (body.len() == 26 && body.bytes().all(|b| CROCKFORD.contains(&b)))
            .then(|| Self(raw.to_owned()))
    }
}

impl EventId {
    pub fn generate(now: DateTime<Utc>, rng: &mut impl Rng) -> Self {
        Self(format!("evt_{}", sortable_id(now, rng)))
    }

    /// A producer's id: 1..=128 characters of `[A-Za-z0-9_.:-]`, not dots alone: `.` and
    /// `..` in a URL's path are dot segments, which every client removes before sending,
    /// so an event of that id could never be read back (`GET /v1/events/{id}`).
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty()
            && raw.len() <= MAX_EVENT_ID_LEN
            && raw.chars().all(is_id_char)
            && !raw.chars().all(|c| c == '.'))
        .then(|| Self(raw.to_owned()))
    }
}

/// Digits of a delivery id: subscription, acceptance time, digest.
const SUBSCRIPTION_DIGITS: usize = 26;
const TIME_DIGITS: usize = 10;
const DIGEST_DIGITS: usize = 16;

impl DeliveryId {
    /// The one delivery id for this event at this subscription. `accepted_at` is when the
    /// event was first accepted (kept in its acceptance record), so a re-publish derives the
    /// same id.
    pub fn derive(
        tenant: &TenantId,
        event: &EventId,
        subscription: &SubscriptionId,
        accepted_at: DateTime<Utc>,
    ) -> Self {
        Self(format!(
            "msg_{}{}{}",
            subscription_body(subscription),
            time_digits(accepted_at),
            digest_digits(tenant, event, subscription)
        ))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix("msg_")?;
        (body.len() == SUBSCRIPTION_DIGITS + TIME_DIGITS + DIGEST_DIGITS
            && body.bytes().all(|b| CROCKFORD.contains(&b)))
        .then(|| Self(raw.to_owned()))
    }

    fn body(&self) -> &str {
        &self.0["msg_".len()..]
    }

    /// The subscription this delivery is for.
    pub fn subscription(&self) -> SubscriptionId {
        SubscriptionId(format!("sub_{}", &self.body()[..SUBSCRIPTION_DIGITS]))
    }

    /// When the delivery's event was accepted (whole milliseconds).
    pub fn accepted_at(&self) -> DateTime<Utc> {
        let digits = &self.body()[SUBSCRIPTION_DIGITS..SUBSCRIPTION_DIGITS + TIME_DIGITS];
        let millis = base32_value(digits).unwrap_or_default();
        DateTime::from_timestamp_millis(i64::try_from(millis).unwrap_or(i64::MAX))
            .unwrap_or_default()
    }

    /// Whether this id is the one `derive` gives for this tenant, event and subscription
    /// (at whatever acceptance time).
    pub fn belongs_to(
        &self,
        tenant: &TenantId,
        event: &EventId,
        subscription: &SubscriptionId,
    ) -> bool {
        self.body()[..SUBSCRIPTION_DIGITS] == *subscription_body(subscription)
            && self.body()[SUBSCRIPTION_DIGITS + TIME_DIGITS..]
                == digest_digits(tenant, event, subscription)
    }

    /// The digest's 80 bits, as a number: differs between deliveries, never changes for one.
    pub fn digest(&self) -> u128 {
        base32_value(&self.body()[SUBSCRIPTION_DIGITS + TIME_DIGITS..]).unwrap_or_default()
    }

    /// The digits every delivery id whose number (`webhook::render::numeric_id`, the top
    /// 53 bits of the digest) is `number` has at the start of its digest: the digest's top
    /// 50 bits. None for a number no delivery has.
    pub fn digest_digits_of_number(number: u64) -> Option<String> {
        (number < 1 << 53).then(|| base32(u128::from(number >> 3), 10))
    }

    /// The least (`last = false`) or greatest (`last = true`) id a subscription can have
    /// for events accepted in the millisecond of `at`, or at any time when `at` is None:
    /// the ends of a key range.
    pub fn bound(subscription: &SubscriptionId, at: Option<DateTime<Utc>>, last: bool) -> String {
        let fill = if last { "Z" } else { "0" };
        let time = at.map_or_else(|| fill.repeat(TIME_DIGITS), time_digits);
        format!(
            "msg_{}{time}{}",
            subscription_body(subscription),
            fill.repeat(DIGEST_DIGITS)
        )
    }
}

fn subscription_body(subscription: &SubscriptionId) -> &str {
    subscription.as_str().trim_start_matches("sub_")
}

/// 50 bits of milliseconds since 1970: enough until the year 37648.
fn time_digits(at: DateTime<Utc>) -> String {
    base32(at.timestamp_millis().max(0) as u128, TIME_DIGITS as u32)
}

fn digest_digits(tenant: &TenantId, event: &EventId, subscription: &SubscriptionId) -> String {
    let mut hasher = Sha256::new();
    // Length-prefixed parts, so ("ab","c") and ("a","bc") differ.
    for part in [tenant.as_str(), event.as_str(), subscription.as_str()] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut high = [0u8; 16];
    high[6..].copy_from_slice(&digest[..10]);
    base32(u128::from_be_bytes(high), DIGEST_DIGITS as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::{SeedableRng, rngs::StdRng};

    #[test]
    fn generated_ids_sort_by_time() {
        let mut rng = StdRng::seed_from_u64(7);
        let early =
            SubscriptionId::generate(Utc.timestamp_opt(1_700_000_000, 0).unwrap(), &mut rng);
        let late = SubscriptionId::generate(Utc.timestamp_opt(1_700_000_001, 0).unwrap(), &mut rng);
        assert!(early < late);
        assert_eq!(SubscriptionId::parse(early.as_str()), Some(early));
    }

    #[test]
    fn delivery_ids_are_deterministic_and_distinct() {
        let tenant = TenantId::parse("acme").unwrap();
        let event = EventId::parse("evt_1").unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let now = Utc::now();
        let a = SubscriptionId::generate(now, &mut rng);
        let b = SubscriptionId::generate(now, &mut rng);
        let first = DeliveryId::derive(&tenant, &event, &a, now);
        assert_eq!(first, DeliveryId::derive(&tenant, &event, &a, now));
        assert_ne!(first, DeliveryId::derive(&tenant, &event, &b, now));
        let other_tenant = TenantId::parse("other").unwrap();
        assert_ne!(
            first.digest(),
            DeliveryId::derive(&other_tenant, &event, &a, now).digest()
        );
        assert_eq!(DeliveryId::parse(first.as_str()), Some(first.clone()));
        assert_eq!(first.as_str().len(), 56);
        assert!(first.belongs_to(&tenant, &event, &a));
        assert!(!first.belongs_to(&tenant, &event, &b));
        assert!(!first.belongs_to(&other_tenant, &event, &a));
    }

    #[test]
    fn a_delivery_id_is_the_documented_derivation() {
        // Computed apart from this code (hashlib): the sample deliver events use it.
        let id = DeliveryId::derive(
            &TenantId::parse("acme").unwrap(),
            &EventId::parse("ord_1001.shipped").unwrap(),
            &SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
            "2026-11-22T12:00:00Z".parse().unwrap(),
        );
        assert_eq!(
            id.as_str(),
            "msg_01JD5Q8Z6X000000000000000001M81J18G0S5A22BXD25MHKB1H"
        );
    }

    #[test]
    fn delivery_ids_carry_their_subscription_and_time_and_sort_by_time() {
        let tenant = TenantId::parse("acme").unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let at = Utc.timestamp_millis_opt(1_700_000_000_123).unwrap();
        let sub = SubscriptionId::generate(at, &mut rng);
        let event = EventId::parse("evt_1").unwrap();
        let id = DeliveryId::derive(&tenant, &event, &sub, at);
        assert_eq!(id.subscription(), sub);
        assert_eq!(id.accepted_at(), at);
        let later = at + chrono::Duration::milliseconds(1);
        let next = DeliveryId::derive(&tenant, &EventId::parse("evt_0").unwrap(), &sub, later);
        assert!(id < next, "ids of one subscription sort by acceptance time");
        let low = DeliveryId::bound(&sub, Some(at), false);
        let high = DeliveryId::bound(&sub, Some(at), true);
        assert!(low.as_str() <= id.as_str() && id.as_str() <= high.as_str());
        assert!(high.as_str() < next.as_str());
        let (first, last) = (
            DeliveryId::bound(&sub, None, false),
            DeliveryId::bound(&sub, None, true),
        );
        assert!(first.as_str() <= id.as_str() && next.as_str() <= last.as_str());
        let other = SubscriptionId::generate(later, &mut rng);
        let elsewhere = DeliveryId::derive(&tenant, &event, &other, at);
        assert!(
            !(first.as_str() <= elsewhere.as_str() && elsewhere.as_str() <= last.as_str()),
            "another subscription's ids are outside the range"
        );
    }

    #[test]
    fn parsers_refuse_what_they_did_not_make() {
        assert!(TenantId::parse("").is_none());
        assert!(TenantId::parse("a/b").is_none());
        assert!(TenantId::parse(&"a".repeat(129)).is_none());
        assert!(SubscriptionId::parse("sub_../../etc").is_none());
        assert!(DeliveryId::parse("msg_XYZ").is_none());
        assert!(DeliveryId::parse("msg_0123456789abcdef0123456789abcdef").is_none());
        assert!(DeliveryId::parse(&format!("msg_{}", "0".repeat(51))).is_none());
        assert!(DeliveryId::parse(&format!("msg_{}", "0".repeat(52))).is_some());
        assert!(DeliveryId::parse(&format!("msg_{}U", "0".repeat(51))).is_none());
        assert!(EventId::parse("order 1").is_none());
        assert!(EventId::parse("ord-1.2:3_x").is_some());
        // Dot segments are removed from a URL's path by every client.
        for dots in [".", "..", "..."] {
            assert!(EventId::parse(dots).is_none(), "{dots}");
        }
        assert!(EventId::parse(".a").is_some() && EventId::parse("a..").is_some());
    }
}
