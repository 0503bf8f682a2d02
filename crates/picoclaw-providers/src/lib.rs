//! LLM providers: the [`LlmProvider`] trait every model backend implements, its request and
//! response types, the typed [`ProviderError`], and the OpenAI-compatible Chat Completions family.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod error;
mod provider;

pub use error::ProviderError;
pub use provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, StreamEvent,
};
