//! Builds a ready agent from the config file: provider, tools in the workspace sandbox, the
//! SQLite store (sessions, usage, the memory index) and long-term memory.

use anyhow::Context;
use picoclaw_config::{Loaded, Paths};
use picoclaw_core::{Agent, AgentConfig};
use picoclaw_state::{StateBackend, WorkspaceMemory};
use picoclaw_tools::{ExecConfig, Sandbox};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Setup {
    pub agent: Agent,
    /// The state database the agent uses (closed by the caller at exit).
    pub store: Arc<dyn StateBackend>,
    pub paths: Paths,
    /// `provider/model` for display.
    pub model_label: String,
}

pub enum SetupError {
    /// A configuration problem: printed as one line, exit code 2.
    Config(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for SetupError {
    fn from(err: E) -> Self {
        SetupError::Other(err.into())
    }
}

/// Resolves the file locations, honouring `--config`.
pub fn paths(config: Option<PathBuf>) -> Result<Paths, SetupError> {
    let paths = Paths::from_env().map_err(|e| SetupError::Config(e.to_string()))?;
    Ok(match config {
        Some(file) => paths.with_config_file(file),
        None => paths,
    })
}

/// Loads the config and prints its warnings to stderr.
pub fn load(paths: &Paths) -> Result<Loaded, SetupError> {
    let loaded = picoclaw_config::load(paths).map_err(|e| SetupError::Config(e.to_string()))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded)
}

/// Where state is kept, for display: the file, or the URL without its password.
pub fn state_location(config: &picoclaw_config::Config, paths: &Paths) -> String {
    let url = config.state.url.trim();
    if url.is_empty() {
        return paths.state_db().display().to_string();
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            let user_end = scheme + 3 + url[scheme + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Opens the state database the config names (`state.url`; by default `state.db` in the home).
/// With `create` false, a default database that does not exist yet is not created: `None`.
/// A bad URL or an unreachable server is a configuration error (exit code 2).
pub async fn open_state(
    config: &picoclaw_config::Config,
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
        Err(e) => Err(SetupError::Other(
            anyhow::Error::new(e).context("cannot open the state database"),
        )),
    }
}

pub async fn build(
    config: Option<PathBuf>,
    model_override: Option<&str>,
    stream: bool,
) -> Result<Setup, SetupError> {
    let paths = paths(config)?;
    let Loaded { mut config, .. } = load(&paths)?;
    if let Some(model) = model_override {
        config.agents.defaults.model = model.to_owned();
        config.agents.defaults.provider = String::new();
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let built = picoclaw_config::build_agent_provider(&config, &env)
        .map_err(|e| SetupError::Config(e.to_string()))?;
    let provider = built.provider;
    let resolved = built.primary;

    let defaults = &config.agents.defaults;
    let workspace = config.workspace_path(&paths);
    let sandbox = Sandbox::new(&workspace, defaults.restrict_to_workspace)
        .with_context(|| format!("cannot use the workspace {}", workspace.display()))?;
    let exec = &config.tools.exec;
    let mut exec_cfg = ExecConfig::default();
    exec_cfg.enabled = exec.enabled;
    if let Some(secs) = exec.timeout_seconds {
        exec_cfg.default_timeout = Duration::from_secs(secs);
    }
    exec_cfg
        .deny_patterns
        .extend(exec.deny_patterns.iter().cloned());
    let tools = picoclaw_tools::builtin_tools(Arc::new(sandbox), exec_cfg);

    let store = open_state(&config, &paths, true)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the state database was not created"))?;

    let mut agent_cfg = AgentConfig::default();
    agent_cfg.model = resolved.model.clone();
    agent_cfg.max_tokens = Some(defaults.max_tokens);
    agent_cfg.temperature = Some(defaults.temperature);
    agent_cfg.context_window = defaults.context_window as usize;
    agent_cfg.max_tool_iterations = defaults.max_tool_iterations as usize;
    agent_cfg.stream = stream;
    agent_cfg.compaction = defaults.compaction;
    agent_cfg.compaction_threshold = defaults.compaction_threshold as usize;
    agent_cfg.memory_budget_tokens = defaults.memory_budget_tokens as usize;

    let agent = Agent::builder(provider)
        .config(agent_cfg)
        .tools(tools)
        .session_store(store.clone())
        .usage_ledger(
            store.clone(),
            format!("{}/{}", resolved.provider, resolved.model),
        )
        .memory(Arc::new(WorkspaceMemory::new(&workspace, store.clone())))
        .workspace(workspace)
        .build()
        .map_err(|e| SetupError::Config(e.to_string()))?;
    Ok(Setup {
        agent,
        store,
        paths,
        model_label: format!("{}/{}", resolved.provider, resolved.model),
    })
}
