//! The registry of the tools an agent may call. The `Tool` trait, what a call gets
//! (`ToolContext`) and returns (`ToolOutput`) are picoclaw-api's.

use picoclaw_api::ToolSpec;
use picoclaw_api::tool::{Tool, ToolContext, ToolOutput};
use std::collections::BTreeMap;
use std::sync::Arc;

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
