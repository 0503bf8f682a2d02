//! Builds a ready agent from the config: provider (with retries and fallbacks), tools in the
//! workspace sandbox, the state database (sessions, usage, memory index) and long-term memory.
//! The CLI's `agent` command and the gateway share it.

use picoclaw_config::{Config, Paths};
use picoclaw_core::{Agent, AgentConfig, LlmProvider, ToolRegistry};
use picoclaw_state::{InMemoryStore, StateBackend, WorkspaceMemory};
use picoclaw_tools::{ExecConfig, Sandbox, SandboxError, Tool};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why the agent (or the gateway) could not be set up. Each message is one line for the user
/// and carries its cause, so `source()` is left empty: printing the chain shows it once.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A configuration problem the user fixes in config.json or the environment (the CLI exits
    /// with code 2).
    #[error("{0}")]
    Config(String),
    /// The workspace folder cannot be made or opened: check `agents.defaults.workspace` and its
    /// permissions.
    #[error("cannot use the workspace {}: {error}", path.display())]
    Workspace { path: PathBuf, error: SandboxError },
    /// The state database failed for a reason other than its configuration (a damaged file, a
    /// full disk, a database from a newer picoclaw).
    #[error("cannot open the state database: {0}")]
    State(picoclaw_state::StateError),
    /// Anything else that failed while starting: what was being done and why it failed.
    #[error("{context}: {error}")]
    Other {
        /// What was being done ("cannot read the listening address").
        context: String,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SetupError {
    /// An [`SetupError::Other`]: `error` while doing `context`.
    pub fn other(
        context: impl Into<String>,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        SetupError::Other {
            context: context.into(),
            error: error.into(),
        }
    }

    /// Whether the user can fix it in the configuration (the CLI exits with code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, SetupError::Config(_))
    }
}

/// An assembled agent and what it runs on.
#[derive(Debug)]
pub struct Assembled {
    pub agent: Agent,
    /// An agent like `agent` whose sessions live in memory only (stateless API requests).
    pub ephemeral: Agent,
    pub store: Arc<dyn StateBackend>,
    /// `provider/model`, for display.
    pub model_label: String,
    pub workspace: PathBuf,
    /// What assembly found (skills, MCP servers, tools), for the dashboard.
    pub report: AssemblyReport,
}

/// What [`assemble`] put together, and what it could not use (logged, and kept here for the
/// dashboard).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct AssemblyReport {
    /// The agent's skills (read again at each look), when `tools.skills` is enabled.
    pub skills: Option<Arc<picoclaw_skills::LiveCatalog>>,
    /// `tools.mcp`'s servers, in the order of the config.
    pub mcp: Vec<McpServerStatus>,
    /// The names of the agent's tools.
    pub tools: Vec<String>,
    /// The agent's long-term memory (`memory/MEMORY.md`, the daily notes, their index).
    pub memory: Option<Arc<WorkspaceMemory>>,
}

/// One MCP server of `tools.mcp` at assembly.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpServerStatus {
    pub name: String,
    /// Connected with this many tools, or why not.
    pub result: Result<usize, String>,
}

/// Where state is kept, for display: the file, or the URL without its password.
pub fn state_location(config: &Config, paths: &Paths) -> String {
    let url = config.state.url.trim();
    if url.is_empty() {
        return paths.state_db().display().to_string();
    }
    picoclaw_state::redact_url(url)
}

/// Opens the state database the config names (`state.url`; by default `state.db` in the home).
/// With `create` false, a default database that does not exist yet is not created: `None`.
/// A bad URL or an unreachable server is a configuration error.
pub async fn open_state(
    config: &Config,
    paths: &Paths,
    create: bool,
) -> Result<Option<Arc<dyn StateBackend>>, SetupError> {
    let url = config.state.url.trim();
    if url.is_empty() && !create && !paths.state_db().exists() {
        return Ok(None);
    }
    let url = (!url.is_empty()).then_some(url);
    match picoclaw_state::open_state(url, &paths.state_db()).await {
        Ok(store) => Ok(Some(store)),
        Err(e @ picoclaw_state::StateError::Open { .. }) => Err(SetupError::Config(e.to_string())),
        Err(e) => Err(SetupError::State(e)),
    }
}

/// `tools.skills` of the config: `enabled` (default true), `builtin` (offer the built-in skills,
/// default true), `permissions.<skill>.{network, workspace_write, env, dir, sha256, files}` (what
/// an executable global skill may do beyond running in the workspace, and the folder and files
/// it was granted for: `picoclaw skills grant` writes them), `git_host` (for `owner/repo/path`
/// installs).
#[derive(Clone, Debug)]
pub struct SkillsSettings {
    pub enabled: bool,
    pub builtin: bool,
    pub git_host: String,
    permissions: std::collections::BTreeMap<String, serde_json::Value>,
}

impl SkillsSettings {
    pub fn from_config(config: &Config) -> Self {
        let section = config.tools.skills.clone().unwrap_or_default();
        Self {
            enabled: section.enabled(),
            builtin: section.builtin(),
            git_host: section.git_host(),
            permissions: section.permissions,
        }
    }

    /// The grant `tools.skills.permissions.<name>` holds, if any. It applies only to the
    /// global skill and the files it was made for ([`picoclaw_skills::Grant::check`]).
    pub fn grant(&self, name: &str) -> Result<Option<picoclaw_skills::Grant>, String> {
        match self.permissions.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => picoclaw_skills::Grant::from_json(v)
                .map(Some)
                .map_err(|e| format!("tools.skills.permissions.{name}: {e}")),
        }
    }

    /// The names `tools.skills.permissions` has entries for.
    pub fn granted_names(&self) -> Vec<String> {
        self.permissions.keys().cloned().collect()
    }
}

/// `tools.exec` of the config as the exec tool's settings.
pub fn exec_config(config: &Config, paths: &Paths) -> ExecConfig {
    let exec = &config.tools.exec;
    let mut exec_cfg = ExecConfig::default();
    exec_cfg.enabled = exec.enabled;
    if let Some(secs) = exec.timeout_seconds {
        exec_cfg.default_timeout = Duration::from_secs(secs);
    }
    exec_cfg
        .deny_patterns
        .extend(exec.deny_patterns.iter().cloned());
    exec_cfg.landlock = exec.landlock;
    exec_cfg.writable_paths = exec
        .writable_paths
        .iter()
        .map(|p| picoclaw_config::home_path(p, paths))
        .collect();
    exec_cfg.readable_paths = exec
        .readable_paths
        .iter()
        .map(|p| picoclaw_config::home_path(p, paths))
        .collect();
    // picoclaw's home holds the config, the auth store, the state database and the gateway key.
    // The config file and the auth store may live elsewhere (`--config /etc/picoclaw/...`).
    exec_cfg.closed_paths = vec![
        paths.home().to_path_buf(),
        paths.config_file().to_path_buf(),
        paths.auth_file(),
    ];
    exec_cfg.network = exec.network;
    exec_cfg.require_sandbox = exec.require_sandbox;
    exec_cfg
}

/// This process's name in the state database's leases and claims: the host, the process id
/// and 64 random bits, made once per process (two instances never share one, even in
/// containers where every process id is 1).
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".to_owned());
        let mut bytes = [0u8; 8];
        // Without randomness, the time in nanoseconds tells instances apart.
        let random = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        };
        format!("{host}-{}-{random:016x}", std::process::id())
    })
}

/// Options of [`assemble`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AssembleOptions {
    /// Stream answers (text deltas reach the event sink as they arrive).
    pub stream: bool,
    /// Where results of tasks spawned from `cli` conversations go (the terminal prints them).
    pub local_results: Option<picoclaw_core::LocalResults>,
    /// Tools beyond the built-in ones (a contributor's build, an embedder).
    pub tools: Vec<crate::extend::ToolFactory>,
    /// The state database to use instead of opening the one the config names (several agents
    /// share one).
    pub store: Option<Arc<dyn StateBackend>>,
    /// Which tools the agent keeps (`agents.list[].tools`).
    pub tool_filter: Option<picoclaw_config::AgentTools>,
    /// Which skills the agent is offered (`agents.list[].skills`); all when `None`.
    pub skills_only: Option<Vec<String>>,
    /// With several agents: this agent's id, and whether it is the default one (its memory
    /// index is kept apart from the others' in the shared database).
    pub memory_space: Option<(String, bool)>,
    /// With several agents: the others, the ids this one may hand tasks to
    /// (`subagents.allow_agents`), and its own id.
    pub peers: Option<(Arc<dyn picoclaw_core::PeerAgents>, Vec<String>, String)>,
    /// Folders this agent's tools must never reach (the other agents' workspaces): closed to
    /// its commands under Landlock and protected from its file tools even when they may leave
    /// the workspace.
    pub closed_paths: Vec<PathBuf>,
    /// Turns running at once, shared by every agent of this process (`gateway.max_concurrent_turns`);
    /// unbounded when `None`.
    pub turn_permits: Option<Arc<tokio::sync::Semaphore>>,
    /// Every turn holds its conversation's lease in the state database under this owner name
    /// (`state.session_lease_seconds`), so that processes sharing the database take turns; no
    /// leases when `None` (the CLI: one process, one turn).
    pub lease_owner: Option<String>,
}

impl std::fmt::Debug for AssembleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssembleOptions")
            .field("stream", &self.stream)
            .field("local_results", &self.local_results.is_some())
            .field("tool_factories", &self.tools.len())
            .field("store", &self.store.is_some())
            .field("tool_filter", &self.tool_filter)
            .field(
                "turn_permits",
                &self.turn_permits.as_ref().map(|p| p.available_permits()),
            )
            .finish()
    }
}

impl AssembleOptions {
    pub fn streaming(stream: bool) -> Self {
        Self {
            stream,
            local_results: None,
            tools: Vec::new(),
            store: None,
            tool_filter: None,
            skills_only: None,
            memory_space: None,
            peers: None,
            closed_paths: Vec::new(),
            turn_permits: None,
            lease_owner: None,
        }
    }

    /// See [`AssembleOptions::lease_owner`].
    pub fn with_session_leases(mut self, owner: impl Into<String>) -> Self {
        self.lease_owner = Some(owner.into());
        self
    }

    /// See [`AssembleOptions::turn_permits`].
    pub fn with_turn_permits(mut self, permits: Arc<tokio::sync::Semaphore>) -> Self {
        self.turn_permits = Some(permits);
        self
    }

    /// See [`AssembleOptions::closed_paths`].
    pub fn with_closed_paths(mut self, paths: Vec<PathBuf>) -> Self {
        self.closed_paths = paths;
        self
    }

    /// See [`AssembleOptions::peers`].
    pub fn with_peers(
        mut self,
        agents: Arc<dyn picoclaw_core::PeerAgents>,
        allowed: Vec<String>,
        me: impl Into<String>,
    ) -> Self {
        self.peers = Some((agents, allowed, me.into()));
        self
    }

    /// See [`AssembleOptions::memory_space`].
    pub fn with_memory_space(mut self, agent: impl Into<String>, default: bool) -> Self {
        self.memory_space = Some((agent.into(), default));
        self
    }

    /// See [`AssembleOptions::skills_only`].
    pub fn with_skills_only(mut self, names: Vec<String>) -> Self {
        self.skills_only = Some(names);
        self
    }

    /// See [`AssembleOptions::store`].
    pub fn with_store(mut self, store: Arc<dyn StateBackend>) -> Self {
        self.store = Some(store);
        self
    }

    /// See [`AssembleOptions::tool_filter`].
    pub fn with_tool_filter(mut self, filter: picoclaw_config::AgentTools) -> Self {
        self.tool_filter = Some(filter);
        self
    }

    /// Adds the tools `tools` make to the built-in ones.
    pub fn with_tools(mut self, tools: Vec<crate::extend::ToolFactory>) -> Self {
        self.tools = tools;
        self
    }

    /// See [`AssembleOptions::local_results`].
    pub fn local_results(mut self, results: picoclaw_core::LocalResults) -> Self {
        self.local_results = Some(results);
        self
    }
}

/// Builds the agent the config describes.
pub async fn assemble(
    config: &Config,
    paths: &Paths,
    options: AssembleOptions,
) -> Result<Assembled, SetupError> {
    // The process environment and the .env files read with the config.
    let env = config.env_vars();
    let built = picoclaw_config::build_agent_provider(config, &env)
        .map_err(|e| SetupError::Config(e.to_string()))?;
    let provider: Arc<dyn LlmProvider> = built.provider;
    let resolved = built.primary;
    let model_label = format!("{}/{}", resolved.provider, resolved.model);

    let defaults = &config.agents.defaults;
    let workspace = config.workspace_path(paths);
    // Skills: the workspace's, the global ones, and the built-ins written out under the home.
    let skills_cfg = SkillsSettings::from_config(config);
    let builtin_dir = paths.home().join("builtin-skills");
    if let Err(e) = picoclaw_skills::builtin::materialize(&builtin_dir) {
        tracing::warn!(dir = %builtin_dir.display(), error = %e, "cannot write the built-in skills");
    }
    let skill_roots = picoclaw_skills::SkillRoots::new(
        Some(workspace.join("skills")),
        Some(paths.global_skills_dir()),
        skills_cfg.builtin.then(|| builtin_dir.clone()),
    );
    // File tools may read (never write) the skills outside the workspace. The global folder is
    // made now so that a skill installed while the gateway runs is readable too.
    let _ = std::fs::create_dir_all(paths.global_skills_dir());
    let sandbox = if defaults.restrict_to_workspace {
        Sandbox::new(&workspace)
    } else {
        Sandbox::unrestricted(&workspace)
    };
    let sandbox = sandbox
        .map_err(|error| SetupError::Workspace {
            path: workspace.clone(),
            error,
        })?
        .with_read_root(paths.global_skills_dir())
        .with_read_root(&builtin_dir)
        .with_protected(paths.home())
        .with_protected(paths.config_file())
        .with_protected(paths.auth_file());
    let sandbox = options
        .closed_paths
        .iter()
        .fold(sandbox, |s, other| s.with_protected(other));
    let mut exec_cfg = exec_config(config, paths);
    exec_cfg
        .closed_paths
        .extend(options.closed_paths.iter().cloned());
    let sandbox = Arc::new(sandbox);
    let mut tools: ToolRegistry = picoclaw_tools::builtin_tools(sandbox.clone(), exec_cfg);
    // I2C, SPI and GPIO, when the build has them and the config enables them (tools.i2c,
    // tools.spi, tools.gpio).
    #[cfg(feature = "hardware")]
    {
        let on = |t: &Option<picoclaw_tools::ToggleSection>| t.as_ref().is_some_and(|t| t.enabled);
        if on(&config.tools.i2c) {
            tools.register(Arc::new(picoclaw_tools::I2cTool));
        }
        if on(&config.tools.spi) {
            tools.register(Arc::new(picoclaw_tools::SpiTool));
        }
        if let Some(gpio) = config.tools.gpio.as_ref().filter(|g| g.enabled) {
            let tool = picoclaw_tools::GpioTool::from_section(gpio).map_err(SetupError::Config)?;
            if tool.pins().is_empty() {
                tracing::warn!(
                    "tools.gpio is enabled but tools.gpio.pins is empty: the gpio tool refuses \
                     every pin until the line offsets it may use are listed"
                );
            }
            tools.register(Arc::new(tool));
        }
    }
    // Speech to text, when a key is configured (stt.api_key or GROQ_API_KEY).
    if let Some(stt) = picoclaw_tools::SttConfig::from_section(
        config.stt.as_ref(),
        env.get("GROQ_API_KEY").cloned(),
    ) {
        tools.register(Arc::new(picoclaw_tools::TranscribeTool::new(
            picoclaw_tools::Transcriber::new(stt),
            sandbox.clone(),
        )));
    }

    // The build's own tools (Extensions::with_tool); built-in tools keep their names.
    let setup = crate::extend::ToolSetup {
        workspace: workspace.clone(),
        sandbox: sandbox.clone(),
    };
    for tool in options.tools.iter().flat_map(|make| make(&setup)) {
        let name = tool.spec().name;
        if tools.get(&name).is_some() {
            tracing::warn!(tool = %name, "an extension's tool has the name of a built-in tool; not registered");
            continue;
        }
        tools.register(tool);
    }

    // Executable skills: each tool of a usable skill, with the permissions its manifest declares
    // and the operator granted to that very skill (tools.skills.permissions.<name>, bound to the
    // global skill's folder and files; a workspace skill never gets it). Built-in tools keep
    // their names.
    let mut catalog = picoclaw_skills::LiveCatalog::new(skill_roots);
    if let Some(only) = options.skills_only.clone() {
        catalog = catalog.only(only);
    }
    let skills = Arc::new(catalog);
    if skills_cfg.enabled {
        for skill in skills.catalog().skills {
            if skill.manifest.is_none() || !skill.available() {
                continue;
            }
            let grant = skills_cfg.grant(&skill.name).unwrap_or_else(|e| {
                tracing::warn!(skill = %skill.name, error = %e, "ignoring an unreadable grant");
                None
            });
            for tool in picoclaw_skills::SkillTool::all(&skill, &workspace, grant.as_ref()) {
                let name = tool.spec().name;
                if tools.get(&name).is_some() {
                    tracing::warn!(skill = %skill.name, tool = %name, "a skill's tool has the name of another tool; not registered");
                    continue;
                }
                tools.register(Arc::new(tool));
            }
        }
    }

    // MCP servers' tools (tools.mcp), started together; a broken server is one warning.
    #[allow(unused_mut)] // without the mcp feature
    let mut mcp_status: Vec<McpServerStatus> = Vec::new();
    #[cfg(feature = "mcp")]
    if let Some(mcp) = &config.tools.mcp {
        let vars = config.environment();
        let env = |k: &str| vars.vars().get(k).cloned();
        // Stdio servers run in their own folders under the home, never the workspace.
        match picoclaw_mcp::McpConfig::from_section(mcp, paths.home(), &env) {
            Ok(Some(mcp)) => {
                let started = picoclaw_mcp::start_all(&mcp).await;
                mcp_status = mcp
                    .servers
                    .iter()
                    .map(|server| McpServerStatus {
                        name: server.name.clone(),
                        result: match started.servers.iter().find(|(n, _)| *n == server.name) {
                            Some((_, tools)) => Ok(*tools),
                            None => Err(started
                                .failed
                                .iter()
                                .find(|(n, _)| *n == server.name)
                                .map_or_else(
                                    || "not started".to_owned(),
                                    |(_, why)| why.to_string(),
                                )),
                        },
                    })
                    .collect();
                for tool in picoclaw_mcp::registry_tools(started.tools, mcp.max_inline_tools) {
                    let name = tool.spec().name;
                    if tools.get(&name).is_some() {
                        tracing::warn!(tool = %name, "an MCP tool has the name of another tool; not registered");
                        continue;
                    }
                    tools.register(tool);
                }
            }
            Ok(None) => {}
            Err(e) => return Err(SetupError::Config(e.to_string())),
        }
    }

    let store = match options.store.clone() {
        Some(store) => store,
        None => open_state(config, paths, true).await?.ok_or_else(|| {
            SetupError::other("cannot open the state database", "it was not created")
        })?,
    };
    // Scheduling: jobs go to the store; the gateway runs them. At most tools.cron.max_jobs per
    // chat; scheduled turns add none.
    let cron = config
        .tools
        .cron
        .as_ref()
        .map(picoclaw_tools::CronConfig::from_json)
        .transpose()
        .map_err(SetupError::Config)?
        .unwrap_or_default();
    tools.register(Arc::new(
        picoclaw_tools::CronTool::new(store.clone()).with_config(cron),
    ));
    // Messages on the agent's own initiative, delivered through the outbox.
    tools.register(Arc::new(
        picoclaw_tools::MessageTool::new(store.clone())
            .with_files(sandbox.clone())
            .with_snapshots(paths.home().join("media-out")),
    ));
    #[cfg(feature = "web-tools")]
    register_web_tools(config, &mut tools)?;
    #[cfg(not(feature = "web-tools"))]
    tracing::debug!("web_search and web_fetch are not in this build (the `web-tools` feature)");

    // agents.list[].tools: only the allowed ones, never the denied ones.
    if let Some(filter) = &options.tool_filter {
        let names: Vec<String> = tools.names().map(str::to_owned).collect();
        for name in names {
            if !filter.allows(&name) {
                tools.remove(&name);
            }
        }
    }

    let tool_names: Vec<String> = tools.names().map(str::to_owned).collect();
    let mut agent_cfg = AgentConfig::default();
    agent_cfg.model = resolved.model.clone();
    agent_cfg.max_tokens = Some(defaults.max_tokens);
    agent_cfg.temperature = Some(defaults.temperature);
    agent_cfg.context_window = defaults.context_window as usize;
    agent_cfg.max_tool_iterations = defaults.max_tool_iterations as usize;
    agent_cfg.stream = options.stream;
    agent_cfg.compaction = defaults.compaction;
    agent_cfg.compaction_threshold = defaults.compaction_threshold as usize;
    agent_cfg.memory_budget_tokens = defaults.memory_budget_tokens as usize;
    // rate_limits (an agent's own, copied over by Config::for_agent): per conversation.
    agent_cfg.rate_limits = config.rate_limits;

    // With several agents, each indexes and finds only its own notes.
    let index: Arc<dyn picoclaw_state::MemoryStore> = match &options.memory_space {
        None => store.clone(),
        Some((_, true)) => Arc::new(picoclaw_state::MemorySpace::default_agent(store.clone())),
        Some((id, false)) => Arc::new(picoclaw_state::MemorySpace::agent(store.clone(), id)),
    };
    let memory = Arc::new(WorkspaceMemory::new(&workspace, index));
    let mut builder = Agent::builder(provider.clone());
    if let Some(results) = options.local_results {
        builder = builder.local_results(results);
    }
    if skills_cfg.enabled {
        builder = builder.skills(skills.clone());
    }
    if let Some((agents, allowed, me)) = options.peers.clone() {
        builder = builder.peers(agents, allowed, me);
    }
    if let Some(permits) = &options.turn_permits {
        builder = builder.turn_permits(permits.clone());
    }
    // Every turn of a conversation holds its lease in the state database, so gateway
    // instances sharing it take turns.
    if let Some(owner) = &options.lease_owner {
        let ttl = Duration::from_secs(u64::from(config.state.session_lease_seconds.max(1)));
        builder = builder
            .session_leases(picoclaw_core::SessionLeases::new(store.clone(), owner).ttl(ttl));
    }
    let agent = builder
        .config(agent_cfg.clone())
        .tools(tools.clone())
        .session_store(store.clone())
        .usage_ledger(store.clone(), model_label.clone())
        .memory(memory.clone())
        .subagents(4, Some(store.clone()))
        .workspace(&workspace)
        .build()
        .map_err(|e| SetupError::Config(e.to_string()))?;
    let ephemeral = Agent::builder(provider)
        .config(agent_cfg)
        .tools(tools)
        .session_store(Arc::new(InMemoryStore::new()))
        .usage_ledger(store.clone(), model_label.clone())
        .memory(memory.clone())
        .workspace(&workspace)
        .build()
        .map_err(|e| SetupError::Config(e.to_string()))?;
    let report = AssemblyReport {
        skills: skills_cfg.enabled.then_some(skills),
        mcp: mcp_status,
        tools: tool_names,
        memory: Some(memory),
    };
    Ok(Assembled {
        agent,
        ephemeral,
        store,
        model_label,
        workspace,
        report,
    })
}

/// `web_search` (the backend tools.web enables) and `web_fetch`.
#[cfg(feature = "web-tools")]
fn register_web_tools(config: &Config, tools: &mut ToolRegistry) -> Result<(), SetupError> {
    // Searching the web: the backend tools.web enables; without a tools.web section,
    // DuckDuckGo (no key needed), as the original's default config has it.
    let web = config
        .tools
        .web
        .clone()
        .unwrap_or_else(picoclaw_tools::WebSection::default_search);
    match picoclaw_tools::WebSearchConfig::from_section(&web) {
        Some(Ok(search)) => {
            tools.register(Arc::new(picoclaw_tools::WebSearchTool::new(search)));
        }
        Some(Err(msg)) => return Err(SetupError::Config(msg)),
        None => {}
    }
    // Reading the web: public addresses only, unless tools.web.fetch.allow_private says otherwise;
    // no proxy but tools.web.fetch.proxy.
    let fetch =
        picoclaw_tools::WebFetchConfig::from_section(&web.fetch.clone().unwrap_or_default())
            .map_err(SetupError::Config)?;
    tools.register(Arc::new(picoclaw_tools::WebFetchTool::new(fetch)));
    Ok(())
}
