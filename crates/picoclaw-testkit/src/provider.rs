//! `ScriptedProvider`: an in-process [`LlmProvider`] that answers from a script.

use crate::reply::{Reply, ReplyKind, split_pieces};
use async_trait::async_trait;
use picoclaw_api::provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
use picoclaw_api::{ChatMessage, FinishReason, ToolCall};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const NAME: &str = "scripted";

/// An in-process provider that answers from a script (unit tests, benches, examples).
///
/// Tool call ids are `call_1`, `call_2`, ... in order. When the script is exhausted it returns
/// [`ProviderError::Response`] saying so.
#[derive(Debug, Default)]
pub struct ScriptedProvider {
    script: Mutex<VecDeque<Reply>>,
    repeat: Option<Reply>,
    requests: Mutex<Vec<ChatRequest>>,
    record: AtomicBool,
    next_call_id: AtomicU64,
}

impl ScriptedProvider {
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            script: Mutex::new(replies.into_iter().collect()),
            record: AtomicBool::new(true),
            ..Self::default()
        }
    }

    /// Answers the same reply forever (once the pushed replies, if any, are used up).
    pub fn repeating(reply: Reply) -> Self {
        Self {
            repeat: Some(reply),
            ..Self::new([])
        }
    }

    /// Stops recording requests (benches: recording every request grows memory).
    pub fn without_recording(self) -> Self {
        self.record.store(false, Ordering::Relaxed);
        self
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        self.script.lock().unwrap().push_back(reply);
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// How many replies are still scripted (not counting a repeating reply).
    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().len()
    }

    async fn next(&self, req: ChatRequest) -> Result<Reply, ProviderError> {
        let reply = {
            let mut requests = self.requests.lock().unwrap();
            let n = requests.len() + 1;
            if self.record.load(Ordering::Relaxed) {
                requests.push(req);
            }
            let next = self.script.lock().unwrap().pop_front();
            next.or_else(|| self.repeat.clone()).ok_or_else(|| {
                ProviderError::response(
                    NAME,
                    format!("the script ran out: no reply scripted for request #{n}"),
                )
            })?
        };
        if let Some(delay) = reply.delay {
            tokio::time::sleep(delay).await;
        }
        Ok(reply)
    }

    fn tool_calls(&self, calls: &[(String, String)]) -> Vec<ToolCall> {
        calls
            .iter()
            .map(|(name, args)| {
                let id = self.next_call_id.fetch_add(1, Ordering::Relaxed) + 1;
                ToolCall::new(format!("call_{id}"), name.clone(), args.clone())
            })
            .collect()
    }

    fn respond(&self, reply: &Reply) -> Result<ChatResponse, ProviderError> {
        let resp = match &reply.kind {
            ReplyKind::Text(text) => {
                ChatResponse::new(ChatMessage::assistant(text.clone()), FinishReason::Stop)
            }
            ReplyKind::ToolCalls(calls) => ChatResponse::new(
                ChatMessage::assistant_with_tools("", self.tool_calls(calls)),
                FinishReason::ToolCalls,
            ),
            ReplyKind::Error { status, message } => {
                return Err(status_error(*status, message, reply));
            }
            ReplyKind::Raw { status, body } => {
                return Err(status_error(*status, &body.to_string(), reply));
            }
            ReplyKind::Garbage(body) => {
                return Err(ProviderError::response(
                    NAME,
                    format!("not a chat completion: {}", preview(body)),
                ));
            }
            ReplyKind::Truncated(_) | ReplyKind::TruncatedToolCall { .. } => {
                return Err(ProviderError::response(
                    NAME,
                    "the response was truncated before it completed",
                ));
            }
        };
        Ok(resp
            .with_usage(reply.usage)
            .with_model(Some("scripted-model".into())))
    }
}

fn preview(body: &str) -> String {
    body.chars().take(200).collect()
}

fn status_error(status: u16, message: &str, reply: &Reply) -> ProviderError {
    let message = message.to_owned();
    let provider = NAME.to_owned();
    match status {
        401 | 403 => ProviderError::Auth {
            provider,
            status,
            message,
            key_hint: "the scripted provider's key".into(),
        },
        429 => ProviderError::RateLimited {
            provider,
            retry_after: reply
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.parse().ok())
                .map(Duration::from_secs),
            message,
        },
        500..=599 => ProviderError::Server {
            provider,
            status,
            message,
        },
        400 | 413 if message.contains("context length") || message.contains("too long") => {
            ProviderError::ContextLength { provider, message }
        }
        _ => ProviderError::InvalidRequest {
            provider,
            status,
            message,
        },
    }
}

#[async_trait]
impl LlmProvider for ScriptedProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let reply = self.next(req).await?;
        self.respond(&reply)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let reply = self.next(req).await?;
        let mut events: Vec<Result<StreamEvent, ProviderError>> = Vec::new();
        match &reply.kind {
            ReplyKind::TruncatedToolCall { .. } => {
                events.push(Err(ProviderError::response(
                    NAME,
                    "the stream ended inside a tool call (truncated)",
                )));
            }
            ReplyKind::Truncated(text) => {
                for piece in split_pieces(text, 3) {
                    events.push(Ok(StreamEvent::TextDelta(piece)));
                }
                events.push(Err(ProviderError::response(
                    NAME,
                    "the stream ended before the answer was complete (truncated)",
                )));
            }
            _ => {
                let resp = self.respond(&reply)?;
                for piece in split_pieces(&resp.message.text(), 3) {
                    events.push(Ok(StreamEvent::TextDelta(piece)));
                }
                events.push(Ok(StreamEvent::Completed(resp)));
            }
        }
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    #[tokio::test]
    async fn answers_in_order_and_records() {
        let p = ScriptedProvider::new([
            Reply::tool_calls(vec![("a", json!({"x": 1})), ("b", json!({}))]),
            Reply::text("done").with_usage(3, 4),
        ]);
        let r1 = p
            .chat(ChatRequest::new("m", vec![ChatMessage::user("hi")]))
            .await
            .unwrap();
        assert_eq!(r1.finish_reason, FinishReason::ToolCalls);
        let ids: Vec<_> = r1
            .message
            .tool_calls
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(ids, ["call_1", "call_2"]);
        assert_eq!(r1.message.tool_calls[0].arguments, r#"{"x":1}"#);
        let r2 = p.chat(ChatRequest::new("m", vec![])).await.unwrap();
        assert_eq!(r2.message.text(), "done");
        assert_eq!(r2.usage.unwrap().total_tokens, 7);
        let err = p.chat(ChatRequest::new("m", vec![])).await.unwrap_err();
        assert!(err.to_string().contains("ran out"), "{err}");
        assert_eq!(p.requests().len(), 3);
        assert_eq!(p.requests()[0].messages[0].text(), "hi");
    }

    #[tokio::test]
    async fn stream_and_truncation() {
        let p = ScriptedProvider::new([Reply::text("hello world"), Reply::truncated("cut")]);
        let events: Vec<_> = p
            .stream(ChatRequest::new("m", vec![]))
            .await
            .unwrap()
            .collect()
            .await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "hello world");
        assert!(matches!(events.last(), Some(Ok(StreamEvent::Completed(_)))));
        let events: Vec<_> = p
            .stream(ChatRequest::new("m", vec![]))
            .await
            .unwrap()
            .collect()
            .await;
        assert!(events.last().unwrap().is_err());
    }

    #[tokio::test]
    async fn repeating_and_errors() {
        let p = ScriptedProvider::repeating(Reply::text("again")).without_recording();
        for _ in 0..3 {
            assert_eq!(
                p.chat(ChatRequest::default()).await.unwrap().message.text(),
                "again"
            );
        }
        assert!(p.requests().is_empty());
        let p = ScriptedProvider::new([Reply::rate_limited(7), Reply::error(503, "busy")]);
        let e = p.chat(ChatRequest::default()).await.unwrap_err();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = p.chat(ChatRequest::default()).await.unwrap_err();
        assert!(e.is_retryable());
    }
}
