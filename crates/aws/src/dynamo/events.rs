//! Event acceptance records keyed by (`tenant`, `id`): the producer-idempotency record and
//! the event itself, kept for the retention period. Beside them, under ids that start with
//! `latest#`, the order key of the newest event about each subject per subscription. TTL
//! deletion lags, so an expired record is treated as absent here too.
//!
//! An event longer than an item can hold (DynamoDB's 400 KB; `data` may be 1 MiB) is kept
//! in parts beside its record, under ids `part#<event id>#<digest>#<n>`, written before
//! the record: a record that says `parts` always has them. The digest is of the stored
//! text itself, and the record names it, so parts written by another publish of the same
//! id (refused with 409 for other content, or a retry whose `occurred_at` defaulted to
//! another time) are never read with the record's; they are left to expire.
//!
//! The event's text is kept deflated when that makes it shorter (`docz`, or the parts'
//! `deflated`): DynamoDB bills a write unit per started KiB of an item, and JSON is text
//! that deflates to a half or less, so a 1 KiB event's record fits in one unit instead of
//! two (docs/DECISIONS.md, "Large events").

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use futures::FutureExt;

use super::attributes::{Item, expired, from_doc, get_n, get_s, get_time, n, s, time};
use super::{erase, read_consistent, read_item, unavailable};
use herald_core::event::Event;
use herald_core::ids::{EventId, SubscriptionId, TenantId};
use herald_core::ports::{Acceptance, Erased, EventLog, StoreError};

/// The record of the newest event about one subject for one subscription. Event ids
/// cannot contain `#`, so these keys never meet an event's; subject fields are at most
/// 256 bytes, so the key stays within DynamoDB's 1 KiB for a sort key.
fn latest_id(subscription: &SubscriptionId, event: &Event) -> Option<String> {
    let subject = event.subject.as_ref()?;
    Some(format!(
        "latest#{subscription}#{}:{}#{}",
        subject.kind.len(),
        subject.kind,
        subject.id
    ))
}

/// Longest stored event kept in its record; a longer one is kept in parts of this length.
/// An item is at most 400 KB (409,600 bytes) with its attribute names and key.
const MAX_DOC_BYTES: usize = 350 * 1024;

/// Most parts an event is read back from: a stored event is at most 1 MiB of `data` with
/// the rest of the event's fields, well within this.
const MAX_PARTS: usize = 8;

/// Texts shorter than this are kept as they are: their record is within one write unit.
const DEFLATE_FROM: usize = 512;
/// Deflate's level: 1, the fastest, already takes JSON to about half.
const DEFLATE_LEVEL: u8 = 1;
/// Longest text an event inflates to: 1 MiB of `data` with the rest of the event, with
/// room; anything longer is not an event Herald stored.
const MAX_INFLATED_BYTES: usize = 2 * 1024 * 1024;

/// The event's text as it is kept.
enum Packed {
    Text(String),
    Deflated(Vec<u8>),
}

impl Packed {
    /// Deflated when that is shorter, as it is otherwise.
    fn new(doc: String) -> Self {
        if doc.len() >= DEFLATE_FROM {
            let deflated = miniz_oxide::deflate::compress_to_vec(doc.as_bytes(), DEFLATE_LEVEL);
            if deflated.len() < doc.len() {
                return Self::Deflated(deflated);
            }
        }
        Self::Text(doc)
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Deflated(bytes) => bytes,
        }
    }
}

/// The event a kept text holds.
fn unpacked(id: &EventId, text: &[u8], deflated: bool) -> Result<Event, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("event {id}: {e}"));
    if !deflated {
        return serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()));
    }
    let inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(text, MAX_INFLATED_BYTES)
        .map_err(|e| corrupt(format!("does not inflate: {e}")))?;
    serde_json::from_slice(&inflated).map_err(|e| corrupt(e.to_string()))
}

fn part_id(id: &EventId, digest: &str, n: usize) -> String {
    format!("part#{id}#{digest}#{n}")
}

/// The digest naming a stored text's parts: SHA-256, 32 hex digits of it.
fn digest(doc: &[u8]) -> String {
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, doc);
    sum.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn key(tenant: &TenantId, id: &str) -> Item {
    Item::from([
        ("tenant".to_owned(), s(tenant.as_str())),
        ("id".to_owned(), s(id)),
    ])
}

fn seen(old: &Item) -> Result<Acceptance, StoreError> {
    Ok(Acceptance::Seen {
        fingerprint: get_s(old, "fingerprint")?.to_owned(),
        deliveries: get_n(old, "deliveries").map(|d| d.clamp(0, u32::MAX.into()) as u32),
        accepted_at: get_time(old, "accepted_at")?,
    })
}

#[derive(Clone, Debug)]
pub struct DynamoEventLog {
    client: Client,
    table: String,
    retention: Duration,
}

impl DynamoEventLog {
    pub fn new(client: Client, table: String, retention: Duration) -> Self {
        Self {
            client,
            table,
            retention,
        }
    }

    fn expiry(&self, now: DateTime<Utc>) -> i64 {
        let retention = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        now.timestamp().saturating_add(retention)
    }

    /// Writes `doc` in parts, all at once, and answers how many.
    async fn put_parts(
        &self,
        tenant: &TenantId,
        id: &EventId,
        digest: &str,
        doc: &[u8],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let writes = doc.chunks(MAX_DOC_BYTES).enumerate().map(|(i, part)| {
            let mut item = key(tenant, &part_id(id, digest, i));
            item.extend([
                ("part".to_owned(), AttributeValue::B(Blob::new(part))),
                ("expires_at".to_owned(), n(self.expiry(now))),
            ]);
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
        });
        let written = futures::future::try_join_all(writes)
            .await
            .map_err(unavailable)?;
        Ok(written.len())
    }

    /// The event under (tenant, id), its record and parts read consistently or not.
    async fn read_event(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
        consistent: bool,
    ) -> Result<Option<Event>, StoreError> {
        let found = read_item(
            &self.client,
            &self.table,
            key(tenant, id.as_str()),
            consistent,
        )
        .await?;
        match found {
            Some(item) if !expired(&item, now) => {
                if let Some(text) = item.get("docz").and_then(|v| v.as_b().ok()) {
                    return unpacked(id, text.as_ref(), true).map(Some);
                }
                let Some(parts) = get_n(&item, "parts") else {
                    return from_doc(&item).map(Some);
                };
                let digest = get_s(&item, "parts_digest")?;
                let text = self
                    .read_parts(tenant, id, digest, parts, consistent)
                    .await?;
                let deflated = item.get("deflated").and_then(|v| v.as_bool().ok());
                unpacked(id, &text, deflated.copied().unwrap_or(false)).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Reads the text of an event kept in `parts` parts back, all at once.
    async fn read_parts(
        &self,
        tenant: &TenantId,
        id: &EventId,
        digest: &str,
        parts: i64,
        consistent: bool,
    ) -> Result<Vec<u8>, StoreError> {
        let count = usize::try_from(parts)
            .ok()
            .filter(|&p| p > 0 && p <= MAX_PARTS)
            .ok_or_else(|| StoreError::Corrupt(format!("event {id}: {parts} parts")))?;
        let reads = (0..count).map(|i| {
            read_item(
                &self.client,
                &self.table,
                key(tenant, &part_id(id, digest, i)),
                consistent,
            )
        });
        let mut doc = Vec::new();
        for (i, item) in futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .enumerate()
        {
            let bytes = item
                .as_ref()
                .and_then(|item| item.get("part"))
                .and_then(|part| part.as_b().ok())
                .ok_or_else(|| StoreError::Corrupt(format!("event {id}: part {i} is missing")))?;
            doc.extend_from_slice(bytes.as_ref());
        }
        if self::digest(&doc) != digest {
            return Err(StoreError::Corrupt(format!(
                "event {id}: its parts do not match"
            )));
        }
        Ok(doc)
    }
}

impl EventLog for DynamoEventLog {
    async fn accept(
        &self,
        tenant: &TenantId,
        event: &Event,
        fingerprint: &str,
        deliveries: u32,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        let doc = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut item = key(tenant, event.id.as_str());
        item.extend([
            ("fingerprint".to_owned(), s(fingerprint)),
            ("deliveries".to_owned(), n(deliveries)),
            ("accepted_at".to_owned(), s(time(now))),
            ("expires_at".to_owned(), n(self.expiry(now))),
        ]);
        let packed = Packed::new(doc);
        if packed.bytes().len() > MAX_DOC_BYTES {
            let digest = digest(packed.bytes());
            let parts = self
                .put_parts(tenant, &event.id, &digest, packed.bytes(), now)
                .await?;
            item.extend([
                ("parts".to_owned(), n(parts)),
                ("parts_digest".to_owned(), s(digest)),
                (
                    "deflated".to_owned(),
                    AttributeValue::Bool(matches!(packed, Packed::Deflated(_))),
                ),
            ]);
        } else {
            match packed {
                Packed::Text(text) => item.insert("doc".to_owned(), s(text)),
                Packed::Deflated(bytes) => {
                    item.insert("docz".to_owned(), AttributeValue::B(Blob::new(bytes)))
                }
            };
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record awaiting TTL deletion is overwritten as if it were absent.
            .condition_expression("attribute_not_exists(id) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await;
        let e = match result {
            Ok(_) => return Ok(Acceptance::New),
            Err(e) => e,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(unavailable(e));
        };
        if let Some(old) = failed.item() {
            return seen(old);
        }
        match read_consistent(&self.client, &self.table, key(tenant, event.id.as_str())).await? {
            Some(old) => seen(&old),
            // Deleted between the write and the read: a race to retry, like any conflict.
            None => Err(StoreError::Conflict),
        }
    }

    async fn acceptance(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        // Only the acceptance's attributes come back (the read is billed for the whole
        // record all the same).
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant, id.as_str())))
            .consistent_read(true)
            .projection_expression("fingerprint, deliveries, accepted_at, expires_at")
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        match output.item {
            Some(item) if !expired(&item, now) => seen(&item),
            _ => Ok(Acceptance::New),
        }
    }

    async fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        self.read_event(tenant, id, now, true).await
    }

    async fn load_eventually(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        self.read_event(tenant, id, now, false).await
    }

    async fn note_latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let Some(id) = latest_id(subscription, event) else {
            return Ok(None);
        };
        let mut item = key(tenant, &id);
        item.extend([
            ("order_key".to_owned(), s(event.order_key())),
            ("expires_at".to_owned(), n(self.expiry(now))),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(id) OR order_key < :order OR expires_at <= :now",
            )
            .expression_attribute_values(":order", s(event.order_key()))
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .boxed()
            .await;
        let e = match result {
            Ok(_) => return Ok(None),
            Err(e) => e,
        };
        // A newer event about the subject (or this one) is recorded already: which, from
        // the refusal itself, or read when the refusal did not carry it.
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = e.as_service_error()
        else {
            return Err(unavailable(e));
        };
        match failed.item() {
            Some(old) => Ok(Some(get_s(old, "order_key")?.to_owned())),
            None => self.latest(tenant, subscription, event, now).await,
        }
    }

    async fn latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let Some(id) = latest_id(subscription, event) else {
            return Ok(None);
        };
        match read_consistent(&self.client, &self.table, key(tenant, &id)).await? {
            Some(item) if !expired(&item, now) => Ok(Some(get_s(&item, "order_key")?.to_owned())),
            _ => Ok(None),
        }
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        // The tenant's partition holds its events and newest-about-a-subject records; a
        // subscription's own records share the prefix `latest#<subscription>#`.
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .projection_expression("tenant, id")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .limit(limit.clamp(1, 1000) as i32);
        request = match subscription {
            None => request.key_condition_expression("tenant = :tenant"),
            Some(subscription) => request
                .key_condition_expression("tenant = :tenant AND begins_with(id, :prefix)")
                .expression_attribute_values(":prefix", s(format!("latest#{subscription}#"))),
        };
        if let Some(cursor) = cursor {
            let start =
                erase::decode_key(cursor, &["tenant", "id"], &[("tenant", tenant.as_str())])?;
            request = request.set_exclusive_start_key(Some(start));
        }
        let output = request.send().boxed().await.map_err(unavailable)?;
        erase::delete_keys(
            &self.client,
            &self.table,
            output.items(),
            &["tenant", "id"],
            output.last_evaluated_key(),
        )
        .await
    }
}
