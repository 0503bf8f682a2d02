//! picoclaw as a library: an agent that talks to the model you choose, calls the tools you
//! give it, and keeps its conversations.
//!
//! ```no_run
//! use picoclaw::{Agent, SessionKey, ToolContext, ToolOutput, TypedTool};
//!
//! /// The arguments of our tool; their doc comments become the schema's descriptions.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Add {
//!     /// The first number.
//!     a: f64,
//!     /// The second number.
//!     b: f64,
//! }
//!
//! struct Adder;
//!
//! #[picoclaw::async_trait]
//! impl TypedTool for Adder {
//!     type Args = Add;
//!     fn name(&self) -> &str { "add" }
//!     fn description(&self) -> &str { "Adds two numbers." }
//!     async fn run(&self, _ctx: &ToolContext, args: Add) -> ToolOutput {
//!         ToolOutput::ok((args.a + args.b).to_string())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = picoclaw::providers::openai_compatible(
//!     "https://api.openai.com/v1",
//!     std::env::var("OPENAI_API_KEY").ok(),
//! )?;
//! let agent = Agent::builder(provider)
//!     .model("gpt-4o-mini")
//!     .tool(Adder.into_tool())
//!     .build()?;
//! let answer = agent.chat(&SessionKey::new("me"), "What is 2 + 40?").await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```
//!
//! What is here:
//! - the stable vocabulary and traits of [`picoclaw_api`] (messages, [`LlmProvider`],
//!   [`Tool`] and [`TypedTool`], [`Channel`], the state stores), re-exported at the root;
//! - the agent: [`Agent`], [`AgentBuilder`], its events and errors;
//! - [`providers`]: the model clients, each family behind a feature (`openai` by default,
//!   `anthropic`, `gemini`), the resilience wrappers and the [`ProviderRegistry`];
//! - [`state`]: where conversations are kept — [`InMemoryStore`] always, `SqliteStore` with the
//!   `sqlite` feature, `PgStore` with `postgres`;
//! - [`tools`]: the tool registry and the built-in tools (files in a sandboxed workspace, exec,
//!   web fetch and search).
//!
//! The default features compile no C code of picoclaw's choosing beyond the TLS library
//! (ring) and pull no database, no Azure SDK and no HTTP server; docs/PERFORMANCE.md lists the
//! package count of each feature set.
//!
//! TLS is rustls; nothing in picoclaw installs a process-wide crypto provider. With the `ring`
//! feature (default) the clients use ring unless the application installed a process default.
//! Without it (`default-features = false, features = ["openai"]`: no C compiler needed), give
//! each provider a rustls [`providers::CryptoProvider`] (a pure-Rust one, say) with
//! `OpenAiCompatConfig::with_crypto_provider`, or install a process default before building
//! clients.

#![warn(missing_docs)]

pub use async_trait::async_trait;
pub use picoclaw_api::state::{Session, SessionInfo, SessionStore};
pub use picoclaw_api::*;
pub use picoclaw_core::{
    Agent, AgentBuilder, AgentConfig, AgentError, AgentEvent, CancellationToken, EventLog,
    EventSink, TurnEnd, TurnOptions, TurnOutcome,
};
pub use picoclaw_providers::{ProviderRegistry, ProviderSpec};
pub use picoclaw_state::InMemoryStore;
pub use picoclaw_tools::ToolRegistry;

/// Model clients. Each family is behind a cargo feature; the resilience wrappers (retries,
/// fallbacks, load balancing, request limits) and the registry are always here.
pub mod providers {
    /// rustls' crypto provider, which the provider configs take (`with_crypto_provider`).
    pub use picoclaw_providers::CryptoProvider;
    #[cfg(feature = "anthropic")]
    pub use picoclaw_providers::{ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
    pub use picoclaw_providers::{
        FallbackChain, LoadBalancer, ProviderFactory, ProviderInfo, ProviderRegistry, ProviderSpec,
        RequestLimit, RetryPolicy, Retrying, Route,
    };
    #[cfg(feature = "gemini")]
    pub use picoclaw_providers::{Gemini, GeminiConfig};
    #[cfg(feature = "openai")]
    pub use picoclaw_providers::{OpenAiCompatConfig, OpenAiCompatible, OpenAiResponses};

    /// A client for an OpenAI-compatible Chat Completions endpoint at `base_url` (ending
    /// before `/chat/completions`: `https://api.openai.com/v1`, `http://localhost:11434/v1`),
    /// sending `api_key` as a bearer token when there is one.
    #[cfg(feature = "openai")]
    pub fn openai_compatible(
        base_url: &str,
        api_key: Option<String>,
    ) -> Result<std::sync::Arc<dyn crate::LlmProvider>, crate::ProviderError> {
        let mut config = OpenAiCompatConfig::new("openai", base_url);
        if let Some(key) = api_key.filter(|k| !k.trim().is_empty()) {
            config = config.with_api_key(key);
        }
        Ok(std::sync::Arc::new(OpenAiCompatible::new(config)?))
    }
}

/// Where conversations, usage and the memory index are kept: the store traits of
/// [`picoclaw_api::state`] and their implementations.
pub mod state {
    pub use picoclaw_api::state::*;
    #[cfg(feature = "postgres")]
    pub use picoclaw_state::PgStore;
    #[cfg(feature = "sqlite")]
    pub use picoclaw_state::SqliteStore;
    pub use picoclaw_state::{CronStore, InMemoryStore, StateBackend, WorkspaceMemory, open_state};
}

/// The tool registry and the built-in tools.
pub mod tools {
    pub use picoclaw_tools::{
        Access, AppendFileTool, EditFileTool, ExecConfig, ExecTool, ListDirTool, ReadFileTool,
        Sandbox, SandboxError, ToolRegistry, WebFetchConfig, WebFetchTool, WebSearchConfig,
        WebSearchTool, WriteFileTool, builtin_tools,
    };
}

/// The crate's README, compiled as a doctest so that its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
