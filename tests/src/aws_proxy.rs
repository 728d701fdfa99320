//! A proxy between Herald and moto that records each AWS call: the API action (from the
//! JSON protocols' `X-Amz-Target`) and the table or queue it names. The emulator tests use
//! it to check that a function calls only what the template's policies allow it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One call: `dynamodb:PutItem` or `sqs:SendMessageBatch`, and the resource's name as
/// provisioned (a table name, `table/index/name`, or a queue's name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AwsCall {
    pub action: String,
    pub resource: String,
}

pub struct RecordingProxy {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<AwsCall>>>,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::new();
        let recorded = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (client, upstream, recorded) =
                    (client.clone(), upstream.clone(), recorded.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        forward(request, client.clone(), upstream.clone(), recorded.clone())
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    request: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    recorded: Arc<Mutex<Vec<AwsCall>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(call) = describe(&parts.headers, &body) {
        recorded.lock().unwrap().push(call);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap());
        }
    };
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != hyper::header::CONTENT_LENGTH && name != hyper::header::TRANSFER_ENCODING {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    Ok(response.body(Full::new(bytes)).unwrap())
}

fn describe(headers: &hyper::HeaderMap, body: &[u8]) -> Option<AwsCall> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let (service, operation) = target.split_once('.')?;
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (prefix, resource) = if service.starts_with("DynamoDB") {
        let table = json["TableName"].as_str().unwrap_or_default();
        let resource = match json["IndexName"].as_str() {
            Some(index) => format!("{table}/index/{index}"),
            None => table.to_owned(),
        };
        ("dynamodb", resource)
    } else if service == "AmazonSQS" {
        let url = json["QueueUrl"].as_str().unwrap_or_default();
        ("sqs", url.rsplit('/').next().unwrap_or_default().to_owned())
    } else {
        (service, String::new())
    };
    Some(AwsCall {
        action: format!("{prefix}:{operation}"),
        resource,
    })
}
