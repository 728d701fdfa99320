//! `herald`: the command line of a Herald deployment.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use herald_cli::{keys, smoke};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "The command line of a Herald deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a deployed (or local) Herald end to end: creates a subscription to --url,
    /// publishes an event to it, waits until the attempt log records an attempt (whatever
    /// the endpoint answered), and deletes the subscription. Exits 1 at the first step
    /// that fails, saying why.
    Smoke {
        /// The API's base URL: the stack's `ApiUrl` output (with the stage), or the local
        /// runner's http://127.0.0.1:3000.
        #[arg(long, env = "HERALD_API")]
        api: String,
        /// A token the API accepts for the tenant to check with (locally: the tenant).
        #[arg(long, env = "HERALD_TOKEN", hide_env_values = true)]
        token: String,
        /// The endpoint the check's webhook is sent to. Any answer counts: what is checked
        /// is that the attempt is recorded. Without it, the webhook goes to the API's own
        /// URL (`<api>/herald-smoke`), whose answer (a 404) is as good as any.
        #[arg(long, env = "HERALD_SMOKE_URL")]
        url: Option<String>,
        /// How long to wait for the attempt, e.g. 60s or 2m.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Signing keys for a deployment.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Prints a new private key to standard output, in the form the deployment reads:
    /// `whsk_…` for ed25519 (`v1a` signatures), a PKCS#8 PEM for RSA.
    Generate {
        #[arg(value_enum)]
        kind: KeyKind,
        /// The RSA key's size in bits.
        #[arg(long, default_value_t = 3072)]
        bits: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyKind {
    Ed25519,
    Rsa,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Smoke {
            api,
            token,
            url,
            timeout,
        } => {
            let url = url.unwrap_or_else(|| smoke::default_target(&api));
            let check = smoke::Check {
                api,
                token,
                url,
                timeout,
            };
            match smoke::run(&check, &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(failure) => {
                    eprintln!("herald smoke: {failure}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Generate { kind, bits },
        } => {
            let generated = match kind {
                KeyKind::Ed25519 => Ok(keys::generate_ed25519()),
                KeyKind::Rsa => keys::generate_rsa(bits),
            };
            match generated {
                Ok(key) => {
                    println!("{}", key.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("herald keys generate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
