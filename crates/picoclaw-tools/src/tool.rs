//! The `Tool` trait, what a call gets (`ToolContext`) and returns (`ToolOutput`), and the registry.

use async_trait::async_trait;
use picoclaw_types::{SessionKey, ToolSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What started a turn: a person writing, or picoclaw on its own schedule. Sub-agents inherit
/// their parent's origin, so a scheduled turn cannot shed it by delegating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnOrigin {
    /// Someone wrote: a chat message, the terminal, an API request.
    #[default]
    Conversation,
    /// A cron job's run.
    Cron,
    /// The periodic heartbeat (HEARTBEAT.md).
    Heartbeat,
}

impl TurnOrigin {
    /// A cron job or the heartbeat: nobody is there to approve what the turn does.
    pub fn is_scheduled(self) -> bool {
        matches!(self, TurnOrigin::Cron | TurnOrigin::Heartbeat)
    }
}

/// Who is calling: the conversation a tool call belongs to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ToolContext {
    pub session_key: SessionKey,
    /// The channel the conversation happens on (`cli`, `telegram`...), when known.
    pub channel: Option<String>,
    /// The chat within that channel, when known.
    pub chat_id: Option<String>,
    /// What started the turn.
    pub origin: TurnOrigin,
}

impl ToolContext {
    pub fn new(session_key: SessionKey) -> Self {
        Self {
            session_key,
            channel: None,
            chat_id: None,
            origin: TurnOrigin::Conversation,
        }
    }

    pub fn with_chat(mut self, channel: impl Into<String>, chat_id: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self.chat_id = Some(chat_id.into());
        self
    }

    pub fn with_origin(mut self, origin: TurnOrigin) -> Self {
        self.origin = origin;
        self
    }
}

/// A tool's result. Failures are data for the model (`is_error`), never a reason to abort a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Something the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and JSON schema of the parameters, as sent to the model.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool. `args` is the parsed JSON object the model sent.
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput;

    /// Whether calls of this tool may run at the same time as other such calls of one model
    /// response. True only for tools that change nothing (they read files, search, fetch); the
    /// default is false, so a tool that writes runs alone, in the order the model asked.
    fn parallel_safe(&self) -> bool {
        false
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn spec(&self) -> ToolSpec {
        (**self).spec()
    }
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        (**self).call(ctx, args).await
    }
    fn parallel_safe(&self) -> bool {
        (**self).parallel_safe()
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Box<T> {
    fn spec(&self) -> ToolSpec {
        (**self).spec()
    }
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        (**self).call(ctx, args).await
    }
    fn parallel_safe(&self) -> bool {
        (**self).parallel_safe()
    }
}

/// The tools an agent may call, by name. Names are unique; specs come out sorted by name so the
/// request prefix stays byte-identical between turns (good for provider prompt caches).
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool, replacing (and returning) any tool of the same name.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> Option<Arc<dyn Tool>> {
        let name = tool.spec().name;
        self.tools.insert(name, tool)
    }

    pub fn with(mut self, tool: impl Tool + 'static) -> Self {
        self.register(Arc::new(tool));
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<dyn Tool>> {
        self.tools.remove(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Whether `name` is a tool whose calls may run concurrently ([`Tool::parallel_safe`]).
    /// Unknown names are not.
    pub fn is_parallel_safe(&self, name: &str) -> bool {
        self.tools.get(name).is_some_and(|t| t.parallel_safe())
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }

    /// Calls a tool by name. An unknown name is an error result listing the available tools.
    /// Every call is recorded in the audit trail (target `audit`), refused ones included.
    pub async fn call(&self, ctx: &ToolContext, name: &str, args: serde_json::Value) -> ToolOutput {
        let started = std::time::Instant::now();
        // Masking costs a serialisation: only when something writes the audit trail.
        let shown = if tracing::enabled!(target: "audit", tracing::Level::TRACE) {
            crate::audit::masked_args(&args)
        } else {
            String::new()
        };
        let output = match self.tools.get(name) {
            Some(tool) => tool.call(ctx, args).await,
            None => ToolOutput::error(format!(
                "Error: there is no tool named '{name}'. Available tools: {}",
                self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        };
        crate::audit::tool_call(
            ctx.session_key.as_str(),
            name,
            &shown,
            &output,
            started.elapsed(),
        );
        output
    }
}
