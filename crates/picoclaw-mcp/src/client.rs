//! Connecting to MCP servers and offering their tools as picoclaw tools.

use crate::config::{McpConfig, ServerConfig, Transport};
use crate::error::{CallError, StartError};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_tools::{Tool, ToolContext, ToolOutput};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest tool result passed on to the model (the agent caps it further).
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// The variables a stdio server gets from picoclaw's own environment; nothing else (no provider
/// keys) is passed on implicitly. HOME and the XDG folders point into the server's own folder.
const BASE_ENV: &[&str] = &["PATH", "USER", "LANG", "LC_ALL", "TERM", "TZ", "TMPDIR"];

/// Makes `dir` (and missing parents) readable by picoclaw's user only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The one place an MCP stdio server is confined: Landlock lets it write only in its own
/// folder, the temporary folder and `extra` (its configured working folder and
/// `writable_paths`), with the tools crate's policy for everything else. Returns whether the
/// kernel enforces it; an error means the rules could not be built (do not start it then).
fn confine_server(
    cmd: &mut tokio::process::Command,
    server_dir: &Path,
    extra: &[PathBuf],
    network: bool,
) -> Result<bool, String> {
    let mut writable = vec![server_dir.to_path_buf(), std::env::temp_dir()];
    writable.extend(extra.iter().cloned());
    // The program the operator configured may live in a home folder (a venv, pyenv, nvm):
    // its install folder stays readable, nothing else of the home.
    let program = std::path::Path::new(cmd.as_std().get_program());
    // Files the configured arguments name (`python /srv/mcp/server.py`) stay readable with
    // their folder (a script imports its neighbours).
    let named: Vec<PathBuf> = cmd
        .as_std()
        .get_args()
        .map(Path::new)
        .filter(|p| p.is_absolute() && p.parent().is_some())
        .filter_map(|p| match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => Some(p.to_path_buf()),
            Ok(_) => p.parent().map(Path::to_path_buf),
            Err(_) => None,
        })
        .filter(|p| p.parent().is_some())
        .collect();
    // Never a folder that is, or holds, a closed one (`~/bin/server` must not open `~`).
    let closed: Vec<PathBuf> = picoclaw_tools::default_closed()
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    let safe = |grant: &PathBuf| {
        let real = grant.canonicalize().unwrap_or_else(|_| grant.clone());
        !closed.iter().any(|c| c.starts_with(&real))
    };
    let readable: Vec<PathBuf> = install_roots(program)
        .into_iter()
        .chain(named)
        .filter(|g| safe(g))
        .collect();
    let policy = picoclaw_tools::Policy::new()
        .readable(readable)
        .writable(writable)
        .network(network);
    picoclaw_tools::confine_with(cmd, &policy)
}

/// A bare program name found on PATH, preferring a copy outside the folders commands may not
/// read (a pyenv shim or `~/.local/bin` comes first on many PATHs, but under Landlock it
/// cannot even start); the name as given when there is none or it is a path already.
fn outside_closed_folders(command: &str) -> PathBuf {
    if Path::new(command).components().count() > 1 {
        return PathBuf::from(command);
    }
    let Some(paths) = std::env::var_os("PATH") else {
        return PathBuf::from(command);
    };
    let closed: Vec<PathBuf> = picoclaw_tools::default_closed()
        .into_iter()
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    let candidates: Vec<PathBuf> = std::env::split_paths(&paths)
        .map(|dir| dir.join(command))
        .filter(|c| c.is_file())
        .collect();
    candidates
        .iter()
        .find(|c| {
            let real = c.canonicalize().unwrap_or_else(|_| c.to_path_buf());
            !closed
                .iter()
                .any(|home| real.starts_with(home) || c.starts_with(home))
        })
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from(command))
}

/// The folders a program is installed in: for `<root>/bin/<name>` the root, else its folder;
/// both for the path as found on PATH and for where its links lead (a venv's python is a link
/// into the interpreter's own installation).
fn install_roots(program: &Path) -> Vec<PathBuf> {
    let found = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    let root = |path: &Path| -> Option<PathBuf> {
        let parent = path.parent()?;
        if parent.file_name().is_some_and(|n| n == "bin") {
            parent.parent().map(Path::to_path_buf)
        } else {
            Some(parent.to_path_buf())
        }
    };
    let mut roots = Vec::new();
    if let Some(found) = found {
        roots.extend(root(&found));
        if let Ok(real) = found.canonicalize() {
            roots.extend(root(&real));
        }
    }
    roots
}

/// How a stdio server is contained, for `picoclaw mcp list`: its folder, its working folder,
/// and whether Landlock confines it. `None` for HTTP servers (they run elsewhere).
pub fn containment(server: &ServerConfig) -> Option<String> {
    let Transport::Stdio {
        dir, cwd, sandbox, ..
    } = &server.transport
    else {
        return None;
    };
    let mut out = format!("folder {}", dir.display());
    if let Some(cwd) = cwd {
        out.push_str(&format!(", working folder {}", cwd.display()));
    }
    out.push_str(&match (sandbox, picoclaw_tools::landlock_abi()) {
        (false, _) => ", NOT sandboxed (sandbox: false)".to_owned(),
        (true, Ok(abi)) => format!(", sandboxed (Landlock ABI {abi})"),
        (true, Err(why)) => format!(", NOT sandboxed: {why}"),
    });
    Some(out)
}

/// The command that starts a stdio server: in its own folder (or the configured `cwd`), with
/// the minimal environment, HOME and caches in its own folder, then its `env_file` and `env`.
fn server_command(
    server: &str,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    dir: &Path,
    cwd: Option<&Path>,
) -> Result<tokio::process::Command, String> {
    private_dir(dir).map_err(|e| format!("cannot create its folder {}: {e}", dir.display()))?;
    let workdir = cwd.unwrap_or(dir);
    if !workdir.is_dir() {
        return Err(format!(
            "its working folder {} (tools.mcp.servers.{server}.cwd) does not exist",
            workdir.display()
        ));
    }
    let mut cmd = tokio::process::Command::new(outside_closed_folders(command));
    cmd.args(args).current_dir(workdir).env_clear();
    for name in BASE_ENV {
        // None of these is a credential; the check keeps it so if the list grows.
        if picoclaw_tools::is_secret_env(name) {
            continue;
        }
        if let Ok(v) = std::env::var(name) {
            cmd.env(name, v);
        }
    }
    // `npx`, `uvx`, pip and friends keep their caches and settings under HOME / XDG: in the
    // server's own folder, never picoclaw's or the owner's home.
    cmd.env("HOME", dir)
        .env("XDG_CACHE_HOME", dir.join(".cache"))
        .env("XDG_CONFIG_HOME", dir.join(".config"))
        .env("XDG_DATA_HOME", dir.join(".local/share"))
        .env("XDG_STATE_HOME", dir.join(".local/state"))
        .env("npm_config_cache", dir.join(".npm"));
    cmd.envs(env);
    Ok(cmd)
}

/// The original PicoClaw's tool names: `mcp_<server>__<tool>`, lower-cased, every run of other
/// characters one `_`, a leading digit prefixed with `t_`, at most 64 characters.
pub fn tool_name(server: &str, tool: &str) -> String {
    fn clean(s: &str) -> String {
        let mut out = String::new();
        let mut underscore = false;
        for c in s.chars() {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                out.push(c);
                underscore = false;
            } else if !underscore {
                out.push('_');
                underscore = true;
            }
        }
        out.trim_matches('_').to_owned()
    }
    let mut name = format!("mcp_{}__{}", clean(server), clean(tool));
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name = format!("t_{name}");
    }
    name.chars().take(64).collect()
}

/// Removes schema keywords some providers refuse in function declarations (Gemini rejects
/// `$schema`, `additionalProperties` in places, `$ref`/`$defs` it cannot follow...), at every
/// level.
pub fn clean_schema(schema: &Value) -> Value {
    const DROP: &[&str] = &["$schema", "$id", "$comment", "examples", "default"];
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                if DROP.contains(&k.as_str()) {
                    continue;
                }
                out.insert(k.clone(), clean_schema(v));
            }
            if !out.contains_key("type") && out.contains_key("properties") {
                out.insert("type".into(), json!("object"));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

/// Hears `notifications/tools/list_changed`: the server's tools are listed again before the
/// next call.
#[derive(Clone, Debug, Default)]
struct Listener {
    changed: Arc<std::sync::atomic::AtomicBool>,
}

impl rmcp::ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: rmcp::service::NotificationContext<RoleClient>) {
        self.changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

type Client = RunningService<RoleClient, Listener>;

/// Whether a (cleaned) input schema is one providers accept for a function: an object schema
/// whose `properties`, when present, is an object of schemas.
pub(crate) fn check_schema(schema: &Value) -> Result<(), String> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return Err(format!(
            "its type is {}, not \"object\"",
            schema.get("type").unwrap_or(&Value::Null)
        ));
    }
    match schema.get("properties") {
        None => Ok(()),
        Some(Value::Object(props)) if props.values().all(Value::is_object) => Ok(()),
        Some(_) => Err("its properties are not a map of schemas".into()),
    }
}

/// A connected server and the tools it offers.
pub struct Connected {
    pub name: String,
    client: Arc<Client>,
    changed: Arc<std::sync::atomic::AtomicBool>,
    pub tools: Vec<rmcp::model::Tool>,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("name", &self.name)
            .field("tools", &self.tools.len())
            .finish()
    }
}

/// Starts (or reaches) one server, completes the MCP handshake and lists its tools, within
/// `timeout`. Errors name what failed, for the one warning the agent logs. A stdio server
/// starts in its own folder under picoclaw's home (or its configured `cwd`), never the
/// workspace, and under Landlock unless its config says `sandbox: false`.
pub async fn connect(server: &ServerConfig, timeout: Duration) -> Result<Connected, StartError> {
    let listener = Listener::default();
    let changed = Arc::clone(&listener.changed);
    let attempt = async {
        let client: Client = match &server.transport {
            Transport::Stdio {
                command,
                args,
                env,
                dir,
                cwd,
                writable,
                sandbox,
            } => {
                let mut cmd = server_command(&server.name, command, args, env, dir, cwd.as_deref())
                    .map_err(StartError::Setup)?;
                if *sandbox {
                    let mut extra = writable.clone();
                    extra.extend(cwd.iter().cloned());
                    // MCP servers fetch and call things by design (npx, uvx, web APIs).
                    match confine_server(&mut cmd, dir, &extra, true) {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(
                            server = %server.name,
                            reason = %picoclaw_tools::landlock_abi().err().unwrap_or_default(),
                            "Landlock is not available: the MCP server runs unconfined"
                        ),
                        Err(e) => return Err(StartError::Sandbox(e)),
                    }
                }
                let (transport, _stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map_err(|error| {
                        if error.kind() == std::io::ErrorKind::NotFound {
                            StartError::CommandNotFound {
                                command: command.clone(),
                            }
                        } else {
                            StartError::Spawn {
                                command: command.clone(),
                                error,
                            }
                        }
                    })?;
                listener
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| StartError::Handshake {
                        url: None,
                        error: e.to_string(),
                    })?
            }
            Transport::Sse { url, headers } => {
                let transport = crate::sse::open(url, headers)
                    .await
                    .map_err(StartError::Connect)?;
                listener
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| StartError::Handshake {
                        url: Some(url.clone()),
                        error: e.to_string(),
                    })?
            }
            Transport::Http { url, headers } => {
                let mut map = std::collections::HashMap::new();
                for (k, v) in headers {
                    let name = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| StartError::Setup(format!("header '{k}': {e}")))?;
                    let value = http::HeaderValue::from_str(v)
                        .map_err(|e| StartError::Setup(format!("header '{k}': {e}")))?;
                    map.insert(name, value);
                }
                let config =
                    rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                        url.as_str(),
                    )
                    .custom_headers(map);
                let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
                    crate::http::streamable_client().map_err(StartError::Setup)?,
                    config,
                );
                listener
                    .clone()
                    .serve(transport)
                    .await
                    .map_err(|e| StartError::Handshake {
                        url: Some(url.clone()),
                        error: e.to_string(),
                    })?
            }
        };
        let tools = client
            .list_all_tools()
            .await
            .map_err(|e| StartError::ListTools(e.to_string()))?;
        Ok::<_, StartError>(Connected {
            name: server.name.clone(),
            client: Arc::new(client),
            changed,
            tools,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(StartError::Timeout(timeout)),
    }
}

/// A running server shared by its tools: when it dies it is started again in the background,
/// waiting 1, 2, 4 ... 60 s between attempts; calls meanwhile get a clear error.
pub(crate) struct ServerHandle {
    config: ServerConfig,
    connect_timeout: Duration,
    state: tokio::sync::Mutex<ServerState>,
}

enum ServerState {
    /// Up, with the flag its listener sets on `tools/list_changed` and the tools it offers.
    Up(Arc<Client>, Arc<std::sync::atomic::AtomicBool>, Vec<String>),
    /// Restarting in the background; `attempt` counts the tries so far.
    Down { attempt: u32, why: String },
}

impl ServerHandle {
    /// The client when the server is up; otherwise why not (and a restart is under way).
    async fn client(self: &Arc<Self>, tool: &str) -> Result<Arc<Client>, String> {
        let mut state = self.state.lock().await;
        match &mut *state {
            ServerState::Up(client, changed, offered) if !client.is_transport_closed() => {
                // The server said its tools changed: list them again before calling.
                if changed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    match client.list_all_tools().await {
                        Ok(tools) => {
                            *offered = tools.iter().map(|t| t.name.to_string()).collect();
                            tracing::info!(server = %self.config.name, tools = offered.len(), "MCP server's tools changed");
                        }
                        Err(e) => {
                            tracing::warn!(server = %self.config.name, error = %e, "listing the changed tools failed")
                        }
                    }
                }
                if !offered.iter().any(|t| t == tool) {
                    return Err(format!("the server no longer offers '{tool}'"));
                }
                Ok(Arc::clone(client))
            }
            ServerState::Up(..) => {
                *state = ServerState::Down {
                    attempt: 0,
                    why: "it stopped".into(),
                };
                drop(state);
                self.restart_in_background();
                Err("it stopped; restarting it".into())
            }
            ServerState::Down { attempt, why } => Err(format!(
                "it is down ({why}); restarting it (attempt {attempt})"
            )),
        }
    }

    /// Called when a request failed because the connection is gone.
    async fn lost(self: &Arc<Self>) {
        let mut state = self.state.lock().await;
        if matches!(&*state, ServerState::Up(..)) {
            *state = ServerState::Down {
                attempt: 0,
                why: "the connection was lost".into(),
            };
            drop(state);
            self.restart_in_background();
        }
    }

    fn restart_in_background(self: &Arc<Self>) {
        let handle = Arc::clone(self);
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                let pause =
                    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_secs(60));
                tokio::time::sleep(pause).await;
                attempt += 1;
                match connect(&handle.config, handle.connect_timeout).await {
                    Ok(connected) => {
                        tracing::info!(server = %handle.config.name, attempt, "MCP server restarted");
                        let offered = connected.tools.iter().map(|t| t.name.to_string()).collect();
                        *handle.state.lock().await =
                            ServerState::Up(connected.client, connected.changed, offered);
                        return;
                    }
                    Err(why) => {
                        tracing::warn!(server = %handle.config.name, attempt, reason = %why, "MCP server restart failed");
                        *handle.state.lock().await = ServerState::Down {
                            attempt,
                            why: why.to_string(),
                        };
                    }
                }
            }
        });
    }
}

/// One MCP tool as a picoclaw tool.
pub struct McpTool {
    server: String,
    tool: String,
    spec: ToolSpec,
    handle: Arc<ServerHandle>,
    timeout: Duration,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("server", &self.server)
            .field("tool", &self.tool)
            .finish()
    }
}

impl McpTool {
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Calls the tool on its server: the result's text (cut at [`MAX_RESULT_BYTES`]), or why
    /// there is none. A server found stopped is restarted in the background.
    pub async fn call_tool(&self, args: Value) -> Result<String, CallError> {
        let mut params = CallToolRequestParams::new(self.tool.clone());
        params.arguments = match args {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => return Err(CallError::BadArguments(other.to_string())),
        };
        let client = self
            .handle
            .client(&self.tool)
            .await
            .map_err(CallError::Unavailable)?;
        let result = match tokio::time::timeout(self.timeout, client.call_tool(params)).await {
            Err(_) => return Err(CallError::Timeout(self.timeout)),
            Ok(Err(e)) => {
                if client.is_transport_closed()
                    || matches!(e, rmcp::service::ServiceError::TransportClosed)
                {
                    self.handle.lost().await;
                    return Err(CallError::Stopped);
                }
                return Err(CallError::Failed(e.to_string()));
            }
            Ok(Ok(r)) => r,
        };
        result_text(&result)
    }
}

/// A tool call's result as the model gets it: its text, cut at [`MAX_RESULT_BYTES`], or the
/// error the server reported.
pub(crate) fn result_text(result: &rmcp::model::CallToolResult) -> Result<String, CallError> {
    let value = serde_json::to_value(result).unwrap_or(Value::Null);
    let mut text = render(&value);
    if text.len() > MAX_RESULT_BYTES {
        let mut cut = MAX_RESULT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = text.len();
        text.truncate(cut);
        text.push_str(&format!(
            "\n[... result cut: {cut} of {total} bytes shown ...]"
        ));
    }
    if result.is_error == Some(true) {
        Err(CallError::Reported(text))
    } else {
        Ok(text)
    }
}

/// The text a tool result carries for the model: text as is, images and audio described,
/// resources by their text or URI; structured content when there is nothing else.
fn render(result: &Value) -> String {
    let mut parts = Vec::new();
    for block in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = block
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match kind {
            "text" => parts.push(
                block
                    .get("text")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "image" | "audio" => {
                let mime = block
                    .get("mimeType")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown type");
                let bytes = block
                    .get("data")
                    .and_then(Value::as_str)
                    .map_or(0, |d| d.len() * 3 / 4);
                parts.push(format!("[{kind}: {mime}, about {bytes} bytes]"));
            }
            "resource" => {
                let r = block.get("resource").cloned().unwrap_or(Value::Null);
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or_default();
                match r.get("text").and_then(Value::as_str) {
                    Some(text) => parts.push(format!("[resource {uri}]\n{text}")),
                    None => parts.push(format!("[resource {uri} (binary)]")),
                }
            }
            "resource_link" => {
                let uri = block.get("uri").and_then(Value::as_str).unwrap_or_default();
                parts.push(format!("[resource link {uri}]"));
            }
            _ => parts.push(block.to_string()),
        }
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        parts.push(structured.to_string());
    }
    parts.join("\n")
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        match self.call_tool(args).await {
            Ok(text) => ToolOutput::ok(text),
            Err(CallError::Reported(text)) => ToolOutput::error(format!(
                "{} (MCP server {}) reported an error: {text}",
                self.tool, self.server
            )),
            Err(e) => ToolOutput::error(format!("{} (MCP server {}): {e}", self.tool, self.server)),
        }
    }
}

/// What starting the servers gave.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Started {
    pub tools: Vec<McpTool>,
    /// Servers that could not be used: each one's name and why.
    pub failed: Vec<(String, StartError)>,
    /// Tools left out because another server already had the name.
    pub clashes: Vec<String>,
    /// Tools left out because their input schema is not something a provider accepts.
    pub skipped: Vec<String>,
    pub servers: Vec<(String, usize)>,
}

/// Starts every server at once; one slow or broken server never delays the others beyond
/// `config.connect_timeout` or stops them, and is reported in `failed`.
pub async fn start_all(config: &McpConfig) -> Started {
    let attempts = config
        .servers
        .iter()
        .map(|s| async move { (s.clone(), connect(s, config.connect_timeout).await) });
    let results = futures::future::join_all(attempts).await;
    let mut started = Started::default();
    let mut taken: std::collections::BTreeMap<String, String> = Default::default();
    for (server, result) in results {
        let name = server.name.clone();
        match result {
            Err(why) => {
                tracing::warn!(server = %name, reason = %why, "MCP server not available; the agent runs without it");
                started.failed.push((name, why));
            }
            Ok(connected) => {
                started.servers.push((name.clone(), connected.tools.len()));
                let handle = Arc::new(ServerHandle {
                    config: server,
                    connect_timeout: config.connect_timeout,
                    state: tokio::sync::Mutex::new(ServerState::Up(
                        Arc::clone(&connected.client),
                        Arc::clone(&connected.changed),
                        connected.tools.iter().map(|t| t.name.to_string()).collect(),
                    )),
                });
                for tool in &connected.tools {
                    let full = tool_name(&name, &tool.name);
                    if let Some(other) = taken.get(&full) {
                        let msg = format!(
                            "{full}: the tool '{}' of {name} has the same name as one of {other}; \
                             it is left out",
                            tool.name
                        );
                        tracing::warn!("{msg}");
                        started.clashes.push(msg);
                        continue;
                    }
                    taken.insert(full.clone(), name.clone());
                    let description = tool
                        .description
                        .as_deref()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("{} (MCP server {name})", tool.name));
                    let schema = clean_schema(&Value::Object((*tool.input_schema).clone()));
                    if let Err(why) = check_schema(&schema) {
                        let msg = format!(
                            "{full}: the tool '{}' of {name} has an unusable input schema ({why}); \
                             it is left out",
                            tool.name
                        );
                        tracing::warn!("{msg}");
                        started.skipped.push(msg);
                        continue;
                    }
                    started.tools.push(McpTool {
                        server: name.clone(),
                        tool: tool.name.to_string(),
                        spec: ToolSpec::new(full, description, schema),
                        handle: Arc::clone(&handle),
                        timeout: config.call_timeout,
                    });
                }
            }
        }
    }
    if started.tools.len() > config.max_inline_tools {
        tracing::info!(
            tools = started.tools.len(),
            max = config.max_inline_tools,
            "more MCP tools than tools.mcp.max_inline_tools: offered through mcp_search and mcp_call"
        );
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_cannot_start_is_reported_with_its_name() {
        let home = std::env::temp_dir().join(format!("picoclaw-mcp-test-{}", std::process::id()));
        let config = McpConfig::from_json(
            &json!({"servers": {"gone": {"command": "no-such-mcp-server-xyz", "sandbox": false}}}),
            &home,
            &|_: &str| None,
        )
        .unwrap()
        .unwrap();
        let started = start_all(&config).await;
        let _ = std::fs::remove_dir_all(&home);
        assert!(started.tools.is_empty());
        let [(name, why)] = &started.failed[..] else {
            panic!("{:?}", started.failed)
        };
        assert_eq!(name, "gone");
        assert!(
            matches!(why, StartError::CommandNotFound { command } if command == "no-such-mcp-server-xyz"),
            "{why:?}"
        );
        assert_eq!(
            why.to_string(),
            "the command `no-such-mcp-server-xyz` was not found"
        );
        assert!(!why.is_retryable());
    }

    #[test]
    fn call_errors_read_as_before() {
        assert_eq!(
            CallError::Timeout(Duration::from_secs(7)).to_string(),
            "no answer within 7 s (tools.mcp.call_timeout_seconds)"
        );
        assert_eq!(
            CallError::Unavailable("it is down (x); restarting it (attempt 2)".into()).to_string(),
            "the server is not available: it is down (x); restarting it (attempt 2). Try again \
             later or do without it."
        );
        assert_eq!(
            StartError::Handshake {
                url: Some("http://127.0.0.1:9/mcp".into()),
                error: "refused".into()
            }
            .to_string(),
            "the MCP handshake with http://127.0.0.1:9/mcp failed: refused"
        );
    }

    #[test]
    fn names_follow_the_original() {
        assert_eq!(
            tool_name("github", "create_issue"),
            "mcp_github__create_issue"
        );
        assert_eq!(
            tool_name("My Server!", "Read-File"),
            "mcp_my_server__read_file"
        );
        assert_eq!(tool_name("fs", "a..b  c"), "mcp_fs__a_b_c");
        assert!(tool_name("x", &"long".repeat(40)).len() <= 64);
    }

    #[test]
    fn schemas_lose_what_providers_reject() {
        let s = clean_schema(
            &json!({"$schema": "http://json-schema.org/draft-07/schema#",
            "properties": {"n": {"type": "integer", "default": 3, "examples": [1]}}}),
        );
        assert_eq!(
            s,
            json!({"type": "object", "properties": {"n": {"type": "integer"}}})
        );
    }

    #[test]
    fn results_render_every_kind() {
        let r = json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "mimeType": "image/png", "data": "AAAA"},
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "inside"}},
            {"type": "resource_link", "uri": "file:///b.txt", "name": "b"}
        ]});
        let text = render(&r);
        assert!(text.contains("hello"));
        assert!(text.contains("[image: image/png, about 3 bytes]"));
        assert!(text.contains("[resource file:///a.txt]\ninside"));
        assert!(text.contains("[resource link file:///b.txt]"));
        assert_eq!(
            render(&json!({"content": [], "structuredContent": {"x": 1}})),
            r#"{"x":1}"#
        );
    }
}
