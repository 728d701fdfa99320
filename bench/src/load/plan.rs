//! The pure parts of the open-loop load: when each publish is due, the ledger a run must
//! balance, and when a rate counts as past what the target keeps up with.

use std::collections::BTreeSet;
use std::time::Duration;

/// Publishes at a fixed rate: publish `n` is due `n / rate` seconds after the start,
/// whatever happened to the ones before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Publishes per second.
    pub rate: f64,
    /// How many publishes the run makes: those due within its duration.
    pub count: u64,
}

impl Schedule {
    pub fn new(rate: f64, duration: Duration) -> Self {
        assert!(rate > 0.0, "a rate above zero");
        // The small margin keeps 0.1 × 30 from flooring to 2.
        let count = (rate * duration.as_secs_f64() + 1e-9).floor() as u64;
        Self { rate, count }
    }

    /// When publish `n` is due, from the start.
    pub fn due(&self, n: u64) -> Duration {
        Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// What became of every publish the API accepted. A run balances when each is counted
/// once: delivered (a 2xx at the receiver), dead-lettered (recorded failed), or missing.
/// An id delivered and dead-lettered both, or one the API never accepted, unbalances it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    pub published: usize,
    pub delivered: usize,
    pub dead_lettered: usize,
    pub missing: usize,
}

impl Ledger {
    pub fn reckon(
        published: &BTreeSet<u64>,
        delivered: &BTreeSet<u64>,
        dead_lettered: &BTreeSet<u64>,
    ) -> Self {
        let missing = published
            .iter()
            .filter(|n| !delivered.contains(n) && !dead_lettered.contains(n))
            .count();
        Self {
            published: published.len(),
            delivered: delivered.len(),
            dead_lettered: dead_lettered.len(),
            missing,
        }
    }

    pub fn balances(&self) -> bool {
        self.published == self.delivered + self.dead_lettered + self.missing
    }

    /// Why the run's figures cannot be taken, if they cannot: the ledger does not balance,
    /// or something published was neither delivered nor dead-lettered in time.
    pub fn void(&self) -> Option<String> {
        if !self.balances() {
            return Some(format!(
                "the ledger does not balance: published {} ≠ delivered {} + dead-lettered {} + missing {}",
                self.published, self.delivered, self.dead_lettered, self.missing
            ));
        }
        (self.missing > 0).then(|| {
            format!(
                "{} published neither delivered nor dead-lettered within the drain",
                self.missing
            )
        })
    }
}

/// When a rate is past what the target keeps up with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Publish-to-receive p99, counted from the scheduled time.
    pub p99: Duration,
    /// How far the achieved publish rate may fall below the scheduled one (0.05: 5%).
    pub shortfall: f64,
}

/// Why a run shows its target saturated, if it does: it was void, its p99 passed the
/// bound, or the API accepted publishes more slowly than they were scheduled.
pub fn saturation(
    bounds: &Bounds,
    scheduled_rate: f64,
    achieved_rate: f64,
    p99: Duration,
    void: Option<&str>,
) -> Option<String> {
    if let Some(why) = void {
        return Some(format!("void ({why})"));
    }
    if p99 > bounds.p99 {
        return Some(format!(
            "p99 {} ms > {} ms",
            p99.as_millis(),
            bounds.p99.as_millis()
        ));
    }
    let floor = scheduled_rate * (1.0 - bounds.shortfall);
    (achieved_rate < floor).then(|| {
        format!(
            "published {achieved_rate:.1}/s < {floor:.1}/s ({:.0}% under the schedule)",
            (1.0 - achieved_rate / scheduled_rate) * 100.0
        )
    })
}

/// `"50,100,200"` as rates; the bad entry named when one is not a positive number.
pub fn parse_rates(raw: &str) -> Result<Vec<f64>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<f64>() {
            Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
            _ => Err(format!("`{s}` is not a rate (publishes per second)")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ns: &[u64]) -> BTreeSet<u64> {
        ns.iter().copied().collect()
    }

    #[test]
    fn publishes_are_due_at_fixed_intervals_from_the_start() {
        let schedule = Schedule::new(200.0, Duration::from_secs(3));
        assert_eq!(schedule.count, 600);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_millis(5));
        assert_eq!(schedule.due(599), Duration::from_millis(2995));
        assert_eq!(Schedule::new(0.1, Duration::from_secs(30)).count, 3);
        assert_eq!(Schedule::new(7.0, Duration::from_millis(500)).count, 3);
    }

    #[test]
    fn a_ledger_balances_when_every_publish_is_counted_once() {
        let ledger = Ledger::reckon(&set(&[0, 1, 2, 3]), &set(&[0, 1, 3]), &set(&[2]));
        assert_eq!(
            ledger,
            Ledger {
                published: 4,
                delivered: 3,
                dead_lettered: 1,
                missing: 0
            }
        );
        assert!(ledger.balances());
        assert_eq!(ledger.void(), None);
    }

    #[test]
    fn a_missing_publish_voids_the_run_though_it_balances() {
        let ledger = Ledger::reckon(&set(&[0, 1, 2]), &set(&[0]), &set(&[1]));
        assert_eq!(ledger.missing, 1);
        assert!(ledger.balances());
        assert!(ledger.void().unwrap().contains("1 published neither"));
    }

    #[test]
    fn a_delivery_never_published_or_also_dead_lettered_unbalances_it() {
        // 9 arrived although the API never accepted it (its answer was lost).
        let stray = Ledger::reckon(&set(&[0, 1]), &set(&[0, 1, 9]), &set(&[]));
        assert!(!stray.balances());
        assert!(stray.void().unwrap().contains("does not balance"));
        // 1 was both delivered and recorded failed.
        let twice = Ledger::reckon(&set(&[0, 1]), &set(&[0, 1]), &set(&[1]));
        assert!(!twice.balances());
    }

    #[test]
    fn saturation_is_a_void_run_a_long_p99_or_a_publish_rate_behind_schedule() {
        let bounds = Bounds {
            p99: Duration::from_secs(5),
            shortfall: 0.05,
        };
        let p99 = Duration::from_secs(1);
        assert_eq!(saturation(&bounds, 100.0, 96.0, p99, None), None);
        assert!(
            saturation(&bounds, 100.0, 94.0, p99, None)
                .unwrap()
                .contains("6% under")
        );
        assert!(
            saturation(&bounds, 100.0, 100.0, Duration::from_secs(6), None)
                .unwrap()
                .contains("p99 6000 ms")
        );
        assert!(
            saturation(&bounds, 100.0, 100.0, p99, Some("3 missing"))
                .unwrap()
                .starts_with("void")
        );
    }

    #[test]
    fn the_percentiles_reach_the_tail_of_a_thousand() {
        let sorted: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        let at = |p| crate::percentile(&sorted, p).as_millis();
        assert_eq!((at(50.0), at(99.0), at(99.9)), (501, 990, 999));
    }

    #[test]
    fn rates_are_read_from_a_list() {
        assert_eq!(parse_rates("50, 100,200,"), Ok(vec![50.0, 100.0, 200.0]));
        assert!(parse_rates("50,fast").unwrap_err().contains("`fast`"));
        assert!(parse_rates("0").is_err());
    }
}
