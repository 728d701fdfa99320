//! Attempt excerpts kept for less time than their records (`HERALD_EXCERPT_RETENTION`).
//!
//! An attempt's excerpt (the first bytes of the receiver's answer) is written with its
//! delivery, in the same `UpdateItem`, but sealed: AES-256-GCM under a key made for the
//! UTC day of the attempt, bound to the delivery id and the attempt's number. Each day's
//! key is one item in the deliveries table with its own `expires_at`, the day's end plus
//! the excerpt retention; once it is past, the key is deleted (by DynamoDB's TTL, and by
//! Herald itself on finding it expired) and every excerpt sealed under it is noise: the
//! excerpts are erased, with nothing rewritten and no write per attempt beyond the one the
//! delivery makes anyway. An excerpt is readable for at least the retention and at most a
//! day longer (docs/DECISIONS.md, "Excerpt retention").
//!
//! With a retention of zero no excerpt is kept at all. Without the setting excerpts are
//! written as they are and live as long as their record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, Utc};
use futures::FutureExt;
use herald_core::ids::DeliveryId;
use herald_core::ports::StoreError;

use super::attributes::{Item, get_n, n, s};
use super::{condition_failed, read_consistent, unavailable};

/// The partition of the day keys. Tenant partitions are `<tenant>#<subscription>` and a
/// tenant id cannot be empty, so no tenant's erasure (which takes `<tenant>#…`) meets it.
const KEYS_PARTITION: &str = "#excerpt-keys";
/// The attempt field a sealed excerpt is stored in, in place of `response`.
pub(super) const SEALED_FIELD: &str = "sealed_response";

/// A day's key as read: usable until `expires_at`, or gone.
#[derive(Clone, Copy)]
enum DayKey {
    Live {
        key: [u8; 32],
        expires_at: DateTime<Utc>,
    },
    Gone,
}

/// How excerpts are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExcerptRetention {
    /// As long as their records, unsealed.
    WithRecords,
    /// Sealed under a day key that lasts this long past its day (zero: not kept).
    For(Duration),
}

pub struct Excerpts {
    client: Client,
    table: String,
    retention: ExcerptRetention,
    keys: Mutex<HashMap<NaiveDate, DayKey>>,
}

impl std::fmt::Debug for Excerpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Excerpts")
            .field("table", &self.table)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What the ledger writes for an attempt's excerpt.
pub(super) enum Kept {
    /// The excerpt as it is (`response`).
    Plain,
    /// Sealed: `SEALED_FIELD`'s value.
    Sealed(String),
    /// Nothing (a retention of zero, or an attempt older than the retention).
    Dropped,
}

fn aad(delivery: &DeliveryId, number: u32) -> String {
    format!("{delivery}#{number}")
}

fn day_key_item(day: NaiveDate) -> Item {
    Item::from([
        ("subscription_key".to_owned(), s(KEYS_PARTITION)),
        ("id".to_owned(), s(day.to_string())),
    ])
}

impl Excerpts {
    pub fn new(client: Client, table: String, retention: ExcerptRetention) -> Self {
        Self {
            client,
            table,
            retention,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// When `day`'s key expires: the day's end plus the retention.
    fn expiry_of(day: NaiveDate, retention: Duration) -> DateTime<Utc> {
        let end = day
            .succ_opt()
            .unwrap_or(day)
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        end + chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX)
    }

    /// How the excerpt `text` of attempt `number` of `delivery`, made at `at`, is kept.
    pub(super) async fn keep(
        &self,
        delivery: &DeliveryId,
        number: u32,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<Kept, StoreError> {
        let retention = match self.retention {
            ExcerptRetention::WithRecords => return Ok(Kept::Plain),
            _ if text.is_empty() => return Ok(Kept::Plain),
            ExcerptRetention::For(retention) if retention.is_zero() => return Ok(Kept::Dropped),
            ExcerptRetention::For(retention) => retention,
        };
        let day = at.date_naive();
        let Some(key) = self.day_key(day, Some(retention), at).await? else {
            return Ok(Kept::Dropped);
        };
        let sealing = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &key)
                .map_err(|_| StoreError::Corrupt("an excerpt key of the wrong length".into()))?,
        );
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Unavailable("no randomness for an excerpt's nonce".into()))?;
        let mut sealed = text.as_bytes().to_vec();
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(delivery, number)),
                &mut sealed,
            )
            .map_err(|_| StoreError::Corrupt("an excerpt could not be sealed".into()))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(Kept::Sealed(format!("{day}:{}", STANDARD.encode(stored))))
    }

    /// The excerpt sealed as `sealed` for attempt `number` of `delivery`, or empty once
    /// its day's key is gone (or if it is not an excerpt Herald sealed for it).
    pub(super) async fn open(
        &self,
        delivery: &DeliveryId,
        number: u32,
        sealed: &str,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let Some((day, data)) = sealed.split_once(':') else {
            return Ok(String::new());
        };
        let (Ok(day), Ok(data)) = (day.parse::<NaiveDate>(), STANDARD.decode(data)) else {
            return Ok(String::new());
        };
        let Some(key) = self.day_key(day, None, now).await? else {
            return Ok(String::new());
        };
        Ok(unseal(&key, &aad(delivery, number), data).unwrap_or_default())
    }

    /// `day`'s key while it lasts; made (when `making` gives the retention) if there is
    /// none yet. An expired one is deleted when found.
    async fn day_key(
        &self,
        day: NaiveDate,
        making: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        let cached = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&day)
            .copied();
        match cached {
            Some(DayKey::Live { key, expires_at }) if expires_at > now => return Ok(Some(key)),
            Some(DayKey::Gone) => return Ok(None),
            _ => {}
        }
        let mut read = self.read_key(day).await?;
        if read.is_none()
            && let Some(retention) = making
        {
            let expires_at = Self::expiry_of(day, retention);
            if expires_at <= now {
                return Ok(None);
            }
            read = Some(self.make_key(day, expires_at).await?);
        }
        let found = match read {
            None => return Ok(None),
            Some((key, expires_at)) if expires_at > now => DayKey::Live { key, expires_at },
            Some((_, expires_at)) => {
                // DynamoDB's TTL deletes it too, within days: a failed delete is no failure.
                if let Err(e) = self.delete_key(day, expires_at).await {
                    tracing::warn!(%day, error = %e, "could not delete an expired excerpt key");
                }
                DayKey::Gone
            }
        };
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(day, found);
        Ok(match found {
            DayKey::Live { key, .. } => Some(key),
            DayKey::Gone => None,
        })
    }

    async fn read_key(
        &self,
        day: NaiveDate,
    ) -> Result<Option<([u8; 32], DateTime<Utc>)>, StoreError> {
        let Some(item) = read_consistent(&self.client, &self.table, day_key_item(day)).await?
        else {
            return Ok(None);
        };
        let key: [u8; 32] = item
            .get("key")
            .and_then(|v| v.as_b().ok())
            .and_then(|b| b.as_ref().try_into().ok())
            .ok_or_else(|| StoreError::Corrupt("an excerpt key item without its key".into()))?;
        let expires_at = get_n(&item, "expires_at")
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| StoreError::Corrupt("an excerpt key item without expires_at".into()))?;
        Ok(Some((key, expires_at)))
    }

    /// Makes `day`'s key; if another container made it first, theirs.
    async fn make_key(
        &self,
        day: NaiveDate,
        expires_at: DateTime<Utc>,
    ) -> Result<([u8; 32], DateTime<Utc>), StoreError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| StoreError::Unavailable("no randomness for an excerpt key".into()))?;
        let mut item = day_key_item(day);
        item.insert("key".into(), AttributeValue::B(Blob::new(key.to_vec())));
        item.insert("expires_at".into(), n(expires_at.timestamp()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .boxed()
            .await;
        match put {
            Ok(_) => Ok((key, expires_at)),
            Err(e) if condition_failed(&e) => self
                .read_key(day)
                .await?
                .ok_or_else(|| StoreError::Unavailable("an excerpt key made and gone".into())),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete_key(
        &self,
        day: NaiveDate,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(day_key_item(day)))
            .condition_expression("expires_at = :expires_at")
            .expression_attribute_values(":expires_at", n(expires_at.timestamp()))
            .send()
            .boxed()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Made again since, with another expiry: not ours to delete.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// `data` (nonce, then ciphertext and tag) opened with `key` and `aad`, if it opens to text.
fn unseal(key: &[u8; 32], aad: &str, data: Vec<u8>) -> Option<String> {
    if data.len() < NONCE_LEN {
        return None;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN]).ok()?;
    let mut buffer = data[NONCE_LEN..].to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_days_key_lasts_the_retention_past_the_days_end() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let expiry = Excerpts::expiry_of(day, Duration::from_secs(7 * 86_400));
        assert_eq!(expiry.to_rfc3339(), "2026-12-11T00:00:00+00:00");
    }
}
