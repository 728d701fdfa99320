use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::url_guard::{StaticResolver, SubscriptionUrl};

const LOCAL: UrlPolicy = UrlPolicy {
    allow_http: true,
    allow_loopback: true,
};

/// A one-purpose server: answers every connection with `answer` after `delay`, and
/// records the request lines it saw.
async fn serve(answer: &'static [u8], delay: Duration) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let n = socket.read(&mut buffer).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buffer[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                log.lock().unwrap().push(head);
                tokio::time::sleep(delay).await;
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn sender(policy: UrlPolicy, timeout: Duration) -> HttpWebhookSender {
    let settings = SenderSettings {
        timeout,
        connect_timeout: timeout,
        policy,
        max_excerpt_bytes: 16,
    };
    let resolver = StaticResolver::default()
        .with("internal.example.com", &["10.0.0.1".parse().unwrap()])
        .with("loop.example.com", &["127.0.0.1".parse().unwrap()]);
    HttpWebhookSender::new(settings, Arc::new(resolver)).unwrap()
}

fn webhook(url: &str) -> OutgoingWebhook {
    OutgoingWebhook {
        url: SubscriptionUrl::parse(url, &LOCAL).unwrap(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn an_answer_is_kept_to_the_excerpt_limit() {
    let (addr, seen) = serve(
        b"HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n0123456789012345678901234567890123456789",
        Duration::ZERO,
    )
    .await;
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/in")))
        .await;
    let SendOutcome::Answered {
        status, excerpt, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(status, 200);
    assert_eq!(excerpt, "0123456789012345");
    assert_eq!(seen.lock().unwrap()[0], "POST /in HTTP/1.1");
}

#[tokio::test]
async fn errors_and_retry_after_are_reported() {
    let (addr, _) = serve(
        b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-length: 0\r\n\r\n",
        Duration::ZERO,
    )
    .await;
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/")))
        .await;
    let SendOutcome::Answered {
        status,
        retry_after,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((status, retry_after), (503, Some(Duration::from_secs(120))));
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (addr, seen) = serve(
        b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n",
        Duration::ZERO,
    )
    .await;
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/start")))
        .await;
    assert!(
        matches!(outcome, SendOutcome::Answered { status: 302, .. }),
        "{outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["POST /start HTTP/1.1".to_owned()]
    );
}

#[tokio::test]
async fn a_silent_receiver_costs_the_timeout() {
    let (addr, _) = serve(b"", Duration::from_secs(30)).await;
    let started = Instant::now();
    let outcome = sender(LOCAL, Duration::from_millis(300))
        .send(webhook(&format!("http://{addr}/")))
        .await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Failed {
                error: AttemptError::Timeout,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/")))
        .await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Failed {
                error: AttemptError::Connect,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn forbidden_targets_are_never_contacted() {
    let strict = UrlPolicy {
        allow_http: true,
        allow_loopback: false,
    };
    let (addr, seen) = serve(
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        Duration::ZERO,
    )
    .await;
    for url in [
        "http://internal.example.com/".to_owned(),
        format!("http://loop.example.com:{}/", addr.port()),
        format!("http://{addr}/"),
    ] {
        let outcome = sender(strict, Duration::from_secs(5))
            .send(webhook(&url))
            .await;
        assert!(
            matches!(
                outcome,
                SendOutcome::Failed {
                    error: AttemptError::Forbidden,
                    ..
                }
            ),
            "{url}: {outcome:?}"
        );
    }
    assert!(seen.lock().unwrap().is_empty());

    let https_only = UrlPolicy {
        allow_http: false,
        allow_loopback: true,
    };
    let outcome = sender(https_only, Duration::from_secs(5))
        .send(webhook(&format!("http://{addr}/")))
        .await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Failed {
                error: AttemptError::Forbidden,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_unknown_name_is_a_dns_error() {
    let outcome = sender(LOCAL, Duration::from_secs(5))
        .send(webhook("http://nowhere.example.com/"))
        .await;
    assert!(
        matches!(
            outcome,
            SendOutcome::Failed {
                error: AttemptError::Dns,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn retry_after_dates_and_seconds() {
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
    assert_eq!(
        parse_retry_after("Sun, 22 Nov 2026 12:01:00 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(parse_retry_after("soon", now), None);
}
