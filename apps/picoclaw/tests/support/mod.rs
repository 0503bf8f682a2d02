//! What the end-to-end tests share: a temporary picoclaw home with a config pointing at a
//! scripted endpoint, running the real binary, and reading what the model was sent.
#![allow(dead_code)]

use assert_cmd::Command;
use picoclaw_testkit::ScriptedEndpoint;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub(crate) const KEY: &str = "sk-test-0123456789abcdef";

/// A temporary PICOCLAW_HOME with a config pointing at the endpoint.
pub(crate) struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn with_config(endpoint: &ScriptedEndpoint, extra_defaults: Value) -> Self {
        let home = Self::new();
        let mut defaults = json!({
            "model": "openai/test-model",
            "workspace": home.workspace().display().to_string(),
        });
        for (k, v) in extra_defaults.as_object().unwrap() {
            defaults[k] = v.clone();
        }
        home.write_config(&json!({
            "agents": {"defaults": defaults},
            "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        }));
        home
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// A config whose model has no API key anywhere (logins and stored keys stand in).
    pub(crate) fn keyless(endpoint: &ScriptedEndpoint, model: &str, provider: &str) -> Self {
        let home = Self::new();
        home.write_config(&json!({
            "agents": {"defaults": {"model": model,
                "workspace": home.workspace().display().to_string()}},
            "providers": {provider: {"api_base": endpoint.base_url()}},
        }));
        home
    }

    /// The config file as it is now (to change and write back).
    pub(crate) fn config(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path().join("config.json")).unwrap())
            .unwrap()
    }

    pub(crate) fn write_config(&self, value: &Value) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_string_pretty(value).unwrap(),
        )
        .unwrap();
    }

    pub(crate) fn cmd(&self) -> Command {
        self.cmd_of(Command::cargo_bin("picoclaw").unwrap())
    }

    /// `bin` (another build of picoclaw) run in this home, as [`Home::cmd`] runs this one.
    pub(crate) fn cmd_with(&self, bin: &Path) -> Command {
        self.cmd_of(Command::new(bin))
    }

    fn cmd_of(&self, mut cmd: Command) -> Command {
        cmd.env("PICOCLAW_HOME", self.path())
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("RUST_LOG")
            .timeout(std::time::Duration::from_secs(60));
        for (name, _) in std::env::vars() {
            let provider_var = name.ends_with("_API_KEY")
                || name.ends_with("_BASE_URL")
                || name.ends_with("_BOT_TOKEN")
                || name.ends_with("_APP_TOKEN")
                || name.starts_with("AZURE_")
                || name == "MANAGED_IDENTITY_CLIENT_ID";
            if provider_var || name.starts_with("PICOCLAW_") && name != "PICOCLAW_HOME" {
                cmd.env_remove(name);
            }
        }
        cmd
    }
}

pub(crate) struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary off the async runtime so the endpoint keeps serving.
pub(crate) async fn run(mut cmd: Command, args: &[&str]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = cmd.args(&args).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The names of the tools a request offered the model.
pub(crate) fn offered_tools(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect()
}

pub(crate) fn tool_messages(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `picoclaw gateway` running in the background for a home; stopped when dropped.
pub(crate) struct BackgroundGateway(std::process::Child);

impl BackgroundGateway {
    pub(crate) fn start(home: &Home) -> Self {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
            .env("PICOCLAW_HOME", home.path())
            .env_remove("PICOCLAW_CONFIG")
            .arg("gateway")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for BackgroundGateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on (for a gateway `picoclaw status` must find).
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
