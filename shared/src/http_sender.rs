//! The HTTP client that POSTs webhooks: built once per container, connections pooled,
//! redirects never followed, every exchange bounded in time and in the bytes kept, and
//! every connection made only to an address the SSRF guard accepted.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
use reqwest::redirect;
use thiserror::Error;

use crate::delivery::AttemptError;
use crate::ports::{OutgoingWebhook, SendOutcome, WebhookSender};
use crate::url_guard::{Resolver, UrlPolicy, check_ip};

#[derive(Clone, Copy, Debug)]
pub struct SenderSettings {
    /// The whole exchange: connecting, sending, and reading the answer.
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

#[derive(Debug, Error)]
#[error("the HTTP client could not be built")]
pub struct SenderBuildError(#[source] reqwest::Error);

/// Raised by the resolver when every address of a name is forbidden.
#[derive(Debug, Error)]
#[error("{0}")]
struct ForbiddenTarget(String);

/// Raised by the resolver when a name does not resolve.
#[derive(Debug, Error)]
#[error("{0}")]
struct NotResolved(String);

/// reqwest's resolver hook: resolves with Herald's resolver and keeps only addresses the
/// guard accepts, so the connection goes to an address that was checked.
struct GuardedResolver<R> {
    inner: Arc<R>,
    policy: UrlPolicy,
}

impl<R: Resolver + 'static> Resolve for GuardedResolver<R> {
    fn resolve(&self, name: Name) -> Resolving {
        let inner = Arc::clone(&self.inner);
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<IpAddr> = inner.resolve(&host, 0).await.map_err(|e| -> BoxError {
                Box::new(NotResolved(format!("{host} does not resolve: {e}")))
            })?;
            let allowed: Vec<SocketAddr> = found
                .iter()
                .filter(|ip| check_ip(**ip, &policy).is_ok())
                .map(|ip| SocketAddr::new(*ip, 0))
                .collect();
            if found.is_empty() {
                return Err(
                    Box::new(NotResolved(format!("{host} resolves to no address"))) as BoxError,
                );
            }
            if allowed.is_empty() {
                let why = format!("{host} resolves only to addresses that are not public");
                return Err(Box::new(ForbiddenTarget(why)) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

pub struct HttpWebhookSender {
    client: reqwest::Client,
    settings: SenderSettings,
}

impl HttpWebhookSender {
    pub fn new<R: Resolver + 'static>(
        settings: SenderSettings,
        resolver: Arc<R>,
    ) -> Result<Self, SenderBuildError> {
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .dns_resolver(GuardedResolver {
                inner: resolver,
                policy: settings.policy,
            })
            .build()
            .map_err(SenderBuildError)?;
        Ok(Self { client, settings })
    }

    async fn exchange(&self, webhook: OutgoingWebhook, started: Instant) -> SendOutcome {
        let mut request = self
            .client
            .post(webhook.url.url().clone())
            .body(webhook.body);
        for (name, value) in &webhook.headers {
            request = request.header(name, value);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(classify(&e), &e, started),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
        // Keep only the first bytes; a huge or trickling answer costs no more than that
        // and the timeout.
        let mut kept = Vec::new();
        while kept.len() < self.settings.max_excerpt_bytes {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) if e.is_timeout() => break,
                Err(_) => break,
            }
        }
        kept.truncate(self.settings.max_excerpt_bytes);
        SendOutcome::Answered {
            status,
            retry_after,
            excerpt: String::from_utf8_lossy(&kept).into_owned(),
            latency: started.elapsed(),
        }
    }
}

impl WebhookSender for HttpWebhookSender {
    async fn send(&self, webhook: OutgoingWebhook) -> SendOutcome {
        let started = Instant::now();
        let policy = &self.settings.policy;
        if webhook.url.url().scheme() != "https" && !policy.allow_http {
            let detail = "plain http targets are not allowed by this deployment".to_owned();
            return SendOutcome::Failed {
                error: AttemptError::Forbidden,
                detail,
                latency: started.elapsed(),
            };
        }
        // reqwest does not call the resolver for literal addresses.
        if let Some(ip) = webhook.url.ip_literal()
            && let Err(e) = check_ip(ip, policy)
        {
            return SendOutcome::Failed {
                error: AttemptError::Forbidden,
                detail: e.to_string(),
                latency: started.elapsed(),
            };
        }
        let limit = self.settings.timeout + Duration::from_millis(100);
        match tokio::time::timeout(limit, self.exchange(webhook, started)).await {
            Ok(outcome) => outcome,
            Err(_) => SendOutcome::Failed {
                error: AttemptError::Timeout,
                detail: format!(
                    "no complete answer within {} ms",
                    self.settings.timeout.as_millis()
                ),
                latency: started.elapsed(),
            },
        }
    }
}

fn failed(error: AttemptError, cause: &reqwest::Error, started: Instant) -> SendOutcome {
    SendOutcome::Failed {
        error,
        detail: describe(cause),
        latency: started.elapsed(),
    }
}

/// The error chain as one line, without the URL (it may carry a customer's token).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    if parts.is_empty() {
        parts.push(e.without_url_ref().to_string());
    }
    let mut line = parts.join(": ");
    line.truncate(300);
    line
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "<url>");
        }
        text
    }
}

fn classify(e: &reqwest::Error) -> AttemptError {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut text = String::new();
    while let Some(cause) = source {
        if cause.is::<ForbiddenTarget>() {
            return AttemptError::Forbidden;
        }
        if cause.is::<NotResolved>() {
            return AttemptError::Dns;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::TimedOut)
        {
            return AttemptError::Timeout;
        }
        text.push_str(&cause.to_string().to_ascii_lowercase());
        text.push(' ');
        source = cause.source();
    }
    if e.is_timeout() {
        AttemptError::Timeout
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        AttemptError::Tls
    } else if e.is_connect() {
        AttemptError::Connect
    } else {
        AttemptError::Io
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
