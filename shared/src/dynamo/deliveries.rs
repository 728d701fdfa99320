//! The delivery ledger keyed by delivery `id`. A claim and the end of an attempt are one
//! conditional `UpdateItem` each; the GSI `by-subscription` (`subscription_key`,
//! `created_at`) serves the attempt log. Attempts are a list of JSON strings.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{Item, get_n, get_s, n, s, time, unavailable};
use crate::delivery::{Attempt, DeliveryRecord, DeliveryState, DeliveryTask};
use crate::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use crate::ports::{
    AttemptResult, Claim, ClaimOutcome, DeliveryLedger, DeliveryQuery, Page, StoreError,
};

/// The index of deliveries by subscription and creation time.
pub const BY_SUBSCRIPTION: &str = "by-subscription";

fn encode_cursor(record: &DeliveryRecord) -> String {
    let key = serde_json::json!([record.id.as_str(), time(record.created_at)]);
    URL_SAFE_NO_PAD.encode(key.to_string())
}

/// A listing cursor back into the index's key; only keys of this tenant's subscription.
fn decode_cursor(
    cursor: &str,
    tenant: &TenantId,
    subscription: &SubscriptionId,
) -> Result<Item, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::InvalidCursor)?;
    let (id, created_at): (String, String) =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    if DeliveryId::parse(&id).is_none() || DateTime::parse_from_rfc3339(&created_at).is_err() {
        return Err(StoreError::InvalidCursor);
    }
    Ok(Item::from([
        ("id".to_owned(), s(id)),
        (
            "subscription_key".to_owned(),
            s(format!("{tenant}#{subscription}")),
        ),
        ("created_at".to_owned(), s(created_at)),
    ]))
}

#[derive(Clone, Debug)]
pub struct DynamoDeliveryLedger {
    client: Client,
    table: String,
}

impl DynamoDeliveryLedger {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

fn parse_time(item: &Item, name: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(get_s(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
}

fn record_of(item: &Item) -> Result<DeliveryRecord, StoreError> {
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
    let optional_time = |name: &str| item.get(name).map(|_| parse_time(item, name)).transpose();
    Ok(DeliveryRecord {
        id: DeliveryId::parse(get_s(item, "id")?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(get_s(item, "tenant")?).ok_or_else(|| corrupt("tenant"))?,
        subscription_id: SubscriptionId::parse(get_s(item, "subscription_id")?)
            .ok_or_else(|| corrupt("subscription_id"))?,
        event_id: EventId::parse(get_s(item, "event_id")?).ok_or_else(|| corrupt("event_id"))?,
        event_type: get_s(item, "event_type")?.to_owned(),
        state: DeliveryState::parse(get_s(item, "state")?).ok_or_else(|| corrupt("state"))?,
        attempts,
        created_at: parse_time(item, "created_at")?,
        first_attempt_at: parse_time(item, "first_attempt_at")?,
        next_attempt_at: optional_time("next_attempt_at")?,
        reason: item.get("reason").and_then(|v| v.as_s().ok()).cloned(),
        updated_at: parse_time(item, "updated_at")?,
        expires_at: get_n(item, "expires_at")
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
            .ok_or_else(|| corrupt("expires_at"))?,
    })
}

/// What a failed claim condition found.
fn outcome_of_refusal(old: &Item, now: DateTime<Utc>) -> Result<ClaimOutcome, StoreError> {
    let record = record_of(old)?;
    if record.state == DeliveryState::Delivering {
        let until = get_n(old, "lease_until")
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(now);
        if until > now {
            return Ok(ClaimOutcome::Leased { until });
        }
    }
    Ok(ClaimOutcome::Finished(record))
}

enum ClaimAttempt {
    Taken(DeliveryRecord),
    Refused(Item),
}
use ClaimAttempt::{Refused, Taken};

impl DynamoDeliveryLedger {
    /// One conditional write. `restart` replaces an expired record instead of continuing it.
    async fn try_claim(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
        restart: bool,
    ) -> Result<ClaimAttempt, StoreError> {
        let fields = "SET #state = :delivering, lease_token = :token, lease_until = :lease_until, \
                      updated_at = :now_text, tenant = :tenant, subscription_id = :subscription_id, \
                      subscription_key = :subscription_key, event_id = :event_id, event_type = :event_type";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(task.delivery_id.as_str()))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":delivering", s("delivering"))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":lease_until", n(claim.lease_until.timestamp_millis()))
            .expression_attribute_values(":now_s", n(claim.now.timestamp()))
            .expression_attribute_values(":now_text", s(time(claim.now)))
            .expression_attribute_values(":expires_at", n(claim.expires_at.timestamp()))
            .expression_attribute_values(":tenant", s(task.tenant.as_str()))
            .expression_attribute_values(":subscription_id", s(task.subscription_id.as_str()))
            .expression_attribute_values(
                ":subscription_key",
                s(format!("{}#{}", task.tenant, task.subscription_id)),
            )
            .expression_attribute_values(":event_id", s(task.event.id.as_str()))
            .expression_attribute_values(":event_type", s(task.event.event_type.as_str()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        request = if restart {
            request
                .update_expression(format!(
                    "{fields}, attempts = :empty, created_at = :now_text, first_attempt_at = :now_text, \
                     expires_at = :expires_at REMOVE next_attempt_at, reason"
                ))
                .condition_expression("expires_at < :now_s")
        } else {
            request
                .update_expression(format!(
                    "{fields}, attempts = if_not_exists(attempts, :empty), \
                     created_at = if_not_exists(created_at, :now_text), \
                     first_attempt_at = if_not_exists(first_attempt_at, :now_text), \
                     expires_at = if_not_exists(expires_at, :expires_at)"
                ))
                .condition_expression(
                    "attribute_not_exists(id) OR (expires_at >= :now_s \
                     AND (#state <> :delivering OR lease_until < :now_ms) \
                     AND (:forced = :yes OR (#state <> :delivered AND #state <> :failed AND #state <> :skipped)))",
                )
                .expression_attribute_values(":delivered", s("delivered"))
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":skipped", s("skipped"))
                .expression_attribute_values(":now_ms", n(claim.now.timestamp_millis()))
                .expression_attribute_values(":forced", AttributeValue::Bool(task.forced))
                .expression_attribute_values(":yes", AttributeValue::Bool(true))
        };
        match request.send().await {
            Ok(output) => {
                let item = output
                    .attributes()
                    .ok_or_else(|| StoreError::Corrupt("no attributes returned".into()))?;
                Ok(Taken(record_of(item)?))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => failed
                    .item()
                    .cloned()
                    .map(Refused)
                    .ok_or(StoreError::Conflict),
                _ => Err(unavailable(e)),
            },
        }
    }
}

impl DeliveryLedger for DynamoDeliveryLedger {
    async fn claim(&self, task: &DeliveryTask, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        match self.try_claim(task, claim, false).await? {
            Refused(old)
                if get_n(&old, "expires_at").is_some_and(|at| at < claim.now.timestamp()) =>
            {
                // TTL deletion lags: a record past its expiry is a new delivery, started afresh.
                match self.try_claim(task, claim, true).await? {
                    Refused(old) => outcome_of_refusal(&old, claim.now),
                    Taken(record) => Ok(ClaimOutcome::Claimed(record)),
                }
            }
            Refused(old) => outcome_of_refusal(&old, claim.now),
            Taken(record) => Ok(ClaimOutcome::Claimed(record)),
        }
    }

    async fn finish(
        &self,
        id: &DeliveryId,
        token: &str,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        let mut set = vec!["#state = :state", "updated_at = :now_text"];
        let mut remove = vec!["lease_token", "lease_until"];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id.as_str()))
            .condition_expression("lease_token = :token")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":state", s(result.state.as_str()))
            .expression_attribute_values(":now_text", s(time(result.now)));
        if let Some(attempt) = &result.attempt {
            let text =
                serde_json::to_string(attempt).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            set.push("attempts = list_append(if_not_exists(attempts, :empty), :attempt)");
            request = request
                .expression_attribute_values(":attempt", AttributeValue::L(vec![s(text)]))
                .expression_attribute_values(":empty", AttributeValue::L(Vec::new()));
        }
        match result.next_attempt_at {
            Some(at) => {
                set.push("next_attempt_at = :next");
                request = request.expression_attribute_values(":next", s(time(at)));
            }
            None => remove.push("next_attempt_at"),
        }
        match &result.reason {
            Some(reason) => {
                set.push("reason = :reason");
                request = request.expression_attribute_values(":reason", s(reason));
            }
            None => remove.push("reason"),
        }
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        match request.update_expression(update).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(StoreError::Conflict)
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        query: &DeliveryQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let limit = query.limit.clamp(1, 1000);
        let mut key_condition = "subscription_key = :key".to_owned();
        let filter = if query.state.is_some() {
            "expires_at > :now AND #state = :state"
        } else {
            "expires_at > :now"
        };
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_SUBSCRIPTION)
            .scan_index_forward(false)
            .filter_expression(filter)
            .expression_attribute_values(":key", s(format!("{tenant}#{subscription}")))
            .expression_attribute_values(":now", n(now.timestamp()));
        if let Some(state) = query.state {
            request = request
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":state", s(state.as_str()));
        }
        if let Some(since) = query.since {
            request = request.expression_attribute_values(":since", s(time(since)));
        }
        if let Some(until) = query.until {
            request = request.expression_attribute_values(":until", s(time(until)));
        }
        match (query.since, query.until) {
            (Some(_), Some(_)) => {
                key_condition.push_str(" AND created_at BETWEEN :since AND :until")
            }
            (Some(_), None) => key_condition.push_str(" AND created_at >= :since"),
            (None, Some(_)) => key_condition.push_str(" AND created_at < :until"),
            (None, None) => {}
        }
        if let Some(cursor) = &query.cursor {
            request =
                request.set_exclusive_start_key(Some(decode_cursor(cursor, tenant, subscription)?));
        }
        let request = request.key_condition_expression(key_condition);
        // Filters apply after the read: keep reading until the page is full or the index ends.
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        let more = loop {
            let mut page = request.clone().limit(limit as i32);
            if let Some(key) = start.take() {
                page = page.set_exclusive_start_key(Some(key));
            }
            let output = page.send().await.map_err(unavailable)?;
            for item in output.items() {
                items.push(record_of(item)?);
            }
            match output.last_evaluated_key() {
                Some(last) if items.len() < limit => start = Some(last.clone()),
                Some(_) => break true,
                None => break items.len() > limit,
            }
        };
        items.truncate(limit);
        // BETWEEN includes `until`; the API promises created before it.
        if let Some(until) = query.until {
            items.retain(|r| r.created_at < until);
        }
        let next = if more {
            items.last().map(encode_cursor)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let record = record_of(item)?;
        Ok((&record.tenant == tenant && record.expires_at > now).then_some(record))
    }
}
