//! AWS's own local runner, the SAM CLI, running Herald's release bootstraps in Docker:
//! `sam local invoke`, `sam local start-api` and `sam local start-lambda` on the template
//! `sam build` made for x86_64 (`make build-x86_64`, in `target/sam-build-x86_64`).
//!
//! No image registry is reachable here, so the functions run on a stand-in for
//! `provided.al2023` built from this machine's files (`scripts/lambda-base-image.sh`),
//! passed with `--invoke-image … --skip-pull-image`. Docker must run: the helpers start it
//! (`scripts/docker.sh`) and fail, never skip, when they cannot.
//!
//! SAM runs each function in a container on Docker's default bridge (its
//! `--docker-network host` leaves them there), so the functions reach moto through a
//! [`RecordingProxy`] listening on the bridge's gateway address; the proxy also records
//! their calls for the IAM checks. SAM passes a function only the variables the template
//! declares, with the values of `--env-vars`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::aws::{TestAws, moto_url};
use crate::aws_proxy::RecordingProxy;
use crate::emulator::{spawn_listening, workspace_root};
use crate::free_port;
use herald_local::Provisioned;
use herald_local::poller::{DeliverTarget, PollSettings, QueueSource};

/// The settings both the local runner and SAM's functions get in the tests that hold them
/// side by side: the template's variables where SAM can set them.
pub fn settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HERALD_ALLOW_HTTP", "true"),
        ("HERALD_ALLOW_LOOPBACK", "true"),
        ("HERALD_TENANT_CLAIM", "tenant"),
        ("HERALD_IDEMPOTENCY_KEY_PREFIX", "ffm_wh_"),
        // One attempt in each test's time: the answers do not depend on when they are read.
        ("HERALD_RETRY_SCHEDULE", "1h"),
        ("HERALD_SUBSCRIPTION_CACHE_SECONDS", "0"),
        // The deployment offers v1a and RSA signatures, so tenants' own keys are made and
        // rotated on both sides. As the template sets them: the secrets' names, which say
        // what is offered (SAM passes only variables the template declares). No test here
        // has a subscription signing with the deployment's keys, so nothing reads them.
        (
            "HERALD_ED25519_SIGNING_KEY_SECRET",
            "herald-sam-test/ed25519",
        ),
        ("HERALD_RSA_SIGNING_KEY_SECRET", "herald-sam-test/rsa"),
        // Each tenant's requests a second counted, as the template's default has it.
        ("HERALD_MAX_REQUESTS_PER_SECOND", "100"),
    ]
}

/// SAM's `--env-vars` for a deployment's tables and queues with [`settings`].
pub fn sam_variables(provisioned: &Provisioned) -> BTreeMap<String, String> {
    let mut variables: BTreeMap<String, String> = provisioned.environment().into_iter().collect();
    for (name, value) in settings() {
        variables.insert(name.into(), value.into());
    }
    variables
}

/// Runs a script of `scripts/` and returns what it printed; panics with its output when it
/// fails.
fn script(name: &str) -> String {
    let output = std::process::Command::new(workspace_root().join("scripts").join(name))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{name}: {e}"));
    assert!(
        output.status.success(),
        "scripts/{name} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The address of Docker's default bridge on this machine, where containers reach it:
/// the network's gateway, or the bridge interface's own address when Docker names none.
fn bridge_gateway() -> IpAddr {
    let inspect = |format: &str| {
        let output = std::process::Command::new("docker")
            .args(["network", "inspect", "bridge", "--format", format])
            .output()
            .expect("running docker network inspect");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    if let Ok(gateway) = inspect("{{range .IPAM.Config}}{{.Gateway}}{{end}}").parse() {
        return gateway;
    }
    let interface = inspect(r#"{{index .Options "com.docker.network.bridge.name"}}"#);
    let text = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &interface])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let from_interface = text
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok());
    // Without `ip`: Docker gives the bridge the subnet's first address.
    let subnet = inspect("{{range .IPAM.Config}}{{.Subnet}}{{end}}");
    let from_subnet = subnet
        .split('/')
        .next()
        .and_then(|network| network.parse::<std::net::Ipv4Addr>().ok())
        .map(|network| IpAddr::from(std::net::Ipv4Addr::from(u32::from(network) + 1)));
    from_interface
        .or(from_subnet)
        .unwrap_or_else(|| panic!("Docker's bridge {interface} has no address: {text} {subnet}"))
}

pub fn sam_cli() -> PathBuf {
    let sam = workspace_root().join(".venv-deploy/bin/sam");
    assert!(
        sam.is_file(),
        "{} is missing: `make deploy-tools` installs it (`make test` does)",
        sam.display()
    );
    sam
}

/// The template `sam build` made for x86_64.
pub fn built_template() -> PathBuf {
    let template = workspace_root().join("target/sam-build-x86_64/template.yaml");
    assert!(
        template.is_file(),
        "{} is missing: `make build-x86_64` builds it (`make test` does)",
        template.display()
    );
    template
}

/// The functions' configuration under SAM and the way to run them.
pub struct Sam {
    template: PathBuf,
    image: String,
    env_file: PathBuf,
    hosts: Vec<String>,
    /// The template's parameters, as `--parameter-overrides` (`Name=value`).
    parameters: Vec<String>,
    /// Where the functions' AWS calls go: moto, through this proxy on Docker's bridge.
    pub aws: RecordingProxy,
}

impl Sam {
    /// Docker running, the stand-in image built, and `variables` (the template's
    /// variables to set, for every function) written for `--env-vars`, with the AWS
    /// endpoint added. `hosts` resolve in the containers as public DNS would.
    pub async fn new(variables: &BTreeMap<String, String>, hosts: &[(&str, &str)]) -> Self {
        script("docker.sh");
        let image = script("lambda-base-image.sh");
        let template = built_template();
        let aws = RecordingProxy::start_on(bridge_gateway(), moto_url()).await;
        let mut variables = variables.clone();
        variables.insert("HERALD_AWS_ENDPOINT_URL".into(), aws.url());
        let env_file = std::env::temp_dir().join(format!(
            "herald-sam-env-{:016x}.json",
            rand::random::<u64>()
        ));
        std::fs::write(
            &env_file,
            serde_json::json!({ "Parameters": variables }).to_string(),
        )
        .expect("writing the --env-vars file");
        Self {
            template,
            image,
            env_file,
            hosts: hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect(),
            parameters: vec!["Architecture=x86_64".into()],
            aws,
        }
    }

    /// The same, deployed with these template parameters too (`Name=value`), as a
    /// `sam deploy --parameter-overrides` would set them.
    pub fn with_parameters(mut self, parameters: &[&str]) -> Self {
        self.parameters
            .extend(parameters.iter().map(|p| (*p).to_owned()));
        self
    }

    fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(sam_cli());
        command
            .args(["local", subcommand, "--template"])
            .arg(&self.template)
            .args(["--invoke-image", &self.image, "--skip-pull-image"])
            .arg("--parameter-overrides")
            .args(&self.parameters)
            .args(["--region", "us-east-1", "--env-vars"])
            .arg(&self.env_file)
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null());
        for host in &self.hosts {
            command.args(["--add-host", host]);
        }
        command
    }

    /// `sam local invoke <function> -e <event>`: the function's answer. Each invoke starts a
    /// container of its own, so it runs again (up to twice more) when the bootstrap found
    /// the emulator's Runtime API not yet listening: nothing of the function ran then.
    pub async fn invoke(&self, function: &str, event: &Path) -> Value {
        let mut tries = 0;
        let output = loop {
            tries += 1;
            let output = self
                .command("invoke")
                .arg(function)
                .arg("--event")
                .arg(event)
                .output()
                .await
                .expect("running sam local invoke");
            let said = [&output.stdout[..], &output.stderr[..]].concat();
            let said = String::from_utf8_lossy(&said);
            if output.status.success() || tries == 3 || !runtime_api_not_listening(&said) {
                break output;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "sam local invoke {function} -e {} failed: {stdout}{stderr}",
            event.display()
        );
        let answer = stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(answer).unwrap_or_else(|e| {
            panic!(
                "sam local invoke {function} -e {} printed no JSON answer ({e}): {stdout}{stderr}",
                event.display()
            )
        })
    }

    /// `sam local start-api`: the template's HTTP API, on a free loopback port.
    pub async fn start_api(&self) -> SamServer {
        SamServer::start(self.command("start-api"), "start-api").await
    }

    /// `sam local start-lambda`: Lambda's Invoke API for the template's functions.
    pub async fn start_lambda(&self) -> SamServer {
        SamServer::start(self.command("start-lambda"), "start-lambda").await
    }
}

impl Drop for Sam {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.env_file);
    }
}

/// Whether `output` shows a function's runtime failing its start because the emulator's
/// Runtime API did not listen yet.
///
/// In Lambda the Runtime API serves before the runtime starts. The emulator SAM runs in
/// each container (aws-lambda-runtime-interface-emulator) starts its Runtime API server in
/// a goroutine (`go startRuntimeAPI` in `internal/lambda/rapid/sandbox.go`) and listens for
/// invokes at the same time, so on a busy machine an invoke that arrives as the container
/// starts can start the bootstrap first. The bootstrap's first request for an event is
/// then refused, and the runtime exits before Herald's handler ever ran.
pub fn runtime_api_not_listening(output: &str) -> bool {
    // The runtime's address in SAM's containers: the emulator's default.
    let refused = output.lines().any(|line| {
        line.contains("127.0.0.1:9001")
            && line.contains("tcp connect error")
            && line.contains("Connection refused")
    });
    refused && output.contains("(rapid) Init failed")
}

/// A running `sam local start-api` or `start-lambda`; stopped (with its containers) when
/// dropped.
pub struct SamServer {
    child: Child,
    pub url: String,
    output: Arc<Mutex<Vec<u8>>>,
}

impl SamServer {
    async fn start(mut command: Command, what: &str) -> Self {
        let port = free_port();
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            // One container per function, all started (and ready) before SAM listens, and
            // kept. Started at a function's first call instead (LAZY), the call can reach
            // the emulator before its Runtime API listens (see [`runtime_api_not_listening`]).
            .args(["--warm-containers", "EAGER"])
            .kill_on_drop(false);
        let (child, output) = spawn_listening(
            &mut command,
            &format!("sam local {what}"),
            port,
            Duration::from_secs(90),
        )
        .await;
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            output,
        }
    }

    /// What SAM and the functions printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

impl Drop for SamServer {
    fn drop(&mut self) {
        // SIGTERM: SAM stops and removes its warm containers before it exits. Not SIGINT
        // (Ctrl-C): a process started in the background of a shell without job control,
        // as CI's may be, inherits SIGINT ignored, and SAM then runs on until killed,
        // leaving its containers behind.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..300 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.start_kill();
        }
    }
}

/// A whole Herald under SAM: `start-api` for the HTTP functions, `start-lambda` for
/// deliver, and the local runner's event source handing the delivery queue's batches to it
/// through the Invoke API, as the SQS event source mapping would.
pub struct SamHerald {
    pub aws: TestAws,
    pub api: SamServer,
    _lambda: Option<SamServer>,
    _sam: Sam,
    stop: tokio::sync::watch::Sender<bool>,
}

impl SamHerald {
    /// `variables` gives the template's variables for the tables and queues provisioned
    /// here; without `deliver`, nothing takes the queue's tasks (a deploy whose event
    /// source is off).
    pub async fn start(
        variables: impl Fn(&Provisioned) -> BTreeMap<String, String>,
        hosts: &[(&str, &str)],
        deliver: bool,
    ) -> Self {
        let aws = TestAws::new().await;
        let sam = Sam::new(&variables(&aws.provisioned), hosts).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let (api, lambda) = if deliver {
            let (api, lambda) = tokio::join!(sam.start_api(), sam.start_lambda());
            let (url, arn) = aws.provisioned.queues["DeliveryQueue"].clone();
            let source = QueueSource {
                client: aws.sqs.clone(),
                url,
                arn,
                region: "us-east-1".into(),
            };
            tokio::spawn(herald_local::poller::run(
                source,
                DeliverTarget::Invoke {
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(120))
                        .build()
                        .expect("an HTTP client"),
                    endpoint: lambda.url.clone(),
                    function: "DeliverFunction".into(),
                },
                PollSettings {
                    wait_seconds: 1,
                    pollers: 1,
                    print_attempts: false,
                    ..PollSettings::default()
                },
                stopped,
            ));
            (api, Some(lambda))
        } else {
            (sam.start_api().await, None)
        };
        Self {
            aws,
            api,
            _lambda: lambda,
            _sam: sam,
            stop,
        }
    }
}

impl Drop for SamHerald {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::runtime_api_not_listening;

    #[test]
    fn the_emulators_runtime_api_race_is_told_from_a_function_that_fails_its_start() {
        // As a CI run printed it.
        let race = r#"START RequestId: faefc9aa-e56d-4b1b-adf7-c5eca75fd1e5 Version: $LATEST
Error: hyper_util::client::legacy::Error(Connect, ConnectError("tcp connect error", 127.0.0.1:9001, Os { code: 111, kind: ConnectionRefused, message: "Connection refused" }))
06 Dec 2026 07:12:32,539 [ERROR] (rapid) Init failed InvokeID= error=Runtime exited with error: exit status 1
06 Dec 2026 07:12:32,539 [ERROR] (rapid) Invoke failed error=Runtime exited with error: exit status 1 InvokeID=faefc9aa-e56d-4b1b-adf7-c5eca75fd1e5"#;
        assert!(runtime_api_not_listening(race));
        // Herald's own start failing is never taken for it, nor is a refused connection
        // elsewhere, nor the refusal without the failed start.
        let herald = r#"Error: HERALD_EVENTS_TABLE is not set
06 Dec 2026 07:12:32,539 [ERROR] (rapid) Init failed InvokeID= error=Runtime exited with error: exit status 1"#;
        assert!(!runtime_api_not_listening(herald));
        let moto = r#"Error: dispatch failure: io error: tcp connect error: 172.17.0.1:4566: Connection refused
06 Dec 2026 07:12:32,539 [ERROR] (rapid) Init failed InvokeID= error=Runtime exited with error: exit status 1"#;
        assert!(!runtime_api_not_listening(moto));
        assert!(!runtime_api_not_listening(race.lines().nth(1).unwrap()));
    }
}
