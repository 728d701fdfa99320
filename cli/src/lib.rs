//! The `herald` command line: a client of Herald's HTTP API.

pub mod client;
pub mod commands;
pub mod failure;
pub mod keys;
pub mod profile;
pub mod publish;
pub mod smoke;
pub mod table;
