//! picoclaw's OpenAI wire family, as picoclaw-api [`LlmProvider`]s:
//!
//! - [`OpenAiCompatible`]: the Chat Completions API (`POST /chat/completions`, plain and SSE) as
//!   spoken by OpenAI, OpenRouter, DeepSeek, Groq, Zhipu, Moonshot, GitHub Copilot, Gemini's
//!   OpenAI endpoint, vLLM, Ollama and any other compatible server; tool calls that local
//!   models write as text are turned into real ones. [`OpenAiCompatible::azure`] is Azure
//!   OpenAI (a deployment, an `api-key` header or Entra ID bearer tokens from a picoclaw-api
//!   [`TokenSource`](picoclaw_api::TokenSource)).
//! - [`OpenAiResponses`]: the Responses API (`POST /responses`), which Codex models and ChatGPT
//!   sign-ins use.
//!
//! Both are configured by an [`OpenAiCompatConfig`]. This crate depends on picoclaw-api and
//! picoclaw-http only (of picoclaw's crates): picoclaw-providers registers it behind its
//! `openai` feature, the way a provider crate from outside the workspace registers its own.

mod chat;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod responses;
mod text_tools;
mod wire;

pub use chat::{OpenAiCompatConfig, OpenAiCompatible, is_reasoning_model};
pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
/// The rustls crypto provider type the config takes (`with_crypto_provider`).
pub use picoclaw_http::CryptoProvider;
pub use responses::OpenAiResponses;
