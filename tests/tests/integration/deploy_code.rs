//! `make deploy-code` (scripts/deploy-code.py) against moto's CloudFormation and Lambda: a
//! function of a stack gets new code and keeps every variable and setting the stack gave
//! it, which `cargo lambda deploy --env-var` would not; a bootstrap built for the other
//! architecture, or a function the stack lacks, is refused with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use herald_tests::aws::{moto_url, unique_prefix};
use herald_tests::emulator::workspace_root;
use serde_json::Value;

/// Python with boto3: moto's own virtualenv for the set-up, the deployment tools' for the
/// script under test (what a user runs).
fn python(venv: &str) -> PathBuf {
    let python = workspace_root().join(venv).join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: `make test` sets it up",
        python.display()
    );
    python
}

fn run_python(venv: &str, args: &[&str]) -> std::process::Output {
    Command::new(python(venv))
        .args(args)
        .env("AWS_ENDPOINT_URL", moto_url())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .current_dir(workspace_root())
        .output()
        .expect("running python")
}

/// A stack on moto with one function, as `sam deploy` would leave it: its configuration.
const MAKE_STACK: &str = r#"
import json, sys, boto3
stack = sys.argv[1]
role = boto3.client("iam").create_role(
    RoleName=stack + "-role",
    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}),
)["Role"]["Arn"]
template = {"Resources": {"DeliverFunction": {"Type": "AWS::Lambda::Function", "Properties": {
    "FunctionName": stack + "-deliver", "Runtime": "provided.al2023", "Handler": "bootstrap",
    "Role": role, "Code": {"ZipFile": "placeholder"}, "Architectures": ["x86_64"],
    "MemorySize": 256, "Timeout": 60,
    "Environment": {"Variables": {"HERALD_SUBSCRIPTIONS_TABLE": stack + "-Subscriptions",
                                  "HERALD_RETRY_SCHEDULE": "5s,5m", "HERALD_ALLOW_HTTP": "false"}}}}}}
boto3.client("cloudformation").create_stack(StackName=stack, TemplateBody=json.dumps(template))
print(json.dumps(boto3.client("lambda").get_function_configuration(FunctionName=stack + "-deliver"), default=str))
"#;

const READ_FUNCTION: &str = r#"
import json, sys, boto3
print(json.dumps(boto3.client("lambda").get_function_configuration(FunctionName=sys.argv[1]), default=str))
"#;

/// A zip with `bootstrap` at its root, as `cargo lambda build --output-format zip` makes.
fn zip_of(bootstrap: &Path) -> PathBuf {
    assert!(
        bootstrap.is_file(),
        "{} is missing: `make test` builds it",
        bootstrap.display()
    );
    let zip = std::env::temp_dir().join(format!("herald-{}.zip", unique_prefix()));
    let output = Command::new(python(".venv"))
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED); z.write(sys.argv[2], 'bootstrap'); z.close()",
        ])
        .arg(&zip)
        .arg(bootstrap)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    zip
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn new_code_keeps_the_stacks_configuration_and_a_wrong_build_is_refused() {
    let stack = format!("herald-{}", unique_prefix());
    let before = json_of(&run_python(".venv", &["-c", MAKE_STACK, &stack]));
    let function = before["FunctionName"].as_str().unwrap().to_owned();

    let target = workspace_root().join("target");
    let x86_64 = zip_of(&target.join("lambda-x86_64/deliver/bootstrap"));
    let script = "scripts/deploy-code.py";
    let deployed = run_python(
        ".venv-deploy",
        &[
            script,
            "--stack",
            &stack,
            "--function",
            "deliver",
            "--zip",
            x86_64.to_str().unwrap(),
        ],
    );
    let said = String::from_utf8_lossy(&deployed.stdout).into_owned();
    assert!(
        deployed.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(said.contains("configuration kept (3 variables)"), "{said}");

    let after = json_of(&run_python(".venv", &["-c", READ_FUNCTION, &function]));
    let zip = std::fs::read(&x86_64).unwrap();
    let sha = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip))
    };
    assert_eq!(
        after["CodeSha256"],
        sha.as_str(),
        "the new code is in place"
    );
    assert_ne!(after["CodeSha256"], before["CodeSha256"]);
    for kept in [
        "Environment",
        "MemorySize",
        "Timeout",
        "Role",
        "Handler",
        "Runtime",
    ] {
        assert_eq!(after[kept], before[kept], "{kept} changed");
    }

    // The template deploys arm64 by default: an arm64 build to this x86_64 function fails.
    let arm64 = zip_of(&target.join("sam-build/DeliverFunction/bootstrap"));
    let refused = run_python(
        ".venv-deploy",
        &[
            script,
            "--stack",
            &stack,
            "--function",
            "deliver",
            "--zip",
            arm64.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(
        reason.contains("built for arm64") && reason.contains("ARCH=x86_64"),
        "{reason}"
    );

    let missing = run_python(
        ".venv-deploy",
        &[
            script,
            "--stack",
            &stack,
            "--function",
            "manage",
            "--zip",
            x86_64.to_str().unwrap(),
        ],
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("has no ManageFunction"),
        "{missing:?}"
    );
    let unchanged = json_of(&run_python(".venv", &["-c", READ_FUNCTION, &function]));
    assert_eq!(unchanged["CodeSha256"], after["CodeSha256"]);
    let _ = std::fs::remove_file(x86_64);
    let _ = std::fs::remove_file(arm64);
}
