//! `Agent` and `AgentBuilder`: one conversation turn is load history → build context → call the
//! model → run the tools it asks for → repeat until a final answer → persist the turn.
//!
//! This module holds the agent's types (errors, config, turn options and outcomes) and the
//! agent itself; `builder` holds [`AgentBuilder`], `turn` runs a turn (history, context, model
//! calls, tools, compaction, persistence), and `subagent` runs sub-agent tasks on a child agent.

mod builder;
mod hold;
mod subagent;
mod turn;

pub use builder::AgentBuilder;
pub use hold::{DEFAULT_LEASE_TTL, SessionGuard, SessionLeases};
pub use subagent::PeerAgents;

use crate::context::ContextBuilder;
use picoclaw_api::{ContentPart, SessionKey, Usage};
use picoclaw_providers::{LlmProvider, ProviderError};
use picoclaw_state::{SessionStore, StateError, UsageStore, WorkspaceMemory};
use picoclaw_tools::{Subagents, ToolRegistry, TurnOrigin};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What can end a turn early. Everything the turn produced up to that point is still saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("could not save or load the conversation: {0}")]
    State(#[from] StateError),
    #[error("the turn was cancelled")]
    Cancelled,
    #[error("invalid agent setup: {0}")]
    Setup(String),
    /// The message alone does not fit in the context window; nothing was sent or saved.
    #[error(
        "the message is about {tokens} tokens, more than fits in the model's context window \
         ({budget} tokens left after the system prompt and the answer's max_tokens); shorten it, \
         or raise agents.defaults.context_window if the model has a larger window"
    )]
    TooLarge { tokens: usize, budget: usize },
}

/// Tunables of the agent loop. Defaults match the original PicoClaw's.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The vendor's model id, sent with every request.
    pub model: String,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Model calls that may ask for tools in one turn before the loop is stopped.
    pub max_tool_iterations: usize,
    /// The model's context window in tokens (its own setting, never derived from max_tokens).
    pub context_window: usize,
    /// At most this many stored messages are loaded per turn.
    pub history_limit: usize,
    /// Stream the model's answer (text deltas reach the event sink as they arrive).
    pub stream: bool,
    /// Wall-clock limit of one tool call.
    pub tool_timeout: Duration,
    /// Tool results longer than this are cut before they go back to the model.
    pub max_tool_result_bytes: usize,
    /// Summarise older history when it grows past the threshold.
    pub compaction: bool,
    /// History tokens that trigger compaction; 0 means three quarters of what the prompt may use
    /// (context window minus max_tokens).
    pub compaction_threshold: usize,
    /// Tokens of long-term memory the system prompt may carry when the agent has a memory
    /// index ([`AgentBuilder::memory`]); 0 leaves memory out of the prompt (the tools stay).
    pub memory_budget_tokens: usize,
    /// Model requests and tool calls one conversation may make per minute (none by default).
    pub rate_limits: crate::RateLimits,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            max_tokens: Some(8192),
            temperature: Some(0.7),
            max_tool_iterations: 20,
            context_window: 128_000,
            history_limit: 400,
            stream: true,
            tool_timeout: Duration::from_secs(300),
            max_tool_result_bytes: 64 * 1024,
            compaction: true,
            compaction_threshold: 0,
            memory_budget_tokens: 2000,
            rate_limits: crate::RateLimits::default(),
        }
    }
}

/// How a turn ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnEnd {
    /// The model gave its final answer.
    Answered,
    /// The model kept asking for tools past `max_tool_iterations`.
    MaxIterations,
    /// The answer was cut at `max_tokens`.
    Truncated,
    /// A rate limit of the conversation was reached and would have needed a wait longer than
    /// [`crate::RateLimiter::MAX_WAIT`]; the answer says which limit and when to try again.
    RateLimited,
}

/// The result of a turn.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TurnOutcome {
    /// The final answer text shown to the user.
    pub text: String,
    pub end: TurnEnd,
    /// Model calls made.
    pub model_calls: usize,
    /// Tool calls executed.
    pub tool_calls: usize,
    pub usage: Usage,
    /// Set when a fallback model answered instead of the configured one.
    pub served_by: Option<String>,
}

/// Per-turn options beyond the message itself.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TurnOptions {
    /// Cancelling it stops the turn at the next step; what was done is saved.
    pub cancel: Option<CancellationToken>,
    /// Where the conversation happens (handed to tools such as `message`).
    pub channel: Option<String>,
    pub chat_id: Option<String>,
    /// What started the turn (handed to tools: a scheduled turn may not add cron jobs).
    /// Sub-agents the turn starts carry the same origin.
    pub origin: TurnOrigin,
    /// Images shown to the model with this turn's message (photos a user sent), not kept in
    /// the history: the stored message says where the files are, so later turns do not pay
    /// for the pixels again. A model that refuses them (400) gets the turn without them.
    pub images: Vec<ContentPart>,
}

impl TurnOptions {
    /// Shows `images` (`ContentPart::Image`) to the model with this turn's message.
    pub fn with_images(mut self, images: Vec<ContentPart>) -> Self {
        self.images = images;
        self
    }

    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel_with(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    pub fn chat(mut self, channel: impl Into<String>, chat_id: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self.chat_id = Some(chat_id.into());
        self
    }

    /// See [`TurnOptions::origin`].
    pub fn origin(mut self, origin: TurnOrigin) -> Self {
        self.origin = origin;
        self
    }
}

struct Inner {
    provider: Arc<dyn LlmProvider>,
    tools: ToolRegistry,
    /// The tools' specs, built once: every model call shares them.
    tool_specs: Arc<[picoclaw_api::ToolSpec]>,
    memory: Option<Arc<WorkspaceMemory>>,
    store: Arc<dyn SessionStore>,
    context: ContextBuilder,
    config: AgentConfig,
    usage: Option<(Arc<dyn UsageStore>, String)>,
    session_locks: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
    /// The `session:<key>` leases, when other instances share the state.
    leases: Option<SessionLeases>,
    /// Turns running at once, when bounded (top-level turns only: a sub-agent runs inside its
    /// parent's turn, and waiting for a permit there could wait forever).
    permits: Option<Arc<tokio::sync::Semaphore>>,
    subagents: Option<Subagents>,
    limiter: crate::RateLimiter,
}

/// A configured agent. Cheap to clone; turns of one session run one at a time, different
/// sessions run in parallel.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("provider", &self.inner.provider.name())
            .field("model", &self.inner.config.model)
            .field("tools", &self.inner.tools)
            .finish_non_exhaustive()
    }
}

impl Agent {
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The limiter counting this agent's model requests and tool calls per conversation.
    pub fn rate_limiter(&self) -> &crate::RateLimiter {
        &self.inner.limiter
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.inner.tools
    }

    /// Runs a task another agent handed over, on this agent's own sub-agent (its model,
    /// workspace and tools, no sub-agents of its own), within its sub-agent limit.
    pub async fn delegate(
        &self,
        task: &str,
        label: &str,
        ctx: &picoclaw_tools::ToolContext,
    ) -> Result<String, picoclaw_tools::SubagentError> {
        match &self.inner.subagents {
            Some(subagents) => subagents.run_task(task, label, ctx).await,
            None => Err(picoclaw_tools::SubagentError::Other(
                "that agent takes no tasks from other agents (it has no sub-agents)".into(),
            )),
        }
    }

    /// Spawned background tasks whose result has not been handed over yet.
    pub fn background_pending(&self) -> usize {
        self.inner.subagents.as_ref().map_or(0, Subagents::pending)
    }

    pub fn session_store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    pub fn context_builder(&self) -> &ContextBuilder {
        &self.inner.context
    }
}
