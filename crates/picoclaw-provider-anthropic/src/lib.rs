//! `Anthropic`: Claude through the native Messages API (`POST /v1/messages`).
//!
//! System messages become the top-level `system` blocks; tool calls are `tool_use` blocks and
//! their results `tool_result` blocks in the next user turn; images are `image` blocks. The
//! stable prefix (system prompt and tool definitions) is marked for prompt caching. Streams are
//! the Messages events (`message_start`, `content_block_*` with `text_delta` /
//! `input_json_delta`, `message_delta`, `message_stop`).
//!
//! This is picoclaw's Anthropic wire family: Anthropic's API and gateways that speak the
//! Messages API. It depends on picoclaw-api and picoclaw-http only (of picoclaw's crates):
//! picoclaw-providers registers it behind its `anthropic` feature, the way a provider crate
//! from outside the workspace registers its own.

use async_trait::async_trait;
use futures::StreamExt;
pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
use picoclaw_api::{ChatMessage, ContentPart, FinishReason, Role, Secret, ToolCall, Usage};
/// The rustls crypto provider type the config takes (`with_crypto_provider`).
pub use picoclaw_http::CryptoProvider;
use picoclaw_http::provider::{self as http, preview};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The API version header every request carries.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Used when the request sets no `max_tokens` (the API requires one).
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Claude OAuth access and setup tokens start with this; they are sent as a bearer.
const OAUTH_TOKEN_PREFIX: &str = "sk-ant-oat";
/// The beta Anthropic's API requires for OAuth bearer tokens.
const OAUTH_BETA: &str = "oauth-2025-04-20";

/// How to reach Anthropic (or a compatible gateway).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AnthropicConfig {
    /// Before `/v1/messages` (`https://api.anthropic.com`).
    pub api_base: String,
    pub api_key: Option<Secret<String>>,
    pub key_hint: String,
    pub proxy: Option<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Mark the system prompt and tool definitions with `cache_control`.
    pub prompt_caching: bool,
    /// The TLS crypto provider; `None` for picoclaw-http's default.
    pub crypto_provider: Option<Arc<CryptoProvider>>,
}

impl AnthropicConfig {
    pub fn new(api_base: impl Into<String>) -> Self {
        Self {
            api_base: api_base.into(),
            api_key: None,
            key_hint: "providers.anthropic.api_key or ANTHROPIC_API_KEY".into(),
            proxy: None,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            prompt_caching: true,
            crypto_provider: None,
        }
    }

    /// TLS through `provider` instead of the default.
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.crypto_provider = Some(provider);
        self
    }

    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.api_key = (!key.trim().is_empty()).then(|| Secret::new(key.trim().to_owned()));
        self
    }

    pub fn with_key_hint(mut self, hint: impl Into<String>) -> Self {
        self.key_hint = hint.into();
        self
    }

    pub fn with_proxy(mut self, proxy: Option<String>) -> Self {
        self.proxy = proxy.filter(|p| !p.trim().is_empty());
        self
    }

    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn with_prompt_caching(mut self, on: bool) -> Self {
        self.prompt_caching = on;
        self
    }
}

/// Claude via the Messages API.
pub struct Anthropic {
    url: String,
    api_key: Option<Secret<String>>,
    /// OAuth tokens (a Claude sign-in) when there is no key.
    tokens: Option<std::sync::Arc<dyn picoclaw_api::TokenSource>>,
    key_hint: String,
    timeout: Duration,
    caching: bool,
    client: reqwest::Client,
}

impl Anthropic {
    /// Sends bearer tokens from `tokens` (a Claude sign-in) when no API key is set.
    pub fn with_tokens(mut self, tokens: std::sync::Arc<dyn picoclaw_api::TokenSource>) -> Self {
        self.tokens = Some(tokens);
        self
    }
}

impl std::fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Anthropic")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "anthropic";

impl Anthropic {
    pub fn new(cfg: AnthropicConfig) -> Result<Self, ProviderError> {
        let base = cfg.api_base.trim().trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        reqwest::Url::parse(base).map_err(|e| {
            ProviderError::NotConfigured(format!(
                "anthropic: api_base '{base}' is not a URL ({e}); it should look like \
                 https://api.anthropic.com"
            ))
        })?;
        let client = http::build_client(
            NAME,
            base,
            cfg.proxy.as_deref(),
            cfg.crypto_provider.clone(),
            HeaderMap::new(),
            cfg.connect_timeout,
            cfg.request_timeout,
        )?;
        Ok(Self {
            url: format!("{base}/v1/messages"),
            api_key: cfg.api_key,
            tokens: None,
            key_hint: cfg.key_hint,
            timeout: cfg.request_timeout,
            caching: cfg.prompt_caching,
            client,
        })
    }

    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let body = request_body(req, stream, self.caching);
        let mut request = self
            .client
            .post(&self.url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        match (&self.api_key, &self.tokens) {
            // Claude OAuth / setup tokens go as a bearer, with the OAuth beta named.
            (Some(key), _) if key.expose().starts_with(OAUTH_TOKEN_PREFIX) => {
                request = request
                    .bearer_auth(key.expose())
                    .header("anthropic-beta", OAUTH_BETA);
            }
            (Some(key), _) => request = request.header("x-api-key", key.expose()),
            (None, Some(tokens)) => {
                let token = tokens.token().await.map_err(|e| ProviderError::Auth {
                    provider: NAME.into(),
                    status: 401,
                    message: e.to_string(),
                    key_hint: self.key_hint.clone(),
                })?;
                request = request
                    .bearer_auth(token.token.expose())
                    .header("anthropic-beta", OAUTH_BETA);
            }
            (None, None) => {}
        }
        let response = http::send(NAME, &self.url, self.timeout, request).await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let wait = http::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let (message, code) = http::vendor_message(&text);
        let message = http::redact(&message, self.api_key.as_ref());
        Err(http::status_error(
            NAME,
            status,
            wait,
            message,
            &code,
            &self.key_hint,
        ))
    }
}

/// The Messages API body for `req`.
pub(crate) fn request_body(req: &ChatRequest, stream: bool, caching: bool) -> Value {
    let mut system: Vec<Value> = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for msg in &req.messages {
        let (role, blocks) = match msg.role {
            Role::System => {
                let text = msg.text();
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
                continue;
            }
            Role::User => ("user", content_blocks(&msg.content)),
            Role::Assistant => {
                let mut blocks = content_blocks(&msg.content);
                for call in &msg.tool_calls {
                    let input: Value = serde_json::from_str(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![json!({"type": "tool_result",
                    "tool_use_id": msg.tool_call_id.clone().unwrap_or_default(),
                    "content": msg.text()})],
            ),
        };
        if blocks.is_empty() {
            continue;
        }
        // The API wants alternating roles: consecutive same-role turns (tool results) merge.
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["content"].as_array_mut() {
                    arr.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    if caching && let Some(last) = system.last_mut() {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let mut tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        if caching && let Some(last) = tools.last_mut() {
            last["cache_control"] = json!({"type": "ephemeral"});
        }
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(t) = req.temperature {
        let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
        body.insert("temperature".into(), json!(t.min(1.0)));
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(body)
}

fn content_blocks(parts: &[ContentPart]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } if text.is_empty() => None,
            ContentPart::Text { text } => Some(json!({"type": "text", "text": text})),
            ContentPart::Image { url, .. } => Some(image_block(url)),
            _ => None,
        })
        .collect()
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(media_type) = meta.strip_suffix(";base64")
    {
        return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

fn stop_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some("end_turn" | "stop_sequence" | "pause_turn") | None => FinishReason::Stop,
        Some(other) => FinishReason::Other(other.to_owned()),
    }
}

fn usage_of(v: &Value, into: &mut Usage) {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    if let Some(i) = n("input_tokens") {
        into.prompt_tokens = i
            + n("cache_read_input_tokens").unwrap_or(0)
            + n("cache_creation_input_tokens").unwrap_or(0);
    }
    if let Some(c) = n("cache_read_input_tokens") {
        into.cached_tokens = c;
    }
    if let Some(o) = n("output_tokens") {
        into.completion_tokens = o;
    }
    into.total_tokens = into.prompt_tokens + into.completion_tokens;
}

fn finish(
    text: String,
    calls: Vec<ToolCall>,
    stop: FinishReason,
    usage: Usage,
    model: Option<String>,
) -> ChatResponse {
    let stop = if calls.is_empty() {
        stop
    } else {
        FinishReason::ToolCalls
    };
    let message = if calls.is_empty() {
        ChatMessage::assistant(text)
    } else {
        ChatMessage::assistant_with_tools(text, calls)
    };
    ChatResponse::new(message, stop)
        .with_usage(Some(usage))
        .with_model(model)
}

pub(crate) fn parse_message(body: &str) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        ProviderError::response(
            NAME,
            format!("not a Messages API response ({e}): {}", preview(body, 200)),
        )
    })?;
    let blocks = v.get("content").and_then(Value::as_array).ok_or_else(|| {
        ProviderError::response(
            NAME,
            format!("the response has no content: {}", preview(body, 200)),
        )
    })?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(ToolCall::new(
                b["id"].as_str().unwrap_or_default(),
                b["name"].as_str().unwrap_or_default(),
                b.get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            )),
            _ => {}
        }
    }
    let mut usage = Usage::default();
    if let Some(u) = v.get("usage") {
        usage_of(u, &mut usage);
    }
    Ok(finish(
        text,
        calls,
        stop_reason(v["stop_reason"].as_str()),
        usage,
        v["model"].as_str().map(str::to_owned),
    ))
}

/// Assembles a Messages stream.
#[derive(Default)]
pub(crate) struct MessageAssembler {
    text: String,
    /// Content block index → (id, name, partial JSON).
    tools: BTreeMap<u64, (String, String, String)>,
    stop: Option<String>,
    usage: Usage,
    model: Option<String>,
    stopped: bool,
}

impl MessageAssembler {
    /// Takes one event's data; returns a text delta if it carried one.
    pub(crate) fn push(&mut self, data: &str) -> Result<Option<String>, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::response(
                NAME,
                format!("a stream event is not JSON ({e}): {}", preview(data, 200)),
            )
        })?;
        match v["type"].as_str() {
            Some("message_start") => {
                let m = &v["message"];
                self.model = m["model"].as_str().map(str::to_owned);
                usage_of(&m["usage"], &mut self.usage);
            }
            Some("content_block_start") => {
                let b = &v["content_block"];
                if b["type"] == "tool_use" {
                    let index = v["index"].as_u64().unwrap_or(0);
                    self.tools.insert(
                        index,
                        (
                            b["id"].as_str().unwrap_or_default().to_owned(),
                            b["name"].as_str().unwrap_or_default().to_owned(),
                            String::new(),
                        ),
                    );
                } else if let Some(t) = b["text"].as_str().filter(|t| !t.is_empty()) {
                    self.text.push_str(t);
                    return Ok(Some(t.to_owned()));
                }
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        let t = d["text"].as_str().unwrap_or_default();
                        if !t.is_empty() {
                            self.text.push_str(t);
                            return Ok(Some(t.to_owned()));
                        }
                    }
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().unwrap_or(0);
                        if let Some(tool) = self.tools.get_mut(&index) {
                            tool.2
                                .push_str(d["partial_json"].as_str().unwrap_or_default());
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(s) = v["delta"]["stop_reason"].as_str() {
                    self.stop = Some(s.to_owned());
                }
                usage_of(&v["usage"], &mut self.usage);
            }
            Some("message_stop") => self.stopped = true,
            Some("error") => {
                let e = &v["error"];
                let message = e["message"].as_str().unwrap_or("unknown error").to_owned();
                return Err(ProviderError::Server {
                    provider: NAME.into(),
                    status: if e["type"] == "overloaded_error" {
                        529
                    } else {
                        500
                    },
                    message: format!("error inside the stream: {message}"),
                });
            }
            Some(_) => {}
            None => {
                return Err(ProviderError::response(
                    NAME,
                    format!("a stream event has no type: {}", preview(data, 200)),
                ));
            }
        }
        Ok(None)
    }

    /// Whether the message ended properly (`message_stop`, or a stop reason at least).
    pub(crate) fn complete(&self) -> bool {
        self.stopped || self.stop.is_some()
    }

    pub(crate) fn into_response(self) -> ChatResponse {
        let calls = self
            .tools
            .into_values()
            .map(|(id, name, json)| {
                let args = if json.trim().is_empty() {
                    "{}".to_owned()
                } else {
                    json
                };
                ToolCall::new(id, name, args)
            })
            .collect();
        finish(
            self.text,
            calls,
            stop_reason(self.stop.as_deref()),
            self.usage,
            self.model,
        )
    }
}

#[async_trait]
impl LlmProvider for Anthropic {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let response = self.send(&req, false).await?;
        let body = http::read_body(NAME, &self.url, self.timeout, response).await?;
        parse_message(&body)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.send(&req, true).await?;
        Ok(answer_stream(self.timeout, response))
    }
}

/// The events of a streamed answer in `response`; `timeout` is the read timeout (for the error
/// of a server that went silent).
pub(crate) fn answer_stream(timeout: Duration, response: reqwest::Response) -> ChatStream {
    let events = http::sse_events(response);
    let stream = futures::stream::unfold(
        (events, Some(MessageAssembler::default())),
        move |(mut events, mut asm)| async move {
            loop {
                let a = asm.as_mut()?;
                match events.next().await {
                    Some(Ok(ev)) => {
                        if ev.data.trim().is_empty() {
                            continue;
                        }
                        match a.push(&ev.data) {
                            Ok(Some(delta)) => {
                                return Some((Ok(StreamEvent::TextDelta(delta)), (events, asm)));
                            }
                            Ok(None) if a.stopped => {
                                let done = asm.take()?;
                                return Some((
                                    Ok(StreamEvent::Completed(done.into_response())),
                                    (events, asm),
                                ));
                            }
                            Ok(None) => continue,
                            Err(e) => return Some((Err(e), (events, None))),
                        }
                    }
                    Some(Err(e)) => {
                        let err = http::stream_error(NAME, timeout, e);
                        return Some((Err(err), (events, None)));
                    }
                    None => {
                        let done = asm.take()?;
                        if done.complete() {
                            return Some((
                                Ok(StreamEvent::Completed(done.into_response())),
                                (events, None),
                            ));
                        }
                        return Some((
                            Err(ProviderError::response(
                                NAME,
                                "the answer stream ended before the answer was complete \
                                 (truncated: no message_stop)",
                            )),
                            (events, None),
                        ));
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use picoclaw_api::ToolSpec;

    #[test]
    fn request_shape() {
        let req = ChatRequest::new(
            "claude-sonnet-4-5",
            vec![
                ChatMessage::system("be brief"),
                ChatMessage::user_parts(vec![
                    ContentPart::text("what is this?"),
                    ContentPart::image("data:image/png;base64,AAAA"),
                ]),
                ChatMessage::assistant_with_tools(
                    "Let me check.",
                    vec![
                        ToolCall::new("toolu_1", "read_file", r#"{"path":"a.txt"}"#),
                        ToolCall::new("toolu_2", "list_dir", "not json"),
                    ],
                ),
                ChatMessage::tool_result("toolu_1", "read_file", "hello"),
                ChatMessage::tool_result("toolu_2", "list_dir", "FILE: a.txt"),
                ChatMessage::assistant("done"),
            ],
        )
        .with_tools(vec![ToolSpec::new(
            "read_file",
            "Read a file.",
            json!({"type": "object"}),
        )])
        .with_temperature(Some(0.7));
        assert_eq!(
            request_body(&req, true, true),
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 4096,
                "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}},
                        {"type": "tool_use", "id": "toolu_2", "name": "list_dir", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "FILE: a.txt"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "done"}]}
                ],
                "tools": [{"name": "read_file", "description": "Read a file.",
                           "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
                "temperature": 0.7,
                "stream": true
            })
        );
    }

    #[test]
    fn assembles_a_stream_with_text_and_tool_use() {
        let mut a = MessageAssembler::default();
        let events = [
            r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":1}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"exec","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"comm"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"and\": \"ls\"}"}}"#,
            r#"{"type":"content_block_stop","index":1}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":20}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let mut deltas = Vec::new();
        for e in events {
            if let Some(d) = a.push(e).unwrap() {
                deltas.push(d);
            }
        }
        assert_eq!(deltas, ["Checking."]);
        assert!(a.complete());
        let r = a.into_response();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.message.tool_calls[0].id, "toolu_9");
        assert_eq!(r.message.tool_calls[0].arguments, r#"{"command": "ls"}"#);
        let u = r.usage.unwrap();
        assert_eq!(
            (u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            (100, 90, 20)
        );
        assert_eq!(r.model.as_deref(), Some("claude-x"));
    }

    #[test]
    fn parses_messages_and_errors() {
        let r = parse_message(
            r#"{"content":[{"type":"text","text":"Hi"}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(r.message.text(), "Hi");
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert!(parse_message("<html>").is_err());
        let mut a = MessageAssembler::default();
        let e = a
            .push(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
            .unwrap_err();
        assert!(e.is_retryable() && e.to_string().contains("Overloaded"));
    }
}
