//! `herald`: the command line of a Herald deployment.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use herald_cli::client::Client;
use herald_cli::commands::{self, DeliveryQuery, Output, SubscriptionFields};
use herald_cli::failure::Failure;
use herald_cli::profile::{self, Profile, Target};
use herald_cli::{keys, publish, smoke};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "The command line of a Herald deployment",
    after_help = "The API and token come from --api/--token, else HERALD_API/HERALD_TOKEN, else \
                  the profile (--profile, HERALD_PROFILE, `default`) in the profile file \
                  ($HERALD_CONFIG, else ~/.config/herald/config.toml).\n\nExit codes: 0 done, \
                  1 the API refused the request, 2 a wrong command line or input, 3 no answer \
                  or the API failed (try again), 4 the token was refused."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// The API's base URL: the stack's `ApiUrl` output (with its stage), or
    /// http://127.0.0.1:3000 for `make run`.
    #[arg(long, global = true, env = "HERALD_API")]
    api: Option<String>,
    /// A token the API takes (a JWT from the stack's issuer; with `make run`, the tenant).
    #[arg(long, global = true, env = "HERALD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The profile of the profile file to read the API and token from.
    #[arg(long, global = true, env = "HERALD_PROFILE", default_value = profile::DEFAULT_PROFILE)]
    profile: String,
    /// The tenant to act for, with an operator's token (scope `herald/operator`).
    #[arg(long, global = true, env = "HERALD_TENANT")]
    tenant: Option<String>,
    /// Prints the API's JSON instead of a table, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Endpoints that receive webhooks.
    #[command(subcommand, visible_alias = "subs")]
    Subscriptions(Box<Subscriptions>),
    /// Publishing events.
    #[command(subcommand)]
    Events(Events),
    /// The attempt log: deliveries and their attempts.
    #[command(subcommand)]
    Deliveries(Deliveries),
    /// The consumer portal.
    #[command(subcommand)]
    Portal(Portal),
    /// Erasure on request: a tenant, or one subscription's history. Runs the erasure's
    /// bounded steps until it is done.
    #[command(subcommand)]
    Erase(Erase),
    /// Seals the secrets and header values a tenant's subscriptions still hold in the clear
    /// (written before the deployment had a secrets key). Operator only.
    Seal {
        /// The tenant whose subscriptions are sealed.
        tenant: String,
    },
    /// Signing keys: a deployment's, and the tenant's own.
    #[command(subcommand)]
    Keys(Keys),
    /// Checks a deployed (or local) Herald end to end: creates a subscription to --url,
    /// publishes an event to it, waits until the attempt log records an attempt (whatever
    /// the endpoint answered), and deletes the subscription. Exits 1 at the first step
    /// that fails, saying why. With an operator's token, it acts for the tenant --tenant
    /// names.
    Smoke {
        /// The endpoint the check's webhook is sent to. Any answer counts: what is checked
        /// is that the attempt is recorded. Without it, the webhook goes to the API's own
        /// URL (`<api>/herald-smoke`), whose answer (a 404) is as good as any.
        #[arg(long, env = "HERALD_SMOKE_URL")]
        url: Option<String>,
        /// How long to wait for the attempt, e.g. 60s or 2m.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand)]
enum Subscriptions {
    /// Lists the tenant's subscriptions, newest first.
    List {
        /// At most this many (1–100); the API's default page otherwise.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Shows one subscription.
    Show { id: String },
    /// Creates a subscription and shows its secret, once.
    Create {
        /// The endpoint's HTTPS URL.
        #[arg(long)]
        url: String,
        /// An event type or pattern it takes (`order.*`, `*`); repeat for several.
        #[arg(long = "event-type", short = 't', required = true)]
        event_types: Vec<String>,
        #[command(flatten)]
        optional: Optional,
    },
    /// Changes a subscription's fields; those not given stay as they are.
    Update {
        id: String,
        #[arg(long)]
        url: Option<String>,
        /// Replaces the event types; repeat for several.
        #[arg(long = "event-type", short = 't')]
        event_types: Vec<String>,
        /// `active`, or `disabled` to stop deliveries until it is active again.
        #[arg(long, value_parser = ["active", "disabled"])]
        status: Option<String>,
        #[command(flatten)]
        optional: Optional,
    },
    /// Deletes a subscription.
    Delete { id: String },
    /// Gives a subscription a new secret and shows it, once.
    Rotate {
        id: String,
        /// How long the previous secret keeps signing beside the new one (e.g. 24h; at
        /// most 7d); the deployment's default otherwise.
        #[arg(long)]
        grace: Option<String>,
    },
    /// Sends a `herald.test` event to a subscription.
    Test {
        id: String,
        /// The test event's data, a JSON object.
        #[arg(long)]
        data: Option<String>,
    },
}

#[derive(Args)]
struct Optional {
    #[arg(long)]
    description: Option<String>,
    /// The body's shape.
    #[arg(long, value_parser = ["standard", "event_data", "typed_object", "entity_event"])]
    format: Option<String>,
    /// A header sent with every delivery, `Name: value`; repeat for several.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Which events of the types it takes, a JSON filter (openapi.yaml's `Filter`).
    #[arg(long)]
    filter: Option<String>,
    /// Its own retry schedule in place of the deployment's (`exponential`, `1m,5m,30m`);
    /// with --retry-window.
    #[arg(long, requires = "retry_window")]
    retry_schedule: Option<String>,
    /// How long its retries may go on after the first attempt (`1d`); with
    /// --retry-schedule.
    #[arg(long, requires = "retry_schedule")]
    retry_window: Option<String>,
    /// Its own limit on one attempt (`10s`), up to the deployment's.
    #[arg(long)]
    timeout: Option<String>,
    /// At most this many deliveries a second (1–1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate_limit: Option<u32>,
    /// Deliveries one at a time in publish order: all the subscription's, or each
    /// subject's.
    #[arg(long, value_parser = ["subscription", "subject"])]
    ordering: Option<String>,
    /// A GraphQL query (its text in FILE) whose result is the body's data, run at each
    /// attempt against the deployment's GraphQL source.
    #[arg(long, value_name = "FILE")]
    query_file: Option<std::path::PathBuf>,
    /// A variable of the query bound to a place in the event, `NAME=PLACE` (`id=subject.id`,
    /// `order=data.order.id`); repeat for several. With --query-file.
    #[arg(long = "query-var", requires = "query_file", value_name = "NAME=PLACE")]
    query_vars: Vec<String>,
}

#[derive(Subcommand)]
enum Events {
    /// Publishes events: one JSON event, an array, a `{"events": [...]}` batch, or one event
    /// per line; from FILE, or standard input when FILE is `-` or absent.
    Publish {
        file: Option<String>,
        /// Events per call (1–100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
        batch: u16,
    },
    /// Shows an event as it was published, by its id (within the retention period).
    Show { id: String },
}

#[derive(Subcommand)]
enum Deliveries {
    /// Lists a subscription's deliveries, newest first.
    List {
        subscription: String,
        #[command(flatten)]
        query: Range,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// A subscription's feed: its deliveries oldest first, each with the body Herald POSTs
    /// (shown with --json), for pulling what was sent.
    Feed {
        subscription: String,
        /// From deliveries whose events were accepted at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: Option<u32>,
        /// Every page, not only the first.
        #[arg(long)]
        all: bool,
    },
    /// Shows a delivery and every attempt: status, latency and the answer's first bytes.
    Show { id: String },
    /// Sends a delivery again now.
    Retry { id: String },
    /// Sends a subscription's deliveries in a time range again (failed ones unless --state).
    /// Follows the API's cursor until the whole range is queued, each delivery once.
    Replay {
        subscription: String,
        #[command(flatten)]
        query: Range,
        /// Go on with a replay that stopped: the cursor its failure named.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[derive(Args)]
struct Range {
    /// Only deliveries in this state.
    #[arg(long, value_parser = ["pending", "delivering", "delivered", "failed", "skipped", "superseded"])]
    state: Option<String>,
    /// From this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Until this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Subcommand)]
enum Portal {
    /// Opens a portal session for a tenant and prints the page's link: the token's own
    /// tenant, or any with an operator's token.
    Open {
        tenant: String,
        /// How long the session lasts (1m–12h); the deployment's default otherwise.
        #[arg(long)]
        lifetime: Option<String>,
        /// An event type to suggest on the page; repeat for several.
        #[arg(long = "event-type", short = 't')]
        event_types: Vec<String>,
    },
}

#[derive(Subcommand)]
enum Erase {
    /// Erases everything Herald keeps about a tenant (an operator's token): its
    /// subscriptions with their secrets, every delivery and attempt, its events and portal
    /// sessions. Waits out the last stage's settle time (about a minute by default).
    Tenant {
        tenant: String,
        /// Required: an erasure cannot be undone.
        #[arg(long)]
        yes: bool,
    },
    /// Erases one subscription's attempt log; the subscription and the events stay.
    History { subscription: String },
}

#[derive(Subcommand)]
enum Keys {
    /// Prints a new private key to standard output, in the form the deployment reads:
    /// `whsk_…` for ed25519 (`v1a` signatures), a PKCS#8 PEM for RSA.
    Generate {
        #[arg(value_enum)]
        kind: KeyKind,
        /// The RSA key's size in bits.
        #[arg(long, default_value_t = 3072)]
        bits: usize,
    },
    /// The tenant's public keys, for its receivers (made on first use).
    Show,
    /// A new key pair for the tenant: served now, signing v1a beside the old pair; its
    /// RSA signatures begin, and the old pair retires, after the deployment's overlap.
    Rotate,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyKind {
    Ed25519,
    Rsa,
}

impl Optional {
    fn into_fields(
        self,
        url: Option<String>,
        event_types: Vec<String>,
        status: Option<String>,
    ) -> Result<SubscriptionFields, Failure> {
        let query = match &self.query_file {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::usage(format!("--query-file {}: {e}", path.display())))?,
            ),
        };
        Ok(SubscriptionFields {
            url,
            event_types,
            description: self.description,
            format: self.format,
            headers: self.headers,
            status,
            filter: self.filter,
            retry: self.retry_schedule.zip(self.retry_window),
            timeout: self.timeout,
            rate_limit: self.rate_limit,
            ordering: self.ordering,
            query,
            query_vars: self.query_vars,
        })
    }
}

impl Range {
    fn into_query(self) -> DeliveryQuery {
        DeliveryQuery {
            state: self.state,
            since: self.since,
            until: self.until,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    match run(cli).await {
        Ok(Some(output)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output.json).unwrap_or_default()
                );
            } else {
                print!("{}", output.text);
            }
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("herald: {failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// The API and token the command calls with.
fn target(global: &Global) -> Result<Target, Failure> {
    let path = profile::file_path(|name| std::env::var(name).ok());
    let from_file = profile::load(path.as_deref(), &global.profile)?;
    let given = Profile {
        api: global.api.clone(),
        token: global.token.clone(),
    };
    profile::resolve(given, from_file)
}

fn client(global: &Global) -> Result<Client, Failure> {
    let target = target(global)?;
    Client::new(&target.api, &target.token)
        .map(|c| c.acting_for(global.tenant.clone()))
        .map_err(|e| Failure::usage(format!("{e:#}")))
}

/// Runs the command; `None` when it printed its own output.
async fn run(cli: Cli) -> Result<Option<Output>, Failure> {
    let global = &cli.global;
    let output = match cli.command {
        Command::Keys(Keys::Generate { kind, bits }) => {
            let key = match kind {
                KeyKind::Ed25519 => keys::generate_ed25519(),
                KeyKind::Rsa => {
                    keys::generate_rsa(bits).map_err(|e| Failure::usage(format!("{e:#}")))?
                }
            };
            println!("{}", key.trim_end());
            return Ok(None);
        }
        Command::Keys(Keys::Show) => commands::keys_show(&client(global)?).await?,
        Command::Keys(Keys::Rotate) => commands::keys_rotate(&client(global)?).await?,
        Command::Smoke { url, timeout } => {
            let target = target(global)?;
            let url = url.unwrap_or_else(|| smoke::default_target(&target.api));
            let check = smoke::Check {
                api: target.api,
                token: target.token,
                tenant: global.tenant.clone(),
                url,
                timeout,
            };
            smoke::run(&check, &mut std::io::stdout())
                .await
                .map_err(|failure| Failure {
                    code: 1,
                    message: format!("smoke: {failure}"),
                })?;
            return Ok(None);
        }
        Command::Subscriptions(command) => {
            let client = client(global)?;
            match *command {
                Subscriptions::List { limit, all } => {
                    commands::subscriptions_list(&client, limit, all).await?
                }
                Subscriptions::Show { id } => commands::subscriptions_show(&client, &id).await?,
                Subscriptions::Create {
                    url,
                    event_types,
                    optional,
                } => {
                    let fields = optional.into_fields(Some(url), event_types, None)?;
                    commands::subscriptions_create(&client, &fields).await?
                }
                Subscriptions::Update {
                    id,
                    url,
                    event_types,
                    status,
                    optional,
                } => {
                    let fields = optional.into_fields(url, event_types, status)?;
                    commands::subscriptions_update(&client, &id, &fields).await?
                }
                Subscriptions::Delete { id } => {
                    commands::subscriptions_delete(&client, &id).await?
                }
                Subscriptions::Rotate { id, grace } => {
                    commands::subscriptions_rotate(&client, &id, grace.as_deref()).await?
                }
                Subscriptions::Test { id, data } => {
                    commands::subscriptions_test(&client, &id, data.as_deref()).await?
                }
            }
        }
        Command::Events(Events::Publish { file, batch }) => {
            let text = read_input(file.as_deref())?;
            let events = publish::parse_events(&text)?;
            let client = client(global)?;
            let progress = std::io::stderr().is_terminal() && !global.json;
            publish::publish(&client, events, usize::from(batch), progress).await?
        }
        Command::Events(Events::Show { id }) => {
            let client = client(global)?;
            commands::events_show(&client, &id).await?
        }
        Command::Deliveries(command) => {
            let client = client(global)?;
            match command {
                Deliveries::List {
                    subscription,
                    query,
                    limit,
                    all,
                } => {
                    commands::deliveries_list(
                        &client,
                        &subscription,
                        &query.into_query(),
                        limit,
                        all,
                    )
                    .await?
                }
                Deliveries::Feed {
                    subscription,
                    since,
                    limit,
                    all,
                } => commands::deliveries_feed(&client, &subscription, since, limit, all).await?,
                Deliveries::Show { id } => commands::deliveries_show(&client, &id).await?,
                Deliveries::Retry { id } => commands::deliveries_retry(&client, &id).await?,
                Deliveries::Replay {
                    subscription,
                    query,
                    cursor,
                } => {
                    commands::deliveries_replay(&client, &subscription, &query.into_query(), cursor)
                        .await?
                }
            }
        }
        Command::Erase(Erase::Tenant { tenant, yes }) => {
            if !yes {
                return Err(Failure::usage(format!(
                    "erasing `{tenant}` deletes everything Herald keeps about it and cannot be \
                     undone: add --yes"
                )));
            }
            let client = client(global)?.acting_for(Some(tenant.clone()));
            commands::erase(&client, "/v1/tenant/erase", &format!("tenant {tenant}")).await?
        }
        Command::Seal { tenant } => {
            let client = client(global)?.acting_for(Some(tenant.clone()));
            commands::seal(&client, &tenant).await?
        }
        Command::Erase(Erase::History { subscription }) => {
            let client = client(global)?;
            let id = commands::checked_id("subscription", &subscription)?;
            commands::erase(
                &client,
                &format!("/v1/subscriptions/{id}/history/erase"),
                &format!("the history of {id}"),
            )
            .await?
        }
        Command::Portal(Portal::Open {
            tenant,
            lifetime,
            event_types,
        }) => {
            // The session's tenant is named, so an operator's token opens it for that
            // tenant and a tenant's own token is refused for any other.
            let client = client(global)?.acting_for(Some(tenant.clone()));
            commands::portal_open(&client, &tenant, lifetime.as_deref(), &event_types).await?
        }
    };
    Ok(Some(output))
}

/// The input's text: the file, or standard input for `-` or none (refused when standard
/// input is a terminal, where it would wait for typing without saying so).
fn read_input(file: Option<&str>) -> Result<String, Failure> {
    match file {
        None | Some("-") => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(Failure::usage(
                    "no events: name a file, or pipe them in (herald events publish < events.json)",
                ));
            }
            let mut text = String::new();
            stdin
                .lock()
                .read_to_string(&mut text)
                .map_err(|e| Failure::usage(format!("reading standard input: {e}")))?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("reading {path}: {e}"))),
    }
}
