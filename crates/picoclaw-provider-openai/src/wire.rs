//! The OpenAI Chat Completions wire format: request bodies from our types, and our types from
//! response bodies and stream chunks.

use crate::{ChatRequest, ChatResponse, ProviderError};
use picoclaw_api::{ChatMessage, ContentPart, FinishReason, Role, ToolCall, Usage};
use picoclaw_http::provider::preview;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The JSON body of a `POST /chat/completions`.
pub(crate) fn request_body(req: &ChatRequest, stream: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), Value::String(req.model.clone()));
    body.insert(
        "messages".into(),
        Value::Array(req.messages.iter().map(message).collect()),
    );
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(max) = req.max_tokens {
        body.insert("max_tokens".into(), json!(max));
    }
    if let Some(t) = req.temperature {
        // f32 → f64 through the decimal text keeps 0.7 as 0.7, not 0.699999988079071.
        let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
        body.insert("temperature".into(), json!(t));
    }
    if stream {
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    Value::Object(body)
}

fn content(parts: &[ContentPart]) -> Value {
    let text_only = parts.iter().all(|p| matches!(p, ContentPart::Text { .. }));
    if text_only {
        let mut text = String::new();
        for p in parts {
            if let ContentPart::Text { text: t } = p {
                text.push_str(t);
            }
        }
        return Value::String(text);
    }
    Value::Array(
        parts
            .iter()
            .map(|p| match p {
                ContentPart::Text { text } => json!({"type": "text", "text": text}),
                ContentPart::Image { url, detail } => {
                    let mut image = json!({"url": url});
                    if let Some(d) = detail {
                        image["detail"] = Value::String(d.clone());
                    }
                    json!({"type": "image_url", "image_url": image})
                }
                _ => json!({"type": "text", "text": ""}),
            })
            .collect(),
    )
}

fn message(msg: &ChatMessage) -> Value {
    match msg.role {
        Role::Assistant => {
            let mut m = json!({"role": "assistant"});
            let text = msg.text();
            m["content"] = if text.is_empty() && !msg.tool_calls.is_empty() {
                Value::Null
            } else {
                Value::String(text)
            };
            if !msg.tool_calls.is_empty() {
                m["tool_calls"] = msg
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
            }
            m
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": msg.tool_call_id.clone().unwrap_or_default(),
            "content": msg.text(),
        }),
        role => json!({"role": role.as_str(), "content": content(&msg.content)}),
    }
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WireUsageDetails>,
    #[serde(default)]
    completion_tokens_details: Option<WireCompletionDetails>,
}

#[derive(Deserialize)]
struct WireUsageDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct WireCompletionDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl WireUsage {
    fn into_usage(self) -> Usage {
        let usage = Usage::new(self.prompt_tokens, self.completion_tokens)
            .with_cached(self.prompt_tokens_details.map_or(0, |d| d.cached_tokens))
            .with_reasoning(
                self.completion_tokens_details
                    .map_or(0, |d| d.reasoning_tokens),
            );
        if self.total_tokens == 0 {
            usage
        } else {
            usage.with_total(self.total_tokens)
        }
    }
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// A string per the spec; some servers send an object.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    delta: Option<WireMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireCompletion {
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    model: Option<String>,
}

fn arguments_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn content_text(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// Parses a whole (non-streamed) completion.
pub(crate) fn parse_completion(provider: &str, body: &str) -> Result<ChatResponse, ProviderError> {
    let wire: WireCompletion = serde_json::from_str(body).map_err(|e| {
        ProviderError::response(
            provider,
            format!("not a chat completion ({e}): {}", preview(body, 200)),
        )
    })?;
    let choice = wire
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::response(provider, "the response has no choices"))?;
    let message = choice
        .message
        .ok_or_else(|| ProviderError::response(provider, "the response's choice has no message"))?;
    let calls: Vec<ToolCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = c.function.unwrap_or(WireFunction {
                name: None,
                arguments: None,
            });
            ToolCall::new(
                c.id.unwrap_or_else(|| format!("call_{i}")),
                f.name.unwrap_or_default(),
                arguments_text(f.arguments),
            )
        })
        .collect();
    let text = content_text(message.content);
    Ok(finish(
        text,
        calls,
        choice.finish_reason,
        wire.usage,
        wire.model,
    ))
}

fn finish(
    text: String,
    calls: Vec<ToolCall>,
    reason: Option<String>,
    usage: Option<WireUsage>,
    model: Option<String>,
) -> ChatResponse {
    // Some local servers say "stop" while asking for tools: tool calls present means tool calls.
    let reason = if calls.is_empty() {
        FinishReason::from_openai(reason.as_deref().unwrap_or("stop"))
    } else {
        FinishReason::ToolCalls
    };
    let message = if calls.is_empty() {
        ChatMessage::assistant(text)
    } else {
        ChatMessage::assistant_with_tools(text, calls)
    };
    ChatResponse::new(message, reason)
        .with_usage(usage.map(WireUsage::into_usage))
        .with_model(model)
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Assembles a streamed answer chunk by chunk.
#[derive(Default)]
pub(crate) struct StreamAssembler {
    text: String,
    calls: BTreeMap<u32, PartialCall>,
    finish_reason: Option<String>,
    usage: Option<WireUsage>,
    model: Option<String>,
}

impl StreamAssembler {
    /// Takes one `data:` payload (not `[DONE]`); returns the text delta it carried, if any.
    pub(crate) fn push(
        &mut self,
        provider: &str,
        data: &str,
    ) -> Result<Option<String>, ProviderError> {
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::response(
                provider,
                format!("a stream chunk is not JSON ({e}): {}", preview(data, 200)),
            )
        })?;
        if let Some(err) = value.get("error") {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| err.to_string(), str::to_owned);
            return Err(ProviderError::Server {
                provider: provider.to_owned(),
                status: 200,
                message: format!("error inside the stream: {message}"),
            });
        }
        let chunk: WireCompletion = serde_json::from_value(value).map_err(|e| {
            ProviderError::response(
                provider,
                format!(
                    "a stream chunk is not a completion chunk ({e}): {}",
                    preview(data, 200)
                ),
            )
        })?;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        if chunk.model.is_some() {
            self.model = chunk.model;
        }
        let mut delta_text = None;
        for choice in chunk.choices {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta.or(choice.message) else {
                continue;
            };
            let text = content_text(delta.content);
            if !text.is_empty() {
                self.text.push_str(&text);
                delta_text = Some(text);
            }
            for (i, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let index = call.index.unwrap_or(u32::try_from(i).unwrap_or(0));
                let partial = self.calls.entry(index).or_default();
                if let Some(id) = call.id.filter(|s| !s.is_empty()) {
                    partial.id = id;
                }
                if let Some(f) = call.function {
                    if let Some(name) = f.name.filter(|s| !s.is_empty()) {
                        partial.name.push_str(&name);
                    }
                    partial.arguments.push_str(&arguments_text(f.arguments));
                }
            }
        }
        Ok(delta_text)
    }

    /// Whether the model said why it stopped (the answer is complete).
    pub(crate) fn finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    pub(crate) fn into_response(self) -> ChatResponse {
        let calls = self
            .calls
            .into_iter()
            .map(|(i, c)| {
                let id = if c.id.is_empty() {
                    format!("call_{i}")
                } else {
                    c.id
                };
                ToolCall::new(id, c.name, c.arguments)
            })
            .collect();
        finish(self.text, calls, self.finish_reason, self.usage, self.model)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use picoclaw_api::ToolSpec;

    fn check(input: &ChatRequest, stream: bool, expected: Value) {
        assert_eq!(request_body(input, stream), expected);
    }

    #[test]
    fn request_shape() {
        let req = ChatRequest::new(
            "gpt-4o-mini",
            vec![
                ChatMessage::system("be brief"),
                ChatMessage::user_parts(vec![
                    ContentPart::text("what is this?"),
                    ContentPart::image("data:image/png;base64,AAAA"),
                ]),
                ChatMessage::assistant_with_tools(
                    "",
                    vec![ToolCall::new("call_1", "read_file", r#"{"path":"a.txt"}"#)],
                ),
                ChatMessage::tool_result("call_1", "read_file", "hello"),
                ChatMessage::assistant("done"),
            ],
        )
        .with_tools(vec![ToolSpec::new(
            "read_file",
            "Read a file.",
            json!({"type": "object"}),
        )])
        .with_max_tokens(Some(100))
        .with_temperature(Some(0.7));
        check(
            &req,
            true,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "read_file", "arguments": "{\"path\":\"a.txt\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "hello"},
                    {"role": "assistant", "content": "done"}
                ],
                "tools": [{"type": "function", "function": {
                    "name": "read_file", "description": "Read a file.", "parameters": {"type": "object"}}}],
                "max_tokens": 100,
                "temperature": 0.7,
                "stream": true,
                "stream_options": {"include_usage": true}
            }),
        );
        let bare = ChatRequest::new("m", vec![ChatMessage::user("hi")]);
        check(
            &bare,
            false,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        );
    }

    #[test]
    fn parses_completions() {
        let r = parse_completion(
            "openai",
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],
               "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,
                        "prompt_tokens_details":{"cached_tokens":3},
                        "completion_tokens_details":{"reasoning_tokens":1}},"model":"gpt-x"}"#,
        )
        .unwrap();
        assert_eq!(r.message.text(), "hi");
        assert_eq!(r.usage.unwrap().cached_tokens, 3);
        assert_eq!(r.usage.unwrap().reasoning_tokens, 1);
        assert_eq!(r.model.as_deref(), Some("gpt-x"));

        // Tool calls with finish_reason "stop" (some local servers) and object arguments.
        let r = parse_completion(
            "ollama",
            r#"{"choices":[{"message":{"content":"","tool_calls":[{"id":"a","type":"function",
               "function":{"name":"exec","arguments":{"command":"ls"}}}]},"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.message.tool_calls[0].arguments, r#"{"command":"ls"}"#);

        let err = parse_completion("openai", "<html>bad gateway</html>").unwrap_err();
        assert!(
            err.to_string().contains("<html>bad gateway</html>"),
            "{err}"
        );
        let err = parse_completion("openai", r#"{"choices":[]}"#).unwrap_err();
        assert!(err.to_string().contains("no choices"));
        let long = "x".repeat(10_000);
        assert!(
            parse_completion("openai", &long)
                .unwrap_err()
                .to_string()
                .len()
                < 400
        );
    }

    #[test]
    fn assembles_tool_call_deltas_across_chunks() {
        let mut a = StreamAssembler::default();
        let chunks = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Let me "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"look."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read_file","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"pa"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_dir","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":\"a\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
        ];
        let mut deltas = Vec::new();
        for c in chunks {
            if let Some(d) = a.push("openai", c).unwrap() {
                deltas.push(d);
            }
        }
        assert_eq!(deltas, ["Let me ", "look."]);
        assert!(a.finished());
        let r = a.into_response();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.message.text(), "Let me look.");
        let calls = &r.message.tool_calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("call_a", "read_file")
        );
        assert_eq!(calls[0].arguments, r#"{"path":"a"}"#);
        assert_eq!(calls[1].name, "list_dir");
        assert_eq!(r.usage.unwrap().total_tokens, 13);
    }

    #[test]
    fn bad_chunks_are_errors() {
        let mut a = StreamAssembler::default();
        let err = a.push("openai", "<html>").unwrap_err();
        assert!(err.to_string().contains("not JSON"));
        let err = a
            .push("openai", r#"{"error":{"message":"overloaded"}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("overloaded"));
        assert!(err.is_retryable());
        assert!(!a.finished());
    }
}
