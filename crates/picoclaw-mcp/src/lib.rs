//! MCP (Model Context Protocol) for picoclaw: connects to the servers in `tools.mcp` (stdio
//! child processes and streamable HTTP, through the official `rmcp` SDK), lists their tools and
//! offers each as a picoclaw tool named `mcp_<server>__<tool>`, as the original PicoClaw names
//! them.
//!
//! Servers start concurrently; one that is missing, crashes or hangs is reported once and the
//! agent runs without it. A stdio server gets only a minimal environment (PATH, USER, LANG,
//! TERM, TMPDIR) plus what its `env` / `env_file` name; it runs in a folder of its own under
//! picoclaw's home (its HOME and caches too), never the workspace, and under Landlock: it may
//! write only there and in the temporary folder.

mod catalog;
mod client;
mod config;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
#[cfg(feature = "serve")]
mod server;
mod sse;

pub use catalog::{McpCall, McpSearch, registry_tools};
pub use client::{
    Connected, MAX_RESULT_BYTES, McpTool, Started, clean_schema, connect, containment, start_all,
    tool_name,
};
pub use config::{
    McpConfig, McpSection, McpServeSection, McpServerSection, ServerConfig, Transport, expand_vars,
    parse_env_file, server_folder_name,
};
pub use error::{CallError, ConfigError, StartError};
#[cfg(feature = "serve")]
pub use server::{ServeError, ToolServer, serve_stdio};
