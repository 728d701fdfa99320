//! The SSRF guard. A subscription URL must be `https` (plain `http` only where the
//! deployment allows it) and may not point at an address inside anyone's network: not
//! loopback (unless allowed for tests and the local runner), private, link-local (the
//! 169.254.169.254 metadata service), CGNAT, unique-local, multicast, reserved or
//! unspecified, in IPv4, IPv6, or IPv4 hidden inside IPv6. Names are resolved and every
//! address checked; the sender then connects only to the addresses that were checked.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

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

/// A URL that passed the syntactic checks. Reading one back from storage re-parses it
/// without a policy: the delivery-time check applies the policy in force then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubscriptionUrl(Url);

impl SubscriptionUrl {
    pub fn parse(raw: &str, policy: &UrlPolicy) -> Result<Self, UrlError> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlError::Invalid(format!(
                "is longer than {MAX_URL_LEN} characters"
            )));
        }
        let url = Url::parse(raw).map_err(|e| UrlError::Invalid(format!("is not a URL ({e})")))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(UrlError::Invalid("must use https".into())),
            other => return Err(UrlError::Invalid(format!("must use https, not {other}"))),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Invalid(
                "must not carry a user name or password".into(),
            ));
        }
        if url.fragment().is_some() {
            return Err(UrlError::Invalid("must not have a fragment".into()));
        }
        match url.host() {
            None => return Err(UrlError::Invalid("has no host".into())),
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
            Some(Host::Domain(name)) => {
                if is_localhost(name) && !policy.allow_loopback {
                    return Err(UrlError::Forbidden(format!("`{name}` is a loopback host")));
                }
            }
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The host as written in the URL (an IPv6 literal without brackets).
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(Host::Domain(name)) => name.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        }
    }

    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// The IP address when the host is a literal one.
    pub fn ip_literal(&self) -> Option<IpAddr> {
        match self.0.host()? {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            Host::Domain(_) => None,
        }
    }
}

impl TryFrom<String> for SubscriptionUrl {
    type Error = UrlError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Url::parse(&value)
            .map(Self)
            .map_err(|e| UrlError::Invalid(e.to_string()))
    }
}

impl From<SubscriptionUrl> for String {
    fn from(value: SubscriptionUrl) -> Self {
        value.0.into()
    }
}

fn is_localhost(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Why an IPv4 address may not be a webhook target, if it may not.
fn v4_refusal(ip: Ipv4Addr, policy: &UrlPolicy) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("loopback");
    }
    match (a, b, c) {
        (0, _, _) => Some("unspecified or \"this network\""),
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Some("private"),
        (100, 64..=127, _) => Some("shared (CGNAT)"),
        (169, 254, _) => Some("link-local"),
        (192, 0, 0) => Some("reserved for protocol assignments"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("reserved for documentation"),
        (192, 88, 99) => Some("reserved (6to4 relay)"),
        (198, 18..=19, _) => Some("reserved for benchmarking"),
        (224..=239, _, _) => Some("multicast"),
        (240..=255, _, _) => Some("reserved"),
        _ => None,
    }
}

/// Why an IPv6 address may not be a webhook target, if it may not. IPv4 addresses
/// embedded in IPv6 (mapped, compatible, NAT64, 6to4) are judged as IPv4.
fn v6_refusal(ip: Ipv6Addr, policy: &UrlPolicy) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    let segments = ip.segments();
    let octets = ip.octets();
    let embedded =
        |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_refusal(v4, policy);
    }
    match segments {
        // IPv4-compatible (deprecated), ::a.b.c.d
        [0, 0, 0, 0, 0, 0, _, _] => return v4_refusal(embedded(12), policy).or(Some("reserved")),
        // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return v4_refusal(embedded(12), policy),
        [0x64, 0xff9b, 1, ..] => return Some("reserved (local NAT64)"),
        // 6to4 2002::/16 carries an IPv4 address in the next 32 bits
        [0x2002, ..] => return v4_refusal(embedded(2), policy),
        _ => {}
    }
    match segments[0] {
        0xfc00..=0xfdff => Some("unique-local"),
        0xfe80..=0xfebf => Some("link-local"),
        0xfec0..=0xfeff => Some("site-local"),
        0xff00..=0xffff => Some("multicast"),
        // Teredo 2001::/32, ORCHID and documentation 2001:db8::/32, discard 100::/64
        0x2001
            if segments[1] == 0 || segments[1] == 0xdb8 || (0x10..=0x2f).contains(&segments[1]) =>
        {
            Some("reserved")
        }
        0x0100 if segments[1..4] == [0, 0, 0] => Some("reserved (discard)"),
        // Outside global unicast 2000::/3 nothing is routable on the internet.
        s if !(0x2000..=0x3fff).contains(&s) => Some("reserved"),
        _ => None,
    }
}

/// Refuses an address a webhook may not go to.
pub fn check_ip(ip: IpAddr, policy: &UrlPolicy) -> Result<(), UrlError> {
    let refusal = match ip {
        IpAddr::V4(v4) => v4_refusal(v4, policy),
        IpAddr::V6(v6) => v6_refusal(v6, policy),
    };
    match refusal {
        Some(kind) => Err(UrlError::Forbidden(format!(
            "{ip} is a {kind} address, not a public one"
        ))),
        None => Ok(()),
    }
}

/// Turns a host name into addresses.
pub trait Resolver: Send + Sync {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;
}

/// The system's resolver (`getaddrinfo` through tokio).
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

/// A resolver from a fixed table; names not in it do not resolve.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver(pub std::collections::HashMap<String, Vec<IpAddr>>);

impl StaticResolver {
    pub fn with(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.0.insert(host.to_ascii_lowercase(), addresses.to_vec());
        self
    }
}

impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.0
            .get(&host.trim_end_matches('.').to_ascii_lowercase())
            .cloned()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host} does not resolve"))
            })
    }
}

/// Resolves the URL's host and checks every address; refuses the URL if any address is
/// forbidden, since a resolver may hand out any of them.
pub async fn resolve_checked<R: Resolver + ?Sized>(
    resolver: &R,
    url: &SubscriptionUrl,
    policy: &UrlPolicy,
) -> Result<Vec<SocketAddr>, UrlError> {
    let port = url.port();
    if let Some(ip) = url.ip_literal() {
        check_ip(ip, policy)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = url.host();
    if is_localhost(&host) && !policy.allow_loopback {
        return Err(UrlError::Forbidden(format!("`{host}` is a loopback host")));
    }
    let addresses = resolver
        .resolve(&host, port)
        .await
        .map_err(|e| UrlError::Unresolvable(format!("`{host}` does not resolve ({e})")))?;
    if addresses.is_empty() {
        return Err(UrlError::Unresolvable(format!(
            "`{host}` resolves to no address"
        )));
    }
    for ip in &addresses {
        check_ip(*ip, policy)
            .map_err(|e| UrlError::Forbidden(format!("`{host}` resolves to {e}")))?;
    }
    Ok(addresses
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_loopback: false,
    };
    const LOCAL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
    };

    #[test]
    fn forbidden_addresses_in_every_spelling() {
        let refused = [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://0x7f000001/",
            "https://localhost/",
            "https://localhost./",
            "https://api.localhost/",
            "https://[::1]/",
            "https://0.0.0.0/",
            "https://[::]/",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://172.31.255.255/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://0xa9fea9fe/",
            "https://100.64.0.1/",
            "https://[fd00::1]/",
            "https://[fc00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            "https://224.0.0.1/",
            "https://255.255.255.255/",
            "https://240.0.0.1/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://[2001:db8::1]/",
            "https://198.18.0.1/",
            "https://192.0.2.1/",
        ];
        for url in refused {
            let err = SubscriptionUrl::parse(url, &STRICT).unwrap_err();
            assert!(matches!(err, UrlError::Forbidden(_)), "{url}: {err:?}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://93.184.215.14/",
            "https://hooks.example.com/a?b=c",
            "https://[2606:4700::1111]/",
            "https://8.8.8.8:8443/x",
        ] {
            assert!(SubscriptionUrl::parse(url, &STRICT).is_ok(), "{url}");
        }
    }

    #[test]
    fn scheme_and_shape() {
        for (url, policy) in [
            ("http://hooks.example.com/", STRICT),
            ("ftp://hooks.example.com/", LOCAL),
            ("https://user:pw@hooks.example.com/", STRICT),
            ("https://hooks.example.com/#x", STRICT),
            ("not a url", STRICT),
            ("https://", STRICT),
        ] {
            assert!(
                matches!(
                    SubscriptionUrl::parse(url, &policy),
                    Err(UrlError::Invalid(_))
                ),
                "{url}"
            );
        }
        let long = format!("https://h.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(SubscriptionUrl::parse(&long, &STRICT).is_err());
        assert!(SubscriptionUrl::parse("http://hooks.example.com/", &LOCAL).is_ok());
    }

    #[test]
    fn loopback_only_when_allowed() {
        assert!(SubscriptionUrl::parse("http://127.0.0.1:8080/", &LOCAL).is_ok());
        assert!(SubscriptionUrl::parse("http://[::1]:8080/", &LOCAL).is_ok());
        assert!(SubscriptionUrl::parse("http://localhost:8080/", &LOCAL).is_ok());
        for url in [
            "http://10.0.0.1/",
            "http://169.254.169.254/",
            "http://[fd00::1]/",
        ] {
            assert!(SubscriptionUrl::parse(url, &LOCAL).is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn names_are_judged_by_every_address_they_resolve_to() {
        let resolver = StaticResolver::default()
            .with("public.example.com", &["93.184.215.14".parse().unwrap()])
            .with("internal.example.com", &["10.0.0.7".parse().unwrap()])
            .with(
                "mixed.example.com",
                &[
                    "93.184.215.14".parse().unwrap(),
                    "169.254.169.254".parse().unwrap(),
                ],
            );
        let check = |raw: &str| {
            let url = SubscriptionUrl::parse(raw, &STRICT).unwrap();
            let resolver = resolver.clone();
            async move { resolve_checked(&resolver, &url, &STRICT).await }
        };
        let ok = check("https://public.example.com:8443/").await.unwrap();
        assert_eq!(ok, vec!["93.184.215.14:8443".parse().unwrap()]);
        assert!(matches!(
            check("https://internal.example.com/").await,
            Err(UrlError::Forbidden(_))
        ));
        assert!(matches!(
            check("https://mixed.example.com/").await,
            Err(UrlError::Forbidden(_))
        ));
        assert!(matches!(
            check("https://unknown.example.com/").await,
            Err(UrlError::Unresolvable(_))
        ));
    }
}
