//! What follows an attempt: delivered, the endpoint gone, another attempt later, or the
//! retry window spent. A pure function of the attempt and the policy.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::DeliveryState;
use super::retry::{MAX_WINDOW, RetryDecision, RetryPolicy};
use crate::ports::SendOutcome;

/// What an attempt's outcome means for its delivery.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// A 2xx: done.
    Delivered,
    /// `410 Gone`: the delivery failed and its subscription is to be disabled.
    Gone,
    /// Another attempt after this delay.
    RetryIn(Duration),
    /// No attempt is left in the window: failed, and its task owed to the dead letters.
    GiveUp,
}

/// The verdict and what the delivery's record says of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub state: DeliveryState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

/// The reason recorded, and kept on the dead letter, when the message's receives run out
/// before the schedule does.
pub fn receive_limit_reached(max_receives: u32) -> String {
    format!(
        "the delivery queue's receive limit ({max_receives}) is reached; failed before SQS \
         moves the message to the dead-letter queue by itself"
    )
}

/// `decision` for a message SQS has handed out `receive_count` times of the queue's
/// `max_receives` (`maxReceiveCount`): a retry from the last receive it will hand out is
/// given up here, recorded failed with its dead letter owed, instead of left pending
/// while SQS moves its message to the dead-letter queue unseen.
pub fn within_receive_limit(decision: Decision, receive_count: u32, max_receives: u32) -> Decision {
    match decision.verdict {
        Verdict::RetryIn(_) if receive_count >= max_receives => Decision {
            verdict: Verdict::GiveUp,
            state: DeliveryState::Failed,
            next_attempt_at: None,
            reason: Some(receive_limit_reached(max_receives)),
        },
        _ => decision,
    }
}

/// The reason recorded, and kept on the dead letter, when the queue would delete the
/// message before its next attempt.
pub const MESSAGE_LIFE_SPENT: &str = "no attempt is left before the queue deletes the message \
     (14 days after it was sent; it waited long before its first attempt)";

/// `decision`, given up when its retry would come later than [`MAX_WINDOW`] after its
/// message was sent (`sent_at`): SQS deletes a message 14 days after it was sent,
/// whatever its visibility, with no dead letter. A task that waited long before its
/// first attempt (behind an ordered line's failing deliveries) can reach that within its
/// own window; it is failed and dead-lettered instead, the last day kept for the tasks
/// still behind it to be tried.
pub fn within_message_life(
    decision: Decision,
    sent_at: Option<DateTime<Utc>>,
    finished_at: DateTime<Utc>,
) -> Decision {
    let last =
        sent_at.map(|sent| sent + chrono::Duration::from_std(MAX_WINDOW).unwrap_or_default());
    match (&decision.verdict, last) {
        (Verdict::RetryIn(delay), Some(last))
            if finished_at + chrono::Duration::from_std(*delay).unwrap_or_default() > last =>
        {
            Decision {
                verdict: Verdict::GiveUp,
                state: DeliveryState::Failed,
                next_attempt_at: None,
                reason: Some(MESSAGE_LIFE_SPENT.to_owned()),
            }
        }
        _ => decision,
    }
}

/// Why a delivery gone is failed.
pub const GONE_REASON: &str = "the endpoint answered 410 Gone";

/// The reason recorded, and kept on the dead letter, when the retry window is spent.
pub fn window_spent(attempts: u32) -> String {
    format!("no success after {attempts} attempts; the retry window is spent")
}

/// The decision on attempt `number`, which ended at `finished_at` with `outcome`.
/// `jitter` is a draw from [-1, 1]. `Retry-After` is heeded on 429 and 503 only.
pub fn decide(
    outcome: &SendOutcome,
    number: u32,
    first_attempt_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    policy: &RetryPolicy,
    jitter: f64,
) -> Decision {
    let status = match outcome {
        SendOutcome::Answered { status, .. } => Some(*status),
        SendOutcome::Failed { .. } => None,
    };
    match status {
        Some(200..=299) => Decision {
            verdict: Verdict::Delivered,
            state: DeliveryState::Delivered,
            next_attempt_at: None,
            reason: None,
        },
        Some(410) => Decision {
            verdict: Verdict::Gone,
            state: DeliveryState::Failed,
            next_attempt_at: None,
            reason: Some(GONE_REASON.to_owned()),
        },
        _ => {
            let retry_after = match outcome {
                SendOutcome::Answered {
                    status: 429 | 503,
                    retry_after,
                    ..
                } => *retry_after,
                _ => None,
            };
            match policy.decide(number, first_attempt_at, finished_at, retry_after, jitter) {
                RetryDecision::RetryAfter(delay) => Decision {
                    verdict: Verdict::RetryIn(delay),
                    state: DeliveryState::Pending,
                    next_attempt_at: Some(
                        finished_at
                            + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX),
                    ),
                    reason: None,
                },
                RetryDecision::GiveUp => Decision {
                    verdict: Verdict::GiveUp,
                    state: DeliveryState::Failed,
                    next_attempt_at: None,
                    reason: Some(window_spent(number)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_retry_past_the_messages_life_is_given_up_with_its_reason() {
        let now = Utc::now();
        let retry = Decision {
            verdict: Verdict::RetryIn(Duration::from_secs(3600)),
            state: DeliveryState::Pending,
            next_attempt_at: Some(now + chrono::Duration::hours(1)),
            reason: None,
        };
        // Sent 12 days ago: the retry in an hour comes well before day 13.
        let young = now - chrono::Duration::days(12);
        assert_eq!(within_message_life(retry.clone(), Some(young), now), retry);
        // Sent 13 days less half an hour ago: an hour on is past day 13.
        let old = now - chrono::Duration::days(13) + chrono::Duration::minutes(30);
        let given_up = within_message_life(retry.clone(), Some(old), now);
        assert_eq!(given_up.verdict, Verdict::GiveUp);
        assert_eq!(given_up.state, DeliveryState::Failed);
        assert_eq!(given_up.next_attempt_at, None);
        assert_eq!(given_up.reason.as_deref(), Some(MESSAGE_LIFE_SPENT));
        // Not known (no SentTimestamp): as decided.
        assert_eq!(
            within_message_life(retry, None, now).verdict,
            Verdict::RetryIn(Duration::from_secs(3600))
        );
        let delivered = Decision {
            verdict: Verdict::Delivered,
            state: DeliveryState::Delivered,
            next_attempt_at: None,
            reason: None,
        };
        assert_eq!(
            within_message_life(
                delivered.clone(),
                Some(old - chrono::Duration::days(5)),
                now
            ),
            delivered
        );
    }

    #[test]
    fn a_retry_from_the_last_receive_is_given_up_with_its_reason() {
        let retry = Decision {
            verdict: Verdict::RetryIn(Duration::from_secs(60)),
            state: DeliveryState::Pending,
            next_attempt_at: Some(Utc::now()),
            reason: None,
        };
        assert_eq!(within_receive_limit(retry.clone(), 49, 50), retry);
        let given_up = within_receive_limit(retry, 50, 50);
        assert_eq!(given_up.verdict, Verdict::GiveUp);
        assert_eq!(given_up.state, DeliveryState::Failed);
        assert_eq!(given_up.next_attempt_at, None);
        assert!(given_up.reason.unwrap().contains("receive limit (50)"));
        let delivered = Decision {
            verdict: Verdict::Delivered,
            state: DeliveryState::Delivered,
            next_attempt_at: None,
            reason: None,
        };
        assert_eq!(within_receive_limit(delivered.clone(), 50, 50), delivered);
    }

    use super::*;
    use crate::delivery::AttemptError;
    use chrono::TimeZone;

    fn answered(status: u16, retry_after: Option<u64>) -> SendOutcome {
        SendOutcome::Answered {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            excerpt: String::new(),
            latency: Duration::from_millis(5),
        }
    }

    fn failed(error: AttemptError) -> SendOutcome {
        SendOutcome::Failed {
            error,
            detail: String::new(),
            latency: Duration::from_millis(5),
        }
    }

    #[test]
    fn each_outcome_decides_its_delivery() {
        let policy = RetryPolicy::parse("5s,10s,20s", "1m").unwrap();
        let first = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let at = |seconds| first + chrono::Duration::seconds(seconds);
        let secs = Duration::from_secs;
        // (outcome, attempt number, finished this long after the first, verdict, state)
        let table = [
            (
                answered(200, None),
                1,
                0,
                Verdict::Delivered,
                DeliveryState::Delivered,
            ),
            (
                answered(204, None),
                3,
                40,
                Verdict::Delivered,
                DeliveryState::Delivered,
            ),
            (
                answered(410, None),
                1,
                0,
                Verdict::Gone,
                DeliveryState::Failed,
            ),
            (
                answered(500, None),
                1,
                0,
                Verdict::RetryIn(secs(5)),
                DeliveryState::Pending,
            ),
            (
                answered(404, None),
                2,
                5,
                Verdict::RetryIn(secs(10)),
                DeliveryState::Pending,
            ),
            (
                answered(302, None),
                1,
                0,
                Verdict::RetryIn(secs(5)),
                DeliveryState::Pending,
            ),
            // Retry-After is heeded on 429 and 503, not on other answers.
            (
                answered(429, Some(30)),
                1,
                0,
                Verdict::RetryIn(secs(30)),
                DeliveryState::Pending,
            ),
            // A floor: a shorter Retry-After than the schedule's delay leaves the schedule's.
            (
                answered(503, Some(7)),
                2,
                5,
                Verdict::RetryIn(secs(10)),
                DeliveryState::Pending,
            ),
            (
                answered(429, Some(1)),
                3,
                15,
                Verdict::RetryIn(secs(20)),
                DeliveryState::Pending,
            ),
            (
                answered(500, Some(30)),
                1,
                0,
                Verdict::RetryIn(secs(5)),
                DeliveryState::Pending,
            ),
            (
                failed(AttemptError::Timeout),
                1,
                0,
                Verdict::RetryIn(secs(5)),
                DeliveryState::Pending,
            ),
            (
                failed(AttemptError::Connect),
                3,
                15,
                Verdict::RetryIn(secs(20)),
                DeliveryState::Pending,
            ),
            // The schedule is spent, and so is the window.
            (
                answered(500, None),
                4,
                35,
                Verdict::GiveUp,
                DeliveryState::Failed,
            ),
            (
                answered(500, None),
                2,
                58,
                Verdict::GiveUp,
                DeliveryState::Failed,
            ),
        ];
        for (i, (outcome, number, after, verdict, state)) in table.into_iter().enumerate() {
            let decision = decide(&outcome, number, first, at(after), &policy, 0.0);
            assert_eq!(decision.verdict, verdict, "row {i}");
            assert_eq!(decision.state, state, "row {i}");
            match decision.verdict {
                Verdict::RetryIn(delay) => assert_eq!(
                    decision.next_attempt_at,
                    Some(at(after) + chrono::Duration::from_std(delay).unwrap()),
                    "row {i}"
                ),
                _ => assert_eq!(decision.next_attempt_at, None, "row {i}"),
            }
        }
    }

    #[test]
    fn the_reasons_say_why_a_delivery_failed() {
        let policy = RetryPolicy::parse("5s", "1m").unwrap();
        let now = Utc::now();
        let gone = decide(&answered(410, None), 1, now, now, &policy, 0.0);
        assert_eq!(gone.reason.as_deref(), Some(GONE_REASON));
        let spent = decide(&answered(500, None), 2, now, now, &policy, 0.0);
        assert_eq!(spent.verdict, Verdict::GiveUp);
        assert_eq!(
            spent.reason.as_deref(),
            Some("no success after 2 attempts; the retry window is spent")
        );
        let delivered = decide(&answered(200, None), 1, now, now, &policy, 0.0);
        assert_eq!(delivered.reason, None);
    }
}
