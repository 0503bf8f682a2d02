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

#[tokio::test]
async fn reasoning_models_get_the_effort_and_no_temperature() {
    let ep = ScriptedEndpoint::start_with([Reply::text("ok"), Reply::text("ok")]).await;
    let p = OpenAiResponses::new(
        OpenAiCompatConfig::new("codex", ep.base_url())
            .with_reasoning_effort(Some("medium".into())),
    )
    .unwrap();
    let req = |model: &str| {
        ChatRequest::new(model, vec![ChatMessage::user("u")])
            .with_max_tokens(Some(100))
            .with_temperature(Some(0.7))
    };
    p.chat(req("gpt-5-codex")).await.unwrap();
    p.chat(req("gpt-4.1")).await.unwrap();
    let sent = ep.requests();
    assert_eq!(sent[0].body["reasoning"], json!({"effort": "medium"}));
    assert!(
        sent[0].body.get("temperature").is_none(),
        "{}",
        sent[0].body
    );
    assert_eq!(sent[0].body["max_output_tokens"], 100);
    assert_eq!(sent[1].body["temperature"], 0.7, "not a reasoning model");
}
