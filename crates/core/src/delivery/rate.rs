//! A subscription's rate limit, honoured across every deliver container: each one-second
//! window (UTC whole seconds) hands out numbered tickets from one counter in the store,
//! and the first `per_second` of a window go. A later ticket waits, hidden on the queue
//! (not an attempt, not a failure), for a later window, where it takes a ticket again: so
//! a burst leaves at the limit's pace, roughly in ticket order.
//!
//! The waiting are booked half again over each later window's capacity (`cohort`): a
//! message comes back a little after its delay (the batch's other records, the poll), and
//! a window whose booked messages all came back late would go unfilled while they fill
//! the next. The few over each window take a ticket again.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The highest limit a subscription may set.
pub const MAX_PER_SECOND: u32 = 1000;

/// At most this many POSTs a second to one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RateLimit(u32);

impl RateLimit {
    pub fn new(per_second: u32) -> Result<Self, String> {
        if (1..=MAX_PER_SECOND).contains(&per_second) {
            Ok(Self(per_second))
        } else {
            Err(format!(
                "a whole number of deliveries a second from 1 to {MAX_PER_SECOND}"
            ))
        }
    }

    pub fn per_second(self) -> u32 {
        self.0
    }

    /// How many waiting tickets are booked for each later window: the capacity and half
    /// again.
    fn cohort(self) -> u64 {
        (u64::from(self.0) * 3).div_ceil(2)
    }

    /// What ticket `ticket` (1 for the window's first) of a window means: `None` to go
    /// now, or how long to wait for the later window it is booked for.
    pub fn wait_for(self, ticket: u64) -> Option<Duration> {
        let per_second = u64::from(self.0);
        let over = ticket.checked_sub(per_second).filter(|over| *over > 0)?;
        Some(Duration::from_secs(over.div_ceil(self.cohort())))
    }
}

impl TryFrom<u32> for RateLimit {
    type Error = String;
    fn try_from(per_second: u32) -> Result<Self, String> {
        Self::new(per_second)
    }
}

impl From<RateLimit> for u32 {
    fn from(limit: RateLimit) -> u32 {
        limit.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tickets_of_a_window_go_and_the_rest_wait_for_theirs() {
        // Five a second; the waiting booked eight (5 × 1.5, rounded up) to a window.
        let limit = RateLimit::new(5).unwrap();
        for ticket in 1..=5 {
            assert_eq!(limit.wait_for(ticket), None, "{ticket}");
        }
        for (ticket, seconds) in [(6, 1), (13, 1), (14, 2), (21, 2), (22, 3), (805, 100)] {
            assert_eq!(
                limit.wait_for(ticket),
                Some(Duration::from_secs(seconds)),
                "{ticket}"
            );
        }
        let one = RateLimit::new(1).unwrap();
        assert_eq!(one.wait_for(1), None);
        // One a second books two to each later window.
        assert_eq!(one.wait_for(3), Some(Duration::from_secs(1)));
        assert_eq!(one.wait_for(4), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_limit_is_a_whole_number_from_one_to_the_most() {
        assert!(RateLimit::new(0).is_err());
        assert!(RateLimit::new(MAX_PER_SECOND + 1).is_err());
        assert_eq!(
            serde_json::to_string(&RateLimit::new(7).unwrap()).unwrap(),
            "7"
        );
        assert!(serde_json::from_str::<RateLimit>("0").is_err());
        assert_eq!(
            serde_json::from_str::<RateLimit>("12")
                .unwrap()
                .per_second(),
            12
        );
    }
}
