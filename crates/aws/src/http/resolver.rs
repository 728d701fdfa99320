//! The system's resolver behind the SSRF guard (`herald_core::subscription::url`).

use std::io;
use std::net::IpAddr;

use herald_core::subscription::url::Resolver;

/// `getaddrinfo`, through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}
