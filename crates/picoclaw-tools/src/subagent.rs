//! `subagent(task, label)` and `spawn(task, label)`: hand a task to a sub-agent — the same model,
//! its own session, the same tools minus these two (so no sub-agent starts another: no
//! recursion). `subagent` waits and returns the result; `spawn` returns at once and the result
//! is delivered to the conversation that spawned it, once: through the outbox to a chat channel,
//! or in-process ([`LocalResults`]) to the terminal.
//!
//! The agent core implements [`SubagentRunner`], so this crate does not depend on it.

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::OutboundMessage;
use picoclaw_api::{ProviderError, SessionKey, StateError, ToolSpec};
use picoclaw_state::{Outbox, now_ms};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Runs one sub-agent task to the end and returns its final answer.
#[async_trait]
pub trait SubagentRunner: Send + Sync {
    async fn run(
        &self,
        task: &str,
        label: &str,
        parent: &ToolContext,
    ) -> Result<String, SubagentError>;

    /// Hands the task to another agent of the gateway (`agents.list`), when this runner knows
    /// other agents and may use `agent`. By default there are none.
    async fn run_on(
        &self,
        agent: &str,
        _task: &str,
        _label: &str,
        _parent: &ToolContext,
    ) -> Result<String, SubagentError> {
        Err(SubagentError::Other(format!(
            "there is no agent '{agent}' to hand the task to here (several agents run only in \
             the gateway, with agents.list)"
        )))
    }
}

/// Why a sub-agent task gave no answer. Its text goes back to the model that asked (after
/// `subagent "label" failed: `), so each variant says what the model can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubagentError {
    /// The model failed (after the provider's own retries). [`ProviderError::is_retryable`]
    /// tells whether trying again later may help.
    #[error("the model failed: {0}")]
    Model(#[source] ProviderError),
    /// The task was cancelled before it finished.
    #[error("the task was cancelled before it finished")]
    Cancelled,
    /// The sub-agent kept calling tools past its limit without a final answer; a smaller task
    /// may succeed.
    #[error(
        "it stopped after {rounds} rounds of tool calls without reaching a final answer (the \
         limit is agents.defaults.max_tool_iterations); split the task into smaller ones"
    )]
    IterationLimit {
        /// Rounds of tool calls made.
        rounds: usize,
    },
    /// The task alone does not fit in the model's context window; shorten it.
    #[error("the task is too long for the model: {0}")]
    TooLarge(String),
    /// Its conversation could not be saved or loaded.
    #[error("could not save or load the sub-agent's conversation: {0}")]
    State(#[source] StateError),
    /// No sub-agent can run any more (the process is shutting down); do the task directly.
    #[error("sub-agents are shut down")]
    ShutDown,
    /// Anything else the runner reports (a runner outside picoclaw, a setup problem).
    #[error("{0}")]
    Other(String),
}

impl SubagentError {
    /// Whether running the same task again later may succeed (a rate limit, an outage).
    pub fn is_retryable(&self) -> bool {
        matches!(self, SubagentError::Model(e) if e.is_retryable())
    }
}

impl From<ProviderError> for SubagentError {
    fn from(e: ProviderError) -> Self {
        SubagentError::Model(e)
    }
}

#[derive(Deserialize)]
struct Args {
    task: String,
    #[serde(default)]
    label: Option<String>,
    /// Another agent (of `agents.list`) to hand the task to.
    #[serde(default)]
    agent_id: Option<String>,
}

fn label_of(args: &Args) -> String {
    args.label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| args.task.trim().chars().take(40).collect())
}

/// A spawned task's result for a conversation that picoclaw shows itself (the terminal), handed
/// over in-process rather than through the outbox.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackgroundResult {
    pub session_key: SessionKey,
    pub label: String,
    /// "Background task "label" finished: ..." or "... failed: ...".
    pub text: String,
}

/// Where a process that shows its own conversations receives spawned tasks' results.
pub type LocalResults = tokio::sync::mpsc::UnboundedSender<BackgroundResult>;

/// Sub-agents, sharing one concurrency limit.
#[derive(Clone)]
pub struct Subagents {
    runner: Arc<dyn SubagentRunner>,
    permits: Arc<Semaphore>,
    outbox: Option<Arc<dyn Outbox>>,
    local: Option<LocalResults>,
    pending: Arc<AtomicUsize>,
}

/// Counts a spawned task as pending until it is dropped (its result delivered, or a panic).
struct Pending(Arc<AtomicUsize>);

impl Pending {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Subagents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subagents").finish_non_exhaustive()
    }
}

impl Subagents {
    /// `max_concurrent` sub-agents at once (waiting ones queue); `outbox` is where `spawn`
    /// delivers results (without one, `spawn` explains it cannot).
    pub fn new(
        runner: Arc<dyn SubagentRunner>,
        max_concurrent: usize,
        outbox: Option<Arc<dyn Outbox>>,
    ) -> Self {
        Self {
            runner,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            outbox,
            local: None,
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Results of tasks spawned from `cli` conversations go to `results` (the terminal prints
    /// them) instead of being refused.
    pub fn with_local_results(mut self, results: LocalResults) -> Self {
        self.local = Some(results);
        self
    }

    /// Spawned tasks whose result has not been handed over yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The `subagent` tool (waits for the result).
    pub fn subagent_tool(&self) -> SubagentTool {
        SubagentTool(self.clone())
    }

    /// The `spawn` tool (background; the result comes later).
    pub fn spawn_tool(&self) -> SpawnTool {
        SpawnTool(self.clone())
    }

    async fn run(&self, task: &Task, ctx: &ToolContext) -> Result<String, SubagentError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SubagentError::ShutDown)?;
        match &task.agent {
            Some(agent) => {
                self.runner
                    .run_on(agent, &task.text, &task.label, ctx)
                    .await
            }
            None => self.runner.run(&task.text, &task.label, ctx).await,
        }
    }

    /// Runs `task` on this agent's own sub-agent (its model, workspace and tools, without
    /// sub-agents of its own), within the shared limit: what another agent's hand-over runs.
    pub async fn run_task(
        &self,
        task: &str,
        label: &str,
        ctx: &ToolContext,
    ) -> Result<String, SubagentError> {
        let task = Task {
            text: task.to_owned(),
            label: label.to_owned(),
            agent: None,
        };
        self.run(&task, ctx).await
    }
}

/// A task as the model gave it.
struct Task {
    text: String,
    label: String,
    /// Handed to this other agent.
    agent: Option<String>,
}

/// The spec both tools share: `task` and `label`.
fn task_spec(name: &str, description: &str) -> ToolSpec {
    ToolSpec::new(
        name,
        description,
        schema(
            &[
                (
                    "task",
                    "string",
                    "The task, with everything the sub-agent needs to know",
                ),
                ("label", "string", "A short name for the task"),
                (
                    "agent_id",
                    "string",
                    "Another agent to hand the task to (only one this agent's \
                     subagents.allow_agents lists); omit for a sub-agent of your own",
                ),
            ],
            &["task"],
        ),
    )
}

/// The task (trimmed, not empty), its label and target agent, or the error for the model.
fn task_of(tool: &str, args: Value) -> Result<Task, ToolOutput> {
    let args: Args = parse(tool, args)?;
    if args.task.trim().is_empty() {
        return Err(ToolOutput::error(format!("{tool}: the task is empty")));
    }
    Ok(Task {
        label: label_of(&args),
        text: args.task.trim().to_owned(),
        agent: args
            .agent_id
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty()),
    })
}

/// `subagent(task, label)`.
#[derive(Debug, Clone)]
pub struct SubagentTool(Subagents);

#[async_trait]
impl Tool for SubagentTool {
    // Sub-agents exist to work side by side; each has its own session.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        task_spec(
            "subagent",
            "Run a self-contained task in a sub-agent (fresh context) and wait for its result.",
        )
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let task = match task_of("subagent", args) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let label = task.label.clone();
        match self.0.run(&task, ctx).await {
            Ok(result) => ToolOutput::ok(format!("Sub-agent \"{label}\" finished:\n{result}")),
            Err(e) => ToolOutput::error(format!("subagent \"{label}\" failed: {e}")),
        }
    }
}

/// How a spawned task's result reaches its conversation, exactly once.
enum Delivery {
    /// One outbox entry, which the gateway's deliverer hands out once.
    Outbox(Arc<dyn Outbox>, String, String),
    /// In-process, to the terminal.
    Local(LocalResults),
}

impl Delivery {
    async fn deliver(self, ctx: &ToolContext, label: &str, text: String) {
        match self {
            Delivery::Outbox(outbox, channel, chat) => {
                let msg = OutboundMessage::new(channel.as_str(), chat.as_str(), text);
                match serde_json::to_string(&msg) {
                    Ok(payload) => {
                        if let Err(e) = outbox
                            .enqueue_outbound(&channel, &chat, &payload, now_ms())
                            .await
                        {
                            tracing::warn!(error = %e, "could not deliver a background task's result");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not encode a background task's result")
                    }
                }
            }
            Delivery::Local(tx) => {
                let result = BackgroundResult {
                    session_key: ctx.session_key.clone(),
                    label: label.to_owned(),
                    text,
                };
                if tx.send(result).is_err() {
                    tracing::warn!(
                        label,
                        "a background task finished after the terminal closed"
                    );
                }
            }
        }
    }
}

/// `spawn(task, label)`.
#[derive(Debug, Clone)]
pub struct SpawnTool(Subagents);

#[async_trait]
impl Tool for SpawnTool {
    // Only starts a background task.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        task_spec(
            "spawn",
            "Run a task in a background sub-agent; its result is sent to this chat later.",
        )
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let task = match task_of("spawn", args) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let label = task.label.clone();
        let channel = ctx.channel.clone();
        let local = match (&self.0.local, channel.as_deref()) {
            (Some(tx), Some("cli")) => Some(tx.clone()),
            _ => None,
        };
        let delivery = match (local, &self.0.outbox, channel, ctx.chat_id.clone()) {
            (Some(tx), ..) => Delivery::Local(tx),
            (None, _, Some(channel), _) if crate::answers_in_place(&channel) => {
                return ToolOutput::error(format!(
                    "spawn: the {channel} conversation cannot receive a result later; use subagent"
                ));
            }
            (None, Some(outbox), Some(channel), Some(chat)) => {
                Delivery::Outbox(outbox.clone(), channel, chat)
            }
            _ => {
                return ToolOutput::error(
                    "spawn: this conversation cannot receive a result later (it is not on a chat \
                     channel of the gateway); use subagent, which waits for the result",
                );
            }
        };
        let subagents = self.0.clone();
        let ctx = ctx.clone();
        let label_done = label.clone();
        let pending = Pending::new(&self.0.pending);
        tokio::spawn(async move {
            let _pending = pending;
            let text = match subagents.run(&task, &ctx).await {
                Ok(result) => format!("Background task \"{label_done}\" finished:\n{result}"),
                Err(e) => format!("Background task \"{label_done}\" failed: {e}"),
            };
            delivery.deliver(&ctx, &label_done, text).await;
        });
        ToolOutput::ok(format!(
            "Started \"{label}\" in the background; its result will be sent to this chat."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::SessionKey;
    use picoclaw_state::InMemoryStore;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Slow {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait]
    impl SubagentRunner for Slow {
        async fn run(
            &self,
            task: &str,
            label: &str,
            _parent: &ToolContext,
        ) -> Result<String, SubagentError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            if task == "fail" {
                return Err(SubagentError::Other("the model is down".into()));
            }
            if task == "rate" {
                return Err(SubagentError::Model(ProviderError::RateLimited {
                    provider: "openai".into(),
                    retry_after: None,
                    message: "slow down, please".into(),
                }));
            }
            if task == "loop" {
                return Err(SubagentError::IterationLimit { rounds: 20 });
            }
            Ok(format!("done: {task} ({label})"))
        }
    }

    fn chat() -> ToolContext {
        ToolContext::new(SessionKey::new("telegram:5")).with_chat("telegram", "5")
    }

    #[tokio::test]
    async fn subagent_waits_and_the_limit_holds() {
        let runner = Arc::new(Slow {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let subs = Subagents::new(runner.clone(), 2, None);
        let tool = subs.subagent_tool();
        let out = tool
            .call(
                &chat(),
                json!({"task": "count the files", "label": "files"}),
            )
            .await;
        assert_eq!(
            out.content,
            "Sub-agent \"files\" finished:\ndone: count the files (files)"
        );
        let calls = (0..6).map(|i| {
            let t = tool.clone();
            async move { t.call(&chat(), json!({"task": format!("t{i}")})).await }
        });
        let outs = futures_join(calls).await;
        assert!(outs.iter().all(|o| !o.is_error));
        assert_eq!(
            runner.most.load(Ordering::SeqCst),
            2,
            "never more than the limit at once"
        );
        let out = tool.call(&chat(), json!({"task": "fail"})).await;
        assert!(
            out.is_error && out.content.contains("the model is down"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_sub_agent_tells_the_model_why_by_its_kind() {
        let runner = Arc::new(Slow {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let tool = Subagents::new(runner, 1, None).subagent_tool();
        // The provider's own error, whole, and marked as the model's failure.
        let out = tool
            .call(&chat(), json!({"task": "rate", "label": "r"}))
            .await;
        assert!(out.is_error, "{out:?}");
        assert_eq!(
            out.content,
            "subagent \"r\" failed: the model failed: openai rate limit hit: slow down, please"
        );
        // The iteration limit says what to do about it.
        let out = tool
            .call(&chat(), json!({"task": "loop", "label": "l"}))
            .await;
        assert!(
            out.is_error
                && out.content.contains("after 20 rounds")
                && out.content.contains("smaller"),
            "{out:?}"
        );
        let rate = SubagentError::Model(ProviderError::RateLimited {
            provider: "openai".into(),
            retry_after: None,
            message: "x".into(),
        });
        assert!(rate.is_retryable());
        assert!(!SubagentError::IterationLimit { rounds: 3 }.is_retryable());
        assert!(!SubagentError::ShutDown.is_retryable());
    }

    async fn futures_join(
        calls: impl Iterator<Item = impl std::future::Future<Output = ToolOutput> + Send + 'static>,
    ) -> Vec<ToolOutput> {
        let handles: Vec<_> = calls.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn spawn_returns_at_once_and_delivers_the_result_once() {
        let runner = Arc::new(Slow {
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        });
        let store = Arc::new(InMemoryStore::new());
        let subs = Subagents::new(runner, 2, Some(store.clone()));
        let spawn = subs.spawn_tool();
        let out = spawn
            .call(&chat(), json!({"task": "research tides", "label": "tides"}))
            .await;
        assert!(out.content.starts_with("Started \"tides\""), "{out:?}");
        assert!(
            store
                .claim_outbound("t", now_ms(), 10, 10)
                .await
                .unwrap()
                .is_empty(),
            "not yet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = store
            .claim_outbound("t", now_ms() + 100, 10_000, 10)
            .await
            .unwrap();
        assert_eq!(sent.len(), 1, "one delivery");
        assert_eq!(
            (sent[0].channel.as_str(), sent[0].chat_id.as_str()),
            ("telegram", "5")
        );
        assert!(
            sent[0].payload.contains("done: research tides (tides)"),
            "{}",
            sent[0].payload
        );
        // Not on a chat: explained, nothing started.
        let cli = ToolContext::new(SessionKey::new("cli:default")).with_chat("cli", "default");
        let out = spawn.call(&cli, json!({"task": "x"})).await;
        assert!(
            out.is_error && out.content.contains("use subagent"),
            "{out:?}"
        );
        let none = Subagents::new(
            Arc::new(Slow {
                running: AtomicUsize::new(0),
                most: AtomicUsize::new(0),
            }),
            1,
            None,
        );
        let out = none.spawn_tool().call(&chat(), json!({"task": "x"})).await;
        assert!(out.is_error, "{out:?}");
    }
}
