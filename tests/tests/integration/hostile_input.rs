//! Random and hostile input to both APIs and to the delivery queue, on in-memory ports:
//! never a 5xx, never a panic, and a refused request leaves nothing behind.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use herald_core::subscription::url::UrlPolicy;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("order.shipped"),
            Just("*"),
            Just("order.*"),
            Just("http://127.0.0.1:1/x"),
            Just("https://10.0.0.1/"),
            Just("sub_01JD5Q8Z6X0000000000000000")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("type".to_owned()),
            Just("data".to_owned()),
            Just("id".to_owned()),
            Just("events".to_owned()),
            Just("url".to_owned()),
            Just("event_types".to_owned()),
            Just("filter".to_owned()),
            Just("subject".to_owned()),
            Just("format".to_owned()),
            Just("selection".to_owned()),
            Just("headers".to_owned()),
            Just("occurred_at".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body: JSON that may be valid for the route, or bytes that are not JSON at all.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        ".{0,80}",
        Just(String::new())
    ]
}

fn gateway_request(
    method: &str,
    path: &str,
    body: &str,
    tenant: Option<&str>,
) -> lambda_http::Request {
    let mut event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}, "timeEpoch": 0},
        "isBase64Encoded": false, "body": body,
    });
    if let Some(tenant) = tenant {
        event["requestContext"]["authorizer"] = json!({"jwt": {
            "claims": {"tenant": tenant, "scope": "herald/publish herald/read herald/manage"},
            "scopes": ["herald/publish", "herald/read", "herald/manage"],
        }});
    }
    lambda_http::request::from_str(&event.to_string()).expect("a gateway event")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn ingest_never_fails_and_refusals_write_nothing(body in body(), tenant in prop::option::of("[a-z!/ ]{0,6}")) {
        let deps = herald_ingest::IngestDeps {
            xray: herald_aws::xray::XRay::off(),
            ports: herald_testkit::adapters(),
            tenant_claim: "tenant".into(),
            max_deliveries_per_publish: 10_000,
            max_requests_per_second: 0,
        };
        let response = runtime().block_on(herald_ingest::handle(&deps, gateway_request("POST", "/v1/events", &body, tenant.as_deref())));
        prop_assert!(response.status().as_u16() < 500, "{} for {body}", response.status());
        if response.status().as_u16() >= 400 {
            prop_assert!(deps.ports.events.is_empty() && deps.ports.queue.enqueued().is_empty());
        }
    }

    #[test]
    fn manage_never_fails_and_refusals_store_nothing(
        body in body(),
        method in prop_oneof![Just("POST"), Just("PATCH"), Just("GET"), Just("DELETE"), Just("PUT")],
        path in prop_oneof![
            Just("/v1/subscriptions".to_owned()),
            Just("/v1/subscriptions/sub_01JD5Q8Z6X0000000000000000".to_owned()),
            Just("/v1/subscriptions/sub_01JD5Q8Z6X0000000000000000/replay".to_owned()),
            Just("/v1/subscriptions/sub_01JD5Q8Z6X0000000000000000/secret/rotate".to_owned()),
            Just("/v1/deliveries/msg_0000000000000000000000000000000000000000000000000000/retry".to_owned()),
            "/v1/[a-z/_0-9]{0,30}",
        ],
    ) {
        let deps = herald_manage::ManageDeps {
            ports: herald_testkit::adapters(),
            tenant_claim: "tenant".into(),
            url_policy: UrlPolicy { allow_http: true, allow_loopback: true, ..UrlPolicy::default() },
            max_attempts: 40,
            portal: Default::default(),
            erasure_settle: std::time::Duration::ZERO,
        max_timeout: std::time::Duration::from_secs(30),
        max_subscriptions: 100,
        max_redeliveries_per_minute: 1_000,
        max_requests_per_second: 0,
        signing_key_overlap: std::time::Duration::from_secs(3600),
        graphql: herald_aws::graphql::GraphqlSource::off(),
        };
        let response = runtime().block_on(herald_manage::handle(&deps, gateway_request(method, &path, &body, Some("acme"))));
        let status = response.status().as_u16();
        prop_assert!(status < 500, "{status} for {method} {path} {body}");
        if status >= 400 {
            prop_assert!(deps.ports.subscriptions.all().is_empty() && deps.ports.queue.enqueued().is_empty());
        }
    }

    #[test]
    fn random_queue_messages_go_to_the_dead_letter_queue_never_back(bodies in prop::collection::vec(body(), 1..10)) {
        let deps = std::sync::Arc::new(herald_deliver::DeliverDeps {
            xray: herald_aws::xray::XRay::off(),
            graphql: herald_aws::graphql::GraphqlSource::off(),
            signers: Default::default(),
            ports: herald_testkit::adapters(),
            settings: herald_core::delivery::settings::DeliverySettings {
                concurrency: 4,
                lease: std::time::Duration::from_secs(60),
                retention: std::time::Duration::from_secs(3600),
                auto_disable_after: std::time::Duration::from_secs(3600),
                ..Default::default()
            },
        });
        let mut event = SqsEvent::default();
        event.records = bodies.iter().enumerate().map(|(i, body)| {
            let mut record = SqsMessage::default();
            record.message_id = Some(format!("m{i}"));
            record.receipt_handle = Some(format!("r{i}"));
            record.body = Some(body.clone());
            record
        }).collect();
        let outcome = runtime().block_on(herald_deliver::process_batch(&deps, event));
        prop_assert!(outcome.response.batch_item_failures.is_empty(), "a malformed message must not loop");
        prop_assert_eq!(deps.ports.queue.dead_letters().len(), bodies.len());
        prop_assert!(deps.ports.sender.sent().is_empty());
    }
}
