//! The webhook sender against receivers over TLS (`TestReceiver::start_https`): a
//! certificate from a root Herald does not trust is refused, HTTP/2 is used where the
//! receiver offers it (one connection carrying many POSTs, the first batch's too, on
//! either of deliver's runtimes), and HTTP/1.1 where it does not. A stream the receiver
//! refuses (HTTP/2's promise that it did nothing with it) is sent once more. A
//! subscription's own header values go never indexed, so no compression table keeps them.

use std::sync::Arc;
use std::time::Duration;

use herald_aws::http::resolver::SystemResolver;
use herald_aws::http::sender::{HttpWebhookSender, SenderSettings};
use herald_core::delivery::AttemptError;
use herald_core::ports::{OutgoingWebhook, SendOutcome, WebhookSender};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_tests::header_blocks::{HeaderBlockReceiver, Representation, field};
use herald_tests::receiver::{
    CertificateDer, Offer, Refusal, RefusingReceiver, Script, TestReceiver,
};
use hyper::Version;

fn settings() -> SenderSettings {
    SenderSettings {
        timeout: Duration::from_secs(10),
        // Loopback only: the receiver is on 127.0.0.1. HTTPS needs no allow_http.
        policy: UrlPolicy {
            allow_loopback: true,
            ..UrlPolicy::default()
        },
        ..SenderSettings::default()
    }
}

/// A sender that also trusts the receiver's own root, as the bench's does.
fn trusting(receiver: &TestReceiver) -> HttpWebhookSender {
    trusting_root(receiver.root().expect("a receiver over TLS"))
}

/// A sender that also trusts `root`, a test receiver's own.
fn trusting_root(root: &CertificateDer<'static>) -> HttpWebhookSender {
    HttpWebhookSender::trusting(settings(), Arc::new(SystemResolver), root).unwrap()
}

fn webhook(receiver: &TestReceiver, id: usize) -> OutgoingWebhook {
    let policy = settings().policy;
    OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(&receiver.url(), &policy).unwrap(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), format!("msg_{id}").into()),
        ],
        custom_headers: 0,
        body: format!("{{\"n\":{id}}}").into_bytes(),
    }
}

fn status(outcome: &SendOutcome) -> Option<u16> {
    match outcome {
        SendOutcome::Answered { status, .. } => Some(*status),
        SendOutcome::Failed { .. } => None,
    }
}

#[tokio::test]
async fn a_certificate_from_a_root_herald_does_not_trust_is_a_tls_error() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    // The functions' sender: Mozilla's roots only.
    let sender = HttpWebhookSender::new(settings(), Arc::new(SystemResolver)).unwrap();
    let outcome = sender.send(webhook(&receiver, 1)).await;
    let SendOutcome::Failed { error, detail, .. } = &outcome else {
        panic!("a private root was trusted: {outcome:?}")
    };
    assert_eq!(*error, AttemptError::Tls, "{detail}");
    assert!(receiver.requests().is_empty(), "{:?}", receiver.requests());
}

#[tokio::test]
async fn a_receiver_offering_http2_gets_every_post_on_one_connection() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    let sender = trusting(&receiver);
    // The first POST opens the connection; the next twenty, at once, share it.
    assert_eq!(status(&sender.send(webhook(&receiver, 0)).await), Some(200));
    let outcomes =
        futures::future::join_all((1..=20).map(|id| sender.send(webhook(&receiver, id)))).await;
    assert!(
        outcomes.iter().all(|o| status(o) == Some(200)),
        "{outcomes:?}"
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 21);
    assert!(
        requests.iter().all(|r| r.version == Version::HTTP_2),
        "{:?}",
        requests.iter().map(|r| r.version).collect::<Vec<_>>()
    );
    let mut ids: Vec<&str> = requests.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 21, "each POST once, with its own headers");
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn a_receiver_offering_only_http11_is_sent_http11() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http1).await;
    let sender = trusting(&receiver);
    let outcomes =
        futures::future::join_all((0..5).map(|id| sender.send(webhook(&receiver, id)))).await;
    assert!(
        outcomes.iter().all(|o| status(o) == Some(200)),
        "{outcomes:?}"
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| r.version == Version::HTTP_11));
    assert!(requests[0].json()["n"].is_number());
}

/// POSTs `ids` at once, each answered.
async fn all_at_once(
    sender: &HttpWebhookSender,
    receiver: &TestReceiver,
    ids: std::ops::Range<usize>,
) {
    let outcomes =
        futures::future::join_all(ids.map(|id| sender.send(webhook(receiver, id)))).await;
    assert!(
        outcomes.iter().all(|o| status(o) == Some(200)),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_first_batch_to_a_receiver_offering_http2_opens_one_connection() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    let sender = trusting(&receiver);
    // Fifty at once on a new sender: the first opens the connection, and the others wait
    // for its handshake instead of each opening one of their own.
    all_at_once(&sender, &receiver, 0..50).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 50);
    assert!(requests.iter().all(|r| r.version == Version::HTTP_2));
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test]
async fn a_first_batch_to_a_receiver_speaking_only_http11_opens_a_connection_for_each_post() {
    // Answers late enough that no POST finds another's connection free again.
    let script = Script::always(200).with_delay(Duration::from_millis(300));
    let receiver = TestReceiver::start_https(script, Offer::Http1).await;
    let sender = trusting(&receiver);
    all_at_once(&sender, &receiver, 0..10).await;
    assert_eq!(receiver.requests().len(), 10);
    assert_eq!(receiver.connections(), 10);
    // Known to speak HTTP/1.1 now: the next ten are not held for one another.
    all_at_once(&sender, &receiver, 10..20).await;
    assert_eq!(receiver.requests().len(), 20);
}

#[tokio::test]
async fn posts_waiting_for_a_first_connection_that_fails_each_try_their_own() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    // The functions' sender refuses the receiver's certificate: the first connection
    // fails, and the POSTs that waited for it are released to connect, and fail, on
    // their own, each as a TLS error (not a timeout).
    let sender = HttpWebhookSender::new(settings(), Arc::new(SystemResolver)).unwrap();
    let outcomes =
        futures::future::join_all((0..10).map(|id| sender.send(webhook(&receiver, id)))).await;
    for outcome in &outcomes {
        let SendOutcome::Failed { error, detail, .. } = outcome else {
            panic!("a private root was trusted: {outcome:?}")
        };
        assert_eq!(*error, AttemptError::Tls, "{detail}");
    }
    assert!(receiver.requests().is_empty());
    assert_eq!(receiver.connections(), 10);
}

/// A batch of `size` records, all at once (the template's is 10, and 10 to a host),
/// through deliver's handler on in-memory stores with this sender, to a receiver new to it.
async fn deliver_a_first_batch(sender: HttpWebhookSender, receiver: &TestReceiver, size: usize) {
    deliver_a_batch(sender, &receiver.url(), &[], size).await;
}

/// `size` records through deliver's handler on in-memory stores with this sender, to a
/// subscription of `url` with these custom headers.
async fn deliver_a_batch(
    sender: HttpWebhookSender,
    url: &str,
    headers: &[(&str, &str)],
    size: usize,
) {
    use crate::handlers::per_host::{deps, task};
    use herald_core::ids::SubscriptionId;
    use herald_core::ports::SubscriptionStore;

    let deps = deps(sender, size, size);
    let subscription = "sub_01JD5Q8Z6X0000000000000010";
    let url = SubscriptionUrl::parse(url, &settings().policy).unwrap();
    let mut stored = herald_testkit::active_subscription(
        "acme",
        SubscriptionId::parse(subscription).unwrap(),
        url,
        &["order.*"],
    );
    stored.headers = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    deps.ports.subscriptions.create(&stored).await.unwrap();
    let records: Vec<_> = (0..size).map(|i| task(subscription, i)).collect();
    let event = serde_json::from_value(serde_json::json!({"Records": records})).unwrap();
    let outcome = herald_deliver::process_batch(&deps, event).await;
    assert!(outcome.response.batch_item_failures.is_empty());
    assert_eq!(outcome.reports.len(), size);
}

#[tokio::test]
async fn the_templates_first_batch_to_an_http2_receiver_opens_one_connection_on_one_thread() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    deliver_a_first_batch(trusting(&receiver), &receiver, 10).await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 10);
    assert!(requests.iter().all(|r| r.version == Version::HTTP_2));
    assert_eq!(receiver.connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_batch_to_an_http2_receiver_opens_one_connection_on_two_workers() {
    let receiver = TestReceiver::start_https(Script::always(200), Offer::Http2).await;
    // A hundred: the records are tasks on both workers, each asking for a connection
    // from its own thread.
    deliver_a_first_batch(trusting(&receiver), &receiver, 100).await;
    assert_eq!(receiver.requests().len(), 100);
    assert_eq!(receiver.connections(), 1);
}

/// One webhook to a receiver refusing its first `refuse` streams or connections: the
/// outcome, and the receiver's connections, refusals and answers.
async fn send_to_refusing(how: Refusal, refuse: usize) -> (SendOutcome, (usize, usize, usize)) {
    let receiver = RefusingReceiver::start(how, refuse).await;
    let sender = trusting_root(receiver.root());
    let webhook = OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(&receiver.url(), &settings().policy).unwrap(),
        headers: vec![("webhook-id".into(), "msg_refused".into())],
        custom_headers: 0,
        body: b"{}".to_vec(),
    };
    let outcome = sender.send(webhook).await;
    (outcome, receiver.counts())
}

#[tokio::test]
async fn a_stream_the_receiver_refuses_is_sent_once_more_on_a_new_connection() {
    let (outcome, counts) = send_to_refusing(Refusal::ResetStream, 1).await;
    assert_eq!(status(&outcome), Some(200), "{outcome:?}");
    // Refused on the first connection, answered on the retry's own.
    assert_eq!(counts, (2, 1, 1));
}

#[tokio::test]
async fn a_connection_the_receiver_closes_gracefully_before_the_post_is_sent_once_more() {
    let (outcome, counts) = send_to_refusing(Refusal::GoAway, 1).await;
    assert_eq!(status(&outcome), Some(200), "{outcome:?}");
    assert_eq!(counts, (2, 1, 1));
}

#[tokio::test]
async fn a_stream_refused_twice_is_a_failed_attempt_that_says_it_was_sent_again() {
    let (outcome, counts) = send_to_refusing(Refusal::ResetStream, 2).await;
    let SendOutcome::Failed { error, detail, .. } = &outcome else {
        panic!("answered: {outcome:?}");
    };
    assert_eq!(*error, AttemptError::Io);
    assert!(
        detail.contains("sent again on a new connection"),
        "{detail}"
    );
    // Once, not again: the attempt's own backoff takes it from there.
    assert_eq!(counts, (2, 2, 0));
}

/// A subscription's custom header may carry a secret (a bearer token, an API key). Over
/// HTTP/2 its value is sent as a literal never to be indexed (RFC 7541, section 7.1.3) on
/// every POST, so it never enters the connection's compression table, which the POSTs of
/// every subscription to that host share, nor a proxy's on a later hop. Herald's own
/// values are compressed as before.
#[tokio::test]
async fn a_subscriptions_own_header_values_are_sent_never_indexed_over_http2() {
    let receiver = HeaderBlockReceiver::start().await;
    let sender = trusting_root(receiver.root());
    let webhook = |id: usize| OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(&receiver.url(), &settings().policy).unwrap(),
        headers: vec![
            (
                "authorization".to_owned().into(),
                "Bearer s3cret".to_owned().into(),
            ),
            ("X-Tenant".to_owned().into(), "acme".to_owned().into()),
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), format!("msg_{id}").into()),
        ],
        custom_headers: 2,
        body: b"{}".to_vec(),
    };
    for id in 0..3 {
        assert_eq!(status(&sender.send(webhook(id)).await), Some(200));
    }
    let connections = receiver.header_blocks();
    assert_eq!(connections.len(), 1, "one HTTP/2 connection");
    let blocks = &connections[0];
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    for block in blocks {
        for (name, value) in [("authorization", "Bearer s3cret"), ("x-tenant", "acme")] {
            assert_eq!(field(block, name).value, value);
            assert_eq!(
                field(block, name).representation,
                Representation::NeverIndexed,
                "{name}: {block:?}"
            );
        }
        assert_ne!(
            field(block, "webhook-id").representation,
            Representation::NeverIndexed,
            "{block:?}"
        );
    }
    // The first POST put Herald's content type in the table; the others refer to it.
    assert_eq!(
        field(&blocks[0], "content-type").representation,
        Representation::Indexing
    );
    assert_eq!(
        field(&blocks[2], "content-type").representation,
        Representation::Other
    );
}

/// A POST sent again after its stream was refused is the retry's copy of the request:
/// its custom header values are never indexed on the second connection too.
#[tokio::test]
async fn a_post_sent_again_keeps_its_header_values_never_indexed() {
    let receiver = HeaderBlockReceiver::start_refusing_first().await;
    let sender = trusting_root(receiver.root());
    let webhook = OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(&receiver.url(), &settings().policy).unwrap(),
        headers: vec![
            ("x-api-key".to_owned().into(), "k3y".to_owned().into()),
            ("webhook-id".into(), "msg_again".into()),
        ],
        custom_headers: 1,
        body: b"{}".to_vec(),
    };
    assert_eq!(status(&sender.send(webhook).await), Some(200));
    let blocks: Vec<_> = receiver.header_blocks().into_iter().flatten().collect();
    assert_eq!(blocks.len(), 2, "refused, then sent again: {blocks:?}");
    for block in &blocks {
        let key = field(block, "x-api-key");
        assert_eq!(key.value, "k3y");
        assert_eq!(
            key.representation,
            Representation::NeverIndexed,
            "{block:?}"
        );
    }
}

/// The same through deliver's handler: the subscription's headers, as stored, reach the
/// wire never indexed on every POST of a batch sharing one connection.
#[tokio::test]
async fn deliver_sends_a_subscriptions_own_header_values_never_indexed() {
    let receiver = HeaderBlockReceiver::start().await;
    let sender = trusting_root(receiver.root());
    let headers = [("authorization", "Bearer s3cret"), ("x-tenant", "acme")];
    deliver_a_batch(sender, &receiver.url(), &headers, 5).await;
    let connections = receiver.header_blocks();
    assert_eq!(connections.len(), 1, "one HTTP/2 connection");
    assert_eq!(connections[0].len(), 5);
    for block in &connections[0] {
        for (name, value) in headers {
            let sent = field(block, name);
            assert_eq!(sent.value, value);
            assert_eq!(
                sent.representation,
                Representation::NeverIndexed,
                "{block:?}"
            );
        }
        assert_ne!(
            field(block, "webhook-signature").representation,
            Representation::NeverIndexed
        );
    }
}
