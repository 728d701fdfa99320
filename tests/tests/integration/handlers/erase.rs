//! Erasure (`herald_core::flow::erase`) over the in-memory ports: stages in order, bounded
//! steps, the sweep held back until deliver can no longer hold an erased subscription,
//! and another tenant untouched.

use std::time::Duration;

use chrono::Utc;
use herald_core::delivery::DeliveryTask;
use herald_core::event::{Event, EventType};
use herald_core::flow::erase::{self, Progress, STEP, STEPS, Scope, Stage};
use herald_core::ids::{EventId, SubscriptionId, TenantId};
use herald_core::portal::PortalSession;
use herald_core::ports::{
    Claim, Clock, DeliveryLedger, EventLog, Reopens, SessionStore, SubscriptionStore,
};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_core::webhook::tenant_keys::{OsRng, TenantKeySet};
use herald_testkit::{MemoryPorts, active_subscription};

type Adapters = herald_core::ports::Adapters<MemoryPorts>;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

async fn subscribe(ports: &Adapters, name: &str) -> SubscriptionId {
    let id = SubscriptionId::generate(Utc::now(), &mut rand::rng());
    let url = SubscriptionUrl::parse("https://hooks.example.com/in", &UrlPolicy::default());
    let subscription = active_subscription(name, id.clone(), url.unwrap(), &["*"]);
    ports.subscriptions.create(&subscription).await.unwrap();
    id
}

/// An event of `name` accepted and claimed for `subscription`: a delivery in its log.
async fn deliver(ports: &Adapters, name: &str, subscription: &SubscriptionId, event: &str) {
    let now = ports.clock.now();
    let event = Event {
        id: EventId::parse(event).unwrap(),
        event_type: EventType::parse("order.shipped").unwrap(),
        occurred_at: now,
        data: serde_json::Map::new(),
        subject: None,
    };
    ports
        .events
        .accept(&tenant(name), &event, "f", 1, now)
        .await
        .unwrap();
    let task = DeliveryTask::new(&tenant(name), subscription, &event, now);
    let claim = Claim {
        reopens: Reopens::Nothing,
        token: "t".into(),
        now,
        lease_until: now + chrono::Duration::seconds(30),
        expires_at: now + chrono::Duration::days(1),
    };
    ports.ledger.claim(&task, &claim).await.unwrap();
}

/// A portal session of `name`'s, open for ten minutes.
async fn open_session(ports: &Adapters, name: &str) -> PortalSession {
    let (session, _) = PortalSession::open(
        tenant(name),
        vec![],
        Duration::from_secs(600),
        ports.clock.now(),
        &mut rand::rng(),
    );
    ports.sessions.create(&session).await.unwrap();
    session
}

#[tokio::test]
async fn a_tenant_is_erased_stage_by_stage_and_its_sweep_waits_for_the_settle_time() {
    let ports = herald_testkit::adapters();
    let settle = Duration::from_secs(65);
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(subscribe(&ports, "acme").await);
    }
    let theirs = subscribe(&ports, "globex").await;
    for (i, sub) in mine.iter().enumerate() {
        deliver(&ports, "acme", sub, &format!("e{i}")).await;
    }
    deliver(&ports, "globex", &theirs, "e0").await;
    open_session(&ports, "acme").await;

    for name in ["acme", "globex"] {
        let keys = TenantKeySet::first(
            tenant(name),
            ports.clock.now(),
            ports.clock.now(),
            &mut OsRng,
        )
        .unwrap();
        ports
            .subscriptions
            .put_signing_keys(&keys, None)
            .await
            .unwrap();
    }

    let acme = tenant("acme");
    let progress = erase::run(
        &ports,
        &acme,
        Scope::Tenant,
        Progress::start(Scope::Tenant),
        settle,
    )
    .await
    .unwrap();
    // Everything but the sweep in one call; the sweep waits for the settle time.
    assert_eq!(progress.stage, Some(Stage::Sweep));
    assert!(!progress.done());
    assert_eq!(
        (
            progress.erased.subscriptions,
            progress.erased.deliveries,
            progress.erased.events,
            progress.erased.portal_sessions
        ),
        (3, 3, 3, 1)
    );
    assert_eq!(
        progress.sweep_after,
        Some(ports.clock.now() + chrono::Duration::seconds(65))
    );
    assert!(ports.subscriptions.all().iter().all(|s| s.tenant != acme));
    assert_eq!(
        ports.subscriptions.signing_keys(&acme).await.unwrap(),
        None,
        "its own signing keys went with its subscriptions"
    );

    // A deliver container still holding an erased subscription records a delivery.
    deliver(&ports, "acme", &mine[0], "late").await;
    let held = erase::run(&ports, &acme, Scope::Tenant, progress.clone(), settle)
        .await
        .unwrap();
    assert_eq!(held, progress, "nothing runs before the settle time");

    ports.clock.advance(settle);
    let done = erase::run(&ports, &acme, Scope::Tenant, held, settle)
        .await
        .unwrap();
    assert!(done.done());
    assert_eq!(done.erased.deliveries, 4, "the sweep took the late one");
    assert!(ports.ledger.records().iter().all(|r| r.tenant != acme));

    // The other tenant keeps everything.
    assert_eq!(ports.subscriptions.all().len(), 1);
    assert!(
        ports
            .subscriptions
            .signing_keys(&tenant("globex"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(ports.ledger.records().len(), 1);
    assert!(
        ports
            .events
            .load(
                &tenant("globex"),
                &EventId::parse("e0").unwrap(),
                ports.clock.now()
            )
            .await
            .unwrap()
            .is_some()
    );
}

/// A tenant's portal sessions end before anything else is erased: an open portal tab
/// could otherwise add a subscription, or make signing keys, after their stage had
/// passed, while the deliveries' stage still ran over many calls.
#[tokio::test]
async fn a_tenants_portal_sessions_end_before_its_subscriptions_are_erased() {
    let ports = herald_testkit::adapters();
    let sub = subscribe(&ports, "acme").await;
    for i in 0..STEP * STEPS + 10 {
        deliver(&ports, "acme", &sub, &format!("e{i}")).await;
    }
    let session = open_session(&ports, "acme").await;

    let acme = tenant("acme");
    let start = Progress::start(Scope::Tenant);
    assert_eq!(start.stage, Some(Stage::PortalSessions));
    // The first call stops in the deliveries, many left: the session is already gone.
    let progress = erase::run(&ports, &acme, Scope::Tenant, start, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        ports
            .sessions
            .get(&session.token_hash, ports.clock.now())
            .await
            .unwrap(),
        None
    );
    assert_eq!(progress.erased.portal_sessions, 1);
    assert_eq!(progress.stage, Some(Stage::Deliveries));
    assert!(ports.subscriptions.all().is_empty());
}

#[tokio::test]
async fn a_call_does_a_bounded_number_of_steps() {
    let ports = herald_testkit::adapters();
    let sub = subscribe(&ports, "acme").await;
    let many = STEP * STEPS + 10;
    for i in 0..many {
        deliver(&ports, "acme", &sub, &format!("e{i}")).await;
    }
    let scope = Scope::History(&sub);
    let first = erase::run(
        &ports,
        &tenant("acme"),
        scope,
        Progress::start(scope),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(first.erased.deliveries, (STEP * STEPS) as u64);
    assert_eq!(first.stage, Some(Stage::Deliveries));
    let resumed = Progress::resume(&first.cursor(), scope).unwrap();
    let done = erase::run(&ports, &tenant("acme"), scope, resumed, Duration::ZERO)
        .await
        .unwrap();
    assert!(done.done());
    assert_eq!(done.erased.deliveries, many as u64);
    assert_eq!(
        ports.subscriptions.all().len(),
        1,
        "a history's erasure keeps the subscription"
    );
    assert_eq!(ports.events.len(), many, "and the events");
}
