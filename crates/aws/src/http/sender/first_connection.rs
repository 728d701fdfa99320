//! One new connection at a time to a receiver that may speak HTTP/2.
//!
//! The client offers HTTP/2 and HTTP/1.1 by ALPN, and its pool (hyper-util's) opens a
//! connection for every request that finds none pooled: it learns that a receiver speaks
//! HTTP/2 only when the first handshake ends, keeps that connection, and drops the others
//! after their handshakes. A batch's records to a receiver new to the container would
//! each pay a TLS handshake (about 300 µs of CPU: docs/PERFORMANCE.md, "Receivers over
//! TLS") to keep one.
//!
//! So a POST over HTTPS to a host with a connection being opened, and not known to speak
//! HTTP/1.1 only, first waits for that connection to be made or to fail (at most
//! [`WAIT_FOR_CONNECTION`]). If it speaks HTTP/2 the POST then finds it pooled and
//! shares it; if HTTP/1.1, the POST opens its own, one handshake later than it would
//! have, and POSTs to that host are not held again while it answers HTTP/1.1. Nothing
//! else changes: the wait is inside the attempt's deadline, and a connection that fails
//! or takes longer than the wait releases every waiting POST to connect on its own, as
//! before.
//!
//! The client's connector is told only an opaque destination, so the host is handed to
//! it beside the request: [`scope`] runs the client's request with its host's [`Host`]
//! in a task-local, and the layer ([`NoteConnections`]) takes it when the client asks for
//! a connection, which is in that request's poll.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::Connection;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout_at};
use url::Url;

/// The longest a POST waits for another's connection to the same host: a TCP and TLS
/// handshake across the world takes well under it. Past it, the POST opens its own.
pub(crate) const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(1);

/// Hosts kept; past it, those with no connection being opened are forgotten (and a
/// forgotten host is treated as new).
const MAX_HOSTS: usize = 1024;

/// What the last connection made to a host negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Unknown,
    Http2,
    Http1,
}

#[derive(Debug)]
struct State {
    /// Connections being opened to this host.
    opening: usize,
    protocol: Protocol,
    /// Connections made to this host so far.
    made: u64,
}

/// One host (scheme, name and port) as the sender has seen it.
#[derive(Debug)]
pub(crate) struct Host {
    state: Mutex<State>,
    /// Told each time a connection to the host is made, fails or is given up.
    settled: Notify,
}

impl Host {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                opening: 0,
                protocol: Protocol::Unknown,
                made: 0,
            }),
            settled: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits while a connection to this host is being opened and the host may speak
    /// HTTP/2: until one is made, every one being opened has failed, or `until`.
    pub(crate) async fn wait_for_connection(&self, until: Instant) {
        let made_before = self.state().made;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the state is read, so a connection settling in between
            // is not missed.
            settled.as_mut().enable();
            {
                let state = self.state();
                let held = state.opening > 0 && state.protocol != Protocol::Http1;
                if !held || state.made != made_before {
                    return;
                }
            }
            if timeout_at(until, settled).await.is_err() {
                return;
            }
        }
    }

    /// A connection to this host is being opened; the guard says how it ended.
    fn opening(self: &Arc<Self>) -> Opening {
        self.state().opening += 1;
        Opening {
            host: Some(Arc::clone(self)),
        }
    }

    fn settle(&self, negotiated_h2: Option<bool>) {
        {
            let mut state = self.state();
            state.opening -= 1;
            if let Some(h2) = negotiated_h2 {
                state.made += 1;
                state.protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
            }
            // A failed connection says nothing of the host's protocol.
        }
        self.settled.notify_waiters();
    }
}

/// A connection being opened to a host. Dropped before [`Opening::made`] (the connect
/// failed, timed out or was cancelled), it releases the POSTs waiting for it all the same.
struct Opening {
    host: Option<Arc<Host>>,
}

impl Opening {
    fn made(mut self, negotiated_h2: bool) {
        if let Some(host) = self.host.take() {
            host.settle(Some(negotiated_h2));
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if let Some(host) = self.host.take() {
            host.settle(None);
        }
    }
}

/// The hosts a sender has POSTed to over HTTPS, bounded by [`MAX_HOSTS`].
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    hosts: Mutex<HashMap<(String, u16), Arc<Host>>>,
}

impl Hosts {
    /// The host of an HTTPS URL. None for plain HTTP, which the client speaks only as
    /// HTTP/1.1 (no HTTP/2 without TLS), so there is no connection to share.
    pub(crate) fn of(&self, url: &Url) -> Option<Arc<Host>> {
        if url.scheme() != "https" {
            return None;
        }
        let key = (
            url.host_str()?.to_ascii_lowercase(),
            url.port_or_known_default()?,
        );
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = hosts.get(&key) {
            return Some(Arc::clone(host));
        }
        if hosts.len() >= MAX_HOSTS {
            // Keep the hosts a POST or a connection still holds.
            hosts.retain(|_, host| Arc::strong_count(host) > 1);
        }
        let host = Arc::new(Host::new());
        // Still full of busy hosts: this one is not kept, and is treated as new next time.
        if hosts.len() < MAX_HOSTS {
            hosts.insert(key, Arc::clone(&host));
        }
        Some(host)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hosts.lock().unwrap().len()
    }
}

tokio::task_local! {
    /// The host of the request the client is running, for [`NoteConnections`].
    static REQUEST_HOST: Arc<Host>;
}

/// Runs the client's `request` with `host` told to the connector layer.
pub(crate) async fn scope<F: Future>(host: Arc<Host>, request: F) -> F::Output {
    REQUEST_HOST.scope(host, request).await
}

/// The connector layer noting each connection the client opens to a host of
/// [`scope`]: when it starts, and what it negotiated when it is made.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NoteConnectionsLayer;

impl<S> tower_layer::Layer<S> for NoteConnectionsLayer {
    type Service = NoteConnections<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NoteConnections { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct NoteConnections<S> {
    inner: S,
}

type Noted<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, Request> tower_service::Service<Request> for NoteConnections<S>
where
    S: tower_service::Service<Request>,
    S::Response: Connection + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Noted<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, destination: Request) -> Self::Future {
        // The client asks for a connection while polling the request, inside its scope.
        // Outside one (plain HTTP, and the retry's client, which keeps no connection to
        // share) nothing is noted.
        let opening = REQUEST_HOST.try_with(Host::opening).ok();
        let connecting = self.inner.call(destination);
        Box::pin(async move {
            let connected = connecting.await;
            if let (Some(opening), Ok(connection)) = (opening, &connected) {
                opening.made(connection.connected().is_negotiated_h2());
            }
            connected
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + WAIT_FOR_CONNECTION
    }

    /// A POST waiting for `host`'s connection (up to 5 s): how long it waited.
    fn waiter(host: &Arc<Host>) -> tokio::task::JoinHandle<Duration> {
        let host = Arc::clone(host);
        tokio::spawn(async move {
            let started = Instant::now();
            host.wait_for_connection(started + Duration::from_secs(5))
                .await;
            started.elapsed()
        })
    }

    #[test]
    fn only_https_hosts_are_followed_one_per_scheme_name_and_port() {
        let hosts = Hosts::default();
        assert!(hosts.of(&url("http://example.com/hook")).is_none());
        let a = hosts.of(&url("https://Example.com/a")).unwrap();
        let b = hosts.of(&url("https://example.com:443/b")).unwrap();
        let c = hosts.of(&url("https://example.com:8443/a")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(hosts.len(), 2);
    }

    #[test]
    fn hosts_are_bounded_and_keep_the_ones_in_use() {
        let hosts = Hosts::default();
        let held = hosts.of(&url("https://held.example/")).unwrap();
        for i in 0..MAX_HOSTS + 10 {
            hosts.of(&url(&format!("https://h{i}.example/")));
        }
        assert!(hosts.len() <= MAX_HOSTS);
        let again = hosts.of(&url("https://held.example/")).unwrap();
        assert!(Arc::ptr_eq(&held, &again), "a host in use was forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_waits_when_no_connection_is_being_opened() {
        let host = Arc::new(Host::new());
        let started = Instant::now();
        host.wait_for_connection(soon()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_waits_for_the_connection_being_opened_and_learns_its_protocol() {
        let host = Arc::new(Host::new());
        let opening = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        opening.made(true);
        assert_eq!(waiting.await.unwrap(), Duration::from_millis(30));
        assert_eq!(host.state().protocol, Protocol::Http2);
        assert_eq!(host.state().opening, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_speaking_http1_is_not_held() {
        let host = Arc::new(Host::new());
        host.opening().made(false);
        // Its POSTs each need a connection: one being opened holds none of the others.
        let _opening = host.opening();
        let started = Instant::now();
        host.wait_for_connection(soon()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_speaking_http2_is_held_again_for_its_next_connection() {
        let host = Arc::new(Host::new());
        host.opening().made(true);
        let opening = host.opening();
        let started = Instant::now();
        host.wait_for_connection(started + Duration::from_millis(200))
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        drop(opening);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_abandoned_connection_releases_the_waiting_posts() {
        let host = Arc::new(Host::new());
        let opening = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(opening);
        assert_eq!(waiting.await.unwrap(), Duration::from_millis(10));
        assert_eq!(host.state().protocol, Protocol::Unknown);
        assert_eq!(host.state().opening, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_connection_holds_a_post_no_longer_than_the_wait() {
        let host = Arc::new(Host::new());
        let _opening = host.opening();
        let started = Instant::now();
        host.wait_for_connection(started + WAIT_FOR_CONNECTION)
            .await;
        assert_eq!(started.elapsed(), WAIT_FOR_CONNECTION);
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_goes_once_one_connection_is_made_though_another_is_still_being_opened() {
        let host = Arc::new(Host::new());
        let first = host.opening();
        let _second = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.made(true);
        assert_eq!(waiting.await.unwrap(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_waits_on_while_another_connection_may_still_be_made() {
        let host = Arc::new(Host::new());
        let first = host.opening();
        let second = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        second.made(true);
        assert_eq!(waiting.await.unwrap(), Duration::from_millis(20));
    }
}
