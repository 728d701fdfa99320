//! Event acceptance records keyed by (`tenant`, `id`): the producer-idempotency record and
//! the event itself, kept for the retention period. TTL deletion lags, so an expired
//! record is treated as absent here too.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::attributes::{Item, expired, from_doc, get_n, get_s, n, s, time, to_doc};
use super::{read_consistent, unavailable};
use crate::event::Event;
use crate::ids::{EventId, TenantId};
use crate::ports::{Acceptance, EventLog, StoreError};

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

    fn key(tenant: &TenantId, id: &EventId) -> Item {
        Item::from([
            ("tenant".to_owned(), s(tenant.as_str())),
            ("id".to_owned(), s(id.as_str())),
        ])
    }
}

fn seen(old: &Item) -> Result<Acceptance, StoreError> {
    Ok(Acceptance::Seen {
        fingerprint: get_s(old, "fingerprint")?.to_owned(),
        deliveries: get_n(old, "deliveries").map(|d| d.clamp(0, u32::MAX.into()) as u32),
    })
}

impl EventLog for DynamoEventLog {
    async fn accept(
        &self,
        tenant: &TenantId,
        event: &Event,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        let retention = i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX);
        let expires_at = now.timestamp().saturating_add(retention);
        let mut item = Self::key(tenant, &event.id);
        item.extend([
            ("fingerprint".to_owned(), s(fingerprint)),
            ("doc".to_owned(), to_doc(event)?),
            ("accepted_at".to_owned(), s(time(now))),
            ("expires_at".to_owned(), n(expires_at)),
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
        match failed.item() {
            Some(old) => seen(old),
            None => {
                match read_consistent(&self.client, &self.table, Self::key(tenant, &event.id))
                    .await?
                {
                    Some(old) => seen(&old),
                    // Deleted between the write and the read: the condition held after all.
                    None => Err(StoreError::Conflict),
                }
            }
        }
    }

    async fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        match read_consistent(&self.client, &self.table, Self::key(tenant, id)).await? {
            Some(item) if !expired(&item, now) => from_doc(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: &EventId,
        deliveries: u32,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .update_expression("SET deliveries = :deliveries")
            // Never creates a record without its event; one that is gone needs no mark.
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":deliveries", n(deliveries))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}
