use chrono::{DateTime, Utc};
use herald_aws::dynamo::DynamoDeliveryLedger;
use herald_core::delivery::{DeadLetterMark, DeliveryState, DeliveryTask};
use herald_core::ids::SubscriptionId;
use herald_core::ports::{
    AttemptResult, Claim, ClaimOutcome, DeliveryLedger, DeliveryQuery, Reopens, StoreError,
};
use herald_tests::aws::TestAws;
use serde_json::json;

use super::{attempt, claim, event, finish, seconds, tenant};

async fn ledger() -> (TestAws, DynamoDeliveryLedger) {
    let aws = TestAws::new().await;
    let table = aws.provisioned.deliveries_table().to_owned();
    let ledger = DynamoDeliveryLedger::new(aws.dynamo.clone(), table);
    (aws, ledger)
}

fn task(event_id: &str) -> DeliveryTask {
    let sub = SubscriptionId::generate(Utc::now(), &mut rand::rng());
    DeliveryTask::new(
        &tenant("acme"),
        &sub,
        &event(event_id, json!({})),
        Utc::now(),
    )
}

#[tokio::test]
async fn one_worker_at_a_time_holds_a_delivery_and_only_it_can_finish() {
    let (_aws, ledger) = ledger().await;
    let mut task = task("e1");
    let id = &task.delivery_id;
    let now = Utc::now();

    let ClaimOutcome::Claimed(fresh) = ledger.claim(&task, &claim(now, "a", false)).await.unwrap()
    else {
        panic!("a fresh delivery is claimed")
    };
    assert_eq!(
        (fresh.state, fresh.attempts.len()),
        (DeliveryState::Delivering, 0)
    );
    assert_eq!(
        (&fresh.tenant, &fresh.subscription_id),
        (&task.tenant, &task.subscription_id)
    );
    let leased = ledger.claim(&task, &claim(now, "b", false)).await.unwrap();
    assert!(matches!(leased, ClaimOutcome::Leased { until } if until > now));
    assert!(
        matches!(
            ledger.claim(&task, &claim(now, "b", true)).await.unwrap(),
            ClaimOutcome::Leased { .. }
        ),
        "forcing never breaks a live lease"
    );

    let failed = finish(DeliveryState::Pending, attempt(1, 500));
    assert!(matches!(
        ledger.finish(&task.tenant, id, "b", &failed).await,
        Err(StoreError::Conflict)
    ));
    let retry_at = now + seconds(60);
    let failed = AttemptResult {
        next_attempt_at: Some(retry_at),
        reason: Some("HTTP 500".into()),
        ..failed
    };
    ledger.finish(&task.tenant, id, "a", &failed).await.unwrap();
    assert!(
        matches!(
            ledger.finish(&task.tenant, id, "a", &failed).await,
            Err(StoreError::Conflict)
        ),
        "a token ends with its attempt"
    );
    let pending = ledger.get(&tenant("acme"), id, now).await.unwrap().unwrap();
    assert_eq!(pending.state, DeliveryState::Pending);
    assert_eq!(
        pending.next_attempt_at.map(|t| t.timestamp_millis()),
        Some(retry_at.timestamp_millis())
    );
    assert_eq!(pending.reason.as_deref(), Some("HTTP 500"));

    let ClaimOutcome::Claimed(second) = ledger.claim(&task, &claim(now, "c", false)).await.unwrap()
    else {
        panic!("a pending delivery is claimed again")
    };
    assert_eq!(second.attempts.len(), 1);
    assert_eq!(second.first_attempt_at, fresh.first_attempt_at);
    ledger
        .finish(
            &task.tenant,
            id,
            "c",
            &finish(DeliveryState::Delivered, attempt(2, 200)),
        )
        .await
        .unwrap();

    let ClaimOutcome::Finished(done) = ledger.claim(&task, &claim(now, "d", false)).await.unwrap()
    else {
        panic!("a delivered delivery is finished")
    };
    assert_eq!(done.state, DeliveryState::Delivered);
    assert_eq!((done.next_attempt_at, done.reason), (None, None));
    let statuses: Vec<_> = done.attempts.iter().map(|a| (a.number, a.status)).collect();
    assert_eq!(statuses, vec![(1, Some(500)), (2, Some(200))]);

    task.forced = true;
    let ClaimOutcome::Claimed(reopened) =
        ledger.claim(&task, &claim(now, "e", true)).await.unwrap()
    else {
        panic!("a forced task reopens a delivered one")
    };
    assert_eq!(reopened.attempts.len(), 2, "the attempt log is kept");

    assert_eq!(
        ledger
            .get(&tenant("acme"), id, now)
            .await
            .unwrap()
            .map(|r| r.state),
        Some(DeliveryState::Delivering)
    );
    assert_eq!(ledger.get(&tenant("other"), id, now).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_an_expired_record_starts_afresh() {
    let (_aws, ledger) = ledger().await;
    let task = task("e2");
    let id = &task.delivery_id;
    let now = Utc::now();
    ledger.claim(&task, &claim(now, "a", false)).await.unwrap();
    let after_lease = now + seconds(31);
    assert!(matches!(
        ledger
            .claim(&task, &claim(after_lease, "b", false))
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    let delivered = finish(DeliveryState::Delivered, attempt(1, 200));
    assert!(matches!(
        ledger.finish(&task.tenant, id, "a", &delivered).await,
        Err(StoreError::Conflict)
    ));
    ledger
        .finish(&task.tenant, id, "b", &delivered)
        .await
        .unwrap();

    // Kept for an hour: two hours on, it is gone for every reader, whatever TTL has done.
    let after_expiry = now + seconds(7200);
    assert_eq!(
        ledger.get(&tenant("acme"), id, after_expiry).await.unwrap(),
        None
    );
    let ClaimOutcome::Claimed(restarted) = ledger
        .claim(&task, &claim(after_expiry, "c", false))
        .await
        .unwrap()
    else {
        panic!("an expired record is a new delivery")
    };
    assert!(restarted.attempts.is_empty());
    assert_eq!(
        restarted.first_attempt_at.timestamp_millis(),
        after_expiry.timestamp_millis()
    );
    assert_eq!(
        restarted.created_at,
        task.delivery_id.accepted_at(),
        "a delivery is dated by its event's acceptance, as its id is"
    );
    assert_eq!(
        restarted.expires_at.timestamp(),
        (after_expiry + seconds(3600)).timestamp()
    );
    assert!(
        ledger
            .get(&tenant("acme"), id, after_expiry)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn every_final_state_stops_a_redelivered_message() {
    let (_aws, ledger) = ledger().await;
    let now = Utc::now();
    for (i, state) in [
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Skipped,
        DeliveryState::Superseded,
    ]
    .into_iter()
    .enumerate()
    {
        let task = task(&format!("final-{i}"));
        ledger.claim(&task, &claim(now, "a", false)).await.unwrap();
        let result = AttemptResult {
            attempt: None,
            ..finish(state, attempt(1, 200))
        };
        ledger
            .finish(&task.tenant, &task.delivery_id, "a", &result)
            .await
            .unwrap();
        let outcome = ledger.claim(&task, &claim(now, "b", false)).await.unwrap();
        assert!(
            matches!(&outcome, ClaimOutcome::Finished(r) if r.state == state && r.attempts.is_empty()),
            "{state:?}: {outcome:?}"
        );
        // A dead letter redriven by an operator takes a failed delivery again, and no
        // other final one.
        let redriven = Claim {
            reopens: Reopens::Failed,
            ..claim(now, "c", false)
        };
        let outcome = ledger.claim(&task, &redriven).await.unwrap();
        if state == DeliveryState::Failed {
            assert!(
                matches!(&outcome, ClaimOutcome::Claimed(r) if r.state == DeliveryState::Delivering),
                "{outcome:?}"
            );
        } else {
            assert!(
                matches!(&outcome, ClaimOutcome::Finished(r) if r.state == state),
                "{state:?}: {outcome:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_spent_deliverys_dead_letter_is_owed_in_its_finish_write_until_marked_sent() {
    let (_aws, ledger) = ledger().await;
    let acme = tenant("acme");
    let now = Utc::now();
    let mut task = task("dead-letter");
    let id = &task.delivery_id;

    // Nothing to mark before the record exists: the write makes no item.
    ledger.dead_lettered(&acme, id, now).await.unwrap();
    assert_eq!(ledger.get(&acme, id, now).await.unwrap(), None);

    ledger.claim(&task, &claim(now, "a", false)).await.unwrap();
    let spent = AttemptResult {
        reason: Some("the retry window is spent".into()),
        dead_letter_owed: true,
        ..finish(DeliveryState::Failed, attempt(1, 500))
    };
    ledger.finish(&acme, id, "a", &spent).await.unwrap();
    let ClaimOutcome::Finished(failed) =
        ledger.claim(&task, &claim(now, "b", false)).await.unwrap()
    else {
        panic!("a failed delivery is finished")
    };
    assert_eq!(failed.dead_letter, Some(DeadLetterMark::Owed));
    assert!(failed.owes_dead_letter());
    assert_eq!(failed.reason.as_deref(), Some("the retry window is spent"));

    // Another tenant's call, or one after the record's expiry, marks nothing.
    ledger
        .dead_lettered(&tenant("other"), id, now)
        .await
        .unwrap();
    ledger
        .dead_lettered(&acme, id, now + seconds(7200))
        .await
        .unwrap();
    let record = ledger.get(&acme, id, now).await.unwrap().unwrap();
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Owed));

    ledger.dead_lettered(&acme, id, now).await.unwrap();
    let ClaimOutcome::Finished(sent) = ledger.claim(&task, &claim(now, "c", false)).await.unwrap()
    else {
        panic!("still finished")
    };
    assert_eq!(sent.dead_letter, Some(DeadLetterMark::Sent));
    assert!(!sent.owes_dead_letter());
    assert_eq!(
        (sent.state, sent.attempts.len(), sent.updated_at),
        (DeliveryState::Failed, 1, failed.updated_at),
        "the mark changes nothing else"
    );
    // Marking again is a no-op.
    ledger.dead_lettered(&acme, id, now).await.unwrap();
    let record = ledger.get(&acme, id, now).await.unwrap().unwrap();
    assert_eq!(record.dead_letter, Some(DeadLetterMark::Sent));

    // A forced redelivery that succeeds ends with no mark at all.
    task.forced = true;
    ledger.claim(&task, &claim(now, "d", true)).await.unwrap();
    ledger
        .finish(
            &acme,
            id,
            "d",
            &finish(DeliveryState::Delivered, attempt(2, 200)),
        )
        .await
        .unwrap();
    let delivered = ledger.get(&acme, id, now).await.unwrap().unwrap();
    assert_eq!(
        (delivered.state, delivered.dead_letter),
        (DeliveryState::Delivered, None)
    );
    // A delivered record owes nothing, and marking it sent changes nothing.
    ledger.dead_lettered(&acme, id, now).await.unwrap();
    let delivered = ledger.get(&acme, id, now).await.unwrap().unwrap();
    assert_eq!(delivered.dead_letter, None);

    // An expired record starts afresh without its mark.
    let task = self::task("dead-letter-expired");
    ledger.claim(&task, &claim(now, "a", false)).await.unwrap();
    ledger
        .finish(&acme, &task.delivery_id, "a", &spent)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(restarted) = ledger
        .claim(&task, &claim(now + seconds(7200), "b", false))
        .await
        .unwrap()
    else {
        panic!("an expired record is a new delivery")
    };
    assert_eq!(restarted.dead_letter, None);
}

/// Claims and finishes one delivery per event of `sub`, accepted `i` seconds after `start`.
async fn deliveries(
    ledger: &impl DeliveryLedger,
    sub: &SubscriptionId,
    start: DateTime<Utc>,
    count: i64,
) -> Vec<DeliveryTask> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let at = start + seconds(i);
        let event = event(&format!("e{i}"), json!({}));
        let task = DeliveryTask::new(&tenant("acme"), sub, &event, at);
        ledger.claim(&task, &claim(at, "t", false)).await.unwrap();
        let state = if i % 2 == 0 {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
        };
        ledger
            .finish(
                &task.tenant,
                &task.delivery_id,
                "t",
                &finish(state, attempt(1, 200)),
            )
            .await
            .unwrap();
        tasks.push(task);
    }
    tasks
}

/// A cursor goes on past its delivery whatever that delivery's state is now, on DynamoDB
/// (the query resumes after the key) and in the in-memory ledger the handler tests use
/// alike: a listing of one state resumed from a delivery of another (as a replay or a
/// list of `failed` is, when the delivery it stopped at was delivered since).
#[tokio::test]
async fn a_cursor_resumes_past_its_delivery_whatever_its_state_in_both_ledgers() {
    async fn resumed(ledger: &impl DeliveryLedger) -> Vec<herald_core::ids::DeliveryId> {
        let start =
            DateTime::from_timestamp_millis((Utc::now() - seconds(60)).timestamp_millis()).unwrap();
        let sub = SubscriptionId::generate(start, &mut rand::rng());
        // e0 delivered, e1 failed, e2 delivered, e3 failed, e4 delivered.
        let tasks = deliveries(ledger, &sub, start, 5).await;
        let (acme, now) = (tenant("acme"), Utc::now());
        let delivered = DeliveryQuery {
            state: Some(DeliveryState::Delivered),
            limit: 1,
            ..Default::default()
        };
        let page = ledger.list(&acme, &sub, &delivered, now).await.unwrap();
        assert_eq!(page.items[0].id, tasks[4].delivery_id);
        let failed = DeliveryQuery {
            state: Some(DeliveryState::Failed),
            limit: 10,
            cursor: page.next,
            ..Default::default()
        };
        let page = ledger.list(&acme, &sub, &failed, now).await.unwrap();
        assert_eq!(page.next, None);
        assert_eq!(
            page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![tasks[3].delivery_id.clone(), tasks[1].delivery_id.clone()]
        );
        let failed_ids: Vec<_> = page.items.into_iter().map(|r| r.id).collect();

        // A cursor outside the range asked for (the range moved since it was given) is
        // where it points: before the range in the direction of travel, all of it is
        // still to come; past it, nothing is.
        let ids = |items: Vec<herald_core::delivery::DeliveryRecord>| {
            items.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        let newest = ledger
            .list(
                &acme,
                &sub,
                &DeliveryQuery {
                    limit: 1,
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap()
            .next;
        let oldest = ledger
            .list(
                &acme,
                &sub,
                &DeliveryQuery {
                    limit: 1,
                    oldest_first: true,
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap()
            .next;
        let early = DeliveryQuery {
            until: Some(start + seconds(2)),
            limit: 10,
            ..Default::default()
        };
        let late = DeliveryQuery {
            since: Some(start + seconds(2)),
            limit: 10,
            ..Default::default()
        };
        let (acme, sub) = (&acme, &sub);
        let page = |query: &DeliveryQuery, cursor: &Option<String>, oldest_first: bool| {
            let query = DeliveryQuery {
                cursor: cursor.clone(),
                oldest_first,
                ..query.clone()
            };
            async move { ledger.list(acme, sub, &query, now).await.unwrap() }
        };
        let whole_early = ids(page(&early, &newest, false).await.items);
        assert_eq!(
            whole_early,
            vec![tasks[1].delivery_id.clone(), tasks[0].delivery_id.clone()]
        );
        assert!(page(&late, &oldest, false).await.items.is_empty());
        let whole_late = ids(page(&late, &oldest, true).await.items);
        assert_eq!(whole_late.len(), 3);
        assert_eq!(whole_late[0], tasks[2].delivery_id);
        assert!(page(&early, &newest, true).await.items.is_empty());
        failed_ids
    }
    let (_aws, dynamo) = ledger().await;
    let on_dynamo = resumed(&dynamo).await;
    let in_memory = resumed(&herald_testkit::InMemoryDeliveryLedger::default()).await;
    assert_eq!(on_dynamo.len(), in_memory.len());
}

#[tokio::test]
async fn the_attempt_log_lists_a_subscriptions_deliveries_newest_first() {
    let (_aws, ledger) = ledger().await;
    // Whole milliseconds, as the ledger stores them, so the window's edges are exact.
    let start =
        DateTime::from_timestamp_millis((Utc::now() - seconds(60)).timestamp_millis()).unwrap();
    let sub = SubscriptionId::generate(start, &mut rand::rng());
    let tasks = deliveries(&ledger, &sub, start, 5).await;
    deliveries(
        &ledger,
        &SubscriptionId::generate(start, &mut rand::rng()),
        start,
        2,
    )
    .await;
    let ids = |tasks: &[&DeliveryTask]| {
        tasks
            .iter()
            .map(|t| t.delivery_id.clone())
            .collect::<Vec<_>>()
    };
    let newest_first: Vec<_> = tasks.iter().rev().collect();
    let now = Utc::now();
    let acme = tenant("acme");

    let mut listed = Vec::new();
    let mut query = DeliveryQuery {
        limit: 2,
        ..Default::default()
    };
    loop {
        let page = ledger.list(&acme, &sub, &query, now).await.unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.into_iter().map(|r| r.id));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids(&newest_first));

    // By the number a typed_object body carries: that delivery alone; a number no
    // delivery can have finds none.
    let number = herald_core::webhook::render::numeric_id(&tasks[3].delivery_id);
    let numbered = DeliveryQuery {
        number: Some(number),
        limit: 10,
        ..Default::default()
    };
    let page = ledger.list(&acme, &sub, &numbered, now).await.unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids(&[&tasks[3]])
    );
    let impossible = DeliveryQuery {
        number: Some(1 << 53),
        limit: 10,
        ..Default::default()
    };
    assert!(
        ledger
            .list(&acme, &sub, &impossible, now)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Oldest first (the feed), paged the same way.
    let mut listed = Vec::new();
    let mut query = DeliveryQuery {
        limit: 2,
        oldest_first: true,
        ..Default::default()
    };
    loop {
        let page = ledger.list(&acme, &sub, &query, now).await.unwrap();
        assert!(page.items.len() <= 2);
        listed.extend(page.items.into_iter().map(|r| r.id));
        match page.next {
            Some(next) => query.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, ids(&tasks.iter().collect::<Vec<_>>()));

    let delivered = DeliveryQuery {
        state: Some(DeliveryState::Delivered),
        limit: 10,
        ..Default::default()
    };
    let page = ledger.list(&acme, &sub, &delivered, now).await.unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids(&[newest_first[0], newest_first[2], newest_first[4]])
    );

    let window = DeliveryQuery {
        since: Some(start + seconds(1)),
        until: Some(start + seconds(3)),
        limit: 10,
        ..Default::default()
    };
    let page = ledger.list(&acme, &sub, &window, now).await.unwrap();
    assert_eq!(
        page.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        ids(&[&tasks[2], &tasks[1]]),
        "since is inclusive, until exclusive"
    );

    let everything = DeliveryQuery {
        limit: 10,
        ..Default::default()
    };
    assert!(
        ledger
            .list(&tenant("other"), &sub, &everything, now)
            .await
            .is_ok_and(|p| p.items.is_empty())
    );
    let bad = DeliveryQuery {
        cursor: Some("bogus".into()),
        limit: 2,
        ..Default::default()
    };
    assert!(matches!(
        ledger.list(&acme, &sub, &bad, now).await,
        Err(StoreError::InvalidCursor)
    ));
    let expired = ledger
        .list(&acme, &sub, &everything, now + seconds(7200))
        .await
        .unwrap();
    assert!(expired.items.is_empty());
}

#[tokio::test]
async fn erasure_deletes_one_subscriptions_deliveries_or_every_one_of_a_tenant_in_steps() {
    let (_aws, ledger) = ledger().await;
    let start = Utc::now();
    let (first, second) = (
        SubscriptionId::generate(start, &mut rand::rng()),
        SubscriptionId::generate(start, &mut rand::rng()),
    );
    let first_tasks = deliveries(&ledger, &first, start, 3).await;
    let second_tasks = deliveries(&ledger, &second, start, 3).await;
    // Another tenant's delivery, under the same subscription id.
    let other = DeliveryTask::new(&tenant("globex"), &first, &event("g1", json!({})), start);
    ledger
        .claim(&other, &claim(start, "t", false))
        .await
        .unwrap();
    let now = Utc::now();
    let erase_all = |subscription: Option<SubscriptionId>| {
        let ledger = &ledger;
        async move {
            let (mut total, mut cursor) = (0, None::<String>);
            loop {
                let step = ledger
                    .erase(&tenant("acme"), subscription.as_ref(), cursor.as_deref(), 2)
                    .await
                    .unwrap();
                total += step.count;
                match step.next {
                    Some(next) => cursor = Some(next),
                    None => return total,
                }
            }
        }
    };

    assert_eq!(erase_all(Some(first.clone())).await, 3);
    for task in &first_tasks {
        assert_eq!(
            ledger
                .get(&tenant("acme"), &task.delivery_id, now)
                .await
                .unwrap(),
            None
        );
    }
    for task in &second_tasks {
        assert!(
            ledger
                .get(&tenant("acme"), &task.delivery_id, now)
                .await
                .unwrap()
                .is_some()
        );
    }

    // The tenant's budget counters and a rate ticket share its partitions' prefix: erased
    // with it, not counted as deliveries.
    let second = now.timestamp();
    assert!(
        ledger
            .spend(&tenant("acme"), "requests", second, 1, 10)
            .await
            .unwrap()
    );
    assert!(
        ledger
            .spend(&tenant("acme"), "redeliveries", second / 60, 1, 10)
            .await
            .unwrap()
    );
    ledger
        .take_ticket(&tenant("acme"), &second_tasks[0].subscription_id, second)
        .await
        .unwrap();

    // The whole tenant: a scan finds the rest, and leaves the other tenant's.
    assert_eq!(erase_all(None).await, 3);
    // The counters went too: spending starts again from nothing.
    assert!(
        ledger
            .spend(&tenant("acme"), "requests", second, 10, 10)
            .await
            .unwrap()
    );
    for task in &second_tasks {
        assert_eq!(
            ledger
                .get(&tenant("acme"), &task.delivery_id, now)
                .await
                .unwrap(),
            None
        );
    }
    assert!(
        ledger
            .get(&tenant("globex"), &other.delivery_id, now)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn rate_tickets_are_numbered_once_each_per_subscription_and_second_under_contention() {
    let (_aws, ledger) = ledger().await;
    let acme = tenant("acme");
    let (sub, other) = (
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
        SubscriptionId::generate(Utc::now(), &mut rand::rng()),
    );
    let second = Utc::now().timestamp();
    let taken =
        futures::future::join_all((0..40).map(|_| ledger.take_ticket(&acme, &sub, second))).await;
    let mut tickets: Vec<u64> = taken.into_iter().map(Result::unwrap).collect();
    tickets.sort();
    assert_eq!(tickets, (1..=40).collect::<Vec<_>>(), "each number once");
    assert_eq!(
        ledger.take_ticket(&acme, &sub, second + 1).await.unwrap(),
        1
    );
    assert_eq!(ledger.take_ticket(&acme, &other, second).await.unwrap(), 1);
    assert_eq!(
        ledger
            .take_ticket(&tenant("globex"), &sub, second)
            .await
            .unwrap(),
        1
    );
    // The counters are not deliveries: the attempt log does not list them.
    let listed = ledger
        .list(
            &acme,
            &sub,
            &DeliveryQuery {
                limit: 10,
                ..Default::default()
            },
            Utc::now(),
        )
        .await
        .unwrap();
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn a_tenants_budget_is_spent_only_while_it_lasts_under_contention() {
    let (_aws, ledger) = ledger().await;
    let acme = tenant("acme");
    let spent =
        futures::future::join_all((0..30).map(|_| ledger.spend(&acme, "redeliveries", 7, 1, 20)))
            .await;
    let granted = spent.into_iter().filter(|s| *s.as_ref().unwrap()).count();
    assert_eq!(granted, 20, "exactly the budget, whatever the contention");
    assert!(!ledger.spend(&acme, "redeliveries", 7, 1, 20).await.unwrap());
    assert!(
        ledger
            .spend(&acme, "redeliveries", 8, 20, 20)
            .await
            .unwrap()
    );
    assert!(
        !ledger
            .spend(&acme, "redeliveries", 9, 21, 20)
            .await
            .unwrap()
    );
    assert!(
        ledger
            .spend(&tenant("globex"), "redeliveries", 7, 5, 20)
            .await
            .unwrap()
    );
}

/// The delivery item as stored, and the day key item of `day`, read raw.
async fn raw_items(
    aws: &TestAws,
    task: &DeliveryTask,
    day: chrono::NaiveDate,
) -> (
    String,
    Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
) {
    use aws_sdk_dynamodb::types::AttributeValue;
    let table = aws.provisioned.deliveries_table();
    let get = |pk: String, sk: String| {
        aws.dynamo
            .get_item()
            .table_name(table)
            .key("subscription_key", AttributeValue::S(pk))
            .key("id", AttributeValue::S(sk))
            .consistent_read(true)
            .send()
    };
    let delivery = get(
        format!("{}#{}", task.tenant, task.subscription_id),
        task.delivery_id.to_string(),
    )
    .await
    .unwrap();
    let key = get("#excerpt-keys".into(), day.to_string()).await.unwrap();
    (
        format!("{:?}", delivery.item().expect("the delivery item")),
        key.item().cloned(),
    )
}

#[tokio::test]
async fn excerpts_are_sealed_under_a_day_key_and_unreadable_once_it_is_gone() {
    use herald_aws::dynamo::ExcerptRetention;
    let aws = TestAws::new().await;
    let table = aws.provisioned.deliveries_table().to_owned();
    let week = std::time::Duration::from_secs(7 * 86_400);
    let sealing = || {
        DynamoDeliveryLedger::with_excerpts(
            aws.dynamo.clone(),
            table.clone(),
            ExcerptRetention::For(week),
        )
    };
    let ledger = sealing();
    let now = Utc::now();
    let month_claim = |token: &str| Claim {
        expires_at: now + seconds(30 * 86_400),
        ..claim(now, token, false)
    };
    let secret = "card 4242 declined for order ord_7";

    let task = task("e-sealed");
    ledger.claim(&task, &month_claim("a")).await.unwrap();
    let mut made = attempt(1, 402);
    made.response = secret.into();
    let result = finish(DeliveryState::Pending, made);
    ledger
        .finish(&task.tenant, &task.delivery_id, "a", &result)
        .await
        .unwrap();

    // Stored sealed: neither the excerpt nor any part of it in the item.
    let (item, key) = raw_items(&aws, &task, now.date_naive()).await;
    assert!(
        !item.contains("4242") && !item.contains("declined"),
        "{item}"
    );
    assert!(item.contains("sealed_response"), "{item}");
    let key = key.expect("the day's key item");
    let expires = key["expires_at"].as_n().unwrap().parse::<i64>().unwrap();
    let day_end = (now.date_naive() + chrono::Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(expires, (day_end + chrono::Duration::days(7)).timestamp());

    // Read back in the clear while the key lasts, by this container and another.
    for reader in [&ledger, &sealing()] {
        let got = reader
            .get(&task.tenant, &task.delivery_id, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.attempts[0].response, secret);
        let page = reader
            .list(
                &task.tenant,
                &task.subscription_id,
                &DeliveryQuery {
                    limit: 10,
                    ..Default::default()
                },
                now,
            )
            .await
            .unwrap();
        assert_eq!(page.items[0].attempts[0].response, secret);
    }
    // A second attempt the same day shares the key; each opens only as its own.
    ledger.claim(&task, &month_claim("b")).await.unwrap();
    let mut second = attempt(2, 200);
    second.response = "thanks".into();
    ledger
        .finish(
            &task.tenant,
            &task.delivery_id,
            "b",
            &finish(DeliveryState::Delivered, second),
        )
        .await
        .unwrap();
    let got = ledger
        .get(&task.tenant, &task.delivery_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.attempts
            .iter()
            .map(|a| a.response.as_str())
            .collect::<Vec<_>>(),
        [secret, "thanks"]
    );

    // Past the day's end plus a week: the record is still there, its excerpts are not,
    // and the key item is deleted.
    let later = day_end + chrono::Duration::days(7) + seconds(1);
    let got = sealing()
        .get(&task.tenant, &task.delivery_id, later)
        .await
        .unwrap()
        .expect("the record outlives its excerpts");
    assert_eq!(got.state, DeliveryState::Delivered);
    assert!(
        got.attempts.iter().all(|a| a.response.is_empty()),
        "{:?}",
        got.attempts
    );
    assert_eq!(
        got.attempts[0].status,
        Some(402),
        "the rest of the attempt is kept"
    );
    assert!(
        raw_items(&aws, &task, now.date_naive()).await.1.is_none(),
        "the key is deleted"
    );
    // The container that held the key in its cache lets it go at the same time.
    let got = ledger
        .get(&task.tenant, &task.delivery_id, later)
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.attempts.iter().all(|a| a.response.is_empty()),
        "gone for every reader"
    );

    // A retention of zero keeps no excerpt; none set keeps them with the record.
    let none = DynamoDeliveryLedger::with_excerpts(
        aws.dynamo.clone(),
        table.clone(),
        ExcerptRetention::For(std::time::Duration::ZERO),
    );
    let plain = DynamoDeliveryLedger::new(aws.dynamo.clone(), table.clone());
    for (reader, kept) in [(&none, ""), (&plain, secret)] {
        let task = task_for_another_event(kept);
        reader.claim(&task, &month_claim("c")).await.unwrap();
        let mut made = attempt(1, 500);
        made.response = secret.into();
        reader
            .finish(
                &task.tenant,
                &task.delivery_id,
                "c",
                &finish(DeliveryState::Pending, made),
            )
            .await
            .unwrap();
        let got = reader
            .get(&task.tenant, &task.delivery_id, now)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.attempts[0].response, kept);
        let (item, _) = raw_items(&aws, &task, now.date_naive()).await;
        assert_eq!(item.contains("4242"), !kept.is_empty(), "{item}");
    }
}

fn task_for_another_event(tag: &str) -> DeliveryTask {
    task(&format!(
        "e-{}",
        if tag.is_empty() { "none" } else { "plain" }
    ))
}

#[tokio::test]
async fn a_first_outcome_makes_the_record_once_and_a_lease_then_finds_it() {
    let (_aws, ledger) = ledger().await;
    let task = task("e-first");
    let id = &task.delivery_id;
    let now = Utc::now();

    // Taken by a read (nothing there): the outcome makes the record, attempt and all.
    let taken = claim(now, "unused", false);
    let delivered = finish(DeliveryState::Delivered, attempt(1, 200));
    ledger
        .record_first(&task, &taken, &delivered)
        .await
        .unwrap();
    let record = ledger.get(&tenant("acme"), id, now).await.unwrap().unwrap();
    assert_eq!(record.state, DeliveryState::Delivered);
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].status, Some(200));
    assert_eq!(
        (&record.subscription_id, &record.event_id, record.created_at),
        (
            &task.subscription_id,
            &task.event.id,
            task.delivery_id.accepted_at()
        )
    );
    assert_eq!(record.expires_at.timestamp(), taken.expires_at.timestamp());

    // A second copy read nothing too and sent at the same moment: its outcome is refused.
    assert!(matches!(
        ledger.record_first(&task, &taken, &delivered).await,
        Err(StoreError::Conflict)
    ));
    // A copy that reads after: taken as a lease takes it, and finds it finished.
    assert!(matches!(
        ledger.claim(&task, &claim(now, "late", false)).await.unwrap(),
        ClaimOutcome::Finished(r) if r.state == DeliveryState::Delivered
    ));

    // A failure recorded first is attempted again under a lease, its attempts kept.
    let failing = self::task("e-failing");
    let failed = AttemptResult {
        next_attempt_at: Some(now + seconds(1)),
        reason: Some("HTTP 500".into()),
        ..finish(DeliveryState::Pending, attempt(1, 500))
    };
    ledger
        .record_first(&failing, &taken, &failed)
        .await
        .unwrap();
    let ClaimOutcome::Claimed(again) = ledger
        .claim(&failing, &claim(now, "second", false))
        .await
        .unwrap()
    else {
        panic!("a pending record is claimed")
    };
    assert_eq!(again.attempts.len(), 1);
    ledger
        .finish(
            &failing.tenant,
            &failing.delivery_id,
            "second",
            &finish(DeliveryState::Delivered, attempt(2, 200)),
        )
        .await
        .unwrap();
    let done = ledger
        .get(&tenant("acme"), &failing.delivery_id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.state, done.attempts.len(), done.next_attempt_at),
        (DeliveryState::Delivered, 2, None)
    );

    // A record past its expiry (TTL not there yet) is replaced, as a claim replaces it.
    let later = now + seconds(7200);
    let anew = Claim {
        now: later,
        expires_at: later + seconds(3600),
        ..claim(later, "unused", false)
    };
    ledger
        .record_first(
            &task,
            &anew,
            &finish(DeliveryState::Skipped, attempt(1, 200)),
        )
        .await
        .unwrap();
    let replaced = ledger
        .get(&tenant("acme"), id, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replaced.state, DeliveryState::Skipped);
    assert_eq!(replaced.attempts.len(), 1);
}
