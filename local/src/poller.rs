//! Plays the SQS event source mapping: receives batches, hands them to the deliver
//! function, deletes what succeeded and leaves the reported failures to come back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct PollSettings {
    /// Messages per batch, at most 10.
    pub batch_size: i32,
    /// Long-polling wait, in seconds (20 at most).
    pub wait_seconds: i32,
    /// Batches in flight at once, like concurrent Lambda instances.
    pub pollers: usize,
    /// Print one line per delivery attempt for a person to read.
    pub print_attempts: bool,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            batch_size: 10,
            wait_seconds: 20,
            pollers: 2,
            print_attempts: true,
        }
    }
}

fn to_record(message: &Message, queue_arn: &str) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id().map(str::to_owned);
    record.receipt_handle = message.receipt_handle().map(str::to_owned);
    record.body = message.body().map(str::to_owned);
    record.md5_of_body = message.md5_of_body().map(str::to_owned);
    record.attributes = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    record.event_source = Some("aws:sqs".into());
    record.event_source_arn = Some(queue_arn.to_owned());
    record.aws_region = Some("us-east-1".into());
    record
}

/// One poller: runs until `stop` changes.
pub async fn run(
    client: Client,
    queue_url: String,
    queue_arn: String,
    deliver: Arc<herald_deliver::AwsDeliver>,
    settings: PollSettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            r = client
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(settings.batch_size.clamp(1, 10))
                .wait_time_seconds(settings.wait_seconds.clamp(0, 20))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send() => r,
            _ = stop.changed() => return,
        };
        let messages = match received {
            Ok(output) => output.messages().to_vec(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving from the delivery queue failed; pausing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let receipts: HashMap<String, String> = messages
            .iter()
            .filter_map(|m| Some((m.message_id()?.to_owned(), m.receipt_handle()?.to_owned())))
            .collect();
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| to_record(m, &queue_arn)).collect();
        let outcome = herald_deliver::process_batch(&deliver, event).await;
        if settings.print_attempts {
            for report in &outcome.reports {
                println!("{report}");
            }
        }
        let keep: Vec<&str> = outcome
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .filter(|(id, _)| !keep.contains(&id.as_str()))
            .enumerate()
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        if entries.is_empty() {
            continue;
        }
        if let Err(e) = client
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // Undeleted messages come back and are no-ops: their deliveries are final.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "deleting handled messages failed");
        }
    }
}
