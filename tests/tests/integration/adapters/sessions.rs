//! Portal sessions in DynamoDB (moto's): found by their token's hash while open, gone once
//! past their end (TTL deletion lags, so the store checks), never overwritten.

use std::time::Duration;

use chrono::Utc;
use herald_aws::dynamo::DynamoSessionStore;
use herald_core::portal::{PortalSession, token_hash};
use herald_core::ports::{SessionStore, StoreError};
use herald_tests::aws::TestAws;

use super::tenant;

async fn store() -> (TestAws, DynamoSessionStore) {
    let aws = TestAws::new().await;
    let table = aws.provisioned.portal_sessions_table().to_owned();
    let store = DynamoSessionStore::new(aws.dynamo.clone(), table);
    (aws, store)
}

#[tokio::test]
async fn a_session_is_found_by_its_tokens_hash_while_open() {
    let (_aws, store) = store().await;
    let now = Utc::now();
    let (session, token) = PortalSession::open(
        tenant("acme"),
        vec!["order.created".into(), "invoice.*".into()],
        Duration::from_secs(600),
        now,
        &mut rand::rng(),
    );
    assert_eq!(session.token_hash, token_hash(&token));
    store.create(&session).await.unwrap();

    let found = store.get(&token_hash(&token), now).await.unwrap().unwrap();
    assert_eq!(found.tenant, session.tenant);
    assert_eq!(found.event_types, session.event_types);
    assert_eq!(found.expires_at.timestamp(), session.expires_at.timestamp());

    assert!(
        store
            .get(&token_hash(&format!("{token}x")), now)
            .await
            .unwrap()
            .is_none(),
        "another token finds nothing"
    );
    let after = session.expires_at + chrono::Duration::seconds(1);
    assert!(
        store
            .get(&token_hash(&token), after)
            .await
            .unwrap()
            .is_none(),
        "an ended session is gone though TTL has not deleted it"
    );
}

#[tokio::test]
async fn a_session_is_never_overwritten() {
    let (_aws, store) = store().await;
    let now = Utc::now();
    let (session, token) = PortalSession::open(
        tenant("acme"),
        Vec::new(),
        Duration::from_secs(600),
        now,
        &mut rand::rng(),
    );
    store.create(&session).await.unwrap();
    let hijack = PortalSession {
        tenant: tenant("globex"),
        ..session.clone()
    };
    assert!(matches!(
        store.create(&hijack).await,
        Err(StoreError::Conflict)
    ));
    let found = store.get(&token_hash(&token), now).await.unwrap().unwrap();
    assert_eq!(found.tenant, tenant("acme"));
}

#[tokio::test]
async fn erasure_deletes_a_tenants_sessions_and_no_one_elses() {
    let (_aws, store) = store().await;
    let now = Utc::now();
    let mut tokens = Vec::new();
    for name in ["acme", "acme", "acme", "globex"] {
        let (session, token) = PortalSession::open(
            tenant(name),
            vec![],
            Duration::from_secs(600),
            now,
            &mut rand::rng(),
        );
        store.create(&session).await.unwrap();
        tokens.push((name, token));
    }
    let (mut erased, mut cursor) = (0, None::<String>);
    loop {
        let step = store
            .erase(&tenant("acme"), cursor.as_deref(), 1)
            .await
            .unwrap();
        erased += step.count;
        match step.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(erased, 3);
    for (name, token) in &tokens {
        let found = store.get(&token_hash(token), now).await.unwrap();
        assert_eq!(found.is_some(), *name == "globex", "{name}");
    }
    assert!(matches!(
        store.erase(&tenant("acme"), Some("bm90IGEga2V5"), 1).await,
        Err(StoreError::InvalidCursor)
    ));
}
