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

/// One operation of the spec: its method, path, the scopes it takes (empty for a public
/// one) and the statuses its `responses` document.
struct Operation {
    method: String,
    path: String,
    scopes: BTreeSet<String>,
    documented: BTreeSet<String>,
}

fn spec_operations() -> Vec<Operation> {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let spec: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let security = operation.get("security").unwrap_or(&spec["security"]);
            let scopes = security
                .as_sequence()
                .unwrap()
                .iter()
                .flat_map(|requirement| requirement.as_mapping().unwrap().values())
                .flat_map(|scopes| scopes.as_sequence().unwrap())
                .map(|scope| scope.as_str().unwrap().to_owned())
                .collect();
            let documented = operation["responses"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|status| status.as_str().unwrap().to_owned())
                .collect();
            operations.push(Operation {
                method: method.to_uppercase(),
                path: path.as_str().unwrap().to_owned(),
                scopes,
                documented,
            });
        }
    }
    operations
}

/// A caller of [`every_operation_documents_the_answers_given_before_its_route_runs`].
struct Caller<'a> {
    who: &'a str,
    token: Option<&'a str>,
    headers: &'a [(&'a str, &'a str)],
    /// The status it must be answered, where one is known.
    expected: Option<u16>,
}

impl<'a> Caller<'a> {
    fn new(who: &'a str, token: Option<&'a str>, headers: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            who,
            token,
            headers,
            expected: None,
        }
    }

    fn answered(self, expected: Option<u16>) -> Self {
        Self { expected, ..self }
    }
}

/// Every operation documents the statuses its caller is answered with before its route
/// runs: 401 without a token, 403 for a token without its scopes or naming another tenant,
/// and, for each operation an operator may call, 400 for an operator's call that names no
/// tenant in `Herald-Tenant` (or names no tenant id there).
#[tokio::test]
async fn every_operation_documents_the_answers_given_before_its_route_runs() {
    let herald = TestHerald::start(&[]).await;
    let mut undocumented = Vec::new();
    for operation in spec_operations() {
        let path = operation
            .path
            .replace(
                "/subscriptions/{id}",
                "/subscriptions/sub_01JD5Q8Z6X0000000000000000",
            )
            .replace(
                "/deliveries/{id}",
                "/deliveries/msg_0000000000000000000000000000000000000000000000000000",
            )
            .replace("/events/{id}", "/events/evt-1")
            .replace("{tenant}", "acme");
        assert!(!path.contains('{'), "{path}: a parameter left to fill");
        let body = serde_json::json!({});
        let body = ["POST", "PUT", "PATCH"]
            .contains(&operation.method.as_str())
            .then_some(&body);
        // A public operation (`security: []`) takes no scope and answers whoever calls.
        let tokened = !operation.scopes.is_empty();
        let operator = operation.scopes.contains("herald/operator");
        let callers = [
            Caller::new("no token", None, &[]).answered(tokened.then_some(401)),
            Caller::new("a token without its scopes", Some("acme:none"), &[])
                .answered(tokened.then_some(403)),
            Caller::new(
                "a tenant's token naming another tenant",
                Some("acme"),
                &[("herald-tenant", "globex")],
            )
            .answered(tokened.then_some(403)),
            Caller::new(
                "an operator's token naming no tenant",
                Some("support:operator"),
                &[],
            )
            .answered(operator.then_some(400)),
            Caller::new(
                "an operator's token naming no tenant id",
                Some("support:operator"),
                &[("herald-tenant", "not a tenant!")],
            )
            .answered(operator.then_some(400)),
        ];
        for caller in callers {
            let (status, answer) = herald
                .call_with(&operation.method, &path, caller.token, caller.headers, body)
                .await;
            let who = caller.who;
            if let Some(expected) = caller.expected {
                assert_eq!(
                    status, expected,
                    "{} {path}, {who}: {answer}",
                    operation.method
                );
            }
            if !operation.documented.contains(&status.to_string()) {
                undocumented.push(format!(
                    "{} {} answers {status} to {who} ({answer}), which it does not document",
                    operation.method, operation.path
                ));
            }
        }
    }
    herald.shutdown().await;
    assert!(undocumented.is_empty(), "{}", undocumented.join("\n"));
}

/// The spec's event id schemas (the path parameter of `GET /v1/events/{id}` and an
/// event's `id`) take exactly the ids `EventId::parse` takes: none of dots alone, which a
/// client would remove from the path as a dot segment. The pattern has no lookaround, so
/// validators without it (as regex-lite here) read it as written.
#[test]
fn the_event_id_schemas_take_exactly_the_ids_herald_takes() {
    let text = std::fs::read_to_string(root().join("openapi.yaml")).unwrap();
    let spec: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let path_parameter = spec["paths"]["/v1/events/{id}"]["parameters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "id")
        .unwrap()["schema"]
        .clone();
    let property = spec["components"]["schemas"]["Event"]["properties"]["id"].clone();
    let ids = [
        "a",
        "ord-1.2:3_x",
        ".a",
        "a.",
        "a..b",
        "-",
        ":",
        "_",
        ".",
        "..",
        "...",
        "",
        "a b",
        "a/b",
        "../a",
        "é",
        &"x".repeat(128),
        &"x".repeat(129),
        &".".repeat(128),
        &format!("{}x", ".".repeat(127)),
    ];
    for schema in [path_parameter, property] {
        let pattern = regex_lite::Regex::new(schema["pattern"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{schema:?}: {e}"));
        let min = schema["minLength"].as_u64().unwrap_or(0);
        let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
        for id in ids {
            let length = id.chars().count() as u64;
            let taken = pattern.is_match(id) && (min..=max).contains(&length);
            assert_eq!(
                taken,
                herald_core::ids::EventId::parse(id).is_some(),
                "{schema:?} and Herald disagree on {id:?}"
            );
        }
    }
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
