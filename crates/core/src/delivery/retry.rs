//! The retry schedule as pure functions: given how many attempts were made, when the first
//! was, the time now, an optional `Retry-After` and a jitter draw, decide when to try again
//! or that the window is spent.

use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

/// The longest delay: SQS hides a message at most 12 hours counted from when it was
/// received, not from the change, and a Lambda may run 15 minutes before asking, so
/// 11 h 45 min is the most a retry can be put off by. The delay recorded
/// (`next_attempt_at`) is the one the queue keeps.
pub const MAX_DELAY: Duration = Duration::from_secs(12 * 60 * 60 - 15 * 60);
/// The longest retry window. A retry hides the same message again, and SQS deletes a
/// message 14 days after it was sent (its longest retention, the template's), whatever
/// its schedule: a window past that would lose the delivery with no dead letter. A day
/// is kept for a first attempt that waited in a backlog.
pub const MAX_WINDOW: Duration = Duration::from_secs(13 * 24 * 60 * 60);
/// Share of each delay that jitter may add or remove.
pub const JITTER: f64 = 0.10;

#[derive(Clone, Debug, PartialEq)]
pub enum Delays {
    /// `initial`, then doubling: 1, 2, 4, 8 … minutes by default.
    Exponential { initial: Duration },
    /// An explicit list; the last attempt is the one after the last delay.
    Explicit(Vec<Duration>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub delays: Delays,
    /// No attempt is scheduled later than this after the first attempt.
    pub window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            delays: Delays::Exponential {
                initial: Duration::from_secs(60),
            },
            window: Duration::from_secs(3 * 24 * 60 * 60),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RetryDecision {
    RetryAfter(Duration),
    GiveUp,
}

#[derive(Debug, Error, PartialEq)]
#[error("{0}")]
pub struct ScheduleError(String);

/// Parses a duration as `humantime` reads them (`90s`, `5m`, `2h`, `3d`, `1h 30m`), and
/// a bare number as seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, ScheduleError> {
    let raw = raw.trim();
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| e.to_string())
    } else {
        humantime::parse_duration(raw).map_err(|e| e.to_string())
    };
    let duration = parsed.map_err(|reason| {
        ScheduleError(format!(
            "`{raw}` is not a duration like 30s, 5m, 2h or 3d ({reason})"
        ))
    })?;
    // Anything past a century is a mistake.
    if duration > Duration::from_secs(100 * 365 * 86_400) {
        return Err(ScheduleError(format!(
            "`{raw}` is longer than any schedule needs"
        )));
    }
    Ok(duration)
}

/// A subscription's own retry policy, as its owner wrote it (kept as text, so the stored
/// form is what the API shows); checked when it is set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// As `HERALD_RETRY_SCHEDULE`: `exponential`, `exponential:<first>`, or `5s,5m,30m`.
    pub schedule: String,
    /// As `HERALD_RETRY_WINDOW`: no attempt later than this after the first.
    pub window: String,
}

/// The longest a subscription's schedule or window may be written.
const MAX_SPEC_LEN: usize = 512;

impl RetrySpec {
    /// The policy, or why it is refused: unparsable, or more attempts than
    /// `max_attempts` (what the deployment's queue can hand a message out for).
    pub fn check(&self, max_attempts: Option<u32>) -> Result<RetryPolicy, ScheduleError> {
        if self.schedule.len() > MAX_SPEC_LEN || self.window.len() > MAX_SPEC_LEN {
            return Err(ScheduleError(format!(
                "a schedule or window is at most {MAX_SPEC_LEN} characters"
            )));
        }
        let policy = RetryPolicy::parse(&self.schedule, &self.window)?;
        if let Some(max) = max_attempts
            && policy.max_attempts() > max
        {
            return Err(ScheduleError(format!(
                "allows {} attempts; this deployment delivers at most {max} (shorten the \
                 schedule or the window)",
                policy.max_attempts()
            )));
        }
        Ok(policy)
    }
}

impl RetryPolicy {
    /// `exponential` or `exponential:<initial>` for doubling delays, or a comma-separated
    /// list such as `5s,5m,30m,2h`; `window` bounds the whole schedule.
    pub fn parse(schedule: &str, window: &str) -> Result<Self, ScheduleError> {
        let schedule = schedule.trim();
        let delays = if schedule == "exponential" {
            Delays::Exponential {
                initial: Duration::from_secs(60),
            }
        } else if let Some(initial) = schedule.strip_prefix("exponential:") {
            Delays::Exponential {
                initial: parse_duration(initial)?,
            }
        } else {
            let list = schedule
                .split(',')
                .map(parse_duration)
                .collect::<Result<Vec<_>, _>>()?;
            if list.is_empty() {
                return Err(ScheduleError("the schedule lists no delay".into()));
            }
            if list.iter().any(|delay| *delay > MAX_DELAY) {
                return Err(ScheduleError(
                    "a retry delay is at most 11h45m (SQS hides a message at most 12 hours)".into(),
                ));
            }
            Delays::Explicit(list)
        };
        let zero = match &delays {
            Delays::Exponential { initial } => initial.is_zero(),
            Delays::Explicit(list) => list.iter().any(Duration::is_zero),
        };
        if zero {
            return Err(ScheduleError(
                "a retry delay must be at least one second".into(),
            ));
        }
        let window = parse_duration(window)?;
        if window.is_zero() {
            return Err(ScheduleError(
                "the retry window must be at least one second".into(),
            ));
        }
        if window > MAX_WINDOW {
            return Err(ScheduleError(
                "the retry window is at most 13d (SQS deletes a message 14 days after it was sent)"
                    .into(),
            ));
        }
        Ok(Self { delays, window })
    }

    /// The delay before attempt `attempts_made + 1`, before jitter and capping, or None
    /// when an explicit list is exhausted.
    pub fn base_delay(&self, attempts_made: u32) -> Option<Duration> {
        let index = attempts_made.checked_sub(1)?;
        match &self.delays {
            Delays::Exponential { initial } => {
                let factor = 2u32.checked_pow(index.min(31)).unwrap_or(u32::MAX);
                Some(initial.saturating_mul(factor).min(MAX_DELAY))
            }
            Delays::Explicit(list) => list.get(index as usize).copied().map(|d| d.min(MAX_DELAY)),
        }
    }

    /// How many attempts the schedule allows at most, counting the first; the queue's
    /// `maxReceiveCount` must stay above it.
    pub fn max_attempts(&self) -> u32 {
        let mut attempts = 1u32;
        let mut elapsed = Duration::ZERO;
        while let Some(delay) = self.base_delay(attempts) {
            elapsed += delay.mul_f64(1.0 - JITTER);
            if elapsed > self.window || attempts > 10_000 {
                break;
            }
            attempts += 1;
        }
        attempts
    }

    /// `jitter_unit` is a draw from [-1, 1]; `retry_after` is the receiver's own request,
    /// a floor under the schedule's delay.
    pub fn decide(
        &self,
        attempts_made: u32,
        first_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        jitter_unit: f64,
    ) -> RetryDecision {
        let Some(base) = self.base_delay(attempts_made) else {
            return RetryDecision::GiveUp;
        };
        let jitter = 1.0 + JITTER * jitter_unit.clamp(-1.0, 1.0);
        let scheduled = base.mul_f64(jitter).max(Duration::from_secs(1));
        // The receiver's `Retry-After` may ask for more time, never less: a receiver
        // answering `Retry-After: 1` must not run the schedule (and its window) down.
        let delay = retry_after
            .map_or(scheduled, |asked| asked.max(scheduled))
            .clamp(Duration::from_secs(1), MAX_DELAY);
        let deadline = first_attempt_at
            + chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        let next = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        if next > deadline {
            RetryDecision::GiveUp
        } else {
            RetryDecision::RetryAfter(delay)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn default_doubles_from_one_minute_and_caps_at_twelve_hours() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=12).map(|n| policy.base_delay(n).unwrap()).collect();
        assert_eq!(
            &delays[..5],
            &[minutes(1), minutes(2), minutes(4), minutes(8), minutes(16)]
        );
        assert_eq!(delays[9], minutes(512));
        assert_eq!(delays[10], MAX_DELAY);
        assert_eq!(policy.base_delay(60), Some(MAX_DELAY));
        assert_eq!(policy.base_delay(0), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        for unit in [-1.0, -0.5, 0.0, 0.7, 1.0, 5.0] {
            let RetryDecision::RetryAfter(d) = policy.decide(3, now, now, None, unit) else {
                panic!()
            };
            assert!(
                d >= minutes(4).mul_f64(0.9) && d <= minutes(4).mul_f64(1.1),
                "{d:?}"
            );
        }
    }

    #[test]
    fn gives_up_after_three_days() {
        let policy = RetryPolicy::default();
        let first = Utc::now();
        let late = first + chrono::Duration::hours(70);
        assert_eq!(
            policy.decide(14, first, late, None, 0.0),
            RetryDecision::GiveUp
        );
        let early = first + chrono::Duration::hours(50);
        assert_eq!(
            policy.decide(14, first, early, None, 0.0),
            RetryDecision::RetryAfter(MAX_DELAY)
        );
        assert!(
            policy.max_attempts() > 10 && policy.max_attempts() < 20,
            "{}",
            policy.max_attempts()
        );
    }

    #[test]
    fn retry_after_is_a_floor_under_the_schedule_and_clamped() {
        let policy = RetryPolicy::default();
        let now = Utc::now();
        assert_eq!(
            policy.decide(1, now, now, Some(Duration::from_secs(300)), 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(300))
        );
        assert_eq!(
            policy.decide(1, now, now, Some(Duration::from_secs(999_999)), 0.0),
            RetryDecision::RetryAfter(MAX_DELAY)
        );
        // Shorter than the schedule's minute: the schedule's.
        assert_eq!(
            policy.decide(1, now, now, Some(Duration::ZERO), 0.0),
            RetryDecision::RetryAfter(minutes(1))
        );
        assert_eq!(
            policy.decide(3, now, now, Some(Duration::from_secs(1)), 0.0),
            RetryDecision::RetryAfter(minutes(4))
        );
    }

    #[test]
    fn a_receiver_asking_for_a_second_each_time_cannot_spend_the_window_early() {
        // The schedule of the report: with `Retry-After: 1` heeded as given, the
        // delivery failed four seconds after its first attempt instead of about 75.
        let policy = RetryPolicy::parse("5s,10s,20s,40s", "2m").unwrap();
        let first = Utc::now();
        let mut now = first;
        let mut number = 1;
        while let RetryDecision::RetryAfter(delay) =
            policy.decide(number, first, now, Some(Duration::from_secs(1)), 0.0)
        {
            now += chrono::Duration::from_std(delay).unwrap();
            number += 1;
        }
        assert_eq!(number, 5, "every attempt of the schedule is made");
        assert_eq!((now - first).num_seconds(), 75);
    }

    #[test]
    fn explicit_lists_end_when_exhausted() {
        let policy = RetryPolicy::parse("5s,5m,30m,2h,5h,10h,10h", "3d").unwrap();
        let now = Utc::now();
        assert_eq!(policy.base_delay(1), Some(Duration::from_secs(5)));
        assert_eq!(policy.base_delay(7), Some(Duration::from_secs(36_000)));
        assert_eq!(policy.decide(8, now, now, None, 0.0), RetryDecision::GiveUp);
        assert_eq!(policy.max_attempts(), 8);
    }

    /// A window or a delay SQS cannot keep is refused when it is written, rather than the
    /// delivery vanishing when SQS deletes its message or retrying sooner than recorded.
    #[test]
    fn a_schedule_is_only_what_the_queue_can_keep() {
        assert!(RetryPolicy::parse("exponential", "13d").is_ok());
        let err = RetryPolicy::parse("exponential", "13d 1s").unwrap_err();
        assert!(err.0.contains("at most 13d"), "{err}");
        let twelve_hourly = vec!["11h"; 39].join(",");
        let err = RetryPolicy::parse(&twelve_hourly, "20d").unwrap_err();
        assert!(err.0.contains("window is at most 13d"), "{err}");
        let err = RetryPolicy::parse("5m,1d", "3d").unwrap_err();
        assert!(err.0.contains("at most 11h45m"), "{err}");
        assert!(RetryPolicy::parse("5m,11h45m", "3d").is_ok());
        // A receiver's `Retry-After` past the cap is held to what the queue keeps, and
        // that is the delay decided (and recorded).
        let policy = RetryPolicy::default();
        let now = Utc::now();
        assert_eq!(
            policy.decide(1, now, now, Some(Duration::from_secs(43_200)), 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(42_300))
        );
    }

    #[test]
    fn schedules_parse_or_say_why_not() {
        assert_eq!(
            RetryPolicy::parse("exponential", "3d").unwrap(),
            RetryPolicy::default()
        );
        assert!(RetryPolicy::parse("exponential:2s", "20s").is_ok());
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("99999999999999999m").is_err(), "no overflow");
        assert!(parse_duration("101y").is_err(), "no more than a century");
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("3d").unwrap(),
            Duration::from_secs(3 * 86_400)
        );
        assert!(parse_duration("5 parsecs").is_err());
        for (schedule, window) in [
            ("5x", "1d"),
            ("", "1d"),
            ("0s", "1d"),
            ("1s", "0"),
            ("1s,,2s", "1d"),
        ] {
            assert!(
                RetryPolicy::parse(schedule, window).is_err(),
                "{schedule} {window}"
            );
        }
    }
}
