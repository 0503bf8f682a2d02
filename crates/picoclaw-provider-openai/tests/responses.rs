//! The OpenAI Responses API over real HTTP against the scripted endpoint's Responses dialect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::{ChatMessage, ToolCall};
use picoclaw_provider_openai::{ChatRequest, LlmProvider, OpenAiCompatConfig, OpenAiResponses};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn passes_the_provider_conformance_suite() {
    picoclaw_testkit::conformance::wire_suite(
        std::sync::Arc::new(picoclaw_testkit::dialect::ResponsesDialect),
        |ep| {
            Arc::new(
                OpenAiResponses::new(
                    OpenAiCompatConfig::new("codex", ep.base_url()).with_api_key("sk-x"),
                )
                .unwrap(),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn sends_items_and_instructions() {
    let ep = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    let p = OpenAiResponses::new(OpenAiCompatConfig::new("codex", ep.base_url())).unwrap();
    let req = ChatRequest::new(
        "gpt-5-codex",
        vec![
            ChatMessage::system("sys"),
            ChatMessage::user("u"),
            ChatMessage::assistant_with_tools("", vec![ToolCall::new("call_9", "exec", "{}")]),
            ChatMessage::tool_result("call_9", "exec", "out"),
        ],
    );
    assert_eq!(p.chat(req).await.unwrap().message.text(), "ok");
    let sent = &ep.requests()[0];
    assert_eq!(sent.path, "/v1/responses");
    assert_eq!(sent.body["instructions"], "sys");
    assert_eq!(sent.body["store"], false);
    assert_eq!(
        sent.body["input"][2],
        json!({"type": "function_call_output", "call_id": "call_9", "output": "out"})
    );
}
