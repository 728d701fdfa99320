use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_aws::dynamo::DynamoEventLog;
use herald_core::event::Event;
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
        log.acceptance(&acme, &e.id, now).await.unwrap(),
        Acceptance::New,
        "unknown, and looking does not record it"
    );
    assert_eq!(
        log.accept(&acme, &e, "f1", 3, now).await.unwrap(),
        Acceptance::New
    );
    assert_eq!(
        log.acceptance(&acme, &e.id, later).await.unwrap(),
        seen("f1", 3, now)
    );
    assert_eq!(
        log.acceptance(&tenant("other"), &e.id, later)
            .await
            .unwrap(),
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
    assert_eq!(
        log.acceptance(&acme, &first.id, later).await.unwrap(),
        Acceptance::New
    );
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
    let newest = Some(newer.order_key());
    // Noted: none newer. Not noted: the newer one recorded, or the same one again, is
    // answered in the same call.
    assert_eq!(
        log.note_latest(&acme, &sub, &newer, now).await.unwrap(),
        None
    );
    assert_eq!(
        log.note_latest(&acme, &sub, &older, now).await.unwrap(),
        newest
    );
    assert_eq!(
        log.note_latest(&acme, &sub, &newer, now).await.unwrap(),
        newest
    );
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
    assert_eq!(
        log.note_latest(&acme, &sub, &older, later).await.unwrap(),
        None
    );
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

/// The ids of the items in `tenant`'s partition of the events table, every page read.
async fn stored_ids(aws: &TestAws, tenant: &str) -> Vec<String> {
    let pages: Vec<_> = aws
        .dynamo
        .query()
        .table_name(aws.provisioned.events_table())
        .key_condition_expression("tenant = :t")
        .expression_attribute_values(
            ":t",
            aws_sdk_dynamodb::types::AttributeValue::S(tenant.into()),
        )
        .projection_expression("id")
        .into_paginator()
        .send()
        .collect()
        .await;
    pages
        .into_iter()
        .flat_map(|page| page.unwrap().items.unwrap_or_default())
        .map(|item| item["id"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn an_event_of_a_mebibyte_is_kept_in_parts_once_and_read_back_whole() {
    use herald_core::event::MAX_DATA_BYTES;
    let (aws, log) = log().await;
    let acme = tenant("acme");
    let now = now_ms();
    // `{"blob":"…"}`: 11 bytes and the text, 1 MiB of `data` in all: random text, which
    // deflates to about three-quarters, so it is still kept in parts, with characters
    // DynamoDB and JSON both carry (multi-byte ones, escapes).
    use rand::{Rng, SeedableRng};
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['ñ', '€', '"', '\n'])
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut bytes = 0;
    let text: String = std::iter::from_fn(|| {
        let c = alphabet[rng.random_range(0..alphabet.len())];
        bytes += serde_json::to_string(&c.to_string()).unwrap().len() - 2;
        (bytes <= MAX_DATA_BYTES - 11).then_some(c)
    })
    .collect();
    let big = event("big", json!({ "blob": text }));
    let size = serde_json::to_vec(&big.data).unwrap().len();
    assert!(
        size > MAX_DATA_BYTES - 8 && size <= MAX_DATA_BYTES,
        "{size}"
    );

    let fingerprint = big.fingerprint();
    assert_eq!(
        log.accept(&acme, &big, &fingerprint, 2, now).await.unwrap(),
        Acceptance::New
    );
    assert_eq!(
        log.load(&acme, &big.id, now).await.unwrap(),
        Some(big.clone())
    );
    // Read without waiting for the latest writes, record and parts alike, as deliver's
    // first read of a claim check is.
    assert_eq!(
        log.load_eventually(&acme, &big.id, now).await.unwrap(),
        Some(big.clone())
    );
    let parts: Vec<String> = stored_ids(&aws, "acme")
        .await
        .into_iter()
        .filter(|id| id.starts_with("part#big#"))
        .collect();
    let digests: std::collections::BTreeSet<&str> = parts
        .iter()
        .map(|id| id.rsplit_once('#').unwrap().0)
        .collect();
    assert!(
        parts.len() >= 2 && digests.len() == 1,
        "stored once, in 350 KiB parts: {parts:?}"
    );

    // The same id with other content is told apart and changes nothing of what is kept.
    let other = event("big", json!({ "blob": text.replace('a', "b") }));
    assert_eq!(
        log.accept(&acme, &other, &other.fingerprint(), 2, now)
            .await
            .unwrap(),
        seen(&fingerprint, 2, now)
    );
    assert_eq!(
        log.load(&acme, &big.id, now).await.unwrap(),
        Some(big.clone())
    );
    // Published again as it was (a retry): still one event, read back as first kept.
    let retry = Event {
        occurred_at: big.occurred_at + seconds(1),
        ..big.clone()
    };
    log.accept(&acme, &retry, &fingerprint, 2, now)
        .await
        .unwrap();
    assert_eq!(
        log.load(&acme, &big.id, now).await.unwrap(),
        Some(big.clone())
    );

    // Erasing the tenant takes its parts with it.
    erase_all(&log, &acme, None, 2).await;
    assert_eq!(log.load(&acme, &big.id, now).await.unwrap(), None);
    assert_eq!(stored_ids(&aws, "acme").await, Vec::<String>::new());
}

#[tokio::test]
async fn an_event_of_a_kibibyte_is_kept_deflated_within_one_write_unit() {
    let (aws, log) = log().await;
    let acme = tenant("acme");
    let now = now_ms();
    // An order as producers send them: 1 KiB of JSON, names and numbers repeating.
    let lines: Vec<serde_json::Value> = (0..9)
        .map(|i| json!({"sku": format!("SKU-{:06}", 104_729 * i % 999_983), "name": "Stainless steel water bottle", "quantity": i + 1, "unit_price": {"amount": 1_250 + i * 10, "currency": "EUR"}}))
        .collect();
    let order = event(
        "ord_1",
        json!({"order_id": "ord_1", "customer": "cus_8812", "lines": lines}),
    );
    let size = serde_json::to_vec(&order.data).unwrap().len();
    assert!((1000..1400).contains(&size), "{size}");
    log.accept(&acme, &order, &order.fingerprint(), 1, now)
        .await
        .unwrap();
    assert_eq!(
        log.load(&acme, &order.id, now).await.unwrap(),
        Some(order.clone())
    );

    let item = aws
        .dynamo
        .get_item()
        .table_name(aws.provisioned.events_table())
        .key(
            "tenant",
            aws_sdk_dynamodb::types::AttributeValue::S("acme".into()),
        )
        .key(
            "id",
            aws_sdk_dynamodb::types::AttributeValue::S("ord_1".into()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("doc"), "kept deflated");
    let billed: usize = item
        .iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                    aws_sdk_dynamodb::types::AttributeValue::B(b) => b.as_ref().len(),
                    // Numbers: about a byte per two digits; the few here are short.
                    _ => 12,
                }
        })
        .sum();
    assert!(billed <= 1024, "one write unit: {billed} bytes");

    // A short event is kept as it is, and a record from before deflating still reads.
    let short = event("ord_2", json!({"order_id": "ord_2"}));
    log.accept(&acme, &short, &short.fingerprint(), 1, now)
        .await
        .unwrap();
    assert_eq!(log.load(&acme, &short.id, now).await.unwrap(), Some(short));
}
