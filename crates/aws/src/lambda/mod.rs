//! What a function needs around its handler: the SDK's configuration, the runtime sized
//! for the function, JSON logs, configuration read once from the environment, and API
//! Gateway's requests and answers.

pub mod api;
pub mod config;
pub mod gateway;
pub mod metrics;
pub mod runtime;
pub mod sdk;
pub mod telemetry;
pub mod wiring;
