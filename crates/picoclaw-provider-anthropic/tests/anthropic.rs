//! Claude's Messages API over real HTTP against the scripted endpoint's Anthropic dialect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use futures::StreamExt;
use picoclaw_api::{ChatMessage, FinishReason, ToolSpec};
use picoclaw_provider_anthropic::{
    Anthropic, AnthropicConfig, ChatRequest, ChatResponse, LlmProvider, ProviderError, StreamEvent,
};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;

const KEY: &str = "sk-ant-test-0123456789";

fn provider(ep: &ScriptedEndpoint) -> Anthropic {
    // The endpoint's base ends in /v1, as users often paste it; both forms work.
    Anthropic::new(AnthropicConfig::new(ep.base_url()).with_api_key(KEY)).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "claude-sonnet-4-5",
        vec![
            ChatMessage::system("You are terse."),
            ChatMessage::user("hi"),
        ],
    )
    .with_tools(vec![ToolSpec::new(
        "exec",
        "Run a command.",
        json!({"type": "object", "properties": {"command": {"type": "string"}}}),
    )])
}

async fn collect(p: &Anthropic) -> (String, Result<ChatResponse, ProviderError>) {
    let mut s = match p.stream(request()).await {
        Ok(s) => s,
        Err(e) => return (String::new(), Err(e)),
    };
    let mut text = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::TextDelta(d)) => text.push_str(&d),
            Ok(StreamEvent::Completed(r)) => return (text, Ok(r)),
            Ok(_) => {}
            Err(e) => return (text, Err(e)),
        }
    }
    (text, Err(ProviderError::response("test", "no Completed")))
}

#[tokio::test]
async fn plain_and_tool_use_with_the_documented_headers() {
    let ep = ScriptedEndpoint::start_with([
        Reply::text("Hello.").with_usage(12, 2),
        Reply::tool_call("exec", json!({"command": "ls"})),
    ])
    .await;
    ep.require_api_key(KEY);
    let p = provider(&ep);
    let r = p.chat(request()).await.unwrap();
    assert_eq!(r.message.text(), "Hello.");
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert_eq!(r.usage.unwrap().total_tokens, 14);
    let sent = &ep.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert!(sent.header("authorization").is_none());
    assert_eq!(sent.body["system"][0]["text"], "You are terse.");
    assert_eq!(sent.body["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(sent.body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(sent.body["max_tokens"], 4096);

    let r = p.chat(request()).await.unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(r.message.tool_calls[0].name, "exec");
    let args: serde_json::Value = serde_json::from_str(&r.message.tool_calls[0].arguments).unwrap();
    assert_eq!(args, json!({"command": "ls"}));
}

#[tokio::test]
async fn streams_text_and_tool_input_deltas() {
    let ep = ScriptedEndpoint::start_with([
        Reply::text("Streaming from Claude").with_usage(5, 3),
        Reply::tool_calls(vec![
            ("exec", json!({"command": "uname -a"})),
            ("exec", json!({"command": "pwd"})),
        ]),
    ])
    .await;
    let p = provider(&ep);
    let (text, r) = collect(&p).await;
    assert_eq!(text, "Streaming from Claude");
    assert_eq!(r.unwrap().usage.unwrap().completion_tokens, 3);
    assert_eq!(ep.requests()[0].body["stream"], true);
    let (_, r) = collect(&p).await;
    let calls = r.unwrap().message.tool_calls;
    assert_eq!(calls.len(), 2, "parallel tool use");
    assert_eq!(calls[1].arguments, r#"{"command":"pwd"}"#);
}

#[tokio::test]
async fn errors_are_classified() {
    let ep = ScriptedEndpoint::start_with([
        Reply::rate_limited(2),
        Reply::error(529, "Overloaded"),
        Reply::error(400, "prompt is too long: 250000 tokens > 200000 maximum"),
        Reply::truncated("cut off mid"),
        Reply::garbage("<html>gateway</html>"),
    ])
    .await;
    let p = provider(&ep);
    let e = p.chat(request()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(2)));
    let e = p.chat(request()).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Server { status: 529, .. }) && e.is_retryable(),
        "{e:?}"
    );
    let e = p.chat(request()).await.unwrap_err();
    assert!(matches!(e, ProviderError::ContextLength { .. }), "{e:?}");
    let (text, r) = collect(&p).await;
    assert_eq!(text, "cut off mid");
    assert!(r.unwrap_err().to_string().contains("truncated"));
    let (_, r) = collect(&p).await;
    assert!(matches!(r, Err(ProviderError::Response { .. })));

    let ep = ScriptedEndpoint::start_with([Reply::text("never")]).await;
    ep.require_api_key("sk-ant-right");
    let e = provider(&ep).chat(request()).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Auth { status: 401, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("ANTHROPIC_API_KEY") && !e.to_string().contains(KEY),
        "{e}"
    );
}

#[tokio::test]
async fn passes_the_provider_conformance_suite() {
    picoclaw_testkit::conformance::wire_suite(
        std::sync::Arc::new(picoclaw_testkit::dialect::AnthropicDialect),
        |ep| {
            std::sync::Arc::new(
                Anthropic::new(AnthropicConfig::new(ep.base_url()).with_api_key(KEY)).unwrap(),
            )
        },
    )
    .await;
}
