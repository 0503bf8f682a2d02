//! `OpenAiResponses`: OpenAI's Responses API (`POST /responses`), which Codex models and
//! ChatGPT sign-ins use. Input is a list of items: messages, `function_call`s and their
//! `function_call_output`s; system text goes in `instructions`. Streams are the `response.*`
//! events. Requests are stateless (`store: false`): the whole history is sent every time.

use crate::chat::{OpenAiCompatConfig, OpenAiCompatible};
use crate::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
use async_trait::async_trait;
use futures::StreamExt;
use picoclaw_api::{ChatMessage, ContentPart, FinishReason, Role, ToolCall, Usage};
use picoclaw_http::provider::{preview, sse_events};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The Responses API over the same HTTP setup as [`OpenAiCompatible`].
#[derive(Debug)]
pub struct OpenAiResponses {
    http: OpenAiCompatible,
}

impl OpenAiResponses {
    /// `cfg.api_base` is the base before `/responses` (`https://api.openai.com/v1`).
    pub fn new(cfg: OpenAiCompatConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            http: OpenAiCompatible::with_path(cfg, "/responses")?,
        })
    }

    /// Sends bearer tokens from `tokens` (an OAuth login) when no API key is set.
    pub fn with_tokens(mut self, tokens: std::sync::Arc<dyn picoclaw_api::TokenSource>) -> Self {
        self.http = self.http.with_tokens(tokens);
        self
    }

    /// The body for `req`, with the model's own temperature and reasoning settings.
    fn body(&self, req: &ChatRequest, stream: bool) -> Value {
        let mut body = request_body(req, stream);
        self.http.shape_sampling(&mut body, &req.model, true);
        body
    }
}

fn input_content(parts: &[ContentPart], role: Role) -> Vec<Value> {
    let text_type = if role == Role::Assistant {
        "output_text"
    } else {
        "input_text"
    };
    parts
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text { text } if text.is_empty() => None,
            ContentPart::Text { text } => Some(json!({"type": text_type, "text": text})),
            ContentPart::Image { url, detail } => Some(json!({"type": "input_image",
                "image_url": url, "detail": detail.clone().unwrap_or_else(|| "auto".into())})),
            _ => None,
        })
        .collect()
}

/// The Responses body for `req`.
pub(crate) fn request_body(req: &ChatRequest, stream: bool) -> Value {
    let mut instructions = Vec::new();
    let mut input = Vec::new();
    for msg in &req.messages {
        match msg.role {
            Role::System => instructions.push(msg.text()),
            Role::User => {
                let content = input_content(&msg.content, Role::User);
                if !content.is_empty() {
                    input.push(json!({"role": "user", "content": content}));
                }
            }
            Role::Assistant => {
                let content = input_content(&msg.content, Role::Assistant);
                if !content.is_empty() {
                    input.push(json!({"role": "assistant", "content": content}));
                }
                for call in &msg.tool_calls {
                    input.push(json!({"type": "function_call", "call_id": call.id,
                        "name": call.name, "arguments": call.arguments}));
                }
            }
            Role::Tool => input.push(json!({"type": "function_call_output",
                "call_id": msg.tool_call_id.clone().unwrap_or_default(), "output": msg.text()})),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    if !instructions.is_empty() {
        body.insert("instructions".into(), json!(instructions.join("\n\n")));
    }
    body.insert("input".into(), Value::Array(input));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "name": t.name, "description": t.description,
                            "parameters": t.parameters})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(m) = req.max_tokens {
        body.insert("max_output_tokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
        body.insert("temperature".into(), json!(t));
    }
    body.insert("store".into(), Value::Bool(false));
    if stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    Value::Object(body)
}

fn usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(
        Usage::new(n("input_tokens"), n("output_tokens"))
            .with_total(n("total_tokens").max(n("input_tokens") + n("output_tokens")))
            .with_cached(
                u["input_tokens_details"]["cached_tokens"]
                    .as_u64()
                    .unwrap_or(0),
            )
            .with_reasoning(
                u["output_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .unwrap_or(0),
            ),
    )
}

/// A whole `response` object into our answer.
pub(crate) fn parse_response(provider: &str, v: &Value) -> Result<ChatResponse, ProviderError> {
    if v["status"] == "failed" {
        let e = &v["error"];
        return Err(ProviderError::Server {
            provider: provider.to_owned(),
            status: 500,
            message: e["message"]
                .as_str()
                .unwrap_or("the response failed")
                .to_owned(),
        });
    }
    let output = v.get("output").and_then(Value::as_array).ok_or_else(|| {
        ProviderError::response(
            provider,
            format!(
                "not a Responses API response: {}",
                preview(&v.to_string(), 200)
            ),
        )
    })?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item["type"].as_str() {
            Some("message") => {
                for c in item["content"].as_array().into_iter().flatten() {
                    if let Some(t) = c["text"].as_str().filter(|_| c["type"] == "output_text") {
                        text.push_str(t);
                    }
                }
            }
            Some("function_call") => calls.push(ToolCall::new(
                item["call_id"]
                    .as_str()
                    .or(item["id"].as_str())
                    .unwrap_or_default(),
                item["name"].as_str().unwrap_or_default(),
                item["arguments"].as_str().unwrap_or("{}"),
            )),
            _ => {}
        }
    }
    let reason = if !calls.is_empty() {
        FinishReason::ToolCalls
    } else if v["status"] == "incomplete" {
        match v["incomplete_details"]["reason"].as_str() {
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Length,
        }
    } else {
        FinishReason::Stop
    };
    let message = if calls.is_empty() {
        ChatMessage::assistant(text)
    } else {
        ChatMessage::assistant_with_tools(text, calls)
    };
    Ok(ChatResponse::new(message, reason)
        .with_usage(usage(v))
        .with_model(v["model"].as_str().map(str::to_owned)))
}

/// A whole (not streamed) Responses API answer.
pub(crate) fn parse_body(provider: &str, text: &str) -> Result<ChatResponse, ProviderError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        ProviderError::response(
            provider,
            format!("not a Responses API response ({e}): {}", preview(text, 200)),
        )
    })?;
    parse_response(provider, &v)
}

/// Follows `response.*` stream events.
#[derive(Default)]
pub(crate) struct EventAssembler {
    /// output_index → (call_id, name, arguments) for calls being streamed.
    calls: BTreeMap<u64, (String, String, String)>,
    text: String,
    done: Option<ChatResponse>,
}

impl EventAssembler {
    pub(crate) fn push(
        &mut self,
        provider: &str,
        data: &str,
    ) -> Result<Option<String>, ProviderError> {
        let v: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::response(
                provider,
                format!("a stream event is not JSON ({e}): {}", preview(data, 200)),
            )
        })?;
        let index = v["output_index"].as_u64().unwrap_or(0);
        match v["type"].as_str() {
            Some("response.output_text.delta") => {
                let d = v["delta"].as_str().unwrap_or_default();
                if !d.is_empty() {
                    self.text.push_str(d);
                    return Ok(Some(d.to_owned()));
                }
            }
            Some("response.output_item.added") if v["item"]["type"] == "function_call" => {
                let item = &v["item"];
                self.calls.insert(
                    index,
                    (
                        item["call_id"].as_str().unwrap_or_default().to_owned(),
                        item["name"].as_str().unwrap_or_default().to_owned(),
                        String::new(),
                    ),
                );
            }
            Some("response.function_call_arguments.delta") => {
                if let Some(c) = self.calls.get_mut(&index) {
                    c.2.push_str(v["delta"].as_str().unwrap_or_default());
                }
            }
            Some("response.completed" | "response.incomplete") => {
                self.done = Some(parse_response(provider, &v["response"])?);
            }
            Some("response.failed") => {
                return Err(parse_response(provider, &v["response"])
                    .err()
                    .unwrap_or_else(|| ProviderError::response(provider, "the response failed")));
            }
            Some("error") => {
                return Err(ProviderError::Server {
                    provider: provider.to_owned(),
                    status: 500,
                    message: v["message"]
                        .as_str()
                        .unwrap_or("error inside the stream")
                        .to_owned(),
                });
            }
            Some(_) => {}
            None => {
                return Err(ProviderError::response(
                    provider,
                    format!("a stream event has no type: {}", preview(data, 200)),
                ));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl LlmProvider for OpenAiResponses {
    fn name(&self) -> &str {
        self.http.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let body = self.http.post_json(&self.body(&req, false)).await?;
        let text = self.http.read_body(body).await?;
        parse_body(self.name(), &text)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let response = self.http.post_json(&self.body(&req, true)).await?;
        Ok(answer_stream(self.name().to_owned(), response))
    }
}

/// The `response.*` events of a streamed answer in `response`.
pub(crate) fn answer_stream(name: String, response: reqwest::Response) -> ChatStream {
    let events = sse_events(response);
    let stream = futures::stream::unfold(
        (events, Some(EventAssembler::default()), name),
        |(mut events, mut asm, name)| async move {
            loop {
                let a = asm.as_mut()?;
                if let Some(done) = a.done.take() {
                    return Some((Ok(StreamEvent::Completed(done)), (events, None, name)));
                }
                match events.next().await {
                    Some(Ok(ev)) => {
                        if ev.data.trim().is_empty() {
                            continue;
                        }
                        match a.push(&name, &ev.data) {
                            Ok(Some(delta)) => {
                                return Some((
                                    Ok(StreamEvent::TextDelta(delta)),
                                    (events, asm, name),
                                ));
                            }
                            Ok(None) => continue,
                            Err(e) => return Some((Err(e), (events, None, name))),
                        }
                    }
                    Some(Err(e)) => {
                        let err = ProviderError::response(
                            &name,
                            format!("the answer stream broke off: {e}"),
                        );
                        return Some((Err(err), (events, None, name)));
                    }
                    None => {
                        let err = ProviderError::response(
                            &name,
                            "the answer stream ended before the answer was complete \
                             (truncated: no response.completed)",
                        );
                        return Some((Err(err), (events, None, name)));
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use picoclaw_api::ToolSpec;

    #[test]
    fn request_shape() {
        let req = ChatRequest::new(
            "gpt-5-codex",
            vec![
                ChatMessage::system("be brief"),
                ChatMessage::user("hi"),
                ChatMessage::assistant_with_tools(
                    "",
                    vec![ToolCall::new("call_1", "exec", r#"{"command":"ls"}"#)],
                ),
                ChatMessage::tool_result("call_1", "exec", "a.txt"),
                ChatMessage::assistant("done"),
            ],
        )
        .with_tools(vec![ToolSpec::new(
            "exec",
            "Run.",
            json!({"type": "object"}),
        )])
        .with_max_tokens(Some(50));
        assert_eq!(
            request_body(&req, true),
            json!({
                "model": "gpt-5-codex",
                "instructions": "be brief",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                    {"type": "function_call", "call_id": "call_1", "name": "exec", "arguments": "{\"command\":\"ls\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "a.txt"},
                    {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]}
                ],
                "tools": [{"type": "function", "name": "exec", "description": "Run.", "parameters": {"type": "object"}}],
                "max_output_tokens": 50,
                "store": false,
                "stream": true
            })
        );
    }

    #[test]
    fn parses_output_items() {
        let v = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "reasoning"}, {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1},
                      "output_tokens_details": {"reasoning_tokens": 2}}});
        let r = parse_response("openai", &v).unwrap();
        assert_eq!(r.message.text(), "Hi");
        assert_eq!(r.finish_reason, FinishReason::Length);
        assert_eq!(r.usage.unwrap().cached_tokens, 1);
        assert_eq!(r.usage.unwrap().reasoning_tokens, 2);
        assert!(
            parse_response(
                "openai",
                &json!({"status": "failed", "error": {"message": "boom"}})
            )
            .unwrap_err()
            .is_retryable()
        );
        assert!(parse_response("openai", &json!({"nope": 1})).is_err());
    }
}
