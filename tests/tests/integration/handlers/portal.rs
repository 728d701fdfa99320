//! The consumer portal and the scopes of the management API, on in-memory ports: a
//! producer opens a session for a tenant, and the session's token reaches that tenant's
//! endpoints and deliveries alone, for the session's lifetime alone.

use std::time::Duration;

use herald_manage::handle;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

use super::manage::{Deps, call, deps, event_for, json_of, keyed_deps};

/// A management call whose token carries only `scopes`.
fn scoped(method: &str, path: &str, scopes: &[&str], body: Option<Value>) -> Request {
    let mut event = event_for(method, path, Some("acme"), body);
    let jwt = &mut event["requestContext"]["authorizer"]["jwt"];
    jwt["scopes"] = json!(scopes);
    jwt["claims"]["scope"] = json!(scopes.join(" "));
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// A call of the portal's API, which API Gateway passes on without an authorizer.
fn portal(method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Request {
    let mut event = event_for(method, &format!("/portal/api{path}"), None, body);
    if let Some(token) = token {
        event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// Opens a session for `tenant` and answers its token.
async fn open(deps: &Deps, tenant: &str, body: Option<Value>) -> String {
    let response = handle(
        deps,
        call("POST", "/v1/portal/sessions", Some(tenant), body),
    )
    .await;
    assert_eq!(response.status(), 201, "{}", json_of(&response));
    json_of(&response)["token"].as_str().unwrap().to_owned()
}

async fn create(deps: &Deps, tenant: &str, url: &str, types: Value) -> String {
    let response = handle(
        deps,
        call(
            "POST",
            "/v1/subscriptions",
            Some(tenant),
            Some(json!({"url": url, "event_types": types})),
        ),
    )
    .await;
    assert_eq!(response.status(), 201);
    json_of(&response)["id"].as_str().unwrap().to_owned()
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn a_session_opens_with_the_pages_url_on_the_callers_stage() {
    let deps = deps();
    let response = handle(
        &deps,
        call(
            "POST",
            "/v1/portal/sessions",
            Some("acme"),
            Some(json!({"lifetime": "30m", "event_types": ["order.created"]})),
        ),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body = json_of(&response);
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("hps_"), "{token}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(
        body["url"],
        format!(
            "https://r4nd0m1d2x.execute-api.us-east-1.amazonaws.com/dev/portal/index.html#token={token}"
        )
    );
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["expires_at"].clone()).unwrap();
    assert_eq!(
        expires - herald_core::ports::Clock::now(&deps.ports.clock),
        chrono::Duration::minutes(30)
    );
}

#[tokio::test]
async fn a_configured_page_url_is_used_as_given() {
    let mut deps = deps();
    deps.portal.base_url = Some("https://hooks.acme-app.example/portal/index.html".into());
    let response = handle(
        &deps,
        call("POST", "/v1/portal/sessions", Some("acme"), None),
    )
    .await;
    let body = json_of(&response);
    assert_eq!(
        body["url"],
        format!(
            "https://hooks.acme-app.example/portal/index.html#token={}",
            body["token"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn opening_a_session_needs_the_manage_scope() {
    let deps = deps();
    let response = handle(
        &deps,
        scoped("POST", "/v1/portal/sessions", &["herald/read"], None),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert_eq!(json_of(&response)["error"]["code"], "forbidden");
}

#[tokio::test]
async fn a_session_request_out_of_bounds_is_refused() {
    let deps = deps();
    for body in [
        json!({"lifetime": "10s"}),
        json!({"lifetime": "13h"}),
        json!({"lifetime": "soon"}),
        json!({"event_types": ["not a type!"]}),
        json!({"event_types": vec!["order.created"; 101]}),
    ] {
        let response = handle(
            &deps,
            call(
                "POST",
                "/v1/portal/sessions",
                Some("acme"),
                Some(body.clone()),
            ),
        )
        .await;
        assert_eq!(response.status(), 422, "{body}");
    }
    let unknown = handle(
        &deps,
        call(
            "POST",
            "/v1/portal/sessions",
            Some("acme"),
            Some(json!({"tenant": "other"})),
        ),
    )
    .await;
    assert!(
        unknown.status().is_client_error(),
        "a field for another tenant is refused"
    );
}

#[tokio::test]
async fn a_session_reaches_its_tenant_alone() {
    let deps = deps();
    let own = create(&deps, "acme", "https://a.example.com/", json!(["order.*"])).await;
    let theirs = create(&deps, "globex", "https://g.example.com/", json!(["*"])).await;
    let token = open(&deps, "acme", None).await;

    let list = handle(
        &deps,
        portal("GET", "/v1/subscriptions", Some(&token), None),
    )
    .await;
    assert_eq!(list.status(), 200);
    assert_eq!(header(&list, "cache-control"), "no-store");
    let ids: Vec<_> = json_of(&list)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![own.clone()]);

    // The other tenant's test event: its event and delivery are theirs alone too.
    let tested = handle(
        &deps,
        call(
            "POST",
            &format!("/v1/subscriptions/{theirs}/test"),
            Some("globex"),
            None,
        ),
    )
    .await;
    assert_eq!(tested.status(), 202);
    let tested = json_of(&tested);
    let (event, delivery) = (
        tested["event_id"].as_str().unwrap().to_owned(),
        tested["delivery_id"].as_str().unwrap().to_owned(),
    );
    for (method, path, body) in [
        ("GET", format!("/v1/subscriptions/{theirs}"), None),
        ("DELETE", format!("/v1/subscriptions/{theirs}"), None),
        (
            "PATCH",
            format!("/v1/subscriptions/{theirs}"),
            Some(json!({"description": "mine now"})),
        ),
        (
            "POST",
            format!("/v1/subscriptions/{theirs}/secret/rotate"),
            None,
        ),
        ("POST", format!("/v1/subscriptions/{theirs}/test"), None),
        (
            "GET",
            format!("/v1/subscriptions/{theirs}/deliveries"),
            None,
        ),
        ("GET", format!("/v1/subscriptions/{theirs}/feed"), None),
        (
            "POST",
            format!("/v1/subscriptions/{theirs}/replay"),
            Some(json!({"since": "2020-01-01T00:00:00Z"})),
        ),
        ("GET", format!("/v1/events/{event}"), None),
        ("GET", format!("/v1/deliveries/{delivery}"), None),
        ("POST", format!("/v1/deliveries/{delivery}/retry"), None),
    ] {
        let response = handle(&deps, portal(method, &path, Some(&token), body)).await;
        assert_eq!(response.status(), 404, "{method} {path}");
    }
    let theirs_event = handle(
        &deps,
        call("GET", &format!("/v1/events/{event}"), Some("globex"), None),
    )
    .await;
    assert_eq!(
        theirs_event.status(),
        200,
        "the event is there, for its tenant"
    );
    let still = handle(
        &deps,
        call(
            "GET",
            &format!("/v1/subscriptions/{theirs}"),
            Some("globex"),
            None,
        ),
    )
    .await;
    assert_eq!(
        still.status(),
        200,
        "the other tenant's endpoint is untouched"
    );

    let created = handle(
        &deps,
        portal(
            "POST",
            "/v1/subscriptions",
            Some(&token),
            Some(json!({"url": "https://b.example.com/", "event_types": ["invoice.paid"]})),
        ),
    )
    .await;
    assert_eq!(created.status(), 201);
    assert!(
        json_of(&created)["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    let in_acme = handle(&deps, call("GET", "/v1/subscriptions", Some("acme"), None)).await;
    assert_eq!(json_of(&in_acme)["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_portal_keeps_the_ssrf_guard() {
    let deps = deps();
    let token = open(&deps, "acme", None).await;
    let response = handle(
        &deps,
        portal(
            "POST",
            "/v1/subscriptions",
            Some(&token),
            Some(json!({"url": "https://internal.example.com/", "event_types": ["*"]})),
        ),
    )
    .await;
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn a_missing_forged_or_ended_session_is_unauthorized() {
    let deps = deps();
    let token = open(&deps, "acme", Some(json!({"lifetime": "5m"}))).await;
    let forged = format!("hps_{}", "A".repeat(43));
    for token in [
        None,
        Some("whsk_nope"),
        Some(forged.as_str()),
        Some("hps_short"),
    ] {
        let response = handle(&deps, portal("GET", "/v1/subscriptions", token, None)).await;
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(json_of(&response)["error"]["code"], "unauthorized");
    }
    let open_now = handle(&deps, portal("GET", "/session", Some(&token), None)).await;
    assert_eq!(open_now.status(), 200);

    deps.ports.clock.advance(Duration::from_secs(5 * 60 + 1));
    for path in ["/session", "/event-types", "/v1/subscriptions"] {
        let response = handle(&deps, portal("GET", path, Some(&token), None)).await;
        assert_eq!(response.status(), 401, "{path} after the session ended");
    }
}

#[tokio::test]
async fn a_session_cannot_open_sessions() {
    let deps = deps();
    let token = open(&deps, "acme", None).await;
    let response = handle(
        &deps,
        portal("POST", "/v1/portal/sessions", Some(&token), None),
    )
    .await;
    assert_eq!(response.status(), 404);
}

/// A leaked portal link reaches the page's endpoints and no further: what acts on the
/// whole tenant (its signing keys, which every receiver verifies with, erasure, sealing)
/// stays with the producer's own token.
#[tokio::test]
async fn a_session_cannot_act_on_the_whole_tenant() {
    let deps = keyed_deps();
    let own = create(&deps, "acme", "https://a.example.com/", json!(["order.*"])).await;
    let token = open(&deps, "acme", None).await;
    let keys = handle(&deps, portal("GET", "/v1/signing-keys", Some(&token), None)).await;
    assert_eq!(
        keys.status(),
        200,
        "the page shows the tenant's public keys"
    );
    let before = json_of(&keys);

    for (method, path) in [
        ("POST", "/v1/signing-keys/rotate".to_owned()),
        ("POST", "/v1/tenant/erase".to_owned()),
        ("POST", "/v1/tenant/seal".to_owned()),
        ("POST", format!("/v1/subscriptions/{own}/history/erase")),
        ("GET", "/v1/signing-keys/acme".to_owned()),
    ] {
        let response = handle(&deps, portal(method, &path, Some(&token), Some(json!({})))).await;
        assert_eq!(response.status(), 404, "{method} {path}");
    }

    let after = handle(&deps, portal("GET", "/v1/signing-keys", Some(&token), None)).await;
    assert_eq!(json_of(&after), before, "the keys were not rotated");
    let rotated = handle(
        &deps,
        call(
            "POST",
            "/v1/signing-keys/rotate",
            Some("acme"),
            Some(json!({})),
        ),
    )
    .await;
    assert_eq!(rotated.status(), 200, "the producer's token rotates them");
}

#[tokio::test]
async fn the_session_shows_the_producers_brand_and_the_types_to_suggest() {
    let mut deps = deps();
    deps.portal.name = Some("Acme Cloud".into());
    deps.portal.color = Some("#0a5cff".into());
    create(
        &deps,
        "acme",
        "https://a.example.com/",
        json!(["order.*", "invoice.paid"]),
    )
    .await;
    create(
        &deps,
        "globex",
        "https://g.example.com/",
        json!(["globex.secret"]),
    )
    .await;
    let token = open(
        &deps,
        "acme",
        Some(json!({"event_types": ["order.created", "invoice.paid"]})),
    )
    .await;

    let session = json_of(&handle(&deps, portal("GET", "/session", Some(&token), None)).await);
    assert_eq!(session["tenant"], "acme");
    assert_eq!(session["brand"]["name"], "Acme Cloud");
    assert_eq!(session["brand"]["color"], "#0a5cff");

    let types = json_of(&handle(&deps, portal("GET", "/event-types", Some(&token), None)).await);
    assert_eq!(
        types["data"],
        json!(["invoice.paid", "order.*", "order.created"]),
        "the session's types and the tenant's patterns, once each, and no other tenant's"
    );
}

#[tokio::test]
async fn the_types_to_suggest_come_from_every_page_of_the_tenants_endpoints() {
    let mut deps = deps();
    deps.max_subscriptions = 200;
    // More endpoints than a page of the listing (100), each with a type of its own.
    for i in 0..130 {
        create(
            &deps,
            "acme",
            &format!("https://a{i}.example.com/"),
            json!([format!("kind{i:03}.created")]),
        )
        .await;
    }
    let token = open(&deps, "acme", None).await;
    let types = json_of(&handle(&deps, portal("GET", "/event-types", Some(&token), None)).await);
    let expected: Vec<String> = (0..130).map(|i| format!("kind{i:03}.created")).collect();
    assert_eq!(
        types["data"],
        json!(expected),
        "the first endpoints' types are suggested as well as the newest hundred's"
    );
}

#[tokio::test]
async fn the_page_is_served_with_a_policy_that_loads_only_itself() {
    let mut deps = deps();
    deps.portal.frame_ancestors = vec!["https://app.acme.example".into()];
    let page = handle(&deps, call("GET", "/portal/index.html", None, None)).await;
    assert_eq!(page.status(), 200);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let policy = header(&page, "content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(
        policy.contains("frame-ancestors 'self' https://app.acme.example"),
        "{policy}"
    );
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = std::str::from_utf8(page.body().as_ref()).unwrap();
    assert!(html.contains("portal.js"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside origin"
    );

    for (path, kind) in [
        ("/portal/portal.js", "text/javascript"),
        ("/portal/portal.css", "text/css"),
    ] {
        let file = handle(&deps, call("GET", path, None, None)).await;
        assert_eq!(file.status(), 200, "{path}");
        assert!(header(&file, "content-type").starts_with(kind), "{path}");
    }
    let bare = handle(&deps, call("GET", "/portal", None, None)).await;
    assert_eq!(bare.status(), 302);
    assert_eq!(header(&bare, "location"), "portal/index.html");
    let missing = handle(&deps, call("GET", "/portal/secrets.txt", None, None)).await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_read_token_reads_and_cannot_change() {
    let deps = deps();
    let id = create(&deps, "acme", "https://a.example.com/", json!(["*"])).await;
    let read = ["herald/read"];
    let list = handle(&deps, scoped("GET", "/v1/subscriptions", &read, None)).await;
    assert_eq!(list.status(), 200);
    let path = format!("/v1/subscriptions/{id}");
    let got = handle(&deps, scoped("GET", &path, &read, None)).await;
    assert_eq!(got.status(), 200);
    for (method, path, body) in [
        ("PATCH", path.clone(), Some(json!({"status": "disabled"}))),
        ("DELETE", path.clone(), None),
        ("POST", format!("{path}/secret/rotate"), None),
        (
            "POST",
            "/v1/subscriptions".to_owned(),
            Some(json!({"url": "https://b.example.com/", "event_types": ["*"]})),
        ),
    ] {
        let response = handle(&deps, scoped(method, &path, &read, body)).await;
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    let publish_only = handle(
        &deps,
        scoped("GET", "/v1/subscriptions", &["herald/publish"], None),
    )
    .await;
    assert_eq!(publish_only.status(), 403);
    let keys = handle(
        &deps,
        scoped("GET", "/v1/signing-keys", &["herald/publish"], None),
    )
    .await;
    assert_eq!(
        keys.status(),
        200,
        "any of Herald's scopes reads the public keys"
    );
}

/// A call by an operator's token (no tenant claim), naming `tenant` in `Herald-Tenant`.
fn operator(method: &str, path: &str, tenant: Option<&str>, body: Option<Value>) -> Request {
    let mut event = event_for(method, path, Some("acme"), body);
    let jwt = &mut event["requestContext"]["authorizer"]["jwt"];
    jwt["claims"].as_object_mut().unwrap().remove("tenant");
    jwt["claims"]["scope"] = json!("herald/operator");
    jwt["scopes"] = json!(["herald/operator"]);
    if let Some(tenant) = tenant {
        event["headers"]["herald-tenant"] = json!(tenant);
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn an_operator_acts_for_the_tenant_it_names() {
    let deps = deps();
    let theirs = create(&deps, "globex", "https://g.example.com/", json!(["*"])).await;
    let listed = handle(
        &deps,
        operator("GET", "/v1/subscriptions", Some("globex"), None),
    )
    .await;
    assert_eq!(listed.status(), 200);
    assert_eq!(json_of(&listed)["data"][0]["id"], json!(theirs));

    let created = handle(
        &deps,
        operator(
            "POST",
            "/v1/subscriptions",
            Some("initech"),
            Some(json!({"url": "https://i.example.com/", "event_types": ["*"]})),
        ),
    )
    .await;
    assert_eq!(
        created.status(),
        201,
        "seed 000: support registers a tenant's URL"
    );
    let in_initech = handle(
        &deps,
        call("GET", "/v1/subscriptions", Some("initech"), None),
    )
    .await;
    assert_eq!(json_of(&in_initech)["data"].as_array().unwrap().len(), 1);

    let session = handle(
        &deps,
        operator("POST", "/v1/portal/sessions", Some("globex"), None),
    )
    .await;
    assert_eq!(session.status(), 201);
    assert_eq!(json_of(&session)["tenant"], "globex");

    let unnamed = handle(&deps, operator("GET", "/v1/subscriptions", None, None)).await;
    assert_eq!(unnamed.status(), 400);
    assert!(
        json_of(&unnamed)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Herald-Tenant"),
    );
    let bad = handle(
        &deps,
        operator("GET", "/v1/subscriptions", Some("no such/tenant"), None),
    )
    .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_tenants_token_cannot_name_another_tenant() {
    let deps = deps();
    create(&deps, "globex", "https://g.example.com/", json!(["*"])).await;
    let mut event = event_for("GET", "/v1/subscriptions", Some("acme"), None);
    event["headers"]["herald-tenant"] = json!("globex");
    let response = handle(
        &deps,
        lambda_http::request::from_str(&event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), 403);
    assert!(
        json_of(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("herald/operator")
    );
    event["headers"]["herald-tenant"] = json!("acme");
    let own = handle(
        &deps,
        lambda_http::request::from_str(&event.to_string()).unwrap(),
    )
    .await;
    assert_eq!(own.status(), 200, "naming its own tenant is fine");
}
