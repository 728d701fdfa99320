//! The HTTP client that POSTs webhooks: built once per container, connections pooled,
//! redirects never followed, every exchange bounded in time and in the bytes kept, and
//! every connection made only to an address the SSRF guard accepted.
//!
//! It is hyper-util's client with a connector of Herald's own (the guarded resolver,
//! rustls, and [`first_connection`]'s layer), not a general-purpose client: a webhook
//! needs no redirects, cookies, proxies or retry policy, and each of those layers cost
//! every POST its allocations (docs/PERFORMANCE.md, "What a webhook allocates").

use std::borrow::Cow;
use std::error::Error as StdError;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;
use tokio::time::timeout_at;
use url::Url;

use herald_core::delivery::AttemptError;
use herald_core::ports::{OutgoingWebhook, SendOutcome, WebhookSender};
use herald_core::subscription::url::{
    Resolver, SubscriptionUrl, UrlError, UrlPolicy, check_ip, resolve_checked,
};

mod first_connection;
mod tcp;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A webhook's body, in memory and shared with the one retry's copy.
type Body = Full<Bytes>;

/// A connection: resolved by the guard, made by hyper-util's TCP connector without the
/// addresses it records ([`tcp`]), TLS by rustls where the URL says https, noted for
/// [`first_connection`] and bounded by the connect timeout.
type Connector =
    first_connection::NoteConnections<hyper_rustls::HttpsConnector<tcp::Tcp<GuardedResolver>>>;

type Client = hyper_util::client::legacy::Client<Connector, Body>;

type ClientError = hyper_util::client::legacy::Error;

/// Longest `detail` kept for a failed attempt.
const MAX_DETAIL_CHARS: usize = 300;

#[derive(Clone, Debug)]
pub struct SenderSettings {
    /// The whole exchange: resolving, connecting, sending, and reading the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub policy: UrlPolicy,
    /// How much of an answer's body is kept for the attempt log.
    pub max_excerpt_bytes: usize,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            policy: UrlPolicy::default(),
            max_excerpt_bytes: 2048,
        }
    }
}

#[derive(Clone, Debug, Error)]
#[error("the HTTP client could not be built: {0}")]
pub struct SenderBuildError(String);

/// Raised by the resolver when every address of a name is forbidden.
#[derive(Debug, Error)]
#[error("{0}")]
struct ForbiddenTarget(String);

/// Raised by the resolver when a name does not resolve.
#[derive(Debug, Error)]
#[error("{0}")]
struct NotResolved(String);

/// The connector's resolver: resolves with Herald's resolver and hands the connector only
/// the addresses the guard accepts, so the connection goes to an address that was checked
/// and a second lookup cannot swap in another (DNS rebinding). A literal address never
/// comes here: [`SubscriptionUrl::check`] judged it.
#[derive(Clone)]
struct GuardedResolver {
    lookup: Lookup,
    policy: Arc<UrlPolicy>,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let lookup = Arc::clone(&self.lookup);
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<IpAddr> = lookup(host.clone(), 0).await.map_err(|e| -> BoxError {
                Box::new(NotResolved(format!("{host} does not resolve: {e}")))
            })?;
            if found.is_empty() {
                let why = format!("{host} resolves to no address");
                return Err(Box::new(NotResolved(why)) as BoxError);
            }
            // The connector sets the URL's port on each.
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| check_ip(*ip, &policy).is_ok())
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                let why = format!("{host} resolves only to addresses that are not public");
                return Err(Box::new(ForbiddenTarget(why)) as BoxError);
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Herald's resolver with its type forgotten, for the sender's own lookups.
type Lookup = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>
        + Send
        + Sync,
>;

/// [`Lookup`] as a [`Resolver`], for [`resolve_checked`].
struct ErasedResolver<'a>(&'a Lookup);

impl Resolver for ErasedResolver<'_> {
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send {
        (self.0)(host.to_owned(), port)
    }
}

pub struct HttpWebhookSender {
    client: Client,
    /// Keeps no idle connection, so the one retry after a connection closed without an
    /// answer goes out on a new one, never on another pooled connection the receiver may
    /// have closed as well.
    fresh: Client,
    /// The HTTPS hosts `client` connects to, so a batch's POSTs to a receiver speaking
    /// HTTP/2 share its first connection instead of each opening one
    /// ([`first_connection`]).
    hosts: first_connection::Hosts,
    settings: SenderSettings,
    /// Resolves a name whose port the policy denies on some address (see
    /// [`HttpWebhookSender::check_denied`]).
    lookup: Lookup,
}

impl HttpWebhookSender {
    /// The sender the functions use: receivers' certificates verified against Mozilla's
    /// roots, and no others.
    pub fn new<R: Resolver + 'static>(
        settings: SenderSettings,
        resolver: Arc<R>,
    ) -> Result<Self, SenderBuildError> {
        Self::build(settings, resolver, None)
    }

    /// [`HttpWebhookSender::new`], also trusting `root`: for a receiver over TLS that a test
    /// or the bench made, whose certificate chains to a root of its own. The functions
    /// never call it, and nothing a deployment configures reaches it: a receiver whose
    /// certificate chains to a private CA is refused (docs/DECISIONS.md, "TLS trust").
    pub fn trusting<R: Resolver + 'static>(
        settings: SenderSettings,
        resolver: Arc<R>,
        root: &rustls::pki_types::CertificateDer<'_>,
    ) -> Result<Self, SenderBuildError> {
        Self::build(settings, resolver, Some(root))
    }

    fn build<R: Resolver + 'static>(
        settings: SenderSettings,
        resolver: Arc<R>,
        root: Option<&rustls::pki_types::CertificateDer<'_>>,
    ) -> Result<Self, SenderBuildError> {
        let tls = crate::http::tls::webhook_client_config_trusting(root)
            .map_err(|e| SenderBuildError(e.to_string()))?;
        let lookup: Lookup = {
            let resolver = Arc::clone(&resolver);
            Arc::new(move |host: String, port: u16| {
                let resolver = Arc::clone(&resolver);
                Box::pin(async move { resolver.resolve(&host, port).await })
            })
        };
        let tls = Arc::new(tls);
        Ok(Self {
            client: build_client(&settings, &lookup, Arc::clone(&tls), usize::MAX),
            fresh: build_client(&settings, &lookup, tls, 0),
            hosts: first_connection::Hosts::default(),
            settings,
            lookup,
        })
    }

    /// Refuses a host name that resolves to an address of [`UrlPolicy::denied`]. The
    /// connector's resolver is told the name without the port, so the guard there cannot
    /// judge a socket address; the name is resolved here first, with the port, and only when the
    /// port is a denied one (never, outside the local runner). Literal addresses and
    /// `localhost` were judged by [`SubscriptionUrl::check`] already. A name whose answer
    /// changes between this lookup and the connection's is not caught here: what the
    /// local runner keeps out is a URL written at its own endpoint, not a DNS server an
    /// attacker runs.
    async fn check_denied(&self, url: &SubscriptionUrl) -> Result<(), UrlError> {
        let policy = &self.settings.policy;
        if !policy.denies_port(url.port()) || url.ip_literal().is_some() {
            return Ok(());
        }
        match resolve_checked(&ErasedResolver(&self.lookup), url, policy).await {
            Err(refused @ UrlError::Forbidden(_)) => Err(refused),
            // The exchange reports a name that does not resolve, as it would any day.
            Ok(_) | Err(_) => Ok(()),
        }
    }

    async fn exchange(&self, webhook: OutgoingWebhook, started: Instant) -> SendOutcome {
        // The deadline bounds the whole exchange (the retry included), and lets a late
        // body end the excerpt, not the attempt.
        // The subscription's own limit when it set a shorter one.
        let limit = webhook
            .timeout
            .map_or(self.settings.timeout, |own| own.min(self.settings.timeout));
        let deadline = tokio::time::Instant::from_std(started) + limit;
        let host = self.hosts.of(webhook.url.url());
        let prepared = header_map(webhook.headers, webhook.custom_headers)
            .and_then(|headers| Ok((headers, uri_of(webhook.url.url())?)));
        let (headers, uri) = match prepared {
            Ok(prepared) => prepared,
            Err(refused) => {
                return SendOutcome::Failed {
                    error: AttemptError::Io,
                    detail: refused,
                    latency: started.elapsed(),
                };
            }
        };
        // What a second try would send, kept aside before the first takes the request:
        // the URI, the header map and the body, their bytes shared, not copied.
        let body = Bytes::from(webhook.body);
        let copy = (uri.clone(), headers.clone(), body.clone());
        let request = post(uri, headers, body);
        let sending = async {
            match host {
                Some(host) => {
                    // Another POST's connection to this host, if one is being opened
                    // (the attempt's deadline around it bounds the wait too).
                    let wait_until =
                        tokio::time::Instant::now() + first_connection::WAIT_FOR_CONNECTION;
                    let reserved = host.wait_for_connection(wait_until).await;
                    first_connection::scope(host, reserved, self.client.request(request)).await
                }
                None => self.client.request(request).await,
            }
        };
        let mut sent = timeout_at(deadline, sending).await;
        // Once, on a new connection, inside the same deadline: see docs/DECISIONS.md
        // ("Delivering") for why any such failure is retried, not only a reused
        // connection's.
        let mut retried = false;
        if let Ok(Err(e)) = &sent
            && closed_without_answer(e)
        {
            retried = true;
            let (uri, headers, body) = copy;
            sent = timeout_at(deadline, self.fresh.request(post(uri, headers, body))).await;
        }
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return noting_retry(self.failed(&e, started, limit), retried),
            Err(_) => return noting_retry(self.timed_out(started, limit), retried),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        let excerpt = read_excerpt(&mut response, self.settings.max_excerpt_bytes, deadline).await;
        SendOutcome::Answered {
            status,
            retry_after,
            excerpt,
            latency: started.elapsed(),
        }
    }

    fn failed(&self, e: &ClientError, started: Instant, limit: Duration) -> SendOutcome {
        let error = classify(e);
        let detail = match error {
            AttemptError::Timeout if e.is_connect() => format!(
                "no connection within {} ms",
                self.settings.connect_timeout.as_millis()
            ),
            AttemptError::Timeout => return self.timed_out(started, limit),
            _ => describe(e),
        };
        SendOutcome::Failed {
            error,
            detail,
            latency: started.elapsed(),
        }
    }

    fn timed_out(&self, started: Instant, limit: Duration) -> SendOutcome {
        SendOutcome::Failed {
            error: AttemptError::Timeout,
            detail: format!("no answer within {} ms", limit.as_millis()),
            latency: started.elapsed(),
        }
    }
}

/// The request's target. A subscription's URL has no fragment and no user name (it was
/// checked), so its text is a valid URI.
fn uri_of(url: &Url) -> Result<http::Uri, String> {
    url.as_str()
        .parse()
        .map_err(|_| "the URL is not a valid HTTP target".to_owned())
}

/// A POST of `body` to `uri` with `headers` (the client adds `host`).
fn post(uri: http::Uri, headers: HeaderMap, body: Bytes) -> http::Request<Body> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// The webhook's headers as the client sends them. Herald's own names and fixed values
/// are static text and are used as they are; a computed value is moved into the map,
/// not copied. A header that is not valid HTTP is refused by its name alone: its value
/// may be a secret. The first `custom` are the subscription's own: their values are
/// marked sensitive, which HTTP/2 sends never indexed (`OutgoingWebhook::custom_headers`)
/// and `Debug` does not show.
fn header_map(
    headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    custom: usize,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (n, (name, value)) in headers.into_iter().enumerate() {
        let refused = || format!("the header {name:?} is not a valid HTTP header");
        let header_name = match name {
            Cow::Borrowed(name) if is_static_name(name) => HeaderName::from_static(name),
            ref name => HeaderName::from_bytes(name.as_bytes()).map_err(|_| refused())?,
        };
        let mut header_value = match value {
            Cow::Borrowed(value) if is_static_value(value) => HeaderValue::from_static(value),
            Cow::Borrowed(value) => HeaderValue::from_str(value).map_err(|_| refused())?,
            Cow::Owned(value) => {
                HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| refused())?
            }
        };
        header_value.set_sensitive(n < custom);
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// What `HeaderName::from_static` takes without panicking: a lowercase token.
fn is_static_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

/// What `HeaderValue::from_static` takes without panicking: visible ASCII, spaces and tabs.
fn is_static_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) || b == b'\t')
}

/// Said of a failed attempt whose POST went out twice, so the attempt log shows that the
/// receiver may have seen it twice (under one `webhook-id`).
const SENT_TWICE: &str =
    "; sent again on a new connection after the first closed without an answer";

/// A failure after the one retry says so in its detail.
fn noting_retry(outcome: SendOutcome, retried: bool) -> SendOutcome {
    match outcome {
        SendOutcome::Failed {
            error,
            detail,
            latency,
        } if retried => SendOutcome::Failed {
            error,
            detail: detail + SENT_TWICE,
            latency,
        },
        other => other,
    }
}

fn build_client(
    settings: &SenderSettings,
    lookup: &Lookup,
    tls: Arc<rustls::ClientConfig>,
    max_idle_per_host: usize,
) -> Client {
    let mut tcp = HttpConnector::new_with_resolver(GuardedResolver {
        lookup: Arc::clone(lookup),
        policy: Arc::new(settings.policy.clone()),
    });
    // https URLs too: the TLS connector wraps this one.
    tcp.enforce_http(false);
    // A POST is one write of its head and one of its body: nothing gained by waiting.
    tcp.set_nodelay(true);
    // ALPN offers h2 and http/1.1 (the TLS configuration says so).
    let tls = hyper_rustls::HttpsConnector::from((tcp::Tcp::new(tcp), tls));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        // Below the keep-alive of common servers and load balancers (60 s and up),
        // so the pool seldom hands out a connection the receiver is closing.
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(max_idle_per_host)
        .build(first_connection::NoteConnections::new(
            tls,
            settings.connect_timeout,
        ))
}

/// The sender, built when a function first sends (ingest and manage never do, and are
/// spared building its TLS configuration at every cold start) or at start-up.
pub struct SenderSource<R> {
    settings: SenderSettings,
    resolver: Arc<R>,
    sender: std::sync::OnceLock<Result<HttpWebhookSender, SenderBuildError>>,
}

impl<R: Resolver + 'static> SenderSource<R> {
    pub fn on_first_use(settings: SenderSettings, resolver: Arc<R>) -> Self {
        Self {
            settings,
            resolver,
            sender: std::sync::OnceLock::new(),
        }
    }

    /// Built now: a sender that cannot be built stops the function at start-up.
    pub fn ready(settings: SenderSettings, resolver: Arc<R>) -> Result<Self, SenderBuildError> {
        let source = Self::on_first_use(settings, resolver);
        if let Err(e) = source.sender() {
            return Err(e.clone());
        }
        Ok(source)
    }

    fn sender(&self) -> &Result<HttpWebhookSender, SenderBuildError> {
        self.sender.get_or_init(|| {
            HttpWebhookSender::new(self.settings.clone(), Arc::clone(&self.resolver))
        })
    }
}

impl<R: Resolver + 'static> WebhookSender for SenderSource<R> {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        match self.sender() {
            Ok(sender) => sender.send(webhook).await,
            Err(e) => SendOutcome::Failed {
                error: AttemptError::Io,
                detail: e.to_string(),
                latency: Duration::ZERO,
            },
        }
    }
}

impl WebhookSender for HttpWebhookSender {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        let started = Instant::now();
        // The URL was checked at registration under the policy of that day; this applies
        // today's, and covers literal addresses, which never reach the resolver.
        let checked = match webhook.url.check(&self.settings.policy) {
            Ok(()) => self.check_denied(&webhook.url).await,
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            return SendOutcome::Failed {
                error: AttemptError::Forbidden,
                detail: e.to_string(),
                latency: started.elapsed(),
            };
        }
        self.exchange(webhook, started).await
    }
}

/// The first `limit` bytes of the body, read frame by frame so a huge answer costs no
/// more than that. The status is the receiver's answer: a body that fails or outlasts
/// the deadline only shortens the excerpt.
async fn read_excerpt(
    response: &mut http::Response<hyper::body::Incoming>,
    limit: usize,
    deadline: tokio::time::Instant,
) -> String {
    let mut kept: Vec<u8> = Vec::new();
    while kept.len() < limit {
        // The end of the body, a broken one, or the deadline: keep what came.
        let Ok(Some(Ok(frame))) = timeout_at(deadline, response.body_mut().frame()).await else {
            break;
        };
        // Trailers carry nothing for the excerpt.
        if let Ok(chunk) = frame.into_data() {
            let room = limit - kept.len();
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    drop_cut_character(&mut kept);
    String::from_utf8_lossy(&kept).into_owned()
}

/// A cut through a multi-byte character would show as U+FFFD; the partial character is
/// dropped instead.
fn drop_cut_character(bytes: &mut Vec<u8>) {
    let tail = bytes.len().saturating_sub(4)..bytes.len();
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    if let Some(lead) = tail.rev().find(|&i| !is_continuation(bytes[i]))
        && let Err(e) = std::str::from_utf8(&bytes[lead..])
        && e.error_len().is_none()
    {
        bytes.truncate(lead);
    }
}

fn chain(e: &ClientError) -> impl Iterator<Item = &(dyn StdError + 'static)> {
    std::iter::successors(e.source(), |&cause| cause.source())
}

/// The causes as one line, without the URL (its path or query may carry a customer's
/// token), and short.
fn describe(e: &ClientError) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in chain(e) {
        let text = cause.to_string();
        // Wrappers often repeat their source's message; once is enough.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        // The client's own errors never carry the URL.
        parts.push(e.to_string());
    }
    let line = parts.join(": ");
    match line.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// Every error in the chain, with the ones an `io::Error` wraps: those are not its
/// `source`, and the TLS stream hands rustls' errors over that way.
fn causes(e: &ClientError) -> Vec<&(dyn StdError + 'static)> {
    let mut found = Vec::new();
    for cause in chain(e) {
        let mut layer = Some(cause);
        while let Some(error) = layer {
            found.push(error);
            layer = error
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .map(|inner| inner as &(dyn StdError + 'static));
        }
    }
    found
}

fn classify(e: &ClientError) -> AttemptError {
    for cause in causes(e) {
        if cause.is::<ForbiddenTarget>() {
            return AttemptError::Forbidden;
        }
        if cause.is::<NotResolved>() {
            return AttemptError::Dns;
        }
        if cause.is::<rustls::Error>() {
            return AttemptError::Tls;
        }
        if cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut)
        {
            return AttemptError::Timeout;
        }
    }
    if e.is_connect() {
        AttemptError::Connect
    } else {
        AttemptError::Io
    }
}

/// The connection closed, was reset or aborted before an answer came: what a receiver
/// closing an idle keep-alive connection just as it is reused looks like. Never a connect
/// error, a timeout, or a TLS, DNS or guard refusal: those say nothing about a stale
/// connection, and a new one would meet the same. hyper reports a head cut short by the
/// close the same way as no head at all.
///
/// Over HTTP/2 the same is said by the receiver: a graceful GOAWAY (`NO_ERROR`) for a
/// stream it will not process, or a stream reset with `REFUSED_STREAM`, both of which
/// promise the request was not acted on (RFC 9113, section 8.7).
fn closed_without_answer(e: &ClientError) -> bool {
    if e.is_connect() || classify(e) != AttemptError::Io {
        return false;
    }
    causes(e).into_iter().any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
            || cause.downcast_ref::<h2::Error>().is_some_and(|h2| {
                h2.is_remote()
                    && ((h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR))
                        || (h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM)))
            })
            || cause.downcast_ref::<io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                )
            })
    })
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110: IMF-fixdate, or the obsolete
/// RFC 850 and asctime forms); a date in the past means now.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at: chrono::DateTime<chrono::Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((at - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests;
