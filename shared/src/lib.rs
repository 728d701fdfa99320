//! Herald's shared library: the pure domain (events, subscriptions, matching, retries,
//! signing, body formats, URL checks), the ports every function depends on, and the
//! adapters that implement those ports on DynamoDB, SQS and HTTP.

pub mod api;
pub mod aws;
pub mod config;
pub mod delivery;
pub mod dynamo;
pub mod event;
pub mod filter;
pub mod format;
pub mod gateway;
pub mod http_sender;
pub mod ids;
pub mod key_source;
pub mod keys;
pub mod memory;
pub mod pattern;
pub mod ports;
pub mod retry;
pub mod runtime;
pub mod selection;
pub mod signing;
pub mod sqs;
pub mod subscription;
pub mod subscription_cache;
pub mod telemetry;
pub mod tls;
pub mod url_guard;

/// The `User-Agent` Herald sends with every delivery.
pub const USER_AGENT: &str = concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION"));
