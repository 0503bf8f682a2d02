//! A wire format testkit does not know, tested without editing testkit: a toy JSON-lines
//! protocol (`POST …/toy/complete`, key in `x-toy-key`, a stream of one JSON object per line)
//! as a `Dialect` implemented here, and a provider speaking it over HTTP that passes the wire
//! suite.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use picoclaw_api::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, LlmProvider, ProviderError,
    StreamEvent, ToolCall, Usage,
};
use picoclaw_testkit::RecordedRequest;
use picoclaw_testkit::dialect::{Answer, Content, Dialect, RenderContext, WireResponse};
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

// ---- the dialect: how the scripted endpoint speaks the toy protocol ----

#[derive(Debug)]
struct ToyDialect;

fn thirds(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(3).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn calls_json(answer: &Answer<'_>, cx: &RenderContext<'_>) -> Vec<Value> {
    match &answer.content {
        Content::Text(_) => Vec::new(),
        Content::ToolCalls(calls) => calls
            .iter()
            .map(|c| json!({"id": format!("t{}", cx.next_id()), "name": c.name, "args": c.arguments}))
            .collect(),
    }
}

fn done_json(answer: &Answer<'_>) -> Value {
    let mut done = json!({"done": true});
    if let Some(u) = answer.usage {
        done["usage"] = json!({"in": u.prompt_tokens, "out": u.completion_tokens});
    }
    done
}

impl Dialect for ToyDialect {
    fn name(&self) -> &str {
        "toy"
    }
    fn serves(&self, request: &RecordedRequest) -> bool {
        request.path.ends_with("/toy/complete")
    }
    fn is_streaming(&self, request: &RecordedRequest) -> bool {
        request.body["stream"] == true
    }
    fn model(&self, request: &RecordedRequest) -> Option<String> {
        request.body["model"].as_str().map(str::to_owned)
    }
    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool {
        request.header("x-toy-key") == Some(key)
    }
    fn error(&self, status: u16, message: &str) -> WireResponse {
        WireResponse::json(status, json!({"error": message}))
    }
    fn garbage_event(&self, body: &str) -> String {
        format!("{body}\n")
    }
    fn answer(&self, answer: &Answer<'_>, cx: &RenderContext<'_>) -> Value {
        let mut body = done_json(answer);
        body["text"] = match &answer.content {
            Content::Text(t) => json!(t),
            Content::ToolCalls(_) => json!(""),
        };
        body["calls"] = json!(calls_json(answer, cx));
        body["model"] = json!(cx.model());
        body
    }
    fn stream(&self, answer: &Answer<'_>, cut: bool, cx: &RenderContext<'_>) -> Vec<String> {
        let mut lines: Vec<String> = match &answer.content {
            Content::Text(t) => thirds(t)
                .into_iter()
                .map(|piece| json!({"delta": piece}).to_string())
                .collect(),
            Content::ToolCalls(_) => calls_json(answer, cx)
                .into_iter()
                .map(|call| json!({"call": call}).to_string())
                .collect(),
        };
        if !cut {
            lines.push(done_json(answer).to_string());
        }
        lines.into_iter().map(|l| format!("{l}\n")).collect()
    }
}

// ---- the provider: a client of the toy protocol ----

#[derive(Debug)]
struct ToyProvider {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl ToyProvider {
    fn new(base_url: &str, key: &str) -> Self {
        // A test binary may install the process-wide TLS provider (libraries never do).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::new(),
            url: format!("{base_url}/toy/complete"),
            key: key.to_owned(),
        }
    }

    async fn send(
        &self,
        req: &ChatRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let messages: Vec<String> = req.messages.iter().map(ChatMessage::text).collect();
        let resp = self
            .http
            .post(&self.url)
            .header("x-toy-key", &self.key)
            .json(&json!({"model": req.model, "messages": messages, "stream": stream}))
            .send()
            .await
            .map_err(|e| ProviderError::Transport {
                provider: "toy".into(),
                url: self.url.clone(),
                source: Box::new(e),
            })?;
        let status = resp.status().as_u16();
        if status == 200 {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs);
        let message = resp.text().await.unwrap_or_default();
        let provider = "toy".to_owned();
        Err(match status {
            401 | 403 => ProviderError::Auth {
                provider,
                status,
                message,
                key_hint: "TOY_KEY".into(),
            },
            429 => ProviderError::RateLimited {
                provider,
                retry_after,
                message,
            },
            400..=499 => ProviderError::InvalidRequest {
                provider,
                status,
                message,
            },
            _ => ProviderError::Server {
                provider,
                status,
                message,
            },
        })
    }
}

fn unreadable(what: impl std::fmt::Display) -> ProviderError {
    ProviderError::response("toy", what.to_string())
}

fn tool_call(v: &Value) -> ToolCall {
    let s = |k: &str| v[k].as_str().unwrap_or_default();
    ToolCall::new(s("id"), s("name"), s("args"))
}

fn response(text: &str, calls: Vec<ToolCall>, done: &Value) -> ChatResponse {
    let finish = if calls.is_empty() {
        FinishReason::Stop
    } else {
        FinishReason::ToolCalls
    };
    let usage = done.get("usage").map(|u| {
        Usage::new(
            u["in"].as_u64().unwrap_or(0),
            u["out"].as_u64().unwrap_or(0),
        )
    });
    ChatResponse::new(ChatMessage::assistant_with_tools(text, calls), finish).with_usage(usage)
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Reading a stream: the bytes not yet split into lines, the calls so far, and whether it ended.
struct Reader {
    body: Body,
    buf: Vec<u8>,
    text: String,
    calls: Vec<ToolCall>,
    ended: bool,
}

impl Reader {
    /// The next event, or `None` once the stream has ended.
    async fn next_event(&mut self) -> Option<Result<StreamEvent, ProviderError>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).trim().to_owned();
                if line.is_empty() {
                    continue;
                }
                let v: Value = match serde_json::from_str(&line) {
                    Ok(v) => v,
                    Err(e) => return self.fail(unreadable(format!("{e}: {line}"))),
                };
                if let Some(delta) = v["delta"].as_str() {
                    self.text.push_str(delta);
                    return Some(Ok(StreamEvent::TextDelta(delta.to_owned())));
                }
                if let Some(call) = v.get("call") {
                    self.calls.push(tool_call(call));
                    continue;
                }
                if v["done"] == true {
                    self.ended = true;
                    let calls = std::mem::take(&mut self.calls);
                    return Some(Ok(StreamEvent::Completed(response(&self.text, calls, &v))));
                }
                return self.fail(unreadable(format!("an unknown line: {line}")));
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                Some(Err(e)) => return self.fail(unreadable(e)),
                None => return self.fail(unreadable("the stream ended before `done`")),
            }
        }
    }

    fn fail(&mut self, e: ProviderError) -> Option<Result<StreamEvent, ProviderError>> {
        self.ended = true;
        Some(Err(e))
    }
}

#[async_trait]
impl LlmProvider for ToyProvider {
    fn name(&self) -> &str {
        "toy"
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let text = self
            .send(&req, false)
            .await?
            .text()
            .await
            .map_err(unreadable)?;
        let v: Value = serde_json::from_str(&text).map_err(unreadable)?;
        if v["done"] != true {
            return Err(unreadable("no `done` in the answer"));
        }
        let calls = v["calls"]
            .as_array()
            .map(|a| a.iter().map(tool_call).collect())
            .unwrap_or_default();
        Ok(response(v["text"].as_str().unwrap_or_default(), calls, &v))
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let body: Body = Box::pin(self.send(&req, true).await?.bytes_stream());
        let reader = Reader {
            body,
            buf: Vec::new(),
            text: String::new(),
            calls: Vec::new(),
            ended: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            reader,
            |mut r| async move { r.next_event().await.map(|event| (event, r)) },
        )))
    }
}

#[tokio::test]
async fn a_wire_format_from_outside_testkit_passes_the_wire_suite() {
    picoclaw_testkit::conformance::wire_suite(Arc::new(ToyDialect), |ep| {
        Arc::new(ToyProvider::new(&ep.base_url(), "toy-key"))
    })
    .await;
}
