//! PLACEHOLDER interface, being completed: see the SSRF guard task.
use std::net::{IpAddr, SocketAddr};
use std::future::Future;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_http: bool,
    pub allow_loopback: bool,
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum UrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unresolvable(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubscriptionUrl(Url);

impl SubscriptionUrl {
    pub fn parse(raw: &str, _policy: &UrlPolicy) -> Result<Self, UrlError> {
        Url::parse(raw).map(Self).map_err(|e| UrlError::Invalid(e.to_string()))
    }
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
    pub fn url(&self) -> &Url {
        &self.0
    }
}

impl TryFrom<String> for SubscriptionUrl {
    type Error = UrlError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Url::parse(&value).map(Self).map_err(|e| UrlError::Invalid(e.to_string()))
    }
}

impl From<SubscriptionUrl> for String {
    fn from(value: SubscriptionUrl) -> Self {
        value.0.into()
    }
}

pub fn check_ip(_ip: IpAddr, _policy: &UrlPolicy) -> Result<(), UrlError> {
    Ok(())
}

pub trait Resolver: Send + Sync {
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = std::io::Result<Vec<IpAddr>>> + Send;
}

pub async fn resolve_checked<R: Resolver>(
    _resolver: &R,
    _url: &SubscriptionUrl,
    _policy: &UrlPolicy,
) -> Result<Vec<SocketAddr>, UrlError> {
    Ok(vec![])
}
