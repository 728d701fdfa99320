//! JSON logs through tracing. Logs carry ids and outcomes, never bodies, headers or secrets.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

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

/// The filter Herald logs with: `level` (a level, or `RUST_LOG`-style `target=level`
/// directives, comma-separated; `info` when it does not parse) for Herald, and never more
/// than `info` for the libraries above, whatever `level` asks of them.
///
/// A [`Targets`] filter, not tracing's `EnvFilter`: the latter's span and field directives
/// need a regex engine, about 0.2 MB of every bootstrap and its parse at every cold start,
/// for directives Herald's logs (one line a batch or request, ids and counts) never need.
pub fn log_filter(level: &str) -> Targets {
    let asked: Targets = level
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let mut filter = asked.clone();
    // A directive for a module of one of them (`hyper::proto=trace`) would outrank the cap
    // on the library, the more specific target winning: capped too.
    for (target, level) in &asked {
        let chatty = CHATTY_LIBRARIES.iter().any(|library| {
            target == *library
                || target
                    .strip_prefix(library)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        if chatty {
            filter = filter.with_target(target, level.min(LevelFilter::INFO));
        }
    }
    for library in CHATTY_LIBRARIES {
        let wanted = [
            tracing::Level::TRACE,
            tracing::Level::DEBUG,
            tracing::Level::INFO,
            tracing::Level::WARN,
            tracing::Level::ERROR,
        ]
        .into_iter()
        .find(|level| asked.would_enable(library, level))
        .map_or(LevelFilter::OFF, LevelFilter::from_level);
        filter = filter.with_target(*library, wanted.min(LevelFilter::INFO));
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
        .with_current_span(false)
        .with_target(false)
        .with_writer(writer)
        .finish()
        .with(log_filter(level))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn herald_logs_at_the_level_asked_and_the_libraries_at_info_at_most() {
        let filter = log_filter("trace");
        assert!(filter.would_enable("herald_deliver", &Level::TRACE));
        assert!(filter.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(!filter.would_enable("aws_smithy_runtime", &Level::DEBUG));
        assert!(!filter.would_enable("aws_smithy_runtime::client::orchestrator", &Level::DEBUG));
        assert!(!filter.would_enable("hyper_util", &Level::TRACE));
    }

    #[test]
    fn a_library_asked_for_by_name_or_by_module_is_still_capped() {
        let filter = log_filter("info,aws_sdk_dynamodb=trace,hyper::proto::h1=trace");
        assert!(!filter.would_enable("aws_sdk_dynamodb", &Level::DEBUG));
        assert!(filter.would_enable("aws_sdk_dynamodb", &Level::INFO));
        assert!(!filter.would_enable("hyper::proto::h1::io", &Level::DEBUG));
        // A crate whose name merely begins like one of them is not.
        let filter = log_filter("info,hyperloop=trace");
        assert!(filter.would_enable("hyperloop", &Level::TRACE));
    }

    #[test]
    fn a_quieter_level_stays_quieter_for_the_libraries_too() {
        let filter = log_filter("warn");
        assert!(!filter.would_enable("herald_ingest", &Level::INFO));
        assert!(!filter.would_enable("aws_sdk_sqs", &Level::INFO));
        assert!(filter.would_enable("aws_sdk_sqs", &Level::WARN));
    }

    #[test]
    fn a_level_that_does_not_parse_is_info() {
        let filter = log_filter("loud[span{x=1}]");
        assert!(filter.would_enable("herald_manage", &Level::INFO));
        assert!(!filter.would_enable("herald_manage", &Level::DEBUG));
    }
}
