//! Herald on one machine. Provisions the template's tables and queues (on moto), serves
//! ingest and manage over HTTP the way API Gateway would, and drives deliver from the
//! queue the way the SQS event source mapping does. `make run` uses it, and so do the
//! pipeline tests, each with its own resources.

pub mod gateway;
pub mod poller;
pub mod provision;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use aws_config::SdkConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use poller::PollSettings;
pub use provision::{Provisioned, provision, template_path};

pub struct LocalOptions {
    pub sdk: SdkConfig,
    /// Tables and queues are named `<prefix>-<logical id>`.
    pub prefix: String,
    pub api_addr: SocketAddr,
    /// `HERALD_*` settings on top of the provisioned names and the local defaults
    /// (http and loopback targets allowed).
    pub settings: HashMap<String, String>,
    pub poll: PollSettings,
}

pub struct LocalHerald {
    api_addr: SocketAddr,
    provisioned: Provisioned,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalHerald {
    pub async fn start(options: LocalOptions) -> anyhow::Result<Self> {
        let provisioned = provision(&options.sdk, &options.prefix, &template_path())
            .await
            .context("provisioning the template's tables and queues")?;
        let mut env = provisioned.environment();
        env.insert("HERALD_ALLOW_HTTP".into(), "true".into());
        env.insert("HERALD_ALLOW_LOOPBACK".into(), "true".into());
        env.extend(options.settings.clone());
        let source = move |name: &str| env.get(name).cloned();

        let ingest = herald_ingest::aws_deps(&source, &options.sdk)?;
        let manage = herald_manage::aws_deps(&source, &options.sdk)?;
        let deliver = Arc::new(herald_deliver::aws_deps(&source, &options.sdk)?);
        let tenant_claim = herald_shared::config::tenant_claim(&source);
        let functions = Arc::new(server::Functions {
            ingest,
            manage,
            tenant_claim,
        });

        let (stop, stopped) = watch::channel(false);
        let (listener, api_addr) = server::bind(options.api_addr)
            .await
            .context("binding the API address")?;
        let mut tasks = vec![tokio::spawn(server::serve(
            listener,
            functions,
            stopped.clone(),
        ))];
        let sqs = aws_sdk_sqs::Client::new(&options.sdk);
        let (queue_url, queue_arn) = provisioned
            .queues
            .get("DeliveryQueue")
            .cloned()
            .context("the template has no DeliveryQueue")?;
        for _ in 0..options.poll.pollers.max(1) {
            tasks.push(tokio::spawn(poller::run(
                sqs.clone(),
                queue_url.clone(),
                queue_arn.clone(),
                Arc::clone(&deliver),
                options.poll.clone(),
                stopped.clone(),
            )));
        }
        Ok(Self {
            api_addr,
            provisioned,
            stop,
            tasks,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    pub fn provisioned(&self) -> &Provisioned {
        &self.provisioned
    }

    /// Stops serving and polling; a batch in flight is finished first.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
