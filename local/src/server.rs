//! The HTTP side of the local runner: ingest and manage behind a stand-in for API Gateway.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use herald_aws::lambda::wiring::AwsPorts;
use herald_aws::xray::XRay;
use herald_core::trace::{Span, TraceHeader};
use lambda_http::RequestExt;

use crate::gateway::{self, Call, Gateway, Refusal};
use crate::routes::Function;

/// How long open connections get to finish the request in hand when the server stops.
const DRAIN: Duration = Duration::from_secs(10);

/// The API's gateway and the functions behind it, built once.
pub struct Functions {
    pub gateway: Gateway,
    pub ingest: herald_ingest::IngestDeps<AwsPorts>,
    pub manage: herald_manage::ManageDeps<AwsPorts>,
    /// The JWT claim that carries the tenant (`HERALD_TENANT_CLAIM`).
    pub tenant_claim: String,
    /// With a daemon (`AWS_XRAY_DAEMON_ADDRESS`), the runner plays Lambda's active
    /// tracing: every invocation begins a sampled trace, and its segment is sent.
    pub xray: XRay,
}

/// A call over HTTP API's payload quota, or whose event would be over Lambda's: the
/// function never runs. AWS does not document its answer to either; this runner answers
/// 413 in the shape of the gateway's own answers.
fn too_large() -> Response<Full<Bytes>> {
    json_answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        &json!({"message": "Request Entity Too Large"}),
    )
}

fn json_answer(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// What the gateway answers itself: its own body, and the authorizer's challenge.
fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = json_answer(status, &refusal.body);
    if let Some(challenge) = refusal
        .www_authenticate
        .and_then(|c| hyper::header::HeaderValue::from_str(&c).ok())
    {
        response
            .headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Header names as API Gateway passes them: lower case, a repeated one joined by commas.
fn joined_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let Ok(value) = value.to_str() else { continue };
        // Cookies are joined the way browsers send them, so they split back into a list.
        let separator = if name == hyper::header::COOKIE {
            "; "
        } else {
            ","
        };
        joined
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(separator);
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    joined
}

async fn answer(
    functions: Arc<Functions>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = joined_headers(request.headers());

    // API Gateway answers an unrouted call and an unauthorized one itself, in that order,
    // before any function runs.
    let routed = match functions.gateway.route(&method, &path) {
        Ok(routed) => routed,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let caller = match functions.gateway.authorize_route(
        &routed,
        headers.get("authorization").map(String::as_str),
        &functions.tenant_claim,
        chrono::Utc::now().timestamp(),
    ) {
        Ok(caller) => caller,
        Err(refusal) => return Ok(refused(refusal)),
    };
    let body = match Limited::new(request.into_body(), gateway::MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Ok(too_large()),
        Err(e) => {
            return Ok(json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"message": format!("the request body could not be read: {e}")}),
            ));
        }
    };
    let source_ip = peer.ip().to_string();
    let call = Call {
        method: &method,
        path: &path,
        query: &query,
        headers: &headers,
        body: &body,
        source_ip: &source_ip,
    };
    let event = functions
        .gateway
        .event_for(&call, &routed, caller.as_ref())
        .to_string();
    if event.len() > gateway::MAX_EVENT_BYTES {
        return Ok(too_large());
    }
    let lambda_request = match gateway::request_from(&event) {
        Ok(request) => request,
        Err(e) => {
            return Ok(json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"message": format!("the request cannot be passed to a function: {e}")}),
            ));
        }
    };
    // As Lambda with active tracing: the invocation's segment, under which the function
    // hangs its own spans ("Using AWS Lambda with AWS X-Ray",
    // https://docs.aws.amazon.com/lambda/latest/dg/services-xray.html).
    let now = chrono::Utc::now();
    let invocation = functions
        .xray
        .is_on()
        .then(|| TraceHeader::begin(now, &mut rand::rng()));
    let lambda_request = match &invocation {
        Some(header) => {
            let mut context = lambda_http::Context::default();
            context.xray_trace_id = Some(header.to_string());
            lambda_request.with_lambda_context(context)
        }
        None => lambda_request,
    };
    let function = routed.matched.route.function;
    let response = invoke_within(routed.matched.route.timeout, async {
        match function {
            Function::Ingest => herald_ingest::handle(&functions.ingest, lambda_request).await,
            Function::Manage => herald_manage::handle(&functions.manage, lambda_request).await,
        }
    })
    .await;
    if let Some(header) = invocation {
        let name = match function {
            Function::Ingest => "herald-ingest",
            Function::Manage => "herald-manage",
        };
        let mut segment = Span::begin(name, now, &mut rand::rng());
        segment.id = header.parent.clone().unwrap_or_default();
        segment
            .end(chrono::Utc::now())
            .set("origin", "AWS::Lambda::Function".into())
            .set(
                "http",
                json!({"response": {"status": response.status().as_u16()}}),
            );
        let root = TraceHeader {
            parent: None,
            ..header
        };
        functions.xray.send_segment(&segment, &root);
    }
    let (parts, body) = response.into_parts();
    let bytes = Bytes::copy_from_slice(body.as_ref());
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

/// The function's answer, or API Gateway's own when the invocation fails: a function that
/// panics (lambda_runtime reports it to Lambda as the invocation's error) or runs past its
/// `Timeout` (Lambda stops it) gets `500 {"message":"Internal Server Error"}`, as "Issue: My
/// API with a Lambda integration returns {"message":"Internal Server Error"}" has it
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html>).
/// A timed-out invocation is dropped where it stands, as Lambda ends its process.
async fn invoke_within(
    timeout: Duration,
    invocation: impl Future<Output = lambda_http::Response<lambda_http::Body>>,
) -> lambda_http::Response<lambda_http::Body> {
    let failed = |why: &str| {
        tracing::error!("the invocation failed: {why}");
        let mut response = lambda_http::Response::new(lambda_http::Body::from(
            json!({"message": "Internal Server Error"}).to_string(),
        ));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    };
    match tokio::time::timeout(timeout, AssertUnwindSafe(invocation).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => failed("the function panicked"),
        Err(_) => failed(&format!(
            "Task timed out after {:.2} seconds",
            timeout.as_secs_f64()
        )),
    }
}

/// Binds the API's address; port 0 picks a free one, and the bound address is returned.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Resolves once `stop` turns true or its sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves until `stop` turns true, then lets open connections finish the request in hand.
pub async fn serve(listener: TcpListener, functions: Arc<Functions>, stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut until_stopped = stop.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = stopped(&mut until_stopped) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let functions = Arc::clone(&functions);
        let mut stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&functions), peer, request));
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> lambda_http::Response<lambda_http::Body> {
        lambda_http::Response::new(lambda_http::Body::from("done"))
    }

    fn is_gateways_error(response: &lambda_http::Response<lambda_http::Body>) -> bool {
        response.status() == StatusCode::INTERNAL_SERVER_ERROR
            && response.body().as_ref() == br#"{"message":"Internal Server Error"}"#
    }

    #[tokio::test]
    async fn an_invocation_that_panics_or_passes_its_timeout_gets_the_gateways_500() {
        let answered = invoke_within(Duration::from_secs(5), async { ok() }).await;
        assert_eq!(answered.body().as_ref(), b"done");

        let panicked = invoke_within(Duration::from_secs(5), async {
            if answered.status().is_success() {
                panic!("a handler's bug");
            }
            ok()
        })
        .await;
        assert!(is_gateways_error(&panicked));

        let slow = invoke_within(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ok()
        })
        .await;
        assert!(is_gateways_error(&slow));
    }
}
