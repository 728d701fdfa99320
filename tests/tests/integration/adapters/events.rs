use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_aws::dynamo::DynamoEventLog;
use herald_core::ids::SubscriptionId;
use herald_core::ports::{Acceptance, EventLog};
use herald_tests::aws::TestAws;
use serde_json::json;

use super::{event, event_about, seconds, tenant};

/// An event log that keeps records for a minute.
async fn log() -> (TestAws, DynamoEventLog) {
    let aws = TestAws::new().await;
    let table = aws.provisioned.events_table().to_owned();
    let log = DynamoEventLog::new(aws.dynamo.clone(), table, Duration::from_secs(60));
    (aws, log)
}

fn seen(fingerprint: &str, deliveries: u32, accepted_at: DateTime<Utc>) -> Acceptance {
    Acceptance::Seen {
        fingerprint: fingerprint.into(),
        deliveries: Some(deliveries),
        accepted_at,
    }
}

/// Now, in the whole milliseconds the table keeps.
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap()
}

#[tokio::test]
async fn an_event_is_new_once_then_seen_with_its_first_fingerprint_count_and_time() {
    let (_aws, log) = log().await;
    let acme = tenant("acme");
    let e = event("e1", json!({"x": 1}));
    let now = now_ms();
    let later = now + seconds(5);

    assert_eq!(
        log.accept(&acme, &e, "f1", 3, now).await.unwrap(),
        Acceptance::New
    );
    assert_eq!(
        log.accept(&acme, &e, "f1", 4, later).await.unwrap(),
        seen("f1", 3, now),
        "the first acceptance's count and time, whatever the retry says"
    );
    assert_eq!(
        log.accept(&acme, &e, "f2", 3, later).await.unwrap(),
        seen("f1", 3, now),
        "a different content under the same id is told by the stored fingerprint"
    );
    assert_eq!(
        log.accept(&tenant("other"), &e, "f1", 1, now)
            .await
            .unwrap(),
        Acceptance::New,
        "ids are per tenant"
    );

    assert_eq!(log.load(&acme, &e.id, now).await.unwrap(), Some(e.clone()));
    assert_eq!(log.load(&tenant("nobody"), &e.id, now).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_record_counts_as_absent_before_ttl_deletes_it() {
    let (_aws, log) = log().await;
    let acme = tenant("acme");
    let first = event("e1", json!({"v": 1}));
    let now = now_ms();
    log.accept(&acme, &first, "f1", 2, now).await.unwrap();

    let later = now + seconds(120);
    assert_eq!(log.load(&acme, &first.id, later).await.unwrap(), None);
    let second = event("e1", json!({"v": 2}));
    assert_eq!(
        log.accept(&acme, &second, "f2", 1, later).await.unwrap(),
        Acceptance::New
    );
    assert_eq!(
        log.load(&acme, &second.id, later).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        log.accept(&acme, &second, "f2", 5, later).await.unwrap(),
        seen("f2", 1, later),
        "the overwrite starts afresh, with its own count and time"
    );
}

#[tokio::test]
async fn the_newest_event_about_a_subject_is_kept_per_subscription() {
    let (_aws, log) = log().await;
    let acme = tenant("acme");
    let now = Utc::now();
    let sub = SubscriptionId::generate(now, &mut rand::rng());
    let elsewhere = SubscriptionId::generate(now, &mut rand::rng());
    let older = event_about("e1", "o-1", now - seconds(10));
    let newer = event_about("e2", "o-1", now);
    let other_order = event_about("e3", "o-2", now);

    assert_eq!(log.latest(&acme, &sub, &newer, now).await.unwrap(), None);
    log.note_latest(&acme, &sub, &newer, now).await.unwrap();
    log.note_latest(&acme, &sub, &older, now).await.unwrap();
    let newest = Some(newer.order_key());
    assert_eq!(log.latest(&acme, &sub, &older, now).await.unwrap(), newest);
    assert_eq!(
        log.latest(&acme, &sub, &other_order, now).await.unwrap(),
        None
    );
    assert_eq!(
        log.latest(&acme, &elsewhere, &older, now).await.unwrap(),
        None
    );
    assert_eq!(
        log.latest(&tenant("other"), &sub, &older, now)
            .await
            .unwrap(),
        None
    );

    let no_subject = event("e4", json!({}));
    log.note_latest(&acme, &sub, &no_subject, now)
        .await
        .unwrap();
    assert_eq!(
        log.latest(&acme, &sub, &no_subject, now).await.unwrap(),
        None
    );

    let later = now + seconds(120);
    assert_eq!(
        log.latest(&acme, &sub, &older, later).await.unwrap(),
        None,
        "expired"
    );
    log.note_latest(&acme, &sub, &older, later).await.unwrap();
    assert_eq!(
        log.latest(&acme, &sub, &older, later).await.unwrap(),
        Some(older.order_key()),
        "an expired record does not hold back an older event"
    );
}

/// Erases in steps of `limit` until no cursor is left; answers the total and the steps.
async fn erase_all(
    log: &DynamoEventLog,
    tenant: &herald_core::ids::TenantId,
    subscription: Option<&SubscriptionId>,
    limit: usize,
) -> (u64, usize) {
    let (mut total, mut steps, mut cursor) = (0, 0, None::<String>);
    loop {
        let step = log
            .erase(tenant, subscription, cursor.as_deref(), limit)
            .await
            .unwrap();
        total += step.count;
        steps += 1;
        match step.next {
            Some(next) => cursor = Some(next),
            None => return (total, steps),
        }
    }
}

#[tokio::test]
async fn erasure_deletes_a_tenants_events_and_subject_records_in_steps_and_no_one_elses() {
    let (_aws, log) = log().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let (kept, erased) = (
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
    );
    let now = now_ms();
    for i in 0..5 {
        let e = event_about(&format!("e{i}"), &format!("o{i}"), now);
        log.accept(&acme, &e, "f", 1, now).await.unwrap();
        log.accept(&globex, &e, "f", 1, now).await.unwrap();
        for sub in [&kept, &erased] {
            log.note_latest(&acme, sub, &e, now).await.unwrap();
        }
    }
    let probe = event_about("e0", "o0", now);

    // One subscription's history: its newest-about-a-subject records alone.
    let (count, _) = erase_all(&log, &acme, Some(&erased), 2).await;
    assert_eq!(count, 5);
    assert_eq!(log.latest(&acme, &erased, &probe, now).await.unwrap(), None);
    assert!(
        log.latest(&acme, &kept, &probe, now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(log.load(&acme, &probe.id, now).await.unwrap().is_some());

    // The whole tenant, two records a step: its 5 events and the other 5 records.
    let (count, steps) = erase_all(&log, &acme, None, 2).await;
    assert_eq!(count, 10);
    assert!(steps >= 5, "bounded steps: {steps}");
    for i in 0..5 {
        let id = herald_core::ids::EventId::parse(&format!("e{i}")).unwrap();
        assert_eq!(log.load(&acme, &id, now).await.unwrap(), None);
        assert!(log.load(&globex, &id, now).await.unwrap().is_some());
    }
    assert_eq!(log.latest(&acme, &kept, &probe, now).await.unwrap(), None);

    // A cursor into another tenant's partition is refused.
    let globex_step = log.erase(&globex, None, None, 1).await.unwrap();
    let foreign = globex_step.next.unwrap();
    assert!(matches!(
        log.erase(&acme, None, Some(&foreign), 1).await,
        Err(herald_core::ports::StoreError::InvalidCursor)
    ));
}
