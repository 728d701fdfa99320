//! `openapi.yaml` is the contract: it is valid, it names exactly the routes the functions
//! serve, and schemathesis, generating requests from it against a running Herald, finds
//! no server error and no answer that departs from it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use herald_tests::herald::TestHerald;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv_tool(name: &str) -> PathBuf {
    let tool = root().join(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run the tests with `make test`, which sets up .venv",
        tool.display()
    );
    tool
}

fn spec_routes() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let spec: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.as_str().unwrap().to_owned()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_spec_names_exactly_the_routes_served() {
    let served: BTreeSet<(String, String)> = herald_ingest::ROUTES
        .iter()
        .chain(herald_manage::ROUTES)
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(spec_routes(), served);

    // And each one is answered by a handler, not by the router's 404 or 405.
    let herald = TestHerald::start(&[]).await;
    for (method, template) in spec_routes() {
        let path = template
            .replace(
                "/subscriptions/{id}",
                "/subscriptions/sub_01JD5Q8Z6X0000000000000000",
            )
            .replace(
                "/deliveries/{id}",
                "/deliveries/msg_0000000000000000000000000000000000000000000000000000",
            );
        let (status, body) = herald
            .call(&method, &path, Some("acme"), Some(&serde_json::json!({})))
            .await;
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert_ne!(
            body["error"]["message"], "route not found",
            "{method} {path}"
        );
        // Nor by the gateway's own 404 for a route the template lacks.
        assert_ne!(body["message"], "Not Found", "{method} {path}");
    }
    herald.shutdown().await;
}

#[test]
fn the_spec_is_valid_openapi() {
    let output = Command::new(venv_tool("python"))
        .args(["-m", "openapi_spec_validator"])
        .arg(root().join("openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_spec() {
    let herald = TestHerald::start(&[]).await;
    let tenant = format!("st-{:08x}", rand::random::<u32>());
    let output = tokio::process::Command::new(venv_tool("schemathesis"))
        .arg("run")
        .arg(root().join("openapi.yaml"))
        .args(["--url", &herald.local.api_url()])
        .args(["--header", &format!("Authorization: Bearer {tenant}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
        ])
        .args(["--max-examples", "25", "--workers", "1", "--seed", "1"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        // Its cache of found crashes stays out of the source tree.
        .current_dir(root().join("target"))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    herald.shutdown().await;
}
