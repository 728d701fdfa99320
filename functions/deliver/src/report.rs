//! What happened to each record of a batch, for logs and for the local runner's lines.

use std::fmt;
use std::time::Duration;

use herald_core::delivery::DeliveryState;

#[derive(Clone, Debug, PartialEq)]
pub enum Disposition {
    Delivered,
    RetryIn(Duration),
    /// No attempt is left (the retry window, or the queue's receives, are spent): recorded
    /// failed, with this reason, and moved to the dead-letter queue.
    Failed(String),
    /// 410 Gone: the subscription was disabled.
    Gone,
    Skipped(String),
    /// A newer event about the same subject was queued; this one is not sent.
    Superseded,
    DeadLettered(String),
    /// Already failed with the window spent, its dead letter refused then: this copy of
    /// the message sends it now, with the reason recorded.
    OwedDeadLetter(String),
    /// The delivery was already in a final state: the message was a duplicate.
    AlreadyFinished(DeliveryState),
    /// Another worker holds the delivery; this copy comes back after its lease.
    Leased(Duration),
    /// Over its subscription's rate limit: back when its window comes, not an attempt.
    RateLimited(Duration),
    /// Herald's own storage or queue failed; SQS hands the message back.
    Interrupted(String),
    /// In an ordered line behind a delivery of the same batch that is not done: not
    /// looked at, handed back at once (the line holds it until the one ahead is done).
    Behind,
    /// Its subscription's receivers are slow: queued on the slow lane (after an attempt
    /// cut at `HERALD_SLOW_LANE_AFTER`, or without one), its message here let go.
    ToSlowLane,
    /// Its turn came too late in the invocation for an attempt to end before the
    /// invocation's deadline (a large batch's records waiting on one host): not attempted,
    /// handed back at once for another invocation.
    Deferred,
}

impl Disposition {
    /// A delivery, or a copy of a message whose delivery had already finished: what
    /// most records of most batches come to, and nothing an operator needs a line for.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            Self::Delivered
                | Self::AlreadyFinished(_)
                | Self::RateLimited(_)
                | Self::Behind
                | Self::ToSlowLane
                | Self::Deferred
        )
    }

    /// Whether SQS should hand the message back (a batch item failure).
    pub fn keeps_message(&self) -> bool {
        matches!(
            self,
            Self::RetryIn(_)
                | Self::Leased(_)
                | Self::RateLimited(_)
                | Self::Interrupted(_)
                | Self::Behind
                | Self::Deferred
        )
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delivered => f.write_str("delivered"),
            // SQS counts whole seconds and Herald rounds the delay up, so the line does too.
            Self::RetryIn(d) => write!(
                f,
                "retry in {}s",
                d.as_secs() + u64::from(d.subsec_nanos() > 0)
            ),
            Self::Failed(why) => write!(f, "failed: {why}; moved to the dead-letter queue"),
            Self::Gone => f.write_str("failed: 410 Gone, subscription disabled"),
            Self::Skipped(why) => write!(f, "skipped: {why}"),
            Self::Superseded => f.write_str("superseded by a newer event about the same subject"),
            Self::DeadLettered(why) => write!(f, "dead-lettered: {why}"),
            Self::OwedDeadLetter(why) => {
                write!(f, "already failed, its owed dead letter sent now: {why}")
            }
            Self::AlreadyFinished(state) => write!(f, "already {}", state.as_str()),
            Self::Leased(d) => write!(f, "held by another worker, back in {}s", d.as_secs()),
            Self::RateLimited(d) => write!(
                f,
                "over its subscription's rate limit, back in {}s",
                d.as_secs()
            ),
            Self::Interrupted(why) => write!(f, "interrupted: {why}"),
            Self::Behind => f.write_str("waits behind an earlier delivery of its ordered line"),
            Self::ToSlowLane => f.write_str("its receivers are slow: sent on the slow lane"),
            Self::Deferred => f.write_str(
                "no time left in the invocation for an attempt: handed back, not attempted",
            ),
        }
    }
}

/// One record's outcome.
#[derive(Clone, Debug)]
pub struct RecordReport {
    pub message_id: String,
    pub delivery_id: Option<String>,
    pub subscription_id: Option<String>,
    pub url: Option<String>,
    pub attempt: Option<u32>,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
    pub latency_ms: Option<u64>,
    /// From the event's acceptance to this first attempt (a scheduled first attempt only).
    pub lag_ms: Option<u64>,
    pub disposition: Disposition,
}

impl RecordReport {
    pub fn new(message_id: &str, disposition: Disposition) -> Self {
        Self {
            message_id: message_id.to_owned(),
            delivery_id: None,
            subscription_id: None,
            url: None,
            attempt: None,
            status: None,
            error: None,
            latency_ms: None,
            lag_ms: None,
            disposition,
        }
    }
}

impl fmt::Display for RecordReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delivery {}",
            self.delivery_id.as_deref().unwrap_or(&self.message_id)
        )?;
        if let Some(url) = &self.url {
            write!(f, " → {url}")?;
        }
        if let Some(n) = self.attempt {
            write!(f, "  attempt {n}")?;
        }
        match (self.status, self.error) {
            (Some(status), _) => write!(f, "  {status}")?,
            (None, Some(code)) => write!(f, "  {code}")?,
            _ => {}
        }
        if let Some(ms) = self.latency_ms {
            write!(f, "  in {ms} ms")?;
        }
        write!(f, "  {}", self.disposition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_line_names_the_whole_seconds_sqs_waits() {
        let line = |d| Disposition::RetryIn(d).to_string();
        assert_eq!(line(Duration::from_secs(5)), "retry in 5s");
        assert_eq!(line(Duration::from_millis(4_200)), "retry in 5s");
        assert_eq!(line(Duration::from_millis(300)), "retry in 1s");
    }
}
