//! A whole Herald per test: its own tables and queues on moto, its API on a free port,
//! and its pollers driving deliver.

use std::collections::HashMap;
use std::time::Duration;

use herald_local::{LocalHerald, LocalOptions, PollSettings};
use serde_json::Value;

use crate::aws::{sdk_config, unique_prefix};

pub struct TestHerald {
    pub local: LocalHerald,
    pub http: reqwest::Client,
    pub sdk: aws_config::SdkConfig,
}

impl TestHerald {
    /// Starts Herald with these `HERALD_*` settings on top of a seconds-scale retry schedule.
    pub async fn start(settings: &[(&str, &str)]) -> Self {
        Self::start_with(sdk_config(), settings, None).await
    }

    /// The same, reaching AWS through `sdk` (e.g. through a proxy in front of moto), and
    /// receiving with `visibility_timeout` seconds instead of the queue's 360.
    pub async fn start_with(
        sdk: aws_config::SdkConfig,
        settings: &[(&str, &str)],
        visibility_timeout: Option<i32>,
    ) -> Self {
        Self::start_polling(sdk, settings, visibility_timeout, 2).await
    }

    /// The same, with `pollers` batches in flight at once (as many deliver instances).
    pub async fn start_polling(
        sdk: aws_config::SdkConfig,
        settings: &[(&str, &str)],
        visibility_timeout: Option<i32>,
        pollers: usize,
    ) -> Self {
        let poll = PollSettings {
            batch_size: Some(10),
            // What one receive brings, as a batching window hands over under load: a
            // test's few messages are not held for the template's second.
            batching_window: Some(Duration::ZERO),
            wait_seconds: 1,
            pollers,
            print_attempts: false,
            visibility_timeout,
            ..PollSettings::default()
        };
        Self::start_with_poll(sdk, settings, poll).await
    }

    /// The same, its pollers set by `poll` (batch size, batching window, pollers).
    pub async fn start_with_poll(
        sdk: aws_config::SdkConfig,
        settings: &[(&str, &str)],
        poll: PollSettings,
    ) -> Self {
        // Test logs stay silent unless asked for with RUST_LOG.
        if std::env::var_os("RUST_LOG").is_some() {
            herald_aws::lambda::telemetry::init_json_logs();
        }
        let mut all: HashMap<String, String> = HashMap::from([
            ("HERALD_RETRY_SCHEDULE".into(), "1s,1s,1s".into()),
            ("HERALD_RETRY_WINDOW".into(), "1m".into()),
            ("HERALD_DELIVERY_TIMEOUT".into(), "5s".into()),
            ("HERALD_IDEMPOTENCY_KEY_PREFIX".into(), "ffm_wh_".into()),
        ]);
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let options = LocalOptions {
            sdk: sdk.clone(),
            prefix: unique_prefix(),
            api_addr: "127.0.0.1:0".parse().expect("an address"),
            settings: all,
            poll,
            stage: None,
        };
        let local = LocalHerald::start(options).await.expect("starting Herald");
        Self {
            local,
            http: reqwest::Client::new(),
            sdk,
        }
    }

    /// Calls the API as `tenant`; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        tenant: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_with(method, path, tenant, &[], body).await
    }

    /// Calls the API as an operator (the local token `ops:operator`) acting for `tenant`,
    /// named in the `Herald-Tenant` header.
    pub async fn call_as_operator(
        &self,
        method: &str,
        path: &str,
        tenant: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_with(
            method,
            path,
            Some("ops:operator"),
            &[("herald-tenant", tenant)],
            body,
        )
        .await
    }

    /// Calls the API with the bearer token `token` and `headers`.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        // The stage's execute-api form (`/dev/v1/…`), as a deployed stack is called.
        let url = format!("{}{path}", self.local.stage_url());
        let mut request = self
            .http
            .request(method.parse().expect("a method"), url)
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("calling Herald");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("reading Herald's answer");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Subscribes `url` for `tenant`; returns (id, secret).
    pub async fn subscribe(
        &self,
        tenant: &str,
        url: &str,
        event_types: &[&str],
    ) -> (String, String) {
        let body = serde_json::json!({"url": url, "event_types": event_types});
        let (status, created) = self
            .call("POST", "/v1/subscriptions", Some(tenant), Some(&body))
            .await;
        assert_eq!(status, 201, "{created}");
        (
            created["id"].as_str().expect("an id").to_owned(),
            created["secret"].as_str().expect("a secret").to_owned(),
        )
    }

    pub async fn publish(&self, tenant: &str, event: Value) -> (u16, Value) {
        self.call("POST", "/v1/events", Some(tenant), Some(&event))
            .await
    }

    pub async fn shutdown(self) {
        self.local.shutdown().await;
    }
}
