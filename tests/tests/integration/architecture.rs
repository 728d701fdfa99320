//! The house's rules, checked: the core is pure, arrows run one way (functions → aws →
//! core, testkit → core), and each function's `main` only wires.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use herald_tests::emulator::workspace_root;
use serde_json::Value;

/// Crates the core must never link, directly or through another crate.
const NOT_IN_CORE: [&str; 7] = [
    "aws-config",
    "aws-sdk-",
    "aws-smithy-",
    "lambda_",
    "reqwest",
    "hyper",
    "rustls",
];

fn cargo(args: &[&str]) -> String {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_core_links_no_aws_sdk_lambda_runtime_http_client_or_tls() {
    let tree = cargo(&[
        "tree",
        "-p",
        "herald-core",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--offline",
    ]);
    let crates: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains("herald-core") && crates.len() > 10,
        "{tree}"
    );
    let found: Vec<&&str> = crates
        .iter()
        .filter(|c| NOT_IN_CORE.iter().any(|bad| c.starts_with(bad)))
        .collect();
    assert!(found.is_empty(), "herald-core links {found:?}");
}

#[test]
fn dependencies_between_heralds_crates_run_one_way() {
    let metadata: Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .unwrap();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let normal: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("herald-"))
            .map(str::to_owned)
            .collect();
        uses.insert(name, normal);
    }
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| (*n).to_owned()).collect() };
    assert_eq!(uses["herald-core"], set(&[]));
    assert_eq!(uses["herald-testkit"], set(&["herald-core"]));
    assert_eq!(uses["herald-aws"], set(&["herald-core"]));
    for function in ["herald-ingest", "herald-deliver", "herald-manage"] {
        assert_eq!(
            uses[function],
            set(&["herald-aws", "herald-core"]),
            "{function} uses no other function, and no test kit"
        );
    }
}

#[test]
fn each_main_only_wires() {
    for function in ["ingest", "deliver", "manage"] {
        let path = workspace_root().join(format!("functions/{function}/src/main.rs"));
        let code: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
            .map(str::to_owned)
            .collect();
        assert!(code.len() <= 10, "{}: {code:#?}", path.display());
    }
}

/// `make test` audits the dependencies first, offline, and every advisory
/// `.cargo/audit.toml` accepts has the reason written above it.
#[test]
fn every_accepted_advisory_has_its_reason_and_make_test_audits() {
    let root = workspace_root();
    let config = std::fs::read_to_string(root.join(".cargo/audit.toml")).unwrap();
    let ignore = config
        .split_once("ignore = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("an ignore list in .cargo/audit.toml");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(id) = line.strip_prefix('"').and_then(|l| l.strip_suffix("\",")) else {
            assert!(line.is_empty() || line.starts_with('#'), "{line}");
            continue;
        };
        assert!(
            id.starts_with("RUSTSEC-") && id.len() == "RUSTSEC-2023-0071".len(),
            "{id}"
        );
        let reason: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.starts_with('#'))
            .copied()
            .collect();
        assert!(reason.len() >= 2, "{id} is accepted without its reason");
    }
    for setting in ["fetch = false", "stale = true", "deny = [\"warnings\"]"] {
        assert!(config.contains(setting), "{setting}");
    }

    let makefile = std::fs::read_to_string(root.join("Makefile")).unwrap();
    let test_rule = makefile
        .lines()
        .find(|l| l.starts_with("test:"))
        .expect("a test rule");
    assert!(
        test_rule.split_whitespace().any(|w| w == "audit"),
        "{test_rule}"
    );
    assert!(
        makefile.contains("audit --db \"$(ADVISORY_DB)\" --no-fetch"),
        "make audit reads the snapshot, offline"
    );
}
