//! The `herald` command line: a client of Herald's HTTP API.

pub mod client;
pub mod keys;
pub mod smoke;
