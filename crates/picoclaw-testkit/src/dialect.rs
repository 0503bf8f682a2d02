//! [`Dialect`]: how a [`ScriptedEndpoint`](crate::ScriptedEndpoint) speaks one wire format —
//! which requests it serves, where the key and the model are in a request, and how a scripted
//! [`Reply`](crate::Reply) is rendered as that vendor's JSON body, its stream events and its
//! errors.
//!
//! The endpoint does the rest, the same for every dialect: recording requests, the scripted
//! order, `Retry-After` and other scripted headers, delays and paced streams, raw bodies, and
//! the failure modes built from a dialect's own renderings (a plain answer cut in half, a stream
//! cut before its end, a 200 whose body is not the API).
//!
//! The built-in dialects are [`ChatCompletionsDialect`] (OpenAI Chat Completions and Azure
//! OpenAI), [`ResponsesDialect`] (OpenAI Responses), [`AnthropicDialect`] (Messages API) and
//! [`GeminiDialect`] (`generateContent`). A crate with a wire format of its own implements
//! `Dialect` and runs [`crate::conformance::wire_suite`] against
//! [`ScriptedEndpoint::speaking`](crate::ScriptedEndpoint::speaking) its dialect; nothing in
//! testkit changes.

use crate::RecordedRequest;
use picoclaw_api::Usage;
use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::anthropic::AnthropicDialect;
pub use crate::chat_completions::ChatCompletionsDialect;
pub use crate::gemini::GeminiDialect;
pub use crate::responses::ResponsesDialect;

/// One wire format, as a scripted endpoint speaks it.
pub trait Dialect: Send + Sync + fmt::Debug {
    /// A short name for failure messages (`chat-completions`, `anthropic`).
    fn name(&self) -> &str;

    /// Whether this dialect answers the request (by its method and path: `POST …/messages`).
    fn serves(&self, request: &RecordedRequest) -> bool;

    /// Whether the request asks for a streamed answer (`"stream": true`, a streaming path).
    fn is_streaming(&self, request: &RecordedRequest) -> bool;

    /// The model id the request names (in its body or its path).
    fn model(&self, request: &RecordedRequest) -> Option<String>;

    /// Whether the request carries `key` where this vendor expects it (a bearer token, an
    /// `x-api-key` header...). Asked only after [`ScriptedEndpoint::require_api_key`](crate::ScriptedEndpoint::require_api_key).
    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool;

    /// An error in the vendor's shape: the status (400, 401, 429, 500...) and its JSON body.
    fn error(&self, status: u16, message: &str) -> WireResponse;

    /// What the vendor answers a request without the right key (by default a 401 from
    /// [`Dialect::error`]; some vendors answer a bad key with a 400).
    fn unauthorized(&self) -> WireResponse {
        self.error(401, "Incorrect API key provided")
    }

    /// A complete answer as the JSON body of a non-streamed response.
    fn answer(&self, answer: &Answer<'_>, cx: &RenderContext<'_>) -> Value;

    /// A streamed answer as the events of the response body, each a complete frame with its
    /// separator (`data: {...}\n\n`). When `cut`, the stream stops part-way as a dropped
    /// connection would: the content so far, then nothing that ends the answer (no finish
    /// reason, no final event, no `[DONE]`).
    fn stream(&self, answer: &Answer<'_>, cut: bool, cx: &RenderContext<'_>) -> Vec<String>;

    /// The first and only frame of a stream whose payload is `body`, something that is not the
    /// API (default: `data: {body}\n\n`).
    fn garbage_event(&self, body: &str) -> String {
        format!("data: {body}\n\n")
    }

    /// A response to a request that does not take a scripted reply (a model list), if any.
    fn fixed(&self, _request: &RecordedRequest) -> Option<WireResponse> {
        None
    }
}

/// What a scripted answer says.
#[derive(Clone, Debug, PartialEq)]
pub enum Content<'a> {
    /// A final text answer.
    Text(&'a str),
    /// Tool calls, in order (their arguments as raw JSON text, possibly invalid or cut short).
    ToolCalls(Vec<ScriptedCall<'a>>),
}

/// One scripted tool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptedCall<'a> {
    /// The tool's name.
    pub name: &'a str,
    /// The arguments as the model would send them (raw JSON text).
    pub arguments: &'a str,
}

/// A scripted answer to render: its content and the usage to report, if scripted.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer<'a> {
    /// Text or tool calls.
    pub content: Content<'a>,
    /// Token usage to report (`None`: report zeros or nothing, as the vendor would).
    pub usage: Option<Usage>,
}

impl Answer<'_> {
    /// The usage to report, zeros when none was scripted.
    pub fn usage_or_zero(&self) -> Usage {
        self.usage.unwrap_or_default()
    }
}

/// What a rendering may need besides the answer: the model the request named, the request's
/// number, fresh ids for tool calls.
#[derive(Debug)]
pub struct RenderContext<'a> {
    pub(crate) model: &'a str,
    pub(crate) request_number: usize,
    pub(crate) ids: &'a AtomicU64,
}

impl RenderContext<'_> {
    /// The model id the request named (`scripted-model` when it named none).
    pub fn model(&self) -> &str {
        self.model
    }

    /// This request's number at the endpoint, from 1 (for response ids such as `chatcmpl-3`).
    pub fn request_number(&self) -> usize {
        self.request_number
    }

    /// A number not handed out before by this endpoint, from 1 (for tool-call ids).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// An HTTP response as a dialect renders it: status, headers and body.
#[derive(Clone, Debug, PartialEq)]
pub struct WireResponse {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers (the content type comes from the body).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: WireBody,
}

/// The body of a [`WireResponse`].
#[derive(Clone, Debug, PartialEq)]
pub enum WireBody {
    /// A JSON document (`application/json`).
    Json(Value),
    /// Text sent as it is, with its content type (a page that is not the API, half a body).
    Text {
        /// The `Content-Type` header.
        content_type: String,
        /// The body.
        text: String,
    },
    /// Stream frames sent one by one (`text/event-stream`; a scripted pace waits before each).
    Events(Vec<String>),
}

impl WireResponse {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: WireBody::Json(body),
        }
    }

    /// `status` with `text` as a body of `content_type`.
    pub fn text(status: u16, content_type: &str, text: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: WireBody::Text {
                content_type: content_type.to_owned(),
                text: text.into(),
            },
        }
    }

    /// A 200 event stream of `events`.
    pub fn events(events: Vec<String>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body: WireBody::Events(events),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The built-in dialects, in the order a default [`ScriptedEndpoint`](crate::ScriptedEndpoint)
/// tries them (their paths do not overlap; the first also answers paths none serves).
pub fn builtin() -> Vec<std::sync::Arc<dyn Dialect>> {
    vec![
        std::sync::Arc::new(ChatCompletionsDialect),
        std::sync::Arc::new(ResponsesDialect),
        std::sync::Arc::new(AnthropicDialect),
        std::sync::Arc::new(GeminiDialect),
    ]
}

/// The first half of `body` (on a char boundary): a response cut off mid-way.
pub(crate) fn first_half(body: &str) -> String {
    body.chars().take(body.chars().count() / 2).collect()
}

/// The body field `model` as a string, for dialects that name the model there.
pub(crate) fn body_model(request: &RecordedRequest) -> Option<String> {
    request.body["model"].as_str().map(str::to_owned)
}

/// Whether the body asks for a stream (`"stream": true`).
pub(crate) fn body_streams(request: &RecordedRequest) -> bool {
    request.body["stream"].as_bool().unwrap_or(false)
}
