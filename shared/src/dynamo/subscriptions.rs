//! Subscriptions keyed by (`tenant`, `id`). Ids sort by creation time, so a descending
//! query is a newest-first listing.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{Item, from_doc, n, s, to_doc, unavailable};
use crate::ids::{SubscriptionId, TenantId};
use crate::ports::{Page, StoreError, SubscriptionStore};
use crate::subscription::{Subscription, SubscriptionStatus};

#[derive(Clone, Debug)]
pub struct DynamoSubscriptionStore {
    client: Client,
    table: String,
}

impl DynamoSubscriptionStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    fn item(subscription: &Subscription) -> Result<Item, StoreError> {
        let status = match subscription.status {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Disabled => "disabled",
        };
        Ok(Item::from([
            ("tenant".to_owned(), s(subscription.tenant.as_str())),
            ("id".to_owned(), s(subscription.id.as_str())),
            ("status".to_owned(), s(status)),
            ("version".to_owned(), n(subscription.version)),
            ("doc".to_owned(), to_doc(subscription)?),
        ]))
    }

    fn key(tenant: &TenantId, id: &SubscriptionId) -> Item {
        Item::from([
            ("tenant".to_owned(), s(tenant.as_str())),
            ("id".to_owned(), s(id.as_str())),
        ])
    }

    /// Items of the tenant, newest first, from an optional exclusive start id.
    async fn query(
        &self,
        tenant: &TenantId,
        limit: Option<usize>,
        after: Option<&SubscriptionId>,
        only_active: bool,
    ) -> Result<(Vec<Subscription>, Option<Item>), StoreError> {
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("tenant = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .scan_index_forward(false)
            .consistent_read(true);
        if let Some(limit) = limit {
            request = request.limit(limit as i32);
        }
        if only_active {
            request = request
                .filter_expression("#status = :active")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":active", s("active"));
        }
        if let Some(after) = after {
            request = request.set_exclusive_start_key(Some(Self::key(tenant, after)));
        }
        let output = request.send().await.map_err(unavailable)?;
        let items = output
            .items()
            .iter()
            .map(from_doc)
            .collect::<Result<Vec<Subscription>, _>>()?;
        Ok((items, output.last_evaluated_key().cloned()))
    }
}

fn encode_cursor(id: &SubscriptionId) -> String {
    URL_SAFE_NO_PAD.encode(id.as_str())
}

fn decode_cursor(cursor: &str) -> Result<SubscriptionId, StoreError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| SubscriptionId::parse(&text))
        .ok_or(StoreError::InvalidCursor)
}

impl SubscriptionStore for DynamoSubscriptionStore {
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(subscription)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output.item().map(from_doc).transpose()
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let after = cursor.map(decode_cursor).transpose()?;
        // One more than asked tells whether another page exists.
        let (mut items, _) = self
            .query(tenant, Some(limit + 1), after.as_ref(), false)
            .await?;
        let next = (items.len() > limit).then(|| encode_cursor(&items[limit - 1].id));
        items.truncate(limit);
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(subscription)?))
            .condition_expression("attribute_exists(id) AND #version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn active(&self, tenant: &TenantId) -> Result<Vec<Subscription>, StoreError> {
        let mut all = Vec::new();
        let mut after: Option<SubscriptionId> = None;
        loop {
            let (items, last) = self.query(tenant, None, after.as_ref(), true).await?;
            all.extend(items);
            match last
                .as_ref()
                .and_then(|k| k.get("id"))
                .and_then(|v| v.as_s().ok())
            {
                Some(id) => after = SubscriptionId::parse(id),
                None => break,
            }
            if after.is_none() {
                break;
            }
        }
        Ok(all)
    }

    async fn delete(&self, tenant: &TenantId, id: &SubscriptionId) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(tenant, id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn disable(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        // Read, change, write back only if nobody changed it meanwhile (optimistic concurrency).
        for _ in 0..5 {
            let Some(mut subscription) = self.get(tenant, id).await? else {
                return Ok(());
            };
            if subscription.status == SubscriptionStatus::Disabled {
                return Ok(());
            }
            let read_version = subscription.version;
            subscription.status = SubscriptionStatus::Disabled;
            subscription.disabled_reason = Some(reason.to_owned());
            subscription.disabled_at = Some(at);
            subscription.version += 1;
            subscription.updated_at = at;
            match self.update(&subscription, read_version).await {
                Err(StoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    async fn set_failing_since(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        for _ in 0..5 {
            let Some(mut subscription) = self.get(tenant, id).await? else {
                return Ok(());
            };
            if subscription.failing_since == since {
                return Ok(());
            }
            let read_version = subscription.version;
            subscription.failing_since = since;
            subscription.version += 1;
            match self.update(&subscription, read_version).await {
                Err(StoreError::Conflict) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let id = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        assert!(matches!(
            decode_cursor("garbage"),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode_cursor(&URL_SAFE_NO_PAD.encode("sub_../x")),
            Err(StoreError::InvalidCursor)
        ));
    }
}
