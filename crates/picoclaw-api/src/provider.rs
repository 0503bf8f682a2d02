//! [`LlmProvider`]: a model backend, the request and response types it speaks, and
//! [`ProviderError`], what can go wrong, phrased as what the caller can do.

use crate::{ChatMessage, FinishReason, ToolSpec, Usage};
use async_trait::async_trait;
use futures_core::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// One model call. Providers are stateless about sessions: the request carries the whole history.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The model id as the vendor knows it (`gpt-4o-mini`, not `openai/gpt-4o-mini`).
    pub model: String,
    /// The whole conversation, oldest message first.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call; empty for none. Shared: an agent builds its tools' specs
    /// once, and every model call of every turn hands on the same list.
    pub tools: Arc<[ToolSpec]>,
    /// The most tokens the answer may have; `None` leaves it to the vendor's default.
    pub max_tokens: Option<u32>,
    /// Sampling temperature; `None` leaves it to the vendor's default.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// A request for `model` with `messages`, no tools and the vendor's defaults.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            ..Self::default()
        }
    }

    /// Sets the tools the model may call (a `Vec<ToolSpec>`, or a list shared with other
    /// requests).
    pub fn with_tools(mut self, tools: impl Into<Arc<[ToolSpec]>>) -> Self {
        self.tools = tools.into();
        self
    }

    /// Sets the answer's token limit (`None`: the vendor's default).
    pub fn with_max_tokens(mut self, max_tokens: Option<u32>) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets the temperature (`None`: the vendor's default).
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
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// Tokens the call used; `None` when the vendor did not report them.
    pub usage: Option<Usage>,
    /// The model that answered, when the vendor says.
    pub model: Option<String>,
    /// Set when a fallback model answered instead of the configured one (`provider/model`).
    pub served_by: Option<String>,
}

impl ChatResponse {
    /// An answer with no usage, model or fallback recorded.
    pub fn new(message: ChatMessage, finish_reason: FinishReason) -> Self {
        Self {
            message,
            finish_reason,
            usage: None,
            model: None,
            served_by: None,
        }
    }

    /// Sets the token usage.
    pub fn with_usage(mut self, usage: Option<Usage>) -> Self {
        self.usage = usage;
        self
    }

    /// Sets the model that answered, as the vendor named it.
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
    /// The next piece of the answer's text.
    TextDelta(String),
    /// The whole answer; the last event of the stream.
    Completed(ChatResponse),
}

/// The stream [`LlmProvider::stream`] returns: [`StreamEvent`]s, or an error that ends it.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// What a provider can do; optional abilities default to unsupported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// It streams its answers itself (otherwise [`LlmProvider::stream`] yields the whole answer at
    /// once).
    pub streaming: bool,
    /// It takes tool specs and returns tool calls.
    pub tools: bool,
    /// It reads images in user messages.
    pub vision: bool,
}

impl Capabilities {
    /// Streaming, tool calls and images: what the big vendors' chat APIs all do.
    pub fn full() -> Self {
        Self {
            streaming: true,
            tools: true,
            vision: true,
        }
    }

    /// Says the provider streams its answers.
    pub fn with_streaming(mut self) -> Self {
        self.streaming = true;
        self
    }

    /// Says the provider takes tool specs and returns tool calls.
    pub fn with_tools(mut self) -> Self {
        self.tools = true;
        self
    }

    /// Says the provider reads images.
    pub fn with_vision(mut self) -> Self {
        self.vision = true;
        self
    }
}

/// A model backend.
#[async_trait]
pub trait LlmProvider: Send + Sync {
    /// A short name for logs and errors (`openai`, `deepseek`, `scripted`).
    fn name(&self) -> &str;

    /// What the provider can do; the default says it can do none of the optional things.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Sends the request and returns the whole answer.
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
        Ok(Box::pin(Ready(events.into())))
    }
}

/// A stream of items that are all there already.
struct Ready<T>(VecDeque<T>);

impl<T: Unpin> Stream for Ready<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<T>> {
        Poll::Ready(self.0.pop_front())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0.len(), Some(self.0.len()))
    }
}

/// A stream of `events`, for providers that have their whole answer at once (and for tests).
pub fn stream_of(events: Vec<Result<StreamEvent, ProviderError>>) -> ChatStream {
    Box::pin(Ready(events.into()))
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from a model call. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// No usable configuration (missing key, unknown preset...). Not retryable.
    #[error("{0}")]
    NotConfigured(String),

    /// The vendor rejected the credentials (401/403). `key_hint` names the setting to fix. Not
    /// retryable.
    #[error("{provider} rejected the API key ({status}): {message}. Check {key_hint}")]
    Auth {
        /// The provider's name.
        provider: String,
        /// The HTTP status (401 or 403; 401 also when the token source gave no token).
        status: u16,
        /// What the vendor said.
        message: String,
        /// The setting or environment variable that holds the key (`OPENAI_API_KEY`).
        key_hint: String,
    },

    /// 429: slow down. `retry_after` is the vendor's hint when it gave one. Retryable.
    #[error("{provider} rate limit hit: {message}")]
    RateLimited {
        /// The provider's name.
        provider: String,
        /// How long to wait before trying again, when the vendor said.
        retry_after: Option<Duration>,
        /// What the vendor said.
        message: String,
    },

    /// The conversation no longer fits the model's context window. Not retryable as it is:
    /// compact or shorten the history first.
    #[error("{provider}: the conversation is too long for the model's context window: {message}")]
    ContextLength {
        /// The provider's name.
        provider: String,
        /// What the vendor said.
        message: String,
    },

    /// The vendor's content filter refused the prompt or the answer. Not retryable.
    #[error("{provider} refused the request by its content filter: {message}")]
    ContentFiltered {
        /// The provider's name.
        provider: String,
        /// What the vendor said.
        message: String,
    },

    /// The vendor refused the request as malformed (400/404/422): model name, parameters...
    /// Not retryable.
    #[error("{provider} rejected the request ({status}): {message}")]
    InvalidRequest {
        /// The provider's name.
        provider: String,
        /// The HTTP status (400, 404, 422...).
        status: u16,
        /// What the vendor said.
        message: String,
    },

    /// 5xx from the vendor, or an error it reported in the middle of an answer. Retryable.
    #[error("{provider} server error ({status}): {message}")]
    Server {
        /// The provider's name.
        provider: String,
        /// The HTTP status the error came with (200 for an error reported inside a stream).
        status: u16,
        /// What the vendor said.
        message: String,
    },

    /// The request did not complete in time. Retryable.
    #[error("{provider} did not answer within {after:?}")]
    Timeout {
        /// The provider's name.
        provider: String,
        /// How long picoclaw waited.
        after: Duration,
    },

    /// Connection refused, reset, DNS, TLS... Retryable.
    #[error("could not reach {provider} at {url}: {source}")]
    Transport {
        /// The provider's name.
        provider: String,
        /// The URL that could not be reached.
        url: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The vendor answered something we could not understand (garbage, truncated stream). Not
    /// retryable.
    #[error("{provider} sent a response picoclaw could not read: {message}")]
    Response {
        /// The provider's name.
        provider: String,
        /// What was wrong with the response.
        message: String,
    },
}

impl ProviderError {
    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout { .. }
                | ProviderError::Transport { .. }
        )
    }

    /// How long the vendor asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Builds a [`ProviderError::Response`].
    pub fn response(provider: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Response {
            provider: provider.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability() {
        let rl = ProviderError::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_secs(3)),
            message: "slow down".into(),
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
        let auth = ProviderError::Auth {
            provider: "openai".into(),
            status: 401,
            message: "bad key".into(),
            key_hint: "providers.openai.api_key or OPENAI_API_KEY".into(),
        };
        assert!(!auth.is_retryable());
        assert!(auth.to_string().contains("OPENAI_API_KEY"));
    }
}
