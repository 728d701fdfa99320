//! Plays the SQS event source mapping: receives batches, hands them to the deliver
//! function, deletes what succeeded and leaves the reported failures to come back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::encodings::Base64Data;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};
use tokio::sync::watch;

use crate::server::stopped;

/// The event source mapping's largest batch from a standard queue.
pub const MAX_BATCH_SIZE: i32 = 10_000;
/// SQS's most messages a receive (or a deletion) takes.
const SQS_BATCH: usize = 10;

/// After an SQS error, the pause before the next try.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// The shortest time one empty receive may take, so an endpoint that ignores long
/// polling (or a wait of 0) cannot turn a poller into a busy loop.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Messages per batch at most (the event source mapping's `BatchSize`). The local
    /// runner sets it for each queue from the template (with its parameters' defaults);
    /// given, it stands for a deployment's `DeliveryBatchSize` and sizes the queues the
    /// template sizes by that parameter. More than ten are gathered over several
    /// receives, as the event source mapping does.
    pub batch_size: Option<i32>,
    /// How long a poller gathers a batch once its first message arrived, until it holds
    /// `batch_size` (the event source mapping's `MaximumBatchingWindowInSeconds`,
    /// <https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html>). None:
    /// the template's. Waits are whole seconds of long polling, as SQS counts them.
    pub batching_window: Option<Duration>,
    /// The deliver function's timeout (the template's `Timeout`): a batch handed to the
    /// handler in this process ends by then, as an invocation does. None: no deadline.
    pub invocation_timeout: Option<Duration>,
    /// Batches handed to the deliver function (invocations), counted by every poller
    /// whose settings were cloned from these.
    pub invocations: Arc<AtomicU64>,
    /// Long-polling wait, in seconds (20 at most).
    pub wait_seconds: i32,
    /// Batches in flight at once, like concurrent Lambda instances.
    pub pollers: usize,
    /// Print one line per delivery attempt for a person to read.
    pub print_attempts: bool,
    /// A visibility timeout for the messages received, in seconds, instead of the queue's
    /// (360 s in the template). A runner that dies holding a batch gets it back after this;
    /// the crash tests shorten it.
    pub visibility_timeout: Option<i32>,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            batch_size: None,
            batching_window: None,
            invocation_timeout: None,
            invocations: Arc::default(),
            wait_seconds: 20,
            pollers: 2,
            print_attempts: true,
            visibility_timeout: None,
        }
    }
}

/// What the event source hands a batch to.
#[derive(Clone)]
pub enum DeliverTarget {
    /// The deliver handler, in this process.
    InProcess(Arc<herald_deliver::DeliverDeps<herald_aws::lambda::wiring::AwsPorts>>),
    /// A deliver function behind Lambda's Invoke API, such as `sam local start-lambda`
    /// serves: `POST {endpoint}/2015-03-31/functions/{function}/invocations`
    /// (<https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>).
    Invoke {
        http: reqwest::Client,
        endpoint: String,
        function: String,
    },
}

/// The queue a poller drains, as the event source mapping knows it.
#[derive(Clone, Debug)]
pub struct QueueSource {
    pub client: Client,
    pub url: String,
    pub arn: String,
    pub region: String,
}

fn to_attribute(value: &MessageAttributeValue) -> SqsMessageAttribute {
    let binary = |bytes: &[u8]| {
        let mut data = Base64Data::default();
        data.extend_from_slice(bytes);
        data
    };
    let mut attribute = SqsMessageAttribute::default();
    attribute.data_type = Some(value.data_type().to_owned());
    attribute.string_value = value.string_value().map(str::to_owned);
    attribute.binary_value = value.binary_value().map(|b| binary(b.as_ref()));
    attribute.string_list_values = value.string_list_values().to_vec();
    attribute.binary_list_values = value
        .binary_list_values()
        .iter()
        .map(|b| binary(b.as_ref()))
        .collect();
    attribute
}

/// The Lambda record for one received message, as the event source mapping writes it.
pub fn to_record(message: &Message, queue: &QueueSource) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id().map(str::to_owned);
    record.receipt_handle = message.receipt_handle().map(str::to_owned);
    record.body = message.body().map(str::to_owned);
    record.md5_of_body = message.md5_of_body().map(str::to_owned);
    record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
    record.attributes = message
        .attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
        .collect();
    record.message_attributes = message
        .message_attributes()
        .into_iter()
        .flatten()
        .map(|(name, value)| (name.clone(), to_attribute(value)))
        .collect();
    record.event_source = Some("aws:sqs".into());
    record.event_source_arn = Some(queue.arn.clone());
    record.aws_region = Some(queue.region.clone());
    record
}

/// One poller: receive, deliver, delete, until `stop` turns true. A batch in hand is
/// finished before it stops.
pub async fn run(
    queue: QueueSource,
    deliver: DeliverTarget,
    settings: PollSettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let started = Instant::now();
        let batch = settings.batch_size.unwrap_or(10).clamp(1, MAX_BATCH_SIZE) as usize;
        let received = tokio::select! {
            received = receive(&queue, &settings, batch, settings.wait_seconds) => received,
            () = stopped(&mut stop) => return,
        };
        let messages = match received {
            Ok(messages) => {
                let window = settings.batching_window.unwrap_or_default();
                gather(&queue, &settings, messages, batch, window).await
            }
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), queue = %queue.url, "receiving from the delivery queue failed; trying again shortly");
                pause(ERROR_PAUSE, &mut stop).await;
                continue;
            }
        };
        if messages.is_empty() {
            pause(MIN_EMPTY_POLL.saturating_sub(started.elapsed()), &mut stop).await;
            continue;
        }
        handle_batch(&queue, &deliver, &settings, &messages).await;
    }
}

/// One receive of at most `batch` (and SQS's ten) messages, waiting up to `wait` seconds.
async fn receive(
    queue: &QueueSource,
    settings: &PollSettings,
    batch: usize,
    wait: i32,
) -> Result<Vec<Message>, aws_sdk_sqs::error::SdkError<ReceiveMessageError>> {
    let output = queue
        .client
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(batch.clamp(1, SQS_BATCH) as i32)
        .wait_time_seconds(wait.clamp(0, 20))
        .set_visibility_timeout(settings.visibility_timeout.map(|s| s.clamp(0, 43_200)))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await?;
    Ok(output.messages.unwrap_or_default())
}

/// A batch gathered from its first messages: more receives until it holds `batch` or
/// `window` has passed since it began, as the event source mapping fills a batch before
/// it invokes. The window's rest is waited as long polling rounded up to a second (SQS
/// counts waits in seconds); a receive that fails ends the gathering with what is held.
async fn gather(
    queue: &QueueSource,
    settings: &PollSettings,
    mut messages: Vec<Message>,
    batch: usize,
    window: Duration,
) -> Vec<Message> {
    let began = Instant::now();
    while !messages.is_empty() && messages.len() < batch {
        let left = window.saturating_sub(began.elapsed());
        if left.is_zero() {
            break;
        }
        let wait = left.as_secs_f64().ceil() as i32;
        match receive(queue, settings, batch - messages.len(), wait).await {
            Ok(more) => messages.extend(more),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), queue = %queue.url, "receiving more of a batch failed; handing over what was received");
                break;
            }
        }
    }
    messages
}

async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = stopped(stop) => {}
    }
}

async fn handle_batch(
    queue: &QueueSource,
    deliver: &DeliverTarget,
    settings: &PollSettings,
    messages: &[Message],
) {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(|m| to_record(m, queue)).collect();
    settings.invocations.fetch_add(1, Ordering::Relaxed);
    // What the function reports failed stays on the queue and comes back when its
    // visibility timeout ends; everything else is done. A failed invocation leaves the
    // whole batch, as the event source mapping does.
    let failed: HashSet<String> = match deliver {
        DeliverTarget::InProcess(deliver) => {
            let deadline = settings
                .invocation_timeout
                .map(|timeout| tokio::time::Instant::now() + timeout);
            let outcome = herald_deliver::process_batch_until(deliver, event, deadline).await;
            if settings.print_attempts {
                let now = chrono::Local::now().format("%H:%M:%S");
                for report in &outcome.reports {
                    println!("{now}  {report}");
                }
            }
            outcome
                .response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect()
        }
        DeliverTarget::Invoke {
            http,
            endpoint,
            function,
        } => match invoke(http, endpoint, function, &event).await {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "invoking the deliver function failed; its batch comes back");
                return;
            }
        },
    };
    let entries: Vec<DeleteMessageBatchRequestEntry> = messages
        .iter()
        .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
        .enumerate()
        .filter_map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle()?)
                .build()
                .ok()
        })
        .collect();
    // Ten a call, SQS's most. A message left undeleted comes back and finds its delivery
    // final: a no-op.
    for entries in entries.chunks(SQS_BATCH) {
        delete(queue, entries.to_vec()).await;
    }
}

async fn delete(queue: &QueueSource, entries: Vec<DeleteMessageBatchRequestEntry>) {
    match queue
        .client
        .delete_message_batch()
        .queue_url(&queue.url)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(output) => {
            for failure in output.failed() {
                tracing::warn!(
                    code = failure.code(),
                    message = failure.message(),
                    "a handled message was not deleted"
                );
            }
        }
        Err(e) => {
            tracing::warn!(error = %DisplayErrorContext(&e), "deleting handled messages failed");
        }
    }
}

/// One synchronous invocation through the Invoke API; a function error (reported in
/// `X-Amz-Function-Error`) or an answer that is no batch response is an error.
async fn invoke(
    http: &reqwest::Client,
    endpoint: &str,
    function: &str,
    event: &SqsEvent,
) -> anyhow::Result<SqsBatchResponse> {
    let url = format!(
        "{}/2015-03-31/functions/{function}/invocations",
        endpoint.trim_end_matches('/')
    );
    let response = http
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(event)?)
        .send()
        .await?;
    let status = response.status();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = response.bytes().await?;
    if !status.is_success() || function_error.is_some() {
        anyhow::bail!(
            "{url} answered {status} {}: {}",
            function_error.unwrap_or_default(),
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;

    #[test]
    fn a_message_becomes_the_record_lambda_would_get() {
        let queue = QueueSource {
            client: Client::from_conf(
                aws_sdk_sqs::Config::builder()
                    .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                    .build(),
            ),
            url: "http://127.0.0.1:5000/000000000000/q".into(),
            arn: "arn:aws:sqs:eu-west-1:000000000000:q".into(),
            region: "eu-west-1".into(),
        };
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("r1")
            .body("{}")
            .md5_of_body("99914b932bd37a50b983c5e7c90ae93b")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .message_attributes(
                "herald-reason",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("malformed")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1, 2]))
                    .build()
                    .unwrap(),
            )
            .build();
        let record = to_record(&message, &queue);
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["messageId"], "m1");
        assert_eq!(json["receiptHandle"], "r1");
        assert_eq!(json["attributes"]["ApproximateReceiveCount"], "3");
        assert_eq!(
            json["messageAttributes"]["herald-reason"]["stringValue"],
            "malformed"
        );
        assert_eq!(json["messageAttributes"]["raw"]["binaryValue"], "AQI=");
        assert_eq!(json["eventSource"], "aws:sqs");
        assert_eq!(json["eventSourceARN"], queue.arn);
        assert_eq!(json["awsRegion"], "eu-west-1");
    }
}
