//! Every port faked in memory, and the set built in one call.

use std::marker::PhantomData;
use std::sync::Arc;

use chrono::Utc;
use herald_core::ports::{Adapters, Ports, WebhookSender};
use herald_core::webhook::keys::SigningKeys;

use crate::{
    FixedClock, InMemoryDeliveryLedger, InMemoryDeliveryQueue, InMemoryEventLog,
    InMemorySessionStore, InMemorySubscriptionStore, InMemoryWebhookSender, StaticResolver,
};

/// The in-memory set with webhooks sent by `S`: the fake sender for handler tests
/// ([`MemoryPorts`]), or a real HTTP one where the POSTs themselves are under test.
pub struct MemoryPortsWith<S>(PhantomData<fn() -> S>);

/// Every port in memory: handler tests run on it.
pub type MemoryPorts = MemoryPortsWith<InMemoryWebhookSender>;

impl<S: WebhookSender + 'static> Ports for MemoryPortsWith<S> {
    type Subscriptions = InMemorySubscriptionStore;
    type Ledger = InMemoryDeliveryLedger;
    type Events = InMemoryEventLog;
    type Queue = InMemoryDeliveryQueue;
    type Sender = S;
    type Resolver = StaticResolver;
    type Keys = Arc<SigningKeys>;
    type Sessions = InMemorySessionStore;
    type Clock = FixedClock;
}

/// Empty stores, a sender answering 200, a resolver that knows no name, no asymmetric
/// keys, and a clock standing at now. Change what a test needs with struct update syntax:
/// `Adapters { clock: FixedClock::at(t), ..testkit::adapters() }`.
pub fn adapters() -> Adapters<MemoryPorts> {
    adapters_with(InMemoryWebhookSender::default())
}

/// The same, sending with `sender`.
pub fn adapters_with<S: WebhookSender + 'static>(sender: S) -> Adapters<MemoryPortsWith<S>> {
    Adapters {
        subscriptions: InMemorySubscriptionStore::default(),
        ledger: InMemoryDeliveryLedger::default(),
        events: InMemoryEventLog::default(),
        queue: InMemoryDeliveryQueue::default(),
        sender,
        resolver: StaticResolver::default(),
        keys: Arc::new(SigningKeys::default()),
        sessions: InMemorySessionStore::default(),
        clock: FixedClock::at(Utc::now()),
    }
}
