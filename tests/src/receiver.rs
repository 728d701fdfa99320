//! A webhook receiver for tests: records every request and answers with the statuses the
//! test chose.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The statuses to answer with, in order; the last repeats.
#[derive(Clone, Debug)]
pub struct Script(Vec<u16>);

impl Script {
    pub fn always(status: u16) -> Self {
        Self(vec![status])
    }
    pub fn sequence(statuses: impl IntoIterator<Item = u16>) -> Self {
        let list: Vec<u16> = statuses.into_iter().collect();
        assert!(!list.is_empty(), "a script needs at least one status");
        Self(list)
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

struct State {
    script: Script,
    /// While set, every request is answered with this status instead of the script's.
    override_status: Mutex<Option<u16>>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct TestReceiver {
    addr: SocketAddr,
    state: Arc<State>,
}

async fn answer(
    state: Arc<State>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let status = {
        let mut requests = state.requests.lock().unwrap_or_else(|p| p.into_inner());
        let script = &state.script.0;
        let forced = *state
            .override_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let status = forced.unwrap_or(script[requests.len().min(script.len() - 1)]);
        requests.push(Recorded {
            method,
            path,
            headers,
            body,
            at: Instant::now(),
            status,
        });
        status
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok(response)
}

impl TestReceiver {
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a receiver");
        let addr = listener.local_addr().expect("the receiver's address");
        let state = Arc::new(State {
            script,
            override_status: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| answer(Arc::clone(&state), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    /// Answers every request with `status` from now on (None: back to the script), as an
    /// endpoint that goes down and recovers.
    pub fn answer_all_with(&self, status: Option<u16>) {
        *self
            .state
            .override_status
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = status;
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` requests arrived, or the timeout; returns what arrived.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n || Instant::now() >= deadline {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
