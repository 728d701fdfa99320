//! A resolver from a fixed table, where no real DNS should be asked.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use herald_core::subscription::url::Resolver;

/// Host names to addresses; names not in the table do not resolve.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn with(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.0.insert(normalized(host), addresses.to_vec());
        self
    }
}

fn normalized(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.0.get(&normalized(host)).cloned().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} is not in the table"),
            )
        })
    }
}
