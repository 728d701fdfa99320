//! `herald-local`: Herald on this machine, against the AWS endpoint in `AWS_ENDPOINT_URL`
//! (moto; `make run` starts one). Settings: `HERALD_LOCAL_ADDR` (127.0.0.1:3000),
//! `HERALD_LOCAL_PREFIX` (`herald-local`), `HERALD_LOCAL_VISIBILITY_TIMEOUT` (seconds a
//! received batch stays hidden; the queue's own 360 s when unset), `HERALD_LOCAL_STAGE`
//! (the API's stage; the template's `Stage` default, `dev`, when unset), and any
//! `HERALD_*` the functions read.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::{Credentials, SharedCredentialsProvider};
use herald_local::{LocalHerald, LocalOptions, PollSettings};

/// The SDK pointed at the local endpoint. Without an endpoint the runner would create
/// tables and queues in whatever account the default credentials reach, so it refuses.
async fn local_sdk_config() -> anyhow::Result<SdkConfig> {
    let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        bail!(
            "AWS_ENDPOINT_URL is not set: point it at moto (http://127.0.0.1:5000), or use `make run`, which starts one"
        );
    };
    // The region only names the ARNs moto makes; asking the instance metadata is pointless here.
    let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
        .or_else(Region::new("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(region);
    // moto accepts any key; dummy ones keep a machine without AWS credentials working.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() && std::env::var_os("AWS_PROFILE").is_none()
    {
        loader = loader.credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "herald-local",
        )));
    }
    Ok(loader.load().await)
}

fn print_welcome(herald: &LocalHerald) {
    let url = herald.api_url();
    println!(
        "Herald is running: API on {url} (and on {}, as stage `{}` of API Gateway's URL), delivery queue {}",
        herald.stage_url(),
        herald.stage(),
        herald.provisioned().delivery_queue_url()
    );
    println!(
        "Try, with an endpoint of yours on 127.0.0.1:8000 (e.g. WEBHOOK_SECRET=<secret> cargo run -p herald-example-receiver):"
    );
    println!(
        "  curl -s {url}/v1/subscriptions -H 'Authorization: Bearer acme' -H 'Content-Type: application/json' \\\n    -d '{{\"url\": \"http://127.0.0.1:8000/webhooks\", \"event_types\": [\"order.*\"]}}'"
    );
    println!(
        "  curl -s {url}/v1/events -H 'Authorization: Bearer acme' -H 'Content-Type: application/json' \\\n    -d '{{\"type\": \"order.shipped\", \"data\": {{\"order_id\": \"ord_1\"}}}}'"
    );
    println!(
        "The consumer portal for tenant acme (a link good for an hour):\n  curl -s -X POST {url}/v1/portal/sessions -H 'Authorization: Bearer acme'\n  or: cargo run -q -p herald-cli -- --api {url} --token acme portal open acme"
    );
    println!("Each delivery attempt prints a line here. Ctrl-C stops Herald.");
}

#[tokio::main]
async fn main() -> ExitCode {
    // The cause chain on one line, without the backtrace a RUST_BACKTRACE would add.
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-local: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    // A person reads the attempt lines; JSON logs only for warnings unless RUST_LOG asks.
    herald_aws::lambda::telemetry::init_json_logs_at("warn");
    let addr = std::env::var("HERALD_LOCAL_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let api_addr = addr.parse().with_context(|| {
        format!("HERALD_LOCAL_ADDR `{addr}` is not an address like 127.0.0.1:3000")
    })?;
    let prefix = std::env::var("HERALD_LOCAL_PREFIX").unwrap_or_else(|_| "herald-local".into());
    let settings: HashMap<String, String> = std::env::vars()
        .filter(|(name, _)| {
            (name.starts_with("HERALD_") && !name.starts_with("HERALD_LOCAL_"))
                // An X-Ray daemon to send traces to, as Lambda names it (docs/OPERATIONS.md).
                || name == "AWS_XRAY_DAEMON_ADDRESS"
        })
        .collect();

    let visibility_timeout = match std::env::var("HERALD_LOCAL_VISIBILITY_TIMEOUT") {
        Ok(seconds) => Some(seconds.parse::<i32>().ok().filter(|s| (0..=43_200).contains(s)).with_context(|| {
            format!("HERALD_LOCAL_VISIBILITY_TIMEOUT `{seconds}` is not a number of seconds (0 to 43200)")
        })?),
        Err(_) => None,
    };
    let sdk = local_sdk_config().await?;
    let endpoint = sdk.endpoint_url().unwrap_or_default().to_owned();
    let herald = LocalHerald::start(LocalOptions {
        sdk,
        prefix,
        api_addr,
        settings,
        poll: PollSettings {
            visibility_timeout,
            ..PollSettings::default()
        },
        stage: std::env::var("HERALD_LOCAL_STAGE")
            .ok()
            .filter(|s| !s.is_empty()),
    })
    .await
    .with_context(|| format!("starting Herald against the AWS endpoint {endpoint}"))?;
    print_welcome(&herald);

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    println!("Stopping: finishing the calls and deliveries in hand (Ctrl-C again to quit now)…");
    tokio::select! {
        () = herald.shutdown() => println!("Stopped."),
        _ = tokio::signal::ctrl_c() => println!("Quit without waiting."),
    }
    Ok(())
}
