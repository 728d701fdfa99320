//! `make smoke` (`herald smoke`): the check a user runs right after deploying, run against
//! the local runner's binary (what `make run` starts) and against a Herald under `sam local`
//! in Docker; and the readable failures it gives when a step fails.

use std::time::Duration;

use herald_tests::receiver::{Script, TestReceiver};
use herald_tests::runner::{RunnerProcess, workspace_binary};
use herald_tests::sam::{SamHerald, sam_variables, settings};
use serde_json::Value;

/// `herald smoke` with these arguments: (exit code, standard output, standard error).
async fn smoke(args: &[&str]) -> (i32, String, String) {
    smoke_with(args, &[]).await
}

/// `herald smoke` with these arguments and variables.
async fn smoke_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = tokio::process::Command::new(workspace_binary("herald"))
        .arg("smoke")
        .args(args)
        .env_remove("HERALD_API")
        .env_remove("HERALD_TOKEN")
        .env_remove("HERALD_TENANT")
        .env_remove("HERALD_SMOKE_URL")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("running herald smoke");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The tenant's subscriptions, through the API.
async fn subscriptions(api: &str) -> Vec<Value> {
    let answer = reqwest::Client::new()
        .get(format!("{api}/v1/subscriptions"))
        .bearer_auth("acme")
        .send()
        .await
        .unwrap();
    let listed: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    listed["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_smoke_check_passes_against_the_local_runner_and_its_webhook_arrives() {
    let runner = RunnerProcess::start(&settings(), &[]).await;
    let receiver = TestReceiver::start(Script::always(204)).await;
    // The stage's execute-api form, as a deployed stack's ApiUrl.
    let api = format!("{}/dev", runner.url);
    let (code, out, err) =
        smoke(&["--api", &api, "--token", "acme", "--url", &receiver.url()]).await;
    assert_eq!(code, 0, "{out}{err}\n{}", runner.output());
    assert!(out.contains("smoke check passed"), "{out}");
    assert!(out.contains("the endpoint answered 204"), "{out}");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("smoke.r")),
        "{body}"
    );
    assert!(subscriptions(&runner.url).await.is_empty(), "cleaned up");

    // Without a URL the webhook goes to the API itself, whose 404 is recorded.
    let (code, out, err) = smoke(&["--api", &runner.url, "--token", "acme"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the endpoint answered 404"), "{out}");
}

#[tokio::test]
async fn an_operators_smoke_check_acts_for_the_tenant_it_names() {
    let runner = RunnerProcess::start(&settings(), &[]).await;
    let receiver = TestReceiver::start(Script::always(204)).await;
    let api = format!("{}/dev", runner.url);
    // An operator's token (locally `<name>:operator`) with `--tenant`: every step's call
    // names acme in Herald-Tenant, as every other command's does.
    let (code, out, err) = smoke(&[
        "--api",
        &api,
        "--token",
        "support:operator",
        "--tenant",
        "acme",
        "--url",
        &receiver.url(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}\n{}", runner.output());
    assert!(out.contains("acting for acme"), "{out}");
    assert!(out.contains("the endpoint answered 204"), "{out}");
    assert!(out.contains("smoke check passed"), "{out}");
    receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(subscriptions(&runner.url).await.is_empty(), "cleaned up");

    // The same from HERALD_TENANT.
    let (code, out, err) = smoke_with(
        &["--api", &api, "--token", "support:operator"],
        &[("HERALD_TENANT", "acme")],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("smoke check passed"), "{out}");

    // Without a tenant named, the first step fails and says how to name one.
    let (code, out, err) = smoke(&["--api", &api, "--token", "support:operator"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("step 1 of 5 failed (reaching the API)"),
        "{err}"
    );
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("Herald-Tenant"), "{err}");
    assert!(err.contains("--tenant"), "{err}");
    assert!(subscriptions(&runner.url).await.is_empty());
}

#[tokio::test]
async fn a_failing_step_is_named_with_what_to_do() {
    let runner = RunnerProcess::start(&settings(), &[]).await;
    // A stage the API does not have: API Gateway's own 404 at the first step.
    let (code, out, err) =
        smoke(&["--api", &format!("{}/prod", runner.url), "--token", "acme"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("step 1 of 5 failed (reaching the API)"),
        "{err}"
    );
    assert!(err.contains("ApiUrl"), "{err}");

    // No token the authorizer takes.
    let (code, _, err) = smoke(&["--api", &runner.url, "--token", "a b"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");

    // A URL Herald refuses: step 2, with Herald's reason.
    let (code, _, err) = smoke(&[
        "--api",
        &runner.url,
        "--token",
        "acme",
        "--url",
        "ftp://example.com/",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("step 2 of 5 failed"), "{err}");
    assert!(err.contains("422"), "{err}");

    // Nothing answers at all.
    let (code, _, err) = smoke(&["--api", "http://127.0.0.1:1", "--token", "acme"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("got no answer"), "{err}");
    assert!(subscriptions(&runner.url).await.is_empty());
}

#[tokio::test]
async fn the_smoke_check_passes_against_sam_local() {
    let sam = SamHerald::start(sam_variables, &[], true).await;
    // Under SAM the functions run in containers, where this machine's loopback is not
    // theirs: the attempt is recorded as a refused connection, which passes the check.
    let (code, out, err) = smoke(&[
        "--api",
        &sam.api.url,
        "--token",
        "acme",
        "--timeout",
        "120s",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}\n{}", sam.api.output());
    assert!(out.contains("attempted"), "{out}");
    assert!(subscriptions(&sam.api.url).await.is_empty());
}

#[tokio::test]
async fn without_deliver_under_sam_the_check_fails_at_the_wait_and_cleans_up() {
    // start-api alone: nothing takes the queue's tasks, as when the event source is off.
    let sam = SamHerald::start(sam_variables, &[], false).await;
    let (code, out, err) =
        smoke(&["--api", &sam.api.url, "--token", "acme", "--timeout", "5s"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("step 4 of 5 failed (waiting for the attempt)"),
        "{err}"
    );
    assert!(err.contains("event source"), "{err}");
    assert!(out.contains("deleted after the failure"), "{out}");
    assert!(subscriptions(&sam.api.url).await.is_empty());
}
