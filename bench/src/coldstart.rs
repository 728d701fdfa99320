//! Cold starts: each release bootstrap (x86_64, built by `make build-x86_64`, and the
//! hello-world yardstick built beside it) started fresh under the Runtime Interface
//! Emulator, invoked once. The emulator's `INIT REPORT(durationMs: …)` is the init figure;
//! memory is the bootstrap process's own peak RSS (VmHWM), since the emulator's REPORT
//! memory figures are fixed, not measured.

use std::collections::HashMap;
use std::process::Command;

use herald_tests::aws::{TestAws, moto_url};
use herald_tests::emulator::{Emulator, bootstrap, event_file};
use serde_json::{Value, json};

use crate::Table;

/// Fresh starts per bootstrap; the median is the figure (five were too few to be steady).
const RUNS: usize = 11;

fn zipped_size(path: &std::path::Path) -> u64 {
    let script = "import io, sys, zipfile\nb = io.BytesIO()\nwith zipfile.ZipFile(b, 'w', zipfile.ZIP_DEFLATED) as z: z.write(sys.argv[1], 'bootstrap')\nprint(len(b.getvalue()))";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("python3 zips the bootstrap");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let aws = TestAws::new().await;
        let mut env: HashMap<String, String> = aws.provisioned.environment();
        for (name, value) in [
            ("AWS_ENDPOINT_URL", moto_url().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ] {
            env.insert(name.into(), value.into());
        }
        let functions: [(&str, Value); 4] = [
            ("hello", json!({})),
            ("ingest", event_file("ingest/no-tenant.json")),
            ("manage", event_file("manage/list-subscriptions.json")),
            ("deliver", json!({"Records": []})),
        ];
        let mut results = serde_json::Map::new();
        let mut hello_init = 0.0;
        for (binary, event) in functions {
            let mut inits = Vec::new();
            let mut rss = Vec::new();
            for _ in 0..RUNS {
                let emulator = Emulator::start(binary, &env, &[]).await;
                emulator.invoke(&event).await;
                if let Some(init) = emulator.init_duration_ms() {
                    inits.push(init);
                }
                if let Some(kib) = emulator.function_pid().and_then(peak_rss_kib) {
                    rss.push(kib as f64);
                }
            }
            let path = bootstrap(binary);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let zipped = zipped_size(&path);
            let init = median(inits.clone());
            let peak = median(rss);
            if binary == "hello" {
                hello_init = init;
            }
            let ratio = if hello_init > 0.0 { init / hello_init } else { 0.0 };
            table.row(
                format!("cold start, {binary}"),
                format!("{init:.1} ms"),
                format!(
                    "{ratio:.2}× hello (target ≤ 1.5); {:.1} MB, {:.1} MB zipped, peak RSS {:.1} MB",
                    size as f64 / 1e6,
                    zipped as f64 / 1e6,
                    peak / 1024.0
                ),
            );
            results.insert(
                binary.into(),
                json!({
                    "init_ms_median": init,
                    "init_ms_runs": inits,
                    "vs_hello": ratio,
                    "binary_bytes": size,
                    "zip_bytes": zipped,
                    "peak_rss_kib": peak,
                }),
            );
        }
        Value::Object(results)
    })
}
