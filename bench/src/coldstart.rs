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

/// What the process holds resident of files, in KiB, from /proc/<pid>/smaps: of its own
/// binary the code (mappings `r-x`) and the rest (read-only data, unwind tables: `r--`),
/// and of its libraries all pages.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct FilePages {
    code: u64,
    read_only: u64,
    libraries: u64,
}

fn file_pages(pid: u32) -> Option<FilePages> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(file_pages_of(&smaps, &exe.to_string_lossy()))
}

fn file_pages_of(smaps: &str, exe: &str) -> FilePages {
    let mut pages = FilePages::default();
    // (permissions, path) of the mapping the lines that follow describe.
    let mut mapping: Option<(String, String)> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let path = fields.get(5).copied().unwrap_or("");
            mapping = path
                .starts_with('/')
                .then(|| (fields[1].to_owned(), path.to_owned()));
        } else if fields.first() == Some(&"Rss:")
            && let Some((permissions, path)) = &mapping
        {
            let kib: u64 = fields.get(1).and_then(|k| k.parse().ok()).unwrap_or(0);
            if path != exe {
                pages.libraries += kib;
            } else if permissions.starts_with("r-x") {
                pages.code += kib;
            } else if !permissions.contains('w') {
                pages.read_only += kib;
            }
        }
    }
    pages
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
        let mut pages: Vec<Vec<FilePages>> = vec![Vec::new(); functions.len()];
        for _ in 0..RUNS {
            for (i, (binary, _, event)) in functions.iter().enumerate() {
                let emulator = Emulator::start(binary, &envs[i], &[]).await;
                emulator.invoke(event).await;
                if let Some(init) = emulator.init_duration_ms() {
                    inits[i].push(init);
                }
                if let Some(pid) = emulator.function_pid() {
                    if let Some(p) = file_pages(pid) {
                        pages[i].push(p);
                    }
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
            let of = |part: fn(&FilePages) -> u64| {
                median(pages[i].iter().map(|p| part(p) as f64).collect())
            };
            let (code, read_only, libraries) = (
                of(|p| p.code),
                of(|p| p.read_only),
                of(|p| p.libraries),
            );
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
                    "{ratio:.2}× hello (target ≤ 1.1); at {} MB; {:.1} MB, {:.1} MB zipped; peak RSS {:.1} MB = {rss_ratio:.2}× hello (target ≤ 2), after the invocation {:.1} MB anonymous + {:.1} MB of files ({:.1} MB of its code, {:.1} MB of its read-only data, {:.1} MB of libraries)",
                    envs[i]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"],
                    size as f64 / 1e6,
                    zipped as f64 / 1e6,
                    peak / 1024.0,
                    anon / 1024.0,
                    file / 1024.0,
                    code / 1024.0,
                    read_only / 1024.0,
                    libraries / 1024.0,
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
                    "rss_code_kib": code,
                    "rss_read_only_kib": read_only,
                    "rss_libraries_kib": libraries,
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

    #[test]
    fn file_pages_are_split_into_the_binarys_code_and_data_and_libraries() {
        let smaps = "\
00400000-00600000 r--p 00000000 08:01 1 /var/task/bootstrap
Size:               2048 kB
Rss:                 300 kB
00600000-00900000 r-xp 00200000 08:01 1 /var/task/bootstrap
Rss:                1200 kB
00900000-00901000 rw-p 00500000 08:01 1 /var/task/bootstrap
Rss:                   4 kB
00901000-00a00000 rw-p 00000000 00:00 0 [heap]
Rss:                 500 kB
7f0000000000-7f0000100000 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                 900 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                  64 kB
";
        assert_eq!(
            file_pages_of(smaps, "/var/task/bootstrap"),
            FilePages {
                code: 1200,
                read_only: 300,
                libraries: 900
            }
        );
    }

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
