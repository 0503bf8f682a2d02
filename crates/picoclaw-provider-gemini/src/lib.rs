//! `Gemini`: Google's native `generateContent` API with function calling.
//!
//! System messages become `systemInstruction`; assistant turns are `model` contents with `text`
//! and `functionCall` parts; tool results are `functionResponse` parts; images are
//! `inlineData`. Streaming uses `streamGenerateContent?alt=sse`. (The OpenAI-compatible `gemini`
//! preset stays available for simple use.)
//!
//! This is picoclaw's Gemini wire family: the Gemini API of Google AI Studio and servers that
//! speak `generateContent`. It depends on picoclaw-api and picoclaw-http only (of picoclaw's
//! crates): picoclaw-providers registers it behind its `gemini` feature, the way a provider
//! crate from outside the workspace registers its own.

use async_trait::async_trait;
use futures::StreamExt;
pub use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
use picoclaw_api::{ChatMessage, ContentPart, FinishReason, Role, Secret, ToolCall, Usage};
/// The rustls crypto provider type the config takes (`with_crypto_provider`).
pub use picoclaw_http::CryptoProvider;
use picoclaw_http::provider::{self as http, is_context_length, preview};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

const NAME: &str = "gemini";

/// How to reach the Gemini API.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GeminiConfig {
    /// Before `/models/...` (`https://generativelanguage.googleapis.com/v1beta`).
    pub api_base: String,
    pub api_key: Option<Secret<String>>,
    pub key_hint: String,
    pub proxy: Option<String>,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The TLS crypto provider; `None` for picoclaw-http's default.
    pub crypto_provider: Option<Arc<CryptoProvider>>,
}

impl GeminiConfig {
    pub fn new(api_base: impl Into<String>) -> Self {
        Self {
            api_base: api_base.into(),
            api_key: None,
            key_hint: "providers.gemini.api_key or GEMINI_API_KEY".into(),
            proxy: None,
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
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
}

/// Gemini via `generateContent`.
pub struct Gemini {
    base: String,
    api_key: Option<Secret<String>>,
    key_hint: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for Gemini {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemini")
            .field("base", &self.base)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Gemini {
    pub fn new(cfg: GeminiConfig) -> Result<Self, ProviderError> {
        let base = cfg.api_base.trim().trim_end_matches('/');
        // The OpenAI-compatible endpoint's base is often pasted here; the native API is beside it.
        let base = base.strip_suffix("/openai").unwrap_or(base).to_owned();
        reqwest::Url::parse(&base).map_err(|e| {
            ProviderError::NotConfigured(format!(
                "gemini: api_base '{base}' is not a URL ({e}); it should look like \
                 https://generativelanguage.googleapis.com/v1beta"
            ))
        })?;
        let client = http::build_client(
            NAME,
            &base,
            cfg.proxy.as_deref(),
            cfg.crypto_provider.clone(),
            HeaderMap::new(),
            cfg.connect_timeout,
            cfg.request_timeout,
        )?;
        Ok(Self {
            base,
            api_key: cfg.api_key,
            key_hint: cfg.key_hint,
            timeout: cfg.request_timeout,
            client,
        })
    }

    fn url(&self, model: &str, stream: bool) -> String {
        let model = model.strip_prefix("models/").unwrap_or(model);
        if stream {
            format!("{}/models/{model}:streamGenerateContent?alt=sse", self.base)
        } else {
            format!("{}/models/{model}:generateContent", self.base)
        }
    }

    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let url = self.url(&req.model, stream);
        let mut request = self.client.post(&url).json(&request_body(req));
        if let Some(key) = &self.api_key {
            request = request.header("x-goog-api-key", key.expose());
        }
        let response = http::send(NAME, &url, self.timeout, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let wait = http::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = v["error"]["message"]
            .as_str()
            .map_or_else(|| preview(&text, 200), str::to_owned);
        let message = http::redact(&message, self.api_key.as_ref());
        let reason = v["error"]["status"].as_str().unwrap_or_default();
        // Gemini says a bad key with a 400, and a long prompt in words of its own.
        let bad_key = message.contains("API key not valid") || message.contains("API_KEY_INVALID");
        let too_long = is_context_length(reason, &message)
            || message.contains("exceeds the maximum number of tokens");
        Err(match status {
            400 if bad_key => ProviderError::Auth {
                provider: NAME.to_owned(),
                status,
                message,
                key_hint: self.key_hint.clone(),
            },
            400 if too_long => ProviderError::ContextLength {
                provider: NAME.to_owned(),
                message,
            },
            // Google's `status` (INVALID_ARGUMENT...) is no code the generic mapping knows.
            _ => http::status_error(NAME, status, wait, message, "", &self.key_hint),
        })
    }
}

/// Keeps only the JSON-schema keywords Gemini's function declarations accept.
fn schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "additionalProperties" | "$schema" | "$id" | "examples" | "default"
                    )
                })
                .map(|(k, v)| (k.clone(), schema(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
        other => other.clone(),
    }
}

fn parts(content: &[ContentPart]) -> Vec<Value> {
    content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } if text.is_empty() => None,
            ContentPart::Text { text } => Some(json!({"text": text})),
            ContentPart::Image { url, .. } => {
                if let Some(rest) = url.strip_prefix("data:")
                    && let Some((meta, data)) = rest.split_once(',')
                    && let Some(mime) = meta.strip_suffix(";base64")
                {
                    Some(json!({"inlineData": {"mimeType": mime, "data": data}}))
                } else {
                    Some(json!({"fileData": {"fileUri": url}}))
                }
            }
            _ => None,
        })
        .collect()
}

/// The `generateContent` body for `req`.
pub(crate) fn request_body(req: &ChatRequest) -> Value {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    for msg in &req.messages {
        let (role, ps) = match msg.role {
            Role::System => {
                system.extend(parts(&msg.content));
                continue;
            }
            Role::User => ("user", parts(&msg.content)),
            Role::Assistant => {
                let mut ps = parts(&msg.content);
                for call in &msg.tool_calls {
                    let args: Value = serde_json::from_str(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    ps.push(json!({"functionCall": {"name": call.name, "args": args}}));
                }
                ("model", ps)
            }
            Role::Tool => (
                "user",
                vec![json!({"functionResponse": {
                    "name": msg.name.clone().unwrap_or_default(),
                    "response": {"content": msg.text()}}})],
            ),
        };
        if ps.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["parts"].as_array_mut() {
                    arr.extend(ps);
                }
            }
            _ => contents.push(json!({"role": role, "parts": ps})),
        }
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parameters": schema(&t.parameters)}))
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    let mut config = Map::new();
    if let Some(m) = req.max_tokens {
        config.insert("maxOutputTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
        config.insert("temperature".into(), json!(t));
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Value::Object(body)
}

fn finish_reason(r: Option<&str>) -> FinishReason {
    match r {
        Some("STOP") | None => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII") => {
            FinishReason::ContentFilter
        }
        Some(other) => FinishReason::Other(other.to_lowercase()),
    }
}

/// Accumulates `GenerateContentResponse` chunks (a plain answer is one chunk).
#[derive(Default)]
pub(crate) struct GeminiAssembler {
    text: String,
    calls: Vec<ToolCall>,
    finish: Option<String>,
    usage: Option<Usage>,
    model: Option<String>,
}

impl GeminiAssembler {
    pub(crate) fn push(&mut self, data: &str) -> Result<Option<String>, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::response(
                NAME,
                format!(
                    "not a generateContent response ({e}): {}",
                    preview(data, 200)
                ),
            )
        })?;
        if let Some(err) = v.get("error") {
            return Err(ProviderError::Server {
                provider: NAME.into(),
                status: err["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(500),
                message: err["message"]
                    .as_str()
                    .unwrap_or("error inside the stream")
                    .to_owned(),
            });
        }
        if v.get("candidates").is_none() && v.get("usageMetadata").is_none() {
            return Err(ProviderError::response(
                NAME,
                format!("not a generateContent response: {}", preview(data, 200)),
            ));
        }
        if let Some(u) = v.get("usageMetadata") {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage = Some(
                Usage::new(n("promptTokenCount"), n("candidatesTokenCount"))
                    .with_total(
                        n("totalTokenCount").max(n("promptTokenCount") + n("candidatesTokenCount")),
                    )
                    .with_cached(n("cachedContentTokenCount")),
            );
        }
        if let Some(m) = v["modelVersion"].as_str() {
            self.model = Some(m.to_owned());
        }
        if let Some(block) = v["promptFeedback"]["blockReason"].as_str() {
            self.finish = Some("SAFETY".into());
            tracing::warn!(block, "gemini blocked the prompt");
        }
        let mut delta = String::new();
        if let Some(c) = v["candidates"].get(0) {
            for part in c["content"]["parts"].as_array().into_iter().flatten() {
                if part["thought"].as_bool() == Some(true) {
                    continue;
                }
                if let Some(t) = part["text"].as_str() {
                    delta.push_str(t);
                } else if let Some(fc) = part.get("functionCall") {
                    let id = fc["id"]
                        .as_str()
                        .map_or_else(|| format!("call_{}", self.calls.len() + 1), str::to_owned);
                    let args = fc
                        .get("args")
                        .map_or_else(|| "{}".to_owned(), Value::to_string);
                    self.calls.push(ToolCall::new(
                        id,
                        fc["name"].as_str().unwrap_or_default(),
                        args,
                    ));
                }
            }
            if let Some(f) = c["finishReason"].as_str() {
                self.finish = Some(f.to_owned());
            }
        }
        self.text.push_str(&delta);
        Ok((!delta.is_empty()).then_some(delta))
    }

    pub(crate) fn finished(&self) -> bool {
        self.finish.is_some()
    }

    pub(crate) fn into_response(self) -> ChatResponse {
        let reason = if self.calls.is_empty() {
            finish_reason(self.finish.as_deref())
        } else {
            FinishReason::ToolCalls
        };
        let message = if self.calls.is_empty() {
            ChatMessage::assistant(self.text)
        } else {
            ChatMessage::assistant_with_tools(self.text, self.calls)
        };
        ChatResponse::new(message, reason)
            .with_usage(self.usage)
            .with_model(self.model)
    }
}

#[async_trait]
impl LlmProvider for Gemini {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let url = self.url(&req.model, false);
        let response = self.send(&req, false).await?;
        let body = http::read_body(NAME, &url, self.timeout, response).await?;
        parse_answer(&body)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.send(&req, true).await?;
        Ok(answer_stream(self.timeout, response))
    }
}

/// A whole (not streamed) `generateContent` answer.
pub(crate) fn parse_answer(body: &str) -> Result<ChatResponse, ProviderError> {
    let mut a = GeminiAssembler::default();
    a.push(body)?;
    if a.text.is_empty() && a.calls.is_empty() && !a.finished() {
        return Err(ProviderError::response(
            NAME,
            format!("the response has no candidates: {}", preview(body, 200)),
        ));
    }
    Ok(a.into_response())
}

/// The events of a streamed answer in `response`; `timeout` is the read timeout (for the error
/// of a server that went silent).
pub(crate) fn answer_stream(timeout: Duration, response: reqwest::Response) -> ChatStream {
    let events = http::sse_events(response);
    let stream = futures::stream::unfold(
        (events, Some(GeminiAssembler::default())),
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
                        if done.finished() {
                            return Some((
                                Ok(StreamEvent::Completed(done.into_response())),
                                (events, None),
                            ));
                        }
                        return Some((
                            Err(ProviderError::response(
                                NAME,
                                "the answer stream ended before the answer was complete \
                                 (truncated: no finishReason)",
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
            "gemini-2.5-flash",
            vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hi"),
                ChatMessage::assistant_with_tools("", vec![ToolCall::new("c1", "exec", r#"{"command":"ls"}"#)]),
                ChatMessage::tool_result("c1", "exec", "a.txt"),
            ],
        )
        .with_tools(vec![ToolSpec::new(
            "exec",
            "Run.",
            json!({"type": "object", "additionalProperties": false, "properties": {"command": {"type": "string"}}}),
        )])
        .with_max_tokens(Some(100));
        assert_eq!(
            request_body(&req),
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "exec", "args": {"command": "ls"}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "exec", "response": {"content": "a.txt"}}}]}
                ],
                "systemInstruction": {"parts": [{"text": "be brief"}]},
                "tools": [{"functionDeclarations": [{"name": "exec", "description": "Run.",
                    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}]}],
                "generationConfig": {"maxOutputTokens": 100}
            })
        );
    }

    #[test]
    fn assembles_chunks() {
        let mut a = GeminiAssembler::default();
        assert_eq!(
            a.push(r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}"#)
                .unwrap()
                .as_deref(),
            Some("Hel")
        );
        assert!(!a.finished());
        a.push(r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"exec","args":{"command":"ls"}}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}"#).unwrap();
        assert!(a.finished());
        let r = a.into_response();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.message.tool_calls[0].arguments, r#"{"command":"ls"}"#);
        assert_eq!(r.usage.unwrap().total_tokens, 6);
        let mut a = GeminiAssembler::default();
        assert!(a.push("<html>").is_err());
        assert!(a.push(r#"{"foo": 1}"#).is_err());
    }
}
