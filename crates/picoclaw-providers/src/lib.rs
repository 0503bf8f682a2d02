//! The built-in model clients — OpenAI-compatible Chat Completions, OpenAI Responses, Azure
//! OpenAI, Anthropic Messages, Google Gemini — the resilience wrappers (retries, fallbacks,
//! load balancing, request limits), and the [`ProviderRegistry`] that maps a model prefix to
//! the factory of its wire format. The [`LlmProvider`] trait and its types are picoclaw-api's,
//! re-exported here.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod anthropic;
mod gemini;
mod openai;
pub mod presets;
pub mod registry;
mod resilience;
mod responses;
mod text_tools;
mod wire;

pub use anthropic::{ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
pub use gemini::{Gemini, GeminiConfig};
pub use openai::{OpenAiCompatConfig, OpenAiCompatible};
pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
    stream_of,
};
/// The rustls crypto provider type the provider configs take (`with_crypto_provider`).
pub use picoclaw_http::CryptoProvider;
pub use registry::{ProviderFactory, ProviderInfo, ProviderRegistry, ProviderSpec};
pub use resilience::{FallbackChain, LoadBalancer, RequestLimit, RetryPolicy, Retrying, Route};
pub use responses::OpenAiResponses;
