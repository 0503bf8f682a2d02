//! `exec(command, working_dir, timeout)`: runs a shell command in the workspace.
//!
//! The model's command *is* a shell command, run with `sh -c`; picoclaw never builds a shell
//! string from model output itself. Safety comes from elsewhere: a deny-list of destructive
//! patterns checked before running, the working folder confined by the [`Sandbox`], a timeout,
//! an output cap, stdin closed, the command's whole process group killed when it ends, times
//! out, or the turn is cancelled, and on Linux the kernel's Landlock confinement (writes only in
//! the workspace and the temporary folder; see `landlock.rs`).
//!
//! This module holds the settings and the [`Tool`] itself (arguments, the working folder, the
//! timeout); `policy` decides what a command may do and see (the deny rules, the credential
//! variables kept from it), and `process` spawns it (Landlock, the process group, output capture).

mod policy;
mod process;

pub use policy::{is_secret_env, is_secret_value};
pub use process::{CappedRead, GroupGuard, finish_capped, read_capped, spawn_capped};

use crate::args::{parse, schema};
use crate::sandbox::{Access, Sandbox};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use policy::DenyList;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Settings of the `exec` tool (config `tools.exec`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExecConfig {
    /// Whether the tool is offered to the model at all.
    pub enabled: bool,
    /// Used when the model gives no `timeout`.
    pub default_timeout: Duration,
    /// The most a model may ask for.
    pub max_timeout: Duration,
    /// stdout and stderr are each cut at this many bytes.
    pub max_output_bytes: usize,
    /// Extra deny patterns (regular expressions, case-insensitive) on top of the built-in list.
    pub deny_patterns: Vec<String>,
    /// Confine commands with Landlock where the kernel has it (Linux): reads of the system, the
    /// workspace and `readable_paths`; writes only in the workspace, the temporary folder and
    /// `writable_paths`; `closed_paths` never (with the sandbox unrestricted: everything but
    /// `closed_paths`).
    pub landlock: bool,
    /// Folders besides the workspace and the temporary folder that confined commands may write in.
    pub writable_paths: Vec<std::path::PathBuf>,
    /// Folders outside the workspace that confined commands may read (`tools.exec.readable_paths`).
    pub readable_paths: Vec<std::path::PathBuf>,
    /// Folders no command may read or write (picoclaw's home; the owner's home is added).
    pub closed_paths: Vec<std::path::PathBuf>,
    /// Outbound TCP from commands (`tools.exec.network`, default true; refused with Landlock
    /// ABI 4+ when false).
    pub network: bool,
    /// Refuse to run commands where Landlock is unavailable (`tools.exec.require_sandbox`).
    pub require_sandbox: bool,
    /// Tests of the fail-closed path: building the Landlock rules fails.
    #[cfg(test)]
    pub(crate) inject_ruleset_error: bool,
}

impl Default for ExecConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_timeout: Duration::from_secs(60),
            max_timeout: Duration::from_secs(300),
            max_output_bytes: 32 * 1024,
            deny_patterns: Vec::new(),
            landlock: true,
            writable_paths: Vec::new(),
            readable_paths: Vec::new(),
            closed_paths: Vec::new(),
            network: true,
            require_sandbox: false,
            #[cfg(test)]
            inject_ruleset_error: false,
        }
    }
}

/// The `exec` tool.
pub struct ExecTool {
    sandbox: Arc<Sandbox>,
    config: ExecConfig,
    deny: DenyList,
}

impl std::fmt::Debug for ExecTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecTool")
            .field("root", &self.sandbox.root())
            .field("config", &self.config)
            .finish()
    }
}

impl ExecTool {
    pub fn new(sandbox: Arc<Sandbox>, config: ExecConfig) -> Self {
        let deny = DenyList::new(&config.deny_patterns);
        Self {
            sandbox,
            config,
            deny,
        }
    }

    /// The deny rule `command` breaks, if any (what the tool would refuse).
    pub fn denied(&self, command: &str) -> Option<String> {
        self.deny.check(command)
    }
}

#[derive(Deserialize)]
struct ExecArgs {
    command: String,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

#[async_trait]
impl Tool for ExecTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "exec",
            "Run a shell command in the workspace and return its output.",
            schema(
                &[
                    ("command", "string", "Shell command"),
                    (
                        "working_dir",
                        "string",
                        "Directory to run in (default: workspace)",
                    ),
                    ("timeout", "integer", "Timeout in seconds"),
                ],
                &["command"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: ExecArgs = match parse("exec", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let command = args.command.trim();
        if command.is_empty() {
            return ToolOutput::error("exec: command must not be empty");
        }
        if let Some(rule) = self.deny.check(command) {
            tracing::warn!(command, rule, "exec refused");
            return ToolOutput::error(format!(
                "exec: refused: '{}' matches the deny rule '{rule}'. This command is blocked for \
                 safety; do not retry it.",
                shorten(command, 200)
            ));
        }
        let dir = match &args.working_dir {
            Some(d) if !d.trim().is_empty() => {
                // Opened beneath the workspace; the command starts in the folder the kernel
                // reports for that handle.
                let opened = match self.sandbox.locate(d, Access::Read) {
                    Ok(at) => Sandbox::io(move || at.dir.subdir(&at.path)).await,
                    Err(e) => Err(e),
                };
                match opened {
                    Ok(sub) => sub.root().to_path_buf(),
                    Err(e) => {
                        return ToolOutput::error(format!("exec: working_dir: {}", e.for_model()));
                    }
                }
            }
            _ => self.sandbox.root().to_path_buf(),
        };
        let timeout = args
            .timeout
            .filter(|t| *t > 0)
            .map(Duration::from_secs)
            .unwrap_or(self.config.default_timeout)
            .min(self.config.max_timeout);
        self.run(command, &dir, timeout).await
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Fail closed: when the confinement cannot be set up, the command does not run.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_ruleset_that_cannot_be_built_means_the_command_is_not_run() {
        let ws = tempfile::tempdir().unwrap();
        let sandbox = Arc::new(Sandbox::new(ws.path()).unwrap());
        let config = ExecConfig {
            inject_ruleset_error: true,
            ..ExecConfig::default()
        };
        let tool = ExecTool::new(sandbox, config);
        let ctx = crate::ToolContext::new(picoclaw_api::SessionKey::new("t"));
        let out = tool
            .call(&ctx, serde_json::json!({"command": "touch ran.txt"}))
            .await;
        assert!(out.is_error, "{}", out.content);
        assert!(
            out.content
                .contains("could not set up the Landlock confinement"),
            "{}",
            out.content
        );
        assert!(!ws.path().join("ran.txt").exists(), "the command ran");
    }
}
