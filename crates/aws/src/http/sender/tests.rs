use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use herald_core::subscription::url::SubscriptionUrl;
use herald_testkit::StaticResolver;

const LOCAL: UrlPolicy = UrlPolicy {
    allow_http: true,
    allow_loopback: true,
    denied: Vec::new(),
};
const NO_LOOPBACK: UrlPolicy = UrlPolicy {
    allow_http: true,
    allow_loopback: false,
    denied: Vec::new(),
};
const EXCERPT_LIMIT: usize = 16;

/// How the test receiver answers.
#[derive(Clone)]
enum Reply {
    /// These bytes to every request, on a connection kept open for the next one.
    Raw(Vec<u8>),
    /// These bytes as soon as a connection opens, before reading anything; then close.
    Blurt(Vec<u8>),
    /// Nothing, ever.
    Silent,
    /// `answer` to the first `answered` requests; the next one is read, left unanswered
    /// for `after`, and the connection closed.
    HangUp {
        answered: usize,
        answer: Vec<u8>,
        after: Duration,
    },
    /// The first connection as the first of these, the second as the second, and so
    /// on; the last one for every connection after.
    PerConnection(Vec<Reply>),
    /// `head`, then `total` bytes of `x`, `piece` bytes at a time, `pause` between.
    Stream {
        head: String,
        total: usize,
        piece: usize,
        pause: Duration,
    },
}

/// A request as the receiver saw it.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A receiver on 127.0.0.1 that answers every request the same way and records what
/// it saw.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    body_bytes_written: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(reply: Reply) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), reply).await
    }

    async fn start_on(addr: SocketAddr, reply: Reply) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let receiver = Self {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            connections: Arc::default(),
            body_bytes_written: Arc::default(),
        };
        let seen = Arc::clone(&receiver.seen);
        let connections = Arc::clone(&receiver.connections);
        let written = Arc::clone(&receiver.body_bytes_written);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let number = connections.fetch_add(1, Ordering::SeqCst);
                let reply = match &reply {
                    Reply::PerConnection(replies) => replies[number.min(replies.len() - 1)].clone(),
                    other => other.clone(),
                };
                let task = serve(socket, reply, Arc::clone(&seen), Arc::clone(&written));
                tokio::spawn(task);
            }
        });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn request_lines(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.line).collect()
    }
}

async fn serve(
    mut socket: TcpStream,
    reply: Reply,
    seen: Arc<Mutex<Vec<Seen>>>,
    written: Arc<AtomicUsize>,
) {
    if let Reply::Blurt(bytes) = &reply {
        let _ = socket.write_all(bytes).await;
        return;
    }
    let mut answered_here = 0;
    while let Some(request) = read_request(&mut socket).await {
        seen.lock().unwrap().push(request);
        match &reply {
            Reply::HangUp {
                answered,
                answer,
                after,
            } => {
                if answered_here == *answered {
                    tokio::time::sleep(*after).await;
                    return;
                }
                answered_here += 1;
                if socket.write_all(answer).await.is_err() {
                    return;
                }
            }
            Reply::PerConnection(_) => unreachable!("chosen when the connection opened"),
            Reply::Raw(bytes) => {
                if socket.write_all(bytes).await.is_err() {
                    return;
                }
            }
            Reply::Blurt(_) => return,
            Reply::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Reply::Stream {
                head,
                total,
                piece,
                pause,
            } => {
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; *piece];
                let mut sent = 0;
                while sent < *total {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += piece;
                    written.store(sent, Ordering::SeqCst);
                    tokio::time::sleep(*pause).await;
                }
                return;
            }
        }
    }
}

/// One HTTP/1.1 request with a `content-length` body; None when the peer closes.
async fn read_request(socket: &mut TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        line,
        headers,
        body,
    })
}

fn ok_answer(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn ok_with_body(body: &str) -> Reply {
    Reply::Raw(ok_answer(body))
}

/// Closes every connection on its first request, without answering.
fn hang_up() -> Reply {
    Reply::HangUp {
        answered: 0,
        answer: Vec::new(),
        after: Duration::ZERO,
    }
}

fn settings(policy: UrlPolicy, timeout: Duration) -> SenderSettings {
    SenderSettings {
        timeout,
        connect_timeout: timeout,
        policy,
        max_excerpt_bytes: EXCERPT_LIMIT,
    }
}

fn sender_with(
    policy: UrlPolicy,
    timeout: Duration,
    resolver: StaticResolver,
) -> HttpWebhookSender {
    HttpWebhookSender::new(settings(policy, timeout), Arc::new(resolver)).unwrap()
}

fn test_names() -> StaticResolver {
    StaticResolver::default()
        .with("internal.example.com", &["10.0.0.1".parse().unwrap()])
        .with("loop.example.com", &["127.0.0.1".parse().unwrap()])
}

fn sender(policy: UrlPolicy, timeout: Duration) -> HttpWebhookSender {
    sender_with(policy, timeout, test_names())
}

/// Counts the lookups: the connector resolves the name for every new connection, so this
/// counts connections, the ones that were never made included.
struct CountingResolver {
    table: StaticResolver,
    lookups: AtomicUsize,
}

impl Resolver for CountingResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.table.resolve(host, port).await
    }
}

fn webhook(url: &str) -> OutgoingWebhook {
    OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(url, &LOCAL).unwrap(),
        headers: vec![("content-type".into(), "application/json".into())],
        custom_headers: 0,
        body: b"{}".to_vec(),
    }
}

fn webhook_with_id(url: &str, id: &str) -> OutgoingWebhook {
    let mut webhook = webhook(url);
    webhook
        .headers
        .push(("webhook-id".into(), id.to_owned().into()));
    webhook
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, v)| v.as_str())
}

fn failure(outcome: &SendOutcome) -> Option<AttemptError> {
    match outcome {
        SendOutcome::Failed { error, .. } => Some(*error),
        SendOutcome::Answered { .. } => None,
    }
}

#[tokio::test]
async fn an_answer_is_kept_to_the_excerpt_limit() {
    let cases = [
        (
            "0123456789012345678901234567890123456789",
            "0123456789012345",
        ),
        ("short", "short"),
        ("", ""),
        // `é` is two bytes and the limit falls between them: the half is dropped.
        ("0123456789abcdeé and more", "0123456789abcde"),
    ];
    for (body, excerpt) in cases {
        let receiver = Receiver::start(ok_with_body(body)).await;
        let outcome = sender(LOCAL, Duration::from_secs(5))
            .send(webhook(&receiver.url("/in")))
            .await;
        let SendOutcome::Answered {
            status,
            excerpt: kept,
            retry_after,
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!((status, kept.as_str(), retry_after), (200, excerpt, None));
        assert_eq!(receiver.request_lines(), ["POST /in HTTP/1.1"]);
    }
}

#[tokio::test]
async fn the_request_carries_the_given_headers_and_body() {
    let receiver = Receiver::start(ok_with_body("")).await;
    let body = br#"{"type":"order.shipped","data":{"id":1}}"#.to_vec();
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(OutgoingWebhook {
            timeout: None,
            url: SubscriptionUrl::parse(&receiver.url("/hooks?tenant=a"), &LOCAL).unwrap(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("user-agent".into(), "Herald-Webhooks/test".into()),
                ("webhook-id".into(), "dlv_1".to_owned().into()),
                // A subscription's own header, named as its owner wrote it.
                ("X-Tenant".to_owned().into(), "acme".to_owned().into()),
                // Static text that is not a lowercase name is taken as any name is.
                ("X-Static".into(), "fixed\tvalue".into()),
            ],
            custom_headers: 0,
            body: body.clone(),
        })
        .await;
    assert!(
        matches!(outcome, SendOutcome::Answered { status: 200, .. }),
        "{outcome:?}"
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "POST /hooks?tenant=a HTTP/1.1");
    assert_eq!(seen[0].body, body);
    for (name, value) in [
        ("content-type", "application/json"),
        ("user-agent", "Herald-Webhooks/test"),
        ("webhook-id", "dlv_1"),
        ("x-tenant", "acme"),
        ("x-static", "fixed\tvalue"),
    ] {
        assert!(
            seen[0]
                .headers
                .contains(&(name.to_owned(), value.to_owned())),
            "{name} in {:?}",
            seen[0].headers
        );
    }
}

#[tokio::test]
async fn a_header_that_is_not_http_is_refused_by_name_and_nothing_is_sent() {
    let receiver = Receiver::start(ok_with_body("")).await;
    let sender = sender(LOCAL, Duration::from_secs(5));
    for (name, value) in [
        (
            "x-token".into(),
            "s3cret\r\nx-injected: 1".to_owned().into(),
        ),
        ("x-token".into(), "s3cret\n".into()),
        ("x token".to_owned().into(), "s3cret".into()),
    ] {
        let mut webhook = webhook(&receiver.url("/"));
        webhook.headers.push((name, value));
        let outcome = sender.send(webhook).await;
        let SendOutcome::Failed { error, detail, .. } = &outcome else {
            panic!("sent: {outcome:?}");
        };
        assert_eq!(*error, AttemptError::Io);
        assert!(detail.contains("is not a valid HTTP header"), "{detail}");
        assert!(!detail.contains("s3cret"), "{detail}");
    }
    assert!(receiver.seen().is_empty());
}

#[tokio::test]
async fn any_status_is_an_answer_with_its_retry_after() {
    let cases = [
        ("500 Internal Server Error", "", None),
        ("503 Service Unavailable", "retry-after: 120\r\n", Some(120)),
        ("500 Internal Server Error", "retry-after: 5\r\n", Some(5)),
        (
            "429 Too Many Requests",
            "retry-after: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            Some(0),
        ),
        ("429 Too Many Requests", "retry-after: soon\r\n", None),
        ("410 Gone", "", None),
        ("204 No Content", "", None),
    ];
    for (status_line, header, retry_after) in cases {
        let answer = format!("HTTP/1.1 {status_line}\r\n{header}content-length: 0\r\n\r\n");
        let receiver = Receiver::start(Reply::Raw(answer.into_bytes())).await;
        let outcome = sender(LOCAL, Duration::from_secs(5))
            .send(webhook(&receiver.url("/")))
            .await;
        let SendOutcome::Answered {
            status,
            retry_after: parsed,
            ..
        } = outcome
        else {
            panic!("{status_line}: {outcome:?}")
        };
        let expected_status: u16 = status_line[..3].parse().unwrap();
        assert_eq!(status, expected_status);
        assert_eq!(
            parsed,
            retry_after.map(Duration::from_secs),
            "{status_line} {header}"
        );
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = Receiver::start(ok_with_body("")).await;
    for location in [elsewhere.url("/elsewhere"), "/elsewhere".to_owned()] {
        let answer =
            format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
        let receiver = Receiver::start(Reply::Raw(answer.into_bytes())).await;
        let outcome = sender(LOCAL, Duration::from_secs(5))
            .send(webhook(&receiver.url("/start")))
            .await;
        assert!(
            matches!(outcome, SendOutcome::Answered { status: 302, .. }),
            "{outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.request_lines(), ["POST /start HTTP/1.1"]);
    }
    assert!(elsewhere.seen().is_empty());
}

#[tokio::test]
async fn a_tls_handshake_that_never_ends_costs_the_connect_timeout() {
    // Accepts TCP and then says nothing: the connection is not made until TLS is.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let settings = SenderSettings {
        connect_timeout: Duration::from_millis(200),
        ..settings(LOCAL, Duration::from_secs(5))
    };
    let sender = HttpWebhookSender::new(settings, Arc::new(test_names())).unwrap();
    let started = Instant::now();
    let outcome = sender.send(webhook(&url)).await;
    let elapsed = started.elapsed();
    holding.abort();
    assert_timed_out(&outcome, "no connection within 200 ms");
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

/// A failed attempt: a timeout, told as `detail`.
fn assert_timed_out(outcome: &SendOutcome, detail: &str) {
    let SendOutcome::Failed {
        error,
        detail: told,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((*error, told.as_str()), (AttemptError::Timeout, detail));
}

#[tokio::test]
async fn a_silent_receiver_costs_the_timeout() {
    let receiver = Receiver::start(Reply::Silent).await;
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let outcome = sender(LOCAL, timeout)
        .send(webhook(&receiver.url("/")))
        .await;
    let elapsed = started.elapsed();
    assert_timed_out(&outcome, "no answer within 300 ms");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // A timeout is not retried.
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
    assert_eq!(receiver.seen().len(), 1);
}

#[tokio::test]
async fn a_subscriptions_own_shorter_limit_ends_the_attempt_sooner() {
    let receiver = Receiver::start(Reply::Silent).await;
    let started = Instant::now();
    let mut limited = webhook(&receiver.url("/"));
    limited.timeout = Some(Duration::from_millis(300));
    let outcome = sender(LOCAL, Duration::from_secs(20)).send(limited).await;
    let elapsed = started.elapsed();
    let SendOutcome::Failed { error, detail, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (error, detail.as_str()),
        (AttemptError::Timeout, "no answer within 300 ms")
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    // A longer one than the deployment's is held to the deployment's.
    let started = Instant::now();
    let mut longer = webhook(&receiver.url("/"));
    longer.timeout = Some(Duration::from_secs(60));
    let outcome = sender(LOCAL, Duration::from_millis(300)).send(longer).await;
    assert_eq!(failure(&outcome), Some(AttemptError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_huge_body_is_read_only_to_the_limit() {
    let total = 256 * 1024 * 1024;
    let receiver = Receiver::start(Reply::Stream {
        head: format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n"),
        total,
        piece: 64 * 1024,
        pause: Duration::ZERO,
    })
    .await;
    let started = Instant::now();
    let outcome = sender(LOCAL, Duration::from_secs(20))
        .send(webhook(&receiver.url("/")))
        .await;
    let elapsed = started.elapsed();
    let SendOutcome::Answered {
        status, excerpt, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((status, excerpt), (200, "x".repeat(EXCERPT_LIMIT)));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The sender stopped reading and hung up: the receiver could not push it all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = receiver.body_bytes_written.load(Ordering::SeqCst);
    assert!(written < total, "{written} of {total} bytes went through");
}

#[tokio::test]
async fn endless_headers_are_refused_without_being_kept() {
    // A header value that never ends: 64 MiB of it, offered as fast as the sender reads.
    let total = 64 * 1024 * 1024;
    let receiver = Receiver::start(Reply::Stream {
        head: "HTTP/1.1 200 OK\r\nx-endless: ".to_owned(),
        total,
        piece: 64 * 1024,
        pause: Duration::ZERO,
    })
    .await;
    let started = Instant::now();
    let outcome = sender(LOCAL, Duration::from_secs(20))
        .send(webhook(&receiver.url("/")))
        .await;
    let elapsed = started.elapsed();
    let SendOutcome::Failed { error, detail, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(detail.len() <= 512, "{detail}");
    assert_ne!(*error, AttemptError::Timeout, "{outcome:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The sender gave up once the head outgrew its limit and hung up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let written = receiver.body_bytes_written.load(Ordering::SeqCst);
    assert!(
        written < total / 8,
        "{written} of {total} bytes went through"
    );
}

#[tokio::test]
async fn a_trickling_body_ends_the_excerpt_at_the_deadline() {
    let receiver = Receiver::start(Reply::Stream {
        head: "HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_owned(),
        total: 1_000_000,
        piece: 1,
        pause: Duration::from_millis(100),
    })
    .await;
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    let outcome = sender(LOCAL, timeout)
        .send(webhook(&receiver.url("/")))
        .await;
    let elapsed = started.elapsed();
    // The status came in time: it is the receiver's answer, the excerpt is what came.
    let SendOutcome::Answered {
        status, excerpt, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(status, 200);
    assert!(excerpt.len() < EXCERPT_LIMIT, "{excerpt:?}");
    assert!(excerpt.bytes().all(|b| b == b'x'), "{excerpt:?}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/hook?token=s3cret")))
        .await;
    let SendOutcome::Failed { error, detail, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(error, AttemptError::Connect);
    assert!(!detail.is_empty());
    assert!(!detail.contains("s3cret"), "{detail}");
}

#[tokio::test]
async fn a_tls_failure_is_a_tls_error() {
    // Plain HTTP where the client expects a TLS handshake.
    let receiver = Receiver::start(Reply::Blurt(
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n".to_vec(),
    ))
    .await;
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("https://{}/", receiver.addr)))
        .await;
    assert_eq!(failure(&outcome), Some(AttemptError::Tls), "{outcome:?}");
    // Not retried: a new connection would meet the same handshake.
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error() {
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook("http://nowhere.example.com/"))
        .await;
    assert_eq!(failure(&outcome), Some(AttemptError::Dns), "{outcome:?}");
}

#[tokio::test]
async fn forbidden_targets_are_never_contacted() {
    let receiver = Receiver::start(ok_with_body("")).await;
    let port = receiver.addr.port();
    let cases = [
        (NO_LOOPBACK, "http://internal.example.com/".to_owned()),
        (NO_LOOPBACK, format!("http://loop.example.com:{port}/")),
        (NO_LOOPBACK, format!("http://127.0.0.1:{port}/")),
        (NO_LOOPBACK, format!("http://[::ffff:127.0.0.1]:{port}/")),
        (NO_LOOPBACK, format!("http://localhost:{port}/")),
        (
            NO_LOOPBACK,
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ),
        // Loopback allowed, nothing else: still refused.
        (LOCAL, "http://internal.example.com/".to_owned()),
        (LOCAL, "http://10.0.0.1/".to_owned()),
        // Plain http where the deployment wants https.
        (
            UrlPolicy {
                allow_http: false,
                allow_loopback: true,
                denied: Vec::new(),
            },
            format!("http://127.0.0.1:{port}/"),
        ),
    ];
    for (policy, url) in cases {
        // A connection attempt to 10.0.0.1 or 169.254.169.254 would take up to the
        // connect timeout; refusing takes no time at all.
        // As read back from storage, where no policy applies.
        let stored = OutgoingWebhook {
            url: SubscriptionUrl::try_from(url.clone()).unwrap(),
            ..webhook("https://hooks.example.com/")
        };
        let outcome = sender(policy, Duration::from_secs(5)).send(stored).await;
        let SendOutcome::Failed { error, latency, .. } = &outcome else {
            panic!("{url}: {outcome:?}")
        };
        assert_eq!(*error, AttemptError::Forbidden, "{url}: {outcome:?}");
        assert!(*latency < Duration::from_secs(1), "{url}: {latency:?}");
    }
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_denied_address_is_never_contacted_and_its_neighbours_are() {
    // As the local runner's moto: a service of Herald's own on loopback.
    let herald_own = Receiver::start(ok_with_body("reset")).await;
    let port = herald_own.addr.port();
    let policy = UrlPolicy {
        denied: vec![herald_own.addr],
        ..LOCAL
    };
    let sender = sender(policy.clone(), Duration::from_secs(5));
    for url in [
        format!("http://127.0.0.1:{port}/moto-api/reset"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
        // A name: resolved, with the port, before the exchange.
        format!("http://loop.example.com:{port}/"),
    ] {
        let stored = OutgoingWebhook {
            url: SubscriptionUrl::try_from(url.clone()).unwrap(),
            ..webhook("https://hooks.example.com/")
        };
        let outcome = sender.send(stored).await;
        assert_eq!(
            failure(&outcome),
            Some(AttemptError::Forbidden),
            "{url}: {outcome:?}"
        );
    }
    assert_eq!(herald_own.connections.load(Ordering::SeqCst), 0);

    // Another port of this machine is a receiver like any other.
    let receiver = Receiver::start(ok_with_body("ok")).await;
    let outcome = sender
        .send(webhook(&format!(
            "http://loop.example.com:{}/",
            receiver.addr.port()
        )))
        .await;
    assert!(
        matches!(outcome, SendOutcome::Answered { status: 200, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn only_the_addresses_that_pass_are_dialled() {
    // 0.0.0.0 is refused even where loopback is allowed, yet dialling it reaches a
    // listener on 127.0.0.1: the trap. The receiver listens on the same port of
    // 127.0.0.2, which the policy allows.
    let trap = Receiver::start(ok_with_body("trap")).await;
    let port = trap.addr.port();
    let receiver = Receiver::start_on(
        SocketAddr::new("127.0.0.2".parse().unwrap(), port),
        ok_with_body("receiver"),
    )
    .await;
    let resolver = StaticResolver::default().with(
        "hooks.example.com",
        &["0.0.0.0".parse().unwrap(), "127.0.0.2".parse().unwrap()],
    );
    let outcome = sender_with(LOCAL, Duration::from_secs(5), resolver)
        .send(webhook(&format!("http://hooks.example.com:{port}/in")))
        .await;
    let SendOutcome::Answered {
        status, excerpt, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((status, excerpt.as_str()), (200, "receiver"));
    assert_eq!(receiver.request_lines(), ["POST /in HTTP/1.1"]);
    assert_eq!(trap.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connections_are_reused() {
    let receiver = Receiver::start(ok_with_body("ok")).await;
    let sender = sender(LOCAL, Duration::from_secs(5));
    for _ in 0..3 {
        let outcome = sender.send(webhook(&receiver.url("/"))).await;
        assert!(
            matches!(outcome, SendOutcome::Answered { status: 200, .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(receiver.seen().len(), 3);
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_reused_connection_closed_without_an_answer_is_tried_once_more_on_a_new_one() {
    // The first connection answers one POST, then takes the next and closes without a
    // word, as a receiver whose keep-alive ran out just then would.
    let receiver = Receiver::start(Reply::PerConnection(vec![
        Reply::HangUp {
            answered: 1,
            answer: ok_answer("first"),
            after: Duration::ZERO,
        },
        ok_with_body("again"),
    ]))
    .await;
    let sender = sender(LOCAL, Duration::from_secs(5));
    let mut excerpts = Vec::new();
    for id in ["msg_1", "msg_2"] {
        let outcome = sender.send(webhook_with_id(&receiver.url("/in"), id)).await;
        let SendOutcome::Answered {
            status, excerpt, ..
        } = outcome
        else {
            panic!("{id}: {outcome:?}")
        };
        excerpts.push((status, excerpt));
    }
    assert_eq!(
        excerpts,
        [(200, "first".to_owned()), (200, "again".to_owned())]
    );
    let seen = receiver.seen();
    let ids: Vec<&str> = seen.iter().map(|s| header(s, "webhook-id")).collect();
    assert_eq!(ids, ["msg_1", "msg_2", "msg_2"]);
    // The same request again, byte for byte.
    assert_eq!(seen[1].line, seen[2].line);
    assert_eq!(seen[1].body, seen[2].body);
    assert_eq!(seen[1].headers, seen[2].headers);
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_retry_takes_no_other_pooled_connection() {
    // Two pooled connections, each closed by the receiver on its next request: the
    // retry after the first must not be sent on the second.
    let once_then_hang_up = Reply::HangUp {
        answered: 1,
        answer: ok_answer(""),
        after: Duration::ZERO,
    };
    let receiver = Receiver::start(Reply::PerConnection(vec![
        once_then_hang_up.clone(),
        once_then_hang_up,
        ok_with_body("new"),
    ]))
    .await;
    let sender = sender(LOCAL, Duration::from_secs(5));
    let (a, b) = tokio::join!(
        sender.send(webhook(&receiver.url("/"))),
        sender.send(webhook(&receiver.url("/")))
    );
    for outcome in [a, b] {
        assert!(
            matches!(outcome, SendOutcome::Answered { status: 200, .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
    let outcome = sender.send(webhook(&receiver.url("/"))).await;
    let SendOutcome::Answered {
        status, excerpt, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((status, excerpt.as_str()), (200, "new"));
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_receiver_that_always_hangs_up_gets_one_retry_never_more() {
    let receiver = Receiver::start(hang_up()).await;
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&receiver.url("/in")))
        .await;
    let SendOutcome::Failed { error, detail, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(*error, AttemptError::Io, "{outcome:?}");
    assert!(
        detail.contains("connection closed before message completed"),
        "{detail}"
    );
    assert!(
        detail
            .ends_with("; sent again on a new connection after the first closed without an answer"),
        "the attempt log says the receiver may have seen it twice: {detail}"
    );
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn refused_connections_and_unknown_names_are_not_retried() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let hanging_up = Receiver::start(hang_up()).await;
    let cases = [
        // The count sees a retry where there is one.
        (
            format!("http://loop.example.com:{}/", hanging_up.addr.port()),
            AttemptError::Io,
            2,
        ),
        (
            format!("http://loop.example.com:{closed}/"),
            AttemptError::Connect,
            1,
        ),
        (
            "http://nowhere.example.com/".to_owned(),
            AttemptError::Dns,
            1,
        ),
    ];
    for (url, error, connections) in cases {
        let resolver = Arc::new(CountingResolver {
            table: test_names(),
            lookups: AtomicUsize::new(0),
        });
        let sender = HttpWebhookSender::new(
            settings(LOCAL, Duration::from_secs(5)),
            Arc::clone(&resolver),
        )
        .unwrap();
        let outcome = sender.send(webhook(&url)).await;
        assert_eq!(failure(&outcome), Some(error), "{url}: {outcome:?}");
        let SendOutcome::Failed { detail, .. } = &outcome else {
            unreachable!()
        };
        assert_eq!(
            detail.contains("sent again"),
            connections == 2,
            "{url}: {detail}"
        );
        assert_eq!(
            resolver.lookups.load(Ordering::SeqCst),
            connections,
            "{url}"
        );
    }
    assert_eq!(hanging_up.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_retry_ends_at_the_attempts_deadline() {
    // The first try is dropped late, with little of the timeout left; the second gets
    // no answer. The attempt still ends at its one deadline.
    let timeout = Duration::from_millis(600);
    let late = Duration::from_millis(450);
    let receiver = Receiver::start(Reply::PerConnection(vec![
        Reply::HangUp {
            answered: 0,
            answer: Vec::new(),
            after: late,
        },
        Reply::Silent,
    ]))
    .await;
    let started = Instant::now();
    let outcome = sender(LOCAL, timeout)
        .send(webhook(&receiver.url("/")))
        .await;
    let elapsed = started.elapsed();
    let SendOutcome::Failed {
        error,
        detail,
        latency,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (error, detail.as_str()),
        (
            AttemptError::Timeout,
            "no answer within 600 ms; sent again on a new connection after the first closed without an answer"
        )
    );
    // The latency is the attempt's, both tries.
    assert!(latency >= timeout, "{latency:?}");
    // A retry with a deadline of its own would end at 450 + 600 ms.
    assert!(
        elapsed < timeout + Duration::from_millis(250),
        "{elapsed:?}"
    );
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 2);
    assert_eq!(receiver.seen().len(), 2);
}

#[test]
fn retry_after_dates_and_seconds() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let cases = [
        ("30", Some(30)),
        (" 0 ", Some(0)),
        ("Sun, 22 Nov 2026 12:01:00 GMT", Some(60)),
        ("Sunday, 22-Nov-26 12:02:00 GMT", Some(120)),
        ("Sun Nov 22 12:00:10 2026", Some(10)),
        ("Sun Nov  1 12:00:00 2026", Some(0)),
        ("Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ];
    for (value, seconds) in cases {
        assert_eq!(
            parse_retry_after(value, now),
            seconds.map(Duration::from_secs),
            "{value:?}"
        );
    }
}

#[test]
fn a_cut_character_is_dropped_and_a_whole_one_kept() {
    let cases: [(&[u8], &[u8]); 6] = [
        (b"abc", b"abc"),
        ("abé".as_bytes(), "abé".as_bytes()),
        (&"abé".as_bytes()[..3], b"ab"),
        (&"a€".as_bytes()[..3], b"a"),
        (&"a😀".as_bytes()[..4], b"a"),
        (b"ab\xff", b"ab\xff"),
    ];
    for (input, expected) in cases {
        let mut bytes = input.to_vec();
        drop_cut_character(&mut bytes);
        assert_eq!(bytes, expected, "{input:?}");
    }
}

/// A URL the subscription parser accepts, odd characters and all, is a request target
/// with the same text: `uri_of`'s refusal is for a URL that was never checked.
#[test]
fn every_accepted_url_is_a_request_target_as_written() {
    for url in [
        "https://a.example/p?q={x}",
        "https://a.example/p?q=a|b^c`d\\e",
        "https://a.example/p?q=\"x\"<>'",
        "https://a.example/{x}|^`",
        "https://a.example/p?q=%zz",
        "https://a.example/p?q=ü",
        "https://a.example/p[x]?q=a[b]",
        "https://a.example:8443/a/b;c?d=e&f=g",
    ] {
        let checked = SubscriptionUrl::parse(url, &UrlPolicy::default()).unwrap();
        let uri = uri_of(checked.url()).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(uri.to_string(), checked.url().as_str(), "{url}");
    }
}

/// The subscription's own header values, and only theirs, are marked sensitive: HTTP/2
/// sends them never indexed and the map's `Debug` hides them.
#[test]
fn the_subscriptions_header_values_and_only_theirs_are_sensitive() {
    let map = header_map(
        vec![
            (
                "Authorization".to_owned().into(),
                "Bearer s3cret".to_owned().into(),
            ),
            ("x-api-key".to_owned().into(), "k1".to_owned().into()),
            ("accept".into(), "*/*".into()),
            ("webhook-id".into(), "msg_1".to_owned().into()),
        ],
        2,
    )
    .unwrap();
    let sensitive = |name: &str| map.get(name).unwrap().is_sensitive();
    assert!(sensitive("authorization"));
    assert!(sensitive("x-api-key"));
    assert!(!sensitive("accept"));
    assert!(!sensitive("webhook-id"));
    let shown = format!("{map:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("k1"),
        "{shown}"
    );
    assert!(shown.contains("msg_1"), "{shown}");
}
