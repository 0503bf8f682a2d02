//! LLM providers: the [`LlmProvider`] trait every model backend implements, its request and
//! response types, the typed [`ProviderError`], and the OpenAI-compatible Chat Completions family
//! with its vendor [`presets`].

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod error;
mod gemini;
mod openai;
pub mod presets;
mod provider;
mod resilience;
mod responses;
mod text_tools;
mod wire;

pub use anthropic::{ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
pub use error::ProviderError;
pub use gemini::{Gemini, GeminiConfig};
pub use openai::{OpenAiCompatConfig, OpenAiCompatible, ensure_crypto_provider};
pub use provider::{Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, StreamEvent};
pub use resilience::{FallbackChain, LoadBalancer, RequestLimit, RetryPolicy, Retrying, Route};
pub use responses::OpenAiResponses;
