//! `message(content, channel, chat_id)`: the agent sends a message on its own — to the current
//! conversation by default, or to another chat — through the outbox, so it is delivered like every
//! reply (in order per chat, retried, once). Useful from scheduled tasks and the heartbeat.

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_bus::OutboundMessage;
use picoclaw_state::{Outbox, now_ms};
use picoclaw_types::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Longest message the tool accepts (channels split long ones further).
pub const MAX_MESSAGE_CHARS: usize = 16_000;

/// Proactive messages.
#[derive(Clone)]
pub struct MessageTool {
    outbox: Arc<dyn Outbox>,
}

impl std::fmt::Debug for MessageTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageTool").finish_non_exhaustive()
    }
}

impl MessageTool {
    pub fn new(outbox: Arc<dyn Outbox>) -> Self {
        Self { outbox }
    }
}

#[derive(Deserialize)]
struct Args {
    content: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    chat_id: Option<String>,
    #[serde(default)]
    media: Option<Value>,
}

#[async_trait]
impl Tool for MessageTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "message",
            "Send a message now: to this chat by default, or to channel/chat_id.",
            schema(
                &[
                    ("content", "string", "The text to send"),
                    (
                        "channel",
                        "string",
                        "The channel (telegram, slack...); default: this conversation's",
                    ),
                    (
                        "chat_id",
                        "string",
                        "The chat within the channel; default: this conversation's",
                    ),
                ],
                &["content"],
            ),
        )
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("message", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        if args
            .media
            .as_ref()
            .is_some_and(|m| !m.is_null() && m != &Value::Array(vec![]))
        {
            return ToolOutput::error(
                "message: sending files is not supported yet; send the text, and say where the \
                 file is in the workspace",
            );
        }
        let content = args.content.trim();
        if content.is_empty() {
            return ToolOutput::error("message: content is empty");
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return ToolOutput::error(format!(
                "message: content is longer than {MAX_MESSAGE_CHARS} characters; shorten it"
            ));
        }
        let channel = args
            .channel
            .filter(|c| !c.trim().is_empty())
            .or_else(|| ctx.channel.clone());
        let chat = args
            .chat_id
            .filter(|c| !c.trim().is_empty())
            .or_else(|| ctx.chat_id.clone());
        let (Some(channel), Some(chat)) = (channel, chat) else {
            return ToolOutput::error(
                "message: this conversation has no chat to send to (it is not on a channel); give \
                 channel and chat_id",
            );
        };
        if matches!(channel.as_str(), "cli" | "api") {
            return ToolOutput::error(format!(
                "message: the {channel} conversation gets your answer directly; just answer"
            ));
        }
        let msg = OutboundMessage::new(channel.as_str(), chat.as_str(), content);
        let payload = match serde_json::to_string(&msg) {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(format!("message: {e}")),
        };
        match self
            .outbox
            .enqueue_outbound(&channel, &chat, &payload, now_ms())
            .await
        {
            Ok(_) => ToolOutput::ok(format!("Sent to {channel}:{chat}.")),
            Err(e) => ToolOutput::error(format!("message: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_state::InMemoryStore;
    use picoclaw_types::SessionKey;
    use serde_json::json;

    #[tokio::test]
    async fn sends_to_this_chat_or_another_through_the_outbox() {
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone());
        let ctx = ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42");
        let out = tool.call(&ctx, json!({"content": "Working on it…"})).await;
        assert_eq!(out.content, "Sent to telegram:42.");
        let out = tool
            .call(
                &ctx,
                json!({"content": "FYI", "channel": "slack", "chat_id": "C9"}),
            )
            .await;
        assert!(!out.is_error, "{out:?}");
        let sent = store.claim_outbound("t", now_ms(), 1000, 10).await.unwrap();
        let texts: Vec<(String, String)> = sent
            .iter()
            .map(|r| {
                let m: OutboundMessage = serde_json::from_str(&r.payload).unwrap();
                (format!("{}:{}", r.channel, r.chat_id), m.content)
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("telegram:42".to_owned(), "Working on it…".to_owned()),
                ("slack:C9".to_owned(), "FYI".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn refuses_what_cannot_be_sent() {
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone());
        let cli = ToolContext::new(SessionKey::new("cli:default")).with_chat("cli", "default");
        let bare = ToolContext::new(SessionKey::new("x"));
        let chat = ToolContext::new(SessionKey::new("telegram:1")).with_chat("telegram", "1");
        for (ctx, args, want) in [
            (&bare, json!({"content": "hi"}), "no chat to send to"),
            (&cli, json!({"content": "hi"}), "answer directly"),
            (&chat, json!({"content": "  "}), "empty"),
            (
                &chat,
                json!({"content": "x".repeat(MAX_MESSAGE_CHARS + 1)}),
                "longer than",
            ),
            (
                &chat,
                json!({"content": "hi", "media": ["a.png"]}),
                "files is not supported",
            ),
            (&chat, json!({}), "invalid arguments"),
        ] {
            let out = tool.call(ctx, args.clone()).await;
            assert!(
                out.is_error && out.content.contains(want),
                "{args}: {out:?}"
            );
        }
        assert!(
            store
                .claim_outbound("t", now_ms(), 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
