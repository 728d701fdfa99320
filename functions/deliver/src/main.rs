// A batch is allocation-heavy (every POST's request, headers, buffers and record), and
// glibc's malloc was about a quarter of the handler's CPU; mimalloc takes a fifth off CPU
// per webhook (docs/DECISIONS.md, "Start-up").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), lambda_runtime::Error> {
    herald_aws::lambda::wiring::run_sqs::<herald_deliver::Deliver>()
}
