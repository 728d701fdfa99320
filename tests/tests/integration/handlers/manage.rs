//! The manage handler on in-memory ports, fed with the API Gateway events in `events/`.

use std::net::IpAddr;

use herald_core::subscription::url::{Resolver, UrlPolicy};
use herald_manage::{ManageDeps, handle};
use std::sync::Arc;

use herald_core::ports::{Adapters, Ports};
use herald_core::webhook::keys::SigningKeys;
use herald_testkit::{
    FixedClock, InMemoryDeliveryLedger, InMemoryDeliveryQueue, InMemoryEventLog,
    InMemorySessionStore, InMemorySubscriptionStore, InMemoryWebhookSender,
};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// Resolves every name to one public address, except `internal.example.com`.
pub(super) struct TestResolver;

impl Resolver for TestResolver {
    async fn resolve(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        match host {
            "internal.example.com" => Ok(vec!["10.1.2.3".parse().unwrap()]),
            "nowhere.example.com" => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            )),
            _ => Ok(vec!["93.184.215.14".parse().unwrap()]),
        }
    }
}

/// The in-memory set, with names resolved by `TestResolver`.
pub(super) enum TestPorts {}

impl Ports for TestPorts {
    type Subscriptions = InMemorySubscriptionStore;
    type Ledger = InMemoryDeliveryLedger;
    type Events = InMemoryEventLog;
    type Queue = InMemoryDeliveryQueue;
    type Sender = InMemoryWebhookSender;
    type Resolver = TestResolver;
    type Keys = Arc<SigningKeys>;
    type Clock = FixedClock;
    type Sessions = InMemorySessionStore;
}

pub(super) type Deps = ManageDeps<TestPorts>;

pub(super) fn deps() -> Deps {
    let memory = herald_testkit::adapters();
    ManageDeps {
        ports: Adapters {
            subscriptions: memory.subscriptions,
            ledger: memory.ledger,
            events: memory.events,
            queue: memory.queue,
            sender: memory.sender,
            resolver: TestResolver,
            keys: memory.keys,
            clock: memory.clock,
            sessions: memory.sessions,
        },
        tenant_claim: "tenant".into(),
        url_policy: UrlPolicy::default(),
        max_attempts: 40,
        portal: Default::default(),
        erasure_settle: std::time::Duration::ZERO,
        max_timeout: std::time::Duration::from_secs(30),
        max_subscriptions: 100,
        max_redeliveries_per_minute: 1_000,
        max_requests_per_second: 0,
        signing_key_overlap: std::time::Duration::from_secs(3600),
        graphql: herald_aws::graphql::GraphqlSource::off(),
    }
}

fn event_file(name: &str) -> Value {
    let path = format!("{}/../events/manage/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The route of template.yaml API Gateway matches `method` and `path` to, and its path
/// parameters; `$default` for a path no route of manage's takes.
fn route_of(method: &str, path: &str) -> (String, Option<Value>) {
    if let Some(rest) = path.strip_prefix("/portal/api/") {
        return (
            "ANY /portal/api/{proxy+}".into(),
            Some(json!({"proxy": rest})),
        );
    }
    if let Some(rest) = path.strip_prefix("/portal/").filter(|r| !r.is_empty()) {
        return ("GET /portal/{proxy+}".into(), Some(json!({"proxy": rest})));
    }
    for prefix in ["/v1/subscriptions/", "/v1/deliveries/", "/v1/events/"] {
        if let Some(rest) = path.strip_prefix(prefix).filter(|r| !r.is_empty()) {
            let key = format!("{method} {prefix}{{proxy+}}");
            return (key, Some(json!({"proxy": rest})));
        }
    }
    match path {
        "/v1/subscriptions" | "/v1/signing-keys" | "/v1/portal/sessions" | "/portal" => {
            (format!("{method} {path}"), None)
        }
        _ => ("$default".to_owned(), None),
    }
}

/// The request API Gateway sends for this call on the `dev` stage (the samples' stage).
pub(super) fn call(method: &str, path: &str, tenant: Option<&str>, body: Option<Value>) -> Request {
    lambda_http::request::from_str(&event_for(method, path, tenant, body).to_string()).unwrap()
}

/// The event behind [`call`], to change before it is sent.
pub(super) fn event_for(
    method: &str,
    path: &str,
    tenant: Option<&str>,
    body: Option<Value>,
) -> Value {
    let mut event = event_file("create-subscription.json");
    let (route_path, query) = path.split_once('?').unwrap_or((path, ""));
    let raw_path = format!("/dev{route_path}");
    let (route_key, parameters) = route_of(method, route_path);
    event["routeKey"] = json!(route_key);
    event["requestContext"]["routeKey"] = json!(route_key);
    match parameters {
        Some(parameters) => event["pathParameters"] = parameters,
        None => {
            event.as_object_mut().unwrap().remove("pathParameters");
        }
    }
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(raw_path);
    event["rawPath"] = json!(raw_path);
    event["rawQueryString"] = json!(query);
    match tenant {
        Some(t) => event["requestContext"]["authorizer"]["jwt"]["claims"]["tenant"] = json!(t),
        None => {
            event["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
        }
    }
    match body {
        Some(b) => event["body"] = json!(b.to_string()),
        None => {
            event.as_object_mut().unwrap().remove("body");
        }
    }
    event
}

pub(super) fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

async fn create(deps: &Deps, tenant: &str, body: Value) -> Response<Body> {
    handle(
        deps,
        call("POST", "/v1/subscriptions", Some(tenant), Some(body)),
    )
    .await
}

#[tokio::test]
async fn create_shows_the_secret_once() {
    let deps = deps();
    let created = handle(
        &deps,
        lambda_http::request::from_str(&event_file("create-subscription.json").to_string())
            .unwrap(),
    )
    .await;
    assert_eq!(created.status(), 201);
    // Secret-bearing, as every answer of a tenant's: no cache keeps it.
    assert_eq!(created.headers()["cache-control"], "no-store");
    let body = json_of(&created);
    assert!(body["id"].as_str().unwrap().starts_with("sub_"));
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(body["status"], "active");
    assert_eq!(body["event_types"], json!(["order.*"]));

    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
    let fetched = handle(&deps, call("GET", &path, Some("acme"), None)).await;
    assert_eq!(fetched.status(), 200);
    let fetched = json_of(&fetched);
    assert_eq!(fetched["url"], "https://example.com/webhooks/herald");
    assert!(
        fetched.get("secret").is_none(),
        "the secret is shown only on creation"
    );
}

#[tokio::test]
async fn list_pages_newest_first() {
    let deps = deps();
    let mut ids = Vec::new();
    for i in 0..5 {
        let response = create(
            &deps,
            "acme",
            json!({"url": format!("https://h{i}.example.com/"), "event_types": ["*"]}),
        )
        .await;
        ids.push(json_of(&response)["id"].as_str().unwrap().to_owned());
        deps.ports
            .clock
            .advance(std::time::Duration::from_millis(5));
    }
    create(
        &deps,
        "other",
        json!({"url": "https://x.example.com/", "event_types": ["*"]}),
    )
    .await;
    ids.reverse();

    let first = json_of(
        &handle(
            &deps,
            call("GET", "/v1/subscriptions?limit=3", Some("acme"), None),
        )
        .await,
    );
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = json_of(
        &handle(
            &deps,
            call(
                "GET",
                &format!("/v1/subscriptions?limit=3&cursor={cursor}"),
                Some("acme"),
                None,
            ),
        )
        .await,
    );
    let listed: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ids);
    assert!(second["next_cursor"].is_null());
    assert!(first["data"][0].get("secret").is_none());
}

#[tokio::test]
async fn another_tenants_subscription_is_not_found() {
    let deps = deps();
    let id = json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://h.example.com/", "event_types": ["*"]}),
        )
        .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/subscriptions/{id}");
    assert_eq!(
        handle(&deps, call("GET", &path, Some("mallory"), None))
            .await
            .status(),
        404
    );
    assert_eq!(
        handle(&deps, call("DELETE", &path, Some("mallory"), None))
            .await
            .status(),
        404
    );
    let listed = json_of(
        &handle(
            &deps,
            call("GET", "/v1/subscriptions", Some("mallory"), None),
        )
        .await,
    );
    assert_eq!(listed["data"], json!([]));

    assert_eq!(
        handle(&deps, call("DELETE", &path, Some("acme"), None))
            .await
            .status(),
        204
    );
    assert_eq!(
        handle(&deps, call("GET", &path, Some("acme"), None))
            .await
            .status(),
        404
    );
    assert_eq!(
        handle(&deps, call("DELETE", &path, Some("acme"), None))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn bad_input_is_a_json_4xx_and_nothing_is_stored() {
    let long_url = format!("https://h.example.com/{}", "a".repeat(2100));
    let cases: Vec<(Request, u16)> = vec![
        (
            lambda_http::request::from_str(
                &event_file("create-subscription-private-url.json").to_string(),
            )
            .unwrap(),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                None,
                Some(json!({"url": "https://h.example.com/", "event_types": ["*"]})),
            ),
            401,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://h.example.com/"})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://h.example.com/", "event_types": []})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://h.example.com/", "event_types": ["a..b"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://h.example.com/", "event_types": ["*"], "colour": 1})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "ftp://h.example.com/", "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "http://h.example.com/", "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://127.0.0.1/", "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://internal.example.com/", "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": "https://nowhere.example.com/", "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(json!({"url": long_url, "event_types": ["*"]})),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(
                    json!({"url": "https://h.example.com/", "event_types": ["*"], "filter": {"nope": 1}}),
                ),
            ),
            422,
        ),
        (
            call(
                "POST",
                "/v1/subscriptions",
                Some("acme"),
                Some(
                    json!({"url": "https://h.example.com/", "event_types": ["*"], "format": "xml"}),
                ),
            ),
            422,
        ),
        (
            call("GET", "/v1/subscriptions?limit=0", Some("acme"), None),
            400,
        ),
        (
            call("GET", "/v1/subscriptions?limit=101", Some("acme"), None),
            400,
        ),
        (
            call(
                "GET",
                "/v1/subscriptions?cursor=garbage",
                Some("acme"),
                None,
            ),
            400,
        ),
        (
            call("GET", "/v1/subscriptions/not-an-id", Some("acme"), None),
            404,
        ),
        (call("PUT", "/v1/subscriptions", Some("acme"), None), 405),
        (call("GET", "/v1/elsewhere", Some("acme"), None), 404),
    ];
    for (i, (request, status)) in cases.into_iter().enumerate() {
        let deps = deps();
        let response = handle(&deps, request).await;
        assert_eq!(
            response.status(),
            status,
            "case {i}: {}",
            json_of(&response)
        );
        let body = json_of(&response);
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "case {i}: {body}"
        );
        assert!(
            deps.ports.subscriptions.all().is_empty(),
            "case {i} stored a subscription"
        );
    }
}

#[tokio::test]
async fn malformed_json_and_wrong_media_type() {
    let deps = deps();
    let mut event = event_file("create-subscription.json");
    event["body"] = json!("{\"url\": ");
    let response = handle(
        &deps,
        lambda_http::request::from_str(&event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 400);
    event["headers"]["content-type"] = json!("application/x-www-form-urlencoded");
    let response = handle(
        &deps,
        lambda_http::request::from_str(&event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 415);
    assert!(deps.ports.subscriptions.all().is_empty());
}

#[tokio::test]
async fn a_refused_host_is_not_told_which_address_it_resolves_to() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://internal.example.com/in", "event_types": ["*"]}),
    )
    .await;
    assert_eq!(created.status(), 422);
    let refused = json_of(&created);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("internal.example.com") && message.contains("a private address"),
        "{message}"
    );
    assert!(!message.contains("10.1.2.3"), "{message}");

    // Moving a subscription there is refused alike.
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://hooks.example.com/in", "event_types": ["*"]}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let path = subscription_path(&created);
    let moved = handle(
        &deps,
        call(
            "PATCH",
            &path,
            Some("acme"),
            Some(json!({"url": "https://internal.example.com/in"})),
        ),
    )
    .await;
    assert_eq!(moved.status(), 422);
    let refused = json_of(&moved);
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("a private address"), "{message}");
    assert!(!message.contains("10.1.2.3"), "{message}");
}

#[tokio::test]
async fn an_event_is_read_back_by_its_id_within_its_tenant() {
    use herald_core::event::{Event, EventType};
    use herald_core::ids::{EventId, TenantId};
    use herald_core::ports::{Clock, EventLog};
    let deps = deps();
    let now = deps.ports.clock.now();
    let event = Event {
        id: EventId::parse("ord_1001.shipped").unwrap(),
        event_type: EventType::parse("order.shipped").unwrap(),
        occurred_at: now,
        data: json!({"order_id": "ord_1001", "total": 1200})
            .as_object()
            .unwrap()
            .clone(),
        subject: None,
    };
    let acme = TenantId::parse("acme").unwrap();
    deps.ports
        .events
        .accept(&acme, &event, "fingerprint", 1, now)
        .await
        .unwrap();

    let read = handle(
        &deps,
        call("GET", "/v1/events/ord_1001.shipped", Some("acme"), None),
    )
    .await;
    assert_eq!(read.status(), 200);
    let body = json_of(&read);
    assert_eq!(body["id"], "ord_1001.shipped");
    assert_eq!(body["type"], "order.shipped");
    assert_eq!(body["data"], json!({"order_id": "ord_1001", "total": 1200}));

    for (tenant, path) in [
        ("globex", "/v1/events/ord_1001.shipped"),
        ("acme", "/v1/events/ord_1002"),
        ("acme", "/v1/events/not%20an%20id"),
    ] {
        let response = handle(&deps, call("GET", path, Some(tenant), None)).await;
        assert_eq!(response.status(), 404, "{tenant} {path}");
    }
}

#[tokio::test]
async fn a_tenant_has_at_most_the_deployments_subscriptions() {
    let mut deps = deps();
    deps.max_subscriptions = 2;
    let body = json!({"url": "https://a.example.com/", "event_types": ["*"]});
    let first = create(&deps, "acme", body.clone()).await;
    assert_eq!(first.status(), 201);
    assert_eq!(create(&deps, "acme", body.clone()).await.status(), 201);
    let third = create(&deps, "acme", body.clone()).await;
    assert_eq!(third.status(), 422);
    let message = json_of(&third)["error"]["message"].to_string();
    assert!(message.contains("2 subscriptions"), "{message}");
    assert_eq!(
        create(&deps, "globex", body.clone()).await.status(),
        201,
        "another tenant's count is its own"
    );
    let id = json_of(&first)["id"].as_str().unwrap().to_owned();
    let deleted = handle(
        &deps,
        call(
            "DELETE",
            &format!("/v1/subscriptions/{id}"),
            Some("acme"),
            None,
        ),
    )
    .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(create(&deps, "acme", body).await.status(), 201);
}

#[tokio::test]
async fn a_subscription_may_set_a_rate_limit_of_whole_deliveries_a_second() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/", "event_types": ["*"], "rate_limit": 25}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body = json_of(&created);
    assert_eq!(body["rate_limit"], 25);
    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
    for bad in [json!(0), json!(1001), json!(2.5), json!("fast"), json!(-3)] {
        let response = create(
            &deps,
            "acme",
            json!({"url": "https://b.example.com/", "event_types": ["*"], "rate_limit": bad}),
        )
        .await;
        assert_eq!(response.status(), 422, "{bad}");
        assert!(
            json_of(&response)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("rate_limit"),
            "{bad}"
        );
        let patched = handle(
            &deps,
            call(
                "PATCH",
                &path,
                Some("acme"),
                Some(json!({"rate_limit": bad})),
            ),
        )
        .await;
        assert_eq!(patched.status(), 422, "PATCH {bad}");
    }
    let removed = handle(
        &deps,
        call(
            "PATCH",
            &path,
            Some("acme"),
            Some(json!({"rate_limit": null})),
        ),
    )
    .await;
    assert_eq!(removed.status(), 200);
    assert!(json_of(&removed).get("rate_limit").is_none());
}

#[tokio::test]
async fn a_subscription_may_be_ordered_by_itself_or_by_subject() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/", "event_types": ["*"], "ordering": "subject"}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body = json_of(&created);
    assert_eq!(body["ordering"], "subject");
    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
    for bad in [
        json!("fifo"),
        json!(true),
        json!(1),
        json!({"key": "subject"}),
    ] {
        let response = create(
            &deps,
            "acme",
            json!({"url": "https://b.example.com/", "event_types": ["*"], "ordering": bad}),
        )
        .await;
        assert_eq!(response.status(), 422, "{bad}");
        assert!(
            json_of(&response)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("ordering"),
            "{bad}"
        );
    }
    let patch = |ordering: serde_json::Value| {
        handle(
            &deps,
            call(
                "PATCH",
                &path,
                Some("acme"),
                Some(json!({ "ordering": ordering })),
            ),
        )
    };
    let changed = patch(json!("subscription")).await;
    assert_eq!(changed.status(), 200);
    assert_eq!(json_of(&changed)["ordering"], "subscription");
    assert_eq!(patch(json!("sometimes")).await.status(), 422);
    let removed = patch(serde_json::Value::Null).await;
    assert_eq!(removed.status(), 200);
    assert!(json_of(&removed).get("ordering").is_none());
}

#[tokio::test]
async fn a_subscription_may_have_its_own_timeout_within_the_deployments() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/", "event_types": ["*"], "timeout": "10s"}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body = json_of(&created);
    assert_eq!(body["timeout"], "10s");
    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
    let stored = deps.ports.subscriptions.all();
    assert_eq!(
        stored[0].timeout.map(|t| t.get()),
        Some(std::time::Duration::from_secs(10))
    );

    // The deployment here allows 30 s.
    for (timeout, needle) in [
        (json!("31s"), "at most 30s"),
        (json!("100ms"), "at least 1s"),
        (json!("soon"), "timeout"),
        (json!(12), "timeout"),
    ] {
        let response = create(
            &deps,
            "acme",
            json!({"url": "https://b.example.com/", "event_types": ["*"], "timeout": timeout}),
        )
        .await;
        assert_eq!(response.status(), 422, "{timeout}");
        let message = json_of(&response)["error"]["message"].to_string();
        assert!(message.contains(needle), "{timeout}: {message}");
        let patched = handle(
            &deps,
            call(
                "PATCH",
                &path,
                Some("acme"),
                Some(json!({"timeout": timeout})),
            ),
        )
        .await;
        assert_eq!(patched.status(), 422, "PATCH {timeout}");
    }
    let changed = handle(
        &deps,
        call("PATCH", &path, Some("acme"), Some(json!({"timeout": "2s"}))),
    )
    .await;
    assert_eq!(json_of(&changed)["timeout"], "2s");
    let reset = handle(
        &deps,
        call("PATCH", &path, Some("acme"), Some(json!({"timeout": null}))),
    )
    .await;
    assert_eq!(reset.status(), 200);
    assert!(
        json_of(&reset).get("timeout").is_none(),
        "back to the deployment's"
    );
}

#[tokio::test]
async fn a_subscription_may_have_its_own_retry_policy_within_the_deployments_bound() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/", "event_types": ["*"],
               "retry": {"schedule": "1m,5m,30m", "window": "1d"}}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body = json_of(&created);
    assert_eq!(
        body["retry"],
        json!({"schedule": "1m,5m,30m", "window": "1d"})
    );
    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());

    for (retry, needle) in [
        (json!({"schedule": "soon", "window": "1d"}), "retry:"),
        (json!({"schedule": "1m"}), "window"),
        // Five-minutely for a day: more attempts than this deployment's 40.
        (
            json!({"schedule": "5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m,5m", "window": "1d"}),
            "at most 40",
        ),
        // Longer than SQS keeps a message: it would vanish with no dead letter.
        (
            json!({"schedule": "exponential", "window": "60d"}),
            "at most 13d",
        ),
    ] {
        let response = create(
            &deps,
            "acme",
            json!({"url": "https://b.example.com/", "event_types": ["*"], "retry": retry}),
        )
        .await;
        assert_eq!(response.status(), 422, "{retry}");
        let message = json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(needle), "{retry}: {message}");
        let patched = handle(
            &deps,
            call("PATCH", &path, Some("acme"), Some(json!({"retry": retry}))),
        )
        .await;
        assert_eq!(patched.status(), 422, "PATCH {retry}");
    }

    let reset = handle(
        &deps,
        call("PATCH", &path, Some("acme"), Some(json!({"retry": null}))),
    )
    .await;
    assert_eq!(reset.status(), 200);
    assert!(
        json_of(&reset).get("retry").is_none(),
        "back to the deployment's"
    );
}

#[tokio::test]
async fn custom_header_values_are_write_only() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/", "event_types": ["*"],
               "headers": {"Authorization": "Bearer s3cret-token", "X-Team": "billing"}}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let body = json_of(&created);
    assert_eq!(
        body["headers"],
        json!({"authorization": "********", "x-team": "********"})
    );
    let path = format!("/v1/subscriptions/{}", body["id"].as_str().unwrap());
    for (method, route) in [("GET", path.as_str()), ("GET", "/v1/subscriptions")] {
        let read = handle(&deps, call(method, route, Some("acme"), None)).await;
        let text = std::str::from_utf8(read.body().as_ref())
            .unwrap()
            .to_owned();
        assert!(
            !text.contains("s3cret") && !text.contains("billing"),
            "{route}: {text}"
        );
    }

    // A read-modify-write keeps the values it never saw; a new value replaces.
    let patched = handle(
        &deps,
        call(
            "PATCH",
            &path,
            Some("acme"),
            Some(json!({"headers": {"authorization": "********", "x-team": "payments"}})),
        ),
    )
    .await;
    assert_eq!(patched.status(), 200);
    let stored = deps.ports.subscriptions.all().remove(0);
    assert_eq!(stored.headers["authorization"], "Bearer s3cret-token");
    assert_eq!(stored.headers["x-team"], "payments");

    let unknown = handle(
        &deps,
        call(
            "PATCH",
            &path,
            Some("acme"),
            Some(json!({"headers": {"x-new": "********"}})),
        ),
    )
    .await;
    assert_eq!(unknown.status(), 422);
    assert!(
        json_of(&unknown)["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("headers.x-new")
    );
}

/// A test event's data is held to what a publish's is: what the queue would refuse, or
/// deliver could not read back, is refused here by name rather than queued to fail.
#[tokio::test]
async fn a_test_events_data_is_held_to_a_publishs_limits() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/in", "event_types": ["*"]}),
    )
    .await;
    let path = format!("{}/test", subscription_path(&created));
    let send = |data: Value| call("POST", &path, Some("acme"), Some(json!({ "data": data })));
    let mut deep = json!(1);
    for _ in 0..herald_core::event::MAX_DATA_DEPTH {
        deep = json!({ "k": deep });
    }
    let huge = "x".repeat(herald_core::event::MAX_DATA_BYTES);
    for (data, status, starts) in [
        (json!({"x": "\u{FFFF}"}), 422, "data.x: "),
        (json!({"k": deep}), 422, "data: is nested more than 64"),
        (json!({"x": huge}), 413, "data: is "),
    ] {
        let refused = handle(&deps, send(data)).await;
        assert_eq!(refused.status(), status);
        let message = json_of(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.starts_with(starts), "{message}");
    }
    assert!(
        deps.ports.queue.enqueued().is_empty(),
        "nothing refused was queued"
    );
    let sent = handle(&deps, send(json!({"order": {"id": 1}}))).await;
    assert_eq!(sent.status(), 202, "{}", json_of(&sent));
    assert_eq!(deps.ports.queue.enqueued().len(), 1);
}

/// Whoever may change a subscription's URL (a manage token, a portal session) cannot have
/// the stored header values, often a receiver's credentials, sent to an origin of their
/// own: moving the URL to another scheme, host or port takes no stored value along.
#[tokio::test]
async fn stored_header_values_never_follow_the_url_to_another_origin() {
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://a.example.com/in", "event_types": ["*"],
               "headers": {"Authorization": "Bearer s3cret-token"}}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let path = subscription_path(&created);
    let patch = |body: Value| call("PATCH", &path, Some("acme"), Some(body));
    let message = |response: &Response<Body>| {
        json_of(response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    for url in ["https://a.example.com:8443/in", "https://b.example.com/in"] {
        // The URL alone, or with the placeholder sent back: refused, nothing changed.
        let alone = handle(&deps, patch(json!({"url": url}))).await;
        assert_eq!(alone.status(), 422, "{url}");
        assert!(
            message(&alone).starts_with("headers:"),
            "{}",
            message(&alone)
        );
        let masked = handle(
            &deps,
            patch(json!({"url": url, "headers": {"authorization": "********"}})),
        )
        .await;
        assert_eq!(masked.status(), 422, "{url}");
        assert!(message(&masked).starts_with("headers.authorization"));
        let stored = deps.ports.subscriptions.all().remove(0);
        assert_eq!(stored.url.as_str(), "https://a.example.com/in");
        assert_eq!(stored.headers["authorization"], "Bearer s3cret-token");
    }

    // Another path on the same origin keeps them; so does a move with the values sent.
    let same_origin = handle(&deps, patch(json!({"url": "https://a.example.com/v2"}))).await;
    assert_eq!(same_origin.status(), 200, "{}", json_of(&same_origin));
    assert_eq!(
        deps.ports.subscriptions.all().remove(0).headers["authorization"],
        "Bearer s3cret-token"
    );
    let resent = handle(
        &deps,
        patch(json!({"url": "https://b.example.com/in",
                     "headers": {"Authorization": "Bearer for-b"}})),
    )
    .await;
    assert_eq!(resent.status(), 200, "{}", json_of(&resent));
    let stored = deps.ports.subscriptions.all().remove(0);
    assert_eq!(stored.url.as_str(), "https://b.example.com/in");
    assert_eq!(stored.headers["authorization"], "Bearer for-b");
    let dropped = handle(
        &deps,
        patch(json!({"url": "https://c.example.com/in", "headers": {}})),
    )
    .await;
    assert_eq!(dropped.status(), 200, "{}", json_of(&dropped));
    assert!(deps.ports.subscriptions.all().remove(0).headers.is_empty());
}

#[tokio::test]
async fn a_delivery_at_the_most_attempts_a_record_keeps_is_not_sent_again() {
    use herald_core::delivery::{Attempt, DeliveryState, DeliveryTask, MAX_ATTEMPTS_KEPT};
    use herald_core::event::{Event, EventType};
    use herald_core::ids::{EventId, SubscriptionId, TenantId};
    use herald_core::ports::{
        AttemptResult, Claim, ClaimOutcome, Clock, DeliveryLedger, EventLog, Reopens,
    };
    let deps = deps();
    let created = json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://a.example.com/", "event_types": ["*"]}),
        )
        .await,
    );
    let subscription = SubscriptionId::parse(created["id"].as_str().unwrap()).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let now = deps.ports.clock.now();
    let event = Event {
        id: EventId::parse("ord_1").unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: now,
        data: Default::default(),
        subject: None,
    };
    deps.ports
        .events
        .accept(&acme, &event, "f", 1, now)
        .await
        .unwrap();
    let task = DeliveryTask::new(&acme, &subscription, &event, now);
    // A delivery forced again and again until its record holds the most it keeps.
    for number in 1..=MAX_ATTEMPTS_KEPT {
        let claim = Claim {
            reopens: Reopens::Any,
            token: format!("t{number}"),
            now,
            lease_until: now + chrono::Duration::seconds(60),
            expires_at: now + chrono::Duration::days(1),
        };
        let outcome = deps.ports.ledger.claim(&task, &claim).await.unwrap();
        assert!(matches!(outcome, ClaimOutcome::Claimed(_)), "{outcome:?}");
        let attempt = Attempt {
            number,
            at: now,
            status: Some(500),
            error: None,
            latency_ms: 1,
            response: String::new(),
            forced: true,
        };
        let result = AttemptResult {
            attempt: Some(attempt),
            state: DeliveryState::Failed,
            next_attempt_at: None,
            reason: Some("no".into()),
            dead_letter_owed: false,
            now,
        };
        deps.ports
            .ledger
            .finish(&acme, &task.delivery_id, &claim.token, &result)
            .await
            .unwrap();
    }
    let path = format!("/v1/deliveries/{}/retry", task.delivery_id);
    let refused = handle(&deps, call("POST", &path, Some("acme"), None)).await;
    assert_eq!(refused.status(), 409);
    assert!(
        json_of(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{MAX_ATTEMPTS_KEPT} attempts"))
    );
    let replay = handle(
        &deps,
        call(
            "POST",
            &format!("/v1/subscriptions/{subscription}/replay"),
            Some("acme"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
    )
    .await;
    assert_eq!(replay.status(), 202);
    assert_eq!(json_of(&replay)["queued"], 0, "the replay passes it by");
    assert!(deps.ports.queue.enqueued().is_empty());
}

#[tokio::test]
async fn redeliveries_share_a_per_minute_budget_per_tenant() {
    use herald_core::delivery::DeliveryTask;
    use herald_core::event::{Event, EventType};
    use herald_core::ids::{EventId, SubscriptionId, TenantId};
    use herald_core::ports::{Claim, Clock, DeliveryLedger, EventLog, Reopens};
    let mut deps = deps();
    deps.max_redeliveries_per_minute = 3;
    let created = json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://a.example.com/", "event_types": ["*"]}),
        )
        .await,
    );
    let subscription = SubscriptionId::parse(created["id"].as_str().unwrap()).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let now = deps.ports.clock.now();
    let mut ids = Vec::new();
    for i in 0..3 {
        let event = Event {
            id: EventId::parse(&format!("ord_{i}")).unwrap(),
            event_type: EventType::parse("order.paid").unwrap(),
            occurred_at: now,
            data: Default::default(),
            subject: None,
        };
        deps.ports
            .events
            .accept(&acme, &event, "f", 1, now)
            .await
            .unwrap();
        let task = DeliveryTask::new(&acme, &subscription, &event, now);
        let claim = Claim {
            reopens: Reopens::Nothing,
            token: "t".into(),
            now,
            lease_until: now + chrono::Duration::seconds(60),
            expires_at: now + chrono::Duration::days(1),
        };
        deps.ports.ledger.claim(&task, &claim).await.unwrap();
        ids.push(task.delivery_id);
    }
    let retry = |id: &herald_core::ids::DeliveryId| {
        call(
            "POST",
            &format!("/v1/deliveries/{id}/retry"),
            Some("acme"),
            None,
        )
    };
    assert_eq!(handle(&deps, retry(&ids[0])).await.status(), 202);
    assert_eq!(handle(&deps, retry(&ids[1])).await.status(), 202);
    // A replay of all three would pass the budget's last one: refused, nothing queued.
    let queued = deps.ports.queue.enqueued().len();
    let replay = handle(
        &deps,
        call(
            "POST",
            &format!("/v1/subscriptions/{subscription}/replay"),
            Some("acme"),
            Some(json!({"since": "2020-01-01T00:00:00Z", "state": "delivering"})),
        ),
    )
    .await;
    assert_eq!(replay.status(), 429, "{}", json_of(&replay));
    let wait: u64 = replay.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(json_of(&replay)["error"]["code"], "too_many_requests");
    assert_eq!(deps.ports.queue.enqueued().len(), queued);
    assert_eq!(handle(&deps, retry(&ids[2])).await.status(), 202);
    assert_eq!(handle(&deps, retry(&ids[2])).await.status(), 429);
    // Another tenant's budget is its own; the next minute's is whole again.
    deps.ports.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(handle(&deps, retry(&ids[2])).await.status(), 202);
}

/// A delivery of a new `order.paid` event to `subscription`, accepted at `at` and left in
/// `state`, its event kept.
async fn settled_delivery(
    deps: &Deps,
    tenant: &herald_core::ids::TenantId,
    subscription: &herald_core::ids::SubscriptionId,
    event_id: &str,
    at: chrono::DateTime<chrono::Utc>,
    state: herald_core::delivery::DeliveryState,
) -> herald_core::ids::DeliveryId {
    use herald_core::delivery::{Attempt, DeliveryTask};
    use herald_core::event::{Event, EventType};
    use herald_core::ids::EventId;
    use herald_core::ports::{AttemptResult, Claim, DeliveryLedger, EventLog, Reopens};
    let event = Event {
        id: EventId::parse(event_id).unwrap(),
        event_type: EventType::parse("order.paid").unwrap(),
        occurred_at: at,
        data: Default::default(),
        subject: None,
    };
    deps.ports
        .events
        .accept(tenant, &event, "f", 1, at)
        .await
        .unwrap();
    let task = DeliveryTask::new(tenant, subscription, &event, at);
    let claim = Claim {
        reopens: Reopens::Nothing,
        token: "t".into(),
        now: at,
        lease_until: at + chrono::Duration::seconds(60),
        expires_at: at + chrono::Duration::days(1),
    };
    deps.ports.ledger.claim(&task, &claim).await.unwrap();
    let result = AttemptResult {
        attempt: Some(Attempt {
            number: 1,
            at,
            status: Some(200),
            error: None,
            latency_ms: 1,
            response: String::new(),
            forced: false,
        }),
        state,
        next_attempt_at: None,
        reason: None,
        dead_letter_owed: false,
        now: at,
    };
    deps.ports
        .ledger
        .finish(tenant, &task.delivery_id, "t", &result)
        .await
        .unwrap();
    task.delivery_id
}

#[tokio::test]
async fn a_replay_is_paged_by_its_cursor_and_queues_every_delivery_of_its_range_once() {
    use herald_core::delivery::DeliveryState;
    use herald_core::ids::SubscriptionId;
    use herald_core::ports::Clock;
    let deps = deps();
    let sub_of = |created: Value| SubscriptionId::parse(created["id"].as_str().unwrap()).unwrap();
    let subscription = sub_of(json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://a.example.com/", "event_types": ["*"]}),
        )
        .await,
    ));
    let other = sub_of(json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://b.example.com/", "event_types": ["*"]}),
        )
        .await,
    ));
    let acme = acme();
    // Whole milliseconds, as ids keep acceptance times, so the range's edges are exact.
    let start = chrono::DateTime::from_timestamp_millis(
        (deps.ports.clock.now() - chrono::Duration::hours(1)).timestamp_millis(),
    )
    .unwrap();
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    // 150 delivered deliveries in the range, more than a call queues…
    let mut in_range = Vec::new();
    for i in 0..150 {
        let id = settled_delivery(
            &deps,
            &acme,
            &subscription,
            &format!("ord_{i}"),
            at(i),
            DeliveryState::Delivered,
        )
        .await;
        in_range.push(id);
    }
    // …and what the replay does not take: another state, before `since`, at `until`,
    // another subscription's.
    settled_delivery(
        &deps,
        &acme,
        &subscription,
        "failed",
        at(20),
        DeliveryState::Failed,
    )
    .await;
    settled_delivery(
        &deps,
        &acme,
        &subscription,
        "early",
        at(-1),
        DeliveryState::Delivered,
    )
    .await;
    settled_delivery(
        &deps,
        &acme,
        &subscription,
        "late",
        at(150),
        DeliveryState::Delivered,
    )
    .await;
    let theirs = settled_delivery(
        &deps,
        &acme,
        &other,
        "theirs",
        at(5),
        DeliveryState::Delivered,
    )
    .await;

    let path = format!("/v1/subscriptions/{subscription}/replay");
    let range = json!({
        "since": start.to_rfc3339(),
        "until": at(150).to_rfc3339(),
        "state": "delivered",
    });
    let replay = |cursor: Option<&Value>| {
        let mut body = range.clone();
        if let Some(cursor) = cursor {
            body["cursor"] = cursor.clone();
        }
        call("POST", &path, Some("acme"), Some(body))
    };
    let mut answers = Vec::new();
    let mut cursor: Option<Value> = None;
    loop {
        let answer = handle(&deps, replay(cursor.as_ref())).await;
        assert_eq!(answer.status(), 202, "{}", json_of(&answer));
        let answer = json_of(&answer);
        assert!(answer["queued"].as_u64().unwrap() <= 100, "{answer}");
        assert_eq!(answer["more"], answer["cursor"].is_string(), "{answer}");
        answers.push(answer.clone());
        assert!(answers.len() <= 3, "the walk ends: {answers:?}");
        match answer["cursor"] {
            Value::Null => break,
            ref next => cursor = Some(next.clone()),
        }
    }
    let queued: Vec<_> = answers
        .iter()
        .map(|a| a["queued"].as_u64().unwrap())
        .collect();
    assert_eq!(queued.iter().sum::<u64>(), 150, "{answers:?}");
    assert!(answers.iter().all(|a| a["skipped"] == 0), "{answers:?}");
    let mut enqueued: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|task| {
            assert!(task.forced);
            task.delivery_id
        })
        .collect();
    enqueued.sort();
    in_range.sort();
    assert_eq!(enqueued, in_range, "every delivery of the range, each once");

    // A cursor continues its own walk alone: with another state or range, or one that is
    // not a cursor, or one of another subscription's walk, the call is refused and nothing
    // is queued.
    let first = answers[0]["cursor"].clone();
    let mut other_state = range.clone();
    other_state["state"] = json!("failed");
    other_state["cursor"] = first.clone();
    let mut other_range = range.clone();
    other_range["until"] = json!(at(149).to_rfc3339());
    other_range["cursor"] = first.clone();
    let mut not_a_cursor = range.clone();
    not_a_cursor["cursor"] = json!("bogus");
    let mut tag = first
        .as_str()
        .unwrap()
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();
    tag.insert(0, '.');
    let mut another_subscription = range.clone();
    another_subscription["cursor"] = json!(format!("{theirs}{tag}"));
    for (body, says) in [
        (other_state, "another since, until or state"),
        (other_range, "another since, until or state"),
        (not_a_cursor, "not a cursor"),
        (another_subscription, "not a cursor"),
    ] {
        let refused = handle(&deps, call("POST", &path, Some("acme"), Some(body.clone()))).await;
        assert_eq!(refused.status(), 400, "{body}");
        let message = json_of(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.starts_with("cursor: ") && message.contains(says),
            "{message}"
        );
    }
    assert_eq!(deps.ports.queue.enqueued().len(), 150);
    // Another tenant's call finds no subscription, cursor or not.
    let mut with_cursor = range.clone();
    with_cursor["cursor"] = first;
    let globex = handle(
        &deps,
        call("POST", &path, Some("globex"), Some(with_cursor)),
    )
    .await;
    assert_eq!(globex.status(), 404);
}

/// On a deployment that lets a tenant queue fewer redeliveries a minute than a replay's
/// page, a page is never more than that, so the walk goes on a minute at a time.
#[tokio::test]
async fn a_replays_page_is_never_more_than_a_tenant_may_queue_a_minute() {
    use herald_core::delivery::DeliveryState;
    use herald_core::ids::SubscriptionId;
    use herald_core::ports::Clock;
    let mut deps = deps();
    deps.max_redeliveries_per_minute = 40;
    let created = json_of(
        &create(
            &deps,
            "acme",
            json!({"url": "https://a.example.com/", "event_types": ["*"]}),
        )
        .await,
    );
    let subscription = SubscriptionId::parse(created["id"].as_str().unwrap()).unwrap();
    let start = chrono::DateTime::from_timestamp_millis(
        (deps.ports.clock.now() - chrono::Duration::hours(1)).timestamp_millis(),
    )
    .unwrap();
    for i in 0..50 {
        let at = start + chrono::Duration::seconds(i);
        settled_delivery(
            &deps,
            &acme(),
            &subscription,
            &format!("ord_{i}"),
            at,
            DeliveryState::Failed,
        )
        .await;
    }
    let path = format!("/v1/subscriptions/{subscription}/replay");
    let replay = |cursor: Value| {
        let body = json!({"since": start.to_rfc3339(), "cursor": cursor});
        call("POST", &path, Some("acme"), Some(body))
    };
    let first = handle(&deps, replay(Value::Null)).await;
    assert_eq!(first.status(), 202);
    let first = json_of(&first);
    assert_eq!(
        (first["queued"].as_u64(), first["more"].as_bool()),
        (Some(40), Some(true)),
        "{first}"
    );
    // The minute's redeliveries are spent: refused, nothing queued, the cursor still good.
    let refused = handle(&deps, replay(first["cursor"].clone())).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(deps.ports.queue.enqueued().len(), 40);
    deps.ports.clock.advance(std::time::Duration::from_secs(60));
    let second = handle(&deps, replay(first["cursor"].clone())).await;
    assert_eq!(second.status(), 202);
    let second = json_of(&second);
    assert_eq!(
        (second["queued"].as_u64(), second["cursor"].clone()),
        (Some(10), Value::Null),
        "{second}"
    );
    let mut queued: Vec<_> = deps
        .ports
        .queue
        .enqueued()
        .into_iter()
        .map(|t| t.delivery_id)
        .collect();
    queued.sort();
    queued.dedup();
    assert_eq!(queued.len(), 50);
}

/// Deps whose deployment offers `v1a` and RSA signatures.
/// `/v1/subscriptions/<id>` of the subscription a create answered with.
fn subscription_path(created: &Response<Body>) -> String {
    format!(
        "/v1/subscriptions/{}",
        json_of(created)["id"].as_str().unwrap()
    )
}

pub(super) fn keyed_deps() -> Deps {
    let mut deps = deps();
    deps.ports.keys = Arc::new(
        SigningKeys::new(
            Some(&herald_core::webhook::keys::generate_ed25519(
                &mut rand::rng(),
            )),
            Some(include_str!(
                "../../../../crates/testkit/testdata/rsa-2048.pem"
            )),
            "fluent-signature",
            "flex.signature",
        )
        .unwrap(),
    );
    deps
}

fn acme() -> herald_core::ids::TenantId {
    herald_core::ids::TenantId::parse("acme").unwrap()
}

/// Turning asymmetric signatures on in a change makes the tenant's keys as creating a
/// subscription with them does: otherwise the deployment's keys, which sign only for
/// tenants from before tenants had keys, would sign for it, and its receivers would find
/// no keys of its own to verify with.
#[tokio::test]
async fn signatures_turned_on_in_a_change_make_the_tenants_keys() {
    use herald_core::ports::SubscriptionStore;
    let deps = keyed_deps();
    let plain = json!({"url": "https://example.com/in", "event_types": ["*"]});
    let created = create(&deps, "acme", plain).await;
    assert_eq!(created.status(), 201);
    assert_eq!(
        deps.ports
            .subscriptions
            .signing_keys(&acme())
            .await
            .unwrap(),
        None
    );
    let path = subscription_path(&created);
    let patched = handle(
        &deps,
        call(
            "PATCH",
            &path,
            Some("acme"),
            Some(json!({"signatures": {"ed25519": true, "rsa": true}})),
        ),
    )
    .await;
    assert_eq!(patched.status(), 200, "{}", json_of(&patched));
    let keys = deps
        .ports
        .subscriptions
        .signing_keys(&acme())
        .await
        .unwrap();
    assert!(keys.is_some(), "the tenant's own keys, made on first use");
    let public = handle(&deps, call("GET", "/v1/signing-keys/acme", None, None)).await;
    assert_eq!(public.status(), 200, "its receivers find them");
}

#[tokio::test]
async fn a_tenants_signing_keys_are_made_on_first_use_and_rotated_up_to_the_cap() {
    use herald_core::ports::{Clock, SubscriptionStore};
    let deps = keyed_deps();
    let public = |tenant: &str| call("GET", &format!("/v1/signing-keys/{tenant}"), None, None);
    assert_eq!(
        handle(&deps, public("acme")).await.status(),
        404,
        "the public route makes none"
    );

    let plain = json!({"url": "https://example.com/in", "event_types": ["*"]});
    assert_eq!(create(&deps, "acme", plain).await.status(), 201);
    assert_eq!(
        deps.ports
            .subscriptions
            .signing_keys(&acme())
            .await
            .unwrap(),
        None
    );

    // The tenant's first subscription asking for asymmetric signatures makes its pair,
    // which signs at once: its receivers were never told another key.
    let signed = json!({
        "url": "https://example.com/in", "event_types": ["*"],
        "signatures": {"ed25519": true, "rsa": true}
    });
    assert_eq!(create(&deps, "acme", signed.clone()).await.status(), 201);
    let stored = deps
        .ports
        .subscriptions
        .signing_keys(&acme())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.version, stored.keys.len()), (1, 1));
    assert_eq!(stored.keys[0].signs_from, deps.ports.clock.now());
    assert_eq!(create(&deps, "acme", signed).await.status(), 201);
    let again = deps
        .ports
        .subscriptions
        .signing_keys(&acme())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, stored, "made once");

    let own = json_of(&handle(&deps, call("GET", "/v1/signing-keys", Some("acme"), None)).await);
    let served = handle(&deps, public("acme")).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["cache-control"], "public, max-age=300");
    assert_eq!(json_of(&served), own);
    assert_eq!(own["ed25519"], json!(stored.keys[0].ed25519_public));
    assert_eq!(own["rsa"], json!(stored.keys[0].rsa_public));
    assert_eq!(own["rsa_sha512_header"], "fluent-signature");
    assert_eq!(own["keys"][0]["kid"], json!(stored.keys[0].kid));
    let text = own.to_string();
    assert!(!text.contains("whsk_") && !text.contains(&stored.keys[0].rsa_private[..40]));

    // Two rotations make three live pairs; a third waits for the oldest to retire.
    for live in [2, 3] {
        let rotated = handle(
            &deps,
            call("POST", "/v1/signing-keys/rotate", Some("acme"), None),
        )
        .await;
        assert_eq!(rotated.status(), 200);
        let rotated = json_of(&rotated);
        assert_eq!(rotated["keys"].as_array().unwrap().len(), live, "{rotated}");
        assert_eq!(
            rotated["rsa"], own["rsa"],
            "the first pair's RSA key is in force"
        );
        assert_eq!(rotated["keys"][live - 1]["kid"], own["keys"][0]["kid"]);
    }
    let refused = handle(
        &deps,
        call("POST", "/v1/signing-keys/rotate", Some("acme"), None),
    )
    .await;
    assert_eq!(refused.status(), 409);
    assert!(
        json_of(&refused)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 live signing keys")
    );
    // Past the overlap the older pairs retired: the newest alone, and a rotation goes on.
    deps.ports
        .clock
        .advance(std::time::Duration::from_secs(3601));
    let after = json_of(&handle(&deps, public("acme")).await);
    assert_eq!(after["keys"].as_array().unwrap().len(), 1, "{after}");
    let rotated = handle(
        &deps,
        call("POST", "/v1/signing-keys/rotate", Some("acme"), None),
    )
    .await;
    assert_eq!(rotated.status(), 200);

    // Another tenant has none, and a read-only token may not rotate.
    assert_eq!(handle(&deps, public("globex")).await.status(), 404);
    let mut read_only = event_for("POST", "/v1/signing-keys/rotate", Some("acme"), None);
    read_only["requestContext"]["authorizer"]["jwt"]["scopes"] = json!(["herald/read"]);
    read_only["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = json!("herald/read");
    let read_only = lambda_http::request::from_str(&read_only.to_string()).unwrap();
    assert_eq!(handle(&deps, read_only).await.status(), 403);
}

#[tokio::test]
async fn a_tenant_that_signed_with_the_deployments_keys_gets_a_pair_in_force_after_the_overlap() {
    use herald_core::ports::{Clock, SubscriptionStore};
    let deps = keyed_deps();
    let signed = json!({
        "url": "https://example.com/in", "event_types": ["*"], "signatures": {"ed25519": true}
    });
    assert_eq!(create(&deps, "acme", signed).await.status(), 201);
    // As if the subscription came from before tenants had keys of their own.
    assert!(
        deps.ports
            .subscriptions
            .delete_signing_keys(&acme())
            .await
            .unwrap()
    );

    let own = json_of(&handle(&deps, call("GET", "/v1/signing-keys", Some("acme"), None)).await);
    let stored = deps
        .ports
        .subscriptions
        .signing_keys(&acme())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.keys[0].signs_from,
        deps.ports.clock.now() + chrono::Duration::seconds(3600),
        "the deployment's keys sign beside it for the overlap"
    );
    assert_eq!(own["rsa"], Value::Null, "{own}");
    assert_eq!(
        own["keys"][0]["signs_from"],
        json!(stored.keys[0].signs_from)
    );
}

#[tokio::test]
async fn a_deployment_without_asymmetric_keys_makes_and_rotates_none() {
    use herald_core::ports::SubscriptionStore;
    let deps = deps();
    let keys = handle(&deps, call("GET", "/v1/signing-keys", Some("acme"), None)).await;
    assert_eq!(keys.status(), 200);
    assert_eq!(
        json_of(&keys),
        json!({"ed25519": null, "rsa": null, "rsa_sha512_header": null, "rsa_md5_header": null})
    );
    let rotated = handle(
        &deps,
        call("POST", "/v1/signing-keys/rotate", Some("acme"), None),
    )
    .await;
    assert_eq!(rotated.status(), 422);
    assert_eq!(
        deps.ports
            .subscriptions
            .signing_keys(&acme())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_tenant_past_its_requests_a_second_is_answered_429_and_the_others_are_not() {
    let mut deps = deps();
    deps.max_requests_per_second = 2;
    let list = |tenant: &str| call("GET", "/v1/subscriptions", Some(tenant), None);
    for _ in 0..2 {
        assert_eq!(handle(&deps, list("acme")).await.status(), 200);
    }
    let refused = handle(&deps, list("acme")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(handle(&deps, list("globex")).await.status(), 200);
    // The public keys route has no caller to count, and is not held back.
    let public = call("GET", "/v1/signing-keys/acme", None, None);
    assert_ne!(handle(&deps, public).await.status(), 429);
    deps.ports.clock.advance(std::time::Duration::from_secs(1));
    assert_eq!(handle(&deps, list("acme")).await.status(), 200);
}

#[tokio::test]
async fn sealing_on_a_deployment_without_a_secrets_key_is_refused() {
    let deps = deps();
    let mut event = event_for("POST", "/v1/tenant/seal", Some("ops"), None);
    event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!(["herald/operator"]);
    event["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = json!("herald/operator");
    event["headers"]["herald-tenant"] = json!("acme");
    let response = handle(
        &deps,
        lambda_http::request::from_str(&event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 422, "{}", json_of(&response));
    assert!(
        json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no secrets key")
    );
}

/// Two first uses at once make one set: the one whose write lost reads the winner's.
#[tokio::test]
async fn two_first_uses_at_once_make_one_set_of_keys() {
    let deps = keyed_deps();
    let ask = || handle(&deps, call("GET", "/v1/signing-keys", Some("acme"), None));
    let (a, b) = tokio::join!(ask(), ask());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let (a, b) = (json_of(&a), json_of(&b));
    assert_eq!(a["keys"][0]["kid"], b["keys"][0]["kid"], "{a} {b}");
    assert_eq!(a["keys"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_feed_of_large_events_is_cut_into_pages_a_lambda_can_answer() {
    use herald_core::delivery::DeliveryTask;
    use herald_core::event::{Event, EventType};
    use herald_core::ids::{EventId, SubscriptionId};
    use herald_core::ports::{Claim, Clock, DeliveryLedger, EventLog, Reopens};
    let deps = deps();
    let created = create(
        &deps,
        "acme",
        json!({"url": "https://hooks.example.com/in", "event_types": ["*"]}),
    )
    .await;
    let sub = SubscriptionId::parse(json_of(&created)["id"].as_str().unwrap()).unwrap();
    let now = deps.ports.clock.now();
    // Thirty events of 900 KiB, each delivered to the subscription: 26 MiB in all.
    for i in 0..30 {
        let event = Event {
            id: EventId::parse(&format!("big_{i}")).unwrap(),
            event_type: EventType::parse("report.ready").unwrap(),
            occurred_at: now,
            data: json!({"blob": "x".repeat(900 * 1024)})
                .as_object()
                .unwrap()
                .clone(),
            subject: None,
        };
        let accepted = now + chrono::Duration::milliseconds(i);
        deps.ports
            .events
            .accept(&acme(), &event, &event.fingerprint(), 1, accepted)
            .await
            .unwrap();
        let task = DeliveryTask::new(&acme(), &sub, &event, accepted);
        let claim = Claim {
            reopens: Reopens::Nothing,
            token: format!("t{i}"),
            now: accepted,
            lease_until: accepted + chrono::Duration::seconds(60),
            expires_at: accepted + chrono::Duration::days(1),
        };
        deps.ports.ledger.claim(&task, &claim).await.unwrap();
    }

    let (mut seen, mut pages, mut cursor) = (Vec::new(), Vec::new(), None::<String>);
    let mut loads = Vec::new();
    loop {
        let before = deps.ports.events.loads();
        let path = match &cursor {
            None => format!("/v1/subscriptions/{sub}/feed?limit=100"),
            Some(c) => format!("/v1/subscriptions/{sub}/feed?limit=100&cursor={c}"),
        };
        let response = handle(&deps, call("GET", &path, Some("acme"), None)).await;
        assert_eq!(response.status(), 200);
        // Within Lambda's 6 MB answer, with room for API Gateway's envelope.
        assert!(
            response.body().len() <= 5_500_000,
            "{}",
            response.body().len()
        );
        let page = json_of(&response);
        let items = page["data"].as_array().unwrap();
        pages.push(items.len());
        loads.push(deps.ports.events.loads() - before);
        for item in items {
            assert_eq!(
                item["body"]["data"]["blob"].as_str().unwrap().len(),
                900 * 1024
            );
            seen.push(item["event_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).map(|i| format!("big_{i}")).collect();
    assert_eq!(seen, expected, "every item once, in order");
    assert_eq!(pages[0], 5, "five of 900 KiB fit in 5 MiB: {pages:?}");
    // A page reads its events a few at a time and stops once the next would not fit:
    // the first read eight (the five that fit, then three more at once), and five again
    // for the page as cut, not all thirty a limit of 100 lists.
    assert_eq!(loads[0], 8 + 5, "{loads:?}");
}
