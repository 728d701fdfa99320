use lambda_http::{Error, Request, service_fn};

// One request at a time (Lambda hands a container one event at a time): a current-thread
// runtime serves it without worker threads to start (docs/DECISIONS.md, "Start-up").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    herald_aws::lambda::telemetry::init_json_logs();
    let sdk = herald_aws::lambda::sdk::load_sdk_config().await;
    let deps = herald_manage::aws_deps(&herald_aws::lambda::config::ProcessEnv, &sdk)?;
    let deps = &deps;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(herald_manage::handle(deps, request).await)
    }))
    .await
}
