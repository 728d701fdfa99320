//! CPU of an ingest call and of a deliver batch (of the run's size) with their AWS adapters, against
//! moto: what the in-memory figures leave out (the SDK building, signing and sending each
//! DynamoDB and SQS request and reading its answer, the events table's deflating, a claim
//! check's event read back and inflated). moto runs in a process of its own, so its work
//! is not counted; only the thread the handler runs on is, as under Lambda at the
//! template's memory (one thread). The handlers reach moto through a proxy on another
//! thread that keeps their connections open, as AWS's endpoints do (moto's server closes
//! each one). The calls are plain HTTP here; on AWS they are TLS on kept connections,
//! whose record encryption this leaves out.
//!
//! The traffic is a run of the `aws` section's: the same events published through the
//! ingest handler (wired as its bootstrap wires it, `herald_aws::lambda::wiring`), the
//! tasks it queued received from the delivery queue and handed to the deliver handler
//! a batch at a time (the run's `DeliveryBatchSize`, gathered ten a receive), as the
//! event source mapping hands them over (`herald_local::poller`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use herald_aws::lambda::wiring::{self, Function, HttpFunction, SqsFunction};
use herald_core::ids::SubscriptionId;
use herald_core::ports::SubscriptionStore;
use herald_core::subscription::url::{SubscriptionUrl, UrlPolicy};
use herald_local::poller::{QueueSource, to_record};
use herald_testkit::active_subscription;
use herald_tests::aws::{TestAws, moto_url, sdk_config_for};
use herald_tests::aws_proxy::RecordingProxy;
use herald_tests::receiver::{Script, TestReceiver};

/// Ingest calls measured; the median is the figure.
const CALLS: usize = 11;
/// Deliver batches measured after the first (which opens the connections and reads the
/// subscriptions a warm container has kept); the median is the figure.
const BATCHES: usize = 9;

/// The traffic measured: events a call, bytes of `data`, subscriptions each event
/// matches, bytes of the receivers' answer, and how deliver takes a first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub per_call: usize,
    pub data_bytes: usize,
    pub fan_out: usize,
    pub answer_bytes: usize,
    /// `HERALD_DELIVERY_CLAIM`.
    pub claim: &'static str,
    /// Records a deliver batch holds (`DeliveryBatchSize`).
    pub batch: usize,
}

/// The two figures, CPU on one thread in milliseconds (medians).
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub ingest_call_cpu_ms: f64,
    /// A deliver batch of [`Shape::batch`] records.
    pub deliver_batch_cpu_ms: f64,
}

/// The receiver's answer for `answer_bytes` (0: `ok`): a JSON acknowledgement of about
/// that size, as many receivers answer.
pub fn answer(answer_bytes: usize) -> Script {
    if answer_bytes == 0 {
        return Script::always(200);
    }
    let ack = format!(
        r#"{{"received":true,"id":"{}"}}"#,
        "0".repeat(answer_bytes.saturating_sub(27))
    );
    Script::always(200).with_body(ack)
}

/// What `start` makes, on a thread (named `name`) and runtime of its own, so its CPU is
/// not the handler's: the URL it gives, and what stops it (it is kept until then).
fn apart<T, Fut>(
    name: &str,
    start: impl FnOnce() -> Fut + Send + 'static,
) -> (String, tokio::sync::oneshot::Sender<()>)
where
    Fut: std::future::Future<Output = (String, T)>,
{
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let (url, _kept) = start().await;
                url_tx.send(url).unwrap();
                let _ = stop_rx.await;
            });
        })
        .unwrap();
    (url_rx.recv().unwrap(), stop_tx)
}

/// The receiver, apart.
fn receiver_apart(script: Script) -> (String, tokio::sync::oneshot::Sender<()>) {
    apart("bench-receiver", move || async move {
        let receiver = TestReceiver::start(script).await;
        (receiver.url(), receiver)
    })
}

/// A proxy in front of moto, apart: moto's server closes every connection, and AWS does
/// not, so the handlers talk to the proxy, which keeps theirs open
/// (`herald_tests::aws_proxy`) and opens one to moto per call on its own thread.
fn proxy_apart() -> (String, tokio::sync::oneshot::Sender<()>) {
    apart("bench-aws-proxy", || async {
        let proxy = RecordingProxy::start(moto_url()).await;
        (proxy.url(), proxy)
    })
}

/// The median of `values`, in milliseconds.
fn median_ms(mut values: Vec<Duration>) -> f64 {
    values.sort();
    crate::percentile(&values, 50.0).as_secs_f64() * 1e3
}

/// Measures `shape` on fresh tables and queues of the template's on moto.
pub fn measure(shape: Shape) -> Measured {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (url, stop) = receiver_apart(answer(shape.answer_bytes));
    let (proxy, stop_proxy) = proxy_apart();
    let measured = runtime.block_on(async {
        let aws = TestAws::new().await;
        let mut env: HashMap<String, String> = aws.provisioned.environment();
        for (name, value) in [
            // As the `aws` section's runs: every request counted, none refused.
            ("HERALD_MAX_REQUESTS_PER_SECOND", "100000"),
            ("HERALD_DELIVERY_CLAIM", shape.claim),
            // The receiver is on this machine, in the clear.
            ("HERALD_ALLOW_HTTP", "true"),
            ("HERALD_ALLOW_LOOPBACK", "true"),
        ] {
            env.insert(name.into(), value.into());
        }
        let source = |name: &str| env.get(name).cloned();
        let sdk = sdk_config_for(&proxy);
        let ingest = herald_ingest::Ingest::deps(
            wiring::started(Function::Ingest, &source, &sdk).expect("ingest's settings"),
        );
        let deliver = Arc::new(herald_deliver::Deliver::deps(
            wiring::started(Function::Deliver, &source, &sdk).expect("deliver's settings"),
        ));
        let policy = UrlPolicy {
            allow_http: true,
            allow_loopback: true,
            ..UrlPolicy::default()
        };
        for _ in 0..shape.fan_out {
            ingest
                .ports
                .subscriptions
                .create(&active_subscription(
                    "acme",
                    SubscriptionId::generate(Utc::now(), &mut rand::rng()),
                    SubscriptionUrl::parse(&url, &policy).unwrap(),
                    &["order.*"],
                ))
                .await
                .unwrap();
        }

        // At least CALLS, and enough for every deliver batch to be full.
        let tasks_a_call = shape.per_call * shape.fan_out;
        let calls = CALLS.max(((BATCHES + 1) * shape.batch).div_ceil(tasks_a_call.max(1)));
        let mut ingest_cpu = Vec::with_capacity(calls);
        for round in 0..calls {
            let cpu = crate::ingest_cpu::call_cpu(&ingest, round, shape.per_call, shape.data_bytes);
            ingest_cpu.push(cpu.await);
        }

        let queue = QueueSource {
            client: aws.sqs.clone(),
            url: aws.provisioned.delivery_queue_url().to_owned(),
            arn: "arn:aws:sqs:us-east-1:123456789012:bench-delivery".into(),
            region: "us-east-1".into(),
        };
        let mut deliver_cpu = Vec::with_capacity(BATCHES);
        for batch in 0..=BATCHES {
            // Ten a receive, SQS's most, until the batch is full or the queue is empty.
            let mut messages = Vec::with_capacity(shape.batch);
            while messages.len() < shape.batch {
                let received = aws
                    .sqs
                    .receive_message()
                    .queue_url(&queue.url)
                    .max_number_of_messages((shape.batch - messages.len()).min(10) as i32)
                    .visibility_timeout(600)
                    .message_system_attribute_names(
                        aws_sdk_sqs::types::MessageSystemAttributeName::All,
                    )
                    .message_attribute_names("All")
                    .send()
                    .await
                    .expect("receiving tasks")
                    .messages
                    .unwrap_or_default();
                if received.is_empty() {
                    break;
                }
                messages.extend(received);
            }
            assert!(!messages.is_empty(), "ingest queued too few tasks");
            let mut event = SqsEvent::default();
            event.records = messages.iter().map(|m| to_record(m, &queue)).collect();
            let before = crate::thread_cpu();
            let outcome = herald_deliver::process_batch(&deliver, event).await;
            let cpu = crate::thread_cpu().saturating_sub(before);
            assert!(
                outcome.response.batch_item_failures.is_empty(),
                "a batch had failures"
            );
            // Scaled to a full batch: the last batch of a run may be short.
            let cpu = cpu * shape.batch as u32 / messages.len() as u32;
            if batch > 0 {
                deliver_cpu.push(cpu);
            }
        }
        Measured {
            ingest_call_cpu_ms: median_ms(ingest_cpu),
            deliver_batch_cpu_ms: median_ms(deliver_cpu),
        }
    });
    let _ = stop.send(());
    let _ = stop_proxy.send(());
    measured
}
