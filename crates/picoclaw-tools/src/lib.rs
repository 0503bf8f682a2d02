//! Tools an agent can call: the [`Tool`] trait, the [`ToolRegistry`] that holds them, and the
//! built-in tools with the original PicoClaw's names and parameters (`read_file`, `write_file`,
//! `edit_file`, `append_file`, `list_dir`, `exec`) and long-term memory (`memory_search`,
//! `memory_write`). Every path a tool touches is opened beneath the workspace's directory handle,
//! which the [`Sandbox`] hands out.

mod args;
pub mod audit;
mod cron;
mod exec;
mod fs;
#[cfg(feature = "hardware")]
mod gpio;
#[cfg(feature = "hardware")]
mod hardware;
#[cfg(target_os = "linux")]
mod landlock;
mod lazy_client;
mod memory;
mod message;
mod sandbox;
mod settings;
mod subagent;
mod tool;
mod voice;
#[cfg(feature = "web")]
mod web_fetch;
#[cfg(feature = "web")]
mod web_search;

pub use cron::{CronConfig, CronTool, describe_job, job_chat};
pub use exec::{
    CappedRead, ExecConfig, ExecTool, GroupGuard, finish_capped, is_secret_env, is_secret_value,
    read_capped, spawn_capped,
};
pub use fs::{
    AppendFileTool, EditFileTool, ListDirTool, MAX_READ_BYTES, ReadFileTool, WriteFileTool,
};
#[cfg(feature = "hardware")]
pub use gpio::{GpioTool, MAX_PULSE_MS, MAX_WAIT_MS};
#[cfg(feature = "hardware")]
pub use hardware::{I2cTool, SpiTool, i2c_buses};
#[cfg(target_os = "linux")]
pub use landlock::{Policy, SYSTEM_READABLE, confine, confine_with, default_closed, landlock_abi};
pub use memory::{MemorySearchTool, MemoryWriteTool};
pub use message::MessageTool;
pub use picoclaw_api::tool::{Tool, ToolContext, ToolOutput, TurnOrigin, Typed, TypedTool};
pub use sandbox::{Access, Located, Sandbox, SandboxError};
pub use settings::{
    FetchSection, GpioSection, SearchBackendSection, SttSection, ToggleSection, WebSection,
};
pub use subagent::{
    BackgroundResult, LocalResults, SpawnTool, SubagentError, SubagentRunner, SubagentTool,
    Subagents,
};
pub use tool::ToolRegistry;
pub use voice::{MAX_AUDIO_BYTES, SttConfig, TranscribeTool, Transcriber};
/// Whether a conversation on `channel` gets the agent's answer in place (the terminal, the HTTP
/// API, the dashboard's chat): there is no chat to send a message or a later result to.
pub fn answers_in_place(channel: &str) -> bool {
    matches!(channel, "cli" | "api" | "web")
}

#[cfg(feature = "web")]
pub use web_fetch::{HostResolver, WebFetchConfig, WebFetchTool, forbidden_ip};
#[cfg(feature = "web")]
pub use web_search::{
    SearchBackend, SearchResult, WebSearchConfig, WebSearchTool, parse_duckduckgo,
};

use std::sync::Arc;

/// The Landlock ABI version the running kernel offers, or why there is none: not Linux.
#[cfg(not(target_os = "linux"))]
pub fn landlock_abi() -> Result<i32, String> {
    Err("Landlock is a Linux feature".to_owned())
}

/// Landlock is Linux-only: elsewhere no folder is closed by it.
#[cfg(not(target_os = "linux"))]
pub fn default_closed() -> Vec<std::path::PathBuf> {
    Vec::new()
}

/// Landlock is Linux-only: elsewhere a policy is only a description.
#[cfg(not(target_os = "linux"))]
#[derive(Clone, Debug, Default)]
pub struct Policy;

#[cfg(not(target_os = "linux"))]
impl Policy {
    pub fn new() -> Self {
        Self
    }
    pub fn readable(self, _: impl IntoIterator<Item = std::path::PathBuf>) -> Self {
        self
    }
    pub fn writable(self, _: impl IntoIterator<Item = std::path::PathBuf>) -> Self {
        self
    }
    pub fn closed(self, _: impl IntoIterator<Item = std::path::PathBuf>) -> Self {
        self
    }
    pub fn network(self, _: bool) -> Self {
        self
    }
}

/// Landlock is Linux-only: elsewhere commands run unconfined (`Ok(false)`).
#[cfg(not(target_os = "linux"))]
pub fn confine_with(_cmd: &mut tokio::process::Command, _policy: &Policy) -> Result<bool, String> {
    Ok(false)
}

/// Landlock is Linux-only: elsewhere commands run unconfined (`Ok(false)`).
#[cfg(not(target_os = "linux"))]
pub fn confine(
    _cmd: &mut tokio::process::Command,
    _writable: &[std::path::PathBuf],
    _network: bool,
) -> Result<bool, String> {
    Ok(false)
}

/// The built-in tools over one workspace: the five file tools, and `exec` when enabled.
pub fn builtin_tools(sandbox: Arc<Sandbox>, exec: ExecConfig) -> ToolRegistry {
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(ReadFileTool::new(Arc::clone(&sandbox))));
    tools.register(Arc::new(WriteFileTool::new(Arc::clone(&sandbox))));
    tools.register(Arc::new(EditFileTool::new(Arc::clone(&sandbox))));
    tools.register(Arc::new(AppendFileTool::new(Arc::clone(&sandbox))));
    tools.register(Arc::new(ListDirTool::new(Arc::clone(&sandbox))));
    if exec.enabled {
        tools.register(Arc::new(ExecTool::new(sandbox, exec)));
    }
    tools
}
