//! The delivery ledger, keyed by (`subscription_key` = tenant and subscription id, `id`).
//! Delivery ids begin with their subscription and their event's acceptance time, so one
//! subscription's attempt log is a query of the table in key order, with no index to
//! write twice, and a delivery is found from the caller's tenant and its id. A claim and
//! the end of an attempt are one conditional `UpdateItem` each; so is the mark, made only
//! for a delivery whose retry window is spent, that its dead letter was sent. Attempts are
//! a list of JSON strings.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use std::sync::Arc;

use super::attributes::{Item, expired, get_n, n, s, time};
use super::delivery_items::{
    STATES, decode_cursor, delivery_key, encode_cursor, last_millisecond_before, record_of,
    subscription_key,
};
use super::excerpts::{ExcerptRetention, Excerpts, Kept, SEALED_FIELD};
use super::{erase, read_consistent, unavailable};
use herald_core::delivery::{Attempt, DeadLetterMark, DeliveryRecord, DeliveryState, DeliveryTask};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{
    AttemptResult, Claim, ClaimOutcome, DeliveryLedger, DeliveryQuery, Erased, Page, StoreError,
};

/// The most a listing returns at once, whatever the caller asks for.
const MAX_PAGE: usize = 1000;

#[derive(Clone, Debug)]
pub struct DynamoDeliveryLedger {
    client: Client,
    table: String,
    excerpts: Arc<Excerpts>,
}

impl DynamoDeliveryLedger {
    /// Excerpts kept as long as their records.
    pub fn new(client: Client, table: String) -> Self {
        Self::with_excerpts(client, table, ExcerptRetention::WithRecords)
    }

    /// Excerpts kept as `retention` says (`super::excerpts`).
    pub fn with_excerpts(client: Client, table: String, retention: ExcerptRetention) -> Self {
        let excerpts = Arc::new(Excerpts::new(client.clone(), table.clone(), retention));
        Self {
            client,
            table,
            excerpts,
        }
    }

    /// The record of `item`, its sealed excerpts opened while their day's key lasts.
    async fn read_record(
        &self,
        item: &Item,
        now: DateTime<Utc>,
    ) -> Result<DeliveryRecord, StoreError> {
        let mut record = record_of(item)?;
        let Some(AttributeValue::L(stored)) = item.get("attempts") else {
            return Ok(record);
        };
        for (attempt, text) in record.attempts.iter_mut().zip(stored) {
            let Ok(text) = text.as_s() else { continue };
            if !text.contains(SEALED_FIELD) {
                continue;
            }
            let sealed = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get(SEALED_FIELD)?.as_str().map(str::to_owned));
            if let Some(sealed) = sealed {
                attempt.response = self
                    .excerpts
                    .open(&record.id, attempt.number, &sealed, now)
                    .await?;
            }
        }
        Ok(record)
    }

    /// An attempt as stored: its excerpt kept as the excerpt retention says.
    async fn stored_attempt(
        &self,
        id: &DeliveryId,
        attempt: &Attempt,
    ) -> Result<String, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let kept = self
            .excerpts
            .keep(id, attempt.number, &attempt.response, attempt.at)
            .await?;
        let sealed = match kept {
            // The hot path (no excerpt retention): written as it is.
            Kept::Plain => return serde_json::to_string(attempt).map_err(corrupt),
            Kept::Dropped => None,
            Kept::Sealed(sealed) => Some(sealed),
        };
        let mut value = serde_json::to_value(attempt).map_err(corrupt)?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("response");
            if let Some(sealed) = sealed {
                fields.insert(SEALED_FIELD.into(), sealed.into());
            }
        }
        serde_json::to_string(&value).map_err(corrupt)
    }
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

/// Whether an UpdateItem was refused by its condition.
fn condition_failed(error: Option<&UpdateItemError>) -> bool {
    matches!(
        error,
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

/// Sends the write that ends an attempt (`DynamoDeliveryLedger::outcome`); `Conflict`
/// when its condition refused it.
async fn send_outcome(
    request: UpdateItemFluentBuilder,
    set: &[&str],
    remove: &[&str],
) -> Result<(), StoreError> {
    let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
    match request.update_expression(update).send().boxed().await {
        Ok(_) => Ok(()),
        Err(e) if condition_failed(e.as_service_error()) => Err(StoreError::Conflict),
        Err(e) => Err(unavailable(e)),
    }
}

/// What every claim sets (`state` is a reserved word, hence `#state`).
const CLAIM_SET: &str = "#state = :delivering, lease_token = :token, lease_until = :lease_until, \
                         updated_at = :now_text";
const IDENTITY: [&str; 4] = ["tenant", "subscription_id", "event_id", "event_type"];
/// What a record made with its first outcome sets beside it: its identity and times.
const FIRST_SET: &str = "tenant = :tenant, subscription_id = :subscription_id, \
                         event_id = :event_id, event_type = :event_type, \
                         created_at = :created_at, first_attempt_at = :first_attempt_at, \
                         expires_at = :expires_at";

impl DynamoDeliveryLedger {
    /// One conditional write. `restart` replaces an expired record instead of continuing
    /// it: DynamoDB cannot choose between keeping and resetting the attempts inside one
    /// update, so an expired record takes a second write conditioned on its expiry.
    async fn try_claim(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
        restart: bool,
    ) -> Result<ClaimAttempt, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(&task.tenant, &task.delivery_id)))
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":delivering", s("delivering"))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":lease_until", n(claim.lease_until.timestamp_millis()))
            .expression_attribute_values(":now_s", n(claim.now.timestamp()))
            .expression_attribute_values(":now_text", s(time(claim.now)))
            .expression_attribute_values(":expires_at", n(claim.expires_at.timestamp()))
            .expression_attribute_values(":tenant", s(task.tenant.as_str()))
            .expression_attribute_values(":subscription_id", s(task.subscription_id.as_str()))
            .expression_attribute_values(":created_at", s(time(task.delivery_id.accepted_at())))
            .expression_attribute_values(":event_id", s(task.event.id.as_str()))
            .expression_attribute_values(":event_type", s(task.event.event_type.as_str()))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let started = [
            ("attempts", ":empty"),
            ("created_at", ":created_at"),
            ("first_attempt_at", ":now_text"),
            ("expires_at", ":expires_at"),
        ];
        let identity = IDENTITY.iter().map(|name| (*name, format!(":{name}")));
        let fields = identity.chain(started.iter().map(|(a, v)| (*a, v.to_string())));
        request = if restart {
            let set: Vec<String> = fields.map(|(a, v)| format!("{a} = {v}")).collect();
            request
                .update_expression(format!(
                    "SET {CLAIM_SET}, {} REMOVE next_attempt_at, reason, dead_letter",
                    set.join(", ")
                ))
                .condition_expression("expires_at <= :now_s")
        } else {
            let set: Vec<String> = fields
                .map(|(a, v)| format!("{a} = if_not_exists({a}, {v})"))
                .collect();
            // The final states this claim does not take again.
            let mut closed = Vec::new();
            for state in STATES.iter().filter(|state| !claim.reopens.takes(**state)) {
                let name = format!(":{}", state.as_str());
                request = request.expression_attribute_values(&name, s(state.as_str()));
                closed.push(name);
            }
            let not_closed = if closed.is_empty() {
                String::new()
            } else {
                format!(" AND NOT (#state IN ({}))", closed.join(", "))
            };
            request
                .update_expression(format!("SET {CLAIM_SET}, {}", set.join(", ")))
                .condition_expression(format!(
                    "attribute_not_exists(id) OR (expires_at > :now_s \
                     AND (#state <> :delivering OR lease_until <= :now_ms){not_closed})"
                ))
                .expression_attribute_values(":now_ms", n(claim.now.timestamp_millis()))
        };
        match request.send().boxed().await {
            Ok(output) => {
                let item = output
                    .attributes()
                    .ok_or_else(|| StoreError::Corrupt("no attributes returned".into()))?;
                Ok(Taken(record_of(item)?))
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(old) => Ok(Refused(old.clone())),
                        None => self.current(task).await.map(Refused),
                    }
                }
                _ => Err(unavailable(e)),
            },
        }
    }

    /// What the end of an attempt writes, on `request`: the `SET` and `REMOVE` clauses,
    /// with their values bound. `fresh` starts the attempts with this one (a record made
    /// now) instead of adding it to those there.
    async fn outcome(
        &self,
        mut request: UpdateItemFluentBuilder,
        id: &DeliveryId,
        result: &AttemptResult,
        fresh: bool,
    ) -> Result<
        (
            UpdateItemFluentBuilder,
            Vec<&'static str>,
            Vec<&'static str>,
        ),
        StoreError,
    > {
        let mut set = vec!["#state = :state", "updated_at = :now_text"];
        let mut remove = vec!["lease_token", "lease_until"];
        request = request
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(result.state.as_str()))
            .expression_attribute_values(":now_text", s(time(result.now)));
        let attempts: Vec<AttributeValue> = match &result.attempt {
            Some(attempt) => vec![s(self.stored_attempt(id, attempt).await?)],
            None => Vec::new(),
        };
        if fresh {
            set.push("attempts = :attempts");
            request = request.expression_attribute_values(":attempts", AttributeValue::L(attempts));
        } else if !attempts.is_empty() {
            set.push("attempts = list_append(if_not_exists(attempts, :empty), :attempt)");
            request = request
                .expression_attribute_values(":attempt", AttributeValue::L(attempts))
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
        if result.dead_letter_owed {
            set.push("dead_letter = :dead_letter");
            request = request
                .expression_attribute_values(":dead_letter", s(DeadLetterMark::Owed.as_str()));
        } else {
            remove.push("dead_letter");
        }
        Ok((request, set, remove))
    }

    /// The record that refused a claim, read when the refusal did not carry it.
    async fn current(&self, task: &DeliveryTask) -> Result<Item, StoreError> {
        let key = delivery_key(&task.tenant, &task.delivery_id);
        read_consistent(&self.client, &self.table, key)
            .await?
            // Deleted in between: another worker's race, lost like any other.
            .ok_or(StoreError::Conflict)
    }
}

impl DeliveryLedger for DynamoDeliveryLedger {
    async fn claim(&self, task: &DeliveryTask, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        match self.try_claim(task, claim, false).await? {
            Taken(record) => Ok(ClaimOutcome::Claimed(record)),
            // TTL deletion lags: a record past its expiry is a new delivery, started afresh.
            Refused(old) if expired(&old, claim.now) => {
                match self.try_claim(task, claim, true).await? {
                    Taken(record) => Ok(ClaimOutcome::Claimed(record)),
                    Refused(old) => outcome_of_refusal(&old, claim.now),
                }
            }
            Refused(old) => outcome_of_refusal(&old, claim.now),
        }
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        token: &str,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(tenant, id)))
            .condition_expression("lease_token = :token")
            .expression_attribute_values(":token", s(token));
        let (request, set, remove) = self.outcome(request, id, result, false).await?;
        send_outcome(request, &set, &remove).await
    }

    async fn record_first(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(&task.tenant, &task.delivery_id)))
            // No record, or one past its expiry that TTL has not deleted yet: replaced.
            .condition_expression("attribute_not_exists(id) OR expires_at <= :now_s")
            .expression_attribute_values(":now_s", n(claim.now.timestamp()))
            .expression_attribute_values(":tenant", s(task.tenant.as_str()))
            .expression_attribute_values(":subscription_id", s(task.subscription_id.as_str()))
            .expression_attribute_values(":event_id", s(task.event.id.as_str()))
            .expression_attribute_values(":event_type", s(task.event.event_type.as_str()))
            .expression_attribute_values(":created_at", s(time(task.delivery_id.accepted_at())))
            .expression_attribute_values(":first_attempt_at", s(time(claim.now)))
            .expression_attribute_values(":expires_at", n(claim.expires_at.timestamp()));
        let (with_outcome, mut set, remove) = self
            .outcome(request, &task.delivery_id, result, true)
            .await?;
        set.push(FIRST_SET);
        send_outcome(with_outcome, &set, &remove).await
    }

    async fn dead_lettered(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(delivery_key(tenant, id)))
            .update_expression("SET dead_letter = :sent")
            .condition_expression(
                "dead_letter = :owed AND tenant = :tenant AND expires_at > :now_s",
            )
            .expression_attribute_values(":sent", s(DeadLetterMark::Sent.as_str()))
            .expression_attribute_values(":owed", s(DeadLetterMark::Owed.as_str()))
            .expression_attribute_values(":tenant", s(tenant.as_str()))
            .expression_attribute_values(":now_s", n(now.timestamp()));
        match request.send().boxed().await {
            Ok(_) => Ok(()),
            // Nothing owed: sent already, never owed, gone, expired, or another tenant's.
            Err(e) if condition_failed(e.as_service_error()) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn take_ticket(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        second: i64,
    ) -> Result<u64, StoreError> {
        // One counter per subscription and second, beside its deliveries: `rate#…` sorts
        // after every `msg_` id, so no listing of the attempt log meets it, and an erasure
        // of the subscription's history takes it too. Kept five minutes.
        let key = Item::from([
            (
                "subscription_key".to_owned(),
                s(subscription_key(tenant, subscription)),
            ),
            ("id".to_owned(), s(format!("rate#{second}"))),
        ]);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("ADD taken :one SET expires_at = :expires_at")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires_at", n(second + 300))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        output
            .attributes()
            .and_then(|item| get_n(item, "taken"))
            .and_then(|taken| u64::try_from(taken).ok())
            .ok_or_else(|| StoreError::Corrupt("a rate counter without its count".into()))
    }

    async fn spend(
        &self,
        tenant: &TenantId,
        budget: &str,
        window: i64,
        amount: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let Some(room) = limit.checked_sub(amount) else {
            return Ok(false);
        };
        // The tenant's budgets are partitions of their own beside its subscriptions'
        // (`<tenant>#<budget>`: no subscription id has that form), so a tenant's erasure
        // takes them too.
        let key = Item::from([
            (
                "subscription_key".to_owned(),
                s(format!("{tenant}#{budget}")),
            ),
            ("id".to_owned(), s(format!("rate#{window}"))),
        ]);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("ADD taken :amount SET expires_at = :expires_at")
            .condition_expression("attribute_not_exists(taken) OR taken <= :room")
            .expression_attribute_values(":amount", n(amount))
            .expression_attribute_values(":room", n(room))
            .expression_attribute_values(":expires_at", n(Utc::now().timestamp() + 7200))
            .send()
            .boxed()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(e.as_service_error()) => Ok(false),
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
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut filter = if query.state.is_some() {
            "expires_at > :now AND #state = :state".to_owned()
        } else {
            "expires_at > :now".to_owned()
        };
        // A number names the leading digits of a delivery's digest: the read filters on
        // them, and the exact number is checked below (its last three bits lie past them).
        let number_digits = match query.number {
            Some(number) => match DeliveryId::digest_digits_of_number(number) {
                Some(digits) => Some(digits),
                // A number no delivery can have.
                None => {
                    return Ok(Page {
                        items: Vec::new(),
                        next: None,
                    });
                }
            },
            None => None,
        };
        if number_digits.is_some() {
            filter.push_str(" AND contains(id, :digits)");
        }
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .scan_index_forward(query.oldest_first)
            .filter_expression(filter)
            .expression_attribute_values(":key", s(subscription_key(tenant, subscription)))
            .expression_attribute_values(":now", n(now.timestamp()));
        if let Some(state) = query.state {
            request = request
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":state", s(state.as_str()));
        }
        if let Some(digits) = &number_digits {
            request = request.expression_attribute_values(":digits", s(digits));
        }
        // Ids sort by acceptance time in whole milliseconds, so "since" is the least id of
        // its millisecond and "before `until`" the greatest id of the last millisecond
        // before it. Without either end, the subscription's own id range.
        let low = DeliveryId::bound(subscription, query.since, false);
        let before = query.until.map(last_millisecond_before);
        let high = DeliveryId::bound(subscription, before, true);
        if low > high {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        request = request
            .expression_attribute_values(":low", s(&low))
            .expression_attribute_values(":high", s(&high));
        let key_condition = "subscription_key = :key AND id BETWEEN :low AND :high";
        if let Some(cursor) = &query.cursor {
            // DynamoDB refuses a start key outside the key condition's range, so a cursor
            // outside it (the range moved since it was given) is taken as where it points:
            // before the range in the direction of travel, the whole range is still to
            // come; past it, nothing is.
            let after = decode_cursor(cursor, subscription)?;
            let (before_range, past_range) = if query.oldest_first {
                (
                    after.as_str() < low.as_str(),
                    after.as_str() >= high.as_str(),
                )
            } else {
                (
                    after.as_str() > high.as_str(),
                    after.as_str() <= low.as_str(),
                )
            };
            if past_range {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            if !before_range {
                request = request.set_exclusive_start_key(Some(delivery_key(tenant, &after)));
            }
        }
        let request = request.key_condition_expression(key_condition);
        // Filters apply after the read: keep reading until the page is full or the range ends.
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        let more = loop {
            let mut page = request.clone().limit(limit as i32);
            if let Some(key) = start.take() {
                page = page.set_exclusive_start_key(Some(key));
            }
            let output = page.send().boxed().await.map_err(unavailable)?;
            for item in output.items() {
                let record = self.read_record(item, now).await?;
                if query
                    .number
                    .is_none_or(|n| herald_core::webhook::render::numeric_id(&record.id) == n)
                {
                    items.push(record);
                }
            }
            match output.last_evaluated_key() {
                Some(last) if items.len() < limit => start = Some(last.clone()),
                Some(_) => break true,
                None => break items.len() > limit,
            }
        };
        items.truncate(limit);
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
            .set_key(Some(delivery_key(tenant, id)))
            .consistent_read(true)
            .send()
            .boxed()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let record = self.read_record(item, now).await?;
        Ok((&record.tenant == tenant && record.expires_at > now).then_some(record))
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        let names = ["subscription_key", "id"];
        let limit = limit.clamp(1, 1000) as i32;
        let output = match subscription {
            // One subscription's deliveries are its partition.
            Some(subscription) => {
                let partition = subscription_key(tenant, subscription);
                let mut request = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("subscription_key = :key")
                    .projection_expression("subscription_key, id")
                    .expression_attribute_values(":key", s(&partition))
                    .limit(limit);
                if let Some(cursor) = cursor {
                    let start =
                        erase::decode_key(cursor, &names, &[("subscription_key", &partition)])?;
                    request = request.set_exclusive_start_key(Some(start));
                }
                let output = request.send().boxed().await.map_err(unavailable)?;
                (output.items, output.last_evaluated_key)
            }
            // Every subscription the tenant has or had, deleted ones too: a Scan for the
            // partitions that start with the tenant (tenant ids cannot hold `#`).
            None => {
                let mut request = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .projection_expression("subscription_key, id")
                    .filter_expression("begins_with(subscription_key, :prefix)")
                    .expression_attribute_values(":prefix", s(format!("{tenant}#")))
                    .limit(limit);
                if let Some(cursor) = cursor {
                    request = request.set_exclusive_start_key(Some(erase::decode_key(
                        cursor,
                        &names,
                        &[],
                    )?));
                }
                let output = request.send().boxed().await.map_err(unavailable)?;
                (output.items, output.last_evaluated_key)
            }
        };
        let (items, last) = output;
        let items = items.unwrap_or_default();
        let erased =
            erase::delete_keys(&self.client, &self.table, &items, &names, last.as_ref()).await?;
        // Every item goes, but only delivery records count as deliveries: the tenant's
        // budget counters and rate tickets share its partitions' prefix.
        let records = items
            .iter()
            .filter(|item| {
                item.get("id")
                    .and_then(|id| id.as_s().ok())
                    .is_some_and(|id| DeliveryId::parse(id).is_some())
            })
            .count() as u64;
        Ok(Erased {
            count: records,
            ..erased
        })
    }
}
