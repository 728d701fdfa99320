//! DynamoDB adapters. Keys and the attributes that conditions, filters and indexes read
//! are plain attributes (as `template.yaml` declares them); the rest of a domain value is
//! one JSON document attribute, `doc`, so that adding a field needs no migration.
//!
//! Every request is awaited boxed (`.send().boxed()`). An SDK request's future is 6–10 KB,
//! and held inline it makes every future that awaits it as large: deliver's record
//! futures, which a batch holds one a record, were 14,000 bytes for it. One more
//! allocation beside the request's own many is the price (docs/PERFORMANCE.md, "A
//! record's future").

mod attributes;
mod deliveries;
mod delivery_items;
mod erase;
mod events;
mod excerpts;
mod sessions;
mod signing_keys;
mod subscriptions;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use futures::FutureExt;

use attributes::Item;
use herald_core::ports::StoreError;

pub use deliveries::DynamoDeliveryLedger;
pub use events::DynamoEventLog;
pub use excerpts::ExcerptRetention;
pub use sessions::DynamoSessionStore;
pub use subscriptions::{DynamoSubscriptionStore, VaultUse};

/// An SDK failure other than a failed condition: throttling, 5xx, timeouts and dispatch
/// failures are all worth retrying. A misconfiguration (a missing table) lands here too
/// and shows in the logs through the source, which is kept, not stringified.
fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::unavailable(e)
}

/// The item as it stands now. Used when a failed condition did not return the old item
/// (`ReturnValuesOnConditionCheckFailure` is honoured by DynamoDB and moto alike, but an
/// emulator that ignores it must not turn a duplicate into an error).
/// Whether a call was refused by its condition (any operation's
/// `ConditionalCheckFailedException`).
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

async fn read_consistent(
    client: &Client,
    table: &str,
    key: Item,
) -> Result<Option<Item>, StoreError> {
    read_item(client, table, key, true).await
}

/// A GetItem, consistent or not (an eventually consistent read is billed half).
async fn read_item(
    client: &Client,
    table: &str,
    key: Item,
    consistent: bool,
) -> Result<Option<Item>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .set_key(Some(key))
        .consistent_read(consistent)
        .send()
        .boxed()
        .await
        .map_err(unavailable)?;
    Ok(output.item)
}
