//! Payloads built by the subscriber's GraphQL query (seed 003), through the local runner
//! on moto against a real GraphQL server on loopback (`herald_tests::graphql_source`):
//! the query is checked against the source's schema at registration, run at each attempt
//! for the delivery's tenant with variables bound from the event, and a source error or
//! timeout is a failed attempt with its own code, retried like any other.

use std::time::Duration;

use herald_testkit::signatures::{signature_entries, v1_signature};
use herald_testkit::wait::{self, PATIENCE};
use herald_tests::graphql_source::GraphqlSource;
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};

const INVOICE_QUERY: &str = "query Paid($id: ID!) { invoice(id: $id) { id total \
    order { id status shipments { carrier } } lineItems { sku quantity } } }";

/// A secret in moto's Secrets Manager holding the source's bearer token.
async fn token_secret(herald_sdk: &aws_config::SdkConfig, token: &str) -> String {
    let name = format!("herald/{}/graphql", herald_tests::aws::unique_prefix());
    aws_sdk_secretsmanager::Client::new(herald_sdk)
        .create_secret()
        .name(&name)
        .secret_string(format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    name
}

async fn start(source: &GraphqlSource) -> TestHerald {
    let secret = token_secret(&herald_tests::aws::sdk_config(), "t0ken").await;
    TestHerald::start(&[
        ("HERALD_GRAPHQL_URL", &source.url()),
        ("HERALD_GRAPHQL_SECRET", &secret),
        ("HERALD_GRAPHQL_TIMEOUT", "1s"),
    ])
    .await
}

fn invoice_subscription(url: &str) -> Value {
    json!({
        "url": url,
        "event_types": ["invoice.*"],
        "query": {"text": INVOICE_QUERY, "variables": {"id": "subject.id"}},
    })
}

async fn subscribe(herald: &TestHerald, tenant: &str, body: &Value) -> (String, String) {
    let (status, created) = herald
        .call("POST", "/v1/subscriptions", Some(tenant), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

fn invoice_event(id: &str, invoice: &str) -> Value {
    json!({
        "id": id,
        "type": "invoice.paid",
        "subject": {"type": "invoice", "id": invoice},
        "data": {"note": "the event's own data, not sent"},
    })
}

/// The delivery of `event` on `subscription`'s attempt log, once `done` holds for it.
async fn delivery(
    herald: &TestHerald,
    tenant: &str,
    subscription: &str,
    event: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/v1/subscriptions/{subscription}/deliveries");
    wait::until(
        format!("the delivery of {event}"),
        PATIENCE,
        Duration::from_millis(200),
        || async {
            let (status, page) = herald.call("GET", &path, Some(tenant), None).await;
            assert_eq!(status, 200, "{page}");
            match page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["event_id"] == event)
            {
                Some(d) if done(d) => Ok(d.clone()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_is_checked_against_the_sources_schema_when_registered() {
    let source = GraphqlSource::start("t0ken").await;
    let herald = start(&source).await;
    let receiver = TestReceiver::start(Script::always(200)).await;

    let (id, _) = subscribe(&herald, "acme", &invoice_subscription(&receiver.url())).await;
    let (_, shown) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(
        shown["query"],
        json!({"text": INVOICE_QUERY, "variables": {"id": "subject.id"}})
    );
    // The schema was read with the secret's credentials, and no tenant.
    let introspection = &source.requests()[0];
    assert_eq!(introspection.authorization.as_deref(), Some("Bearer t0ken"));
    assert!(
        introspection.body["query"]
            .as_str()
            .unwrap()
            .contains("__schema")
    );

    let refused = |text: &str, variables: Value| {
        json!({"url": receiver.url(), "event_types": ["invoice.*"],
               "query": {"text": text, "variables": variables}})
    };
    for (body, why) in [
        (
            refused(
                "query($id: ID!) { invoice(id: $id) { id totl } }",
                json!({"id": "subject.id"}),
            ),
            "query: `Invoice` has no field `totl`",
        ),
        (
            refused(
                "query($id: ID!) { invoice(id: $id) { order } }",
                json!({"id": "subject.id"}),
            ),
            "`order` is a Order: select its fields",
        ),
        (
            refused(
                "query($id: String!) { invoice(id: $id) { id } }",
                json!({"id": "subject.id"}),
            ),
            "`$id` is a String! but `invoice(id:)` takes a ID!",
        ),
        (
            refused("query { invoice { id } }", json!({})),
            "`invoice` needs its argument `id`",
        ),
        (
            refused("mutation { cancel { id } }", json!({})),
            "query: text: must be a query",
        ),
        (
            refused(INVOICE_QUERY, json!({})),
            "`$id` is required by the query",
        ),
        (
            refused(INVOICE_QUERY, json!({"id": "subject.name"})),
            "variables.id: `subject.name` is not a place in the event",
        ),
        (
            json!({"url": receiver.url(), "event_types": ["invoice.*"], "selection": "{ id }",
                   "query": {"text": INVOICE_QUERY, "variables": {"id": "subject.id"}}}),
            "a selection or a query, not both",
        ),
        (
            json!({"url": receiver.url(), "event_types": ["invoice.*"], "query": "{ id }"}),
            "query: {\"text\"",
        ),
    ] {
        let (status, answer) = herald
            .call("POST", "/v1/subscriptions", Some("acme"), Some(&body))
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }

    // A change is checked the same way; null removes the query.
    let path = format!("/v1/subscriptions/{id}");
    let bad = json!({"query": {"text": "{ invoices { id } }"}});
    let (status, answer) = herald.call("PATCH", &path, Some("acme"), Some(&bad)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`Query` has no field `invoices`")
    );
    let (status, changed) = herald
        .call("PATCH", &path, Some("acme"), Some(&json!({"query": null})))
        .await;
    assert_eq!(status, 200, "{changed}");
    assert!(changed.get("query").is_none(), "{changed}");

    // A deployment without a source refuses queries.
    let plain = TestHerald::start(&[]).await;
    let (status, answer) = plain
        .call(
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(&invoice_subscription(&receiver.url())),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no GraphQL source")
    );

    // A source that cannot be reached: 503, to be retried.
    let gone_url = source.url();
    drop(source);
    let unreachable = TestHerald::start(&[("HERALD_GRAPHQL_URL", &gone_url)]).await;
    let (status, answer) = unreachable
        .call(
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(&invoice_subscription(&receiver.url())),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "graphql_source_unavailable");
    unreachable.shutdown().await;

    // A secret that cannot be read: 503 too, saying so without AWS's error, which names
    // the account, the role and the secret (tenants read this answer and attempt logs).
    let missing = format!(
        "herald/{}/no-such-secret",
        herald_tests::aws::unique_prefix()
    );
    let unreadable = TestHerald::start(&[
        ("HERALD_GRAPHQL_URL", &gone_url),
        ("HERALD_GRAPHQL_SECRET", &missing),
    ])
    .await;
    let (status, answer) = unreadable
        .call(
            "POST",
            "/v1/subscriptions",
            Some("acme"),
            Some(&invoice_subscription(&receiver.url())),
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("secret could not be read"), "{message}");
    assert!(
        !message.contains(&missing) && !message.contains("arn:"),
        "{message}"
    );
    unreadable.shutdown().await;
    plain.shutdown().await;
    herald.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_body_is_the_querys_result_for_the_deliverys_tenant_and_source_failures_are_retried() {
    let source = GraphqlSource::start("t0ken").await;
    source.add_invoice("acme", "inv_1", 42.5, "ord_1");
    let herald = start(&source).await;
    let acme_receiver = TestReceiver::start(Script::always(200)).await;
    let globex_receiver = TestReceiver::start(Script::always(200)).await;
    let (acme, acme_secret) =
        subscribe(&herald, "acme", &invoice_subscription(&acme_receiver.url())).await;
    let (globex, _) = subscribe(
        &herald,
        "globex",
        &invoice_subscription(&globex_receiver.url()),
    )
    .await;

    // acme's invoice, delivered with the query's result as `data`, signed as ever.
    let (status, _) = herald
        .publish("acme", invoice_event("e-inv-1", "inv_1"))
        .await;
    assert_eq!(status, 202);
    let requests = acme_receiver.wait_for(1, PATIENCE).await;
    let request = &requests[0];
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(
        body["data"],
        json!({"invoice": {
            "id": "inv_1", "total": 42.5,
            "order": {"id": "ord_1", "status": "SHIPPED", "shipments": [{"carrier": "DHL"}]},
            "lineItems": [{"sku": "SKU-1", "quantity": 2}],
        }})
    );
    let expected = v1_signature(
        &acme_secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
    );
    assert!(signature_entries(request.header("webhook-signature")).contains(&expected));
    let asked = source
        .requests()
        .into_iter()
        .find(|r| r.tenant.as_deref() == Some("acme"))
        .expect("the query, asked for acme");
    assert_eq!(asked.body["variables"], json!({"id": "inv_1"}));
    assert_eq!(asked.authorization.as_deref(), Some("Bearer t0ken"));
    let delivered = delivery(&herald, "acme", &acme, "e-inv-1", |d| {
        d["state"] == "delivered"
    })
    .await;
    assert_eq!(delivered["attempts"].as_array().unwrap().len(), 1);

    // globex names acme's invoice: the source answers for globex, which has none — an
    // attempt failed at the source, nothing POSTed. Once globex has an invoice of that id
    // (its own), the retry delivers globex's.
    herald
        .publish("globex", invoice_event("e-inv-g", "inv_1"))
        .await;
    let failing = delivery(&herald, "globex", &globex, "e-inv-g", |d| {
        !d["attempts"].as_array().unwrap().is_empty()
    })
    .await;
    let first = &failing["attempts"][0];
    assert_eq!(first["error"], "E_GRAPHQL", "{failing}");
    assert!(
        first["response"]
            .as_str()
            .unwrap()
            .contains("no invoice inv_1 for this tenant"),
        "{failing}"
    );
    assert!(first["status"].is_null());
    assert!(
        globex_receiver.requests().is_empty(),
        "nothing POSTed on a source error"
    );
    source.add_invoice("globex", "inv_1", 7.0, "ord_g");
    let delivered = delivery(&herald, "globex", &globex, "e-inv-g", |d| {
        d["state"] == "delivered"
    })
    .await;
    assert!(
        delivered["attempts"].as_array().unwrap().len() >= 2,
        "{delivered}"
    );
    let requests = globex_receiver.wait_for(1, PATIENCE).await;
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["data"]["invoice"]["total"], 7.0);
    assert_eq!(body["data"]["invoice"]["order"]["id"], "ord_g");

    // A source slower than HERALD_GRAPHQL_TIMEOUT: each attempt is a timeout of its own
    // code, until the retry window's attempts are spent; the subscription stays healthy.
    herald
        .publish("acme", invoice_event("e-slow", "slow_1"))
        .await;
    let failed = delivery(&herald, "acme", &acme, "e-slow", |d| d["state"] == "failed").await;
    let attempts = failed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "the first and three retries: {failed}");
    for attempt in attempts {
        assert_eq!(attempt["error"], "E_GRAPHQL_TIMEOUT", "{failed}");
    }
    assert_eq!(
        acme_receiver.requests().len(),
        1,
        "only the first event was POSTed"
    );
    let (_, shown) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{acme}"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(shown["status"], "active", "{shown}");

    // The feed shows each body with the query's result as it stands now, or why not.
    let (status, feed) = herald
        .call(
            "GET",
            &format!("/v1/subscriptions/{acme}/feed"),
            Some("acme"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{feed}");
    let items = feed["data"].as_array().unwrap();
    let by_event = |id: &str| items.iter().find(|i| i["event_id"] == id).unwrap().clone();
    assert_eq!(
        by_event("e-inv-1")["body"]["data"]["invoice"]["total"],
        42.5
    );
    let slow = by_event("e-slow");
    assert!(slow["body"].is_null(), "{slow}");
    assert!(
        slow["body_error"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{slow}"
    );
    herald.shutdown().await;
}
