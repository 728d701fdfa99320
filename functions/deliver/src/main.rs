use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

// A batch is allocation-heavy (every POST's request, headers, buffers and record), and
// glibc's malloc was about a quarter of the handler's CPU; mimalloc takes a fifth off CPU
// per webhook (docs/DECISIONS.md, "Start-up").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Sized by the function's memory (herald_aws::lambda::runtime): one thread below two vCPUs,
// a worker per vCPU above.
fn main() -> Result<(), Error> {
    herald_aws::lambda::runtime::build()?.block_on(run())
}

async fn run() -> Result<(), Error> {
    herald_aws::lambda::telemetry::init_json_logs();
    let sdk = herald_aws::lambda::sdk::load_sdk_config().await;
    let deps = Arc::new(herald_deliver::aws_deps(
        &herald_aws::lambda::config::ProcessEnv,
        &sdk,
    )?);
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let outcome = herald_deliver::process_batch(deps, event.payload).await;
        Ok::<SqsBatchResponse, Error>(outcome.response)
    }))
    .await
}
