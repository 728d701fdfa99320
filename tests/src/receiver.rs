//! A webhook receiver for tests: records every request and answers with the statuses (and
//! after the delays) the test chose.
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
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

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

/// Listens on 127.0.0.1 and a free port until dropped.
pub struct TestReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
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

async fn serve(listener: TcpListener, state: Arc<State>) {
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
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&state), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl TestReceiver {
    pub async fn start(script: Script) -> Self {
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
        });
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Self {
            addr,
            state,
            server,
        }
    }

    /// Answers every request with `status` from now on (None: back to the script), as an
    /// endpoint that goes down and recovers.
    pub fn answer_all_with(&self, status: Option<u16>) {
        *lock(&self.state.override_status) = status;
    }

    /// `http://127.0.0.1:<port>/webhooks`.
    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
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
