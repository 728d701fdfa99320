//! The HTTP side of the local runner: ingest and manage behind a stand-in for API Gateway.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gateway;

/// The functions behind the gateway, built once.
pub struct Functions {
    pub ingest: herald_ingest::AwsIngest,
    pub manage: herald_manage::AwsManage,
    pub tenant_claim: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    response
}

async fn answer(
    functions: Arc<Functions>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let ingest = path == "/v1/events" || path == "/v1/events/";
    let manage = path.starts_with("/v1/subscriptions")
        || path.starts_with("/v1/deliveries")
        || path == "/v1/signing-keys";
    if !ingest && !manage {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", "route not found"));
    }
    // The JWT authorizer refuses a call before any function sees it.
    let Some(tenant) = gateway::bearer_tenant(headers.get("authorization").map(String::as_str))
    else {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <tenant>",
        ));
    };
    let body = match Limited::new(request.into_body(), gateway::MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large",
            ));
        }
    };
    let event = gateway::event_for(
        &method,
        &path,
        &query,
        &headers,
        &body,
        &functions.tenant_claim,
        &tenant,
    );
    let lambda_request = match gateway::request_for(&event) {
        Ok(r) => r,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "bad_request", &e)),
    };
    let response = if ingest {
        herald_ingest::handle(&functions.ingest, lambda_request).await
    } else {
        herald_manage::handle(&functions.manage, lambda_request).await
    };
    let (parts, body) = response.into_parts();
    let bytes = Bytes::copy_from_slice(body.as_ref());
    Ok(Response::from_parts(parts, Full::new(bytes)))
}

/// Serves until `stop` changes; returns the bound address through `bound`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

pub async fn serve(
    listener: TcpListener,
    functions: Arc<Functions>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let functions = Arc::clone(&functions);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&functions), request));
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}
