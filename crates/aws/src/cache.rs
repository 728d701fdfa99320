//! Subscriptions kept for a few seconds in front of a store, so the batches one warm
//! deliver container handles for the same few subscriptions do not read them again each
//! time. Only `get` is cached, found and not found alike; errors never are. Every write
//! goes to the store first and then drops the key, so the container's own writes are
//! never hidden; other containers' and the management API's are seen up to the lifetime
//! late (docs/DECISIONS.md, "Delivering").

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{Clock, Page, StoreError, SubscriptionStore, SystemClock};
use herald_core::subscription::Subscription;

/// Entries kept at most: a few MB of subscriptions, far more than one container sees.
pub const DEFAULT_CAPACITY: usize = 10_000;

type Key = (TenantId, SubscriptionId);

struct Entry {
    value: Option<Subscription>,
    stored_at: DateTime<Utc>,
    /// Its place in the order entries were kept (`State::kept`).
    seq: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// The keys in the order they were kept, each with the `seq` it was kept under: the
    /// oldest first, so that a full cache drops its oldest without looking at every
    /// entry. A key kept again or dropped leaves its old place behind, which is passed
    /// over when it comes up (its `seq` is no longer the entry's).
    kept: VecDeque<(Key, u64)>,
    next_seq: u64,
    /// Counts writes, so that a read which began before a write does not store what it
    /// read after the write dropped the key.
    writes: u64,
}

impl State {
    /// Drops the oldest entry kept; false when there is none.
    fn drop_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.kept.pop_front() {
            if self.entries.get(&key).is_some_and(|entry| entry.seq == seq) {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }

    /// The key kept longest ago that is still kept, if any.
    fn oldest(&mut self) -> Option<&Entry> {
        while let Some((key, seq)) = self.kept.front() {
            if self.entries.get(key).is_some_and(|entry| entry.seq == *seq) {
                return self.entries.get(key);
            }
            self.kept.pop_front();
        }
        None
    }

    /// Places left behind pile up when the same keys are kept again and again; past
    /// twice the entries, the order is written again from the entries themselves.
    fn compact(&mut self) {
        if self.kept.len() > 2 * self.entries.len() + 16 {
            let mut order: Vec<(Key, u64)> = self
                .entries
                .iter()
                .map(|(key, entry)| (key.clone(), entry.seq))
                .collect();
            order.sort_by_key(|(_, seq)| *seq);
            self.kept = order.into();
        }
    }
}

pub struct CachedSubscriptions<S, C = SystemClock> {
    inner: S,
    clock: C,
    ttl: chrono::Duration,
    capacity: usize,
    state: Mutex<State>,
}

impl<S, C: Clock> CachedSubscriptions<S, C> {
    /// Keeps what `get` reads for `ttl` (zero: nothing is kept), at most
    /// [`DEFAULT_CAPACITY`] entries.
    pub fn new(inner: S, ttl: Duration, clock: C) -> Self {
        Self {
            inner,
            clock,
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            capacity: DEFAULT_CAPACITY,
            state: Mutex::new(State::default()),
        }
    }

    /// At most `capacity` entries (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many entries are kept, expired ones included until they are dropped.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn enabled(&self) -> bool {
        self.ttl > chrono::Duration::zero()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fresh(&self, entry: &Entry, now: DateTime<Utc>) -> bool {
        // A clock that went back makes an entry look younger than it is: drop it.
        now >= entry.stored_at && now - entry.stored_at < self.ttl
    }

    /// The kept copy, if it is still within its lifetime.
    fn cached(&self, key: &Key) -> Option<Option<Subscription>> {
        let now = self.clock.now();
        let state = self.lock();
        state
            .entries
            .get(key)
            .filter(|entry| self.fresh(entry, now))
            .map(|entry| entry.value.clone())
    }

    /// Keeps `value`, read when `writes` writes had been made, unless a write came since.
    fn keep(&self, key: Key, value: Option<Subscription>, writes: u64) {
        let now = self.clock.now();
        let mut state = self.lock();
        if state.writes != writes {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&key) {
            // Expired entries first (the oldest kept expire first), then the oldest.
            while state.oldest().is_some_and(|entry| !self.fresh(entry, now)) {
                state.drop_oldest();
            }
            if state.entries.len() >= self.capacity {
                state.drop_oldest();
            }
        }
        let seq = state.next_seq;
        state.next_seq += 1;
        state.kept.push_back((key.clone(), seq));
        state.entries.insert(
            key,
            Entry {
                value,
                stored_at: now,
                seq,
            },
        );
        state.compact();
    }

    fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// After a write (whatever its result: a failed call may still have written).
    fn forget(&self, tenant: &TenantId, id: &SubscriptionId) {
        let mut state = self.lock();
        state.writes += 1;
        state.entries.remove(&(tenant.clone(), id.clone()));
    }
}

impl<S, C> CachedSubscriptions<S, C>
where
    S: SubscriptionStore,
    C: Clock,
{
    async fn read_through(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let writes = self.writes();
        let read = self.inner.get(tenant, id).await?;
        if self.enabled() {
            self.keep((tenant.clone(), id.clone()), read.clone(), writes);
        }
        Ok(read)
    }
}

impl<S, C> SubscriptionStore for CachedSubscriptions<S, C>
where
    S: SubscriptionStore,
    C: Clock,
{
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let result = self.inner.create(subscription).await;
        self.forget(&subscription.tenant, &subscription.id);
        result
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        if self.enabled()
            && let Some(kept) = self.cached(&(tenant.clone(), id.clone()))
        {
            return Ok(kept);
        }
        self.read_through(tenant, id).await
    }

    /// Reads the store, whatever is kept, and keeps what it read.
    async fn get_fresh(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.read_through(tenant, id).await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Subscription>, StoreError> {
        self.inner.list(tenant, limit, cursor).await
    }

    async fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let result = self.inner.update(subscription, expected_version).await;
        self.forget(&subscription.tenant, &subscription.id);
        result
    }

    async fn active(&self, tenant: &TenantId) -> Result<Vec<Subscription>, StoreError> {
        self.inner.active(tenant).await
    }

    async fn delete(&self, tenant: &TenantId, id: &SubscriptionId) -> Result<bool, StoreError> {
        let result = self.inner.delete(tenant, id).await;
        self.forget(tenant, id);
        result
    }

    async fn disable(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.inner.disable(tenant, id, reason, at).await;
        self.forget(tenant, id);
        result
    }

    async fn set_failing_since(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let result = self.inner.set_failing_since(tenant, id, since).await;
        self.forget(tenant, id);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
    use herald_testkit::{FixedClock, InMemorySubscriptionStore, active_subscription};

    const TTL: Duration = Duration::from_secs(5);

    /// The in-memory store, which can be made to fail its reads.
    #[derive(Default)]
    struct Flaky {
        store: InMemorySubscriptionStore,
        failing: AtomicBool,
    }

    impl SubscriptionStore for Flaky {
        async fn create(&self, s: &Subscription) -> Result<(), StoreError> {
            self.store.create(s).await
        }
        async fn get(
            &self,
            tenant: &TenantId,
            id: &SubscriptionId,
        ) -> Result<Option<Subscription>, StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Corrupt("made to fail".into()));
            }
            self.store.get(tenant, id).await
        }
        async fn list(
            &self,
            tenant: &TenantId,
            limit: usize,
            cursor: Option<&str>,
        ) -> Result<Page<Subscription>, StoreError> {
            self.store.list(tenant, limit, cursor).await
        }
        async fn update(&self, s: &Subscription, expected: u64) -> Result<(), StoreError> {
            self.store.update(s, expected).await
        }
        async fn active(&self, tenant: &TenantId) -> Result<Vec<Subscription>, StoreError> {
            self.store.active(tenant).await
        }
        async fn delete(&self, tenant: &TenantId, id: &SubscriptionId) -> Result<bool, StoreError> {
            self.store.delete(tenant, id).await
        }
        async fn disable(
            &self,
            tenant: &TenantId,
            id: &SubscriptionId,
            reason: &str,
            at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.store.disable(tenant, id, reason, at).await
        }
        async fn set_failing_since(
            &self,
            tenant: &TenantId,
            id: &SubscriptionId,
            since: Option<DateTime<Utc>>,
        ) -> Result<(), StoreError> {
            self.store.set_failing_since(tenant, id, since).await
        }
    }

    fn subscription(n: u32) -> Subscription {
        active_subscription(
            "acme",
            SubscriptionId::parse(&format!("sub_01JD5Q8Z6X00000000000{n:05}")).unwrap(),
            SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default()).unwrap(),
            &["order.*"],
        )
    }

    fn cache(ttl: Duration) -> (CachedSubscriptions<Flaky, Arc<FixedClock>>, Arc<FixedClock>) {
        let clock = Arc::new(FixedClock::at(Utc::now()));
        let cache = CachedSubscriptions::new(Flaky::default(), ttl, Arc::clone(&clock));
        (cache, clock)
    }

    /// Changes the stored copy behind the cache's back, as another container would.
    async fn change_url_elsewhere(cache: &CachedSubscriptions<Flaky, Arc<FixedClock>>, n: u32) {
        let mut s = subscription(n);
        s.url =
            SubscriptionUrl::parse("https://moved.example.com/in", &UrlPolicy::default()).unwrap();
        s.version = 2;
        cache.inner().store.update(&s, 1).await.unwrap();
    }

    fn host(s: Option<Subscription>) -> String {
        s.unwrap().url.host().to_owned()
    }

    #[tokio::test]
    async fn a_read_is_kept_for_the_lifetime_and_read_again_after_it() {
        let (cache, clock) = cache(TTL);
        let s = subscription(1);
        cache.create(&s).await.unwrap();
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "hooks.example.com"
        );

        change_url_elsewhere(&cache, 1).await;
        clock.advance(Duration::from_millis(4_900));
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "hooks.example.com",
            "within the lifetime the kept copy answers"
        );
        clock.advance(Duration::from_millis(100));
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "moved.example.com"
        );
    }

    #[tokio::test]
    async fn not_found_is_kept_too() {
        let (cache, clock) = cache(TTL);
        let s = subscription(1);
        assert_eq!(cache.get(&s.tenant, &s.id).await.unwrap(), None);
        cache.inner().store.create(&s).await.unwrap();
        assert_eq!(cache.get(&s.tenant, &s.id).await.unwrap(), None);
        clock.advance(TTL);
        assert!(cache.get(&s.tenant, &s.id).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let (cache, _clock) = cache(TTL);
        let s = subscription(1);
        cache.create(&s).await.unwrap();
        cache.inner().failing.store(true, Ordering::SeqCst);
        assert!(cache.get(&s.tenant, &s.id).await.is_err());
        cache.inner().failing.store(false, Ordering::SeqCst);
        assert!(cache.get(&s.tenant, &s.id).await.unwrap().is_some());
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn every_write_through_it_is_seen_by_the_next_read() {
        let (cache, _clock) = cache(TTL);
        let mut s = subscription(1);
        let (tenant, id) = (s.tenant.clone(), s.id.clone());
        assert_eq!(cache.get(&tenant, &id).await.unwrap(), None);
        cache.create(&s).await.unwrap();
        assert!(cache.get(&tenant, &id).await.unwrap().is_some(), "create");

        s.description = "changed".into();
        s.version = 2;
        cache.update(&s, 1).await.unwrap();
        let read = cache.get(&tenant, &id).await.unwrap().unwrap();
        assert_eq!(read.description, "changed", "update");

        let at = Utc::now();
        cache
            .set_failing_since(&tenant, &id, Some(at))
            .await
            .unwrap();
        let read = cache.get(&tenant, &id).await.unwrap().unwrap();
        assert_eq!(read.failing_since, Some(at), "set_failing_since");

        cache.disable(&tenant, &id, "why", at).await.unwrap();
        let read = cache.get(&tenant, &id).await.unwrap().unwrap();
        assert_eq!(
            read.status,
            herald_core::subscription::SubscriptionStatus::Disabled,
            "disable"
        );

        assert!(cache.delete(&tenant, &id).await.unwrap());
        assert_eq!(cache.get(&tenant, &id).await.unwrap(), None, "delete");
    }

    #[tokio::test]
    async fn a_fresh_read_passes_the_kept_copy_and_replaces_it() {
        let (cache, _clock) = cache(TTL);
        let s = subscription(1);
        cache.create(&s).await.unwrap();
        cache.get(&s.tenant, &s.id).await.unwrap();
        change_url_elsewhere(&cache, 1).await;
        assert_eq!(
            host(cache.get_fresh(&s.tenant, &s.id).await.unwrap()),
            "moved.example.com"
        );
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "moved.example.com"
        );
    }

    #[tokio::test]
    async fn when_full_expired_entries_go_first_then_the_oldest() {
        let (cache, clock) = cache(TTL);
        let cache = cache.with_capacity(3);
        for n in 1..=3 {
            cache.create(&subscription(n)).await.unwrap();
        }
        for n in 1..=2 {
            let s = subscription(n);
            cache.get(&s.tenant, &s.id).await.unwrap();
        }
        clock.advance(TTL);
        let s = subscription(3);
        cache.get(&s.tenant, &s.id).await.unwrap();
        assert_eq!(cache.len(), 3);

        // Full, with 1 and 2 expired: both go, 3 stays.
        clock.advance(Duration::from_millis(10));
        cache.create(&subscription(4)).await.unwrap();
        let s = subscription(4);
        cache.get(&s.tenant, &s.id).await.unwrap();
        assert_eq!(cache.len(), 2);

        // Full of live entries: the oldest (3) goes.
        clock.advance(Duration::from_secs(1));
        for n in [5, 6] {
            cache.create(&subscription(n)).await.unwrap();
            let s = subscription(n);
            cache.get(&s.tenant, &s.id).await.unwrap();
            clock.advance(Duration::from_millis(10));
        }
        assert_eq!(cache.len(), 3);
        change_url_elsewhere(&cache, 3).await;
        change_url_elsewhere(&cache, 4).await;
        let (three, four) = (subscription(3), subscription(4));
        assert_eq!(
            host(cache.get(&three.tenant, &three.id).await.unwrap()),
            "moved.example.com",
            "the oldest was dropped"
        );
        // Reading 3 again dropped the next oldest, 4: also read afresh.
        assert_eq!(
            host(cache.get(&four.tenant, &four.id).await.unwrap()),
            "moved.example.com"
        );
        assert_eq!(cache.len(), 3);
    }

    #[tokio::test]
    async fn keys_kept_again_and_again_leave_no_growing_trail() {
        let (cache, _clock) = cache(TTL);
        let cache = cache.with_capacity(3);
        for round in 0..500 {
            for n in 1..=2 {
                let s = subscription(n);
                // A write through the cache drops the key (whatever its result); the next
                // read keeps it again, in a new place.
                let _ = cache.create(&s).await;
                assert!(
                    cache.get(&s.tenant, &s.id).await.unwrap().is_some(),
                    "round {round}"
                );
            }
        }
        let state = cache.lock();
        assert_eq!(state.entries.len(), 2);
        assert!(state.kept.len() <= 2 * 2 + 16 + 1, "{}", state.kept.len());
    }

    #[tokio::test]
    async fn a_lifetime_of_zero_keeps_nothing() {
        let (cache, _clock) = cache(Duration::ZERO);
        let s = subscription(1);
        cache.create(&s).await.unwrap();
        cache.get(&s.tenant, &s.id).await.unwrap();
        assert!(cache.is_empty());
        change_url_elsewhere(&cache, 1).await;
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "moved.example.com"
        );
    }

    #[tokio::test]
    async fn a_clock_that_goes_back_does_not_stretch_the_lifetime() {
        let (cache, clock) = cache(TTL);
        let s = subscription(1);
        cache.create(&s).await.unwrap();
        cache.get(&s.tenant, &s.id).await.unwrap();
        *clock.0.lock().unwrap() -= chrono::Duration::seconds(60);
        change_url_elsewhere(&cache, 1).await;
        assert_eq!(
            host(cache.get(&s.tenant, &s.id).await.unwrap()),
            "moved.example.com"
        );
    }
}
