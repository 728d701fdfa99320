//! Tracing end to end: the local runner with an X-Ray daemon address plays Lambda's active
//! tracing, and a UDP socket in the test plays the daemon. One publish is followed from
//! its invocation through the queue to every attempt of every delivery it made.

use std::collections::HashMap;
use std::time::Duration;

use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// The documents the daemon received within `quiet` of the last one.
async fn documents(daemon: &UdpSocket, quiet: Duration) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) = tokio::time::timeout(quiet, daemon.recv(&mut buf)).await {
        let text = std::str::from_utf8(&buf[..n]).expect("a datagram is UTF-8");
        let (header, doc) = text
            .split_once('\n')
            .expect("a header line, then the document");
        assert_eq!(
            serde_json::from_str::<Value>(header).unwrap(),
            json!({"format": "json", "version": 1})
        );
        docs.push(serde_json::from_str(doc).expect("the document is JSON"));
    }
    docs
}

fn is_id(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn one_publish_is_traced_from_its_invocation_through_the_queue_to_each_attempt() {
    let daemon = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = daemon.local_addr().unwrap().to_string();
    let herald = TestHerald::start(&[
        ("HERALD_RETRY_SCHEDULE", "1s"),
        ("AWS_XRAY_DAEMON_ADDRESS", &address),
    ])
    .await;
    let flaky = TestReceiver::start(Script::sequence([500, 200])).await;
    let steady = TestReceiver::start(Script::always(200)).await;
    herald.subscribe("acme", &flaky.url(), &["*"]).await;
    herald.subscribe("acme", &steady.url(), &["*"]).await;
    let (status, _) = herald
        .publish(
            "acme",
            json!({"id": "e-traced", "type": "order.shipped", "data": {}}),
        )
        .await;
    assert_eq!(status, 202);
    let attempts = flaky.wait_for(2, Duration::from_secs(60)).await;
    let delivered = steady.wait_for(1, Duration::from_secs(60)).await;
    let docs = documents(&daemon, Duration::from_secs(3)).await;
    herald.shutdown().await;

    // The publish: a subsegment of ingest's invocation, in the invocation's trace.
    let publishes: Vec<&Value> = docs.iter().filter(|d| d["name"] == "publish").collect();
    assert_eq!(publishes.len(), 1, "one publish span: {docs:#?}");
    let publish = publishes[0];
    assert_eq!(publish["type"], "subsegment");
    let trace = publish["trace_id"].as_str().unwrap();
    let invocation = docs
        .iter()
        .find(|d| d["name"] == "herald-ingest" && d["trace_id"] == trace)
        .expect("ingest's invocation segment");
    assert_eq!(publish["parent_id"], invocation["id"]);
    assert!(is_id(&publish["id"]));
    assert_eq!(invocation["http"]["response"]["status"], 202);
    assert_eq!(publish["annotations"]["tenant"], "acme");
    assert_eq!(publish["annotations"]["events"], 1);
    assert_eq!(publish["annotations"]["deliveries"], 2);
    assert!(
        publish["start_time"].as_f64() <= publish["end_time"].as_f64()
            && invocation["start_time"].as_f64() <= publish["start_time"].as_f64()
    );

    // Each attempt: a segment of the same trace continuing the publish span, with its
    // claim, POST and record, and the delivery id the receiver was sent.
    let deliveries: Vec<&Value> = docs
        .iter()
        .filter(|d| d["name"] == "herald-deliver")
        .collect();
    assert_eq!(deliveries.len(), 3, "two attempts and one: {deliveries:#?}");
    let mut by_delivery: HashMap<&str, Vec<&Value>> = HashMap::new();
    for segment in &deliveries {
        assert_eq!(segment["trace_id"], trace);
        assert_eq!(segment["parent_id"], publish["id"]);
        assert!(segment.get("type").is_none(), "a segment, not a subsegment");
        let stages: Vec<&str> = segment["subsegments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(stages, ["claim", "POST", "record"]);
        let post = &segment["subsegments"][1];
        assert_eq!(post["namespace"], "remote");
        assert_eq!(post["http"]["request"]["method"], "POST");
        let status = post["http"]["response"]["status"].as_u64().unwrap();
        assert_eq!(post["fault"].as_bool().unwrap_or(false), status >= 500);
        by_delivery
            .entry(segment["annotations"]["delivery_id"].as_str().unwrap())
            .or_default()
            .push(segment);
    }
    // Named by its origin alone: a webhook URL's path or query can hold a token.
    let origin = format!("http://{}", flaky.addr());
    let flaky_id = attempts[0].header("webhook-id");
    let flaky_segments = &by_delivery[flaky_id];
    assert_eq!(
        flaky_segments
            .iter()
            .map(|s| (
                s["annotations"]["attempt"].as_u64().unwrap(),
                s["subsegments"][1]["http"]["response"]["status"]
                    .as_u64()
                    .unwrap()
            ))
            .collect::<Vec<_>>(),
        [(1, 500), (2, 200)]
    );
    assert_eq!(
        flaky_segments[0]["subsegments"][1]["http"]["request"]["url"],
        origin
    );
    let steady_id = delivered[0].header("webhook-id");
    assert_eq!(by_delivery[steady_id].len(), 1);
    assert_eq!(
        by_delivery[steady_id][0]["annotations"]["disposition"],
        "delivered"
    );
    assert!(
        !docs.iter().any(|d| d.to_string().contains("/webhooks")),
        "no document names a webhook's path"
    );
}
