//! Where a run's CPU went: this process's (the generator, the receiver and, for both
//! targets, Herald's own code) and the whole machine's, in cores, so a figure says which
//! of them ran out. moto's Python process is the machine's busy time less this process's
//! (and anything else running at the time).

use std::time::{Duration, Instant};

/// CPU counters at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    process: Duration,
    /// The machine's busy and total time, in clock ticks across every core.
    machine_busy: u64,
    machine_total: u64,
}

/// Cores busy on average between two samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cores {
    pub process: f64,
    pub machine: f64,
    /// How many cores the machine has.
    pub available: usize,
}

fn process_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The `cpu` line of /proc/stat: (busy, total) ticks; idle and iowait are not busy.
fn machine_ticks(stat: &str) -> (u64, u64) {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user)
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle.min(total), total)
}

impl Sample {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let (machine_busy, machine_total) = machine_ticks(&stat);
        Self {
            at: Instant::now(),
            process: process_cpu(),
            machine_busy,
            machine_total,
        }
    }

    pub fn cores_since(&self, earlier: &Sample) -> Cores {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let total = self.machine_total.saturating_sub(earlier.machine_total) as f64;
        let busy = self.machine_busy.saturating_sub(earlier.machine_busy) as f64;
        Cores {
            process: self.process.saturating_sub(earlier.process).as_secs_f64()
                / wall.max(f64::EPSILON),
            machine: if total > 0.0 {
                busy / total * available as f64
            } else {
                0.0
            },
            available,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(machine_ticks(stat), (160, 1000));
        assert_eq!(machine_ticks("nothing"), (0, 0));
    }
}
