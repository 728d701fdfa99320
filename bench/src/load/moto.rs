//! The local runner on moto: Herald's API, ingest, the event source and deliver as
//! `make run` starts them, against moto's DynamoDB and SQS. moto is one Python process
//! serving every table and queue, so what this target reaches is moto's ceiling.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_tests::herald::TestHerald;
use serde_json::json;

use super::{Settings, event_number_of};

pub struct MotoTarget {
    herald: TestHerald,
    subscription: String,
}

/// The longest a publish call may take before it counts as refused.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

impl MotoTarget {
    pub async fn start(receiver_url: &str, settings: &Settings) -> Self {
        let herald = TestHerald::start_polling(
            herald_tests::aws::sdk_config(),
            &[
                ("HERALD_RETRY_SCHEDULE", settings.retry_schedule.as_str()),
                ("HERALD_RETRY_WINDOW", settings.retry_window.as_str()),
            ],
            None,
            settings.moto_pollers,
        )
        .await;
        let (subscription, _) = herald.subscribe("acme", receiver_url, &["load.*"]).await;
        Self {
            herald,
            subscription,
        }
    }

    /// Publishes event `n` through the API; true when it answered 202.
    pub async fn publish(&self, n: u64) -> bool {
        let body = json!({"id": format!("load-{n}"), "type": "load.tick", "data": {"n": n}});
        let sent = self
            .herald
            .http
            .post(format!("{}/v1/events", self.herald.local.stage_url()))
            .timeout(PUBLISH_TIMEOUT)
            .header("authorization", "Bearer acme")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        matches!(sent, Ok(answer) if answer.status().as_u16() == 202)
    }

    /// The events whose delivery the attempt log records failed (each sent to the
    /// dead-letter queue), read through the API.
    pub async fn dead_lettered(&self) -> BTreeSet<u64> {
        let mut failed = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/v1/subscriptions/{}/deliveries?state=failed&limit=100",
                self.subscription
            );
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={}", query_value(cursor)));
            }
            let (status, page) = self.herald.call("GET", &path, Some("acme"), None).await;
            assert_eq!(status, 200, "reading the attempt log: {page}");
            failed.extend(
                page["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| event_number_of(d["event_id"].as_str()?)),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return failed,
            }
        }
    }

    pub async fn shutdown(self) {
        self.herald.shutdown().await;
    }
}

/// A cursor as a query value: every byte but letters, digits and `-_.~` percent-encoded.
fn query_value(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
