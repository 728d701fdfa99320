//! The delivery queue on SQS. Every call is a batch call (SendMessageBatch,
//! ChangeMessageVisibilityBatch): at most 10 entries and 1 MiB a call, the calls in
//! flight together, and entries SQS refuses for a reason of its own sent again.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::builders::SendMessageBatchRequestEntryBuilder;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, SendMessageBatchRequestEntry,
};
use futures::{FutureExt, StreamExt};

use herald_core::delivery::{DeliveryTask, Lane};
use herald_core::ports::{DeadLetter, DeliveryQueue, QueueError, VisibilityChange};

/// SQS's limit on one message and on one batch, in bytes (message attributes count).
const MAX_BATCH_BYTES: usize = 1024 * 1024;
const MAX_BATCH_ENTRIES: usize = 10;
/// Entries SQS reports failed are sent again this many times.
const ENTRY_RETRIES: u32 = 3;
/// Batch calls in flight at once for one call of the port.
const SEND_CONCURRENCY: usize = 10;
/// SQS caps a message's visibility at 12 hours counted from when it was received, not
/// from the change, so a full 12 hours asked for after any work is refused. A message is
/// never held longer than a Lambda can run (15 minutes), which is the margin kept: the
/// retry schedule's own cap, so the delay recorded is the one kept.
const MAX_VISIBILITY_SECONDS: u64 = herald_core::delivery::retry::MAX_DELAY.as_secs();
/// The longest reason kept on a dead letter.
const MAX_REASON_BYTES: usize = 1024;

#[derive(Clone, Debug)]
pub struct SqsDeliveryQueue {
    client: ClientSource,
    queue_url: String,
    dead_letter_url: String,
    /// The FIFO queue of ordered subscriptions' tasks and its dead-letter queue.
    ordered: Option<(String, String)>,
    /// The slow lane's queue.
    slow: Option<String>,
}

/// The SQS client, given, or built from the SDK's configuration the first time a call
/// needs it: deliver calls SQS only for retries and dead letters, and manage only for
/// redelivery, so their cold starts need not build a client most containers never use.
#[derive(Clone, Debug)]
enum ClientSource {
    Ready(Client),
    OnFirstUse {
        sdk: Box<aws_config::SdkConfig>,
        client: std::sync::OnceLock<Client>,
    },
}

/// A whole batch call that failed (after the SDK's own retries): every entry's error.
type CallError = Arc<dyn std::error::Error + Send + Sync>;

/// What SQS answered for one batch call, by entry id.
struct BatchAnswer {
    taken: HashSet<String>,
    refused: Vec<BatchResultErrorEntry>,
}

impl BatchAnswer {
    fn new<'a>(
        taken: impl IntoIterator<Item = &'a str>,
        refused: &[BatchResultErrorEntry],
    ) -> Self {
        Self {
            taken: taken.into_iter().map(str::to_owned).collect(),
            refused: refused.to_vec(),
        }
    }
}

impl SqsDeliveryQueue {
    pub fn new(client: Client, queue_url: String, dead_letter_url: String) -> Self {
        Self {
            client: ClientSource::Ready(client),
            queue_url,
            dead_letter_url,
            ordered: None,
            slow: None,
        }
    }

    /// With the slow lane's queue (docs/DECISIONS.md, "Slow receivers"); its dead letters
    /// go to the standard lane's dead-letter queue.
    pub fn with_slow(mut self, queue_url: Option<String>) -> Self {
        self.slow = queue_url;
        self
    }

    /// With the FIFO delivery queue of ordered subscriptions and its dead-letter queue
    /// (`herald_core::subscription::ordering`).
    pub fn with_ordered(mut self, queue_url: String, dead_letter_url: String) -> Self {
        self.ordered = Some((queue_url, dead_letter_url));
        self
    }

    /// The delivery queue, or the dead-letter queue, of a lane. Without a slow lane, its
    /// tasks go on the standard one.
    fn url(&self, lane: Lane, dead_letter: bool) -> Result<&str, QueueError> {
        match (lane, &self.ordered) {
            (Lane::Standard | Lane::Slow, _) if dead_letter => Ok(&self.dead_letter_url),
            (Lane::Slow, _) => Ok(self.slow.as_deref().unwrap_or(&self.queue_url)),
            (Lane::Standard, _) => Ok(&self.queue_url),
            (Lane::Ordered, Some((_, dlq))) if dead_letter => Ok(dlq),
            (Lane::Ordered, Some((queue, _))) => Ok(queue),
            (Lane::Ordered, None) => Err(QueueError::Refused {
                code: "NoOrderedQueue".into(),
                message: "this deployment has no ordered delivery queue \
                          (HERALD_ORDERED_QUEUE_URL)"
                    .into(),
            }),
        }
    }

    /// As `new`, with the client built on the first call that needs it.
    pub fn on_first_use(
        sdk: &aws_config::SdkConfig,
        queue_url: String,
        dead_letter_url: String,
    ) -> Self {
        Self {
            client: ClientSource::OnFirstUse {
                sdk: Box::new(sdk.clone()),
                client: std::sync::OnceLock::new(),
            },
            queue_url,
            dead_letter_url,
            ordered: None,
            slow: None,
        }
    }

    fn client(&self) -> &Client {
        match &self.client {
            ClientSource::Ready(client) => client,
            ClientSource::OnFirstUse { sdk, client } => client.get_or_init(|| Client::new(sdk)),
        }
    }

    // The requests are awaited boxed, as the DynamoDB adapters' are (crate::dynamo): a
    // record that queues its retry holds the call's future.
    async fn send_batch(
        &self,
        url: &str,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<BatchAnswer, CallError> {
        let output = self
            .client()
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .boxed()
            .await
            .map_err(|e| Arc::new(e) as CallError)?;
        Ok(BatchAnswer::new(
            output.successful().iter().map(|e| e.id()),
            output.failed(),
        ))
    }

    async fn change_visibility_batch(
        &self,
        url: &str,
        entries: Vec<ChangeMessageVisibilityBatchRequestEntry>,
    ) -> Result<BatchAnswer, CallError> {
        let output = self
            .client()
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .boxed()
            .await
            .map_err(|e| Arc::new(e) as CallError)?;
        Ok(BatchAnswer::new(
            output.successful().iter().map(|e| e.id()),
            output.failed(),
        ))
    }
}

/// Runs `each` on the entries of each queue apart (by the entries' lanes, `lane`), with
/// the queue and the positions of its entries; one result per entry, in the order given.
/// A lane this deployment lacks fails its entries.
async fn per_lane<'a, F, Fut>(
    queue: &'a SqsDeliveryQueue,
    count: usize,
    lane: impl Fn(usize) -> Lane,
    dead_letter: bool,
    each: F,
) -> Vec<Result<(), QueueError>>
where
    F: Fn(&'a str, Vec<usize>) -> Fut,
    Fut: Future<Output = Vec<Result<(), QueueError>>>,
{
    let mut results: Vec<Result<(), QueueError>> = (0..count).map(|_| Ok(())).collect();
    // Entries of lanes that share a queue (no slow lane; dead letters) go in one call.
    let mut by_queue: Vec<(Result<&str, QueueError>, Vec<usize>)> = Vec::new();
    for i in 0..count {
        let url = queue.url(lane(i), dead_letter);
        match by_queue.iter_mut().find(|(u, _)| match (u, &url) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }) {
            Some((_, positions)) => positions.push(i),
            None => by_queue.push((url, vec![i])),
        }
    }
    for (url, positions) in by_queue {
        match url {
            Ok(url) => {
                let answers = each(url, positions.clone()).await;
                for (i, answer) in positions.into_iter().zip(answers) {
                    results[i] = answer;
                }
            }
            Err(e) => {
                for i in positions {
                    results[i] = Err(QueueError::Refused {
                        code: "NoOrderedQueue".into(),
                        message: e.to_string(),
                    });
                }
            }
        }
    }
    results
}

/// Why an entry SQS did not take failed, and whether sending it again may help: a
/// refusal for a reason of SQS's own, or no word of the entry (not known to be taken,
/// so not done).
fn entry_error(refused: Option<&BatchResultErrorEntry>) -> (QueueError, bool) {
    match refused {
        Some(f) => (
            QueueError::Refused {
                code: f.code().to_owned(),
                message: f.message().unwrap_or_default().to_owned(),
            },
            !f.sender_fault(),
        ),
        None => (
            QueueError::Refused {
                code: "Unanswered".into(),
                message: "SQS's answer did not name the entry".into(),
            },
            true,
        ),
    }
}

/// Sends `count` entries in batch calls one after another, in order, as the ordered lane
/// needs: SQS puts a FIFO batch's entries in its line in the order given, and calls in
/// flight together could land in any order. At the first entry not taken, it and every
/// entry after it fail unsent (sending a later one would put it ahead); the publish is
/// answered 503, and publishing again sends them, each deduplicated by its delivery id.
async fn send_in_order<F, Fut>(
    count: usize,
    size: impl Fn(usize) -> usize,
    call: F,
) -> Vec<Result<(), QueueError>>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, CallError>>,
{
    let mut results: Vec<Result<(), QueueError>> = Vec::with_capacity(count);
    for batch in plan_batches((0..count).collect(), |&i| size(i)) {
        let failure = match call(batch.clone()).await {
            Ok(answer) => {
                let refused: HashMap<&str, &BatchResultErrorEntry> =
                    answer.refused.iter().map(|f| (f.id(), f)).collect();
                let mut failure = None;
                for i in batch {
                    let id = i.to_string();
                    if answer.taken.contains(&id) {
                        results.push(Ok(()));
                        continue;
                    }
                    failure = Some(entry_error(refused.get(id.as_str()).copied()).0);
                    break;
                }
                failure
            }
            Err(e) => Some(QueueError::Unavailable(Box::new(e))),
        };
        if let Some(failure) = failure {
            let unsent = count - results.len();
            let message = failure.to_string();
            results.push(Err(failure));
            for _ in 1..unsent {
                results.push(Err(QueueError::Refused {
                    code: "NotSentOutOfOrder".into(),
                    message: format!(
                        "an earlier task of the ordered lane was not taken: {message}"
                    ),
                }));
            }
            return results;
        }
    }
    results
}

/// Splits items into batch calls: at most 10 entries and 1 MiB (by `size`) each.
pub fn plan_batches<T>(items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut batches: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let item_bytes = size(&item);
        let fits = batches
            .last()
            .is_some_and(|b| b.len() < MAX_BATCH_ENTRIES && bytes + item_bytes <= MAX_BATCH_BYTES);
        if !fits {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += item_bytes;
        if let Some(batch) = batches.last_mut() {
            batch.push(item);
        }
    }
    batches
}

/// Sends `count` entries in batch calls, `call` making one for the entries it is given
/// (by position; each entry's id in the call is its position). The calls of a round are
/// in flight together. An entry SQS refused for a reason of its own (not the sender's
/// fault: a refusal of the entry itself would come again) is sent again, up to
/// `ENTRY_RETRIES` times; a call that failed as a whole was already retried by the SDK.
/// One result per entry, in order.
async fn send_entries<F, Fut>(
    count: usize,
    size: impl Fn(usize) -> usize,
    call: F,
) -> Vec<Result<(), QueueError>>
where
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, CallError>>,
{
    let mut results: Vec<Result<(), QueueError>> = (0..count).map(|_| Ok(())).collect();
    let mut pending: Vec<usize> = (0..count).collect();
    for round in 0..=ENTRY_RETRIES {
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(50 << round)).await;
        }
        let calls: Vec<_> = plan_batches(std::mem::take(&mut pending), |&i| size(i))
            .into_iter()
            .map(|batch| {
                let answer = call(batch.clone());
                async move { (batch, answer.await) }
            })
            .collect();
        let answers: Vec<_> = futures::stream::iter(calls)
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        for (batch, answer) in answers {
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    for i in batch {
                        results[i] = Err(QueueError::Unavailable(Box::new(e.clone())));
                    }
                    continue;
                }
            };
            let refused: HashMap<&str, &BatchResultErrorEntry> =
                answer.refused.iter().map(|f| (f.id(), f)).collect();
            for i in batch {
                let id = i.to_string();
                if answer.taken.contains(&id) {
                    results[i] = Ok(());
                    continue;
                }
                let (error, again) = entry_error(refused.get(id.as_str()).copied());
                results[i] = Err(error);
                if again {
                    pending.push(i);
                }
            }
        }
    }
    results
}

/// The bytes SQS counts for a message: its body, and each attribute's name, type and value.
fn message_bytes(body: &str, attributes: &[(&str, String)]) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, value)| name.len() + "String".len() + value.len())
            .sum::<usize>()
}

/// A dead letter's body and attributes as sent.
fn dead_letter_message(letter: &DeadLetter) -> (&str, Vec<(&'static str, String)>) {
    // SQS refuses an empty body; a poison message may have been one.
    let body = if letter.body.is_empty() {
        "(empty message)"
    } else {
        letter.body.as_str()
    };
    let mut attributes = vec![(
        DeadLetter::REASON_ATTRIBUTE,
        truncate(&letter.reason, MAX_REASON_BYTES),
    )];
    if let Some(id) = &letter.delivery_id {
        attributes.push((DeadLetter::DELIVERY_ATTRIBUTE, id.as_str().to_owned()));
    }
    (body, attributes)
}

fn text(value: &str) -> Result<MessageAttributeValue, CallError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Arc::new(e) as CallError)
}

/// A task's entry at position `id` of its batch call.
fn task_entry(
    id: usize,
    task: &DeliveryTask,
    body: &str,
) -> Result<SendMessageBatchRequestEntry, CallError> {
    let entry = SendMessageBatchRequestEntry::builder()
        .id(id.to_string())
        .message_body(body);
    let entry = match &task.line {
        // A line of its own, in publish order; a copy of the same delivery within SQS's
        // five minutes is the same message.
        Some(line) => entry
            .message_group_id(line)
            .message_deduplication_id(task.delivery_id.as_str()),
        // SQS fair queues: the tenant is the message group on the standard queue, so a
        // tenant with a backlog does not hold up the others' messages (docs/DECISIONS.md,
        // "Fair queues").
        None => entry.message_group_id(task.tenant.as_str()),
    };
    with_trace_header(entry, task)?
        .build()
        .map_err(|e| Arc::new(e) as CallError)
}

/// A traced task's header also as SQS's `AWSTraceHeader` system attribute, which X-Ray
/// reads to draw the queue between the publish and its deliveries; Herald's own carriage
/// is the task's `trace` field, which a redrive keeps too.
fn with_trace_header(
    entry: SendMessageBatchRequestEntryBuilder,
    task: &DeliveryTask,
) -> Result<SendMessageBatchRequestEntryBuilder, CallError> {
    let Some(header) = &task.trace else {
        return Ok(entry);
    };
    let value = MessageSystemAttributeValue::builder()
        .data_type("String")
        .string_value(header.to_string())
        .build()
        .map_err(|e| Arc::new(e) as CallError)?;
    Ok(entry.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value))
}

/// Whole seconds, rounded up (a retry never comes back before its delay), and within
/// what SQS allows.
fn visibility_seconds(delay: Duration) -> i32 {
    delay
        .as_secs_f64()
        .ceil()
        .min(MAX_VISIBILITY_SECONDS as f64) as i32
}

/// Bytes of message bodies an enqueue holds at a time: what one round of its concurrent
/// batch calls carries. A publish's tasks are made into messages a share at a time, so
/// ingest's memory does not grow with fan-out times event size: a 6 MB publish of
/// 256 KiB events to 100 subscriptions makes 600 MB of messages, which held at once (and
/// copied into the calls) would be far over the function's memory.
const SHARE_BYTES: usize = SEND_CONCURRENCY * MAX_BATCH_BYTES;

/// The message bodies of the first tasks of `tasks`, as many as make `budget` bytes (the
/// last may pass it) and at least one.
fn bodies_of_share(tasks: &[DeliveryTask], budget: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut bytes = 0;
    for task in tasks {
        if !bodies.is_empty() && bytes >= budget {
            break;
        }
        let body = task.to_message_body();
        bytes += body.len();
        bodies.push(body);
    }
    bodies
}

impl SqsDeliveryQueue {
    /// Queues `tasks` a share at a time, in order: a share that fails ends the enqueue,
    /// so no task of an ordered line is queued after one of its line that was not, and
    /// the tasks not sent count as failed (the publish is answered 503 and its repeat
    /// queues them, the ones queued already being the same deliveries).
    async fn enqueue_in_shares(
        &self,
        tasks: &[DeliveryTask],
        budget: usize,
    ) -> Result<(), QueueError> {
        let mut rest = tasks;
        while !rest.is_empty() {
            let bodies = bodies_of_share(rest, budget);
            let (share, after) = rest.split_at(bodies.len());
            match self.enqueue_share(share, &bodies).await {
                Ok(()) => rest = after,
                Err(QueueError::Partial { failed }) if !after.is_empty() => {
                    return Err(QueueError::Partial {
                        failed: failed + after.len(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn enqueue_share(
        &self,
        tasks: &[DeliveryTask],
        bodies: &[String],
    ) -> Result<(), QueueError> {
        // The batches are independent: a publish of 100 tasks waits for about one round
        // trip instead of ten. An ordered subscription's tasks go on the FIFO queue, each in
        // its line (message group), deduplicated by delivery id.
        let results = per_lane(
            self,
            tasks.len(),
            |i| tasks[i].lane(),
            false,
            |url, positions| {
                let ordered = tasks[positions[0]].line.is_some();
                async move {
                    let size = |j: usize| bodies[positions[j]].len();
                    let call = |batch: Vec<usize>| {
                        let entries = batch
                            .iter()
                            .map(|&j| task_entry(j, &tasks[positions[j]], &bodies[positions[j]]))
                            .collect::<Result<Vec<_>, _>>();
                        async move { self.send_batch(url, entries?).await }
                    };
                    if ordered {
                        send_in_order(positions.len(), size, call).await
                    } else {
                        send_entries(positions.len(), size, call).await
                    }
                }
            },
        )
        .await;
        let mut failed = 0;
        for result in results {
            match result {
                Ok(()) => {}
                Err(e @ QueueError::Unavailable(_)) => return Err(e),
                Err(_) => failed += 1,
            }
        }
        if failed == 0 {
            Ok(())
        } else {
            Err(QueueError::Partial { failed })
        }
    }
}

impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, tasks: &[DeliveryTask]) -> Result<(), QueueError> {
        self.enqueue_in_shares(tasks, SHARE_BYTES).await
    }

    async fn retry_later(&self, changes: &[VisibilityChange]) -> Vec<Result<(), QueueError>> {
        per_lane(
            self,
            changes.len(),
            |i| changes[i].lane,
            false,
            |url, positions| async move {
                send_entries(
                    positions.len(),
                    // Receipt handles are small: ten of them never near the byte limit.
                    |j| changes[positions[j]].receipt_handle.len(),
                    |batch| {
                        let entries = batch
                            .iter()
                            .map(|&j| {
                                let change = &changes[positions[j]];
                                ChangeMessageVisibilityBatchRequestEntry::builder()
                                    .id(j.to_string())
                                    .receipt_handle(&change.receipt_handle)
                                    .visibility_timeout(visibility_seconds(change.delay))
                                    .build()
                                    .map_err(|e| Arc::new(e) as CallError)
                            })
                            .collect::<Result<Vec<_>, _>>();
                        async move { self.change_visibility_batch(url, entries?).await }
                    },
                )
                .await
            },
        )
        .await
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> Vec<Result<(), QueueError>> {
        let messages: Vec<_> = letters.iter().map(dead_letter_message).collect();
        per_lane(
            self,
            letters.len(),
            |i| match letters[i].line {
                Some(_) => Lane::Ordered,
                None => Lane::Standard,
            },
            true,
            |url, positions| {
                let messages = &messages;
                async move {
                    send_entries(
                        positions.len(),
                        |j| message_bytes(messages[positions[j]].0, &messages[positions[j]].1),
                        |batch| {
                            let entries = batch
                                .iter()
                                .map(|&j| {
                                    let (body, attributes) = &messages[positions[j]];
                                    let mut entry = SendMessageBatchRequestEntry::builder()
                                        .id(j.to_string())
                                        .message_body(*body);
                                    for (name, value) in attributes {
                                        entry = entry.message_attributes(*name, text(value)?);
                                    }
                                    // The ordered lane's dead-letter queue is FIFO: the
                                    // letter keeps its line, and each copy is its own.
                                    if let Some(line) = &letters[positions[j]].line {
                                        entry =
                                            entry.message_group_id(line).message_deduplication_id(
                                                format!("{:032x}", rand::random::<u128>()),
                                            );
                                    }
                                    entry.build().map_err(|e| Arc::new(e) as CallError)
                                })
                                .collect::<Result<Vec<_>, _>>();
                            async move { self.send_batch(url, entries?).await }
                        },
                    )
                    .await
                }
            },
        )
        .await
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
        let sizes: Vec<usize> = plan_batches(small, |b| b.len())
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![10, 10, 5]);

        let big: Vec<String> = (0..8).map(|_| "x".repeat(300 * 1024)).collect();
        let batches = plan_batches(big, |b| b.len());
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![3, 3, 2]
        );
        assert!(
            batches
                .iter()
                .all(|b| b.iter().map(String::len).sum::<usize>() <= MAX_BATCH_BYTES)
        );
        assert!(plan_batches(Vec::<String>::new(), |b| b.len()).is_empty());
    }

    #[test]
    fn a_share_holds_its_budget_of_bodies_and_one_more_at_most() {
        let event: herald_core::event::Event = serde_json::from_value(serde_json::json!({
            "id": "e1", "type": "a.b", "occurred_at": "2026-12-06T00:00:00Z",
            "data": {"blob": "x".repeat(1000)}
        }))
        .unwrap();
        let tenant = herald_core::ids::TenantId::parse("acme").unwrap();
        let sub = herald_core::ids::SubscriptionId::generate(chrono::Utc::now(), &mut rand::rng());
        let tasks: Vec<DeliveryTask> = (0..100)
            .map(|_| DeliveryTask::new(&tenant, &sub, &event, chrono::Utc::now()))
            .collect();
        let one = tasks[0].to_message_body().len();
        // Budgets of a body and a half: two bodies, the second passing it.
        let share = bodies_of_share(&tasks, one * 3 / 2);
        assert_eq!(share.len(), 2);
        assert_eq!(share[0], tasks[0].to_message_body());
        // Exactly three bodies' worth: three.
        assert_eq!(bodies_of_share(&tasks, one * 3).len(), 3);
        // Always one, however small the budget; never more than there are.
        assert_eq!(bodies_of_share(&tasks, 0).len(), 1);
        assert_eq!(bodies_of_share(&tasks, usize::MAX).len(), 100);
        assert!(bodies_of_share(&[], SHARE_BYTES).is_empty());
    }

    fn refusal(id: usize, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id.to_string())
            .sender_fault(sender_fault)
            .code(if sender_fault {
                "ReceiptHandleIsInvalid"
            } else {
                "InternalError"
            })
            .message("refused")
            .build()
            .unwrap()
    }

    /// Answers each call as `answer` says from the entries and the call's number, and
    /// records the entries of every call.
    async fn send_with(
        count: usize,
        answer: impl Fn(&[usize], usize) -> Result<BatchAnswer, CallError>,
    ) -> (Vec<Result<(), QueueError>>, Vec<Vec<usize>>) {
        let calls = std::sync::Mutex::new(Vec::new());
        let results = send_entries(
            count,
            |_| 100,
            |batch| {
                let number = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(batch.clone());
                    calls.len() - 1
                };
                let result = answer(&batch, number);
                async move { result }
            },
        )
        .await;
        (results, calls.into_inner().unwrap())
    }

    fn taking(batch: &[usize], except: &[usize], faults: &[(usize, bool)]) -> BatchAnswer {
        let ids: Vec<String> = batch
            .iter()
            .filter(|i| !except.contains(i))
            .map(|i| i.to_string())
            .collect();
        let refused: Vec<_> = faults
            .iter()
            .filter(|(i, _)| batch.contains(i))
            .map(|&(i, fault)| refusal(i, fault))
            .collect();
        BatchAnswer::new(ids.iter().map(String::as_str), &refused)
    }

    #[tokio::test]
    async fn the_ordered_lane_sends_its_calls_in_order_and_nothing_after_an_entry_not_taken() {
        let calls = std::sync::Mutex::new(Vec::new());
        // Entry 13 is refused: 10..=12 are taken, 13 fails, 14 and the third call are not
        // sent at all (they would go ahead of it).
        let results = send_in_order(
            25,
            |_| 100,
            |batch| {
                calls.lock().unwrap().push(batch.clone());
                let answer = taking(&batch, &[13, 14], &[(13, false)]);
                async move { Ok(answer) }
            },
        )
        .await;
        let calls = calls.into_inner().unwrap();
        assert_eq!(calls.len(), 2, "no call after the one with a refusal");
        assert_eq!(calls[0], (0..10).collect::<Vec<_>>());
        assert_eq!(results.len(), 25);
        assert!(results[..13].iter().all(Result::is_ok));
        assert!(
            matches!(&results[13], Err(QueueError::Refused { code, .. }) if code == "InternalError")
        );
        assert!(results[14..].iter().all(|r| matches!(
            r,
            Err(QueueError::Refused { code, .. }) if code == "NotSentOutOfOrder"
        )));
    }

    #[tokio::test]
    async fn entries_go_ten_a_call_and_each_gets_its_own_result() {
        let (results, calls) = send_with(25, |batch, _| Ok(taking(batch, &[], &[]))).await;
        assert_eq!(results.len(), 25);
        assert!(results.iter().all(Result::is_ok));
        let mut sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![5, 10, 10]);
        let (results, calls) = send_with(0, |batch, _| Ok(taking(batch, &[], &[]))).await;
        assert!(
            results.is_empty() && calls.is_empty(),
            "no entries, no call"
        );
    }

    #[tokio::test]
    async fn an_entry_refused_by_sqs_is_sent_again_and_the_senders_fault_is_not() {
        // Entry 3 is refused twice for SQS's own reasons, then taken; entry 7 is the
        // sender's fault (a stale receipt handle) and is never taken.
        let (results, calls) = send_with(10, |batch, number| {
            let faults: &[(usize, bool)] = if number < 2 {
                &[(3, false), (7, true)]
            } else {
                &[(7, true)]
            };
            let except: Vec<usize> = faults.iter().map(|(i, _)| *i).collect();
            Ok(taking(batch, &except, faults))
        })
        .await;
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1], vec![3]);
        assert_eq!(calls[2], vec![3]);
        for (i, result) in results.iter().enumerate() {
            match i {
                7 => assert!(
                    matches!(result, Err(QueueError::Refused { code, .. }) if code == "ReceiptHandleIsInvalid"),
                    "{result:?}"
                ),
                _ => assert!(result.is_ok(), "{i}: {result:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_entry_refused_every_time_fails_after_the_retries() {
        let (results, calls) =
            send_with(2, |batch, _| Ok(taking(batch, &[1], &[(1, false)]))).await;
        assert_eq!(calls.len(), 1 + ENTRY_RETRIES as usize);
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(QueueError::Refused { .. })));
    }

    #[tokio::test]
    async fn an_entry_the_answer_does_not_name_is_not_taken() {
        // The answer names entry 0 only: entry 1 is sent again until it is named.
        let (results, calls) = send_with(2, |batch, number| {
            let except: &[usize] = if number == 0 { &[1] } else { &[] };
            Ok(taking(batch, except, &[]))
        })
        .await;
        assert_eq!(calls, vec![vec![0, 1], vec![1]]);
        assert!(results.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_call_that_fails_as_a_whole_fails_each_of_its_entries_and_only_those() {
        let (results, calls) = send_with(15, |batch, _| {
            if batch.contains(&0) {
                Err(Arc::new(std::io::Error::other("throttled")) as CallError)
            } else {
                Ok(taking(batch, &[], &[]))
            }
        })
        .await;
        assert_eq!(calls.len(), 2, "the SDK retried the call already");
        let failed: Vec<usize> = (0..15).filter(|&i| results[i].is_err()).collect();
        assert_eq!(failed, (0..10).collect::<Vec<_>>());
        assert!(
            results[0]
                .as_ref()
                .is_err_and(|e| matches!(e, QueueError::Unavailable(_)))
        );
    }

    #[test]
    fn a_dead_letter_is_sized_with_its_attributes_and_never_empty() {
        let letter = DeadLetter {
            body: String::new(),
            reason: "r".repeat(5000),
            delivery_id: None,
            line: None,
        };
        let (body, attributes) = dead_letter_message(&letter);
        assert_eq!(body, "(empty message)");
        assert_eq!(attributes.len(), 1);
        assert_eq!(attributes[0].1.len(), MAX_REASON_BYTES);
        assert_eq!(
            message_bytes(body, &attributes),
            body.len() + "herald-reason".len() + "String".len() + MAX_REASON_BYTES
        );
    }

    #[test]
    fn visibility_is_whole_seconds_rounded_up_and_capped() {
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_millis(1_200)), 2);
        assert_eq!(
            visibility_seconds(Duration::from_secs(3 * 24 * 3600)),
            MAX_VISIBILITY_SECONDS as i32
        );
    }
}
