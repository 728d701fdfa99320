//! The webhook sender against receivers over TLS (`TestReceiver::start_https`): a
//! certificate from a root Herald does not trust is refused, HTTP/2 is used where the
//! receiver offers it (one connection carrying many POSTs), and HTTP/1.1 where it does not.

use std::sync::Arc;
use std::time::Duration;

use herald_aws::http::resolver::SystemResolver;
use herald_aws::http::sender::{HttpWebhookSender, SenderSettings};
use herald_core::delivery::AttemptError;
use herald_core::ports::{OutgoingWebhook, SendOutcome, WebhookSender};
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_tests::receiver::{Offer, Script, TestReceiver};
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
    let root = receiver.root().expect("a receiver over TLS");
    HttpWebhookSender::trusting(settings(), Arc::new(SystemResolver), root).unwrap()
}

fn webhook(receiver: &TestReceiver, id: usize) -> OutgoingWebhook {
    let policy = settings().policy;
    OutgoingWebhook {
        timeout: None,
        url: SubscriptionUrl::parse(&receiver.url(), &policy).unwrap(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), format!("msg_{id}")),
        ],
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
