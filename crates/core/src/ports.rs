//! The small traits handlers depend on. Adapters named for their technology implement
//! them (`Dynamo…`, `Sqs…`, `Http…`); `crate::memory` has in-memory ones for handler tests.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::delivery::{Attempt, DeliveryRecord, DeliveryState, DeliveryTask};
use crate::event::Event;
use crate::ids::{DeliveryId, EventId, SubscriptionId, TenantId};
use crate::subscription::Subscription;
use crate::webhook::tenant_keys::TenantKeySet;

type Source = Box<dyn std::error::Error + Send + Sync>;

/// A failure of a store. `Unavailable` is worth retrying (throttling, 5xx, network).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the store is unavailable")]
    Unavailable(#[source] Source),
    #[error("the stored item is not readable: {0}")]
    Corrupt(String),
    #[error("the item changed since it was read")]
    Conflict,
    /// A listing cursor that this store did not hand out.
    #[error("the cursor is not valid")]
    InvalidCursor,
}

impl StoreError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("the queue is unavailable")]
    Unavailable(#[source] Source),
    #[error("{failed} of the messages could not be queued")]
    Partial { failed: usize },
    /// SQS took the batch call but not this entry of it.
    #[error("SQS refused the entry: {code}: {message}")]
    Refused { code: String, message: String },
}

impl QueueError {
    pub fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// One page of a newest-first listing; `next` is an opaque cursor.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// One bounded step of an erasure: how many items it deleted, and the opaque cursor the
/// next step starts from (`None`: nothing is left to erase).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Erased {
    pub count: u64,
    pub next: Option<String>,
}

pub trait SubscriptionStore: Send + Sync {
    fn create(
        &self,
        subscription: &Subscription,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn get(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send;
    /// The subscription as stored now, past any cache in front of the store: for a
    /// decision a stale copy must not make, such as disabling it for failing.
    fn get_fresh(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> impl Future<Output = Result<Option<Subscription>, StoreError>> + Send {
        self.get(tenant, id)
    }
    fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page<Subscription>, StoreError>> + Send;
    /// Replaces the stored subscription if its version is still `expected_version`;
    /// `StoreError::Conflict` otherwise (changed or deleted meanwhile).
    fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every active subscription of the tenant, for matching.
    fn active(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<Subscription>, StoreError>> + Send;
    /// True when it existed.
    fn delete(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Marks it disabled with a reason, in a write conditional on the version read while
    /// it was active: of calls racing to disable it, one is answered
    /// [`Disabling::Disabled`] and the others [`Disabling::AlreadyDisabled`] with what
    /// that one recorded. A no-op when it is gone or already disabled.
    /// `by` is the delivery whose attempt disables it, kept with the disabling.
    fn disable(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        reason: &str,
        at: DateTime<Utc>,
        by: &DeliveryId,
    ) -> impl Future<Output = Result<Disabling, StoreError>> + Send;
    /// Records since when deliveries have failed without a success (None: healthy).
    /// Writes only when that changes, and keeps the version: health is not a change a
    /// tenant's concurrent edit should be refused for. A no-op when the subscription is gone.
    /// `Some` keeps an earlier start already stored: a worker holding a stale copy that
    /// looks healthy must not postpone an auto-disable.
    fn set_failing_since(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        since: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks its receivers slow until `until` (its tasks take the slow lane till then).
    /// Like health, not a change of the subscription: the version stays. Writes only when
    /// the mark moves later; a no-op when the subscription is gone.
    fn mark_slow(
        &self,
        tenant: &TenantId,
        id: &SubscriptionId,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The tenant's own signing keys (`webhook::tenant_keys`), None when none were made.
    /// Their private halves as this store reads them: opened where it opens (deliver),
    /// as stored otherwise.
    fn signing_keys(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<TenantKeySet>, StoreError>> + Send;
    /// Writes the tenant's set if the stored one is still at `expected` (its version;
    /// None: no set stored), `StoreError::Conflict` otherwise. Private halves are sealed
    /// where this store seals (manage).
    fn put_signing_keys(
        &self,
        set: &TenantKeySet,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether this store seals secrets and header values as it writes them (manage's, on
    /// a deployment with a secrets key).
    fn seals(&self) -> bool {
        false
    }
    /// Deletes the tenant's set (erasure); true when there was one.
    fn delete_signing_keys(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What a [`SubscriptionStore::disable`] found and did. The subscription is as stored
/// (values sealed where the store seals them): its `disabled_reason`, `disabled_at` and
/// `version` are those of the disabling in force, which names it for good (a disable
/// after a re-enable is another, with another time).
#[derive(Clone, Debug, PartialEq)]
pub enum Disabling {
    /// This call disabled it.
    Disabled(Subscription),
    /// It was disabled already: by another call, or by its tenant.
    AlreadyDisabled(Subscription),
    /// There is no such subscription (deleted, or its tenant erased).
    Missing,
}

/// What a producer's publish of one event id has done so far.
#[derive(Clone, Debug, PartialEq)]
pub enum Acceptance {
    /// First time this id is seen: fan out.
    New,
    /// Seen before: with the fingerprint and delivery count it was accepted with
    /// (`deliveries` is None only in records older than counts), and when.
    Seen {
        fingerprint: String,
        deliveries: Option<u32>,
        accepted_at: DateTime<Utc>,
    },
}

pub trait EventLog: Send + Sync {
    /// Records the event under (tenant, id), with the number of deliveries its fan-out
    /// makes, unless it is there already. One write: there is no later "complete" mark,
    /// since a publish that is seen again fans out again (delivery ids make that harmless).
    fn accept(
        &self,
        tenant: &TenantId,
        event: &Event,
        fingerprint: &str,
        deliveries: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Acceptance, StoreError>> + Send;
    /// How `id` was accepted, read and never written: [`Acceptance::New`] when it is
    /// unknown or expired. A consistent read.
    fn acceptance(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Acceptance, StoreError>> + Send;
    /// The event as accepted, unless unknown or expired.
    fn load(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send;
    /// The event as accepted, read without waiting for the latest writes: at half a
    /// consistent read's price on DynamoDB, it may not yet see an event accepted moments
    /// ago (or see the part of it written first), so a caller that finds nothing, other
    /// content or an error reads again with [`EventLog::load`]. A store whose reads are
    /// all consistent reads as `load` does.
    fn load_eventually(
        &self,
        tenant: &TenantId,
        id: &EventId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Event>, StoreError>> + Send {
        self.load(tenant, id, now)
    }
    /// Records `event` as the newest about its subject for this subscription, unless a
    /// newer one (or this one) is recorded already: then answers that one's order key
    /// (`Event::order_key`), in the same call. None: `event` is now the newest recorded,
    /// or has no subject.
    fn note_latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// The order key (`Event::order_key`) of the newest event recorded about `event`'s
    /// subject for this subscription.
    fn latest(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        event: &Event,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Deletes up to `limit` of the tenant's records from `cursor` on: every event and
    /// newest-about-a-subject record, or with `subscription` only that subscription's
    /// newest-about-a-subject records.
    fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send;
}

/// Which deliveries already in a final state a claim takes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopens {
    /// None: a scheduled task finds a finished delivery done.
    Nothing,
    /// A failed one, and no other: a dead letter an operator moved back from the
    /// dead-letter queue delivers what failed, while a copy finding it delivered (or
    /// skipped, or superseded) is a duplicate.
    Failed,
    /// Any: a forced redelivery (`retry`, `replay`) is sent whatever came of it before.
    Any,
}

impl Reopens {
    /// Whether a claim of this kind takes a delivery in `state`.
    pub fn takes(self, state: DeliveryState) -> bool {
        !state.is_final()
            || match self {
                Self::Nothing => false,
                Self::Failed => state == DeliveryState::Failed,
                Self::Any => true,
            }
    }
}

/// Taking a delivery for one attempt.
#[derive(Clone, Debug)]
pub struct Claim {
    pub reopens: Reopens,
    pub token: String,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClaimOutcome {
    /// Ours until the lease ends; the record as it now stands.
    Claimed(DeliveryRecord),
    /// Already in a final state: nothing to do.
    Finished(DeliveryRecord),
    /// Another worker holds it until then.
    Leased { until: DateTime<Utc> },
}

/// The end of one attempt, written only while the claim's token still holds.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    pub attempt: Option<Attempt>,
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// The retry window is spent: the record marks its dead letter owed
    /// (`DeadLetterMark::Owed`) in the same write. Otherwise the write clears any mark.
    pub dead_letter_owed: bool,
    pub now: DateTime<Utc>,
}

pub trait DeliveryLedger: Send + Sync {
    fn claim(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
    ) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send;
    /// `StoreError::Conflict` when the lease was lost to another worker.
    fn finish(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        token: &str,
        result: &AttemptResult,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Makes the record of a delivery with the outcome of its first attempt, taken with no
    /// claim before it (`ClaimMode::Read`): only if there is no record yet (or only an
    /// expired one). `StoreError::Conflict` when another copy made it first.
    fn record_first(
        &self,
        task: &DeliveryTask,
        claim: &Claim,
        result: &AttemptResult,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records that the dead letter a delivery owed is in the dead-letter queue
    /// (`DeadLetterMark::Sent`). A no-op unless the tenant's record exists, has not
    /// expired and owes one.
    fn dead_lettered(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// One subscription's deliveries, newest first, unexpired only.
    fn list(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        query: &DeliveryQuery,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Page<DeliveryRecord>, StoreError>> + Send;
    /// The record, only if it belongs to `tenant` and has not expired.
    fn get(
        &self,
        tenant: &TenantId,
        id: &DeliveryId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<DeliveryRecord>, StoreError>> + Send;
    /// The next ticket (1 for the first) of one-second window `second` (unix seconds) of a
    /// rate-limited subscription: one counter shared by every deliver container
    /// (`crate::delivery::rate`).
    fn take_ticket(
        &self,
        tenant: &TenantId,
        subscription: &SubscriptionId,
        second: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Spends `amount` of the tenant's budget `budget` (e.g. `redeliveries`) for window
    /// `window` (a number naming the period, such as the unix minute) if at most `limit`
    /// is spent in all: one counter shared by every container. False, and nothing spent,
    /// when it would go over.
    fn spend(
        &self,
        tenant: &TenantId,
        budget: &str,
        window: i64,
        amount: u64,
        limit: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes the records of one subscription, or with `None` of every subscription the
    /// tenant has or had, from `cursor` on; a step looks at up to `limit` records.
    fn erase(
        &self,
        tenant: &TenantId,
        subscription: Option<&SubscriptionId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send;
}

/// Which deliveries of one subscription to list, newest first (or oldest first).
#[derive(Clone, Debug, Default)]
pub struct DeliveryQuery {
    pub state: Option<DeliveryState>,
    /// In the order they were accepted (the subscription's feed) instead of newest first.
    pub oldest_first: bool,
    /// Only the delivery with this number (the `id` of a `typed_object` body).
    pub number: Option<u64>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A copy of a message for the dead-letter queue, with why it went there (kept as
/// message attributes).
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub body: String,
    pub reason: String,
    pub delivery_id: Option<DeliveryId>,
    /// The ordered line the message came from (its FIFO message group): it goes to the
    /// ordered lane's dead-letter queue, in the same line.
    pub line: Option<String>,
}

impl DeadLetter {
    /// The message attribute holding `reason`. Only Herald's own dead letters carry it,
    /// and SQS keeps a message's attributes when an operator moves it back from the
    /// dead-letter queue ("Start DLQ redrive", `StartMessageMoveTask`), so a message on
    /// the delivery queue that carries it was redriven.
    pub const REASON_ATTRIBUTE: &str = "herald-reason";
    /// The message attribute holding `delivery_id`, when there is one.
    pub const DELIVERY_ATTRIBUTE: &str = "herald-delivery-id";
}

/// A received message to hide for `delay`, so SQS hands it back then.
#[derive(Clone, Debug, PartialEq)]
pub struct VisibilityChange {
    pub receipt_handle: String,
    pub delay: Duration,
    /// The queue it was received from.
    pub lane: crate::delivery::Lane,
}

/// The calls on a batch of records take every record's entry at once and answer one
/// result per entry, in the order given: SQS takes or refuses each entry of a batch call
/// on its own, and a whole call that fails is an error for each of its entries.
pub trait DeliveryQueue: Send + Sync {
    /// Queues every task; an error means some were not queued (the call may be repeated:
    /// a task queued twice is delivered once).
    fn enqueue(
        &self,
        tasks: &[DeliveryTask],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Hides each received message for its delay.
    fn retry_later(
        &self,
        changes: &[VisibilityChange],
    ) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send;
    /// Sends each copy to the dead-letter queue.
    fn dead_letter(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send;
}

/// A signed request ready to send.
#[derive(Clone)]
pub struct OutgoingWebhook {
    pub url: crate::subscription::url::SubscriptionUrl,
    /// The subscription's own limit on the attempt, when shorter than the sender's.
    pub timeout: Option<Duration>,
    /// Names and values. Herald's own names and fixed values are static text, so a POST
    /// does not copy them.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// How many of `headers`, from the first, are the subscription's custom headers.
    /// Their values may be secrets (an API key, a bearer token), so the sender marks
    /// them sensitive: HTTP/2 sends them never indexed (RFC 7541, section 7.1.3), so no
    /// compression table holds them, not the connection's that other tenants' POSTs to
    /// the same host share, nor a proxy's on a later hop.
    pub custom_headers: usize,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for OutgoingWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers carry signatures and the body carries customer data: neither is shown.
        f.debug_struct("OutgoingWebhook")
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What came of one POST.
#[derive(Clone, Debug, PartialEq)]
pub enum SendOutcome {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        excerpt: String,
        latency: Duration,
    },
    Failed {
        error: crate::delivery::AttemptError,
        detail: String,
        latency: Duration,
    },
}

pub trait WebhookSender: Send + Sync {
    fn send(&self, webhook: OutgoingWebhook) -> impl Future<Output = SendOutcome> + Send;
}

/// The time, passed in so tests can choose it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// One clock shared, e.g. by a handler and the cache in front of its store.
impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Portal sessions, by their token's hash.
pub trait SessionStore: Send + Sync {
    fn create(
        &self,
        session: &crate::portal::PortalSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The session, if it is known and still open at `now`.
    fn get(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<crate::portal::PortalSession>, StoreError>> + Send;
    /// Deletes the tenant's sessions from `cursor` on; a step looks at up to `limit`.
    fn erase(
        &self,
        tenant: &TenantId,
        cursor: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send;
}

/// The keys could not be had now; worth trying again later.
#[derive(Debug, Error)]
#[error("the signing keys are unavailable: {0}")]
pub struct KeysUnavailable(pub String);

/// The deployment's asymmetric signing keys, wherever they are kept.
pub trait KeyStore: Send + Sync {
    /// What a subscription may ask of this deployment, known without reading a key.
    fn offer(&self) -> crate::subscription::Offer;
    /// The keys to sign with now.
    fn current(
        &self,
    ) -> impl Future<
        Output = Result<std::sync::Arc<crate::webhook::keys::SigningKeys>, KeysUnavailable>,
    > + Send;
}

/// Keys given once, in hand: the local runner's and the tests'.
impl KeyStore for std::sync::Arc<crate::webhook::keys::SigningKeys> {
    fn offer(&self) -> crate::subscription::Offer {
        crate::subscription::Offer {
            reserved_headers: self.rsa_header_names(),
            ed25519: self.has_ed25519(),
            rsa: self.has_rsa(),
            max_attempts: None,
            max_timeout: None,
        }
    }

    async fn current(
        &self,
    ) -> Result<std::sync::Arc<crate::webhook::keys::SigningKeys>, KeysUnavailable> {
        Ok(std::sync::Arc::clone(self))
    }
}

/// Which implementation of each port a deployment uses: one name for the set, so code
/// over the ports takes one type parameter (`P: Ports`) instead of one per port.
/// `herald_aws::AwsPorts` is AWS's set; `herald_testkit::MemoryPorts` the fakes.
pub trait Ports: Send + Sync + 'static {
    type Subscriptions: SubscriptionStore + 'static;
    type Ledger: DeliveryLedger + 'static;
    type Events: EventLog + 'static;
    type Queue: DeliveryQueue + 'static;
    type Sender: WebhookSender + 'static;
    type Resolver: crate::subscription::url::Resolver + 'static;
    type Keys: KeyStore + 'static;
    type Sessions: SessionStore + 'static;
    type Clock: Clock + 'static;
}

/// One of each port, built once when a function starts: what its handler is given.
pub struct Adapters<P: Ports> {
    pub subscriptions: P::Subscriptions,
    pub ledger: P::Ledger,
    pub events: P::Events,
    pub queue: P::Queue,
    pub sender: P::Sender,
    pub resolver: P::Resolver,
    pub keys: P::Keys,
    pub sessions: P::Sessions,
    pub clock: P::Clock,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_reopens_only_the_final_states_its_kind_allows() {
        use DeliveryState::*;
        for state in [Pending, Delivering] {
            for reopens in [Reopens::Nothing, Reopens::Failed, Reopens::Any] {
                assert!(reopens.takes(state), "{reopens:?} takes {state:?}");
            }
        }
        for state in [Delivered, Failed, Skipped, Superseded] {
            assert!(!Reopens::Nothing.takes(state));
            assert!(Reopens::Any.takes(state));
            assert_eq!(Reopens::Failed.takes(state), state == Failed, "{state:?}");
        }
    }
}
