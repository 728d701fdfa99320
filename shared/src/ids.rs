//! Prefixed identifiers. Generated ids are time-sortable (48 bits of milliseconds then
//! 80 random bits, Crockford base32, like a ULID) so "newest first" is a key order.
//! Delivery ids are derived, not generated: the same tenant, event and subscription always
//! give the same delivery id, which is what makes re-publishing and replay idempotent.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// 26 characters of Crockford base32 for a 128-bit value.
fn base32_128(value: u128) -> String {
    (0..26)
        .rev()
        .map(|i| CROCKFORD[((value >> (i * 5)) & 0x1f) as usize] as char)
        .collect()
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
    /// `msg_` followed by 32 hex digits derived from tenant, event and subscription.
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

    /// A producer's id: 1..=128 characters of `[A-Za-z0-9_.:-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        (!raw.is_empty() && raw.len() <= MAX_EVENT_ID_LEN && raw.chars().all(is_id_char))
            .then(|| Self(raw.to_owned()))
    }
}

impl DeliveryId {
    /// The one delivery id for this event at this subscription.
    pub fn derive(tenant: &TenantId, event: &EventId, subscription: &SubscriptionId) -> Self {
        let mut hasher = Sha256::new();
        // Length-prefixed parts, so ("ab","c") and ("a","bc") differ.
        for part in [tenant.as_str(), event.as_str(), subscription.as_str()] {
            hasher.update((part.len() as u32).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        Self(format!("msg_{}", hex::encode(&digest[..16])))
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let body = raw.strip_prefix("msg_")?;
        (body.len() == 32
            && body
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(raw.to_owned()))
    }
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
        let first = DeliveryId::derive(&tenant, &event, &a);
        assert_eq!(first, DeliveryId::derive(&tenant, &event, &a));
        assert_ne!(first, DeliveryId::derive(&tenant, &event, &b));
        assert_eq!(DeliveryId::parse(first.as_str()), Some(first));
    }

    #[test]
    fn parsers_refuse_what_they_did_not_make() {
        assert!(TenantId::parse("").is_none());
        assert!(TenantId::parse("a/b").is_none());
        assert!(TenantId::parse(&"a".repeat(129)).is_none());
        assert!(SubscriptionId::parse("sub_../../etc").is_none());
        assert!(DeliveryId::parse("msg_XYZ").is_none());
        assert!(EventId::parse("order 1").is_none());
        assert!(EventId::parse("ord-1.2:3_x").is_some());
    }
}
