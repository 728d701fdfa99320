//! The webhook receiver of a load run: on its own thread and runtime, so its work is not
//! queued behind Herald's tasks; it answers a few percent of requests 500 (drawn from a
//! seeded generator, each request on its own) and everything else 204, and keeps only
//! what the ledger and the latencies need: each delivery id's first 2xx, and counts.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

/// What arrived so far.
#[derive(Default)]
pub struct Tally {
    /// Each delivery id (`webhook-id`) answered 2xx: its event's number and when its first
    /// 2xx arrived.
    pub delivered: HashMap<String, (u64, Instant)>,
    /// 2xx answers to a delivery id already answered 2xx.
    pub duplicates: u64,
    /// Every request, and those answered 500.
    pub requests: u64,
    pub failed: u64,
    /// Requests without a `webhook-id` or an event number in the body (answered 400).
    pub unreadable: u64,
}

struct State {
    tally: Mutex<Tally>,
    fail_percent: f64,
    rng: Mutex<rand::rngs::StdRng>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Receiver {
    url: String,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The event number a load publish carries in its data (`{"n": 17}`).
fn event_number(body: &[u8]) -> Option<u64> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    body["data"]["n"].as_u64()
}

async fn answer(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Empty<Bytes>>, std::convert::Infallible> {
    let at = Instant::now();
    let id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let fails = lock(&state.rng).random_bool(state.fail_percent / 100.0);
    let status = {
        let mut tally = lock(&state.tally);
        tally.requests += 1;
        match (id, event_number(&body)) {
            _ if fails => {
                tally.failed += 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            (Some(id), Some(n)) => {
                match tally.delivered.entry(id) {
                    Entry::Occupied(_) => tally.duplicates += 1,
                    Entry::Vacant(first) => {
                        first.insert((n, at));
                    }
                }
                StatusCode::NO_CONTENT
            }
            _ => {
                tally.unreadable += 1;
                StatusCode::BAD_REQUEST
            }
        }
    };
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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

impl Receiver {
    /// Listens on 127.0.0.1 and a free port, failing `fail_percent` of requests.
    pub fn start(fail_percent: f64, seed: u64) -> Self {
        let state = Arc::new(State {
            tally: Mutex::default(),
            fail_percent: fail_percent.clamp(0.0, 100.0),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        });
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("load-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("load-receiver")
                    .enable_all()
                    .build()
                    .expect("the receiver's runtime");
                runtime.block_on(async move {
                    let listener = herald_tests::receiver::listen_on_loopback();
                    let addr = listener.local_addr().expect("the receiver's address");
                    let server = tokio::spawn(serve(listener, serving));
                    let _ = url_tx.send(format!("http://{addr}/webhooks"));
                    let _ = stopped.await;
                    server.abort();
                });
            })
            .expect("the receiver's thread");
        let url = url_rx.recv().expect("the receiver's address");
        Self {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many distinct deliveries were answered 2xx so far.
    pub fn delivered(&self) -> usize {
        lock(&self.state.tally).delivered.len()
    }

    /// Reads the tally as it stands.
    pub fn with_tally<T>(&self, read: impl FnOnce(&Tally) -> T) -> T {
        read(&lock(&self.state.tally))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
