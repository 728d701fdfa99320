//! Herald on one machine. Provisions the template's tables and queues (on moto), serves
//! ingest and manage over HTTP the way API Gateway would, and drives deliver from the
//! queue the way the SQS event source mapping does. `make run` uses it, and so do the
//! pipeline tests, each with its own resources:
//!
//! ```no_run
//! # async fn example(sdk: aws_config::SdkConfig) -> anyhow::Result<()> {
//! use herald_local::{LocalHerald, LocalOptions, PollSettings};
//!
//! let herald = LocalHerald::start(LocalOptions {
//!     sdk,
//!     prefix: "my-test".into(),
//!     api_addr: "127.0.0.1:0".parse()?,
//!     settings: [("HERALD_RETRY_SCHEDULE".into(), "1s,2s".into())].into(),
//!     poll: PollSettings { wait_seconds: 1, ..PollSettings::default() },
//!     stage: None,
//! })
//! .await?;
//! println!("API on {}", herald.api_url());
//! herald.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod gateway;
pub mod poller;
pub mod provision;
pub mod routes;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use aws_config::SdkConfig;
use herald_aws::lambda::config::Config;
use herald_aws::lambda::wiring::{Function, HttpFunction, SqsFunction, Started};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use poller::{DeliverTarget, PollSettings};
pub use provision::{Provisioned, provision, template_path};

/// The local deployment's settings beside the provisioned names: the runner and the tests
/// deliver to `http://127.0.0.1:…`, which a deployment refuses.
const LOCAL_DEFAULTS: [(&str, &str); 2] = [
    ("HERALD_ALLOW_HTTP", "true"),
    ("HERALD_ALLOW_LOOPBACK", "true"),
];

/// The addresses of the AWS endpoint (`http://127.0.0.1:5000`: moto), which no webhook may
/// go to: its own API answers there too (`POST /moto-api/reset` empties every table), and
/// the local runner allows loopback targets.
async fn endpoint_addresses(sdk: &SdkConfig) -> anyhow::Result<Vec<SocketAddr>> {
    let Some(endpoint) = sdk.endpoint_url() else {
        return Ok(Vec::new());
    };
    let url = reqwest::Url::parse(endpoint)
        .with_context(|| format!("the AWS endpoint `{endpoint}` is not a URL"))?;
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        anyhow::bail!("the AWS endpoint `{endpoint}` names no host and port");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("resolving the AWS endpoint `{endpoint}`"))?;
    Ok(addresses.collect())
}

pub struct LocalOptions {
    /// Where the AWS APIs are (moto, locally).
    pub sdk: SdkConfig,
    /// Tables and queues are named `<prefix>-<logical id>`; reusing a prefix reuses them.
    pub prefix: String,
    /// Where the API listens; port 0 picks a free port (see [`LocalHerald::api_url`]).
    pub api_addr: SocketAddr,
    /// `HERALD_*` settings on top of the provisioned names and the local defaults
    /// (http and loopback targets allowed), e.g. a seconds-scale `HERALD_RETRY_SCHEDULE`.
    pub settings: HashMap<String, String>,
    pub poll: PollSettings,
    /// The API's stage instead of the template's (`Stage`'s default), e.g. `$default`.
    pub stage: Option<String>,
}

/// A running local Herald: its API server and its queue pollers. Dropping it stops them
/// without waiting; [`LocalHerald::shutdown`] waits for the work in hand.
pub struct LocalHerald {
    api_addr: SocketAddr,
    stage: String,
    provisioned: Provisioned,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Batches the pollers handed to deliver (`PollSettings::invocations`).
    invocations: Arc<std::sync::atomic::AtomicU64>,
}

impl LocalHerald {
    /// Provisions the resources of `template.yaml`, builds the three functions from the
    /// provisioned names and `options.settings`, and starts serving and polling.
    pub async fn start(options: LocalOptions) -> anyhow::Result<Self> {
        let template = template_path();
        let routes = routes::Routes::from_template(&template)?;
        let stage = match options.stage {
            Some(stage) => stage,
            None => routes::Routes::stage_of(&std::fs::read_to_string(&template)?)
                .context("reading the template's stage")?,
        };
        let provisioned = provision(&options.sdk, &options.prefix, &template)
            .await
            .context("provisioning the template's tables and queues")?;
        let mut env = provisioned.environment();
        env.extend(LOCAL_DEFAULTS.map(|(k, v)| (k.to_owned(), v.to_owned())));
        env.extend(options.settings);
        let source = move |name: &str| env.get(name).cloned();
        let denied = endpoint_addresses(&options.sdk).await?;

        // As a function starts on AWS, and webhooks kept from the AWS endpoint: here it is
        // moto on loopback, which loopback targets would otherwise reach.
        let started = |function| -> anyhow::Result<Started> {
            let configuring = || format!("configuring {function:?}");
            let mut config = Config::from_source(&source).with_context(configuring)?;
            config.url_policy.denied = denied.clone();
            let adapters = herald_aws::lambda::wiring::adapters(function, &config, &options.sdk)
                .with_context(configuring)?;
            let graphql = herald_aws::lambda::wiring::graphql_source(&config, &options.sdk)
                .with_context(configuring)?;
            Ok(Started {
                config,
                adapters,
                graphql,
            })
        };
        let ingest = herald_ingest::Ingest::deps(started(Function::Ingest)?);
        let manage = herald_manage::Manage::deps(started(Function::Manage)?);
        let deliver = herald_deliver::Deliver::deps(started(Function::Deliver)?);
        let functions = Arc::new(server::Functions {
            gateway: gateway::Gateway {
                routes,
                stage: stage.clone(),
            },
            ingest,
            manage,
            tenant_claim: herald_aws::lambda::config::tenant_claim(&source).name,
            xray: herald_aws::xray::XRay::from_address(
                source("AWS_XRAY_DAEMON_ADDRESS").as_deref(),
            ),
        });
        // A poller set per event source of the deliver function, as the template maps
        // them: the delivery queue, and the ordered lines' FIFO queue.
        let template_yaml: yaml_serde::Value =
            yaml_serde::from_str(&std::fs::read_to_string(&template)?)
                .context("reading template.yaml")?;
        let region = options
            .sdk
            .region()
            .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        let mut sources = Vec::new();
        let timeout = provision::deliver_timeout(&template_yaml);
        for source in provision::event_sources(&template_yaml) {
            let logical = &source.queue;
            let (url, arn) = provisioned.queues.get(logical).cloned().with_context(|| {
                format!("template.yaml maps deliver to {logical}, not provisioned")
            })?;
            let queue = poller::QueueSource {
                client: aws_sdk_sqs::Client::new(&options.sdk),
                url,
                arn,
                region: region.clone(),
            };
            let mut settings = options.poll.clone();
            // A batch size given stands for the deployment's `DeliveryBatchSize`.
            settings.batch_size = Some(source.batch_size_with(settings.batch_size));
            settings.batching_window = settings.batching_window.or(Some(source.batching_window));
            settings.invocation_timeout = settings.invocation_timeout.or(Some(timeout));
            sources.push((queue, settings));
        }
        if sources.is_empty() {
            anyhow::bail!("template.yaml maps no queue to the deliver function");
        }

        let (listener, api_addr) = server::bind(options.api_addr)
            .await
            .with_context(|| format!("listening on {}", options.api_addr))?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            functions,
            stopped.clone(),
        ))];
        let deliver = poller::DeliverTarget::InProcess(Arc::new(deliver));
        for (queue, settings) in &sources {
            for _ in 0..settings.pollers.max(1) {
                tasks.push(tokio::spawn(poller::run(
                    queue.clone(),
                    deliver.clone(),
                    settings.clone(),
                    stopped.clone(),
                )));
            }
        }
        Ok(Self {
            api_addr,
            stage,
            provisioned,
            stop,
            tasks,
            invocations: options.poll.invocations,
        })
    }

    /// How many batches the pollers have handed the deliver function: its invocations.
    pub fn deliver_invocations(&self) -> u64 {
        self.invocations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `http://127.0.0.1:<port>`, with the port actually bound: the API as a custom domain
    /// mapped to the stage serves it, and as `sam local start-api` does.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The API as the stage's `execute-api` URL serves it (the stack's `ApiUrl`):
    /// `http://127.0.0.1:<port>/dev`, or the same as [`Self::api_url`] for `$default`.
    pub fn stage_url(&self) -> String {
        match self.stage.as_str() {
            "$default" => self.api_url(),
            stage => format!("{}/{stage}", self.api_url()),
        }
    }

    /// The API's stage.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The tables and queues this Herald uses.
    pub fn provisioned(&self) -> &Provisioned {
        &self.provisioned
    }

    /// Stops accepting calls and receiving messages, and returns once the calls and
    /// batches in hand are finished. The tables and queues stay.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a local Herald task ended abnormally");
            }
        }
    }
}
