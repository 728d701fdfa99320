//! Portal sessions keyed by their token's hash, expiring by TTL on `expires_at` (and
//! treated as gone once past it, since TTL deletion lags).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use herald_core::ids::TenantId;
use herald_core::portal::PortalSession;
use herald_core::ports::{Erased, SessionStore, StoreError};

use super::attributes::{Item, expired, get_s, get_time, n, s, time};
use super::{erase, read_consistent, unavailable};

#[derive(Clone, Debug)]
pub struct DynamoSessionStore {
    client: Client,
    table: String,
}

impl DynamoSessionStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

fn key(token_hash: &str) -> Item {
    Item::from([("token_hash".to_owned(), s(token_hash))])
}

impl SessionStore for DynamoSessionStore {
    async fn create(&self, session: &PortalSession) -> Result<(), StoreError> {
        let mut item = key(&session.token_hash);
        item.extend([
            ("tenant".to_owned(), s(session.tenant.as_str())),
            ("created_at".to_owned(), s(time(session.created_at))),
            ("expires_at".to_owned(), n(session.expires_at.timestamp())),
            (
                "event_types".to_owned(),
                AttributeValue::L(session.event_types.iter().map(s).collect()),
            ),
        ]);
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(token_hash)")
            .send()
            .boxed()
            .await
        {
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
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalSession>, StoreError> {
        let Some(item) = read_consistent(&self.client, &self.table, key(token_hash)).await? else {
            return Ok(None);
        };
        if expired(&item, now) {
            return Ok(None);
        }
        let tenant = TenantId::parse(get_s(&item, "tenant")?)
            .ok_or_else(|| StoreError::Corrupt("a session names no tenant".into()))?;
        let expires_at = item
            .get("expires_at")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|t| DateTime::from_timestamp(t, 0))
            .ok_or_else(|| StoreError::Corrupt("a session has no end".into()))?;
        Ok(Some(PortalSession {
            token_hash: token_hash.to_owned(),
            tenant,
            created_at: get_time(&item, "created_at")?,
            expires_at,
            event_types: match item.get("event_types") {
                Some(AttributeValue::L(types)) => types
                    .iter()
                    .filter_map(|t| t.as_s().ok().cloned())
                    .collect(),
                _ => Vec::new(),
            },
        }))
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        // Sessions are keyed by their token's hash alone: the tenant's are found by a Scan
        // (portal sessions are few and short-lived).
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .projection_expression("token_hash")
            .filter_expression("tenant = :tenant")
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .limit(limit.clamp(1, 1000) as i32);
        if let Some(cursor) = cursor {
            request = request.set_exclusive_start_key(Some(erase::decode_key(
                cursor,
                &["token_hash"],
                &[],
            )?));
        }
        let output = request.send().boxed().await.map_err(unavailable)?;
        erase::delete_keys(
            &self.client,
            &self.table,
            output.items(),
            &["token_hash"],
            output.last_evaluated_key(),
        )
        .await
    }
}
