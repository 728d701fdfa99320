//! In-memory implementations of the ports, for handler tests. They keep the same
//! contracts as the DynamoDB and SQS adapters (tenant scoping, conditional claims, leases)
//! so a handler test means something.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use herald_core::delivery::{DeadLetterMark, DeliveryRecord, DeliveryState, DeliveryTask};
use herald_core::event::Event;
use herald_core::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use herald_core::ports::*;
use herald_core::subscription::{Subscription, SubscriptionStatus};
use herald_core::webhook::tenant_keys::TenantKeySet;

/// An active subscription of `tenant` to `url` for `patterns`, standard format, one fresh
/// secret: the fixture tests and the bench start from.
pub fn active_subscription(
    tenant: &str,
    id: SubscriptionId,
    url: herald_core::subscription::url::SubscriptionUrl,
    patterns: &[&str],
) -> Subscription {
    let now = Utc::now();
    Subscription {
        tenant: TenantId::parse(tenant).expect("a tenant id"),
        id,
        url,
        description: String::new(),
        event_types: patterns
            .iter()
            .map(|p| herald_core::event::pattern::EventTypePattern::parse(p).expect("a pattern"))
            .collect(),
        filter: None,
        format: herald_core::webhook::render::BodyFormat::Standard,
        selection: None,
        query: None,
        headers: Default::default(),
        signatures: Default::default(),
        supersede: false,
        retry: None,
        timeout: None,
        rate_limit: None,
        ordering: None,
        secrets: vec![herald_core::subscription::SigningSecret {
            secret: herald_core::webhook::sign::WebhookSecret::generate(&mut rand::rng()),
            expires_at: None,
        }],
        status: SubscriptionStatus::Active,
        disabled_reason: None,
        disabled_at: None,
        disabled_by: None,
        failing_since: None,
        slow_until: None,
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The task of delivering an `order.paid` event `order` (no data) to `tenant`'s
/// `subscription`, accepted now: the fixture the deliver tests hand over.
pub fn paid_order_task(tenant: &str, subscription: &str, order: &str) -> DeliveryTask {
    let event = Event {
        id: EventId::parse(order).expect("an event id"),
        event_type: herald_core::event::EventType::parse("order.paid").expect("an event type"),
        occurred_at: Utc::now(),
        data: Default::default(),
        subject: None,
    };
    DeliveryTask::new(
        &TenantId::parse(tenant).expect("a tenant id"),
        &SubscriptionId::parse(subscription).expect("a subscription id"),
        &event,
        Utc::now(),
    )
}

/// Reads `tenant`'s subscription `id` from `store`, lets `change` edit it and writes it
/// back under the version it was read at, as manage's updates do.
pub async fn edit_subscription(
    store: &impl SubscriptionStore,
    tenant: &TenantId,
    id: &SubscriptionId,
    change: impl FnOnce(&mut Subscription),
) {
    let mut subscription = store
        .get(tenant, id)
        .await
        .expect("reading the subscription")
        .expect("the subscription exists");
    let version = subscription.version;
    change(&mut subscription);
    store
        .update(&subscription, version)
        .await
        .expect("writing the subscription back");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A store's failure for a moment, while `failing` still counts one.
fn failed_by_the_test(failing: &Mutex<usize>) -> Result<(), StoreError> {
    let mut failing = lock(failing);
    if *failing > 0 {
        *failing -= 1;
        return Err(StoreError::unavailable(std::io::Error::other(
            "failed by the test",
        )));
    }
    Ok(())
}

#[derive(Default)]
pub struct InMemorySubscriptionStore {
    items: Mutex<BTreeMap<(TenantId, SubscriptionId), Subscription>>,
    gets: std::sync::atomic::AtomicUsize,
    signing_keys: Mutex<HashMap<TenantId, TenantKeySet>>,
}

impl InMemorySubscriptionStore {
    pub fn all(&self) -> Vec<Subscription> {
        lock(&self.items).values().cloned().collect()
    }
    /// How many times `get` was called: what a cache in front of the store saves.
    pub fn gets(&self) -> usize {
        self.gets.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl SubscriptionStore for InMemorySubscriptionStore {
    async fn signing_keys(&self, tenant: &TenantId) -> Result<Option<TenantKeySet>, StoreError> {
        Ok(lock(&self.signing_keys).get(tenant).cloned())
    }

    async fn put_signing_keys(
        &self,
        set: &TenantKeySet,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut sets = lock(&self.signing_keys);
        if sets.get(&set.tenant).map(|s| s.version) != expected {
            return Err(StoreError::Conflict);
        }
        sets.insert(set.tenant.clone(), set.clone());
        Ok(())
    }

    async fn delete_signing_keys(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        Ok(lock(&self.signing_keys).remove(tenant).is_some())
    }

    async fn create(&self, s: &Subscription) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        let key = (s.tenant.clone(), s.id.clone());
        if items.contains_key(&key) {
            return Err(StoreError::Conflict);
        }
        items.insert(key, s.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(lock(&self.items)
            .get(&(tenant.clone(), id.clone()))
            .cloned())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        let items = lock(&self.items);
        let mut mine: Vec<_> = items
            .values()
            .filter(|s| &s.tenant == tenant)
            .cloned()
            .collect();
        mine.sort_by(|a, b| b.id.cmp(&a.id));
        if let Some(after) = cursor {
            let after = SubscriptionId::parse(after).ok_or(StoreError::InvalidCursor)?;
            mine.retain(|s| s.id < after);
        }
        let next = (mine.len() > limit).then(|| mine[limit - 1].id.to_string());
        mine.truncate(limit);
        Ok(Page { items: mine, next })
    }

    async fn update(&self, s: &Subscription, expected_version: u64) -> Result<(), StoreError> {
        let mut items = lock(&self.items);
        match items.get_mut(&(s.tenant.clone(), s.id.clone())) {
            Some(stored) if stored.version == expected_version => {
                *stored = s.clone();
                Ok(())
            }
            _ => Err(StoreError::Conflict),
        }
    }

    async fn active(&self, tenant: &TenantId) -> Result<Vec<Subscription>, StoreError> {
        Ok(lock(&self.items)
            .values()
            .filter(|s| &s.tenant == tenant && s.status == SubscriptionStatus::Active)
            .cloned()
            .collect())
    }

    async fn delete(&self, tenant: &TenantId, id: &SubscriptionId) -> Result<bool, StoreError> {
        Ok(lock(&self.items)
            .remove(&(tenant.clone(), id.clone()))
            .is_some())
    }

    async fn disable(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        reason: &str,
        at: DateTime<Utc>,
        by: &DeliveryId,
    ) -> Result<Disabling, StoreError> {
        let mut items = lock(&self.items);
        let Some(s) = items.get_mut(&(tenant.clone(), id.clone())) else {
            return Ok(Disabling::Missing);
        };
        if !s.disable_by(reason, at, Some(by)) {
            return Ok(Disabling::AlreadyDisabled(s.clone()));
        }
        s.changed(at);
        Ok(Disabling::Disabled(s.clone()))
    }

    async fn set_failing_since(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        if let Some(s) = lock(&self.items).get_mut(&(tenant.clone(), id.clone())) {
            s.record_health(since);
        }
        Ok(())
    }

    async fn mark_slow(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if let Some(s) = lock(&self.items).get_mut(&(tenant.clone(), id.clone())) {
            s.mark_slow(until);
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
struct Accepted {
    fingerprint: String,
    deliveries: u32,
    accepted_at: DateTime<Utc>,
}

/// One step of an in-memory erasure: removes up to `limit` of the keys `matching` picks,
/// and answers a cursor while any are left (the removed are gone, so the next step simply
/// starts again from the beginning).
fn erase_step<K: Clone + Eq + std::hash::Hash, V>(
    items: &mut HashMap<K, V>,
    limit: usize,
    matching: impl Fn(&K, &V) -> bool,
) -> Erased {
    let keys: Vec<K> = items
        .iter()
        .filter(|(k, v)| matching(k, v))
        .map(|(k, _)| k.clone())
        .collect();
    let taken = keys.len().min(limit.max(1));
    for key in &keys[..taken] {
        items.remove(key);
    }
    Erased {
        count: taken as u64,
        next: (keys.len() > taken).then(|| "more".to_owned()),
    }
}

#[derive(Default)]
pub struct InMemoryEventLog {
    items: Mutex<HashMap<(TenantId, EventId), (Accepted, Event)>>,
    latest: Mutex<HashMap<String, String>>,
    loads: std::sync::atomic::AtomicUsize,
    eventual_loads: std::sync::atomic::AtomicUsize,
    lagging: std::sync::atomic::AtomicBool,
}

fn subject_key(tenant: &TenantId, subscription: &SubscriptionId, event: &Event) -> Option<String> {
    let subject = event.subject.as_ref()?;
    Some(format!(
        "{tenant}#{subscription}#{}:{}#{}",
        subject.kind.len(),
        subject.kind,
        subject.id
    ))
}

impl InMemoryEventLog {
    /// How many times an event was read back consistently (`EventLog::load`).
    pub fn loads(&self) -> usize {
        self.loads.load(std::sync::atomic::Ordering::SeqCst)
    }
    /// How many times an event was read back without waiting for the latest writes
    /// (`EventLog::load_eventually`).
    pub fn eventual_loads(&self) -> usize {
        self.eventual_loads
            .load(std::sync::atomic::Ordering::SeqCst)
    }
    /// From now on, reads that do not wait for the latest writes see none of them, as a
    /// DynamoDB replica that has not yet caught up would: every event is unknown to them.
    pub fn lag(&self) {
        self.lagging
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// The event kept under (tenant, id), however it is read.
    fn kept(&self, tenant: &TenantId, id: &EventId) -> Option<Event> {
        lock(&self.items)
            .get(&(tenant.clone(), id.clone()))
            .map(|(_, e)| e.clone())
    }
    pub fn len(&self) -> usize {
        lock(&self.items).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventLog for InMemoryEventLog {
    async fn accept(
        &self,
        tenant: &TenantId,
        event: &Event,
        fingerprint: &str,
        deliveries: u32,
        now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        let mut items = lock(&self.items);
        let key = (tenant.clone(), event.id.clone());
        if let Some((seen, _)) = items.get(&key) {
            return Ok(Acceptance::Seen {
                fingerprint: seen.fingerprint.clone(),
                deliveries: Some(seen.deliveries),
                accepted_at: seen.accepted_at,
            });
        }
        items.insert(
            key,
            (
                Accepted {
                    fingerprint: fingerprint.to_owned(),
                    deliveries,
                    // Kept to the millisecond, as the DynamoDB store keeps it.
                    accepted_at: herald_core::flow::publish::to_millis(now),
                },
                event.clone(),
            ),
        );
        Ok(Acceptance::New)
    }

    async fn acceptance(
        &self,
        tenant: &TenantId,
        id: &EventId,
        _now: DateTime<Utc>,
    ) -> Result<Acceptance, StoreError> {
        Ok(match lock(&self.items).get(&(tenant.clone(), id.clone())) {
            Some((seen, _)) => Acceptance::Seen {
                fingerprint: seen.fingerprint.clone(),
                deliveries: Some(seen.deliveries),
                accepted_at: seen.accepted_at,
            },
            None => Acceptance::New,
        })
    }

    async fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        _now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.kept(tenant, id))
    }

    async fn load_eventually(
        &self,
        tenant: &TenantId,
        id: &EventId,
        _now: DateTime<Utc>,
    ) -> Result<Option<Event>, StoreError> {
        self.eventual_loads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.lagging.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        Ok(self.kept(tenant, id))
    }

    async fn note_latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        _now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let Some(key) = subject_key(tenant, subscription, event) else {
            return Ok(None);
        };
        let mut latest = lock(&self.latest);
        let order = event.order_key();
        match latest.get(&key) {
            Some(known) if *known >= order => Ok(Some(known.clone())),
            _ => {
                latest.insert(key, order);
                Ok(None)
            }
        }
    }

    async fn latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        _now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        Ok(subject_key(tenant, subscription, event)
            .and_then(|key| lock(&self.latest).get(&key).cloned()))
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        _cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        let prefix = match subscription {
            Some(subscription) => format!("{tenant}#{subscription}#"),
            None => format!("{tenant}#"),
        };
        let latest = erase_step(&mut lock(&self.latest), limit, |k, _| {
            k.starts_with(&prefix)
        });
        if latest.next.is_some() || subscription.is_some() {
            return Ok(latest);
        }
        let events = erase_step(
            &mut lock(&self.items),
            limit.saturating_sub(latest.count as usize),
            |(t, _), _| t == tenant,
        );
        Ok(Erased {
            count: latest.count + events.count,
            next: events.next,
        })
    }
}

#[derive(Clone, Debug)]
struct Held {
    record: DeliveryRecord,
    lease: Option<(String, DateTime<Utc>)>,
}

#[derive(Default)]
pub struct InMemoryDeliveryLedger {
    items: Mutex<HashMap<DeliveryId, Held>>,
    /// Rate-limit tickets handed out, by subscription and second.
    tickets: Mutex<HashMap<(TenantId, SubscriptionId, i64), u64>>,
    /// Tenants' budgets spent, by name and window.
    spent: Mutex<HashMap<(TenantId, String, i64), u64>>,
    /// How many upcoming `dead_lettered` calls fail.
    pub fail_next_dead_lettered: Mutex<usize>,
    /// How many upcoming outcome writes (`finish`, `record_first`) fail, as DynamoDB's
    /// can for a moment.
    pub fail_next_outcomes: Mutex<usize>,
    /// How many claims (lease writes) were asked for.
    claims: std::sync::atomic::AtomicUsize,
    /// How many records were read by id (`get`).
    reads: std::sync::atomic::AtomicUsize,
}

impl InMemoryDeliveryLedger {
    /// How many claims (lease writes) were asked for.
    pub fn claims(&self) -> usize {
        self.claims.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many records were read by id.
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn record(&self, id: &DeliveryId) -> Option<DeliveryRecord> {
        lock(&self.items).get(id).map(|h| h.record.clone())
    }
    pub fn records(&self) -> Vec<DeliveryRecord> {
        lock(&self.items)
            .values()
            .map(|h| h.record.clone())
            .collect()
    }
}

impl DeliveryLedger for InMemoryDeliveryLedger {
    async fn claim(&self, task: &DeliveryTask, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        self.claims
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut items = lock(&self.items);
        let fresh = || Held {
            record: DeliveryRecord::pending(task, claim.now, claim.expires_at),
            lease: None,
        };
        let held = items.entry(task.delivery_id.clone()).or_insert_with(fresh);
        if held.record.expires_at <= claim.now {
            *held = fresh();
        }
        let leased = held.record.state == DeliveryState::Delivering
            && held
                .lease
                .as_ref()
                .is_some_and(|(_, until)| *until > claim.now);
        if leased {
            let until = held.lease.as_ref().map(|(_, u)| *u).unwrap_or(claim.now);
            return Ok(ClaimOutcome::Leased { until });
        }
        if !claim.reopens.takes(held.record.state) {
            return Ok(ClaimOutcome::Finished(held.record.clone()));
        }
        held.record.state = DeliveryState::Delivering;
        held.record.updated_at = claim.now;
        held.lease = Some((claim.token.clone(), claim.lease_until));
        Ok(ClaimOutcome::Claimed(held.record.clone()))
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        token: &str,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        failed_by_the_test(&self.fail_next_outcomes)?;
        let mut items = lock(&self.items);
        let held = items
            .get_mut(id)
            .filter(|held| &held.record.tenant == tenant)
            .ok_or(StoreError::Conflict)?;
        if held.lease.as_ref().map(|(t, _)| t.as_str()) != Some(token) {
            return Err(StoreError::Conflict);
        }
        if let Some(attempt) = &result.attempt {
            held.record.attempts.push(attempt.clone());
        }
        held.record.state = result.state;
        held.record.next_attempt_at = result.next_attempt_at;
        held.record.reason = result.reason.clone();
        held.record.dead_letter = result.dead_letter_owed.then_some(DeadLetterMark::Owed);
        held.record.updated_at = result.now;
        held.lease = None;
        Ok(())
    }

    async fn record_first(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
        result: &AttemptResult,
    ) -> Result<(), StoreError> {
        failed_by_the_test(&self.fail_next_outcomes)?;
        let mut items = lock(&self.items);
        if items
            .get(&task.delivery_id)
            .is_some_and(|held| held.record.expires_at > claim.now)
        {
            return Err(StoreError::Conflict);
        }
        let record = DeliveryRecord {
            state: result.state,
            attempts: result.attempt.iter().cloned().collect(),
            next_attempt_at: result.next_attempt_at,
            reason: result.reason.clone(),
            updated_at: result.now,
            dead_letter: result.dead_letter_owed.then_some(DeadLetterMark::Owed),
            ..DeliveryRecord::pending(task, claim.now, claim.expires_at)
        };
        items.insert(
            task.delivery_id.clone(),
            Held {
                record,
                lease: None,
            },
        );
        Ok(())
    }

    async fn dead_lettered(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        failed_by_the_test(&self.fail_next_dead_lettered)?;
        if let Some(held) = lock(&self.items).get_mut(id)
            && &held.record.tenant == tenant
            && held.record.expires_at > now
            && held.record.dead_letter == Some(DeadLetterMark::Owed)
        {
            held.record.dead_letter = Some(DeadLetterMark::Sent);
        }
        Ok(())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        query: &DeliveryQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let mut mine: Vec<DeliveryRecord> = lock(&self.items)
            .values()
            .map(|h| h.record.clone())
            .filter(|r| {
                &r.tenant == tenant && &r.subscription_id == subscription && r.expires_at > now
            })
            .filter(|r| query.state.is_none_or(|s| r.state == s))
            .filter(|r| {
                query
                    .number
                    .is_none_or(|n| herald_core::webhook::render::numeric_id(&r.id) == n)
            })
            .filter(|r| {
                query.since.is_none_or(|t| r.created_at >= t)
                    && query.until.is_none_or(|t| r.created_at < t)
            })
            .collect();
        // Newest first, or oldest first, as the table's key orders them (ids sort by
        // acceptance time).
        if query.oldest_first {
            mine.sort_by(|a, b| a.id.cmp(&b.id));
        } else {
            mine.sort_by(|a, b| b.id.cmp(&a.id));
        }
        // As DynamoDB goes on from a cursor's key, whether or not that delivery still
        // matches the query (its state may have changed since): a delivery id of this
        // subscription, the listing resumed past it.
        if let Some(after) = &query.cursor {
            let after = DeliveryId::parse(after)
                .filter(|id| &id.subscription() == subscription)
                .ok_or(StoreError::InvalidCursor)?;
            mine.retain(|r| {
                if query.oldest_first {
                    r.id > after
                } else {
                    r.id < after
                }
            });
        }
        let limit = query.limit.max(1);
        let next = (mine.len() > limit).then(|| mine[limit - 1].id.to_string());
        mine.truncate(limit);
        Ok(Page { items: mine, next })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(lock(&self.items)
            .get(id)
            .map(|h| h.record.clone())
            .filter(|r| &r.tenant == tenant && r.expires_at > now))
    }

    async fn spend(
        &self,
        tenant: &TenantId,
        budget: &str,
        window: i64,
        amount: u64,
        limit: u64,
    ) -> Result<bool, StoreError> {
        let mut spent = lock(&self.spent);
        let taken = spent
            .entry((tenant.clone(), budget.to_owned(), window))
            .or_default();
        if *taken + amount > limit {
            return Ok(false);
        }
        *taken += amount;
        Ok(true)
    }

    async fn take_ticket(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        second: i64,
    ) -> Result<u64, StoreError> {
        let mut tickets = lock(&self.tickets);
        let taken = tickets
            .entry((tenant.clone(), subscription.clone(), second))
            .or_default();
        *taken += 1;
        Ok(*taken)
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        _cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        Ok(erase_step(&mut lock(&self.items), limit, |_, held| {
            &held.record.tenant == tenant
                && subscription.is_none_or(|s| &held.record.subscription_id == s)
        }))
    }
}

/// Records what the handlers asked of the queue, and each batch call as it was made.
#[derive(Default)]
pub struct InMemoryDeliveryQueue {
    pub enqueued: Mutex<Vec<DeliveryTask>>,
    /// Every `retry_later` call with its entries, refused ones included.
    pub visibility_calls: Mutex<Vec<Vec<VisibilityChange>>>,
    /// Every `dead_letter` call with its entries, refused ones included.
    pub dead_letter_calls: Mutex<Vec<Vec<DeadLetter>>>,
    /// How many upcoming `enqueue` calls fail, to show nothing is half-done.
    pub fail_next: Mutex<usize>,
    /// How many upcoming visibility changes (entries, across calls) are refused.
    pub refuse_next_visibility_changes: Mutex<usize>,
    /// How many upcoming dead letters (entries, across calls) are refused.
    pub refuse_next_dead_letters: Mutex<usize>,
    delayed: Mutex<Vec<VisibilityChange>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
}

impl InMemoryDeliveryQueue {
    pub fn enqueued(&self) -> Vec<DeliveryTask> {
        lock(&self.enqueued).clone()
    }
    /// The visibility changes made (not those refused).
    pub fn delayed(&self) -> Vec<VisibilityChange> {
        lock(&self.delayed).clone()
    }
    /// The dead letters sent (not those refused).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.dead_letters).clone()
    }
    pub fn visibility_calls(&self) -> Vec<Vec<VisibilityChange>> {
        lock(&self.visibility_calls).clone()
    }
    pub fn dead_letter_calls(&self) -> Vec<Vec<DeadLetter>> {
        lock(&self.dead_letter_calls).clone()
    }
}

/// Takes each entry into `into` unless `refuse` still counts refusals.
fn take_entries<T: Clone>(
    entries: &[T],
    refuse: &Mutex<usize>,
    into: &Mutex<Vec<T>>,
) -> Vec<Result<(), QueueError>> {
    let mut refuse = lock(refuse);
    entries
        .iter()
        .map(|entry| {
            if *refuse > 0 {
                *refuse -= 1;
                return Err(QueueError::Refused {
                    code: "InternalError".into(),
                    message: "refused by the test".into(),
                });
            }
            lock(into).push(entry.clone());
            Ok(())
        })
        .collect()
}

impl DeliveryQueue for InMemoryDeliveryQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError> {
        let mut fail = lock(&self.fail_next);
        if *fail > 0 {
            *fail -= 1;
            return Err(QueueError::Partial {
                failed: tasks.len(),
            });
        }
        lock(&self.enqueued).extend_from_slice(tasks);
        Ok(())
    }

    async fn retry_later(&self, changes: &[VisibilityChange]) -> Vec<Result<(), QueueError>> {
        lock(&self.visibility_calls).push(changes.to_vec());
        take_entries(changes, &self.refuse_next_visibility_changes, &self.delayed)
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> Vec<Result<(), QueueError>> {
        lock(&self.dead_letter_calls).push(letters.to_vec());
        take_entries(letters, &self.refuse_next_dead_letters, &self.dead_letters)
    }
}

/// Answers from a script and records every webhook it was asked to send.
#[derive(Default)]
pub struct InMemoryWebhookSender {
    script: Mutex<VecDeque<SendOutcome>>,
    pub sent: Mutex<Vec<OutgoingWebhook>>,
}

impl InMemoryWebhookSender {
    /// Answers with these outcomes in order, then 200 forever.
    pub fn answering(outcomes: impl IntoIterator<Item = SendOutcome>) -> Self {
        Self {
            script: Mutex::new(outcomes.into_iter().collect()),
            sent: Mutex::default(),
        }
    }
    pub fn status(status: u16) -> SendOutcome {
        SendOutcome::Answered {
            status,
            retry_after: None,
            excerpt: String::new(),
            latency: Duration::from_millis(5),
        }
    }
    pub fn sent(&self) -> Vec<OutgoingWebhook> {
        lock(&self.sent).clone()
    }
}

impl WebhookSender for InMemoryWebhookSender {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        lock(&self.sent).push(webhook);
        lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Self::status(200))
    }
}

/// A clock that stands still unless moved.
pub struct FixedClock(pub Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now))
    }
    pub fn advance(&self, by: Duration) {
        let mut now = lock(&self.0);
        *now += chrono::Duration::from_std(by).unwrap_or_default();
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.0)
    }
}

/// Portal sessions in memory, answering only while open.
#[derive(Default)]
pub struct InMemorySessionStore {
    sessions: Mutex<HashMap<String, herald_core::portal::PortalSession>>,
}

impl SessionStore for InMemorySessionStore {
    async fn create(&self, session: &herald_core::portal::PortalSession) -> Result<(), StoreError> {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&session.token_hash) {
            return Err(StoreError::Conflict);
        }
        sessions.insert(session.token_hash.clone(), session.clone());
        Ok(())
    }

    async fn get(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<herald_core::portal::PortalSession>, StoreError> {
        Ok(lock(&self.sessions)
            .get(token_hash)
            .filter(|s| s.is_open(now))
            .cloned())
    }

    async fn erase(
        &self,
        tenant: &TenantId,
        _cursor: Option<&str>,
        limit: usize,
    ) -> Result<Erased, StoreError> {
        Ok(erase_step(
            &mut lock(&self.sessions),
            limit,
            |_, session| &session.tenant == tenant,
        ))
    }
}
