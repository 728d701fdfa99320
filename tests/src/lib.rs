//! Support for Herald's integration tests: a fresh set of AWS resources on moto per test,
//! a whole local Herald per test, and a receiver that records what it is sent.

pub mod aws;
pub mod aws_proxy;
pub mod emulator;
pub mod herald;
pub mod receiver;
