//! The local runner's binary, `herald-local` (what `make run` starts), as a process of its
//! own on moto: the tests that hold the local runner beside `sam local` run it this way.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Child;

use crate::aws::{moto_url, unique_prefix};
use crate::emulator::{Hosts, command_with_hosts, spawn_listening, workspace_root};
use crate::free_port;

pub struct RunnerProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`: the API as a custom domain mapped to the stage serves it.
    pub url: String,
    /// The prefix of its tables and queues.
    pub prefix: String,
    output: Arc<Mutex<Vec<u8>>>,
    hosts_file: Option<PathBuf>,
}

/// A binary of the workspace as `cargo build --workspace` builds it (debug).
pub fn workspace_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let binary = target.join("debug").join(name);
    assert!(
        binary.is_file(),
        "{} is missing: `cargo build --workspace` builds it (`make test` does)",
        binary.display()
    );
    binary
}

impl RunnerProcess {
    /// Starts `herald-local` with these `HERALD_*` settings, its own tables and queues, and
    /// `hosts` resolving as public DNS would; returns once its API answers.
    pub async fn start(settings: &[(&str, &str)], hosts: Hosts<'_>) -> Self {
        let port = free_port();
        let prefix = unique_prefix();
        let (mut command, hosts_file) = command_with_hosts(
            &[workspace_binary("herald-local")
                .to_string_lossy()
                .into_owned()],
            hosts,
        );
        command
            .env("AWS_ENDPOINT_URL", moto_url())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("HERALD_LOCAL_ADDR", format!("127.0.0.1:{port}"))
            .env("HERALD_LOCAL_PREFIX", &prefix)
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let (child, output) =
            spawn_listening(&mut command, "herald-local", port, Duration::from_secs(60)).await;
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            prefix,
            output,
            hosts_file,
        }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

impl Drop for RunnerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(file) = &self.hosts_file {
            let _ = std::fs::remove_file(file);
        }
    }
}
