//! The functions' build script: their Linux bootstraps are linked as position-dependent
//! executables (`-no-pie`), unless `HERALD_PIE=1` is set when they are built.
//!
//! A position-independent bootstrap carries about 46,000 relative relocations (1.1 MB of
//! `.rela.dyn`, mostly the pointers in Rust's statics: panic locations, vtables, tracing's
//! call sites and the AWS SDK's tables), which the dynamic loader reads and applies at
//! every cold start, writing 0.6 MB of `.data.rel.ro` into private pages. Linked at a
//! fixed address the linker resolves them once, at build time: a cold start reads and
//! writes none of it. What it gives up is the randomisation of the bootstrap's own
//! addresses (its libraries, heap, stacks and mappings stay randomised): the figures and
//! the reasoning are in docs/DECISIONS.md ("Position-dependent bootstraps").
//!
//! Release bootstraps are also linked with `functions/hot-code.ld`, a linker script that
//! puts the functions a cold start and the first invocations run (as profiled by
//! `make hot-code`) together ahead of the rest of the code, unless `HERALD_HOT_CODE=0`:
//! a cold start then faults in a few windows of the binary's code instead of windows
//! spread across all of it (docs/PERFORMANCE.md, "Cold start"). It changes where code
//! lies, never what it does; a function the script no longer names lies where it would
//! have without it.

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_PIE");
    println!("cargo:rerun-if-env-changed=HERALD_HOT_CODE");
    println!("cargo:rerun-if-env-changed=HERALD_KEEP_SYMBOLS");
    println!("cargo:rerun-if-changed=../link.rs");
    println!("cargo:rerun-if-changed=../hot-code.ld");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let pie = std::env::var("HERALD_PIE").is_ok_and(|v| v == "1");
    if linux && !pie {
        // After rustc's own `-pie`, so it wins with gcc, clang and zig's clang alike.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    // The release profile strips nothing (`strip = "none"`), so that a build keeping the
    // symbols names its functions as this one does (the profile's `strip` is part of
    // every symbol's hash); the link strips them, unless `HERALD_KEEP_SYMBOLS=1`.
    let keep_symbols = std::env::var("HERALD_KEEP_SYMBOLS").is_ok_and(|v| v == "1");
    if linux && release && !keep_symbols {
        println!("cargo:rustc-link-arg-bins=-Wl,--strip-all");
    }
    let hot_code = std::env::var("HERALD_HOT_CODE").map_or(true, |v| v != "0");
    if linux && release && hot_code {
        let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it");
        let script = std::path::Path::new(&manifest).join("../hot-code.ld");
        let script = script
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        // An addition to the linker's own script (`INSERT BEFORE .text`), which GNU ld,
        // lld and zig's linker driver all take as `-T`.
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
}
