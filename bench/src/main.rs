//! `make bench`: what a delivered webhook costs Herald, measured on this machine.
//!
//! 1. batch efficiency: the deliver handler's wall time for batches of 10, 100 and 1000 to
//!    a receiver answering after 50 ms, divided by 50 ms;
//! 2. CPU time per delivered webhook in the deliver handler;
//! 3. cold start: each release bootstrap's init duration under the Lambda Runtime Interface
//!    Emulator beside a hello-world `lambda_runtime` bootstrap, sizes, peak RSS;
//! 4. AWS requests and DynamoDB capacity per delivered webhook, counted by a proxy in front
//!    of moto on a real run, and the bill per million deliveries at `bench/prices.json`;
//! 5. end to end through the local runner on moto: events per second, publish-to-receive
//!    latency p50 and p99;
//! 6. delivery under the subscriber's control (`control`): one ordered line's pace, and a
//!    rate-limited subscription's rate against its limit.
//!
//! Prints a table and writes `target/bench.json`.
//!
//! `herald-bench load` is `make load` instead: open-loop load at fixed rates against the
//! local runner on moto and against Herald's handlers with in-memory stores (`load`).

mod allocations;
mod arm64;
mod aws;
mod batch;
mod coldstart;
mod control;
mod fanout;
mod ingest_cpu;
mod load;
mod logs;
mod on_moto;

use serde_json::{Value, json};

pub use herald_tests::percentile;

/// glibc's malloc, as deliver's bootstrap allocates, counted for the handler's threads.
#[global_allocator]
static ALLOCATOR: allocations::Counting = allocations::Counting;

pub struct Table {
    rows: Vec<(String, String, String)>,
}

impl Table {
    fn new() -> Self {
        Self { rows: Vec::new() }
    }

    pub fn row(
        &mut self,
        what: impl Into<String>,
        figure: impl Into<String>,
        note: impl Into<String>,
    ) {
        self.rows.push((what.into(), figure.into(), note.into()));
    }

    fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        for (what, figure, note) in &self.rows {
            println!("{what:<w0$}  {figure:>w1$}  {note}");
        }
    }
}

/// One part of the bench: adds its rows, returns its figures (and may read those of the
/// parts before it).
type Section = fn(&mut Table, &serde_json::Map<String, Value>) -> Value;

fn main() {
    logs::install();
    if std::env::args().nth(1).as_deref() == Some("load") {
        std::process::exit(load::main());
    }
    if std::env::args().nth(1).as_deref() == Some("fanout") {
        std::process::exit(fanout::child(&std::env::args().nth(2).unwrap_or_default()));
    }
    let mut table = Table::new();
    let mut report = serde_json::Map::new();
    let sections: [(&str, Section); 6] = [
        ("deliver_handler", batch::run),
        ("cold_start", coldstart::run),
        ("arm64_memory", arm64::run),
        ("aws", aws::run),
        ("subscriber_control", control::run),
        ("fan_out", fanout::run),
    ];
    // HERALD_BENCH_SECTIONS=cold_start,aws runs only those (all by default).
    let only: Option<Vec<String>> = std::env::var("HERALD_BENCH_SECTIONS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
        // The AWS section prices deliver's Lambda time from the handler's batch of 10.
        .map(|mut only: Vec<String>| {
            if only.iter().any(|s| s == "aws") && !only.iter().any(|s| s == "deliver_handler") {
                only.push("deliver_handler".into());
            }
            only
        });
    if let Some(only) = &only
        && let Some(unknown) = only.iter().find(|o| !sections.iter().any(|(n, _)| n == o))
    {
        let known: Vec<&str> = sections.iter().map(|(n, _)| *n).collect();
        eprintln!("HERALD_BENCH_SECTIONS: no section {unknown:?}; the sections are {known:?}");
        std::process::exit(2);
    }
    for (name, section) in sections {
        if only.as_ref().is_some_and(|o| !o.iter().any(|s| s == name)) {
            continue;
        }
        eprintln!("bench: {name}…");
        let figures = section(&mut table, &report);
        report.insert(name.to_owned(), figures);
        table.row("", "", "");
    }
    table.print();
    // HERALD_BENCH_OUT writes the figures elsewhere (`make hot-code` runs the cold starts
    // under a profiler, figures that are not the bench's).
    let path = std::env::var_os("HERALD_BENCH_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| herald_tests::emulator::workspace_root().join("target/bench.json"));
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "arch": std::env::consts::ARCH,
    });
    report.insert("machine".into(), machine);
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&Value::Object(report)).unwrap(),
    )
    .unwrap();
    println!("\nwritten to {}", path.display());
}

/// An API Gateway (HTTP API, payload 2.0) event publishing `body` for `acme` with the
/// publish scope, as Lambda hands it to ingest.
pub fn publish_request(body: &Value) -> String {
    json!({
        "version": "2.0", "routeKey": "POST /v1/events", "rawPath": "/v1/events",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": "/v1/events"},
            "authorizer": {"jwt": {
                "claims": {"tenant": "acme", "scope": "herald/publish"},
                "scopes": ["herald/publish"],
            }},
            "timeEpoch": 0,
        },
        "isBase64Encoded": false,
        "body": body.to_string(),
    })
    .to_string()
}

/// CPU time this thread has run, to the nanosecond: the kernel brings its count up to
/// date when asked (`CLOCK_THREAD_CPUTIME_ID`), where `schedstat` only moves at the
/// scheduler's ticks and switches and can miss a millisecond of work that never blocks.
pub fn thread_cpu() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return schedstat_cpu(std::path::Path::new("/proc/thread-self/schedstat"));
    }
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// The CPU time in a `schedstat` file of /proc (nanoseconds; 0 when unreadable): another
/// thread's, as of its last tick or switch.
pub fn schedstat_cpu(path: &std::path::Path) -> std::time::Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_threads_cpu_moves_with_work_shorter_than_a_tick() {
        // A scheduler tick is 1–10 ms; a count that only moved at ticks would often read
        // the same before and after a fifth of a millisecond's work.
        for _ in 0..20 {
            let before = super::thread_cpu();
            let started = std::time::Instant::now();
            let mut x = 0u64;
            while started.elapsed() < std::time::Duration::from_micros(200) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            assert!(super::thread_cpu() > before);
        }
    }
}
