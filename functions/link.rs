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

fn main() {
    println!("cargo:rerun-if-env-changed=HERALD_PIE");
    println!("cargo:rerun-if-changed=../link.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let pie = std::env::var("HERALD_PIE").is_ok_and(|v| v == "1");
    if linux && !pie {
        // After rustc's own `-pie`, so it wins with gcc, clang and zig's clang alike.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
