//! Builds a ready agent from the config file: provider, tools in the workspace sandbox, the
//! SQLite store (sessions, usage, the memory index) and long-term memory.

use picoclaw_config::{Loaded, Paths};
use picoclaw_core::Agent;
use picoclaw_state::StateBackend;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) struct Setup {
    pub agent: Agent,
    /// The state database the agent uses (closed by the caller at exit).
    pub store: Arc<dyn StateBackend>,
    pub paths: Paths,
    /// `provider/model` for display.
    pub model_label: String,
    /// The agent of `agents.list` this is (`main` without one).
    pub agent_id: String,
    /// The whole config, for the agent's session keys.
    pub routing: picoclaw_config::Config,
}

impl Setup {
    /// The key of conversation `session` with this agent: as given for the default agent,
    /// `agent:<id>:<session>` for another.
    pub(crate) fn session_key(&self, session: &str) -> String {
        self.routing.agent_session_key(&self.agent_id, session)
    }
}

/// A configuration problem (one line, exit code 2) or anything else; shared with the gateway.
pub(crate) use picoclaw_gateway::SetupError;

/// Resolves the file locations, honouring `--config`.
pub(crate) fn paths(config: Option<PathBuf>) -> Result<Paths, SetupError> {
    let paths = Paths::from_env().map_err(|e| SetupError::Config(e.to_string()))?;
    Ok(match config {
        Some(file) => paths.with_config_file(file),
        None => paths,
    })
}

/// Paths and config for a command; `None` after printing a configuration problem (the caller
/// exits with code 2).
pub(crate) fn paths_and_config(config: Option<PathBuf>) -> anyhow::Result<Option<(Paths, Loaded)>> {
    let paths = match paths(config) {
        Ok(p) => p,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    match load(&paths) {
        Ok(loaded) => Ok(Some((paths, loaded))),
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Loads the config and prints its warnings to stderr.
pub(crate) fn load(paths: &Paths) -> Result<Loaded, SetupError> {
    let loaded = picoclaw_config::load(paths).map_err(|e| SetupError::Config(e.to_string()))?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded)
}

pub(crate) use picoclaw_gateway::state_location;

pub(crate) use picoclaw_gateway::open_state;

/// Opens (creating it if needed) the state database for a CLI command. A configuration problem
/// (a bad `state.url`, an unreachable server) is printed and gives `None`: exit with code 2.
pub(crate) async fn open_store(
    config: &picoclaw_config::Config,
    paths: &Paths,
) -> anyhow::Result<Option<Arc<dyn StateBackend>>> {
    match open_state(config, paths, true).await {
        Ok(Some(store)) => Ok(Some(store)),
        Ok(None) => anyhow::bail!("the state database was not created"),
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The agent the config describes (agent `agent` of `agents.list`; the default agent when
/// `None`), with the providers and tools of `extensions`.
pub(crate) async fn build_for(
    config: Option<PathBuf>,
    extensions: &picoclaw_gateway::Extensions,
    model_override: Option<&str>,
    agent: Option<&str>,
    mut options: picoclaw_gateway::AssembleOptions,
) -> Result<Setup, SetupError> {
    let paths = paths(config)?;
    let Loaded { config, .. } = load(&paths)?;
    let routing = config.clone();
    let agent_id = match agent {
        Some(id) => {
            if !config.has_agent(id) {
                let known: Vec<String> = config.agent_infos().into_iter().map(|a| a.id).collect();
                return Err(SetupError::Config(format!(
                    "no agent '{id}' in agents.list; known: {}",
                    known.join(", ")
                )));
            }
            picoclaw_config::agents::normalize_id(id)
        }
        None => config.default_agent_id(),
    };
    if let Some(tools) = config.agent_entry(&agent_id).and_then(|e| e.tools.clone()) {
        options = options.with_tool_filter(tools);
    }
    if let Some(skills) = config.agent_entry(&agent_id).and_then(|e| e.skills.clone()) {
        options = options.with_skills_only(skills);
    }
    if !config.agents.list.is_empty() {
        let default = agent_id == config.default_agent_id();
        options = options.with_memory_space(agent_id.clone(), default);
        let others: Vec<PathBuf> = config
            .agent_infos()
            .iter()
            .filter(|other| other.id != agent_id)
            .map(|other| config.agent_workspace(&other.id, &paths))
            .collect();
        options = options.with_closed_paths(others);
    }
    let config = config.for_agent(&agent_id, &paths).unwrap_or(config);
    let mut config = config.with_registry(extensions.providers());
    let options = options.with_tools(extensions.tools().to_vec());
    if let Some(model) = model_override {
        config.agents.defaults.model = model.to_owned();
        config.agents.defaults.provider = String::new();
    }
    let assembled = picoclaw_gateway::assemble(&config, &paths, options).await?;
    Ok(Setup {
        agent: assembled.agent,
        store: assembled.store,
        paths,
        model_label: assembled.model_label,
        agent_id,
        routing,
    })
}
