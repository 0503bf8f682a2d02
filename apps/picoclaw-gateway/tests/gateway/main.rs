//! End to end: the real `picoclaw-gateway` binary, a scripted OpenAI-compatible model on
//! 127.0.0.1, and an HTTP client speaking the OpenAI API to the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.
// Waits for something to happen poll for up to 30 s: a gateway starting on a loaded 2-core CI
// machine can take seconds, and a wait that passes returns as soon as it sees the event.

use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "gw-test-key-0123456789";

struct Gateway {
    child: Child,
    base: String,
    /// Every line the gateway logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway on a free port and waits until it listens.
    fn start(home: &Path) -> Gateway {
        Self::start_with(home, &[], "warn")
    }

    fn start_with(home: &Path, args: &[&str], log: &str) -> Gateway {
        Self::start_env(home, args, log, &[])
    }

    /// [`Gateway::start_with`] with variables added to its environment.
    fn start_env(home: &Path, args: &[&str], log: &str, vars: &[(&str, String)]) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_picoclaw-gateway"));
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command
            .args(args)
            .env("PICOCLAW_HOME", home)
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Shown when a test fails.
                eprintln!("[gateway] {line}");
                lines.lock().unwrap().push(line.clone());
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway did not start listening");
        Gateway {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        // The grace period is 5 s; a loaded CI machine gets more before this says so.
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("the gateway did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn home_with(endpoint: &ScriptedEndpoint, gateway: Value) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "gateway": gateway,
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    home
}

/// Changes the config in `home`.
fn edit_config(home: &std::path::Path, edit: impl FnOnce(&mut Value)) {
    let file = home.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&file, config.to_string()).unwrap();
}

/// Replaces the `channels` section of the config in `home`.
#[cfg(any(
    feature = "telegram",
    feature = "slack",
    feature = "discord",
    feature = "pico",
    feature = "maixcam",
    feature = "line"
))]
fn set_channels(home: &std::path::Path, channels: Value) {
    edit_config(home, |config| config["channels"] = channels);
}

fn client() -> reqwest::Client {
    picoclaw_http::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn complete(
    c: &reqwest::Client,
    gw: &Gateway,
    session: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = c
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY)
        .json(&body);
    if let Some(s) = session {
        req = req.header("X-Session-Key", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The tool results in a request to the model.
fn tool_messages(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|msgs| {
            msgs.iter()
                .filter(|m| m["role"] == "tool")
                .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

mod agents;
mod api;
mod azure;
mod dashboard;
#[cfg(feature = "telegram")]
mod faults;
#[cfg(feature = "postgres")]
mod instances;
#[cfg(feature = "maixcam")]
mod maixcam;
#[cfg(all(
    feature = "whatsapp",
    feature = "line",
    feature = "feishu",
    feature = "dingtalk",
    feature = "qq",
    feature = "onebot",
    feature = "wecom"
))]
mod messengers;
mod model;
#[cfg(feature = "pico")]
mod pico;
mod slack;
mod telegram;
