//! [`AgentBuilder`]: the settings of an [`Agent`] (model, tools, stores, memory, sub-agents,
//! skills, workspace), checked and assembled by [`AgentBuilder::build`].

use super::subagent::{ChildRunner, SUBAGENT_INSTRUCTIONS};
use super::{Agent, AgentConfig, AgentError, Inner};
use crate::context::ContextBuilder;
use picoclaw_providers::LlmProvider;
use picoclaw_state::{InMemoryStore, Outbox, SessionStore, UsageStore, WorkspaceMemory};
use picoclaw_tools::{
    LocalResults, MemorySearchTool, MemoryWriteTool, Subagents, Tool, ToolRegistry,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Builds an [`Agent`].
///
/// ```no_run
/// # use picoclaw_core::*;
/// # async fn demo(provider: std::sync::Arc<dyn LlmProvider>) -> Result<(), AgentError> {
/// let agent = Agent::builder(provider).model("gpt-4o-mini").build()?;
/// let outcome = agent.chat(&SessionKey::new("demo"), "Hello!").await?;
/// println!("{}", outcome.text);
/// # Ok(()) }
/// ```
pub struct AgentBuilder {
    provider: Arc<dyn LlmProvider>,
    tools: ToolRegistry,
    store: Option<Arc<dyn SessionStore>>,
    usage: Option<(Arc<dyn UsageStore>, String)>,
    memory: Option<Arc<WorkspaceMemory>>,
    subagents: Option<(usize, Option<Arc<dyn Outbox>>)>,
    local_results: Option<LocalResults>,
    peers: Option<super::subagent::Peers>,
    skills: Option<Arc<picoclaw_skills::LiveCatalog>>,
    workspace: Option<PathBuf>,
    instructions: Option<String>,
    leases: Option<super::SessionLeases>,
    permits: Option<Arc<tokio::sync::Semaphore>>,
    config: AgentConfig,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("provider", &self.provider.name())
            .field("tools", &self.tools)
            .field("workspace", &self.workspace)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AgentBuilder {
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// Replaces the whole configuration (the model included).
    pub fn config(mut self, config: AgentConfig) -> Self {
        self.config = config;
        self
    }

    pub fn tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.register(Arc::new(tool));
        self
    }

    /// Where sessions are kept; by default in memory (lost at exit).
    pub fn session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Records every model call's tokens in `store` under `model_label` (`provider/model`), for
    /// `picoclaw usage`.
    pub fn usage_ledger(
        mut self,
        store: Arc<dyn UsageStore>,
        model_label: impl Into<String>,
    ) -> Self {
        self.usage = Some((store, model_label.into()));
        self
    }

    /// Long-term memory with a search index: each turn's system prompt carries the memory most
    /// related to the message (within `AgentConfig::memory_budget_tokens`) instead of the whole
    /// MEMORY.md, and the `memory_search` and `memory_write` tools are added unless the tool
    /// set already has tools of those names.
    pub fn memory(mut self, memory: Arc<WorkspaceMemory>) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Adds the `subagent` and `spawn` tools: a sub-agent has this agent's model, store, memory
    /// and tools (minus these two, so it cannot start another), and its own session
    /// (`subagent:<parent session>:<n>`). At most `max_concurrent` run at once. `spawn` delivers
    /// its result to the spawning chat through `outbox` (without one, it says it cannot).
    pub fn subagents(mut self, max_concurrent: usize, outbox: Option<Arc<dyn Outbox>>) -> Self {
        self.subagents = Some((max_concurrent, outbox));
        self
    }

    /// With [`subagents`](Self::subagents): the `subagent` and `spawn` tools may hand a task to
    /// another agent (`agent_id`) of `agents`, one of `allowed` (`"*"` for any); `me` is this
    /// agent's id.
    pub fn peers(
        mut self,
        agents: Arc<dyn super::PeerAgents>,
        allowed: Vec<String>,
        me: impl Into<String>,
    ) -> Self {
        self.peers = Some(super::subagent::Peers {
            agents,
            allowed,
            me: me.into().to_ascii_lowercase(),
        });
        self
    }

    /// With [`subagents`](Self::subagents): tasks spawned from `cli` conversations hand their
    /// results to `results` in-process (a terminal program prints them; see
    /// [`Agent::background_pending`]) instead of `spawn` refusing.
    pub fn local_results(mut self, results: LocalResults) -> Self {
        self.local_results = Some(results);
        self
    }

    /// Skills: the system prompt lists the usable ones (the agent reads a SKILL.md when it
    /// needs it). Executable skills' tools are registered separately, like any tool.
    pub fn skills(mut self, skills: Arc<picoclaw_skills::LiveCatalog>) -> Self {
        self.skills = Some(skills);
        self
    }

    /// The workspace whose AGENT.md, SOUL.md, USER.md ... shape the system prompt.
    pub fn workspace(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workspace = Some(dir.into());
        self
    }

    /// Extra instructions appended to the system prompt.
    pub fn instructions(mut self, text: impl Into<String>) -> Self {
        self.instructions = Some(text.into());
        self
    }

    /// Takes the lease `session:<key>` for every turn (and its sub-agents' turns), so that
    /// instances sharing the state database never run turns of one conversation at once
    /// (see [`SessionLeases`](super::SessionLeases)).
    pub fn session_leases(mut self, leases: super::SessionLeases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// At most as many turns as `permits` has run at once; the others wait their turn, first
    /// come first served. Share one semaphore between agents to bound them together.
    /// Sub-agents' turns run within their parent's and take none.
    pub fn turn_permits(mut self, permits: Arc<tokio::sync::Semaphore>) -> Self {
        self.permits = Some(permits);
        self
    }

    pub fn max_tool_iterations(mut self, n: usize) -> Self {
        self.config.max_tool_iterations = n;
        self
    }

    /// Limits the model requests and tool calls of each conversation per minute (see
    /// [`crate::RateLimits`]).
    pub fn rate_limits(mut self, limits: crate::RateLimits) -> Self {
        self.config.rate_limits = limits;
        self
    }

    pub fn streaming(mut self, on: bool) -> Self {
        self.config.stream = on;
        self
    }

    pub fn build(self) -> Result<Agent, AgentError> {
        if self.config.model.trim().is_empty() {
            return Err(AgentError::Setup(
                "no model set: call AgentBuilder::model(\"...\")".into(),
            ));
        }
        if self.config.max_tool_iterations == 0 {
            return Err(AgentError::Setup(
                "max_tool_iterations must be at least 1".into(),
            ));
        }
        let workspace = self
            .workspace
            .or_else(|| self.memory.as_ref().map(|m| m.workspace().to_path_buf()));
        let mut context = ContextBuilder::new(workspace.clone());
        if let Some(text) = self.instructions {
            context = context.with_instructions(text);
        }
        if let Some(skills) = &self.skills {
            context = context.with_skills(skills.clone());
        }
        let mut tools = self.tools;
        let mut subagents_handle = None;
        if let Some((max_concurrent, outbox)) = self.subagents {
            // The child: everything of the parent but the sub-agent tools.
            let mut child_tools = tools.clone();
            child_tools.remove("subagent");
            child_tools.remove("spawn");
            let mut child = Agent::builder(self.provider.clone())
                .config(self.config.clone())
                .tools(child_tools)
                .instructions(SUBAGENT_INSTRUCTIONS);
            if let Some(store) = &self.store {
                child = child.session_store(store.clone());
            }
            if let Some((ledger, label)) = &self.usage {
                child = child.usage_ledger(ledger.clone(), label.clone());
            }
            if let Some(memory) = &self.memory {
                child = child.memory(memory.clone());
            }
            if let Some(ws) = &workspace {
                child = child.workspace(ws.clone());
            }
            if let Some(skills) = &self.skills {
                child = child.skills(skills.clone());
            }
            if let Some(leases) = &self.leases {
                child = child.session_leases(leases.clone());
            }
            let runner = Arc::new(ChildRunner {
                child: child.build()?,
                next: std::sync::atomic::AtomicU64::new(1),
                peers: self.peers.clone(),
            });
            let mut subagents = Subagents::new(runner, max_concurrent, outbox);
            if let Some(results) = self.local_results {
                subagents = subagents.with_local_results(results);
            }
            tools.register(Arc::new(subagents.subagent_tool()));
            tools.register(Arc::new(subagents.spawn_tool()));
            subagents_handle = Some(subagents);
        }
        if let Some(memory) = &self.memory {
            if tools.get("memory_search").is_none() {
                tools.register(Arc::new(MemorySearchTool::new(Arc::clone(memory))));
            }
            if tools.get("memory_write").is_none() {
                tools.register(Arc::new(MemoryWriteTool::new(Arc::clone(memory))));
            }
        }
        let limiter = crate::RateLimiter::new(self.config.rate_limits);
        let tool_specs = tools.specs().into();
        Ok(Agent {
            inner: Arc::new(Inner {
                provider: self.provider,
                tools,
                tool_specs,
                memory: self.memory,
                store: self.store.unwrap_or_else(|| Arc::new(InMemoryStore::new())),
                context,
                config: self.config,
                usage: self.usage,
                session_locks: Mutex::new(HashMap::new()),
                leases: self.leases,
                permits: self.permits,
                subagents: subagents_handle,
                limiter,
            }),
        })
    }
}

impl Agent {
    pub fn builder(provider: Arc<dyn LlmProvider>) -> AgentBuilder {
        AgentBuilder {
            provider,
            tools: ToolRegistry::new(),
            store: None,
            usage: None,
            memory: None,
            subagents: None,
            local_results: None,
            peers: None,
            skills: None,
            workspace: None,
            instructions: None,
            leases: None,
            permits: None,
            config: AgentConfig::default(),
        }
    }
}
