//! The `herald` command line against the local runner: every command a producer's engineer
//! runs, in tables and in `--json`, with the exit codes and messages that say what to do.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use herald_testkit::wait::{self, PATIENCE};
use herald_tests::herald::TestHerald;
use herald_tests::receiver::{Script, TestReceiver};
use herald_tests::runner::workspace_binary;
use serde_json::{Value, json};

/// What one run of `herald` did.
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("{e}: {}{}", self.out, self.err))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "{}{}", self.out, self.err);
        self
    }
}

/// `herald` with `args`, no variables of the caller's, and `stdin` as standard input.
async fn herald_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
    let mut command = tokio::process::Command::new(workspace_binary("herald"));
    command
        .args(args)
        .env_remove("HERALD_API")
        .env_remove("HERALD_TOKEN")
        .env_remove("HERALD_PROFILE")
        .env_remove("HERALD_TENANT")
        // No profile file of the machine's.
        .env("HERALD_CONFIG", "/nonexistent/herald.toml")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("running herald");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(&input).await.unwrap();
        });
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("herald finished")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `herald --api <the runner's stage URL> --token <tenant> args…`.
async fn herald(api: &str, tenant: &str, args: &[&str]) -> Run {
    let mut all = vec!["--api", api, "--token", tenant];
    all.extend_from_slice(args);
    herald_with(&all, &[], None).await
}

#[tokio::test]
async fn subscriptions_are_managed_from_the_command_line() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let receiver = TestReceiver::start(Script::always(204)).await;

    let created = herald(
        &api,
        "acme",
        &[
            "subscriptions",
            "create",
            "--url",
            &receiver.url(),
            "-t",
            "order.*",
            "-t",
            "herald.test",
            "--description",
            "orders",
            "-H",
            "X-Team: billing",
        ],
    )
    .await
    .ok();
    assert!(created.out.contains("whsec_"), "{}", created.out);
    assert!(created.out.contains("shown only now"), "{}", created.out);
    let id = created
        .out
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(id.starts_with("sub_"), "{id}");

    let listed = herald(&api, "acme", &["subscriptions", "list"]).await.ok();
    let header = listed.out.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("EVENT TYPES"),
        "{}",
        listed.out
    );
    assert!(listed.out.contains(&id) && listed.out.contains("order.*,herald.test"));
    let as_json = herald(&api, "acme", &["--json", "subscriptions", "list"])
        .await
        .ok()
        .json();
    assert_eq!(as_json["data"][0]["id"], json!(id));
    let elsewhere = herald(
        &api,
        "globex",
        &["--json", "subscriptions", "list", "--all"],
    )
    .await
    .ok()
    .json();
    assert_eq!(elsewhere["data"], json!([]), "another tenant sees nothing");

    let disabled = herald(
        &api,
        "acme",
        &["subscriptions", "update", &id, "--status", "disabled"],
    )
    .await
    .ok();
    assert!(disabled.out.contains("disabled"), "{}", disabled.out);
    let shown = herald(&api, "acme", &["--json", "subscriptions", "show", &id])
        .await
        .ok()
        .json();
    assert_eq!(shown["status"], "disabled");
    let own_retries = herald(
        &api,
        "acme",
        &[
            "subscriptions",
            "update",
            &id,
            "--retry-schedule",
            "1m,5m,30m",
            "--retry-window",
            "1d",
            "--timeout",
            "3s",
            "--rate-limit",
            "5",
        ],
    )
    .await
    .ok();
    assert!(
        own_retries.out.contains("1m,5m,30m within 1d"),
        "{}",
        own_retries.out
    );
    assert!(own_retries.out.contains("3s"), "{}", own_retries.out);
    assert!(
        own_retries.out.contains("5 a second"),
        "{}",
        own_retries.out
    );
    assert_eq!(
        shown["headers"],
        json!({"x-team": "********"}),
        "header values are write-only"
    );
    herald(
        &api,
        "acme",
        &["subscriptions", "update", &id, "--status", "active"],
    )
    .await
    .ok();

    let rotated = herald(
        &api,
        "acme",
        &["--json", "subscriptions", "rotate", &id, "--grace", "1h"],
    )
    .await
    .ok()
    .json();
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(!created.out.contains(rotated["secret"].as_str().unwrap()));

    let tested = herald(
        &api,
        "acme",
        &[
            "subscriptions",
            "test",
            &id,
            "--data",
            r#"{"hello": "cli"}"#,
        ],
    )
    .await
    .ok();
    assert!(
        tested.out.contains("queued as delivery msg_"),
        "{}",
        tested.out
    );
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "herald.test");
    assert_eq!(got[0].header("x-team"), "billing");

    herald(&api, "acme", &["subscriptions", "delete", &id])
        .await
        .ok();
    let gone = herald(&api, "acme", &["subscriptions", "show", &id]).await;
    assert_eq!(
        gone.code, 1,
        "a refused request exits 1: {}{}",
        gone.out, gone.err
    );
    assert!(gone.err.contains("404"), "{}", gone.err);
    herald_api.shutdown().await;
}

#[tokio::test]
async fn events_are_published_from_a_file_or_standard_input_in_batches() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let receiver = TestReceiver::start(Script::always(200)).await;
    herald_api
        .subscribe("acme", &receiver.url(), &["order.paid"])
        .await;

    // 250 events as JSON Lines, three of the subscribed type, the first 10 with ids.
    let mut lines = String::new();
    for i in 0..250 {
        let kind = if i % 100 == 7 {
            "order.paid"
        } else {
            "order.viewed"
        };
        let mut event = json!({"type": kind, "data": {"n": i}});
        if i < 10 {
            event["id"] = json!(format!("cli-test-{i}"));
        }
        lines.push_str(&event.to_string());
        lines.push('\n');
    }
    let file = std::env::temp_dir().join(format!("herald-cli-{}.jsonl", std::process::id()));
    std::fs::File::create(&file)
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();

    let published = herald(
        &api,
        "acme",
        &["events", "publish", file.to_str().unwrap(), "--batch", "40"],
    )
    .await
    .ok();
    assert_eq!(published.out, "published 250 events for 3 deliveries\n");
    assert_eq!(receiver.wait_for(3, Duration::from_secs(30)).await.len(), 3);

    // The same first ten again from standard input, as a JSON array: duplicates.
    let again: Vec<Value> = lines
        .lines()
        .take(10)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let repeated = herald_with(
        &[
            "--api", &api, "--token", "acme", "--json", "events", "publish",
        ],
        &[],
        Some(Value::Array(again).to_string().as_bytes()),
    )
    .await
    .ok()
    .json();
    let answers = repeated["events"].as_array().unwrap();
    assert_eq!(answers.len(), 10);
    assert!(
        answers.iter().all(|a| a["duplicate"] == json!(true)),
        "{repeated}"
    );
    assert_eq!(answers[0]["id"], "cli-test-0");

    // An event read back by its id, as published.
    let shown = herald(&api, "acme", &["--json", "events", "show", "cli-test-7"])
        .await
        .ok()
        .json();
    assert_eq!(shown["type"], "order.paid");
    assert_eq!(shown["data"], json!({"n": 7}));
    let elsewhere = herald(&api, "globex", &["events", "show", "cli-test-7"]).await;
    assert_eq!(elsewhere.code, 1, "another tenant's event is not found");
    let bad = herald(&api, "acme", &["events", "show", "../v1/subscriptions"]).await;
    assert_eq!(bad.code, 2);
    // Dots alone are a dot segment, which would be removed from the path: refused here,
    // as Herald refuses them as ids.
    for dots in ["..", "."] {
        let refused = herald(&api, "acme", &["events", "show", dots]).await;
        assert_eq!(refused.code, 2, "{dots}: {}{}", refused.out, refused.err);
        assert!(
            refused
                .err
                .contains(&format!("`{dots}` is not an event id"))
                && refused.err.contains("not dots alone"),
            "{}",
            refused.err
        );
    }

    let broken = herald_with(
        &["--api", &api, "--token", "acme", "events", "publish", "-"],
        &[],
        Some(b"{\"type\": \"a.b\", \"data\": {}}\n{not json\n"),
    )
    .await;
    assert_eq!(broken.code, 2, "{}", broken.err);
    assert!(broken.err.contains("line 2"), "{}", broken.err);

    let refused = herald_with(
        &["--api", &api, "--token", "acme", "events", "publish"],
        &[],
        Some(br#"[{"type": "a.b", "data": {}}, {"type": "BAD TYPE", "data": {}}]"#),
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.err);
    assert!(
        refused.err.contains("events 1–2 were not published"),
        "{}",
        refused.err
    );
    assert!(refused.err.contains("422"), "{}", refused.err);
    std::fs::remove_file(file).ok();
    herald_api.shutdown().await;
}

/// A publish refused as one too many this second (429) is tried again, as a 5xx is: the
/// events have their ids, so nothing is published twice.
#[tokio::test]
async fn a_publish_throttled_for_the_second_is_tried_again() {
    let herald_api = TestHerald::start(&[("HERALD_MAX_REQUESTS_PER_SECOND", "1")]).await;
    let api = herald_api.local.stage_url();
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("throttled-{i}"), "type": "order.viewed", "data": {}}))
        .collect();
    // Three batches of ten: the second and third come within the first's second.
    let published = herald_with(
        &[
            "--api", &api, "--token", "acme", "events", "publish", "--batch", "10",
        ],
        &[],
        Some(Value::Array(events).to_string().as_bytes()),
    )
    .await;
    assert_eq!(published.code, 0, "{}", published.err);
    assert_eq!(published.out, "published 30 events for 0 deliveries\n");
    herald_api.shutdown().await;
}

#[tokio::test]
async fn the_attempt_log_is_read_retried_and_replayed() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let receiver = TestReceiver::start(Script::always(503)).await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (id, _) = herald_api.subscribe("acme", &receiver.url(), &["*"]).await;
    let tested = herald(&api, "acme", &["--json", "subscriptions", "test", &id])
        .await
        .ok()
        .json();
    let delivery = tested["delivery_id"].as_str().unwrap().to_owned();

    let shown = wait::until(
        "an attempt",
        PATIENCE,
        Duration::from_millis(300),
        || async {
            let run = herald(&api, "acme", &["deliveries", "show", &delivery]).await;
            if run.code == 0 && run.out.contains("503") {
                Ok(run)
            } else {
                Err(format!("{}{}", run.out, run.err))
            }
        },
    )
    .await;
    assert!(shown.out.contains("LATENCY"), "{}", shown.out);
    assert!(shown.out.contains(&id), "{}", shown.out);

    let listed = herald(&api, "acme", &["deliveries", "list", &id])
        .await
        .ok();
    assert!(listed.out.contains(&delivery), "{}", listed.out);
    assert!(listed.out.lines().next().unwrap().contains("STATE"));
    let filtered = herald(
        &api,
        "acme",
        &["--json", "deliveries", "list", &id, "--state", "delivered"],
    )
    .await
    .ok()
    .json();
    assert_eq!(filtered["data"], json!([]));
    let feed = herald(&api, "acme", &["--json", "deliveries", "feed", &id])
        .await
        .ok()
        .json();
    assert_eq!(feed["data"][0]["delivery_id"], delivery.as_str(), "{feed}");
    assert!(feed["data"][0]["body"].is_object(), "{feed}");
    let feed_text = herald(&api, "acme", &["deliveries", "feed", &id])
        .await
        .ok();
    assert!(feed_text.out.contains(&delivery), "{}", feed_text.out);

    let retried = herald(&api, "acme", &["deliveries", "retry", &delivery])
        .await
        .ok();
    assert!(retried.out.contains(&delivery), "{}", retried.out);
    receiver.wait_for(2, Duration::from_secs(20)).await;

    let replay = herald(
        &api,
        "acme",
        &[
            "--json",
            "deliveries",
            "replay",
            &id,
            "--since",
            &since.to_rfc3339(),
            "--state",
            "pending",
        ],
    )
    .await
    .ok()
    .json();
    assert!(replay["queued"].is_u64(), "{replay}");
    let missing_since = herald(&api, "acme", &["deliveries", "replay", &id]).await;
    assert_eq!(missing_since.code, 2);
    assert!(
        missing_since.err.contains("--since"),
        "{}",
        missing_since.err
    );

    let theirs = herald(&api, "globex", &["deliveries", "show", &delivery]).await;
    assert_eq!(theirs.code, 1, "another tenant's delivery is not found");
    herald_api.shutdown().await;
}

/// A range of more deliveries than one call queues is replayed whole by one command: it
/// follows the API's cursor, and each delivery is sent again once.
#[tokio::test]
async fn a_replay_follows_the_cursor_through_the_whole_range() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let receiver = TestReceiver::start(Script::always(200)).await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (id, _) = herald_api.subscribe("acme", &receiver.url(), &["*"]).await;
    let events: Vec<Value> = (0..150)
        .map(|i| json!({"id": format!("replayed-{i}"), "type": "order.paid", "data": {}}))
        .collect();
    let published = herald_with(
        &["--api", &api, "--token", "acme", "events", "publish"],
        &[],
        Some(Value::Array(events).to_string().as_bytes()),
    )
    .await;
    assert_eq!(published.code, 0, "{}", published.err);
    let first = receiver.wait_for(150, PATIENCE).await;
    let ids = |requests: &[herald_tests::receiver::Recorded]| {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for request in requests {
            *counts
                .entry(request.header("webhook-id").to_owned())
                .or_default() += 1;
        }
        counts
    };
    let delivered = ids(&first);
    assert_eq!(delivered.len(), 150);
    // Every delivery has its attempt recorded before the replay reads the range.
    wait::until(
        "150 delivered",
        PATIENCE,
        Duration::from_millis(300),
        || async {
            let listed = herald(
                &api,
                "acme",
                &[
                    "--json",
                    "deliveries",
                    "list",
                    &id,
                    "--state",
                    "delivered",
                    "--all",
                ],
            )
            .await
            .ok()
            .json();
            let count = listed["data"].as_array().map_or(0, Vec::len);
            if count == 150 {
                Ok(())
            } else {
                Err(format!("{count} delivered"))
            }
        },
    )
    .await;

    let replay = herald(
        &api,
        "acme",
        &[
            "--json",
            "deliveries",
            "replay",
            &id,
            "--since",
            &since.to_rfc3339(),
            "--state",
            "delivered",
        ],
    )
    .await
    .ok();
    let answer = replay.json();
    assert_eq!(answer["queued"], 150, "{answer}");
    assert_eq!(answer["skipped"], 0, "{answer}");
    assert_eq!(answer["calls"], 2, "{answer}");
    assert!(replay.err.contains("100 queued so far"), "{}", replay.err);
    receiver.wait_for(300, PATIENCE).await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = ids(&receiver.requests());
    assert_eq!(
        sent.keys().collect::<Vec<_>>(),
        delivered.keys().collect::<Vec<_>>()
    );
    assert!(
        sent.values().all(|&n| n == 2),
        "each delivery is sent again once: {sent:?}"
    );

    // A cursor the API did not hand out is refused, and the refusal says so.
    let text = herald(
        &api,
        "acme",
        &[
            "deliveries",
            "replay",
            &id,
            "--since",
            &since.to_rfc3339(),
            "--cursor",
            "bogus",
        ],
    )
    .await;
    assert_eq!(text.code, 1, "{}{}", text.out, text.err);
    assert!(text.err.contains("cursor"), "{}", text.err);
    herald_api.shutdown().await;
}

#[tokio::test]
async fn a_portal_is_opened_for_the_tokens_tenant() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let opened = herald(
        &api,
        "acme",
        &[
            "portal",
            "open",
            "acme",
            "--lifetime",
            "15m",
            "-t",
            "order.paid",
        ],
    )
    .await
    .ok();
    let url = opened
        .out
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("{}", opened.out));
    assert!(
        url.starts_with(&format!("{api}/portal/index.html#token=hps_")),
        "{url}"
    );
    let page = reqwest::get(url.split('#').next().unwrap()).await.unwrap();
    assert_eq!(page.status(), 200);

    let other = herald(&api, "acme", &["portal", "open", "globex"]).await;
    assert_eq!(other.code, 4, "{}", other.err);
    assert!(other.err.contains("herald/operator"), "{}", other.err);

    // An operator's token (locally `<name>:operator`) opens one for any tenant, and acts
    // for the tenant `--tenant` names.
    let for_globex = herald(
        &api,
        "support:operator",
        &["--json", "portal", "open", "globex"],
    )
    .await
    .ok()
    .json();
    assert_eq!(for_globex["tenant"], "globex");
    herald(
        &api,
        "support:operator",
        &[
            "--tenant",
            "globex",
            "subscriptions",
            "create",
            "--url",
            "http://127.0.0.1:9/g",
            "-t",
            "*",
        ],
    )
    .await
    .ok();
    let globex = herald(&api, "globex", &["--json", "subscriptions", "list"])
        .await
        .ok()
        .json();
    assert_eq!(
        globex["data"].as_array().unwrap().len(),
        1,
        "made in globex: {globex}"
    );
    let unnamed = herald(&api, "support:operator", &["subscriptions", "list"]).await;
    assert_eq!(unnamed.code, 1, "{}", unnamed.err);
    assert!(unnamed.err.contains("Herald-Tenant"), "{}", unnamed.err);
    let read_only = herald(&api, "acme:read", &["portal", "open", "acme"]).await;
    assert_eq!(
        read_only.code, 4,
        "a read-only token cannot open sessions: {}",
        read_only.err
    );
    assert!(read_only.err.contains("403"), "{}", read_only.err);
    herald_api.shutdown().await;
}

#[tokio::test]
async fn the_api_and_token_come_from_a_profile_and_failures_say_what_to_do() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();

    let none = herald_with(&["subscriptions", "list"], &[], None).await;
    assert_eq!(none.code, 2);
    assert!(
        none.err.contains("--api") && none.err.contains("HERALD_API"),
        "{}",
        none.err
    );

    let profile = std::env::temp_dir().join(format!("herald-profile-{}.toml", std::process::id()));
    std::fs::write(
        &profile,
        format!("[profile.local]\napi = \"{api}\"\ntoken = \"acme\"\n"),
    )
    .unwrap();
    let config = profile.to_str().unwrap();
    let from_profile = herald_with(
        &["--profile", "local", "subscriptions", "list"],
        &[("HERALD_CONFIG", config)],
        None,
    )
    .await
    .ok();
    assert_eq!(from_profile.out, "no subscriptions\n");
    let from_env = herald_with(
        &["subscriptions", "list"],
        &[("HERALD_API", api.as_str()), ("HERALD_TOKEN", "acme")],
        None,
    )
    .await
    .ok();
    assert_eq!(from_env.out, "no subscriptions\n");
    let unknown = herald_with(
        &["--profile", "prod", "subscriptions", "list"],
        &[("HERALD_CONFIG", config)],
        None,
    )
    .await;
    assert_eq!(unknown.code, 2);
    assert!(unknown.err.contains("no profile `prod`"), "{}", unknown.err);
    std::fs::remove_file(&profile).ok();

    let bad_id = herald(&api, "acme", &["subscriptions", "show", "../signing-keys"]).await;
    assert_eq!(bad_id.code, 2, "{}", bad_id.err);
    let bad_header = herald(
        &api,
        "acme",
        &[
            "subscriptions",
            "create",
            "--url",
            "https://a.example/",
            "-t",
            "*",
            "-H",
            "nocolon",
        ],
    )
    .await;
    assert_eq!(bad_header.code, 2);
    assert!(bad_header.err.contains("Name: value"), "{}", bad_header.err);
    let ssrf = herald(
        &api,
        "acme",
        &[
            "subscriptions",
            "create",
            "--url",
            "http://169.254.169.254/",
            "-t",
            "*",
        ],
    )
    .await;
    assert_eq!(ssrf.code, 1, "{}", ssrf.err);
    assert!(ssrf.err.contains("422"), "{}", ssrf.err);

    let closed = herald("http://127.0.0.1:9", "acme", &["subscriptions", "list"]).await;
    assert_eq!(closed.code, 3, "no answer exits 3: {}", closed.err);
    assert!(closed.err.contains("got no answer"), "{}", closed.err);
    let read_only = herald(
        &api,
        "acme:read",
        &[
            "subscriptions",
            "create",
            "--url",
            "https://a.example/",
            "-t",
            "*",
        ],
    )
    .await;
    assert_eq!(read_only.code, 4, "{}", read_only.err);
    herald_api.shutdown().await;
}

#[tokio::test]
async fn erasures_run_to_the_end_from_the_command_line() {
    let herald_api = TestHerald::start(&[
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
        ("HERALD_ERASURE_SETTLE_SECONDS", "1"),
    ])
    .await;
    let api = herald_api.local.stage_url();
    let (kept, _) = herald_api
        .subscribe("acme", "http://127.0.0.1:9/a", &["*"])
        .await;
    herald_api
        .subscribe("globex", "http://127.0.0.1:9/g", &["*"])
        .await;

    let history = herald(&api, "acme", &["--json", "erase", "history", &kept])
        .await
        .ok()
        .json();
    assert_eq!(history["done"], true, "{history}");

    let unconfirmed = herald(&api, "support:operator", &["erase", "tenant", "globex"]).await;
    assert_eq!(unconfirmed.code, 2, "{}", unconfirmed.err);
    assert!(unconfirmed.err.contains("--yes"), "{}", unconfirmed.err);
    let not_an_operator = herald(&api, "globex", &["erase", "tenant", "globex", "--yes"]).await;
    assert_eq!(not_an_operator.code, 4, "{}", not_an_operator.err);

    let erased = herald(
        &api,
        "support:operator",
        &["erase", "tenant", "globex", "--yes"],
    )
    .await
    .ok();
    assert!(
        erased.out.contains("Erased tenant globex: 1 subscriptions"),
        "{}",
        erased.out
    );
    let globex = herald(&api, "globex", &["--json", "subscriptions", "list"])
        .await
        .ok()
        .json();
    assert_eq!(globex["data"], json!([]));
    let acme = herald(&api, "acme", &["--json", "subscriptions", "list"])
        .await
        .ok()
        .json();
    assert_eq!(acme["data"].as_array().unwrap().len(), 1);
    herald_api.shutdown().await;
}

#[tokio::test]
async fn a_tenants_signing_keys_are_shown_and_rotated_from_the_command_line() {
    let ed25519 = herald_core::webhook::keys::generate_ed25519(&mut rand::rng());
    let herald_api = TestHerald::start(&[("HERALD_ED25519_SIGNING_KEY", &ed25519)]).await;
    let api = herald_api.local.stage_url();

    let shown = herald(&api, "acme", &["keys", "show"]).await.ok();
    assert!(
        shown.out.contains("whpk_") && shown.out.contains("key_"),
        "{}",
        shown.out
    );
    let first = herald(&api, "acme", &["--json", "keys", "show"])
        .await
        .ok()
        .json();
    assert_eq!(first["keys"].as_array().map(Vec::len), Some(1), "{first}");

    let rotated = herald(&api, "acme", &["--json", "keys", "rotate"])
        .await
        .ok()
        .json();
    let pairs = rotated["keys"].as_array().unwrap();
    assert_eq!(pairs.len(), 2, "{rotated}");
    assert_eq!(pairs[1]["kid"], first["keys"][0]["kid"], "{rotated}");
    assert!(pairs[1]["retires_at"].is_string(), "{rotated}");
    let text = herald(&api, "acme", &["keys", "rotate"]).await.ok();
    assert!(text.out.contains("retires"), "{}", text.out);
    // A fourth pair waits for one to retire: the API's reason, and a failing exit.
    let refused = herald(&api, "acme", &["keys", "rotate"]).await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.err.contains("live signing keys"),
        "{}{}",
        refused.out,
        refused.err
    );
    herald_api.shutdown().await;
}

#[tokio::test]
async fn an_operator_seals_a_tenants_clear_values_from_the_command_line() {
    let herald_api = TestHerald::start(&[]).await;
    let api = herald_api.local.stage_url();
    let receiver = TestReceiver::start(Script::always(204)).await;
    herald_api.subscribe("acme", &receiver.url(), &["*"]).await;
    // Stored sealed already (the local runner has a secrets key): nothing to seal.
    let sealed = herald(&api, "support:operator", &["seal", "acme"])
        .await
        .ok();
    assert!(
        sealed
            .out
            .contains("Sealed the values of 0 subscriptions of acme"),
        "{}",
        sealed.out
    );
    let as_json = herald(&api, "support:operator", &["--json", "seal", "acme"])
        .await
        .ok()
        .json();
    assert_eq!(as_json, json!({"done": true, "sealed": 0}));
    let refused = herald(&api, "acme", &["seal", "acme"]).await;
    assert_ne!(refused.code, 0, "a tenant's token may not: {}", refused.out);
    herald_api.shutdown().await;
}
