//! The `LlmProvider` trait and the request/response types it speaks.

use crate::ProviderError;
use async_trait::async_trait;
use futures::Stream;
use picoclaw_types::{ChatMessage, FinishReason, ToolSpec, Usage};
use std::pin::Pin;
use std::sync::Arc;

/// One model call. Providers are stateless about sessions: the request carries the whole history.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The model id as the vendor knows it (`gpt-4o-mini`, not `openai/gpt-4o-mini`).
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

impl ChatRequest {
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Self::default()
        }
    }

    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    pub fn with_max_tokens(mut self, max_tokens: Option<u32>) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.temperature = temperature;
        self
    }
}

/// A complete model answer: an assistant message (text and/or tool calls).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ChatResponse {
    /// Always `Role::Assistant`.
    pub message: ChatMessage,
    pub finish_reason: FinishReason,
    pub usage: Option<Usage>,
    /// The model that answered, when the vendor says.
    pub model: Option<String>,
    /// Set when a fallback model answered instead of the configured one (`provider/model`).
    pub served_by: Option<String>,
}

impl ChatResponse {
    pub fn new(message: ChatMessage, finish_reason: FinishReason) -> Self {
        Self {
            message,
            finish_reason,
            usage: None,
            model: None,
            served_by: None,
        }
    }

    pub fn with_usage(mut self, usage: Option<Usage>) -> Self {
        self.usage = usage;
        self
    }

    pub fn with_model(mut self, model: Option<String>) -> Self {
        self.model = model;
        self
    }
}

/// What a streaming call yields: text as it arrives, then exactly one `Completed` with the whole
/// assembled answer (tool-call deltas are assembled by the provider, never by the caller).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StreamEvent {
    TextDelta(String),
    Completed(ChatResponse),
}

pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// What a provider can do; optional abilities default to unsupported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    pub streaming: bool,
    pub tools: bool,
    pub vision: bool,
}

impl Capabilities {
    pub fn new(streaming: bool, tools: bool, vision: bool) -> Self {
        Self {
            streaming,
            tools,
            vision,
        }
    }
}

/// A model backend.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// A short name for logs and errors (`openai`, `deepseek`, `scripted`).
    fn name(&self) -> &str;

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError>;

    /// Streams the answer. The default runs [`LlmProvider::chat`] and yields its text as one delta.
    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let resp = self.chat(req).await?;
        let text = resp.message.text();
        let mut events = Vec::with_capacity(2);
        if !text.is_empty() {
            events.push(Ok(StreamEvent::TextDelta(text)));
        }
        events.push(Ok(StreamEvent::Completed(resp)));
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

#[async_trait]
impl<T: LlmProvider + ?Sized> LlmProvider for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        (**self).chat(req).await
    }
    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        (**self).stream(req).await
    }
}

#[async_trait]
impl<T: LlmProvider + ?Sized> LlmProvider for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        (**self).chat(req).await
    }
    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        (**self).stream(req).await
    }
}
