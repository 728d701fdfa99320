//! A webhook receiver for tests: records every request and answers with the statuses (and
//! after the delays) the test chose. In plain HTTP/1.1 ([`TestReceiver::start`]), or over
//! TLS with a root of its own, offering HTTP/2 or not ([`TestReceiver::start_https`]).
//! [`RefusingReceiver`] speaks HTTP/2 and refuses streams, as a server at its limit or
//! going away does.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use herald_tests::receiver::{Script, TestReceiver};
//!
//! let receiver = TestReceiver::start(Script::sequence([500, 500, 200])).await;
//! // … subscribe receiver.url() and publish …
//! let got = receiver.wait_for(3, Duration::from_secs(20)).await;
//! assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200]);
//! # }
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
pub use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// One scripted answer: a status, sent after a delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    status: u16,
    delay: Duration,
}

/// How a flaky receiver fails a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answers 500.
    ServerError,
    /// Answers only after `Chaos::hang` (past the sender's timeout).
    Timeout,
    /// Closes the connection without answering.
    Reset,
}

/// A receiver that fails `percent` of requests, chosen by a seeded generator, cycling
/// through 500, a timeout and a dropped connection.
#[derive(Clone, Copy, Debug)]
pub struct Chaos {
    pub seed: u64,
    pub percent: u32,
    pub hang: Duration,
}

/// The answers to give, in order of arrival; the last one repeats. Each answer's body is
/// `ok` unless [`Script::with_body`] says otherwise.
#[derive(Clone, Debug)]
pub struct Script(Vec<Step>, Option<Chaos>, Option<Bytes>);

impl Script {
    pub fn always(status: u16) -> Self {
        Self::sequence([status])
    }

    /// `[500, 500, 200]`: two failures, then success for good.
    pub fn sequence(statuses: impl IntoIterator<Item = u16>) -> Self {
        Self::steps(statuses.into_iter().map(|status| (status, Duration::ZERO)))
    }

    /// Each answer with its own delay: `[(200, Duration::from_secs(6)), (200, Duration::ZERO)]`
    /// is a first attempt that times out and a second that does not.
    pub fn steps(steps: impl IntoIterator<Item = (u16, Duration)>) -> Self {
        let steps: Vec<Step> = steps
            .into_iter()
            .map(|(status, delay)| Step { status, delay })
            .collect();
        assert!(!steps.is_empty(), "a script needs at least one answer");
        Self(steps, None, None)
    }

    /// Every answer waits `delay` first, as a slow endpoint (or one past the timeout) would.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        for step in &mut self.0 {
            step.delay = delay;
        }
        self
    }

    /// On top of the script, fails requests as `chaos` says (recorded with status 0 for a
    /// reset, 504 for a timeout, 500 for a server error).
    pub fn with_chaos(mut self, chaos: Chaos) -> Self {
        self.1 = Some(chaos);
        self
    }

    /// Every answer carries `body`, as a receiver answering with a JSON acknowledgement.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.2 = Some(body.into());
        self
    }

    fn step(&self, arrival: usize) -> Step {
        self.0[arrival.min(self.0.len() - 1)]
    }
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP/1.1, or HTTP/2 from a receiver over TLS that offered it.
    pub version: Version,
    pub method: String,
    pub path: String,
    /// Lower-case names; a repeated header keeps its last value.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// When it arrived: `at` to measure spacing, `received` to compare with wall-clock
    /// values such as `webhook-timestamp`.
    pub at: Instant,
    pub received: SystemTime,
    /// What the receiver answered: 0 when it dropped the connection, 504 when it held
    /// the request past the sender's timeout (see [`Chaos`]).
    pub status: u16,
}

impl Recorded {
    /// The header's value, or "" when it was not sent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The body as JSON; panics (failing the test) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

struct State {
    script: Script,
    /// While set, every request is answered with this status instead of the script's.
    override_status: Mutex<Option<u16>>,
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    chaos: Option<Mutex<(Chaos, rand::rngs::StdRng, usize)>>,
    /// Connections accepted, each counted before its TLS handshake (if any).
    connections: std::sync::atomic::AtomicUsize,
}

/// A test's poisoned lock still holds the requests recorded so far; use them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Connections a listener holds before it accepts them. std's and tokio's 128 is short
/// of a batch of a thousand POSTs opening their connections at once: the rest would be
/// dropped and sent again a second later (or answered with SYN cookies).
const BACKLOG: u32 = 4096;

/// A listener on 127.0.0.1 and a free port, with a backlog for a thousand connections
/// arriving at once. Call it within a tokio runtime.
pub fn listen_on_loopback() -> TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket for the receiver");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("binding a receiver on 127.0.0.1");
    socket.listen(BACKLOG).expect("listening on 127.0.0.1")
}

/// Listens on 127.0.0.1 and a free port until dropped, in plain HTTP/1.1 or over TLS.
pub struct TestReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
    /// Over TLS: the root its certificate chains to.
    root: Option<CertificateDer<'static>>,
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Whether this request fails, and how.
fn chaos_failure(state: &State) -> Option<(Failure, Duration)> {
    use rand::Rng;
    let mut chaos = lock(state.chaos.as_ref()?);
    let (settings, rng, failures) = &mut *chaos;
    if rng.random_range(0..100) >= settings.percent {
        return None;
    }
    *failures += 1;
    let failure = [Failure::ServerError, Failure::Timeout, Failure::Reset][*failures % 3];
    Some((failure, settings.hang))
}

async fn answer(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let received = SystemTime::now();
    let at = Instant::now();
    let version = request.version();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let failure = chaos_failure(&state);
    let step = {
        let mut requests = lock(&state.requests);
        let mut step = state.script.step(requests.len());
        if let Some(status) = *lock(&state.override_status) {
            step.status = status;
        }
        match failure {
            Some((Failure::ServerError, _)) => step.status = 500,
            Some((Failure::Timeout, hang)) => {
                step.status = 504;
                step.delay = hang;
            }
            Some((Failure::Reset, _)) => step.status = 0,
            None => {}
        }
        requests.push(Recorded {
            version,
            method,
            path,
            headers,
            body,
            at,
            received,
            status: step.status,
        });
        step
    };
    state.arrived.notify_waiters();
    tokio::time::sleep(step.delay).await;
    if step.status == 0 {
        // hyper closes the connection without an answer when the service fails.
        return Err(std::io::Error::other("dropped by the script"));
    }
    let body = state
        .script
        .2
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"ok"));
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(step.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(response)
}

/// Streams an HTTP/2 connection of the receiver carries at once: a batch of a thousand
/// POSTs on one connection, all answered together. (hyper's default is 200; servers in
/// front of real endpoints allow 100–256, which a sender's own bound per host, 10 by
/// default, stays under.)
const MAX_STREAMS: u32 = 4096;

async fn serve(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    // Owned here so that aborting the server closes its open connections as well.
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        state
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // As servers in front of endpoints do (nginx's `tcp_nodelay on`): without it, an
        // HTTP/2 connection's answers, small writes one after another, wait on Nagle's
        // algorithm for the sender's delayed acknowledgement (up to 40 ms each).
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let tls = tls.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&state), request));
            let Some(tls) = tls else {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                return;
            };
            // A failed handshake (a sender that does not trust the root) ends the
            // connection; the sender reports it.
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(stream);
            let _ = if h2 {
                http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(MAX_STREAMS)
                    .serve_connection(io, service)
                    .await
            } else {
                http1::Builder::new().serve_connection(io, service).await
            };
        });
    }
}

/// What a receiver over TLS speaks, offered by ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// HTTP/2, or HTTP/1.1 to a client that does not offer HTTP/2.
    Http2,
    /// HTTP/1.1 only.
    Http1,
}

/// A receiver's certificate for 127.0.0.1 and `localhost`, issued by a root made for it
/// alone: no sender trusts it unless given [`TestReceiver::root`].
pub(crate) fn tls_acceptor(offer: Offer) -> (TlsAcceptor, CertificateDer<'static>) {
    let made = "making the test receiver's certificates";
    let root_key = rcgen::KeyPair::generate().expect(made);
    let mut root_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect(made);
    root_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Herald test receiver root");
    let root = rcgen::CertifiedIssuer::self_signed(root_params, root_key).expect(made);
    let key = rcgen::KeyPair::generate().expect(made);
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect(made)
        .signed_by(&key, &root)
        .expect(made);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect(made)
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect(made);
    config.alpn_protocols = match offer {
        Offer::Http2 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Offer::Http1 => vec![b"http/1.1".to_vec()],
    };
    (TlsAcceptor::from(Arc::new(config)), root.der().clone())
}

impl TestReceiver {
    pub async fn start(script: Script) -> Self {
        Self::listen(script, None)
    }

    /// Over TLS, with a certificate for 127.0.0.1 issued by a root of its own
    /// ([`TestReceiver::root`]), speaking what `offer` says.
    pub async fn start_https(script: Script, offer: Offer) -> Self {
        Self::listen(script, Some(tls_acceptor(offer)))
    }

    fn listen(script: Script, tls: Option<(TlsAcceptor, CertificateDer<'static>)>) -> Self {
        let listener = listen_on_loopback();
        let addr = listener.local_addr().expect("the receiver's address");
        let chaos = script.1;
        let state = Arc::new(State {
            script,
            override_status: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            chaos: chaos.map(|chaos| {
                use rand::SeedableRng;
                Mutex::new((chaos, rand::rngs::StdRng::seed_from_u64(chaos.seed), 0))
            }),
            connections: Default::default(),
        });
        let (acceptor, root) = tls.unzip();
        let server = tokio::spawn(serve(listener, Arc::clone(&state), acceptor));
        Self {
            addr,
            state,
            server,
            root,
        }
    }

    /// Connections accepted so far (over TLS, whether or not the handshake succeeded).
    pub fn connections(&self) -> usize {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The root a receiver over TLS chains to, for a sender told to trust it.
    pub fn root(&self) -> Option<&CertificateDer<'static>> {
        self.root.as_ref()
    }

    /// Answers every request with `status` from now on (None: back to the script), as an
    /// endpoint that goes down and recovers.
    pub fn answer_all_with(&self, status: Option<u16>) {
        *lock(&self.state.override_status) = status;
    }

    /// `http://127.0.0.1:<port>/webhooks`, or `https://…` over TLS.
    pub fn url(&self) -> String {
        let scheme = if self.root.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/webhooks", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `n` requests arrived, or the timeout; returns what arrived,
    /// so a test asserts on the count and sees what came when it is short.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before counting, so an arrival in between is not missed.
            let arrival = self.state.arrived.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(deadline, arrival).await.is_err() {
                return self.requests();
            }
        }
    }
}

/// How a [`RefusingReceiver`] refuses. Both promise the request was not processed and
/// may be sent again (RFC 9113, section 8.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Resets a stream with `REFUSED_STREAM`, as a server at its limit does.
    ResetStream,
    /// Closes a new connection with a graceful GOAWAY (`NO_ERROR`) before processing any
    /// of its streams, as a server shutting down does.
    GoAway,
}

/// A receiver over TLS speaking HTTP/2 that refuses its first `refuse` streams (or
/// connections, for [`Refusal::GoAway`]), then answers 200 with an empty body. hyper's
/// server refuses only past its concurrency limit, which a client respects, or as it
/// shuts down; this one does it on request.
pub struct RefusingReceiver {
    addr: SocketAddr,
    root: CertificateDer<'static>,
    counts: Arc<RefusingCounts>,
    server: JoinHandle<()>,
}

#[derive(Default)]
struct RefusingCounts {
    connections: std::sync::atomic::AtomicUsize,
    refused: std::sync::atomic::AtomicUsize,
    answered: std::sync::atomic::AtomicUsize,
}

impl RefusingReceiver {
    pub async fn start(how: Refusal, refuse: usize) -> Self {
        let listener = listen_on_loopback();
        let addr = listener.local_addr().expect("the receiver's address");
        let (acceptor, root) = tls_acceptor(Offer::Http2);
        let counts = Arc::new(RefusingCounts::default());
        let server = tokio::spawn(serve_refusing(
            listener,
            acceptor,
            (how, refuse),
            Arc::clone(&counts),
        ));
        Self {
            addr,
            root,
            counts,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/webhooks", self.addr)
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// Connections accepted, refusals (streams or connections) and streams answered so far.
    pub fn counts(&self) -> (usize, usize, usize) {
        let read = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
        (
            read(&self.counts.connections),
            read(&self.counts.refused),
            read(&self.counts.answered),
        )
    }
}

impl Drop for RefusingReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve_refusing(
    listener: TcpListener,
    tls: TlsAcceptor,
    (how, refuse): (Refusal, usize),
    counts: Arc<RefusingCounts>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        counts.connections.fetch_add(1, SeqCst);
        let (tls, counts) = (tls.clone(), Arc::clone(&counts));
        connections.spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let Ok(mut connection) = h2::server::handshake(stream).await else {
                return;
            };
            // Counted and decided in one step, so two at once cannot both take the last
            // refusal.
            let refused = || {
                counts
                    .refused
                    .fetch_update(SeqCst, SeqCst, |n| (n < refuse).then_some(n + 1))
                    .is_ok()
            };
            if how == Refusal::GoAway && refused() {
                // Before any stream is processed: the GOAWAY names none as taken.
                connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                while let Some(Ok(_)) = connection.accept().await {}
                return;
            }
            while let Some(Ok((_request, mut respond))) = connection.accept().await {
                if how == Refusal::ResetStream && refused() {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                } else {
                    counts.answered.fetch_add(1, SeqCst);
                    let _ = respond.send_response(Response::new(()), true);
                }
            }
        });
    }
}
