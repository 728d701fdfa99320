//! JSON logs through tracing. Logs carry ids and outcomes, never bodies, headers or secrets.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once per process; `RUST_LOG` (or `AWS_LAMBDA_LOG_LEVEL`)
/// sets the level, `info` by default.
pub fn init_json_logs() {
    init_json_logs_at("info");
}

/// As `init_json_logs`, with another default level.
pub fn init_json_logs_at(default_level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .and_then(|l| EnvFilter::try_new(l).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .try_init();
}
