//! Subscriptions kept for a few seconds in front of a store, so the batches one warm
//! deliver container handles for the same few subscriptions do not read them again each
//! time. Only `get` is cached, found and not found alike; errors never are. Every write
//! goes to the store first and then drops the key, so the container's own writes are
//! never hidden; other containers' and the management API's are seen up to the lifetime
//! late (docs/DECISIONS.md, "Delivering").

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::ids::{DeliveryId, SubscriptionId, TenantId};
use herald_core::ports::{Clock, Disabling, Page, StoreError, SubscriptionStore, SystemClock};
use herald_core::subscription::Subscription;
use herald_core::webhook::tenant_keys::TenantKeySet;

/// Entries kept at most: a few MB of subscriptions, far more than one container sees.
pub const DEFAULT_CAPACITY: usize = 10_000;

type Key = (TenantId, SubscriptionId);

#[derive(Clone)]
struct Entry {
    value: Option<Subscription>,
    stored_at: DateTime<Utc>,
}

/// Locks the entries are spread over. Left to itself, `quick_cache` picks four per core
/// from `std::thread::available_parallelism`, which on Linux reads the cgroup's files: a
/// tenth of a millisecond at every cold start. A deliver container has at most six vCPUs
/// (10,240 MB), so sixteen keeps its workers from waiting on one another.
const SHARDS: usize = 16;

fn entries(capacity: usize) -> quick_cache::sync::Cache<Key, Entry> {
    let options = quick_cache::OptionsBuilder::new()
        .shards(SHARDS)
        .estimated_items_capacity(capacity)
        .weight_capacity(capacity as u64)
        .build()
        .expect("every option is set");
    quick_cache::sync::Cache::with_options(
        options,
        Default::default(),
        Default::default(),
        Default::default(),
    )
}

/// A `SubscriptionStore` with what `get` read kept for a lifetime, at most `capacity`
/// entries (`quick_cache` chooses which go when it is full).
pub struct CachedSubscriptions<S, C = SystemClock> {
    inner: S,
    clock: C,
    ttl: chrono::Duration,
    entries: quick_cache::sync::Cache<Key, Entry>,
    /// Counts writes, so that a read which began before a write does not keep what it
    /// read after the write dropped the key. Held while an entry is kept or dropped.
    writes: Mutex<u64>,
}

impl<S, C: Clock> CachedSubscriptions<S, C> {
    /// Keeps what `get` reads for `ttl` (zero: nothing is kept), at most
    /// [`DEFAULT_CAPACITY`] entries.
    pub fn new(inner: S, ttl: Duration, clock: C) -> Self {
        Self {
            inner,
            clock,
            ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            entries: entries(DEFAULT_CAPACITY),
            writes: Mutex::new(0),
        }
    }

    /// At most `capacity` entries (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.entries = entries(capacity.max(1));
        self
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// How many entries are kept, expired ones included until they are dropped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn enabled(&self) -> bool {
        self.ttl > chrono::Duration::zero()
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, u64> {
        self.writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept copy, if it is still within its lifetime.
    fn cached(&self, key: &Key) -> Option<Option<Subscription>> {
        let now = self.clock.now();
        let entry = self.entries.get(key)?;
        // A clock that went back makes an entry look younger than it is: drop it.
        let fresh = now >= entry.stored_at && now - entry.stored_at < self.ttl;
        if !fresh {
            self.entries.remove(key);
            return None;
        }
        Some(entry.value)
    }

    /// Keeps `value`, read when `writes` writes had been made, unless a write came since.
    fn keep(&self, key: Key, value: Option<Subscription>, writes: u64) {
        let now = self.clock.now();
        let made = self.writes();
        if *made == writes {
            self.entries.insert(
                key,
                Entry {
                    value,
                    stored_at: now,
                },
            );
        }
    }

    /// After a write (whatever its result: a failed call may still have written).
    fn forget(&self, tenant: &TenantId, id: &SubscriptionId) {
        let mut made = self.writes();
        *made += 1;
        self.entries.remove(&(tenant.clone(), id.clone()));
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
        let writes = *self.writes();
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
        by: &DeliveryId,
    ) -> Result<Disabling, StoreError> {
        let result = self.inner.disable(tenant, id, reason, at, by).await;
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

    async fn mark_slow(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let result = self.inner.mark_slow(tenant, id, until).await;
        self.forget(tenant, id);
        result
    }
    /// Not kept here: deliver keeps the opened set itself (`herald_deliver`'s signers).
    async fn signing_keys(&self, tenant: &TenantId) -> Result<Option<TenantKeySet>, StoreError> {
        self.inner.signing_keys(tenant).await
    }

    async fn put_signing_keys(
        &self,
        set: &TenantKeySet,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        self.inner.put_signing_keys(set, expected).await
    }

    async fn delete_signing_keys(&self, tenant: &TenantId) -> Result<bool, StoreError> {
        self.inner.delete_signing_keys(tenant).await
    }

    fn seals(&self) -> bool {
        self.inner.seals()
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
            by: &DeliveryId,
        ) -> Result<Disabling, StoreError> {
            self.store.disable(tenant, id, reason, at, by).await
        }
        async fn set_failing_since(
            &self,
            tenant: &TenantId,
            id: &SubscriptionId,
            since: Option<DateTime<Utc>>,
        ) -> Result<(), StoreError> {
            self.store.set_failing_since(tenant, id, since).await
        }

        async fn mark_slow(
            &self,
            tenant: &TenantId,
            id: &SubscriptionId,
            until: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            self.store.mark_slow(tenant, id, until).await
        }
        async fn signing_keys(
            &self,
            tenant: &TenantId,
        ) -> Result<Option<TenantKeySet>, StoreError> {
            self.store.signing_keys(tenant).await
        }
        async fn put_signing_keys(
            &self,
            set: &TenantKeySet,
            expected: Option<u64>,
        ) -> Result<(), StoreError> {
            self.store.put_signing_keys(set, expected).await
        }
        async fn delete_signing_keys(&self, tenant: &TenantId) -> Result<bool, StoreError> {
            self.store.delete_signing_keys(tenant).await
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

        let by = DeliveryId::derive(
            &tenant,
            &herald_core::ids::EventId::parse("e1").unwrap(),
            &id,
            at,
        );
        cache.disable(&tenant, &id, "why", at, &by).await.unwrap();
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
    async fn a_full_cache_stays_within_its_capacity_and_reads_what_it_dropped_afresh() {
        let (cache, clock) = cache(TTL);
        let cache = cache.with_capacity(3);
        for n in 1..=20 {
            let s = subscription(n);
            cache.create(&s).await.unwrap();
            cache.get(&s.tenant, &s.id).await.unwrap();
            assert!(cache.len() <= 3, "{} entries after {n}", cache.len());
            clock.advance(Duration::from_millis(10));
        }
        // Whatever was dropped is read from the store again; what is kept is the copy read.
        for n in 1..=20 {
            change_url_elsewhere(&cache, n).await;
        }
        let mut kept = 0;
        for n in 1..=20 {
            let s = subscription(n);
            match host(cache.get(&s.tenant, &s.id).await.unwrap()).as_str() {
                "hooks.example.com" => kept += 1,
                "moved.example.com" => {}
                other => panic!("{other}"),
            }
        }
        assert!(kept <= 3, "{kept} served from the cache");
        // Once the lifetime is past, nothing kept is served.
        clock.advance(TTL);
        for n in 1..=20 {
            let s = subscription(n);
            assert_eq!(
                host(cache.get(&s.tenant, &s.id).await.unwrap()),
                "moved.example.com"
            );
        }
    }

    #[tokio::test]
    async fn keys_kept_again_and_again_stay_one_entry_each() {
        let (cache, _clock) = cache(TTL);
        let cache = cache.with_capacity(3);
        for round in 0..500 {
            for n in 1..=2 {
                let s = subscription(n);
                // A write through the cache drops the key (whatever its result); the next
                // read keeps it again.
                let _ = cache.create(&s).await;
                assert!(
                    cache.get(&s.tenant, &s.id).await.unwrap().is_some(),
                    "round {round}"
                );
            }
        }
        assert_eq!(cache.len(), 2);
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
