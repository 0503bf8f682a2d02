//! LLM providers: the [`LlmProvider`] trait every model backend implements, its request and
//! response types, the typed [`ProviderError`], and the OpenAI-compatible Chat Completions family
//! with its vendor [`presets`].

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod gemini;
mod openai;
pub mod presets;
mod resilience;
mod responses;
mod text_tools;
mod wire;

pub use anthropic::{ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
pub use gemini::{Gemini, GeminiConfig};
pub use openai::{OpenAiCompatConfig, OpenAiCompatible, ensure_crypto_provider};
pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
    stream_of,
};
pub use resilience::{FallbackChain, LoadBalancer, RequestLimit, RetryPolicy, Retrying, Route};
pub use responses::OpenAiResponses;
