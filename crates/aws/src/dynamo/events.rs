//! Event acceptance records keyed by (`tenant`, `id`): the producer-idempotency record and
//! the event itself, kept for the retention period. Beside them, under ids that start with
//! `latest#`, the order key of the newest event about each subject per subscription. TTL
//! deletion lags, so an expired record is treated as absent here too.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::attributes::{Item, expired, from_doc, get_n, get_s, get_time, n, s, time, to_doc};
use super::{condition_failed, erase, read_consistent, unavailable};
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
        let mut item = key(tenant, event.id.as_str());
        item.extend([
            ("fingerprint".to_owned(), s(fingerprint)),
            ("deliveries".to_owned(), n(deliveries)),
            ("doc".to_owned(), to_doc(event)?),
            ("accepted_at".to_owned(), s(time(now))),
            ("expires_at".to_owned(), n(self.expiry(now))),
        ]);
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

    async fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        match read_consistent(&self.client, &self.table, key(tenant, id.as_str())).await? {
            Some(item) if !expired(&item, now) => from_doc(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn note_latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(id) = latest_id(subscription, event) else {
            return Ok(());
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer event about the subject is recorded already.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
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
        let output = request.send().await.map_err(unavailable)?;
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
