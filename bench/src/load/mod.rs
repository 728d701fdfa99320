//! `make load`: open-loop load. Publish `n` is due `n / rate` seconds after the start and
//! is sent then, on its own task, whether or not the ones before it were answered or
//! delivered; a delivery's latency runs from when its publish was due, so a target that
//! falls behind shows it. Every event's delivery is matched at the receiver by its
//! `webhook-id` (duplicates counted apart), and each run ends with a ledger that must
//! balance: published = delivered + dead-lettered + missing, with nothing missing, or the
//! run is void.
//!
//! Two targets, each with a receiver failing a few percent of requests:
//! - `moto`: the local runner on moto (`moto.rs`): moto's ceiling;
//! - `memory`: Herald's handlers with in-memory stores (`memory.rs`): Herald's own.
//!
//! A list of rates runs each in turn until the first at which the target saturates (a
//! p99 past the bound, publishes accepted more than 5% behind the schedule, or a void
//! run). Prints a table and writes `target/load.json`.

mod cpu;
mod memory;
mod moto;
mod plan;
mod receiver;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use plan::{Bounds, Ledger, Schedule};
use receiver::Receiver;

/// What a load run is asked to do (the Makefile's variables, passed as `HERALD_LOAD_*`).
pub struct Settings {
    pub moto_rates: Vec<f64>,
    pub memory_rates: Vec<f64>,
    pub duration: Duration,
    /// The most a run waits, after its last publish is answered, for every delivery.
    pub drain: Duration,
    pub fail_percent: f64,
    pub retry_schedule: String,
    pub retry_window: String,
    /// Batches in flight at once (concurrent deliver instances) on each target.
    pub moto_pollers: usize,
    pub memory_pollers: usize,
    pub bounds: Bounds,
}

/// Rates each target is taken through when no rate is given: around each one's ceiling
/// on a two-core machine.
const MOTO_LADDER: &str = "10,20,30,40,60";
const MEMORY_LADDER: &str = "1000,2000,4000,6000,8000,10000,12000";

fn env(name: &str) -> Option<String> {
    std::env::var(format!("HERALD_LOAD_{name}"))
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn number(name: &str, default: f64) -> Result<f64, String> {
    match env(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{name}={raw} is not a number")),
    }
}

impl Settings {
    fn from_env() -> Result<Self, String> {
        // RATES, else RATE, for both targets; MOTO_RATES and MEMORY_RATES for one; a
        // ladder for each when nothing is given.
        let both = match (env("RATES"), env("RATE")) {
            (Some(rates), _) | (None, Some(rates)) => Some(plan::parse_rates(&rates)?),
            (None, None) => None,
        };
        let rates = |name: &str, ladder: &str| -> Result<Vec<f64>, String> {
            match (env(name), &both) {
                (Some(raw), _) => plan::parse_rates(&raw),
                (None, Some(both)) => Ok(both.clone()),
                (None, None) => plan::parse_rates(ladder),
            }
        };
        let targets = env("TARGETS").unwrap_or_else(|| "moto,memory".into());
        let wanted = |t: &str| targets.split(',').any(|s| s.trim() == t);
        if let Some(unknown) = targets
            .split(',')
            .map(str::trim)
            .find(|t| !["moto", "memory"].contains(t))
        {
            return Err(format!(
                "TARGETS: no target `{unknown}`; they are moto and memory"
            ));
        }
        let duration = number("DURATION", 15.0)?;
        if duration <= 0.0 {
            return Err("DURATION must be above zero".into());
        }
        Ok(Self {
            moto_rates: if wanted("moto") {
                rates("MOTO_RATES", MOTO_LADDER)?
            } else {
                Vec::new()
            },
            memory_rates: if wanted("memory") {
                rates("MEMORY_RATES", MEMORY_LADDER)?
            } else {
                Vec::new()
            },
            duration: Duration::from_secs_f64(duration),
            drain: Duration::from_secs_f64(number("DRAIN", 120.0)?),
            fail_percent: number("FAIL_PERCENT", 3.0)?,
            // Two attempts a second apart: a failure is retried within the drain, and
            // the few that fail twice are dead-lettered, so the ledger's every column
            // is exercised.
            retry_schedule: env("RETRY_SCHEDULE").unwrap_or_else(|| "1s".into()),
            retry_window: env("RETRY_WINDOW").unwrap_or_else(|| "1m".into()),
            moto_pollers: number("MOTO_POLLERS", 4.0)? as usize,
            memory_pollers: number("MEMORY_POLLERS", 16.0)? as usize,
            bounds: Bounds {
                p99: Duration::from_secs_f64(number("P99_MS", 5000.0)? / 1e3),
                shortfall: 0.05,
            },
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Moto,
    Memory,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Moto => "moto",
            Kind::Memory => "memory",
        }
    }

    fn ceiling(self) -> &'static str {
        match self {
            Kind::Moto => {
                "the local runner on moto: moto's ceiling (one Python process serving DynamoDB and SQS), not Herald's or AWS's"
            }
            Kind::Memory => {
                "Herald's handlers, in-memory stores, real HTTP sender: Herald's own ceiling on this machine"
            }
        }
    }
}

enum Target {
    Moto(Box<moto::MotoTarget>),
    Memory(memory::MemoryTarget),
}

impl Target {
    async fn start(kind: Kind, receiver_url: &str, settings: &Settings) -> Self {
        match kind {
            Kind::Moto => Target::Moto(Box::new(
                moto::MotoTarget::start(receiver_url, settings).await,
            )),
            Kind::Memory => {
                Target::Memory(memory::MemoryTarget::start(receiver_url, settings).await)
            }
        }
    }

    async fn publish(&self, n: u64) -> bool {
        match self {
            Target::Moto(t) => t.publish(n).await,
            Target::Memory(t) => t.publish(n).await,
        }
    }

    /// How many were dead-lettered so far, to watch the drain by.
    async fn dead_count(&self) -> usize {
        match self {
            Target::Moto(t) => t.dead_lettered().await.len(),
            Target::Memory(t) => t.dead_letters_sent(),
        }
    }

    async fn dead_lettered(&self) -> BTreeSet<u64> {
        match self {
            Target::Moto(t) => t.dead_lettered().await,
            Target::Memory(t) => t.dead_lettered(),
        }
    }

    async fn shutdown(self) {
        match self {
            Target::Moto(t) => t.shutdown().await,
            Target::Memory(t) => t.shutdown().await,
        }
    }
}

/// `load-17` → 17.
pub(crate) fn event_number_of(event_id: &str) -> Option<u64> {
    event_id.strip_prefix("load-")?.parse().ok()
}

/// One publish as it went.
struct Sent {
    n: u64,
    /// How late it was sent after it was due.
    lag: Duration,
    /// When its answer came, from when it was due.
    answer: Duration,
    /// When its answer came, from the start.
    answered_at: Duration,
    accepted: bool,
}

/// A run's figures.
struct Run {
    kind: Kind,
    rate: f64,
    scheduled: u64,
    refused: usize,
    achieved_rate: f64,
    lag_p99: Duration,
    lag_max: Duration,
    answer_p50: Duration,
    answer_p99: Duration,
    ledger: Ledger,
    duplicates: u64,
    requests: u64,
    failed_answers: u64,
    unreadable: u64,
    latencies: Vec<Duration>,
    deliveries_per_second: f64,
    drained_in: Duration,
    /// Cores busy while the publishes were being sent and answered.
    cores: cpu::Cores,
    void: Option<String>,
    saturation: Option<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sorted(mut durations: Vec<Duration>) -> Vec<Duration> {
    durations.sort_unstable();
    durations
}

/// A moment before the first publish is due, for the generator to be waiting on time.
const LEAD: Duration = Duration::from_millis(200);
/// How often the drain looks at the receiver, and at the dead letters.
const DRAIN_LOOK: Duration = Duration::from_millis(50);
const DEAD_LETTER_LOOK: Duration = Duration::from_secs(1);
/// The receiver's failures are drawn from this seed, the same every run.
const SEED: u64 = 21;

async fn run_once(kind: Kind, rate: f64, settings: &Settings) -> Run {
    let receiver = Receiver::start(settings.fail_percent, SEED);
    let target = Arc::new(Target::start(kind, receiver.url(), settings).await);
    let schedule = Schedule::new(rate, settings.duration);
    eprintln!(
        "load: {} at {rate}/s for {:?}: {} publishes…",
        kind.name(),
        settings.duration,
        schedule.count
    );

    // The generator: each publish on its own task at its time, answered or not.
    let start = Instant::now() + LEAD;
    let mut cpu_from = None;
    let mut publishes = Vec::with_capacity(schedule.count as usize);
    for n in 0..schedule.count {
        let due = start + schedule.due(n);
        tokio::time::sleep_until(due.into()).await;
        cpu_from.get_or_insert_with(cpu::Sample::now);
        let target = Arc::clone(&target);
        publishes.push(tokio::spawn(async move {
            let sent = Instant::now();
            let accepted = target.publish(n).await;
            let answered = Instant::now();
            Sent {
                n,
                lag: sent.saturating_duration_since(due),
                answer: answered.saturating_duration_since(due),
                answered_at: answered.saturating_duration_since(start),
                accepted,
            }
        }));
    }
    let mut sent = Vec::with_capacity(publishes.len());
    for publish in publishes {
        if let Ok(s) = publish.await {
            sent.push(s);
        }
    }
    let cores = cpu_from.map_or_else(cpu::Cores::default, |from| {
        cpu::Sample::now().cores_since(&from)
    });
    let published: BTreeSet<u64> = sent.iter().filter(|s| s.accepted).map(|s| s.n).collect();

    // The drain: until every accepted publish is delivered or dead-lettered, or the bound.
    let drain_from = Instant::now();
    let mut dead = 0;
    let mut dead_looked: Option<Instant> = None;
    loop {
        if receiver.delivered() + dead >= published.len() {
            break;
        }
        if drain_from.elapsed() >= settings.drain {
            break;
        }
        if dead_looked.is_none_or(|at| at.elapsed() >= DEAD_LETTER_LOOK) {
            dead = target.dead_count().await;
            dead_looked = Some(Instant::now());
        }
        tokio::time::sleep(DRAIN_LOOK).await;
    }
    let drained_in = drain_from.elapsed();
    let dead_lettered = target.dead_lettered().await;
    let (delivered, latencies, last_delivery, duplicates, requests, failed_answers, unreadable) =
        receiver.with_tally(|tally| {
            let delivered: BTreeSet<u64> = tally.delivered.values().map(|(n, _)| *n).collect();
            let latencies: Vec<Duration> = tally
                .delivered
                .values()
                .map(|(n, at)| at.saturating_duration_since(start + schedule.due(*n)))
                .collect();
            let last = tally
                .delivered
                .values()
                .map(|(_, at)| at.saturating_duration_since(start))
                .max()
                .unwrap_or_default();
            (
                delivered,
                latencies,
                last,
                tally.duplicates,
                tally.requests,
                tally.failed,
                tally.unreadable,
            )
        });
    // Every publish task has finished, so the target is this run's alone again.
    if let Ok(target) = Arc::try_unwrap(target) {
        target.shutdown().await;
    }
    drop(receiver);

    let mut ledger = Ledger::reckon(&published, &delivered, &dead_lettered);
    // Two delivery ids for one event would be two deliveries where one was asked for.
    let mut void = ledger.void();
    if void.is_none() && delivered.len() != latencies.len() {
        ledger.delivered = latencies.len();
        void = Some(format!(
            "{} delivery ids for {} events",
            latencies.len(),
            delivered.len()
        ));
    }
    let latencies = sorted(latencies);
    let last_answer = sent.iter().map(|s| s.answered_at).max().unwrap_or_default();
    // Accepted publishes over the time a kept schedule of them takes: up to the last
    // answer, and the last one's own interval.
    let achieved_rate =
        published.len() as f64 / (last_answer.as_secs_f64() + 1.0 / rate).max(f64::EPSILON);
    let lags = sorted(sent.iter().map(|s| s.lag).collect());
    let answers = sorted(sent.iter().map(|s| s.answer).collect());
    let p99 = crate::percentile(&latencies, 99.0);
    let saturation = plan::saturation(&settings.bounds, rate, achieved_rate, p99, void.as_deref());
    Run {
        kind,
        rate,
        scheduled: schedule.count,
        refused: schedule.count as usize - published.len(),
        achieved_rate,
        lag_p99: crate::percentile(&lags, 99.0),
        lag_max: lags.last().copied().unwrap_or_default(),
        answer_p50: crate::percentile(&answers, 50.0),
        answer_p99: crate::percentile(&answers, 99.0),
        ledger,
        duplicates,
        requests,
        failed_answers,
        unreadable,
        deliveries_per_second: delivered.len() as f64
            / last_delivery.as_secs_f64().max(f64::EPSILON),
        latencies,
        drained_in,
        cores,
        void,
        saturation,
    }
}

impl Run {
    fn json(&self) -> Value {
        let p = |q: f64| ms(crate::percentile(&self.latencies, q));
        json!({
            "target": self.kind.name(),
            "rate": self.rate,
            "scheduled": self.scheduled,
            "published": self.ledger.published,
            "refused": self.refused,
            "achieved_publish_rate": self.achieved_rate,
            "send_lag_ms_p99": ms(self.lag_p99),
            "send_lag_ms_max": ms(self.lag_max),
            "publish_answer_ms_p50": ms(self.answer_p50),
            "publish_answer_ms_p99": ms(self.answer_p99),
            "delivered": self.ledger.delivered,
            "dead_lettered": self.ledger.dead_lettered,
            "missing": self.ledger.missing,
            "balanced": self.ledger.balances(),
            "duplicates": self.duplicates,
            "requests": self.requests,
            "answered_500": self.failed_answers,
            "unreadable": self.unreadable,
            "latency_ms_p50": p(50.0),
            "latency_ms_p99": p(99.0),
            "latency_ms_p99_9": p(99.9),
            "latency_ms_max": self.latencies.last().copied().map(ms),
            "deliveries_per_second": self.deliveries_per_second,
            "drained_in_s": self.drained_in.as_secs_f64(),
            "cpu_cores_bench": self.cores.process,
            "cpu_cores_machine": self.cores.machine,
            "cpu_cores_available": self.cores.available,
            "void": self.void,
            "saturation": self.saturation,
        })
    }

    fn row(&self) -> Vec<String> {
        let p = |q: f64| format!("{:.0}", ms(crate::percentile(&self.latencies, q)));
        vec![
            self.kind.name().into(),
            format!("{}", self.rate),
            format!("{}", self.ledger.published),
            format!("{:.1}", self.achieved_rate),
            format!("{:.1} / {:.1}", ms(self.lag_p99), ms(self.lag_max)),
            format!("{:.0} / {:.0}", ms(self.answer_p50), ms(self.answer_p99)),
            format!("{}", self.ledger.delivered),
            format!("{}", self.ledger.dead_lettered),
            format!("{}", self.ledger.missing),
            format!("{}", self.duplicates),
            format!("{} ({})", self.requests, self.failed_answers),
            p(50.0),
            p(99.0),
            p(99.9),
            format!("{:.1}", self.deliveries_per_second),
            format!("{:.2} / {:.2}", self.cores.process, self.cores.machine),
            match (&self.void, &self.saturation) {
                (Some(_), _) => "VOID".into(),
                (None, Some(_)) => "saturated".into(),
                (None, None) => "keeps up".into(),
            },
        ]
    }
}

const HEADER: [&str; 17] = [
    "target",
    "rate/s",
    "published",
    "achieved/s",
    "send lag p99/max ms",
    "answer p50/p99 ms",
    "delivered",
    "dead",
    "missing",
    "dup",
    "requests (500s)",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "deliveries/s",
    "cores bench/machine",
    "verdict",
];

fn print_table(rows: &[Vec<String>]) {
    let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in all {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        println!("{}", cells.join("  "));
    }
}

/// Where a target saturates, from its runs in order of rate.
fn verdict(kind: Kind, runs: &[&Run]) -> String {
    let kept = runs
        .iter()
        .take_while(|r| r.saturation.is_none())
        .last()
        .map(|r| r.rate);
    let first = runs.iter().find(|r| r.saturation.is_some());
    let highest = runs.last().map_or(0.0, |r| r.rate);
    match (kept, first) {
        (_, None) => format!(
            "{}: keeps up through {highest}/s, the highest rate run; saturates above it",
            kind.name()
        ),
        (Some(kept), Some(first)) => format!(
            "{}: keeps up through {kept}/s; saturates at {}/s: {}",
            kind.name(),
            first.rate,
            first.saturation.as_deref().unwrap_or_default()
        ),
        (None, Some(first)) => format!(
            "{}: saturated already at {}/s, the lowest rate run: {}",
            kind.name(),
            first.rate,
            first.saturation.as_deref().unwrap_or_default()
        ),
    }
}

/// Runs the load and prints it; the process's exit status (1 when a run is void).
pub fn main() -> i32 {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(why) => {
            eprintln!("make load: {why}");
            return 2;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut runs = Vec::new();
    for (kind, rates) in [
        (Kind::Moto, &settings.moto_rates),
        (Kind::Memory, &settings.memory_rates),
    ] {
        let mut rates = rates.clone();
        rates.sort_by(f64::total_cmp);
        for rate in rates {
            let run = runtime.block_on(run_once(kind, rate, &settings));
            let saturated = run.saturation.is_some();
            runs.push(run);
            // Past the first saturated rate there is nothing more to learn.
            if saturated {
                break;
            }
        }
    }

    println!(
        "\nopen-loop load: publish n sent at start + n/rate on its own task, answered or not; latency from the scheduled time to the first 2xx at the receiver"
    );
    println!(
        "{}s a rate; receiver fails {}% of requests with 500; retry schedule {} within {}; drain up to {}s; saturated at p99 > {} ms or publishes accepted > 5% behind the schedule",
        settings.duration.as_secs_f64(),
        settings.fail_percent,
        settings.retry_schedule,
        settings.retry_window,
        settings.drain.as_secs_f64(),
        settings.bounds.p99.as_millis()
    );
    for kind in [Kind::Moto, Kind::Memory] {
        if runs.iter().any(|r| r.kind == kind) {
            let pollers = match kind {
                Kind::Moto => settings.moto_pollers,
                Kind::Memory => settings.memory_pollers,
            };
            println!(
                "  {}: {}; {pollers} batches of 10 at once",
                kind.name(),
                kind.ceiling()
            );
        }
    }
    println!(
        "  cores: busy on average while the publishes were sent and answered, in this process (generator, receiver, Herald) and on the whole machine ({} cores; moto is the rest)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    print_table(&runs.iter().map(Run::row).collect::<Vec<_>>());
    println!();
    for run in &runs {
        let l = &run.ledger;
        println!(
            "ledger {} {}/s: published {} = delivered {} + dead-lettered {} + missing {}: {}{}",
            run.kind.name(),
            run.rate,
            l.published,
            l.delivered,
            l.dead_lettered,
            l.missing,
            match &run.void {
                Some(why) => format!("VOID, {why}"),
                None => "balanced".into(),
            },
            if run.refused > 0 || run.unreadable > 0 {
                format!(
                    " ({} publishes refused, {} requests unreadable)",
                    run.refused, run.unreadable
                )
            } else {
                String::new()
            }
        );
    }
    println!();
    for kind in [Kind::Moto, Kind::Memory] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.kind == kind).collect();
        if !mine.is_empty() {
            println!("{}", verdict(kind, &mine));
        }
    }

    let path = herald_tests::emulator::workspace_root().join("target/load.json");
    let report = json!({
        "duration_s": settings.duration.as_secs_f64(),
        "fail_percent": settings.fail_percent,
        "retry_schedule": settings.retry_schedule,
        "retry_window": settings.retry_window,
        "p99_bound_ms": ms(settings.bounds.p99),
        "moto_pollers": settings.moto_pollers,
        "memory_pollers": settings.memory_pollers,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "arch": std::env::consts::ARCH,
        },
        "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
    });
    match serde_json::to_string_pretty(&report).map(|text| std::fs::write(&path, text)) {
        Ok(Ok(())) => println!("\nwritten to {}", path.display()),
        _ => eprintln!("could not write {}", path.display()),
    }
    let void = runs.iter().filter(|r| r.void.is_some()).count();
    if void > 0 {
        eprintln!("make load: {void} run(s) VOID: their figures do not count");
        return 1;
    }
    0
}
