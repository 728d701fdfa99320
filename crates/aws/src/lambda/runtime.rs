//! The tokio runtime a bootstrap runs on, sized by the CPU Lambda gives the function.
//!
//! Lambda hands out CPU in proportion to memory: one vCPU at 1,769 MB, up to six at
//! 10,240 MB. Below two vCPUs a multi-thread runtime has nothing to run in parallel, and
//! costs its worker threads at every cold start (their start, their stacks and malloc
//! arenas, and the cgroup files read to count the cores) and a cross-thread hand-off on
//! every wake-up. So a function with less than two vCPUs' worth of memory runs on a
//! current-thread runtime, and one with more on a multi-thread runtime with a worker per
//! vCPU. Outside Lambda (no memory size in the environment) it is tokio's default.

use std::num::NonZeroUsize;

/// Memory that buys one vCPU on Lambda, in MB.
const MB_PER_VCPU: u64 = 1769;

/// How the runtime is built.
#[derive(Debug, PartialEq, Eq)]
pub enum Flavor {
    CurrentThread,
    /// `None`: a worker per core, as tokio counts them.
    MultiThread(Option<NonZeroUsize>),
}

/// The flavor for `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (MB) as Lambda sets it.
pub fn flavor_for(memory_mb: Option<&str>) -> Flavor {
    let Some(mb) = memory_mb.and_then(|v| v.trim().parse::<u64>().ok()) else {
        return Flavor::MultiThread(None);
    };
    match NonZeroUsize::new((mb / MB_PER_VCPU) as usize) {
        Some(vcpus) if vcpus.get() >= 2 => Flavor::MultiThread(Some(vcpus)),
        _ => Flavor::CurrentThread,
    }
}

/// The runtime for this function's memory size.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let memory = std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok();
    let mut builder = match flavor_for(memory.as_deref()) {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers.get());
            }
            builder
        }
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(n: usize) -> Flavor {
        Flavor::MultiThread(NonZeroUsize::new(n))
    }

    #[test]
    fn less_than_two_vcpus_is_one_thread() {
        for mb in ["128", "256", "512", "1769", "3008", "3537"] {
            assert_eq!(flavor_for(Some(mb)), Flavor::CurrentThread, "{mb} MB");
        }
    }

    #[test]
    fn two_vcpus_and_up_get_a_worker_each() {
        assert_eq!(flavor_for(Some("3538")), workers(2));
        assert_eq!(flavor_for(Some("5307")), workers(3));
        assert_eq!(flavor_for(Some("10240")), workers(5));
    }

    #[test]
    fn no_memory_size_or_a_strange_one_is_tokios_default() {
        assert_eq!(flavor_for(None), Flavor::MultiThread(None));
        assert_eq!(flavor_for(Some("")), Flavor::MultiThread(None));
        assert_eq!(flavor_for(Some("lots")), Flavor::MultiThread(None));
        // Zero is not a size Lambda sets; it is not worth a thread pool either.
        assert_eq!(flavor_for(Some("0")), Flavor::CurrentThread);
    }
}
