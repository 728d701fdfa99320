//! JSON logs through tracing. Logs carry ids and outcomes, never bodies, headers or secrets.

use tracing_subscriber::EnvFilter;

/// Libraries that log whole requests and responses at debug and trace (the AWS SDK logs
/// DynamoDB items, which hold signing secrets; HTTP clients log headers). They stay at
/// `info` whatever level is asked for, so no level of logging can leak a secret or a body.
const CHATTY_LIBRARIES: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sdk_dynamodb",
    "aws_sdk_sqs",
    "aws_config",
    "aws_runtime",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
];

/// The filter Herald logs with: `level` (a level or `RUST_LOG`-style directives) for
/// Herald, and never more than `info` for the libraries above.
pub fn log_filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for library in CHATTY_LIBRARIES {
        if let Ok(directive) = format!("{library}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the JSON subscriber once per process; `RUST_LOG` (or `AWS_LAMBDA_LOG_LEVEL`)
/// sets the level, `info` by default.
pub fn init_json_logs() {
    init_json_logs_at("info");
}

/// As `init_json_logs`, with another default level.
pub fn init_json_logs_at(default_level: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .unwrap_or_else(|| default_level.to_owned());
    let _ = json_subscriber(&level, std::io::stdout).try_init();
}

/// Herald's JSON log lines at `level` (through [`log_filter`]), written to `writer`: the
/// functions write them to standard output, where Lambda hands them to CloudWatch Logs;
/// the bench counts them.
pub fn json_subscriber<W>(level: &str, writer: W) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter(level))
        .with_current_span(false)
        .with_target(false)
        .with_writer(writer)
        .finish()
}
