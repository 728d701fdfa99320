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
const RUNS: usize = 21;

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

/// A line of the process's /proc/<pid>/status in KiB: `VmHWM:` (peak RSS), `RssAnon:`
/// (its heap, stacks and the pages written at load, such as relocated data) or `RssFile:`
/// (the pages of the binary and libraries read).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The repository's template.yaml, whose memory sizes the bench deploys the functions at.
pub(crate) fn read_template() -> String {
    let path = herald_tests::emulator::workspace_root().join("template.yaml");
    std::fs::read_to_string(path).expect("template.yaml")
}

/// The memory template.yaml gives a function (`MemorySize` in its resource), in MB: Lambda
/// sets it in the function's environment, and the bootstrap sizes its runtime by it.
pub(crate) fn template_memory_mb(template: &str, resource: &str) -> String {
    let start = format!("  {resource}:");
    template
        .lines()
        .skip_while(|line| *line != start)
        .skip(1)
        .take_while(|line| line.trim().is_empty() || line.starts_with("   "))
        .find_map(|line| line.trim().strip_prefix("MemorySize:"))
        .map(|mb| mb.trim().to_owned())
        .unwrap_or_else(|| panic!("template.yaml gives {resource} no MemorySize"))
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
        // Each with the memory the template deploys it with (hello with deliver's; it runs
        // tokio's default runtime whatever the size).
        let functions: [(&str, &str, Value); 4] = [
            ("hello", "DeliverFunction", json!({})),
            ("ingest", "IngestFunction", event_file("ingest/no-tenant.json")),
            ("manage", "ManageFunction", event_file("manage/list-subscriptions.json")),
            ("deliver", "DeliverFunction", json!({"Records": []})),
        ];
        let template = read_template();
        let envs: Vec<HashMap<String, String>> = functions
            .iter()
            .map(|(_, resource, _)| {
                let mut env = env.clone();
                env.insert(
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
                    template_memory_mb(&template, resource),
                );
                env
            })
            .collect();
        // Round by round, one start of each bootstrap a round: the emulator's figures drift
        // by about half a millisecond over a minute, and starting every bootstrap in each
        // round puts the same drift under all of them instead of under one.
        let mut inits: Vec<Vec<f64>> = vec![Vec::new(); functions.len()];
        let mut rss: Vec<Vec<f64>> = vec![Vec::new(); functions.len()];
        let mut anon: Vec<Vec<f64>> = vec![Vec::new(); functions.len()];
        let mut file: Vec<Vec<f64>> = vec![Vec::new(); functions.len()];
        for _ in 0..RUNS {
            for (i, (binary, _, event)) in functions.iter().enumerate() {
                let emulator = Emulator::start(binary, &envs[i], &[]).await;
                emulator.invoke(event).await;
                if let Some(init) = emulator.init_duration_ms() {
                    inits[i].push(init);
                }
                if let Some(pid) = emulator.function_pid() {
                    for (field, into) in [
                        ("VmHWM:", &mut rss[i]),
                        ("RssAnon:", &mut anon[i]),
                        ("RssFile:", &mut file[i]),
                    ] {
                        if let Some(kib) = status_kib(pid, field) {
                            into.push(kib as f64);
                        }
                    }
                }
            }
        }
        let mut results = serde_json::Map::new();
        let mut hello_init = 0.0;
        let mut hello_peak = 0.0;
        for (i, (binary, _, _)) in functions.iter().enumerate() {
            let binary = *binary;
            let inits = std::mem::take(&mut inits[i]);
            let path = bootstrap(binary);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let zipped = zipped_size(&path);
            let init = median(inits.clone());
            let peak = median(std::mem::take(&mut rss[i]));
            let anon = median(std::mem::take(&mut anon[i]));
            let file = median(std::mem::take(&mut file[i]));
            if binary == "hello" {
                hello_init = init;
                hello_peak = peak;
            }
            let ratio = if hello_init > 0.0 { init / hello_init } else { 0.0 };
            let rss_ratio = if hello_peak > 0.0 { peak / hello_peak } else { 0.0 };
            table.row(
                format!("cold start, {binary}"),
                format!("{init:.1} ms"),
                format!(
                    "{ratio:.2}× hello (target ≤ 1.1); at {} MB; {:.1} MB, {:.1} MB zipped; peak RSS {:.1} MB = {rss_ratio:.2}× hello (target ≤ 2), after the invocation {:.1} MB anonymous + {:.1} MB of files",
                    envs[i]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
                    size as f64 / 1e6,
                    zipped as f64 / 1e6,
                    peak / 1024.0,
                    anon / 1024.0,
                    file / 1024.0,
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
                    "peak_rss_vs_hello": rss_ratio,
                    "rss_anon_kib": anon,
                    "rss_file_kib": file,
                    "memory_mb": envs[i]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
                }),
            );
        }
        Value::Object(results)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "Resources:\n  IngestFunction:\n    Type: AWS::Serverless::Function\n\n    Properties:\n      MemorySize: 256\n  DeliverFunction:\n    Properties:\n      MemorySize: 512\n  Other:\n    Properties:\n      MemorySize: 64\n";

    #[test]
    fn each_function_gets_its_own_memory_size() {
        assert_eq!(template_memory_mb(TEMPLATE, "IngestFunction"), "256");
        assert_eq!(template_memory_mb(TEMPLATE, "DeliverFunction"), "512");
    }

    #[test]
    #[should_panic(expected = "no MemorySize")]
    fn a_function_without_one_is_not_given_the_next_ones() {
        let template = "  HelloFunction:\n    Properties:\n      Runtime: x\n  DeliverFunction:\n      MemorySize: 512\n";
        template_memory_mb(template, "HelloFunction");
    }

    #[test]
    fn the_templates_functions_all_have_one() {
        let template = read_template();
        for function in ["IngestFunction", "ManageFunction", "DeliverFunction"] {
            let mb: u64 = template_memory_mb(&template, function).parse().unwrap();
            assert!(mb >= 128, "{function}: {mb} MB");
        }
    }
}
