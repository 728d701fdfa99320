//! AWS's own local runner: `sam local invoke` with every file of `events/`, and `sam local
//! start-api` with a call to every route, run the release bootstraps `sam build` made, in
//! Docker, against moto; and they answer as Herald's local runner does for the same calls.
//! Docker is started if it is not running; these tests fail, never skip, without it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use herald_aws::dynamo::{DynamoDeliveryLedger, DynamoSubscriptionStore};
use herald_aws::lambda::wiring::{Function, SqsFunction};
use herald_core::ids::{SubscriptionId, TenantId};
use herald_core::ports::{DeliveryLedger, DeliveryQuery, SubscriptionStore};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_local::{Provisioned, provision, template_path};
use herald_testkit::active_subscription;
use herald_tests::aws::{TestAws, sdk_config};
use herald_tests::emulator::{event_file, event_file_now, event_files, workspace_root};
use herald_tests::runner::RunnerProcess;
use herald_tests::sam::{Sam, SamHerald, sam_variables, settings};
use regex_lite::Regex;
use serde_json::{Value, json};

/// `example.com`'s public address, for the registration's SSRF check in both runners.
const PUBLIC_DNS: [(&str, &str); 1] = [("example.com", "93.184.215.14")];
/// A webhook URL that refuses connections wherever it is tried (SAM's containers cannot
/// reach a receiver on this machine through the SSRF guard: Docker's bridge is private).
const CLOSED_PORT_URL: &str = "http://127.0.0.1:1/webhooks";
const TENANT: &str = "acme";

/// The runner's tables and queues (it made them under its prefix; provisioning again
/// finds them).
async fn runner_resources(runner: &RunnerProcess) -> Provisioned {
    provision(&sdk_config(), &runner.prefix, &template_path())
        .await
        .expect("the local runner's resources")
}

/// Generated values (ids, secrets, times, latencies) replaced by their kind, so two
/// runs' answers compare.
fn normalized(value: &Value) -> Value {
    static PATTERNS: std::sync::LazyLock<Vec<(Regex, &str)>> = std::sync::LazyLock::new(|| {
        [
            (r"sub_[0-9A-HJKMNP-TV-Z]{26}", "sub_*"),
            (r"msg_[0-9A-HJKMNP-TV-Z]{52}", "msg_*"),
            (r"evt_[0-9A-HJKMNP-TV-Z]{26}", "evt_*"),
            (r"whsec_[A-Za-z0-9+/=]+", "whsec_*"),
            (r"hps_[A-Za-z0-9_-]+", "hps_*"),
            // Each side makes its tenants' own signing keys.
            (r"whpk_[A-Za-z0-9+/=]+", "whpk_*"),
            (r"^key_[A-Za-z0-9_-]{12}$", "key_*"),
            (r"^MII[A-Za-z0-9+/=]{200,}$", "<rsa public key>"),
            // The two listen on ports of their own.
            (r"^https?://[^/]+/", "<origin>/"),
            (
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                "<time>",
            ),
        ]
        .into_iter()
        .map(|(p, r)| (Regex::new(p).unwrap(), r))
        .collect()
    });
    match value {
        Value::String(s) => {
            let mut s = s.clone();
            for (pattern, replacement) in PATTERNS.iter() {
                s = pattern.replace_all(&s, *replacement).into_owned();
            }
            Value::String(s)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "latency_ms" => json!(0),
                        // Cursors embed ids and positions of each run's own.
                        "next_cursor" if !v.is_null() => json!("<cursor>"),
                        _ => normalized(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A function's HTTP answer (`statusCode`, base64 or text `body`) as (status, JSON body).
fn function_answer(answer: &Value) -> (u16, Value) {
    let status = answer["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {answer}")) as u16;
    let text = answer["body"].as_str().unwrap_or("");
    let bytes = if answer["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    } else {
        text.as_bytes().to_vec()
    };
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One HTTP call; (status, JSON body or null).
async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .timeout(Duration::from_secs(120));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The call an HTTP events file records, made to the local runner at `base` on the
/// event's stage (its execute-api form).
async fn same_call_to(base: &str, event: &Value) -> (u16, Value) {
    let context = &event["requestContext"];
    let method = context["http"]["method"].as_str().unwrap();
    let parameters = event["pathParameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let route = herald_aws::lambda::gateway::route_path(
        event["routeKey"].as_str(),
        |name| parameters.get(name).and_then(Value::as_str),
        context["stage"].as_str(),
        event["rawPath"].as_str().unwrap(),
    )
    .into_owned();
    let stage = match context["stage"].as_str().unwrap() {
        "$default" => String::new(),
        stage => format!("/{stage}"),
    };
    let query = event["rawQueryString"].as_str().unwrap_or("");
    let url = if query.is_empty() {
        format!("{base}{stage}{route}")
    } else {
        format!("{base}{stage}{route}?{query}")
    };
    let mut headers = Vec::new();
    for name in ["authorization", "content-type"] {
        if let Some(value) = event["headers"][name].as_str() {
            headers.push((name, value));
        }
    }
    let body = event["body"].as_str().map(|b| {
        if event["isBase64Encoded"] == true {
            base64::engine::general_purpose::STANDARD.decode(b).unwrap()
        } else {
            b.as_bytes().to_vec()
        }
    });
    http(method, &url, &headers, body).await
}

/// The subscription the deliver files name, pointed at `url`, in a deployment's table.
async fn subscription_of_the_deliver_files(provisioned: &Provisioned, url: &str) {
    let store = DynamoSubscriptionStore::new(
        aws_sdk_dynamodb::Client::new(&sdk_config()),
        provisioned.subscriptions_table().to_owned(),
    );
    let loopback = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
        ..UrlPolicy::default()
    };
    store
        .create(&active_subscription(
            TENANT,
            SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
            SubscriptionUrl::parse(url, &loopback).unwrap(),
            &["order.*"],
        ))
        .await
        .unwrap();
}

/// A deployment's delivery records of that subscription, as the attempt log shows them.
async fn attempt_log(provisioned: &Provisioned) -> Value {
    let ledger = DynamoDeliveryLedger::new(
        aws_sdk_dynamodb::Client::new(&sdk_config()),
        provisioned.deliveries_table().to_owned(),
    );
    let page = ledger
        .list(
            &TenantId::parse(TENANT).unwrap(),
            &SubscriptionId::parse("sub_01JD5Q8Z6X0000000000000000").unwrap(),
            &DeliveryQuery {
                limit: 100,
                ..DeliveryQuery::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let mut records: Vec<Value> = page
        .items
        .iter()
        .map(|r| {
            json!({
                "id": r.id.as_str(),
                "state": r.state,
                "reason": r.reason,
                "attempts": r.attempts.iter().map(|a| json!({
                    "status": a.status, "error": a.error.map(|e| e.code()), "forced": a.forced,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    records.sort_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned());
    json!(records)
}

/// The messages a deliver answer hands back to SQS (`batchItemFailures`), in any order.
fn handed_back(answer: &Value) -> BTreeSet<String> {
    let failures = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"));
    failures
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

/// The order the HTTP files are tried in: each answer depends on the ones before.
const HTTP_FILES: [(&str, &str); 11] = [
    ("ManageFunction", "manage/create-subscription.json"),
    (
        "ManageFunction",
        "manage/create-subscription-private-url.json",
    ),
    ("ManageFunction", "manage/list-subscriptions.json"),
    (
        "ManageFunction",
        "manage/list-subscriptions-custom-domain.json",
    ),
    ("ManageFunction", "manage/signing-keys.json"),
    ("IngestFunction", "ingest/publish-one.json"),
    ("IngestFunction", "ingest/publish-one-default-stage.json"),
    ("IngestFunction", "ingest/publish-batch.json"),
    ("IngestFunction", "ingest/bad-json.json"),
    ("IngestFunction", "ingest/missing-type.json"),
    ("IngestFunction", "ingest/no-tenant.json"),
];
/// The ordered line comes last: its first record is a delivery of batch-of-two, already
/// ended, and the poison message behind it goes to the ordered lane's dead-letter queue.
const DELIVER_FILES: [&str; 4] = [
    "deliver/batch-of-two.json",
    "deliver/poison-message.json",
    "deliver/ordered-line.json",
    "deliver/slow-lane.json",
];

#[test]
fn every_events_file_is_invoked_under_sam() {
    let on_disk: BTreeSet<String> = event_files().into_iter().collect();
    let invoked: BTreeSet<String> = HTTP_FILES
        .iter()
        .map(|(_, f)| (*f).to_owned())
        .chain(DELIVER_FILES.iter().map(|f| (*f).to_owned()))
        .collect();
    assert_eq!(on_disk, invoked);
}

#[tokio::test]
async fn sam_local_invoke_answers_every_events_file_as_the_local_runner_does() {
    let sam_aws = TestAws::new().await;
    let sam = Sam::new(&sam_variables(&sam_aws.provisioned), &PUBLIC_DNS).await;
    let runner = RunnerProcess::start(&settings(), &PUBLIC_DNS).await;
    let runner_aws = runner_resources(&runner).await;

    for (function, file) in HTTP_FILES {
        let event = event_file(file);
        let under_sam = function_answer(
            &sam.invoke(function, &workspace_root().join("events").join(file))
                .await,
        );
        let local = same_call_to(&runner.url, &event).await;
        assert!(
            (200..500).contains(&under_sam.0),
            "{file} under sam local: {under_sam:?}"
        );
        assert_eq!(
            (under_sam.0, normalized(&under_sam.1)),
            (local.0, normalized(&local.1)),
            "{file}: sam local (left) and the local runner (right) answer differently"
        );
    }
    // The subscription from create-subscription.json took the two events published on
    // the two stages (the local runner's own event source has taken its copies).
    assert_eq!(
        herald_tests::aws::queue_depth(&sam_aws.sqs, sam_aws.provisioned.delivery_queue_url())
            .await,
        2
    );

    // Deliver: the same batches through SAM's container and through the handler as the
    // local runner's event source calls it, to the same (unreachable) endpoint.
    subscription_of_the_deliver_files(&sam_aws.provisioned, CLOSED_PORT_URL).await;
    subscription_of_the_deliver_files(&runner_aws, CLOSED_PORT_URL).await;
    let mut local_env: std::collections::HashMap<String, String> = runner_aws.environment();
    for (name, value) in settings() {
        local_env.insert(name.into(), value.into());
    }
    let source = move |name: &str| local_env.get(name).cloned();
    let local_deliver = Arc::new(<herald_deliver::Deliver as SqsFunction>::deps(
        herald_aws::lambda::wiring::started(Function::Deliver, &source, &sdk_config()).unwrap(),
    ));
    for file in DELIVER_FILES {
        let under_sam = sam.invoke("DeliverFunction", &event_file_now(file)).await;
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(event_file(file)).unwrap();
        let local = herald_deliver::process_batch(&local_deliver, event).await;
        assert_eq!(
            handed_back(&under_sam),
            handed_back(&serde_json::to_value(&local.response).unwrap()),
            "{file}: sam local (left) and the local runner's handler (right) differ"
        );
        if file == "deliver/ordered-line.json" {
            // Its first record is a delivery already ended (batch-of-two's), so the line
            // goes on to the poison message behind it: nothing handed back.
            assert_eq!(handed_back(&under_sam), BTreeSet::new());
        }
    }
    let sam_log = attempt_log(&sam_aws.provisioned).await;
    assert_eq!(sam_log.as_array().map(Vec::len), Some(3), "{sam_log}");
    assert_eq!(sam_log, attempt_log(&runner_aws).await);
    assert!(
        sam_log[0]["attempts"][0]["error"].is_string(),
        "the closed port is an attempt with an error code: {sam_log}"
    );
    // The ordered line's dead letters went to each ordered (FIFO) dead-letter queue, the
    // same on both sides.
    let ordered_dead = [
        sam_aws.provisioned.ordered_dead_letter_queue_url(),
        runner_aws.ordered_dead_letter_queue_url(),
    ]
    .map(|url| herald_tests::aws::queue_depth(&sam_aws.sqs, url));
    let [sam_ordered, runner_ordered] = futures::future::join_all(ordered_dead)
        .await
        .try_into()
        .unwrap();
    assert!(sam_ordered >= 1, "the ordered line's poison message");
    assert_eq!(sam_ordered, runner_ordered);
    // The poison message went to each dead-letter queue.
    for dead_letter_queue in [
        sam_aws.provisioned.dead_letter_queue_url(),
        runner_aws.dead_letter_queue_url(),
    ] {
        assert_eq!(
            herald_tests::aws::queue_depth(&sam_aws.sqs, dead_letter_queue).await,
            1
        );
    }
    // The functions under SAM reached AWS through the proxy on Docker's bridge.
    assert!(!sam.aws.calls().is_empty());
}

/// Both runners' answers to one call, as (status, normalized body); `path` may name
/// `{id}` and `{delivery}`, each side's own.
struct Side<'a> {
    base: String,
    ids: BTreeMap<&'a str, String>,
}

impl Side<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut path = path.to_owned();
        for (name, value) in &self.ids {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        let mut headers = vec![("authorization", "Bearer acme")];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        http(
            method,
            &format!("{}{path}", self.base),
            &headers,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }
}

/// Waits until the subscription's attempt log lists `count` deliveries, each attempted.
async fn attempted(side: &Side<'_>, count: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, listed) = side
            .call("GET", "/v1/subscriptions/{id}/deliveries", None)
            .await;
        assert_eq!(status, 200, "{listed}");
        let data = listed["data"].as_array().cloned().unwrap_or_default();
        if data.len() == count
            && data
                .iter()
                .all(|d| d["attempts"].as_array().is_some_and(|a| !a.is_empty()))
        {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {count} attempted deliveries: {listed}",
            side.base
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn sam_local_start_api_answers_every_route_as_the_local_runner_does() {
    let settings = settings();
    let (sam, runner) = tokio::join!(
        SamHerald::start(sam_variables, &PUBLIC_DNS, true),
        RunnerProcess::start(&settings, &PUBLIC_DNS)
    );
    let mut sides = [
        Side {
            base: sam.api.url.clone(),
            ids: BTreeMap::new(),
        },
        Side {
            base: runner.url.clone(),
            ids: BTreeMap::new(),
        },
    ];
    let mut routes_called = BTreeSet::new();
    macro_rules! both {
        ($method:expr, $route:expr, $path:expr, $body:expr, $status:expr) => {{
            let body: Option<Value> = $body;
            let under_sam = sides[0].call($method, $path, body.as_ref()).await;
            let local = sides[1].call($method, $path, body.as_ref()).await;
            assert_eq!(
                under_sam.0,
                $status,
                "{} {} under sam local: {}\n{}",
                $method,
                $path,
                under_sam.1,
                sam.api.output()
            );
            assert_eq!(
                (under_sam.0, normalized(&under_sam.1)),
                (local.0, normalized(&local.1)),
                "{} {}: sam local (left) and the local runner (right) differ",
                $method,
                $path
            );
            routes_called.insert(($method.to_owned(), $route.to_owned()));
            (under_sam.1, local.1)
        }};
    }

    let subscription =
        json!({"url": CLOSED_PORT_URL, "event_types": ["order.*"], "description": "both"});
    let (a, b) = both!(
        "POST",
        "/v1/subscriptions",
        "/v1/subscriptions",
        Some(subscription),
        201
    );
    sides[0]
        .ids
        .insert("id", a["id"].as_str().unwrap().to_owned());
    sides[1]
        .ids
        .insert("id", b["id"].as_str().unwrap().to_owned());
    both!("GET", "/v1/subscriptions", "/v1/subscriptions", None, 200);
    both!(
        "GET",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}",
        None,
        200
    );
    both!(
        "PATCH",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}",
        Some(json!({"description": "patched", "version": 1})),
        200
    );
    both!(
        "POST",
        "/v1/subscriptions/{id}/secret/rotate",
        "/v1/subscriptions/{id}/secret/rotate",
        Some(json!({"grace_period": "1h"})),
        200
    );
    both!(
        "POST",
        "/v1/subscriptions/{id}/test",
        "/v1/subscriptions/{id}/test",
        None,
        202
    );
    both!(
        "POST",
        "/v1/events",
        "/v1/events",
        Some(
            json!({"id": "ord:1.shipped", "type": "order.shipped", "data": {"order_id": "ord_1"}})
        ),
        202
    );
    // The id as a client's URL encoding writes it: API Gateway (and sam local) hand the
    // function the path parameter decoded.
    let (event, _) = both!(
        "GET",
        "/v1/events/{id}",
        "/v1/events/ord%3A1.shipped",
        None,
        200
    );
    assert_eq!(event["data"], json!({"order_id": "ord_1"}));
    // Deliver ran on both sides: each delivery's first attempt is in the log.
    let (under_sam, local) = tokio::join!(attempted(&sides[0], 2), attempted(&sides[1], 2));
    assert_eq!(normalized(&under_sam), normalized(&local));
    both!(
        "GET",
        "/v1/subscriptions/{id}/deliveries",
        "/v1/subscriptions/{id}/deliveries?state=pending",
        None,
        200
    );
    both!(
        "GET",
        "/v1/subscriptions/{id}/feed",
        "/v1/subscriptions/{id}/feed",
        None,
        200
    );
    for (side, listed) in sides.iter_mut().zip([&under_sam, &local]) {
        let newest = listed["data"][0]["id"].as_str().unwrap().to_owned();
        side.ids.insert("delivery", newest);
    }
    both!(
        "GET",
        "/v1/deliveries/{id}",
        "/v1/deliveries/{delivery}",
        None,
        200
    );
    both!(
        "POST",
        "/v1/deliveries/{id}/retry",
        "/v1/deliveries/{delivery}/retry",
        None,
        202
    );
    // The forced attempt is recorded on both sides before the replay counts deliveries.
    for side in &sides {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, delivery) = side.call("GET", "/v1/deliveries/{delivery}", None).await;
            if delivery["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no forced attempt: {delivery}",
                side.base
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    both!(
        "POST",
        "/v1/subscriptions/{id}/replay",
        "/v1/subscriptions/{id}/replay",
        Some(json!({"since": "2020-01-01T00:00:00Z", "state": "pending"})),
        202
    );
    // A tenant's own keys: none until it asks (the public route makes none), made on its
    // first GET, then rotated.
    both!(
        "GET",
        "/v1/signing-keys/{tenant}",
        "/v1/signing-keys/acme",
        None,
        404
    );
    both!("GET", "/v1/signing-keys", "/v1/signing-keys", None, 200);
    both!(
        "GET",
        "/v1/signing-keys/{tenant}",
        "/v1/signing-keys/acme",
        None,
        200
    );
    let (a, _) = both!(
        "POST",
        "/v1/signing-keys/rotate",
        "/v1/signing-keys/rotate",
        None,
        200
    );
    assert_eq!(a["keys"].as_array().map(Vec::len), Some(2), "{a}");
    // A portal session, and its token taking the place of a JWT on the portal's public
    // routes (no authorizer), under SAM as locally.
    let (a, b) = both!(
        "POST",
        "/v1/portal/sessions",
        "/v1/portal/sessions",
        Some(json!({"lifetime": "5m", "event_types": ["order.created"]})),
        201
    );
    assert!(
        normalized(&a["url"]) == json!("<origin>/portal/index.html#token=hps_*"),
        "{a}"
    );
    for (side, session) in sides.iter().zip([&a, &b]) {
        let token = format!("Bearer {}", session["token"].as_str().unwrap());
        let listed = http(
            "GET",
            &format!("{}/portal/api/v1/subscriptions", side.base),
            &[("authorization", token.as_str())],
            None,
        )
        .await;
        assert_eq!(listed.0, 200, "{}: {}", side.base, listed.1);
        assert_eq!(
            listed.1["data"].as_array().map(Vec::len),
            Some(1),
            "{}",
            listed.1
        );
        let page = http(
            "GET",
            &format!("{}/portal/index.html", side.base),
            &[],
            None,
        )
        .await;
        assert_eq!(page.0, 200, "{}", side.base);
    }
    both!(
        "POST",
        "/v1/subscriptions/{id}/history/erase",
        "/v1/subscriptions/{id}/history/erase",
        None,
        200
    );
    // A tenant's erasure, by an operator (the local token `ops:operator`, read unchecked
    // under SAM as locally) for a tenant with nothing kept: both sides run it to its
    // sweep, which waits the settle time. Its cursor carries a time, so the answers are
    // compared field by field.
    let mut erasures = Vec::new();
    for side in &sides {
        let answer = http(
            "POST",
            &format!("{}/v1/tenant/erase", side.base),
            &[
                ("authorization", "Bearer ops:operator"),
                ("herald-tenant", "nobody"),
            ],
            None,
        )
        .await;
        assert_eq!(answer.0, 200, "{}: {}", side.base, answer.1);
        erasures.push(answer.1);
    }
    for field in ["done", "stage", "erased"] {
        assert_eq!(erasures[0][field], erasures[1][field], "{field}");
    }
    assert_eq!(erasures[0]["stage"], "sweep");
    routes_called.insert(("POST".to_owned(), "/v1/tenant/erase".to_owned()));
    // Sealing a tenant's values still in the clear (none here: both seal as they write).
    let mut sealings = Vec::new();
    for side in &sides {
        let answer = http(
            "POST",
            &format!("{}/v1/tenant/seal", side.base),
            &[
                ("authorization", "Bearer ops:operator"),
                ("herald-tenant", TENANT),
            ],
            None,
        )
        .await;
        assert_eq!(answer.0, 200, "{}: {}", side.base, answer.1);
        sealings.push(answer.1);
    }
    assert_eq!(sealings[0], sealings[1]);
    assert_eq!(
        sealings[0],
        json!({"done": true, "sealed": 0, "cursor": null})
    );
    routes_called.insert(("POST".to_owned(), "/v1/tenant/seal".to_owned()));
    both!(
        "DELETE",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}",
        None,
        204
    );
    // Unknown ids and bad input answer alike too.
    both!(
        "GET",
        "/v1/subscriptions/{id}",
        "/v1/subscriptions/{id}",
        None,
        404
    );

    let every_route: BTreeSet<(String, String)> = herald_ingest::ROUTES
        .iter()
        .chain(herald_manage::ROUTES)
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(routes_called, every_route, "a route was not called");
    drop(sam);
}

/// AWS's own tool runs deliver as a stack deployed with the cheapest choices would:
/// `DeliveryClaim=none` and `DeliveryBatchSize=100` as template parameters reach the
/// function through the template (`HERALD_DELIVERY_CLAIM`, `HERALD_DELIVERY_CONCURRENCY`),
/// not through `--env-vars`. A first attempt then takes no claim: batch-of-two's two
/// records, to a closed port, write only their failed attempts (one call each on the
/// deliveries table, where a lease makes two).
#[tokio::test]
async fn sam_local_runs_deliver_with_the_cheapest_deployments_parameters() {
    let aws = TestAws::new().await;
    let variables = sam_variables(&aws.provisioned);
    assert!(!variables.contains_key("HERALD_DELIVERY_CLAIM"));
    let sam = Sam::new(&variables, &PUBLIC_DNS)
        .await
        .with_parameters(&["DeliveryClaim=none", "DeliveryBatchSize=100"]);
    subscription_of_the_deliver_files(&aws.provisioned, CLOSED_PORT_URL).await;
    let before = sam.aws.calls().len();

    let answer = sam
        .invoke(
            "DeliverFunction",
            &event_file_now("deliver/batch-of-two.json"),
        )
        .await;

    assert_eq!(handed_back(&answer).len(), 2, "{answer}");
    let ledger_calls: Vec<String> = sam.aws.calls()[before..]
        .iter()
        .filter(|c| c.resource.ends_with("DeliveriesTable"))
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(ledger_calls.len(), 2, "{ledger_calls:?}");
}

/// The template's `PortalUrl` parameter reaches manage through the template (as
/// `HERALD_PORTAL_URL`), under AWS's own tool: a portal session's link is the page at the
/// given address, where without it the link is the page beside the API as the request
/// reached it (its stage kept).
#[tokio::test]
async fn sam_local_gives_portal_links_at_the_portal_url_parameter() {
    let aws = TestAws::new().await;
    let variables = sam_variables(&aws.provisioned);
    assert!(!variables.contains_key("HERALD_PORTAL_URL"));
    let mut event = event_file("manage/create-subscription.json");
    event["routeKey"] = json!("POST /v1/portal/sessions");
    event["requestContext"]["routeKey"] = json!("POST /v1/portal/sessions");
    event["rawPath"] = json!("/dev/v1/portal/sessions");
    event["requestContext"]["http"]["path"] = json!("/dev/v1/portal/sessions");
    event["body"] = json!("{}");
    event["headers"]["content-length"] = json!("2");
    let file = std::env::temp_dir().join(format!(
        "herald-portal-session-{:016x}.json",
        rand::random::<u64>()
    ));
    std::fs::write(&file, event.to_string()).unwrap();

    let link = |answer: &Value| {
        let (status, body) = function_answer(answer);
        assert_eq!(status, 201, "{answer}");
        body["url"].as_str().unwrap_or_default().to_owned()
    };
    let beside = Sam::new(&variables, &PUBLIC_DNS).await;
    let url = link(&beside.invoke("ManageFunction", &file).await);
    assert!(
        url.starts_with(
            "https://r4nd0m1d2x.execute-api.us-east-1.amazonaws.com/dev/portal/index.html#token="
        ),
        "{url}"
    );
    drop(beside);
    let elsewhere = Sam::new(&variables, &PUBLIC_DNS)
        .await
        .with_parameters(&["PortalUrl=https://webhooks.example.com/portal/"]);
    let url = link(&elsewhere.invoke("ManageFunction", &file).await);
    assert!(
        url.starts_with("https://webhooks.example.com/portal#token="),
        "{url}"
    );
    let _ = std::fs::remove_file(&file);
}
