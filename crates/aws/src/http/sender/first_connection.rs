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
//! The client's connector is told only the request's URI, not which [`Host`] waits on
//! it, so the host is handed to it beside the request: [`scope`] runs the client's
//! request with its host's [`Host`] in a task-local, and the layer ([`NoteConnections`])
//! takes it when the client asks for a connection, which is in that request's poll.
//! Looking and going first are one step (a reservation, [`Host::wait_for_connection`]),
//! so two POSTs on two threads cannot both find nothing being opened and each open a
//! connection; and a connection made is told at the end of the request's poll, once the
//! client has pooled it, so a POST let go on another thread finds it there. (Both races opened a second connection in one
//! run of three on two workers, before.) Where the client's own steps differ from these
//! (a connection asked for in a later poll, say), the cost is a connection more, as
//! before, never a POST lost or failed.

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
        lock(&self.state)
    }

    /// Waits while a connection to this host is being opened and the host may speak
    /// HTTP/2: until one is made, every one being opened has failed, or `until`.
    ///
    /// When nothing is being opened and the host may speak HTTP/2, the POST goes first:
    /// it reserves the connection it may open, in the same step as it looked, so that a
    /// POST on another thread looking a moment later waits for it. [`scope`] hands the
    /// reservation to the connection if the client opens one, and lets it go otherwise.
    pub(crate) async fn wait_for_connection(self: &Arc<Self>, until: Instant) -> Option<Opening> {
        let made_before = self.state().made;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            // Registered before the state is read, so a connection settling in between
            // is not missed.
            settled.as_mut().enable();
            {
                let mut state = self.state();
                if state.protocol == Protocol::Http1 || state.made != made_before {
                    return None;
                }
                if state.opening == 0 {
                    state.opening += 1;
                    return Some(Opening::of(self));
                }
            }
            if timeout_at(until, settled).await.is_err() {
                return None;
            }
        }
    }

    /// A connection to this host is being opened; the guard says how it ended.
    fn opening(self: &Arc<Self>) -> Opening {
        self.state().opening += 1;
        Opening::of(self)
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

/// A connection being opened to a host, or reserved by the POST that may open it.
/// Dropped before [`Opening::made`] (the connect failed, timed out or was cancelled, or
/// the client needed no connection), it releases the POSTs waiting for it all the same.
pub(crate) struct Opening {
    host: Option<Arc<Host>>,
}

impl Opening {
    /// The guard of a connection already counted in `host`'s state.
    fn of(host: &Arc<Host>) -> Self {
        Self {
            host: Some(Arc::clone(host)),
        }
    }

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
        // The url crate has lowercased the name already.
        let key = (url.host_str()?.to_owned(), url.port_or_known_default()?);
        let mut hosts = lock(&self.hosts);
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
        lock(&self.hosts).len()
    }
}

/// A request running in [`scope`]: its host, the connection it reserved, and the ones
/// made in the poll under way.
struct Request {
    host: Arc<Host>,
    reserved: Mutex<Option<Opening>>,
    made: Mutex<Vec<(Opening, bool)>>,
}

impl Request {
    /// The reservation, or a new [`Opening`] when there is none (it was let go, or the
    /// client opens a second connection for the request).
    fn opening(&self) -> Opening {
        let reserved = lock(&self.reserved).take();
        reserved.unwrap_or_else(|| self.host.opening())
    }

    /// Told at the end of the poll under way, not now: the client pools an HTTP/2
    /// connection after the connector hands it over, in the same poll, and a POST on
    /// another thread let go before then would find none pooled and open another.
    fn made(&self, opening: Opening, negotiated_h2: bool) {
        lock(&self.made).push((opening, negotiated_h2));
    }

    /// The end of a poll: the reservation the client did not take (after the first) and
    /// the connections made are told.
    fn polled(&self, first: bool) {
        if first {
            drop(lock(&self.reserved).take());
        }
        let made = std::mem::take(&mut *lock(&self.made));
        for (opening, negotiated_h2) in made {
            opening.made(negotiated_h2);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values, consistent after any panic.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

tokio::task_local! {
    /// The request the client is running, for [`NoteConnections`].
    static REQUEST: Arc<Request>;
}

/// Runs the client's `request` with `host` told to the connector layer. The client asks
/// for a connection in the request's first poll, if it needs one; a `reserved` connection
/// it did not take then is let go, so the POSTs waiting on it go on.
pub(crate) async fn scope<F: Future>(
    host: Arc<Host>,
    reserved: Option<Opening>,
    request: F,
) -> F::Output {
    let told = Arc::new(Request {
        host,
        reserved: Mutex::new(reserved),
        made: Mutex::new(Vec::new()),
    });
    let mut running = std::pin::pin!(REQUEST.scope(Arc::clone(&told), request));
    let mut first = true;
    std::future::poll_fn(|cx| {
        let polled = running.as_mut().poll(cx);
        told.polled(std::mem::take(&mut first));
        polled
    })
    .await
}

/// The client's connector: `inner` (TCP and TLS) bounded by the connect timeout, noting
/// each connection the client opens to a host of [`scope`]: when it starts, and what it
/// negotiated when it is made.
#[derive(Clone, Debug)]
pub(crate) struct NoteConnections<S> {
    inner: S,
    /// The TCP and TLS handshakes together.
    connect_timeout: Duration,
}

impl<S> NoteConnections<S> {
    pub(crate) fn new(inner: S, connect_timeout: Duration) -> Self {
        Self {
            inner,
            connect_timeout,
        }
    }
}

type Noted<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, Destination> tower_service::Service<Destination> for NoteConnections<S>
where
    S: tower_service::Service<Destination>,
    S::Response: Connection + Send + 'static,
    S::Error: From<std::io::Error> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Noted<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, destination: Destination) -> Self::Future {
        // The client asks for a connection while polling the request, inside its scope.
        // Outside one (plain HTTP, and the retry's client, which keeps no connection to
        // share) nothing is noted.
        let opening = REQUEST.try_with(|request| request.opening()).ok();
        let connecting = tokio::time::timeout(self.connect_timeout, self.inner.call(destination));
        Box::pin(async move {
            let connected = match connecting.await {
                Ok(connected) => connected,
                // Told as the operating system tells a connect that timed out.
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection within the connect timeout",
                )
                .into()),
            };
            if let (Some(opening), Ok(connection)) = (opening, &connected) {
                let h2 = connection.connected().is_negotiated_h2();
                // In the request's own poll, told when it ends; in the background (the
                // request went on a pooled connection first), now.
                match REQUEST.try_with(Arc::clone) {
                    Ok(request) => request.made(opening, h2),
                    Err(_) => opening.made(h2),
                }
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

    /// A POST waiting for `host`'s connection (up to 5 s): how long it waited, and
    /// whether it went first (its reservation let go at once).
    fn waiter(host: &Arc<Host>) -> tokio::task::JoinHandle<(Duration, bool)> {
        let host = Arc::clone(host);
        tokio::spawn(async move {
            let started = Instant::now();
            let reserved = host
                .wait_for_connection(started + Duration::from_secs(5))
                .await;
            (started.elapsed(), reserved.is_some())
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
    async fn the_first_post_to_look_goes_first_and_the_next_waits_for_it() {
        let host = Arc::new(Host::new());
        let started = Instant::now();
        let reserved = host.wait_for_connection(soon()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(reserved.is_some());
        assert_eq!(host.state().opening, 1);
        // A POST looking a moment later (on another thread, say) waits for it.
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        reserved.unwrap().made(true);
        assert_eq!(waiting.await.unwrap(), (Duration::from_millis(10), false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_the_client_opens_takes_the_reservation() {
        let host = Arc::new(Host::new());
        let reserved = host.wait_for_connection(soon()).await;
        scope(Arc::clone(&host), reserved, async {
            // What the layer does when the client asks for a connection.
            let opening = REQUEST.with(|request| request.opening());
            assert_eq!(host.state().opening, 1, "the reservation, not a second one");
            tokio::task::yield_now().await;
            opening.made(true);
        })
        .await;
        assert_eq!(host.state().opening, 0);
        assert_eq!(host.state().made, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_made_in_a_requests_poll_is_told_when_that_poll_ends() {
        let host = Arc::new(Host::new());
        let reserved = host.wait_for_connection(soon()).await;
        scope(Arc::clone(&host), reserved, async {
            // What the layer does when the connection it was asked for is made.
            let opening = REQUEST.with(|request| request.opening());
            REQUEST.with(|request| request.made(opening, true));
            // The client pools it next, in this poll: the POSTs waiting are not let go
            // before that.
            assert_eq!(host.state().made, 0);
            assert_eq!(host.state().opening, 1);
            tokio::task::yield_now().await;
            assert_eq!(host.state().made, 1);
            assert_eq!(host.state().opening, 0);
            assert_eq!(host.state().protocol, Protocol::Http2);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_the_client_did_not_take_is_let_go_after_its_first_poll() {
        let host = Arc::new(Host::new());
        let reserved = host.wait_for_connection(soon()).await;
        let waiting = waiter(&host);
        // The client found a connection pooled: it asks for none, and the request takes
        // its time; the POST waiting is not held for it.
        scope(Arc::clone(&host), reserved, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .await;
        let (waited, went_first) = waiting.await.unwrap();
        assert!(waited < Duration::from_millis(50), "{waited:?}");
        assert!(went_first);
        assert_eq!(host.state().opening, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_waits_for_the_connection_being_opened_and_learns_its_protocol() {
        let host = Arc::new(Host::new());
        let opening = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished());
        opening.made(true);
        // A connection was made: the POST goes, and shares it (no reservation).
        assert_eq!(waiting.await.unwrap(), (Duration::from_millis(30), false));
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
        let reserved = host.wait_for_connection(soon()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(reserved.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_host_speaking_http2_is_held_again_for_its_next_connection() {
        let host = Arc::new(Host::new());
        host.opening().made(true);
        let opening = host.opening();
        let started = Instant::now();
        let reserved = host
            .wait_for_connection(started + Duration::from_millis(200))
            .await;
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert!(reserved.is_none());
        drop(opening);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_abandoned_connection_releases_the_waiting_posts() {
        let host = Arc::new(Host::new());
        let opening = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(opening);
        // Nothing was made: the POST goes first in its turn.
        assert_eq!(waiting.await.unwrap(), (Duration::from_millis(10), true));
        assert_eq!(host.state().protocol, Protocol::Unknown);
        assert_eq!(host.state().opening, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_connection_holds_a_post_no_longer_than_the_wait() {
        let host = Arc::new(Host::new());
        let _opening = host.opening();
        let started = Instant::now();
        let reserved = host
            .wait_for_connection(started + WAIT_FOR_CONNECTION)
            .await;
        assert_eq!(started.elapsed(), WAIT_FOR_CONNECTION);
        assert!(
            reserved.is_none(),
            "past the wait a POST opens its own, as before"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_goes_once_one_connection_is_made_though_another_is_still_being_opened() {
        let host = Arc::new(Host::new());
        let first = host.opening();
        let _second = host.opening();
        let waiting = waiter(&host);
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.made(true);
        assert_eq!(waiting.await.unwrap(), (Duration::from_millis(10), false));
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
        assert_eq!(waiting.await.unwrap(), (Duration::from_millis(20), false));
    }
}
