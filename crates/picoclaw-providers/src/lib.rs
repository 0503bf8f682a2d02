//! The [`ProviderRegistry`] that maps a model prefix to the factory of its wire format, the
//! built-in vendors ([`presets`]), and the resilience wrappers (retries, fallbacks, load
//! balancing, request limits). The [`LlmProvider`] trait and its types are picoclaw-api's,
//! re-exported here.
//!
//! The model clients live in one crate per wire family, each over picoclaw-api and
//! picoclaw-http only, re-exported here behind a cargo feature (all in the default):
//! - `openai`: picoclaw-provider-openai — OpenAI-compatible Chat Completions
//!   (`OpenAiCompatible`, Azure OpenAI included) and the Responses API (`OpenAiResponses`);
//! - `anthropic`: picoclaw-provider-anthropic — Anthropic Messages (`Anthropic`);
//! - `gemini`: picoclaw-provider-gemini — Google Gemini `generateContent` (`Gemini`).
//!
//! [`ProviderRegistry::builtin`] registers the wire formats of the enabled families, as an
//! outside crate registers its own; a model whose family is compiled out fails to build with a
//! configuration error naming the feature.

pub mod presets;
pub mod registry;
mod resilience;

pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
    stream_of,
};
/// The rustls crypto provider type the provider configs take (`with_crypto_provider`).
pub use picoclaw_http::CryptoProvider;
#[cfg(feature = "anthropic")]
pub use picoclaw_provider_anthropic::{ANTHROPIC_VERSION, Anthropic, AnthropicConfig};
#[cfg(feature = "gemini")]
pub use picoclaw_provider_gemini::{Gemini, GeminiConfig};
#[cfg(feature = "openai")]
pub use picoclaw_provider_openai::{OpenAiCompatConfig, OpenAiCompatible, OpenAiResponses};
pub use registry::{ProviderFactory, ProviderInfo, ProviderRegistry, ProviderSpec};
pub use resilience::{FallbackChain, LoadBalancer, RequestLimit, RetryPolicy, Retrying, Route};
