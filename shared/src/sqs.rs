//! The delivery queue on SQS.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use futures::{StreamExt, TryStreamExt};

use crate::delivery::DeliveryTask;
use crate::ports::{DeadLetter, DeliveryQueue, QueueError};

/// SQS's limit on one message and on one batch, in bytes.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
const MAX_BATCH_ENTRIES: usize = 10;
/// Entries SQS reports failed are sent again this many times.
const ENTRY_RETRIES: u32 = 3;
/// SendMessageBatch calls in flight at once for one enqueue.
const SEND_CONCURRENCY: usize = 10;
/// SQS caps a message's visibility at 12 hours counted from when it was received, not
/// from the change, so a full 12 hours asked for after any work is refused. A message is
/// never held longer than a Lambda can run (15 minutes), which is the margin kept.
const MAX_VISIBILITY_SECONDS: u64 = 12 * 60 * 60 - 15 * 60;

#[derive(Clone, Debug)]
pub struct SqsDeliveryQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: String,
}

impl SqsDeliveryQueue {
    pub fn new(client: Client, queue_url: String, dead_letter_url: String) -> Self {
        Self {
            client,
            queue_url,
            dead_letter_url,
        }
    }

    /// Sends one batch; returns the bodies SQS did not take.
    async fn send_batch(&self, bodies: Vec<String>) -> Result<Vec<String>, QueueError> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(QueueError::unavailable)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(QueueError::unavailable)?;
        let failed = output
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .filter_map(|i| bodies.get(i).cloned())
            .collect();
        Ok(failed)
    }
}

/// Splits message bodies into SendMessageBatch calls: at most 10 entries and 1 MiB each.
pub fn plan_batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut batches: Vec<Vec<String>> = Vec::new();
    let mut size = 0;
    for body in bodies {
        let fits = batches
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH_ENTRIES && size + body.len() <= MAX_BATCH_BYTES);
        if !fits {
            batches.push(Vec::new());
            size = 0;
        }
        size += body.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(body);
        }
    }
    batches
}

impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError> {
        let mut pending: Vec<String> = tasks.iter().map(DeliveryTask::to_message_body).collect();
        for round in 0..=ENTRY_RETRIES {
            if pending.is_empty() {
                return Ok(());
            }
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(50 << round)).await;
            }
            // The batches are independent: a publish of 100 tasks waits for about one
            // round trip instead of ten.
            let sends: Vec<_> = plan_batches(std::mem::take(&mut pending))
                .into_iter()
                .map(|batch| self.send_batch(batch))
                .collect();
            let failed: Vec<Vec<String>> = futures::stream::iter(sends)
                .buffer_unordered(SEND_CONCURRENCY)
                .try_collect()
                .await?;
            pending = failed.into_iter().flatten().collect();
        }
        if pending.is_empty() {
            Ok(())
        } else {
            Err(QueueError::Partial {
                failed: pending.len(),
            })
        }
    }

    async fn retry_later(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        // Whole seconds, rounded up: a retry never comes back before its delay.
        let seconds = delay
            .as_secs_f64()
            .ceil()
            .min(MAX_VISIBILITY_SECONDS as f64) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(QueueError::unavailable)?;
        Ok(())
    }

    async fn dead_letter(&self, body: &str, why: &DeadLetter) -> Result<(), QueueError> {
        let text = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(QueueError::unavailable)
        };
        // SQS refuses an empty body; a poison message may have been one.
        let body = if body.is_empty() {
            "(empty message)"
        } else {
            body
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_url)
            .message_body(body)
            .message_attributes("herald-reason", text(&truncate(&why.reason, 1024))?);
        if let Some(id) = &why.delivery_id {
            request = request.message_attributes("herald-delivery-id", text(id.as_str())?);
        }
        request.send().await.map_err(QueueError::unavailable)?;
        Ok(())
    }
}

fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_bytes() {
        let small: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        let sizes: Vec<usize> = plan_batches(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);

        let big: Vec<String> = (0..8).map(|_| "x".repeat(300 * 1024)).collect();
        let batches = plan_batches(big);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 2]
        );
        assert!(
            batches
                .iter()
                .all(|b| b.iter().map(String::len).sum::<usize>() <= MAX_BATCH_BYTES)
        );
        assert!(plan_batches(Vec::new()).is_empty());
    }
}
