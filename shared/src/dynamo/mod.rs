//! DynamoDB adapters. Keys and indexed attributes are plain attributes (as `template.yaml`
//! declares them); the rest of a domain value is kept as one JSON document attribute,
//! `doc`, so that adding a field needs no migration.

mod deliveries;
mod events;
mod subscriptions;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ports::StoreError;

pub use deliveries::DynamoDeliveryLedger;
pub use events::DynamoEventLog;
pub use subscriptions::DynamoSubscriptionStore;

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Fixed-width RFC 3339 with milliseconds, so that string order is time order.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("attribute `{name}` is missing or not a string"))
        })
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn from_doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "doc")?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_doc<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Every SDK failure but a failed condition is worth retrying (throttling, 5xx, network);
/// the error itself is kept as the source.
fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::unavailable(e)
}
