//! One start-up for the three functions: logs, the SDK's configuration, the settings read
//! once, and each port built on AWS. A function's `main` names its crate's entry point and
//! calls [`run_http`] or [`run_sqs`].

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use herald_core::ports::{Adapters, Ports, SystemClock};
use lambda_http::{Body, Request, Response};

use super::config::{Config, ConfigError, ProcessEnv, Source};
use crate::cache::CachedSubscriptions;
use crate::dynamo::{
    DynamoDeliveryLedger, DynamoEventLog, DynamoSessionStore, DynamoSubscriptionStore, VaultUse,
};
use crate::graphql::GraphqlSource;
use crate::http::resolver::SystemResolver;
use crate::http::sender::{SenderSettings, SenderSource};
use crate::secrets::KeySource;
use crate::sqs::SqsDeliveryQueue;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Herald's ports on AWS: DynamoDB, SQS, Secrets Manager, the system's resolver and the
/// HTTP sender.
pub enum AwsPorts {}

impl Ports for AwsPorts {
    type Subscriptions = CachedSubscriptions<DynamoSubscriptionStore>;
    type Ledger = DynamoDeliveryLedger;
    type Events = DynamoEventLog;
    type Queue = SqsDeliveryQueue;
    type Sender = SenderSource<SystemResolver>;
    type Resolver = SystemResolver;
    type Keys = KeySource;
    type Sessions = DynamoSessionStore;
    type Clock = SystemClock;
}

/// Which function is starting: what it builds at start-up rather than on first use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    /// Queues on every publish: its SQS client is built at start-up.
    Ingest,
    /// Sends on every batch: its HTTP client is built (and checked) at start-up, and it
    /// keeps subscriptions it read for `HERALD_SUBSCRIPTION_CACHE_SECONDS`.
    Deliver,
    Manage,
}

/// The ports on AWS for `function`, their clients made once here (some on first use).
pub fn adapters(
    function: Function,
    config: &Config,
    sdk: &SdkConfig,
) -> Result<Adapters<AwsPorts>, ConfigError> {
    let resources = &config.resources;
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let cache = match function {
        Function::Deliver => config.subscription_cache,
        // Manage reads its own writes, ingest reads no single subscription: no cache.
        Function::Ingest | Function::Manage => Duration::ZERO,
    };
    let queue = match function {
        Function::Ingest => SqsDeliveryQueue::new(
            aws_sdk_sqs::Client::new(sdk),
            resources.delivery_queue_url.clone(),
            resources.dead_letter_queue_url.clone(),
        ),
        // Deliver calls SQS only for a retry or a dead letter, manage only to redeliver.
        Function::Deliver | Function::Manage => SqsDeliveryQueue::on_first_use(
            sdk,
            resources.delivery_queue_url.clone(),
            resources.dead_letter_queue_url.clone(),
        ),
    }
    .with_ordered(
        resources.ordered_queue_url.clone(),
        resources.ordered_dead_letter_queue_url.clone(),
    )
    .with_slow(resources.slow_queue_url.clone());
    let sender_settings = SenderSettings {
        timeout: config.timeout,
        connect_timeout: config.connect_timeout,
        policy: config.url_policy.clone(),
        ..SenderSettings::default()
    };
    let resolver = Arc::new(SystemResolver);
    let sender = match function {
        Function::Deliver => {
            SenderSource::ready(sender_settings, resolver).map_err(|e| ConfigError::Invalid {
                name: "HERALD_DELIVERY_TIMEOUT",
                reason: e.to_string(),
            })?
        }
        Function::Ingest | Function::Manage => {
            SenderSource::on_first_use(sender_settings, resolver)
        }
    };
    let mut subscriptions =
        DynamoSubscriptionStore::new(dynamo.clone(), resources.subscriptions_table.clone());
    if let Some(key) = &config.secrets_key {
        match function {
            // Deliver opens what it signs and sends with; manage seals what it is given
            // and never opens; ingest reads no secret and writes no subscription.
            Function::Deliver => {
                let vault = crate::seal::Vault::new(sdk, key.clone()).with_client_built();
                let vault = Arc::new(vault);
                subscriptions = subscriptions.with_vault(vault, VaultUse::Open);
            }
            Function::Manage => {
                let vault = Arc::new(crate::seal::Vault::new(sdk, key.clone()));
                subscriptions = subscriptions.with_vault(vault, VaultUse::Seal);
            }
            Function::Ingest => {}
        }
    }
    Ok(Adapters {
        subscriptions: CachedSubscriptions::new(subscriptions, cache, SystemClock),
        ledger: DynamoDeliveryLedger::with_excerpts(
            dynamo.clone(),
            resources.deliveries_table.clone(),
            config.excerpt_retention,
        ),
        sessions: DynamoSessionStore::new(dynamo.clone(), resources.portal_sessions_table.clone()),
        events: DynamoEventLog::new(dynamo, resources.events_table.clone(), config.retention),
        queue,
        sender,
        resolver: SystemResolver,
        keys: config.keys.clone().into_source(sdk),
        clock: SystemClock,
    })
}

/// A function, started: its settings and its ports.
pub struct Started {
    pub config: Config,
    pub adapters: Adapters<AwsPorts>,
    /// Where subscriptions' queries run (off without `HERALD_GRAPHQL_URL`).
    pub graphql: GraphqlSource,
}

/// The GraphQL source `config` names, its secret read through `sdk`.
pub fn graphql_source(config: &Config, sdk: &SdkConfig) -> Result<GraphqlSource, ConfigError> {
    match &config.graphql {
        None => Ok(GraphqlSource::off()),
        Some(graphql) => {
            GraphqlSource::new(graphql.clone(), Some(sdk)).map_err(|reason| ConfigError::Invalid {
                name: "HERALD_GRAPHQL_URL",
                reason,
            })
        }
    }
}

/// Reads the settings from `env` and builds the ports.
pub fn started(
    function: Function,
    env: &dyn Source,
    sdk: &SdkConfig,
) -> Result<Started, ConfigError> {
    let config = Config::from_source(env)?;
    let adapters = adapters(function, &config, sdk)?;
    let graphql = graphql_source(&config, sdk)?;
    Ok(Started {
        config,
        adapters,
        graphql,
    })
}

/// A function API Gateway invokes: how it builds its dependencies and answers a request.
pub trait HttpFunction: 'static {
    const FUNCTION: Function;
    type Deps: Send + Sync;
    fn deps(started: Started) -> Self::Deps;
    fn handle(deps: &Self::Deps, request: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// A function the SQS event source invokes with a batch, and the moment its invocation
/// ends (the Runtime API's deadline, [`deadline_of`]).
pub trait SqsFunction: 'static {
    const FUNCTION: Function;
    type Deps: Send + Sync + 'static;
    fn deps(started: Started) -> Self::Deps;
    fn handle(
        deps: &Arc<Self::Deps>,
        event: SqsEvent,
        deadline: Option<tokio::time::Instant>,
    ) -> impl Future<Output = SqsBatchResponse> + Send;
}

/// The invocation's deadline as an instant of this process's clock: the Runtime API gives
/// it as milliseconds since the Unix epoch (`Lambda-Runtime-Deadline-Ms`,
/// <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-next>).
/// None when it is not given (0) or already past.
pub fn deadline_of(deadline_ms: u64) -> Option<tokio::time::Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(deadline_ms);
    let left = deadline.duration_since(std::time::SystemTime::now()).ok()?;
    Some(tokio::time::Instant::now() + left)
}

/// Logs, SDK, settings and ports, or the configuration error that stops start-up.
async fn start(function: Function) -> Result<Started, Error> {
    super::telemetry::init_json_logs();
    // Under Lambda (the bootstraps), metrics go to the log stream as EMF lines.
    super::metrics::enable();
    let sdk = super::sdk::load_sdk_config().await;
    Ok(started(function, &ProcessEnv, &sdk)?)
}

/// Serves API Gateway's requests with `F`, one at a time on a current-thread runtime
/// (Lambda hands a container one event at a time; docs/DECISIONS.md, "Start-up").
pub fn run_http<F: HttpFunction>() -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let deps = F::deps(start(F::FUNCTION).await?);
        let deps = &deps;
        lambda_http::run(lambda_http::service_fn(
            move |request: Request| async move { Ok::<_, Error>(F::handle(deps, request).await) },
        ))
        .await
    })
}

/// Serves the SQS event source's batches with `F`, on a runtime sized by the function's
/// memory (`super::runtime`): one thread below two vCPUs, a worker per vCPU above.
pub fn run_sqs<F: SqsFunction>() -> Result<(), Error> {
    super::runtime::build()?.block_on(async {
        let deps = Arc::new(F::deps(start(F::FUNCTION).await?));
        let deps = &deps;
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
                let deadline = deadline_of(event.context.deadline);
                Ok::<_, Error>(F::handle(deps, event.payload, deadline).await)
            },
        ))
        .await
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::deadline_of;

    fn millis(at: SystemTime) -> u64 {
        at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[tokio::test]
    async fn the_runtime_apis_deadline_is_an_instant_as_far_off() {
        let before = tokio::time::Instant::now();
        let deadline = deadline_of(millis(SystemTime::now() + Duration::from_secs(60))).unwrap();
        let left = deadline - before;
        assert!(
            left > Duration::from_secs(58) && left <= Duration::from_secs(61),
            "{left:?}"
        );
    }

    #[tokio::test]
    async fn no_deadline_or_one_already_past_is_none() {
        assert!(deadline_of(0).is_none());
        assert!(deadline_of(millis(SystemTime::now() - Duration::from_secs(1))).is_none());
    }
}
