//! The picoclaw agent core: [`Agent`] and [`AgentBuilder`], the [`ContextBuilder`] that assembles
//! the system prompt from the workspace, and the tool loop.
//!
//! It re-exports the traits and types an embedder needs, so depending on `picoclaw-core` alone is
//! enough to build an agent with any [`LlmProvider`], any [`Tool`]s and any [`SessionStore`].
//! It knows nothing about channels or HTTP servers.

mod agent;
mod compaction;
pub mod context;
mod events;
mod rate_limit;
mod tool_loop;
pub mod transcript;

pub use agent::{
    Agent, AgentBuilder, AgentConfig, AgentError, DEFAULT_LEASE_TTL, PeerAgents, SessionGuard,
    SessionLeases, TurnEnd, TurnOptions, TurnOutcome,
};
pub use context::ContextBuilder;
pub use events::{AgentEvent, EventLog, EventSink};
pub use rate_limit::{RateKind, RateLimited, RateLimiter, RateLimits};

pub use picoclaw_api::{
    ChannelId, ChatMessage, ContentPart, FinishReason, Role, Secret, SessionKey, ToolCall,
    ToolSpec, Usage,
};
pub use picoclaw_providers::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
pub use picoclaw_state::{
    GroupBy, InMemoryStore, MemoryHit, MemoryNote, MemoryStore, ModelUsage, Remembered, Session,
    SessionInfo, SessionStore, StateError, UsageRecord, UsageRow, UsageStore, WorkspaceMemory,
};
pub use picoclaw_tools::{
    BackgroundResult, LocalResults, Tool, ToolContext, ToolOutput, ToolRegistry, TurnOrigin,
};
pub use tokio_util::sync::CancellationToken;
