//! The SSRF guard. A subscription URL must be `https` (plain `http` only where the
//! deployment allows it) and may not point at an address inside anyone's network: not
//! loopback (unless allowed for tests and the local runner), private, link-local (the
//! 169.254.169.254 metadata service), CGNAT, unique-local, multicast, reserved or
//! unspecified, in IPv4, IPv6, or IPv4 hidden inside IPv6, nor at an address the
//! deployment keeps for itself ([`UrlPolicy::denied`]). Names are resolved and every
//! address checked; the sender then connects only to the addresses that were checked. A
//! refusal names the kind of address a name resolves to, never the address.
//!
//! Hidden spellings of an address (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`,
//! `１２７.０.０.１`, `%31%32%37.0.0.1`) need no code of their own: the `url` crate parses
//! hosts the way browsers do (WHATWG), so each arrives here as the address it means.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// What a deployment lets through on top of public `https` addresses, and what it keeps
/// from webhooks whatever else lets it through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_http: bool,
    pub allow_loopback: bool,
    /// Addresses no webhook may go to even where the rest of the policy allows them: the
    /// local runner's AWS endpoint (moto, on loopback), whose API a webhook could
    /// otherwise call (`/moto-api/reset` empties every table). An address on this machine
    /// (loopback or unspecified) stands for that port on every such address, as a server
    /// listening on all of them answers on each.
    pub denied: Vec<SocketAddr>,
}

impl UrlPolicy {
    /// Whether `address` is one of [`UrlPolicy::denied`].
    pub fn denies(&self, address: SocketAddr) -> bool {
        self.denied
            .iter()
            .any(|d| d.port() == address.port() && same_host(d.ip(), address.ip()))
    }

    /// Whether some address on `port` is denied: only then does a host name need resolving
    /// to be judged by [`UrlPolicy::denied`].
    pub fn denies_port(&self, port: u16) -> bool {
        self.denied.iter().any(|d| d.port() == port)
    }
}

/// Whether two addresses reach the same host: equal once an IPv4-mapped address is read
/// as IPv4, or both on this machine.
fn same_host(a: IpAddr, b: IpAddr) -> bool {
    let on_this_machine = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    let (a, b) = (a.to_canonical(), b.to_canonical());
    a == b || (on_this_machine(a) && on_this_machine(b))
}

/// Why a URL was refused. The message is written for the API user who sent it.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum UrlError {
    /// Not a URL Herald can deliver to, whatever it points at.
    #[error("{0}")]
    Invalid(String),
    /// It points at an address webhooks may not go to.
    #[error("{0}")]
    Forbidden(String),
    /// Its host name does not resolve to any address.
    #[error("{0}")]
    Unresolvable(String),
}

const ONLY_PUBLIC: &str = "webhooks may only go to public internet addresses";
const NOT_HERALDS_OWN: &str = "webhooks may not go to Herald's own services";

/// A URL that passed the checks of the policy it was parsed under. Reading one back
/// from storage re-parses it without a policy: the sender applies the policy in force
/// at delivery time (see [`SubscriptionUrl::check`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubscriptionUrl(Url);

impl SubscriptionUrl {
    /// Parses a URL and applies every check that needs no DNS lookup.
    pub fn parse(raw: &str, policy: &UrlPolicy) -> Result<Self, UrlError> {
        if raw.chars().count() > MAX_URL_LEN {
            return Err(UrlError::Invalid(format!(
                "the URL is longer than {MAX_URL_LEN} characters"
            )));
        }
        let url = Self::parse_syntax(raw)?;
        url.check(policy)?;
        Ok(url)
    }

    fn parse_syntax(raw: &str) -> Result<Self, UrlError> {
        Url::parse(raw)
            .map(Self)
            .map_err(|e| UrlError::Invalid(format!("the URL is not valid ({e})")))
    }

    /// Applies the policy to a URL already parsed (one read back from storage, say):
    /// scheme, shape, a literal address and the `localhost` names. A host name's
    /// addresses are checked by [`resolve_checked`] or by the sender's resolver.
    pub fn check(&self, policy: &UrlPolicy) -> Result<(), UrlError> {
        let url = &self.0;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(UrlError::Invalid("the URL must use https".into())),
            other => {
                return Err(UrlError::Invalid(format!(
                    "the URL must use https, not {other}"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Invalid(
                "the URL must not carry a user name or password".into(),
            ));
        }
        if url.fragment().is_some() {
            return Err(UrlError::Invalid(
                "the URL must not have a fragment (a part after #)".into(),
            ));
        }
        match url.host() {
            None => Err(UrlError::Invalid("the URL has no host".into())),
            Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy),
            Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy),
            Some(Host::Domain(name)) => check_name(name, policy),
        }?;
        self.check_denied(policy)
    }

    /// Refuses a literal address or a `localhost` name that [`UrlPolicy::denied`] holds
    /// (with the URL's port). Any other name is judged on the addresses it resolves to.
    fn check_denied(&self, policy: &UrlPolicy) -> Result<(), UrlError> {
        let ip = match self.ip_literal() {
            Some(ip) => ip,
            None if is_localhost(self.host()) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => return Ok(()),
        };
        if policy.denies(SocketAddr::new(ip, self.port())) {
            return Err(UrlError::Forbidden(format!(
                "{}:{} is an address Herald keeps for itself; {NOT_HERALDS_OWN}",
                self.0.host_str().unwrap_or_default(),
                self.port()
            )));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The host as a resolver wants it: a name, or an address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        let host = self.0.host_str().unwrap_or_default();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port, the scheme's default when none is written.
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
        Self::parse_syntax(&value)
    }
}

impl From<SubscriptionUrl> for String {
    fn from(value: SubscriptionUrl) -> Self {
        value.0.into()
    }
}

/// `localhost` and its subdomains are loopback by definition (RFC 6761), whatever a
/// resolver would answer, so they are judged without asking one.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

fn check_name(name: &str, policy: &UrlPolicy) -> Result<(), UrlError> {
    if is_localhost(name) && !policy.allow_loopback {
        return Err(UrlError::Forbidden(format!(
            "{name} is a loopback host name; {ONLY_PUBLIC}"
        )));
    }
    Ok(())
}

/// IPv4 networks no webhook may go to, with how to name them to a user; the first
/// match names the address. Loopback is judged apart, since a policy may allow it.
#[rustfmt::skip]
const V4_REFUSED: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0),         8,  "an unspecified (\"this network\") address"),
    (Ipv4Addr::new(10, 0, 0, 0),        8,  "a private address"),
    (Ipv4Addr::new(100, 64, 0, 0),      10, "a shared (CGNAT) address"),
    (Ipv4Addr::new(169, 254, 0, 0),     16, "a link-local address"),
    (Ipv4Addr::new(172, 16, 0, 0),      12, "a private address"),
    (Ipv4Addr::new(192, 0, 0, 0),       24, "an IETF protocol assignment address"),
    (Ipv4Addr::new(192, 0, 2, 0),       24, "a documentation address"),
    (Ipv4Addr::new(192, 88, 99, 0),     24, "a 6to4 relay address"),
    (Ipv4Addr::new(192, 168, 0, 0),     16, "a private address"),
    (Ipv4Addr::new(198, 18, 0, 0),      15, "a benchmarking address"),
    (Ipv4Addr::new(198, 51, 100, 0),    24, "a documentation address"),
    (Ipv4Addr::new(203, 0, 113, 0),     24, "a documentation address"),
    (Ipv4Addr::new(224, 0, 0, 0),       4,  "a multicast address"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "the broadcast address"),
    (Ipv4Addr::new(240, 0, 0, 0),       4,  "a reserved address"),
];

/// IPv6 networks no webhook may go to; the first match names the address. Prefixes
/// that carry an IPv4 address are judged by that address before this table is read.
/// Teredo (2001::/32) is refused rather than decoded: a tunnel relay is nobody's
/// webhook endpoint, and the rest of 2001::/23 is protocol infrastructure.
#[rustfmt::skip]
const V6_REFUSED: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "a local-use NAT64 address"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),     64, "a discard address"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),    32, "a Teredo tunnel address"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),    23, "an IETF protocol assignment address"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "a documentation address"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),    20, "a documentation address"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),    7,  "a unique-local address"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),    10, "a link-local address"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),    10, "a site-local address"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),    8,  "a multicast address"),
];

fn v4_in(ip: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let shift = 32 - u32::from(prefix);
    u32::from(ip).checked_shr(shift) == u32::from(network).checked_shr(shift)
}

fn v6_in(ip: Ipv6Addr, network: Ipv6Addr, prefix: u8) -> bool {
    let shift = 128 - u32::from(prefix);
    u128::from(ip).checked_shr(shift) == u128::from(network).checked_shr(shift)
}

/// What kind of address this is, when a webhook may not go to it.
fn v4_refusal(ip: Ipv4Addr, policy: &UrlPolicy) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    V4_REFUSED
        .iter()
        .find(|(network, prefix, _)| v4_in(ip, *network, *prefix))
        .map(|(_, _, kind)| *kind)
}

/// What kind of address this is, when a webhook may not go to it. An IPv4 address
/// carried inside IPv6 (mapped, compatible, NAT64, 6to4) is judged as that IPv4
/// address, since that is where the packets end up.
fn v6_refusal(ip: Ipv6Addr, policy: &UrlPolicy) -> Option<&'static str> {
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    let octets = ip.octets();
    let v4_at =
        |at: usize| Ipv4Addr::new(octets[at], octets[at + 1], octets[at + 2], octets[at + 3]);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_refusal(v4, policy);
    }
    match ip.segments() {
        // IPv4-compatible, ::a.b.c.d: deprecated, so refused even when the IPv4 is public.
        [0, 0, 0, 0, 0, 0, _, _] => {
            return v4_refusal(v4_at(12), policy).or(Some("an IPv4-compatible address"));
        }
        // NAT64, 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return v4_refusal(v4_at(12), policy),
        // 6to4, 2002::/16: the next 32 bits are the IPv4 address
        [0x2002, ..] => return v4_refusal(v4_at(2), policy),
        _ => {}
    }
    let listed = V6_REFUSED
        .iter()
        .find(|(network, prefix, _)| v6_in(ip, *network, *prefix))
        .map(|(_, _, kind)| *kind);
    // Outside global unicast (2000::/3) nothing is routable on the internet.
    let global = matches!(ip.segments()[0], 0x2000..=0x3fff);
    listed.or((!global).then_some("a reserved address"))
}

fn refusal(ip: IpAddr, policy: &UrlPolicy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4, policy),
        IpAddr::V6(v6) => v6_refusal(v6, policy),
    }
}

/// Refuses an address a webhook may not go to.
pub fn check_ip(ip: IpAddr, policy: &UrlPolicy) -> Result<(), UrlError> {
    match refusal(ip, policy) {
        Some(kind) => Err(UrlError::Forbidden(format!(
            "{ip} is {kind}; {ONLY_PUBLIC}"
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

/// Resolves the URL's host and checks every address. The URL is refused if any address
/// is forbidden, since a resolver may hand out any of them later.
pub async fn resolve_checked<R: Resolver + ?Sized>(
    resolver: &R,
    url: &SubscriptionUrl,
    policy: &UrlPolicy,
) -> Result<Vec<SocketAddr>, UrlError> {
    let port = url.port();
    if let Some(ip) = url.ip_literal() {
        check_ip(ip, policy)?;
        url.check_denied(policy)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let host = url.host();
    check_name(host, policy)?;
    url.check_denied(policy)?;
    let addresses = resolver
        .resolve(host, port)
        .await
        .map_err(|e| UrlError::Unresolvable(format!("the host {host} does not resolve ({e})")))?;
    if addresses.is_empty() {
        return Err(UrlError::Unresolvable(format!(
            "the host {host} resolves to no address"
        )));
    }
    // The answer names the kind of address, never the address: inside a network, the
    // addresses a name resolves to are not the API caller's to learn.
    for ip in &addresses {
        if let Some(kind) = refusal(*ip, policy) {
            return Err(UrlError::Forbidden(format!(
                "the host {host} resolves to {kind}; {ONLY_PUBLIC}"
            )));
        }
        if policy.denies(SocketAddr::new(*ip, port)) {
            return Err(UrlError::Forbidden(format!(
                "the host {host} resolves to an address Herald keeps for itself (on port \
                 {port}); {NOT_HERALDS_OWN}"
            )));
        }
    }
    Ok(addresses
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    /// Host names to addresses, as the test kit's resolver (which depends on this crate).
    #[derive(Clone, Default)]
    struct StaticResolver(HashMap<String, Vec<IpAddr>>);

    impl StaticResolver {
        fn with(mut self, host: &str, addresses: &[IpAddr]) -> Self {
            self.0.insert(host.to_ascii_lowercase(), addresses.to_vec());
            self
        }
    }

    impl Resolver for StaticResolver {
        async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
            self.0
                .get(&host.to_ascii_lowercase())
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, host.to_owned()))
        }
    }

    const STRICT: UrlPolicy = UrlPolicy {
        allow_http: false,
        allow_loopback: false,
        denied: Vec::new(),
    };
    const LOCAL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_loopback: true,
        denied: Vec::new(),
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_inside_a_network_are_refused_and_their_neighbours_are_not() {
        let refused = [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("172.16.0.0", "private"),
            ("172.31.255.255", "private"),
            ("192.168.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("169.254.0.1", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("100.64.0.0", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "unique-local"),
            ("fec0::1", "site-local"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("250.1.2.3", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("2001:2::1", "IETF"),
            ("192.0.0.8", "IETF"),
            ("192.88.99.1", "6to4"),
            ("100::1", "discard"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("64:ff9b:1::a00:1", "NAT64"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:a00:1::", "private"),
            ("2002:7f00:1::1", "loopback"),
            ("::ffff:0:a00:1", "reserved"),
            ("5f00::1", "reserved"),
        ];
        for (text, kind) in refused {
            let err = check_ip(ip(text), &STRICT).unwrap_err();
            let UrlError::Forbidden(message) = &err else {
                panic!("{text}: {err:?}")
            };
            assert!(message.contains(kind), "{text}: {message}");
        }
        let accepted = [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "192.0.1.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
        ];
        for text in accepted {
            assert_eq!(check_ip(ip(text), &STRICT), Ok(()), "{text}");
        }
    }

    #[test]
    fn allowing_loopback_allows_nothing_else() {
        for text in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.8.9.10"] {
            assert_eq!(check_ip(ip(text), &LOCAL), Ok(()), "{text}");
        }
        for text in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::", "fd00::1"] {
            assert!(check_ip(ip(text), &LOCAL).is_err(), "{text}");
        }
        assert!(SubscriptionUrl::parse("http://127.0.0.1:8080/", &LOCAL).is_ok());
        assert!(SubscriptionUrl::parse("http://[::1]:8080/", &LOCAL).is_ok());
        assert!(SubscriptionUrl::parse("http://localhost:8080/", &LOCAL).is_ok());
        for url in [
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00::1]/",
        ] {
            assert!(
                matches!(
                    SubscriptionUrl::parse(url, &LOCAL),
                    Err(UrlError::Forbidden(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn every_spelling_of_a_forbidden_address_is_refused() {
        let refused = [
            "https://127.0.0.1/",
            "https://127.1/",
            "https://2130706433/",
            "http://2130706433/",
            "https://0x7f.1/",
            "https://0x7F000001/",
            "https://0177.0.0.1/",
            "https://0177.1/",
            "https://127.0.0.1./",
            "https://%31%32%37.0.0.1/",
            "https://１２７.０.０.１/",
            "https://0/",
            "https://localhost/",
            "https://LOCALHOST/",
            "https://localhost./",
            "https://api.localhost/",
            "https://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
            "https://[::1]/",
            "https://[0:0:0:0:0:0:0:1]/",
            "https://[::]/",
            "https://10.0.0.1/",
            "https://012.0.0.1/",
            "https://167772161/",
            "https://169.254.169.254/latest/meta-data",
            "https://0xa9fea9fe/",
            "https://0251.0376.0251.0376/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:7f00:1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[::127.0.0.1]/",
            "https://[64:ff9b::a00:1]/",
            "https://[2002:a00:1::]/",
            "https://[fd00:ec2::254]/",
        ];
        let policy = UrlPolicy {
            allow_http: true,
            allow_loopback: false,
            denied: Vec::new(),
        };
        for url in refused {
            let err = SubscriptionUrl::parse(url, &policy).unwrap_err();
            assert!(matches!(err, UrlError::Forbidden(_)), "{url}: {err:?}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://93.184.215.14/",
            "https://hooks.example.com/a?b=c",
            "https://HOOKS.example.com./in",
            "https://[2606:4700::1111]/",
            "https://8.8.8.8:8443/x",
            "https://localhost.example.com/",
            "https://xn--bcher-kva.example/",
        ] {
            assert!(SubscriptionUrl::parse(url, &STRICT).is_ok(), "{url}");
        }
    }

    #[test]
    fn scheme_and_shape() {
        for (url, policy) in [
            ("http://hooks.example.com/", STRICT),
            ("ftp://hooks.example.com/", LOCAL),
            ("file:///etc/passwd", LOCAL),
            ("gopher://hooks.example.com/", LOCAL),
            ("https://user:pw@hooks.example.com/", STRICT),
            ("https://user@hooks.example.com/", STRICT),
            ("https://:pw@hooks.example.com/", STRICT),
            ("https://hooks.example.com/#x", STRICT),
            ("https://hooks.example.com/#", STRICT),
            ("not a url", STRICT),
            ("/relative/path", STRICT),
            ("https://", STRICT),
            ("https://exa mple.com/", STRICT),
            ("https://1.2.3.4.5/", STRICT),
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
        assert!(matches!(
            SubscriptionUrl::parse(&long, &STRICT),
            Err(UrlError::Invalid(_))
        ));
        let longest = format!("https://h.example.com/{}", "a".repeat(MAX_URL_LEN - 22));
        assert_eq!(longest.len(), MAX_URL_LEN);
        assert!(SubscriptionUrl::parse(&longest, &STRICT).is_ok());
        assert!(SubscriptionUrl::parse("http://hooks.example.com/", &LOCAL).is_ok());
    }

    #[test]
    fn messages_are_sentences_a_user_can_act_on() {
        let cases = [
            ("http://hooks.example.com/", "the URL must use https"),
            (
                "https://u:p@hooks.example.com/",
                "the URL must not carry a user name or password",
            ),
            (
                "https://10.0.0.1/",
                "10.0.0.1 is a private address; webhooks may only go to public internet addresses",
            ),
            (
                "https://localhost/",
                "localhost is a loopback host name; \
                 webhooks may only go to public internet addresses",
            ),
        ];
        for (url, message) in cases {
            let err = SubscriptionUrl::parse(url, &STRICT).unwrap_err();
            assert_eq!(err.to_string(), message, "{url}");
        }
        let refused = SubscriptionUrl::parse("https://u:hunter2@10.0.0.1/", &STRICT)
            .unwrap_err()
            .to_string();
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn host_and_port() {
        let cases = [
            ("https://Hooks.Example.com/in", "hooks.example.com", 443),
            ("http://hooks.example.com/in", "hooks.example.com", 80),
            ("https://hooks.example.com:8443/", "hooks.example.com", 8443),
            ("https://[2606:4700::1111]:444/", "2606:4700::1111", 444),
            ("https://0x08080808/", "8.8.8.8", 443),
        ];
        for (raw, host, port) in cases {
            let url = SubscriptionUrl::parse(raw, &LOCAL).unwrap();
            assert_eq!((url.host(), url.port()), (host, port), "{raw}");
        }
    }

    #[test]
    fn storage_round_trip_reparses_without_a_policy() {
        let url = SubscriptionUrl::parse("https://hooks.example.com/in?x=1", &STRICT).unwrap();
        let json = serde_json::to_string(&url).unwrap();
        assert_eq!(json, "\"https://hooks.example.com/in?x=1\"");
        assert_eq!(serde_json::from_str::<SubscriptionUrl>(&json).unwrap(), url);
        // Stored under a looser policy, it still reads back; the policy in force at
        // delivery time is what refuses it.
        let stored: SubscriptionUrl = serde_json::from_str("\"http://127.0.0.1:9/\"").unwrap();
        assert!(matches!(stored.check(&STRICT), Err(UrlError::Invalid(_))));
        let http_only = UrlPolicy {
            allow_http: true,
            allow_loopback: false,
            denied: Vec::new(),
        };
        assert!(matches!(
            stored.check(&http_only),
            Err(UrlError::Forbidden(_))
        ));
        assert_eq!(stored.check(&LOCAL), Ok(()));
        assert!(serde_json::from_str::<SubscriptionUrl>("\"not a url\"").is_err());
    }

    #[tokio::test]
    async fn names_are_judged_by_every_address_they_resolve_to() {
        let resolver = StaticResolver::default()
            .with(
                "public.example.com",
                &[ip("93.184.215.14"), ip("2606:2800::1")],
            )
            .with("internal.example.com", &[ip("10.0.0.7")])
            .with("metadata.example.com", &[ip("::ffff:169.254.169.254")])
            .with(
                "mixed.example.com",
                &[ip("93.184.215.14"), ip("169.254.169.254")],
            )
            .with("empty.example.com", &[])
            .with("loop.example.com", &[ip("127.0.0.1")]);
        let check = |raw: &'static str, policy: UrlPolicy| {
            let resolver = resolver.clone();
            async move {
                let url = SubscriptionUrl::parse(raw, &policy)?;
                resolve_checked(&resolver, &url, &policy).await
            }
        };

        let ok = check("https://public.example.com:8443/", STRICT)
            .await
            .unwrap();
        let expected: Vec<SocketAddr> = vec![
            "93.184.215.14:8443".parse().unwrap(),
            "[2606:2800::1]:8443".parse().unwrap(),
        ];
        assert_eq!(ok, expected);
        let literal = check("https://8.8.8.8/", STRICT).await.unwrap();
        assert_eq!(literal, vec!["8.8.8.8:443".parse().unwrap()]);

        for raw in [
            "https://internal.example.com/",
            "https://metadata.example.com/",
            "https://mixed.example.com/",
            "https://loop.example.com/",
        ] {
            let err = check(raw, STRICT).await.unwrap_err();
            assert!(matches!(err, UrlError::Forbidden(_)), "{raw}: {err:?}");
        }
        assert_eq!(
            check("https://internal.example.com/", STRICT)
                .await
                .unwrap_err()
                .to_string(),
            "the host internal.example.com resolves to a private address; \
             webhooks may only go to public internet addresses"
        );
        for raw in [
            "https://internal.example.com/",
            "https://metadata.example.com/",
            "https://mixed.example.com/",
        ] {
            let message = check(raw, STRICT).await.unwrap_err().to_string();
            for address in ["10.0.0.7", "169.254.169.254", "a9fe"] {
                assert!(!message.contains(address), "{raw}: {message}");
            }
        }
        for raw in ["https://unknown.example.com/", "https://empty.example.com/"] {
            let err = check(raw, STRICT).await.unwrap_err();
            assert!(matches!(err, UrlError::Unresolvable(_)), "{raw}: {err:?}");
        }

        assert!(check("http://loop.example.com/", LOCAL).await.is_ok());
        assert!(matches!(
            check("http://internal.example.com/", LOCAL).await,
            Err(UrlError::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn a_denied_address_is_refused_however_it_is_written_and_nothing_else_is() {
        // The local runner's moto, on 127.0.0.1:5000.
        let policy = UrlPolicy {
            denied: vec!["127.0.0.1:5000".parse().unwrap()],
            ..LOCAL
        };
        let resolver = StaticResolver::default()
            .with("localhost", &[ip("127.0.0.1")])
            .with("loop.example.com", &[ip("127.0.0.1")])
            .with("loop6.example.com", &[ip("::1")])
            .with("public.example.com", &[ip("93.184.215.14")]);
        for raw in [
            "http://127.0.0.1:5000/moto-api/reset",
            "http://127.0.0.2:5000/",
            "http://0x7f000001:5000/",
            "http://[::1]:5000/",
            "http://[::ffff:127.0.0.1]:5000/",
            "http://localhost:5000/",
            "http://app.localhost.:5000/",
            "http://loop.example.com:5000/",
            "http://loop6.example.com:5000/",
        ] {
            let url = SubscriptionUrl::try_from(raw.to_owned()).unwrap();
            let err = resolve_checked(&resolver, &url, &policy).await.unwrap_err();
            let UrlError::Forbidden(message) = &err else {
                panic!("{raw}: {err:?}")
            };
            assert!(
                message.contains("Herald keeps for itself"),
                "{raw}: {message}"
            );
        }
        for raw in ["http://127.0.0.1:5000/", "http://localhost:5000/x"] {
            assert!(
                matches!(
                    SubscriptionUrl::parse(raw, &policy),
                    Err(UrlError::Forbidden(_))
                ),
                "{raw}"
            );
        }
        assert_eq!(
            SubscriptionUrl::parse("http://127.0.0.1:5000/moto-api/reset", &policy)
                .unwrap_err()
                .to_string(),
            "127.0.0.1:5000 is an address Herald keeps for itself; \
             webhooks may not go to Herald's own services"
        );
        assert_eq!(
            resolve_checked(
                &resolver,
                &SubscriptionUrl::parse("http://loop.example.com:5000/", &policy).unwrap(),
                &policy
            )
            .await
            .unwrap_err()
            .to_string(),
            "the host loop.example.com resolves to an address Herald keeps for itself \
             (on port 5000); webhooks may not go to Herald's own services"
        );
        // Another port of this machine, or the same port elsewhere, is not Herald's.
        for raw in [
            "http://127.0.0.1:5001/",
            "http://localhost:8000/",
            "http://loop.example.com/",
            "http://public.example.com:5000/",
        ] {
            let url = SubscriptionUrl::parse(raw, &policy).unwrap();
            assert!(
                resolve_checked(&resolver, &url, &policy).await.is_ok(),
                "{raw}"
            );
        }
        assert!(policy.denies_port(5000) && !policy.denies_port(5001));
        assert!(!LOCAL.denies("127.0.0.1:5000".parse().unwrap()));
    }

    #[tokio::test]
    async fn localhost_is_refused_without_asking_the_resolver() {
        // This table calls localhost public; the name alone is enough to refuse it.
        let lying = StaticResolver::default()
            .with("localhost", &[ip("93.184.215.14")])
            .with("app.localhost", &[ip("93.184.215.14")]);
        for raw in ["https://localhost/", "https://app.localhost./"] {
            let url = SubscriptionUrl::try_from(raw.to_owned()).unwrap();
            let err = resolve_checked(&lying, &url, &STRICT).await.unwrap_err();
            assert!(matches!(err, UrlError::Forbidden(_)), "{raw}: {err:?}");
        }
    }
}
