//! The common half of an erasure step: the keys a Query or Scan page found are deleted
//! with BatchWriteItem, and the page's last evaluated key becomes the opaque cursor of the
//! next step.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::FutureExt;
use herald_core::ports::{Erased, StoreError};

use super::attributes::Item;
use super::unavailable;

/// BatchWriteItem takes at most 25 requests.
const BATCH: usize = 25;
/// Rounds of resending what DynamoDB left unprocessed (it does so under throttling)
/// before the step fails and is tried again by its caller.
const RESENDS: u32 = 5;

/// The cursor for a page's last evaluated key: its string attributes as JSON, base64url.
pub(super) fn encode_key(key: &Item) -> String {
    let map: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .filter_map(|(name, value)| {
            value
                .as_s()
                .ok()
                .map(|s| (name.clone(), serde_json::Value::String(s.clone())))
        })
        .collect();
    URL_SAFE_NO_PAD.encode(serde_json::Value::Object(map).to_string())
}

/// The key a cursor names: exactly the attributes `names`, each a string, and each one
/// that `fixed` gives equal to it (so a cursor cannot point into another tenant's
/// partition of a Query).
pub(super) fn decode_key(
    cursor: &str,
    names: &[&str],
    fixed: &[(&str, &str)],
) -> Result<Item, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    if map.len() != names.len() {
        return Err(StoreError::InvalidCursor);
    }
    let mut key = Item::new();
    for name in names {
        let value = map
            .get(*name)
            .and_then(serde_json::Value::as_str)
            .ok_or(StoreError::InvalidCursor)?;
        if fixed.iter().any(|(n, v)| n == name && *v != value) {
            return Err(StoreError::InvalidCursor);
        }
        key.insert((*name).to_owned(), AttributeValue::S(value.to_owned()));
    }
    Ok(key)
}

/// Deletes `keys` (each item's key attributes `names`), 25 a call, resending what
/// DynamoDB leaves unprocessed; then answers the step with `last` as its cursor.
pub(super) async fn delete_keys(
    client: &Client,
    table: &str,
    items: &[Item],
    names: &[&str],
    last: Option<&Item>,
) -> Result<Erased, StoreError> {
    let keys: Vec<Item> = items
        .iter()
        .map(|item| {
            names
                .iter()
                .filter_map(|name| item.get(*name).map(|v| ((*name).to_owned(), v.clone())))
                .collect()
        })
        .collect();
    for chunk in keys.chunks(BATCH) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mut round = 0;
        while !requests.is_empty() {
            if round > RESENDS {
                return Err(StoreError::unavailable(std::io::Error::other(
                    "DynamoDB left deletes unprocessed after every resend",
                )));
            }
            if round > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50 << round)).await;
            }
            let output = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .boxed()
                .await
                .map_err(unavailable)?;
            requests = output
                .unprocessed_items()
                .and_then(|left| left.get(table))
                .cloned()
                .unwrap_or_default();
            round += 1;
        }
    }
    Ok(Erased {
        count: keys.len() as u64,
        next: last.map(encode_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_a_key_of_the_given_shape_and_partition() {
        let key = Item::from([
            ("tenant".to_owned(), AttributeValue::S("acme".into())),
            ("id".to_owned(), AttributeValue::S("e1".into())),
        ]);
        let cursor = encode_key(&key);
        assert_eq!(
            decode_key(&cursor, &["tenant", "id"], &[("tenant", "acme")]).unwrap(),
            key
        );
        assert!(matches!(
            decode_key(&cursor, &["tenant", "id"], &[("tenant", "globex")]),
            Err(StoreError::InvalidCursor)
        ));
        assert!(matches!(
            decode_key(&cursor, &["token_hash"], &[]),
            Err(StoreError::InvalidCursor)
        ));
        for bogus in ["", "!!", "bm90IGpzb24"] {
            assert!(matches!(
                decode_key(bogus, &["tenant", "id"], &[]),
                Err(StoreError::InvalidCursor)
            ));
        }
    }
}
