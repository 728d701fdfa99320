//! How a deployment delivers: its retry policy and the bounds on a batch.

use std::time::Duration;

use super::retry::RetryPolicy;

#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub retry: RetryPolicy,
    /// Put before the delivery id in `Idempotency-Key` (e.g. `ffm_wh_`).
    pub idempotency_key_prefix: String,
    /// How many records of a batch are delivered at once.
    pub concurrency: usize,
    /// At most this many POSTs to one host at once within a batch, so a batch aimed at
    /// one receiver does not arrive as a burst of `concurrency` connections.
    pub per_host: usize,
    /// How long a claim keeps other copies of a message away: the timeout and a margin.
    pub lease: Duration,
    /// The deployment's limit on an attempt's wait for its answer (`HERALD_DELIVERY_TIMEOUT`);
    /// a subscription may set a shorter one. A batch starts an attempt only while its
    /// invocation has this long left and a margin (docs/DECISIONS.md, "Batch size").
    pub timeout: Duration,
    /// How long delivery records are kept.
    pub retention: Duration,
    /// A subscription failing this long without a success is disabled.
    pub auto_disable_after: Duration,
    /// The delivery queue's `maxReceiveCount`: SQS hands a message out this many times at
    /// most, then moves it to the dead-letter queue itself.
    pub max_receives: u32,
    /// The slow lane: how long an attempt on the standard lane may wait for an answer
    /// before it is cut and sent again on the slow lane (None: no slow lane; docs/
    /// DECISIONS.md, "Slow receivers").
    pub slow_after: Option<Duration>,
    /// The name of the slow lane's queue ([`queue_name`] of `HERALD_SLOW_QUEUE_URL`),
    /// which its ARN ends with: a record whose event source it is came from the slow
    /// lane, and its visibility changes go there (docs/DECISIONS.md, "Slow receivers").
    pub slow_queue: Option<String>,
    /// What keeps two copies of a message from being sent at once
    /// (`HERALD_DELIVERY_CLAIM`; docs/DECISIONS.md, "Writes per delivery").
    pub claim: ClaimMode,
}

/// How a delivery is taken before its attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClaimMode {
    /// A conditional write before every attempt (a lease): two copies of a message are
    /// never sent at once, and one sent already is never sent again.
    #[default]
    Lease,
    /// Before a first attempt, a consistent read instead: a copy after the delivery is
    /// recorded finds it and sends nothing, but two copies SQS hands out at the same
    /// moment may both be sent (under one `webhook-id`). The record is made with the
    /// attempt's outcome, so a first attempt is one write instead of two. An attempt
    /// after the first (a record exists) takes a lease as above.
    Read,
    /// A message SQS hands out for the first time is sent with neither a write nor a
    /// read before it, and only an attempt that does not succeed is recorded: a delivery
    /// answered 2xx at its first attempt leaves no record (it is not in the attempt log
    /// or the feed), and any copy of its message (a duplicate, or a repeated publish) is
    /// sent again under the same `webhook-id`. A message handed out again (a retry), on
    /// another lane, or carrying one of Herald's own events is taken as `Read` takes it.
    /// One write a delivery fewer than `Read`, and no read (docs/DECISIONS.md, "Writes
    /// per delivery").
    None,
}

impl ClaimMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "lease" => Some(Self::Lease),
            "read" => Some(Self::Read),
            "none" => Some(Self::None),
            _ => None,
        }
    }
}

/// How long a subscription whose receivers were found slow stays on the slow lane after
/// its last slow answer.
pub const SLOW_HOLD: Duration = Duration::from_secs(600);

/// The template's `maxReceiveCount` by default.
pub const DEFAULT_MAX_RECEIVES: u32 = 50;
/// Receives a delivery may use without an attempt (a lease held by another worker, an
/// interruption) beside its attempts: the room a schedule must leave under the queue's
/// `maxReceiveCount`.
pub const RECEIVES_WITHOUT_ATTEMPT: u32 = 10;

impl DeliverySettings {
    /// The lease for a delivery timeout: the timeout and 30 s to record the outcome.
    pub fn lease_for(timeout: Duration) -> Duration {
        timeout + Duration::from_secs(30)
    }

    /// Whether the queue `arn` names (a record's `eventSourceARN`) is the slow lane's.
    pub fn is_slow_queue(&self, arn: &str) -> bool {
        self.slow_queue
            .as_deref()
            .is_some_and(|name| arn.rsplit(':').next() == Some(name))
    }
}

/// The name of the queue at `url` (`https://sqs.<region>.amazonaws.com/<account>/<name>`),
/// which is also the last part of its ARN (`arn:aws:sqs:<region>:<account>:<name>`).
pub fn queue_name(url: &str) -> Option<String> {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && !name.contains(':'))
        .map(str::to_owned)
}

/// The deployment's defaults (README, "Configuration").
impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            idempotency_key_prefix: String::new(),
            concurrency: 10,
            per_host: 10,
            lease: Self::lease_for(Duration::from_secs(30)),
            timeout: Duration::from_secs(30),
            retention: Duration::from_secs(30 * 86_400),
            auto_disable_after: Duration::from_secs(5 * 86_400),
            max_receives: DEFAULT_MAX_RECEIVES,
            slow_after: None,
            slow_queue: None,
            claim: ClaimMode::Lease,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_lanes_queue_is_known_by_the_name_its_url_and_arn_share() {
        let name = queue_name(
            "https://sqs.us-east-1.amazonaws.com/123456789012/herald-SlowDeliveryQueue-Ab12",
        );
        assert_eq!(name.as_deref(), Some("herald-SlowDeliveryQueue-Ab12"));
        assert_eq!(
            queue_name("http://127.0.0.1:5000/000000000000/q/").as_deref(),
            Some("q")
        );
        assert_eq!(queue_name(""), None);
        let settings = DeliverySettings {
            slow_queue: name,
            ..DeliverySettings::default()
        };
        assert!(
            settings
                .is_slow_queue("arn:aws:sqs:us-east-1:123456789012:herald-SlowDeliveryQueue-Ab12")
        );
        assert!(
            !settings.is_slow_queue("arn:aws:sqs:us-east-1:123456789012:herald-DeliveryQueue-Ab12")
        );
        assert!(!DeliverySettings::default().is_slow_queue("arn:aws:sqs:us-east-1:1:q"));
    }
}
