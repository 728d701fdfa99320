//! Herald's core: the domain, pure. Events and their matching, subscriptions and their
//! rules, webhooks (render, select, sign), deliveries and their retry policy, the ports the
//! functions depend on, and the flows written once over those ports. No AWS SDK, no
//! Lambda runtime, no HTTP client here: `herald-aws` implements the ports, and
//! `herald-testkit` fakes them.

pub mod delivery;
pub mod event;
pub mod flow;
pub mod ids;
pub mod portal;
pub mod ports;
pub mod subscription;
pub mod system_events;
pub mod trace;
pub mod webhook;

/// The `User-Agent` Herald sends with every delivery.
pub const USER_AGENT: &str = concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION"));
