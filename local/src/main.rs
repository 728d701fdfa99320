//! `herald-local`: Herald on this machine, against the AWS endpoint in `AWS_ENDPOINT_URL`.

use std::collections::HashMap;

use anyhow::Context;
use herald_local::{LocalHerald, LocalOptions, PollSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A person reads the attempt lines; JSON logs only for warnings unless RUST_LOG asks.
    herald_shared::telemetry::init_json_logs_at("warn");
    let addr = std::env::var("HERALD_LOCAL_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let api_addr = addr.parse().with_context(|| {
        format!("HERALD_LOCAL_ADDR `{addr}` is not an address like 127.0.0.1:3000")
    })?;
    let prefix = std::env::var("HERALD_LOCAL_PREFIX").unwrap_or_else(|_| "herald-local".into());
    let settings: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("HERALD_"))
        .collect();
    let sdk = herald_shared::aws::load_sdk_config().await;

    let herald = LocalHerald::start(LocalOptions {
        sdk,
        prefix,
        api_addr,
        settings,
        poll: PollSettings::default(),
    })
    .await?;
    let url = herald.api_url();
    println!(
        "Herald is running: API on {url}, delivery queue {}",
        herald.provisioned().delivery_queue_url()
    );
    println!(
        "Try:\n  curl -s {url}/v1/subscriptions -H 'Authorization: Bearer acme' -H 'Content-Type: application/json' \\\n    -d '{{\"url\": \"http://127.0.0.1:8000/webhooks\", \"event_types\": [\"*\"]}}'"
    );
    println!(
        "  curl -s {url}/v1/events -H 'Authorization: Bearer acme' -H 'Content-Type: application/json' \\\n    -d '{{\"type\": \"order.shipped\", \"data\": {{\"order_id\": \"ord_1\"}}}}'"
    );
    println!("Ctrl-C stops Herald.");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("Stopping…");
    herald.shutdown().await;
    Ok(())
}
