//! A proxy between Herald and moto that records each AWS call (the API action from the
//! JSON protocols' `X-Amz-Target`, and the table or queue it names) and can answer calls
//! with the errors AWS answers under load: throttling, 5xx, and an SQS batch taken in
//! part. The emulator tests use the record to check each function against the template's
//! policies; the fault tests use the errors.

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
    /// For DynamoDB: the bytes the call is billed on, by DynamoDB's item-size rules: the
    /// item written (as it is after the write), or the items read. Only from a proxy
    /// started with [`RecordingProxy::start_measuring`].
    pub item_bytes: Option<usize>,
    /// A strongly consistent read (billed double).
    pub consistent: bool,
    /// For SQS: the messages' payload the call carries (sent, or received), bodies and
    /// attributes, which SQS bills a request per started 64 KiB of. Only from a proxy
    /// started with [`RecordingProxy::start_measuring`].
    pub payload_bytes: Option<usize>,
    /// For DynamoDB: the string attributes that name the items the call reaches, as
    /// (attribute, value): a `Key`'s, a put `Item`'s, each of a batch's, and the equalities
    /// of a Query's key condition. What a policy's `dynamodb:LeadingKeys` is checked
    /// against (the table's partition key among them).
    pub key_values: Vec<(String, String)>,
}

/// An error AWS answers under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// 400 `ThrottlingException` (DynamoDB) or `RequestThrottled` (SQS).
    Throttling,
    /// 500 `InternalServerError` (DynamoDB) or `InternalError` (SQS).
    ServerError,
    /// For an SQS batch call: its first entry is not forwarded and is answered as failed
    /// (`InternalError`, not the sender's fault) beside what moto answered for the rest,
    /// as SQS answers a batch it took only in part.
    RefuseFirstEntry,
}

/// Calls whose action starts with `action` (e.g. `dynamodb:` or `sqs:SendMessageBatch`)
/// are answered with `kind` instead of being forwarded, `times` times.
#[derive(Clone, Debug)]
pub struct Fault {
    pub action: String,
    pub kind: FaultKind,
    pub times: usize,
}

#[derive(Default)]
struct State {
    calls: Vec<AwsCall>,
    faults: Vec<Fault>,
    injected: usize,
    /// Whether to work out each DynamoDB call's billed bytes (an extra read per write).
    measure: bool,
}

pub struct RecordingProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl RecordingProxy {
    pub async fn start(upstream: String) -> Self {
        Self::start_with(upstream, false).await
    }

    /// The same, also sizing each DynamoDB call as DynamoDB bills it
    /// ([`AwsCall::item_bytes`]); each write is read back for that, unrecorded.
    pub async fn start_measuring(upstream: String) -> Self {
        Self::start_with(upstream, true).await
    }

    /// The same, listening on `ip` instead of loopback (e.g. Docker's bridge, where the
    /// containers of `sam local` reach the host).
    pub async fn start_on(ip: std::net::IpAddr, upstream: String) -> Self {
        Self::start_at(SocketAddr::new(ip, 0), upstream, false).await
    }

    async fn start_with(upstream: String, measure: bool) -> Self {
        Self::start_at(SocketAddr::from(([127, 0, 0, 1], 0)), upstream, measure).await
    }

    async fn start_at(bind: SocketAddr, upstream: String, measure: bool) -> Self {
        let listener = TcpListener::bind(bind)
            .await
            .unwrap_or_else(|e| panic!("listening on {bind}: {e}"));
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            measure,
            ..State::default()
        }));
        let client = reqwest::Client::new();
        let recorded = state.clone();
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
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<AwsCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Answers the next `fault.times` matching calls with the fault.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Forwards every call again.
    pub fn heal(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// How many calls were answered with a fault so far.
    pub fn injected(&self) -> usize {
        self.state.lock().unwrap().injected
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A header that describes one connection, not the message, which a proxy does not pass
/// on (RFC 9110, section 7.6.1: <https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1>).
fn hop_by_hop(name: &hyper::header::HeaderName) -> bool {
    use hyper::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    [CONNECTION, TE, TRANSFER_ENCODING, UPGRADE].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

async fn forward(
    request: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    recorded: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let mut body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut index = None;
    let mut refused_entry = None;
    if let Some(call) = describe(&parts.headers, &body) {
        let mut state = recorded.lock().unwrap();
        let fault = state
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && call.action.starts_with(&f.action))
            .map(|f| {
                f.times -= 1;
                f.kind
            });
        state.calls.push(call.clone());
        index = Some(state.calls.len() - 1);
        match fault {
            Some(FaultKind::RefuseFirstEntry) => {
                if let Some((entry, rest)) = without_first_entry(&body) {
                    state.injected += 1;
                    refused_entry = Some(entry);
                    match rest {
                        Some(rest) => body = rest,
                        // Nothing left to forward: the whole answer is the refusal.
                        None => {
                            return Ok(json_response(partial_answer(&Value::Null, refused_entry)));
                        }
                    }
                }
            }
            Some(kind) => {
                state.injected += 1;
                return Ok(error_response(&call, kind));
            }
            None => {}
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST && name != hyper::header::CONTENT_LENGTH && !hop_by_hop(name)
        {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.body(body.clone()).send().await {
        Ok(answer) => answer,
        Err(e) => {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(e.to_string())))
                .unwrap());
        }
    };
    let mut response = Response::builder().status(answer.status());
    // moto's server closes every connection (`Connection: close`); that is between the
    // proxy and moto, and Herald's side keeps its connections, as it does with AWS.
    for (name, value) in answer.headers() {
        if name != hyper::header::CONTENT_LENGTH && !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let mut bytes = answer.bytes().await.unwrap_or_default();
    if refused_entry.is_some() {
        let answered: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        bytes = Bytes::from(partial_answer(&answered, refused_entry).to_string());
    }
    if let Some(index) = index {
        let (action, measure) = {
            let state = recorded.lock().unwrap();
            (state.calls[index].action.clone(), state.measure)
        };
        if measure && action.starts_with("dynamodb:") {
            let size =
                billed_bytes(&action, &parts.headers, &body, &bytes, &client, &upstream).await;
            recorded.lock().unwrap().calls[index].item_bytes = size;
        }
        if measure && action.starts_with("sqs:") {
            recorded.lock().unwrap().calls[index].payload_bytes =
                Some(sqs_payload(&action, &body, &bytes));
        }
    }
    Ok(response.body(Full::new(bytes)).unwrap())
}

/// The string attributes of the items a DynamoDB call names (see [`AwsCall::key_values`]).
pub fn dynamodb_key_values(call: &Value) -> Vec<(String, String)> {
    fn strings(item: &Value, into: &mut Vec<(String, String)>) {
        for (name, value) in item.as_object().into_iter().flatten() {
            if let Some(s) = value["S"].as_str() {
                into.push((name.clone(), s.to_owned()));
            }
        }
    }
    let mut values = Vec::new();
    strings(&call["Key"], &mut values);
    strings(&call["Item"], &mut values);
    for requests in call["RequestItems"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, r)| r)
    {
        // BatchWriteItem: a list of put and delete requests; BatchGetItem: `Keys`.
        for request in requests.as_array().into_iter().flatten() {
            strings(&request["DeleteRequest"]["Key"], &mut values);
            strings(&request["PutRequest"]["Item"], &mut values);
        }
        for key in requests["Keys"].as_array().into_iter().flatten() {
            strings(key, &mut values);
        }
    }
    if let Some(condition) = call["KeyConditionExpression"].as_str() {
        for part in condition.split(" AND ").chain(condition.split(" and ")) {
            let Some((name, placeholder)) = part.split_once('=') else {
                continue;
            };
            let (name, placeholder) = (name.trim(), placeholder.trim());
            let name = call["ExpressionAttributeNames"][name]
                .as_str()
                .unwrap_or(name)
                .to_owned();
            if let Some(value) = call["ExpressionAttributeValues"][placeholder]["S"].as_str() {
                values.push((name, value.to_owned()));
            }
        }
        values.sort();
        values.dedup();
    }
    values
}

/// The messages' payload of an SQS call, as SQS bills it: each message's body and its
/// attributes (name, type and value), sent (`SendMessage`, `SendMessageBatch`) or
/// received (`ReceiveMessage`); nothing for the other calls.
pub fn sqs_payload(action: &str, request: &[u8], answer: &[u8]) -> usize {
    let message = |m: &Value, body: &str| -> usize {
        let attributes: usize = m["MessageAttributes"].as_object().map_or(0, |attributes| {
            attributes
                .iter()
                .map(|(name, value)| {
                    name.len()
                        + value["DataType"].as_str().map_or(0, str::len)
                        + value["StringValue"].as_str().map_or(0, str::len)
                })
                .sum()
        });
        m[body].as_str().map_or(0, str::len) + attributes
    };
    let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).unwrap_or(Value::Null);
    match action {
        "sqs:SendMessage" => message(&parse(request), "MessageBody"),
        "sqs:SendMessageBatch" => parse(request)["Entries"].as_array().map_or(0, |entries| {
            entries.iter().map(|e| message(e, "MessageBody")).sum()
        }),
        "sqs:ReceiveMessage" => parse(answer)["Messages"].as_array().map_or(0, |messages| {
            messages.iter().map(|m| message(m, "Body")).sum()
        }),
        _ => 0,
    }
}

/// An item's size as DynamoDB bills it: each attribute's name plus its value.
pub fn item_size(item: &Value) -> usize {
    item.as_object().map_or(0, |attributes| {
        attributes
            .iter()
            .map(|(name, value)| name.len() + value_size(value))
            .sum()
    })
}

fn value_size(value: &Value) -> usize {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match kind.as_str() {
        "S" => inner.as_str().map_or(0, str::len),
        // About one byte per two significant digits, plus one.
        "N" => inner
            .as_str()
            .map_or(1, |n| n.trim_start_matches('-').len().div_ceil(2) + 1),
        "B" => inner.as_str().map_or(0, |b| b.len() * 3 / 4),
        "BOOL" | "NULL" => 1,
        "SS" | "NS" | "BS" => inner.as_array().map_or(0, |items| {
            items.iter().map(|i| i.as_str().map_or(0, str::len)).sum()
        }),
        "L" => {
            3 + inner
                .as_array()
                .map_or(0, |items| items.iter().map(|i| 1 + value_size(i)).sum())
        }
        "M" => {
            3 + inner.as_object().map_or(0, |fields| {
                fields
                    .iter()
                    .map(|(name, v)| 1 + name.len() + value_size(v))
                    .sum()
            })
        }
        _ => 0,
    }
}

async fn billed_bytes(
    action: &str,
    headers: &hyper::HeaderMap,
    request: &[u8],
    answer: &[u8],
    client: &reqwest::Client,
    upstream: &str,
) -> Option<usize> {
    let request: Value = serde_json::from_slice(request).ok()?;
    let answer: Value = serde_json::from_slice(answer).ok()?;
    match action {
        "dynamodb:GetItem" => Some(item_size(&answer["Item"])),
        "dynamodb:Query" | "dynamodb:Scan" => Some(
            answer["Items"]
                .as_array()
                .map_or(0, |items| items.iter().map(item_size).sum()),
        ),
        "dynamodb:PutItem" => Some(item_size(&request["Item"])),
        "dynamodb:UpdateItem" | "dynamodb:DeleteItem" => {
            // The item as it is now, read back (not recorded): an update is billed on the
            // larger of before and after, which for Herald's growing records is after.
            let mut read = client
                .post(format!("{upstream}/"))
                .header("x-amz-target", "DynamoDB_20120810.GetItem")
                .header("content-type", "application/x-amz-json-1.0");
            if let Some(auth) = headers.get(hyper::header::AUTHORIZATION) {
                read = read.header(hyper::header::AUTHORIZATION, auth);
            }
            let body = serde_json::json!({
                "TableName": request["TableName"],
                "Key": request["Key"],
                "ConsistentRead": true,
            });
            let item = read
                .body(body.to_string())
                .send()
                .await
                .ok()?
                .bytes()
                .await
                .ok()?;
            let item: Value = serde_json::from_slice(&item).ok()?;
            Some(item_size(&item["Item"]))
        }
        _ => None,
    }
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
    } else if service == "TrentService" {
        // KMS: the key as the call names it (an id, ARN or alias).
        let key = json["KeyId"].as_str().unwrap_or_default();
        ("kms", key.to_owned())
    } else if service == "secretsmanager" {
        let secret = json["SecretId"].as_str().unwrap_or_default();
        ("secretsmanager", secret.to_owned())
    } else {
        (service, String::new())
    };
    Some(AwsCall {
        action: format!("{prefix}:{operation}"),
        resource,
        item_bytes: None,
        consistent: json["ConsistentRead"].as_bool().unwrap_or(false),
        payload_bytes: None,
        key_values: if prefix == "dynamodb" {
            dynamodb_key_values(&json)
        } else {
            Vec::new()
        },
    })
}

/// A batch call's body without its first entry: the entry's id, and the body to forward
/// (None when it had only that entry). None when the call has no entries.
fn without_first_entry(body: &[u8]) -> Option<(Value, Option<Bytes>)> {
    let mut json: Value = serde_json::from_slice(body).ok()?;
    let entries = json.get_mut("Entries")?.as_array_mut()?;
    if entries.is_empty() {
        return None;
    }
    let first = entries.remove(0);
    let rest = (!entries.is_empty()).then(|| Bytes::from(json.to_string()));
    Some((first["Id"].clone(), rest))
}

/// moto's answer to the rest of a batch call, with the refused entry among the failures.
fn partial_answer(answered: &Value, refused: Option<Value>) -> Value {
    let mut answer = serde_json::json!({
        "Successful": answered.get("Successful").cloned().unwrap_or(Value::Array(vec![])),
        "Failed": answered.get("Failed").cloned().unwrap_or(Value::Array(vec![])),
    });
    if let (Some(id), Some(failed)) = (refused, answer["Failed"].as_array_mut()) {
        failed.push(serde_json::json!({
            "Id": id,
            "SenderFault": false,
            "Code": "InternalError",
            "Message": "refused by the test's proxy",
        }));
    }
    answer
}

fn json_response(body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The error as the service's JSON protocol carries it, so the SDK classifies it as it
/// would AWS's own (throttling and 5xx are retried, then surface as errors).
fn error_response(call: &AwsCall, kind: FaultKind) -> Response<Full<Bytes>> {
    let dynamodb = call.action.starts_with("dynamodb:");
    let (status, code) = match (dynamodb, kind) {
        (true, FaultKind::Throttling) => (400, "ThrottlingException"),
        (true, _) => (500, "InternalServerError"),
        (false, FaultKind::Throttling) => (400, "RequestThrottled"),
        (false, _) => (500, "InternalError"),
    };
    let namespace = if dynamodb {
        "com.amazonaws.dynamodb.v20120810"
    } else {
        "com.amazonaws.sqs"
    };
    let body = serde_json::json!({
        "__type": format!("{namespace}#{code}"),
        "message": "injected by the test's proxy",
    });
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", code);
    if !dynamodb {
        let fault = if status == 500 { "Receiver" } else { "Sender" };
        response = response.header("x-amzn-query-error", format!("{code};{fault}"));
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_call_loses_its_first_entry_to_the_refusal() {
        let body = serde_json::json!({"QueueUrl": "q", "Entries": [{"Id": "0"}, {"Id": "1"}]});
        let (id, rest) = without_first_entry(body.to_string().as_bytes()).unwrap();
        assert_eq!(id, "0");
        let rest: Value = serde_json::from_slice(&rest.unwrap()).unwrap();
        assert_eq!(rest["Entries"], serde_json::json!([{"Id": "1"}]));
        let only = serde_json::json!({"Entries": [{"Id": "7"}]});
        assert_eq!(
            without_first_entry(only.to_string().as_bytes()),
            Some((Value::from("7"), None))
        );
        assert_eq!(without_first_entry(b"{\"TableName\": \"t\"}"), None);

        let answered = serde_json::json!({"Successful": [{"Id": "1"}]});
        let answer = partial_answer(&answered, Some(Value::from("0")));
        assert_eq!(answer["Successful"], serde_json::json!([{"Id": "1"}]));
        assert_eq!(answer["Failed"][0]["Id"], "0");
        assert_eq!(answer["Failed"][0]["SenderFault"], false);
    }

    /// One answer read off `stream`: its status line and headers (lowercased), its body
    /// read to its length.
    async fn answer_on(
        stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
    ) -> (String, Vec<String>) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut status = String::new();
        stream.read_line(&mut status).await.unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length:"))
            .map_or(0, |n| n.trim().parse().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.unwrap();
        (status, headers)
    }

    #[tokio::test]
    async fn a_callers_connection_is_kept_though_moto_closes_its_own() {
        use tokio::io::AsyncWriteExt;
        let proxy = RecordingProxy::start(crate::aws::moto_url()).await;
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        let request = "POST / HTTP/1.1\r\nhost: localhost\r\n\
            x-amz-target: DynamoDB_20120810.ListTables\r\n\
            content-type: application/x-amz-json-1.0\r\n\
            authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0\r\n\
            content-length: 2\r\n\r\n{}";
        // Two calls on one connection: the second is answered only if the proxy did not
        // pass on moto's `Connection: close` and end the first.
        for call in 0..2 {
            stream
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let (status, headers) = answer_on(&mut stream).await;
            assert!(status.starts_with("HTTP/1.1 200"), "call {call}: {status}");
            assert!(
                !headers.iter().any(|h| h.starts_with("connection:")),
                "call {call}: {headers:?}"
            );
        }
        assert_eq!(proxy.calls().len(), 2);
    }

    #[test]
    fn items_are_sized_by_names_and_values() {
        let item = serde_json::json!({
            "id": {"S": "abc"},
            "n": {"N": "-1234"},
            "ok": {"BOOL": true},
            "m": {"M": {"a": {"S": "xy"}}},
            "l": {"L": [{"N": "7"}, {"NULL": true}]},
        });
        // id 2+3; n 1+(2+1); ok 2+1; m 1+3+(1+1+2); l 1+3+(1+(1+1))+(1+1)
        assert_eq!(item_size(&item), 5 + 4 + 3 + 8 + 9);
        assert_eq!(item_size(&serde_json::Value::Null), 0);
    }
}
