//! `Agent` and `AgentBuilder`: one conversation turn is load history → build context → call the
//! model → run the tools it asks for → repeat until a final answer → persist the turn.

use crate::context::ContextBuilder;
use crate::events::{AgentEvent, EventSink};
use crate::tool_loop::{self, ToolLoopConfig};
use futures::StreamExt;
use picoclaw_api::{ChatMessage, ContentPart, FinishReason, SessionKey, Usage};
use picoclaw_providers::{ChatRequest, ChatResponse, LlmProvider, ProviderError, StreamEvent};
use picoclaw_state::{
    InMemoryStore, Outbox, SessionStore, StateError, UsageRecord, UsageStore, WorkspaceMemory,
};
use picoclaw_tools::{
    LocalResults, MemorySearchTool, MemoryWriteTool, SubagentRunner, Subagents, Tool, ToolContext,
    ToolRegistry, TurnOrigin,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
    skills: Option<Arc<picoclaw_skills::LiveCatalog>>,
    workspace: Option<PathBuf>,
    instructions: Option<String>,
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

    pub fn max_tool_iterations(mut self, n: usize) -> Self {
        self.config.max_tool_iterations = n;
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
            let runner = Arc::new(ChildRunner {
                child: child.build()?,
                next: std::sync::atomic::AtomicU64::new(1),
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
        Ok(Agent {
            inner: Arc::new(Inner {
                provider: self.provider,
                tools,
                memory: self.memory,
                store: self.store.unwrap_or_else(|| Arc::new(InMemoryStore::new())),
                context,
                config: self.config,
                usage: self.usage,
                session_locks: Mutex::new(HashMap::new()),
                subagents: subagents_handle,
            }),
        })
    }
}

const SUBAGENT_INSTRUCTIONS: &str = "You are a sub-agent: another agent gave you one task. Do \
it with your tools, then answer with the result only — it goes back to the agent that asked, not \
to a person.";

/// Runs sub-agent tasks on a child agent, each in a session of its own.
struct ChildRunner {
    child: Agent,
    next: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl SubagentRunner for ChildRunner {
    async fn run(&self, task: &str, label: &str, parent: &ToolContext) -> Result<String, String> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = SessionKey::new(format!("subagent:{}:{n}", parent.session_key));
        tracing::info!(%session, label, "sub-agent started");
        // The parent's chat, and its origin: a scheduled turn stays scheduled in its sub-agents.
        let mut options = TurnOptions::new().origin(parent.origin);
        if let (Some(c), Some(t)) = (&parent.channel, &parent.chat_id) {
            options = options.chat(c.clone(), t.clone());
        }
        let outcome = self
            .child
            .turn(&session, ChatMessage::user(task), options, &())
            .await
            .map_err(|e| e.to_string())?;
        Ok(outcome.text)
    }
}

struct Inner {
    provider: Arc<dyn LlmProvider>,
    tools: ToolRegistry,
    memory: Option<Arc<WorkspaceMemory>>,
    store: Arc<dyn SessionStore>,
    context: ContextBuilder,
    config: AgentConfig,
    usage: Option<(Arc<dyn UsageStore>, String)>,
    session_locks: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
    subagents: Option<Subagents>,
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
    pub fn builder(provider: Arc<dyn LlmProvider>) -> AgentBuilder {
        AgentBuilder {
            provider,
            tools: ToolRegistry::new(),
            store: None,
            usage: None,
            memory: None,
            subagents: None,
            local_results: None,
            skills: None,
            workspace: None,
            instructions: None,
            config: AgentConfig::default(),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    pub fn tools(&self) -> &ToolRegistry {
        &self.inner.tools
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

    /// One text message in, the final answer out (no events, no cancellation).
    pub async fn chat(&self, session: &SessionKey, text: &str) -> Result<TurnOutcome, AgentError> {
        self.turn(
            session,
            ChatMessage::user(text),
            TurnOptions::default(),
            &(),
        )
        .await
    }

    /// Runs one turn for `message` in `session`, reporting progress to `events`.
    pub async fn turn(
        &self,
        session: &SessionKey,
        message: ChatMessage,
        options: TurnOptions,
        events: &dyn EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let span = tracing::info_span!("turn", session = %session);
        async {
            let lock = self.session_lock(session);
            let _guard = lock.lock().await;
            let result = self.run_turn(session, message, &options, events).await;
            drop(_guard);
            self.release_session_lock(session, lock);
            result
        }
        .instrument(span)
        .await
    }

    fn session_lock(&self, key: &SessionKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = match self.inner.session_locks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        locks.entry(key.clone()).or_default().clone()
    }

    fn release_session_lock(&self, key: &SessionKey, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = match self.inner.session_locks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        drop(lock);
        // Only the map holds it now: nobody is waiting, so the entry can go (idle sessions cost
        // no memory).
        if locks.get(key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(key);
        }
    }

    async fn run_turn(
        &self,
        session: &SessionKey,
        message: ChatMessage,
        options: &TurnOptions,
        events: &dyn EventSink,
    ) -> Result<TurnOutcome, AgentError> {
        let inner = &*self.inner;
        let cfg = &inner.config;
        let mut stored = inner.store.load(session, Some(cfg.history_limit)).await?;
        let budget = cfg
            .context_window
            .saturating_sub(cfg.max_tokens.unwrap_or(0) as usize);
        if cfg.compaction {
            let threshold = if cfg.compaction_threshold == 0 {
                budget / 4 * 3
            } else {
                cfg.compaction_threshold
            };
            let history: usize = stored
                .messages
                .iter()
                .map(crate::context::message_tokens)
                .sum();
            if history > threshold {
                stored = self
                    .compact(session, stored, budget / 4, budget, events)
                    .await;
            }
        }
        let memory = self.memory_section(&message).await;
        let mut system_prompt = self.system_prompt(stored.summary.as_deref(), memory.as_deref());

        let message_cost = crate::context::message_tokens(&message);
        let room = budget.saturating_sub(crate::context::estimate_tokens(&system_prompt));
        if message_cost > room {
            return Err(AgentError::TooLarge {
                tokens: message_cost,
                budget: room,
            });
        }

        // Messages produced by this turn, persisted together at the end whatever happens.
        let mut turn: Vec<ChatMessage> = vec![message];
        let mut usage = Usage::default();
        let mut model_calls = 0usize;
        let mut tool_calls = 0usize;
        let mut served_by: Option<String> = None;
        let specs = inner.tools.specs();
        let mut tool_ctx = ToolContext::new(session.clone()).with_origin(options.origin);
        if let (Some(ch), Some(chat)) = (&options.channel, &options.chat_id) {
            tool_ctx = tool_ctx.with_chat(ch.clone(), chat.clone());
        }
        let loop_cfg = ToolLoopConfig {
            timeout: cfg.tool_timeout,
            max_result_bytes: cfg.max_tool_result_bytes,
        };

        let mut retried_after_compaction = false;
        let mut show_images = !options.images.is_empty();
        let result: Result<(String, TurnEnd), AgentError> = async {
            let mut iteration = 0usize;
            loop {
                let mut messages = inner.context.build_messages(
                    system_prompt.clone(),
                    &stored.messages,
                    &turn,
                    budget,
                );
                // The turn's own messages come last; the first of them is the user's.
                let with_images = show_images
                    && messages
                        .len()
                        .checked_sub(turn.len())
                        .and_then(|at| messages.get_mut(at))
                        .map(|m| m.content.extend(options.images.iter().cloned()))
                        .is_some();
                let request = ChatRequest::new(cfg.model.clone(), messages)
                    .with_tools(specs.clone())
                    .with_max_tokens(cfg.max_tokens)
                    .with_temperature(cfg.temperature);
                model_calls += 1;
                events.event(AgentEvent::ModelCall { iteration: model_calls });
                let response = match cancellable(options, self.call_model(request, events)).await? {
                    Err(AgentError::Provider(ProviderError::ContextLength { .. }))
                        if cfg.compaction && !retried_after_compaction && !stored.messages.is_empty() =>
                    {
                        // The vendor says it does not fit (our estimate was off): summarise the
                        // whole stored history and try once more.
                        retried_after_compaction = true;
                        let current = std::mem::take(&mut stored);
                        stored = self.compact(session, current, 0, budget, events).await;
                        system_prompt =
                            self.system_prompt(stored.summary.as_deref(), memory.as_deref());
                        continue;
                    }
                    Err(AgentError::Provider(ProviderError::InvalidRequest { message, .. }))
                        if with_images =>
                    {
                        tracing::warn!(%message, "the model refused the images; going on without them");
                        show_images = false;
                        continue;
                    }
                    other => other?,
                };
                if let Some(u) = &response.usage {
                    usage.add(u);
                    if let Some((ledger, label)) = &inner.usage {
                        let model = response.served_by.clone().unwrap_or_else(|| label.clone());
                        let record = UsageRecord::now(session.clone(), model, *u);
                        if let Err(e) = ledger.record(&record).await {
                            tracing::warn!(error = %e, "could not record token usage");
                        }
                    }
                }
                if response.served_by.is_some() {
                    served_by.clone_from(&response.served_by);
                }
                let assistant = response.message;
                if assistant.tool_calls.is_empty() {
                    let text = assistant.text();
                    let end = if response.finish_reason == FinishReason::Length {
                        TurnEnd::Truncated
                    } else {
                        TurnEnd::Answered
                    };
                    turn.push(assistant);
                    return Ok((text, end));
                }
                iteration += 1;
                let calls = assistant.tool_calls.clone();
                turn.push(assistant);
                tool_calls += calls.len();
                let results = tokio::select! {
                    results = tool_loop::run_tool_calls(&inner.tools, &tool_ctx, &calls, &loop_cfg, events) => results,
                    _ = cancelled(options) => {
                        // Keep the history valid: every call gets an answer.
                        turn.extend(calls.iter().map(|c| ChatMessage::tool_result(
                            c.id.clone(), c.name.clone(), "Cancelled by the user before it finished.")));
                        return Err(AgentError::Cancelled);
                    }
                };
                turn.extend(results);
                if iteration >= cfg.max_tool_iterations {
                    let text = format!(
                        "I stopped after {} rounds of tool calls without reaching a final answer \
                         (the limit is agents.defaults.max_tool_iterations = {}). Tell me how to \
                         continue, or raise the limit.",
                        iteration, cfg.max_tool_iterations
                    );
                    events.event(AgentEvent::TextDelta(text.clone()));
                    turn.push(ChatMessage::assistant(text.clone()));
                    return Ok((text, TurnEnd::MaxIterations));
                }
            }
        }
        .await;

        let saved = inner.store.append(session, &turn).await;
        if let (Err(save_err), Err(turn_err)) = (&saved, &result) {
            tracing::error!(%save_err, %turn_err, "turn failed and could not be saved");
        }
        let (text, end) = result?;
        saved?;
        tracing::info!(
            model_calls,
            tool_calls,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "turn finished"
        );
        Ok(TurnOutcome {
            text,
            end,
            model_calls,
            tool_calls,
            usage,
            served_by,
        })
    }

    /// Summarises all but the newest `keep_tokens` worth of `stored` into the session's summary
    /// and returns the session as it now loads. On failure the history is left as it was.
    async fn compact(
        &self,
        session: &SessionKey,
        stored: picoclaw_state::Session,
        keep_tokens: usize,
        budget: usize,
        events: &dyn EventSink,
    ) -> picoclaw_state::Session {
        let inner = &*self.inner;
        let keep = crate::compaction::keep_count(&stored.messages, keep_tokens);
        let older = &stored.messages[..stored.messages.len() - keep];
        if older.is_empty() {
            return stored;
        }
        let request = crate::compaction::summary_request(
            &inner.config.model,
            stored.summary.as_deref(),
            older,
            budget / 2,
        );
        let summary = match inner.provider.chat(request).await {
            Ok(r) if !r.message.text().trim().is_empty() => r.message.text(),
            Ok(_) => {
                tracing::warn!("compaction: the model returned an empty summary; history kept");
                return stored;
            }
            Err(e) => {
                tracing::warn!(error = %e, "compaction failed; history kept");
                return stored;
            }
        };
        if let Err(e) = inner.store.compact(session, summary.trim(), keep).await {
            tracing::warn!(error = %e, "could not store the compacted history");
            return stored;
        }
        tracing::info!(summarized = older.len(), kept = keep, "history compacted");
        events.event(AgentEvent::Compacted {
            summarized: older.len(),
            kept: keep,
        });
        match inner
            .store
            .load(session, Some(inner.config.history_limit))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not reload the compacted session");
                stored
            }
        }
    }

    /// The memory most related to `message`, when the agent has a memory index.
    async fn memory_section(&self, message: &ChatMessage) -> Option<String> {
        let memory = self.inner.memory.as_ref()?;
        let budget = self.inner.config.memory_budget_tokens;
        if budget == 0 {
            return None;
        }
        let today = chrono::Local::now().date_naive();
        match memory.context(&message.text(), budget, today).await {
            Ok(section) => section,
            Err(e) => {
                tracing::warn!(error = %e, "long-term memory left out of this turn");
                None
            }
        }
    }

    fn system_prompt(&self, summary: Option<&str>, memory: Option<&str>) -> String {
        let now = chrono::Local::now();
        if self.inner.memory.is_some() {
            self.inner
                .context
                .system_prompt_with_memory(now, summary, memory)
        } else {
            self.inner.context.system_prompt(now, summary)
        }
    }

    async fn call_model(
        &self,
        request: ChatRequest,
        events: &dyn EventSink,
    ) -> Result<ChatResponse, AgentError> {
        let provider = &self.inner.provider;
        if !self.inner.config.stream {
            let response = provider.chat(request).await?;
            let text = response.message.text();
            if !text.is_empty() {
                events.event(AgentEvent::TextDelta(text));
            }
            return Ok(response);
        }
        let mut stream = provider.stream(request).await?;
        while let Some(item) = stream.next().await {
            match item? {
                StreamEvent::TextDelta(delta) => events.event(AgentEvent::TextDelta(delta)),
                StreamEvent::Completed(response) => return Ok(response),
                _ => {}
            }
        }
        Err(ProviderError::response(
            provider.name(),
            "the answer stream ended before the answer was complete",
        )
        .into())
    }
}

async fn cancelled(options: &TurnOptions) {
    match &options.cancel {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn cancellable<T>(
    options: &TurnOptions,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, AgentError> {
    tokio::select! {
        out = fut => Ok(out),
        _ = cancelled(options) => Err(AgentError::Cancelled),
    }
}
