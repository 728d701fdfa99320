//! Reading and writing DynamoDB attribute values. Times that are keys or compared as text
//! are fixed-width RFC 3339 with milliseconds, so string order is time order; expiries are
//! epoch seconds, as DynamoDB's TTL wants them.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use herald_core::ports::StoreError;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("attribute `{name}` is missing or not a string"))
        })
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(get_s(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("attribute `{name}`: {e}")))
}

/// Whether an item's `expires_at` has passed. TTL deletion lags by up to days, so every
/// read decides this itself; an item without one never expires.
pub(super) fn expired(item: &Item, now: DateTime<Utc>) -> bool {
    get_n(item, "expires_at").is_some_and(|at| at <= now.timestamp())
}

pub(super) fn from_doc<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "doc")?)
        .map_err(|e| StoreError::Corrupt(format!("attribute `doc`: {e}")))
}

pub(super) fn to_doc<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_sort_as_text() {
        let early = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
        let later = early + chrono::Duration::milliseconds(1);
        assert_eq!(time(early), "2023-11-14T22:13:20.000Z");
        assert!(time(early) < time(later));
    }

    #[test]
    fn an_item_expires_at_its_second() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let item = |at: i64| Item::from([("expires_at".to_owned(), n(at))]);
        assert!(expired(&item(1_700_000_000), now));
        assert!(!expired(&item(1_700_000_001), now));
        assert!(!expired(&Item::new(), now));
    }
}
