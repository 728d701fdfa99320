//! `herald-example-receiver`: listens on `ADDR` (default 127.0.0.1:8000) and accepts
//! Herald's webhooks signed with `WEBHOOK_SECRET` (comma-separated during a rotation).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_example_receiver::{Deduper, Verifier, handle};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secrets = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the subscription's whsec_ secret")?;
    let secrets: Vec<&str> = secrets.split(',').collect();
    let verifier = Arc::new(Verifier::new(&secrets)?);
    let deduper = Arc::new(Deduper::new(100_000));
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("receiving webhooks on http://{addr}/");
    loop {
        let (stream, _) = listener.accept().await?;
        let (verifier, deduper) = (Arc::clone(&verifier), Arc::clone(&deduper));
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let (verifier, deduper) = (Arc::clone(&verifier), Arc::clone(&deduper));
                async move {
                    let (parts, body) = request.into_parts();
                    // Bound what a sender can make us buffer.
                    let body = Limited::new(body, 1024 * 1024)
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs() as i64)
                        .unwrap_or_default();
                    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
                    let status = handle(&verifier, &deduper, header, &body, now, |event| {
                        println!(
                            "accepted {} {}",
                            header("webhook-id").unwrap_or(""),
                            event["type"]
                                .as_str()
                                .or(event["event"].as_str())
                                .unwrap_or("?")
                        );
                    });
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = hyper::StatusCode::from_u16(status)
                        .unwrap_or(hyper::StatusCode::BAD_REQUEST);
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
