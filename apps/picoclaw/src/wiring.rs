//! Builds a ready agent from the config file: provider, tools in the workspace sandbox, the
//! SQLite store (sessions, usage, the memory index) and long-term memory.

use anyhow::Context;
use picoclaw_config::{Loaded, Paths};
use picoclaw_core::{Agent, AgentConfig};
use picoclaw_state::{SqliteStore, WorkspaceMemory};
use picoclaw_tools::{ExecConfig, Sandbox};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Setup {
    pub agent: Agent,
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

    let store = Arc::new(
        SqliteStore::open(&paths.state_db())
            .await
            .with_context(|| "cannot open the session store")?,
    );

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
        .memory(Arc::new(WorkspaceMemory::new(&workspace, store)))
        .workspace(workspace)
        .build()
        .map_err(|e| SetupError::Config(e.to_string()))?;
    Ok(Setup {
        agent,
        paths,
        model_label: format!("{}/{}", resolved.provider, resolved.model),
    })
}
