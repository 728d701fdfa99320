//! Portal sessions keyed by their token's hash, expiring by TTL on `expires_at` (and
//! treated as gone once past it, since TTL deletion lags).

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use herald_core::ids::TenantId;
use herald_core::portal::PortalSession;
use herald_core::ports::{SessionStore, StoreError};

use super::attributes::{Item, expired, get_s, get_time, n, s, time};
use super::{read_consistent, unavailable};

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
}
