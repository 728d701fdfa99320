//! Support for Herald's integration tests: a fresh set of AWS resources on moto per test,
//! a whole local Herald per test, and a receiver that records what it is sent.

pub mod aws;
pub mod aws_proxy;
pub mod emulator;
pub mod graphql_source;
pub mod header_blocks;
pub mod herald;
pub mod receiver;
pub mod runner;
pub mod sam;

/// The value at percentile `p` (0–100) of `sorted`, nearest rank; zero when empty.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a loopback port")
        .local_addr()
        .expect("its address")
        .port()
}
