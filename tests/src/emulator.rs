//! A function's release `bootstrap` under the Lambda Runtime Interface Emulator, the one
//! `sam local invoke` runs inside its container: the same binary Lambda would run, fed
//! events over the emulator's invoke API.
//!
//! `make test` builds the x86_64 bootstraps (`make build-x86_64`, into
//! `target/lambda-x86_64/<binary>/bootstrap`) and the emulator comes from the SAM CLI's
//! wheel (`scripts/deploy-tools.sh rie`); `HERALD_TEST_BOOTSTRAP_DIR` and
//! `HERALD_TEST_RIE` point elsewhere.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::free_port;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// The release bootstrap of `binary` (ingest, deliver or manage) for this machine.
pub fn bootstrap(binary: &str) -> PathBuf {
    let dir = std::env::var_os("HERALD_TEST_BOOTSTRAP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("lambda-x86_64")
        });
    let path = dir.join(binary).join("bootstrap");
    assert!(
        path.is_file(),
        "{} is missing: `make build-x86_64` builds it (`make test` does)",
        path.display()
    );
    path
}

/// The emulator binary from the SAM CLI wheel.
pub fn emulator_path() -> PathBuf {
    if let Some(path) = std::env::var_os("HERALD_TEST_RIE") {
        return PathBuf::from(path);
    }
    let output = std::process::Command::new(workspace_root().join("scripts/deploy-tools.sh"))
        .arg("rie")
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/deploy-tools.sh");
    assert!(
        output.status.success(),
        "scripts/deploy-tools.sh rie failed"
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Host names and the addresses they should resolve to for the function, as public DNS
/// would answer them; this machine has no DNS. Given any, the emulator runs in its own
/// mount namespace with an `/etc/hosts` of them (`unshare`, which needs root).
pub type Hosts<'a> = &'a [(&'a str, &'a str)];

/// A command that sees `hosts` in its `/etc/hosts`: run in a mount namespace of its own
/// with a private copy bound over the file (`unshare`, which needs root). Returns the
/// command and the file to remove when it is done.
pub fn command_with_hosts(
    program_and_args: &[String],
    hosts: Hosts<'_>,
) -> (Command, Option<PathBuf>) {
    if hosts.is_empty() {
        let mut command = Command::new(&program_and_args[0]);
        command.args(&program_and_args[1..]);
        return (command, None);
    }
    let file = std::env::temp_dir().join(format!("herald-hosts-{:016x}", rand::random::<u64>()));
    let mut lines = String::from("127.0.0.1 localhost\n");
    for (name, address) in hosts {
        lines.push_str(&format!("{address} {name}\n"));
    }
    std::fs::write(&file, lines).unwrap();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(&file)
        .args(program_and_args);
    (command, Some(file))
}

pub struct Emulator {
    child: Child,
    invoke_port: u16,
    invoke_url: String,
    output: Arc<Mutex<Vec<u8>>>,
    _hosts_file: Option<PathBuf>,
}

impl Emulator {
    /// Starts the emulator with `binary`'s bootstrap and `env` as its whole environment
    /// (with PATH), so nothing of the test process leaks into the function.
    pub async fn start(binary: &str, env: &HashMap<String, String>, hosts: Hosts<'_>) -> Self {
        let bootstrap = bootstrap(binary);
        let rie = emulator_path();
        let invoke_port = free_port();
        let runtime_port = free_port();
        let rie_args = [
            rie.to_string_lossy().into_owned(),
            "--runtime-interface-emulator-address".into(),
            format!("127.0.0.1:{invoke_port}"),
            "--runtime-api-address".into(),
            format!("127.0.0.1:{runtime_port}"),
            bootstrap.to_string_lossy().into_owned(),
        ];
        let (mut command, hosts_file) = command_with_hosts(&rie_args, hosts);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .kill_on_drop(false);
        let (mut child, output) = spawn_listening(
            &mut command,
            "the runtime emulator",
            invoke_port,
            Duration::from_secs(20),
        )
        .await;
        // In Lambda the Runtime API serves before the runtime starts; the emulator starts
        // its Runtime API server in a goroutine while it opens the invoke port (`go
        // startRuntimeAPI`, internal/lambda/rapid/sandbox.go), and the bootstrap starts at
        // the first invoke. So no invoke is sent before the Runtime API listens too.
        wait_listening(
            &mut child,
            &output,
            "the emulator's Runtime API",
            runtime_port,
            Duration::from_secs(20),
        )
        .await;
        Self {
            child,
            invoke_port,
            invoke_url: format!(
                "http://127.0.0.1:{invoke_port}/2015-03-31/functions/function/invocations"
            ),
            output,
            _hosts_file: hosts_file,
        }
    }

    /// Invokes the function with `event` and returns what it answered.
    pub async fn invoke(&self, event: &Value) -> Value {
        let response = reqwest::Client::new()
            .post(&self.invoke_url)
            .header("content-type", "application/json")
            .body(event.to_string())
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("invoking through the emulator");
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "the emulator answered {status}: {body}\n{}",
            self.output()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!(
                "the function answered no JSON ({e}): {body}\n{}",
                self.output()
            )
        })
    }

    /// Invokes the function with a file of `events/` the way a user would try it with
    /// `cargo lambda invoke --data-file` (the emulator serves the same invoke API as
    /// `cargo lambda watch`, under the function name `function`).
    pub async fn invoke_with_cargo_lambda(&self, relative: &str) -> Value {
        let cargo_lambda = workspace_root().join(".venv-deploy/bin/cargo-lambda");
        let output = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "invoke",
                "function",
                "--invoke-address",
                "127.0.0.1",
            ])
            .args(["--invoke-port", &self.invoke_port.to_string()])
            .args(["--output-format", "json", "--data-file"])
            .arg(workspace_root().join("events").join(relative))
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", cargo_lambda.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "cargo lambda invoke failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("cargo lambda invoke printed no JSON ({e}): {stdout}"))
    }

    /// The function's process (the emulator's child), once it has been started by a
    /// first invocation.
    pub fn function_pid(&self) -> Option<u32> {
        let pid = self.child.id()?;
        // The child may have been started by any of the emulator's threads.
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(|task| {
                let children = std::fs::read_to_string(task.ok()?.path().join("children")).ok()?;
                children.split_whitespace().next()?.parse().ok()
            })
            .next()
    }

    /// The init duration the emulator reported (`INIT REPORT(durationMs: …)`), in ms.
    pub fn init_duration_ms(&self) -> Option<f64> {
        let output = self.output();
        let (_, rest) = output.split_once("INIT REPORT(durationMs: ")?;
        rest.split(')').next()?.trim().parse().ok()
    }

    /// What the emulator and the function printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // SIGTERM: the emulator stops its runtime before it exits (a SIGKILL would leave
        // the bootstrap behind).
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if let Some(file) = &self._hosts_file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Spawns `command` with its output collected, and returns once something listens on
/// `port`; panics with the output if the process exits first or nothing listens within
/// `patience`.
pub async fn spawn_listening(
    command: &mut Command,
    what: &str,
    port: u16,
    patience: Duration,
) -> (Child, Arc<Mutex<Vec<u8>>>) {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let output = Arc::new(Mutex::new(Vec::new()));
    collect(child.stdout.take().unwrap(), output.clone());
    collect(child.stderr.take().unwrap(), output.clone());
    wait_listening(&mut child, &output, what, port, patience).await;
    (child, output)
}

/// Returns once something listens on `port`; panics with `child`'s output if it exits
/// first or nothing listens within `patience`.
async fn wait_listening(
    child: &mut Child,
    output: &Arc<Mutex<Vec<u8>>>,
    what: &str,
    port: u16,
    patience: Duration,
) {
    let said = |output: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&output.lock().unwrap()).into_owned()
    };
    let deadline = Instant::now() + patience;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", said(output));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port}: {}",
            said(output)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends what `stream` yields to `into`, in the background.
pub(crate) fn collect(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) {
    tokio::spawn(async move {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
}

/// A file of `events/`, parsed.
pub fn event_file(relative: &str) -> Value {
    let path = workspace_root().join("events").join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut event: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    sent_now(&mut event);
    event
}

/// An SQS event's records as SQS hands over messages sent just now: the files' own
/// `SentTimestamp` is the day they were written, and deliver gives up a message SQS is
/// about to delete (14 days after it was sent).
pub fn sent_now(event: &mut Value) {
    let now = chrono::Utc::now().timestamp_millis().to_string();
    if let Some(records) = event.get_mut("Records").and_then(Value::as_array_mut) {
        for record in records {
            if let Some(sent) = record.pointer_mut("/attributes/SentTimestamp") {
                *sent = Value::String(now.clone());
            }
        }
    }
}

/// [`event_file`] written to a file of its own under the system's temporary directory, for
/// tools that read an event from a path (`sam local invoke -e`).
pub fn event_file_now(relative: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "herald-event-{:016x}-{}",
        rand::random::<u64>(),
        relative.replace('/', "-")
    ));
    std::fs::write(&path, event_file(relative).to_string()).expect("writing the event");
    path
}

/// Every file under `events/`, as `function/name.json`.
pub fn event_files() -> Vec<String> {
    let mut files = Vec::new();
    let root = workspace_root().join("events");
    for function in std::fs::read_dir(&root).unwrap() {
        let function = function.unwrap().path();
        if !function.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&function).unwrap() {
            let file = file.unwrap().path();
            files.push(
                file.strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    files.sort();
    files
}
