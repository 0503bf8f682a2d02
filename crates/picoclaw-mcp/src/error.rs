//! What can go wrong with MCP servers: their configuration, starting one, and calling a tool.
//! Each variant says what the caller (or the operator) can do about it.

use std::time::Duration;

/// A problem in `tools.mcp`. The operator fixes config.json (or disables the server).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `tools.mcp` does not have the section's shape (a wrong type).
    #[error("tools.mcp: {0}")]
    Section(serde_json::Error),
    /// One server's settings are wrong; `problem` says which and how to fix it.
    #[error("tools.mcp.servers.{server}: {problem}")]
    Server {
        /// The server's name (its key in `tools.mcp.servers`).
        server: String,
        problem: String,
    },
}

impl ConfigError {
    pub(crate) fn server(server: &str, problem: impl Into<String>) -> Self {
        ConfigError::Server {
            server: server.to_owned(),
            problem: problem.into(),
        }
    }
}

/// Why a server could not be started (or reached) and its tools listed. The agent runs without
/// it; [`crate::Started::failed`] pairs each with the server's name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configured command is not installed (or not on PATH): install it or fix `command`.
    #[error("the command `{command}` was not found")]
    CommandNotFound { command: String },
    /// The command exists but could not be started (permissions, a bad interpreter...).
    #[error("cannot start `{command}`: {error}")]
    Spawn {
        command: String,
        error: std::io::Error,
    },
    /// Landlock rules could not be built for it; it is not started unconfined. Fix the
    /// writable paths, or set `sandbox: false` to accept running it unconfined.
    #[error("could not set up its sandbox ({0}); not started")]
    Sandbox(String),
    /// Its folder, working folder or a header could not be prepared: fix the server's settings
    /// or the folder's permissions.
    #[error("{0}")]
    Setup(String),
    /// The server could not be reached or refused the connection (legacy SSE transport).
    #[error("{0}")]
    Connect(String),
    /// The server started but the MCP handshake failed (not an MCP server, a wrong URL, a
    /// protocol mismatch).
    #[error("the MCP handshake{} failed: {error}", url.as_deref().map(|u| format!(" with {u}")).unwrap_or_default())]
    Handshake { url: Option<String>, error: String },
    /// The server answered the handshake but listing its tools failed.
    #[error("listing its tools failed: {0}")]
    ListTools(String),
    /// The server did not finish starting in time (`tools.mcp` connect timeout).
    #[error("it did not finish starting within {} s", .0.as_secs())]
    Timeout(Duration),
}

impl StartError {
    /// Whether starting it again later may succeed (it is restarted with backoff after dying);
    /// the others need the operator to change something first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StartError::Connect(_)
                | StartError::Handshake { .. }
                | StartError::ListTools(_)
                | StartError::Timeout(_)
        )
    }
}

/// Why calling an MCP tool gave no result. The model sees it as `<tool> (MCP server <name>):
/// <message>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The arguments are not a JSON object: the model should call again with an object.
    #[error("arguments must be an object, got {0}")]
    BadArguments(String),
    /// The server is down (being restarted) or no longer offers the tool.
    #[error("the server is not available: {0}. Try again later or do without it.")]
    Unavailable(String),
    /// No answer within `tools.mcp.call_timeout_seconds`.
    #[error("no answer within {} s (tools.mcp.call_timeout_seconds)", .0.as_secs())]
    Timeout(Duration),
    /// The server stopped during the call; it is being restarted.
    #[error("the server stopped during the call; it is being restarted")]
    Stopped,
    /// The server refused or failed the request (a protocol-level error).
    #[error("the call failed: {0}")]
    Failed(String),
    /// The tool ran and reported an error of its own (its text).
    #[error("reported an error: {0}")]
    Reported(String),
}
