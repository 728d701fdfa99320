//! Event acceptance records keyed by (`tenant`, `id`): the producer-idempotency record and
//! the event itself, kept for the retention period. TTL deletion lags, so an expired
//! record is treated as absent here too.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use chrono::{DateTime, Utc};

use super::{Item, from_doc, get_n, get_s, n, s, time, to_doc, unavailable};
use crate::event::Event;
use crate::ids::{EventId, SubscriptionId, TenantId};
use crate::ports::{Acceptance, EventLog, StoreError};

/// The record of the newest event about one subject for one subscription. Event ids
/// cannot contain `#`, so these keys never meet an event's.
fn latest_key(subscription: &SubscriptionId, event: &Event) -> Option<String> {
    let subject = event.subject.as_ref()?;
    Some(format!(
        "latest#{subscription}#{}:{}#{}",
        subject.kind.len(),
        subject.kind,
        subject.id
    ))
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
}

impl EventLog for DynamoEventLog {
    async fn accept(
        &self,
        tenant: &TenantId,
        event: &Event,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        let expires_at = now.timestamp() + self.retention.as_secs() as i64;
        let item = Item::from([
            ("tenant".to_owned(), s(tenant.as_str())),
            ("id".to_owned(), s(event.id.as_str())),
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
            .condition_expression("attribute_not_exists(id) OR expires_at < :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Acceptance::New),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    let old = failed.item().ok_or_else(|| {
                        StoreError::Corrupt("no item with the failed condition".into())
                    })?;
                    Ok(Acceptance::Seen {
                        fingerprint: get_s(old, "fingerprint")?.to_owned(),
                        deliveries: get_n(old, "deliveries").map(|d| d.max(0) as u32),
                    })
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    async fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("tenant", s(tenant.as_str()))
            .key("id", s(id.as_str()))
            .send()
            .await
            .map_err(unavailable)?;
        match output.item() {
            Some(item) if get_n(item, "expires_at").is_some_and(|at| at > now.timestamp()) => {
                from_doc(item).map(Some)
            }
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
        let Some(key) = latest_key(subscription, event) else {
            return Ok(());
        };
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("tenant", s(tenant.as_str()))
            .item("id", s(key))
            .item("order_key", s(event.order_key()))
            .item(
                "expires_at",
                n(now.timestamp() + self.retention.as_secs() as i64),
            )
            .condition_expression(
                "attribute_not_exists(id) OR order_key < :order OR expires_at < :now",
            )
            .expression_attribute_values(":order", s(event.order_key()))
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer event is recorded already.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
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
        let Some(key) = latest_key(subscription, event) else {
            return Ok(None);
        };
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("tenant", s(tenant.as_str()))
            .key("id", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .item()
            .filter(|item| get_n(item, "expires_at").is_some_and(|at| at > now.timestamp()))
            .and_then(|item| get_s(item, "order_key").ok().map(str::to_owned)))
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: &EventId,
        deliveries: u32,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("tenant", s(tenant.as_str()))
            .key("id", s(id.as_str()))
            .update_expression("SET deliveries = :deliveries")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":deliveries", n(deliveries))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
