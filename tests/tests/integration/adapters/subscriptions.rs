use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use herald_aws::dynamo::DynamoSubscriptionStore;
use herald_core::ports::{Disabling, StoreError, SubscriptionStore};
use herald_core::subscription::SubscriptionStatus;
use herald_tests::aws::TestAws;

use super::{subscription, tenant};

/// The delivery whose attempt disables a subscription in these tests.
fn by() -> herald_core::ids::DeliveryId {
    herald_core::ids::DeliveryId::derive(
        &tenant("acme"),
        &herald_core::ids::EventId::parse("e1").unwrap(),
        &herald_core::ids::SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
        chrono::DateTime::from_timestamp(1_795_348_800, 0).unwrap(),
    )
}

async fn store() -> (TestAws, DynamoSubscriptionStore) {
    let aws = TestAws::new().await;
    let table = aws.provisioned.subscriptions_table().to_owned();
    let store = DynamoSubscriptionStore::new(aws.dynamo.clone(), table);
    (aws, store)
}

#[tokio::test]
async fn a_listing_is_newest_first_in_pages_and_only_the_tenants_own() {
    let (_aws, store) = store().await;
    let start = Utc::now();
    let mut mine = Vec::new();
    for i in 0..5 {
        let s = subscription("acme", start + chrono::Duration::milliseconds(i * 10));
        store.create(&s).await.unwrap();
        mine.push(s.id);
    }
    let theirs = subscription("other", start);
    store.create(&theirs).await.unwrap();
    mine.reverse();

    let acme = tenant("acme");
    let first = store.list(&acme, 2, None).await.unwrap();
    let second = store.list(&acme, 2, first.next.as_deref()).await.unwrap();
    let third = store.list(&acme, 2, second.next.as_deref()).await.unwrap();
    let sizes = [&first, &second, &third].map(|page| page.items.len());
    assert_eq!(sizes, [2, 2, 1]);
    let listed: Vec<_> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, mine);
    assert_eq!(third.next, None);

    let exact = store.list(&acme, 5, None).await.unwrap();
    assert_eq!(
        (exact.items.len(), exact.next),
        (5, None),
        "no empty last page"
    );
    let other = store.list(&tenant("other"), 10, None).await.unwrap();
    assert_eq!(
        other.items.iter().map(|s| &s.id).collect::<Vec<_>>(),
        vec![&theirs.id]
    );
    assert_eq!(store.list(&acme, 0, None).await.unwrap().items.len(), 1);
    assert!(matches!(
        store.list(&acme, 2, Some("bogus")).await,
        Err(StoreError::InvalidCursor)
    ));
    assert!(matches!(
        store.list(&acme, 2, Some("c3ViXy4uLw")).await,
        Err(StoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn a_subscription_reads_back_as_stored_and_its_id_is_taken_once() {
    let (_aws, store) = store().await;
    let s = subscription("acme", Utc::now());
    store.create(&s).await.unwrap();
    assert_eq!(
        store.get(&tenant("acme"), &s.id).await.unwrap(),
        Some(s.clone())
    );
    assert!(matches!(store.create(&s).await, Err(StoreError::Conflict)));

    let mut changed = s.clone();
    changed.description = "renamed".into();
    changed.version = 2;
    assert!(matches!(
        store.update(&changed, 7).await,
        Err(StoreError::Conflict)
    ));
    store.update(&changed, 1).await.unwrap();
    assert_eq!(
        store
            .get(&tenant("acme"), &s.id)
            .await
            .unwrap()
            .unwrap()
            .description,
        "renamed"
    );

    let mut stranger = subscription("acme", Utc::now());
    stranger.version = 2;
    assert!(
        matches!(store.update(&stranger, 1).await, Err(StoreError::Conflict)),
        "an update never creates"
    );
}

#[tokio::test]
async fn another_tenant_can_neither_read_nor_delete_nor_disable() {
    let (_aws, store) = store().await;
    let s = subscription("acme", Utc::now());
    store.create(&s).await.unwrap();
    let other = tenant("other");

    assert_eq!(store.get(&other, &s.id).await.unwrap(), None);
    assert!(!store.delete(&other, &s.id).await.unwrap());
    store
        .disable(&other, &s.id, "nope", Utc::now(), &by())
        .await
        .unwrap();
    assert!(store.active(&other).await.unwrap().is_empty());

    let kept = store.get(&tenant("acme"), &s.id).await.unwrap().unwrap();
    assert_eq!((kept.status, kept.version), (SubscriptionStatus::Active, 1));
}

/// An item whose document names another tenant than its key (only a hand-made one could:
/// every write builds the key from the document) is not handed to the key's tenant.
#[tokio::test]
async fn a_document_under_another_tenants_key_is_not_theirs() {
    let (aws, store) = store().await;
    let s = subscription("acme", Utc::now());
    store.create(&s).await.unwrap();
    let table = aws.provisioned.subscriptions_table().to_owned();
    let mut item = aws
        .dynamo
        .get_item()
        .table_name(&table)
        .key("tenant", AttributeValue::S("acme".into()))
        .key("id", AttributeValue::S(s.id.as_str().into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    item.insert("tenant".into(), AttributeValue::S("other".into()));
    aws.dynamo
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();

    let other = tenant("other");
    assert_eq!(store.get(&other, &s.id).await.unwrap(), None);
    assert!(store.list(&other, 10, None).await.unwrap().items.is_empty());
    assert!(store.active(&other).await.unwrap().is_empty());
    // The tenant the document names still reads its own item.
    assert_eq!(store.get(&tenant("acme"), &s.id).await.unwrap(), Some(s));
}

#[tokio::test]
async fn disabled_subscriptions_are_not_active_and_deleted_ones_are_gone() {
    let (_aws, store) = store().await;
    let acme = tenant("acme");
    let keep = subscription("acme", Utc::now());
    let stop = subscription("acme", Utc::now());
    store.create(&keep).await.unwrap();
    store.create(&stop).await.unwrap();

    let at = Utc::now();
    store
        .disable(&acme, &stop.id, "410 Gone", at, &by())
        .await
        .unwrap();
    let disabled = store.get(&acme, &stop.id).await.unwrap().unwrap();
    assert_eq!(disabled.status, SubscriptionStatus::Disabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("410 Gone"));
    assert_eq!(
        disabled.disabled_by,
        Some(by()),
        "the delivery that disabled it"
    );
    assert_eq!(disabled.disabled_at, Some(at));
    assert_eq!(disabled.version, 2);
    store
        .disable(&acme, &stop.id, "again", Utc::now(), &by())
        .await
        .unwrap();
    let again = store.get(&acme, &stop.id).await.unwrap().unwrap();
    assert_eq!(
        (again.version, again.disabled_reason.as_deref()),
        (2, Some("410 Gone")),
        "disabling twice changes nothing"
    );

    let active: Vec<_> = store
        .active(&acme)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(active, vec![keep.id.clone()]);

    assert!(store.delete(&acme, &keep.id).await.unwrap());
    assert!(!store.delete(&acme, &keep.id).await.unwrap());
    assert_eq!(store.get(&acme, &keep.id).await.unwrap(), None);
    store
        .disable(&acme, &keep.id, "gone", Utc::now(), &by())
        .await
        .unwrap();
    assert!(store.active(&acme).await.unwrap().is_empty());
}

/// `disable` says whether this call disabled the subscription, and answers the disabling
/// in force: deliver announces a disabling only when its own call made it, under an id
/// made of that disabling's recorded time.
#[tokio::test]
async fn a_disable_says_whether_it_disabled_and_racing_disables_take_one() {
    let (_aws, store) = store().await;
    let acme = tenant("acme");
    let s = subscription("acme", Utc::now());
    store.create(&s).await.unwrap();

    let at = Utc::now();
    let first = store
        .disable(&acme, &s.id, "410 Gone", at, &by())
        .await
        .unwrap();
    let Disabling::Disabled(disabled) = first else {
        panic!("the first disable disables it: {first:?}");
    };
    assert_eq!(
        (
            disabled.status,
            disabled.disabled_reason.as_deref(),
            disabled.disabled_at,
            disabled.version
        ),
        (SubscriptionStatus::Disabled, Some("410 Gone"), Some(at), 2)
    );

    // Already disabled: not this call's doing, and the first disabling is answered.
    let later = at + chrono::Duration::milliseconds(7);
    let again = store
        .disable(&acme, &s.id, "again", later, &by())
        .await
        .unwrap();
    let Disabling::AlreadyDisabled(found) = again else {
        panic!("a second disable does not disable it: {again:?}");
    };
    assert_eq!(
        (
            found.disabled_reason.as_deref(),
            found.disabled_at,
            found.version
        ),
        (Some("410 Gone"), Some(at), 2)
    );

    // Gone, or another tenant's: nothing to disable.
    assert_eq!(
        store
            .disable(&tenant("other"), &s.id, "nope", later, &by())
            .await
            .unwrap(),
        Disabling::Missing
    );
    assert!(store.delete(&acme, &s.id).await.unwrap());
    assert_eq!(
        store
            .disable(&acme, &s.id, "gone", later, &by())
            .await
            .unwrap(),
        Disabling::Missing
    );

    // Eight at once, each with its own time (as deliver's records racing on 410s): one
    // disables it, and every other answers that one's disabling.
    let raced = subscription("acme", Utc::now());
    store.create(&raced).await.unwrap();
    let start = Utc::now();
    let calls = (0..8).map(|i| {
        let (store, acme, id) = (&store, &acme, &raced.id);
        async move {
            let at = start + chrono::Duration::milliseconds(i);
            store
                .disable(acme, id, &format!("racer {i}"), at, &by())
                .await
        }
    });
    let answers: Vec<Disabling> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let winners: Vec<_> = answers
        .iter()
        .filter_map(|d| match d {
            Disabling::Disabled(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    let won = (winners[0].disabled_reason.clone(), winners[0].disabled_at);
    for answer in &answers {
        let (Disabling::Disabled(s) | Disabling::AlreadyDisabled(s)) = answer else {
            panic!("{answer:?}");
        };
        assert_eq!((s.disabled_reason.clone(), s.disabled_at), won);
    }
    let stored = store.get(&acme, &raced.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.disabled_reason, stored.disabled_at, stored.version),
        (won.0, won.1, 2)
    );
}

#[tokio::test]
async fn marking_failing_keeps_an_earlier_start_and_a_success_clears_it() {
    let (_aws, store) = store().await;
    let acme = tenant("acme");
    let sub = subscription("acme", Utc::now());
    store.create(&sub).await.unwrap();
    let failing_since =
        |s: Option<herald_core::subscription::Subscription>| s.unwrap().failing_since;

    let first = Utc::now() - chrono::Duration::minutes(10);
    store
        .set_failing_since(&acme, &sub.id, Some(first))
        .await
        .unwrap();
    // A worker holding a copy from before the first failure marks it failing again.
    store
        .set_failing_since(&acme, &sub.id, Some(Utc::now()))
        .await
        .unwrap();
    let read = store.get(&acme, &sub.id).await.unwrap();
    assert_eq!(failing_since(read.clone()), Some(first));
    assert_eq!(
        read.unwrap().version,
        sub.version,
        "health keeps the version"
    );

    store.set_failing_since(&acme, &sub.id, None).await.unwrap();
    assert_eq!(
        failing_since(store.get(&acme, &sub.id).await.unwrap()),
        None
    );
    let later = Utc::now();
    store
        .set_failing_since(&acme, &sub.id, Some(later))
        .await
        .unwrap();
    assert_eq!(
        failing_since(store.get(&acme, &sub.id).await.unwrap()),
        Some(later)
    );
}
