//! How a delivery record is laid out as an item, and the attempt log's cursors.

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::attributes::{Item, get_n, get_s, get_time, s};
use herald_core::delivery::{Attempt, DeadLetterMark, DeliveryRecord, DeliveryState};
use herald_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use herald_core::ports::StoreError;

/// The partition of one subscription's deliveries: tenant and subscription id.
pub(super) fn subscription_key(tenant: &TenantId, subscription: &SubscriptionId) -> String {
    format!("{tenant}#{subscription}")
}

/// A delivery's primary key: its subscription's partition (tenant from the caller, the
/// subscription from the id) and the id.
pub(super) fn delivery_key(tenant: &TenantId, id: &DeliveryId) -> Item {
    Item::from([
        (
            "subscription_key".to_owned(),
            s(subscription_key(tenant, &id.subscription())),
        ),
        ("id".to_owned(), s(id.as_str())),
    ])
}

pub(super) fn encode_cursor(record: &DeliveryRecord) -> String {
    URL_SAFE_NO_PAD.encode(record.id.as_str())
}

/// A listing cursor back into the delivery it stopped at; only one of this subscription's.
pub(super) fn decode_cursor(
    cursor: &str,
    subscription: &SubscriptionId,
) -> Result<DeliveryId, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(DeliveryId::parse)
        .filter(|id| &id.subscription() == subscription)
        .ok_or(StoreError::InvalidCursor)
}

pub(super) fn record_of(item: &Item) -> Result<DeliveryRecord, StoreError> {
    let corrupt =
        |what: &str| StoreError::Corrupt(format!("delivery attribute `{what}` is not valid"));
    let attempts = match item.get("attempts") {
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| {
                v.as_s()
                    .ok()
                    .and_then(|text| serde_json::from_str::<Attempt>(text).ok())
                    .ok_or_else(|| corrupt("attempts"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    };
    let optional_time = |name: &str| item.get(name).map(|_| get_time(item, name)).transpose();
    Ok(DeliveryRecord {
        id: DeliveryId::parse(get_s(item, "id")?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(get_s(item, "tenant")?).ok_or_else(|| corrupt("tenant"))?,
        subscription_id: SubscriptionId::parse(get_s(item, "subscription_id")?)
            .ok_or_else(|| corrupt("subscription_id"))?,
        event_id: EventId::parse(get_s(item, "event_id")?).ok_or_else(|| corrupt("event_id"))?,
        event_type: get_s(item, "event_type")?.to_owned(),
        state: state_of(get_s(item, "state")?).ok_or_else(|| corrupt("state"))?,
        attempts,
        created_at: get_time(item, "created_at")?,
        first_attempt_at: get_time(item, "first_attempt_at")?,
        next_attempt_at: optional_time("next_attempt_at")?,
        reason: item.get("reason").and_then(|v| v.as_s().ok()).cloned(),
        updated_at: get_time(item, "updated_at")?,
        expires_at: get_n(item, "expires_at")
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| corrupt("expires_at"))?,
        // Absent in records written before the mark: nothing owed.
        dead_letter: match item.get("dead_letter") {
            None => None,
            Some(v) => Some(
                v.as_s()
                    .ok()
                    .and_then(|raw| DeadLetterMark::parse(raw))
                    .ok_or_else(|| corrupt("dead_letter"))?,
            ),
        },
    })
}

/// The latest stored `created_at` (whole milliseconds) that is before `until`.
pub(super) fn last_millisecond_before(until: DateTime<Utc>) -> DateTime<Utc> {
    let floor = DateTime::from_timestamp_millis(until.timestamp_millis()).unwrap_or(until);
    if floor < until {
        floor
    } else {
        floor - chrono::Duration::milliseconds(1)
    }
}

fn state_of(raw: &str) -> Option<DeliveryState> {
    STATES.into_iter().find(|state| state.as_str() == raw)
}

/// Every state; the match below stops the build when a state is added and not placed here.
pub(super) const STATES: [DeliveryState; 6] = [
    DeliveryState::Pending,
    DeliveryState::Delivering,
    DeliveryState::Delivered,
    DeliveryState::Failed,
    DeliveryState::Skipped,
    DeliveryState::Superseded,
];

const _: fn(DeliveryState) = |state| match state {
    DeliveryState::Pending
    | DeliveryState::Delivering
    | DeliveryState::Delivered
    | DeliveryState::Failed
    | DeliveryState::Skipped
    | DeliveryState::Superseded => {}
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_until_is_the_last_whole_millisecond_before_it() {
        let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
        assert_eq!(last_millisecond_before(at(1_000)), at(999));
        let between = at(1_000) + chrono::Duration::microseconds(500);
        assert_eq!(last_millisecond_before(between), at(1_000));
    }

    #[test]
    fn every_state_reads_back() {
        for state in STATES {
            assert_eq!(state_of(state.as_str()), Some(state));
        }
        assert_eq!(state_of("lost"), None);
    }

    #[test]
    fn cursors_name_only_the_callers_subscription_and_refuse_garbage() {
        let tenant = TenantId::parse("acme").unwrap();
        let sub = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap();
        let other = SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000001").unwrap();
        let event = herald_core::ids::EventId::parse("e1").unwrap();
        let id = DeliveryId::derive(&tenant, &event, &sub, Utc::now());
        let cursor = URL_SAFE_NO_PAD.encode(id.as_str());
        let key = delivery_key(&tenant, &decode_cursor(&cursor, &sub).unwrap());
        assert_eq!(
            key["subscription_key"],
            s("acme#sub_01JD5Q8Z6X0000000000000000")
        );
        assert_eq!(key["id"], s(id.as_str()));
        let elsewhere = DeliveryId::derive(&tenant, &event, &other, Utc::now());
        for bad in [
            "".to_owned(),
            "garbage".to_owned(),
            URL_SAFE_NO_PAD.encode("msg_x"),
            URL_SAFE_NO_PAD.encode(elsewhere.as_str()),
        ] {
            assert!(matches!(
                decode_cursor(&bad, &sub),
                Err(StoreError::InvalidCursor)
            ));
        }
    }
}
