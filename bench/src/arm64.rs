//! Memory of the arm64 bootstraps (the template's default architecture). This machine is
//! x86_64, so they run under qemu-user, whose own memory (its translator, its translated
//! code) is in the process's RSS; `bench/code_resident.py` counts the guest's pages alone,
//! those of the mappings qemu's `-d page` log says the guest has, after a start and one
//! invocation under the runtime emulator. The same count for the x86_64 bootstraps under
//! `qemu-x86_64`, beside their native RSS, is the method's calibration: printed with the
//! figures, so a run where it does not hold shows it.
//!
//! Init is not measured here: under qemu it is the translator's time, not the bootstrap's.

use std::path::{Path, PathBuf};
use std::process::Command;

use herald_tests::emulator::workspace_root;
use serde_json::{Value, json};

use crate::Table;

/// Starts of each bootstrap in each mode; the median is the figure (these counts move by
/// a page or two between starts).
const RUNS: &str = "3";

/// The bootstraps measured, hello first (the yardstick), and where each architecture's is.
const BINARIES: [(&str, &str); 4] = [
    ("hello", "hello"),
    ("ingest", "IngestFunction"),
    ("manage", "ManageFunction"),
    ("deliver", "DeliverFunction"),
];

fn arm64_bootstrap(root: &Path, binary: &str, resource: &str) -> PathBuf {
    if binary == "hello" {
        // `make bench` builds hello for arm64 beside the x86_64 one.
        root.join("target/lambda-arm64/hello/bootstrap")
    } else {
        // As `sam build` makes them with the template's defaults (`make check-template`).
        root.join("target/sam-build")
            .join(resource)
            .join("bootstrap")
    }
}

fn x86_64_bootstrap(root: &Path, binary: &str) -> PathBuf {
    root.join("target/lambda-x86_64")
        .join(binary)
        .join("bootstrap")
}

/// What `bench/code_resident.py` measured: all resident, and the binary's code.
struct Resident {
    kib: f64,
    code_kib: f64,
    /// Natively, the peak RSS (VmHWM); under qemu, none (qemu's own is in it).
    peak_kib: Option<f64>,
}

fn resident(rie: &str, mode: &str, bootstrap: &Path) -> Result<Resident, String> {
    let root = workspace_root();
    // The deploy tools' Python has PyYAML, which the script reads the template with.
    let python = root.join(".venv-deploy/bin/python");
    let output = Command::new(&python)
        .arg(root.join("bench/code_resident.py"))
        .args([rie, mode])
        .arg(bootstrap)
        .arg(RUNS)
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "code_resident.py {mode} {}: {}",
            bootstrap.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let figures: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let kib = |key: &str| {
        figures[key]
            .as_f64()
            .ok_or_else(|| format!("code_resident.py printed no {key}"))
    };
    Ok(Resident {
        kib: kib("resident_kib")?,
        code_kib: kib("code_kib")?,
        peak_kib: figures["peak_kib"].as_f64(),
    })
}

/// Why the section cannot run on this machine, if it cannot.
fn missing(root: &Path) -> Option<String> {
    for tool in ["qemu-aarch64", "qemu-x86_64"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            return Some(format!("{tool} is not installed (Debian's qemu-user)"));
        }
    }
    if !Path::new("/usr/aarch64-linux-gnu/lib").is_dir() {
        return Some("libc6-arm64-cross is not installed".into());
    }
    BINARIES.iter().find_map(|(binary, resource)| {
        let path = arm64_bootstrap(root, binary, resource);
        (!path.is_file()).then(|| format!("{} is missing", path.display()))
    })
}

pub fn run(table: &mut Table, _before: &serde_json::Map<String, Value>) -> Value {
    let root = workspace_root();
    let rie = std::env::var("HERALD_TEST_RIE").unwrap_or_default();
    if let Some(why) = missing(&root).or_else(|| {
        rie.is_empty()
            .then(|| "HERALD_TEST_RIE is not set".to_owned())
    }) {
        table.row(
            "arm64 memory under qemu-user",
            "not measured",
            format!("{why}: `make bench` installs and builds what it needs"),
        );
        return json!({ "not_measured": why });
    }
    let mut results = serde_json::Map::new();
    let mut hello = 0.0;
    for (binary, resource) in BINARIES {
        let arm64 = resident(
            &rie,
            "qemu-arm64",
            &arm64_bootstrap(&root, binary, resource),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let x86_64 = x86_64_bootstrap(&root, binary);
        let native = resident(&rie, "native", &x86_64).unwrap_or_else(|e| panic!("{e}"));
        let emulated = resident(&rie, "qemu-x86_64", &x86_64).unwrap_or_else(|e| panic!("{e}"));
        if binary == "hello" {
            hello = arm64.kib;
        }
        let ratio = arm64.kib / hello;
        let calibration = emulated.kib / native.kib - 1.0;
        table.row(
            format!("resident after one invocation, arm64, {binary}"),
            format!("{:.1} MB", arm64.kib / 1024.0),
            format!(
                "{ratio:.2}× hello's arm64 (target: peak RSS ≤ 2×); {:.1} MB of its code; the guest's own pages under qemu-aarch64. Calibration on x86_64: {:.1} MB under qemu-x86_64 against {:.1} MB natively ({:+.1}%)",
                arm64.code_kib / 1024.0,
                emulated.kib / 1024.0,
                native.kib / 1024.0,
                calibration * 100.0,
            ),
        );
        results.insert(
            binary.into(),
            json!({
                "resident_kib": arm64.kib,
                "code_kib": arm64.code_kib,
                "vs_hello": ratio,
                "x86_64_native_kib": native.kib,
                "x86_64_native_peak_kib": native.peak_kib,
                "x86_64_under_qemu_kib": emulated.kib,
                "calibration": calibration,
            }),
        );
    }
    Value::Object(results)
}
