//! The OpenAI-compatible provider against a real HTTP server on loopback speaking the vendor's
//! documented shapes (picoclaw-testkit's ScriptedEndpoint).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use futures::StreamExt;
use picoclaw_api::{ChatMessage, FinishReason, ToolSpec};
use picoclaw_provider_openai::{
    ChatRequest, LlmProvider, OpenAiCompatConfig, OpenAiCompatible, ProviderError, StreamEvent,
};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "sk-test-abcdef0123456789";

fn provider(ep: &ScriptedEndpoint) -> OpenAiCompatible {
    OpenAiCompatible::new(
        OpenAiCompatConfig::new("openai", format!("{}/", ep.base_url()))
            .with_api_key(KEY)
            .with_key_hint("providers.openai.api_key or OPENAI_API_KEY"),
    )
    .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(
        "gpt-test",
        vec![ChatMessage::system("sys"), ChatMessage::user("hi")],
    )
    .with_tools(vec![ToolSpec::new(
        "read_file",
        "Read a file.",
        json!({"type": "object", "properties": {"path": {"type": "string"}}}),
    )])
}

async fn collect(
    p: &OpenAiCompatible,
) -> (
    String,
    Result<picoclaw_provider_openai::ChatResponse, ProviderError>,
) {
    let mut stream = match p.stream(request()).await {
        Ok(s) => s,
        Err(e) => return (String::new(), Err(e)),
    };
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::TextDelta(d)) => text.push_str(&d),
            Ok(StreamEvent::Completed(r)) => return (text, Ok(r)),
            Ok(_) => {}
            Err(e) => return (text, Err(e)),
        }
    }
    (
        text,
        Err(ProviderError::response(
            "test",
            "stream ended without Completed",
        )),
    )
}

#[tokio::test]
async fn plain_answer_with_usage_and_the_request_shape() {
    let ep = ScriptedEndpoint::start_with([Reply::text("Hello!").with_usage(12, 3)]).await;
    ep.require_api_key(KEY);
    let r = provider(&ep).chat(request()).await.unwrap();
    assert_eq!(r.message.text(), "Hello!");
    assert_eq!(r.finish_reason, FinishReason::Stop);
    assert_eq!(r.usage.unwrap().total_tokens, 15);
    let req = &ep.requests()[0];
    assert_eq!(
        req.path, "/v1/chat/completions",
        "trailing slash of api_base trimmed"
    );
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(req.body["model"], "gpt-test");
    assert_eq!(
        req.body["messages"][1],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(req.body["tools"][0]["function"]["name"], "read_file");
    assert!(req.body.get("stream").is_none());
}

#[tokio::test]
async fn tool_calls_round_trip() {
    let ep = ScriptedEndpoint::start_with([Reply::tool_calls(vec![
        ("read_file", json!({"path": "a.txt"})),
        ("list_dir", json!({})),
    ])])
    .await;
    let r = provider(&ep).chat(request()).await.unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    let calls = &r.message.tool_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "read_file");
    assert_eq!(calls[0].arguments, r#"{"path":"a.txt"}"#);
    assert_eq!(calls[1].id, "call_2");
}

#[tokio::test]
async fn streams_text_and_assembles_split_tool_calls() {
    let ep = ScriptedEndpoint::start_with([
        Reply::text("Hello streaming world").with_usage(7, 4),
        Reply::tool_call("exec", json!({"command": "echo hi", "timeout": 5})),
    ])
    .await;
    let p = provider(&ep);
    let (text, r) = collect(&p).await;
    let r = r.unwrap();
    assert_eq!(text, "Hello streaming world");
    assert_eq!(r.message.text(), "Hello streaming world");
    assert_eq!(r.usage.unwrap().total_tokens, 11);
    let body = &ep.requests()[0].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);

    let (text, r) = collect(&p).await;
    let r = r.unwrap();
    assert!(text.is_empty());
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(r.message.tool_calls[0].name, "exec");
    let args: serde_json::Value = serde_json::from_str(&r.message.tool_calls[0].arguments).unwrap();
    assert_eq!(args, json!({"command": "echo hi", "timeout": 5}));
}

#[tokio::test]
async fn wrong_key_names_the_setting_and_never_the_key() {
    let ep = ScriptedEndpoint::start_with([Reply::text("unreachable")]).await;
    ep.require_api_key("sk-the-right-one");
    let err = provider(&ep).chat(request()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Auth { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("providers.openai.api_key or OPENAI_API_KEY"),
        "{msg}"
    );
    assert!(
        !msg.contains(KEY) && !format!("{err:?}").contains(KEY),
        "{msg}"
    );
    assert!(!err.is_retryable());
    // The stream path reports the same.
    let (_, r) = collect(&provider(&ep)).await;
    assert!(matches!(r, Err(ProviderError::Auth { .. })));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let ep = ScriptedEndpoint::start_with([
        Reply::rate_limited(7),
        Reply::error(503, "overloaded, try later"),
        Reply::error(400, "This model's maximum context length is 8192 tokens"),
        Reply::error(404, "The model `nope` does not exist"),
    ])
    .await;
    let p = provider(&ep);
    let err = p.chat(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.is_retryable());
    let err = p.chat(request()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable() && err.to_string().contains("overloaded"));
    let err = p.chat(request()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::ContextLength { .. }),
        "{err:?}"
    );
    let err = p.chat(request()).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidRequest { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"));
}

#[tokio::test]
async fn garbage_and_truncation_are_response_errors() {
    let ep = ScriptedEndpoint::start_with([
        Reply::garbage("<html>502 proxy error</html>"),
        Reply::truncated("The answer is"),
        Reply::garbage("<html>502 proxy error</html>"),
        Reply::truncated("The answer is"),
    ])
    .await;
    let p = provider(&ep);
    let err = p.chat(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Response { .. }), "{err:?}");
    assert!(err.to_string().contains("proxy error"), "{err}");
    let err = p.chat(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Response { .. }), "{err:?}");

    let (_, r) = collect(&p).await;
    let err = r.unwrap_err();
    assert!(err.to_string().contains("not JSON"), "{err}");
    let (text, r) = collect(&p).await;
    assert_eq!(text, "The answer is", "deltas before the cut still arrive");
    let err = r.unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = OpenAiCompatible::new(
        OpenAiCompatConfig::new("ollama", format!("http://127.0.0.1:{port}/v1"))
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let err = p.chat(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn slow_servers_time_out() {
    let ep = ScriptedEndpoint::start_with([
        Reply::text("late").delayed(Duration::from_secs(3)),
        Reply::text("late").delayed(Duration::from_secs(3)),
    ])
    .await;
    let p = OpenAiCompatible::new(
        OpenAiCompatConfig::new("openai", ep.base_url())
            .with_request_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let err = p.chat(request()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    let (_, r) = collect(&p).await;
    assert!(matches!(r, Err(ProviderError::Timeout { .. })), "{r:?}");
}

#[test]
fn bad_configuration_is_reported_up_front() {
    let err =
        OpenAiCompatible::new(OpenAiCompatConfig::new("openai", "api.openai.com/v1")).unwrap_err();
    assert!(matches!(err, ProviderError::NotConfigured(_)));
    assert!(err.to_string().contains("api_base"), "{err}");
    let err = OpenAiCompatible::new(
        OpenAiCompatConfig::new("openai", "https://x.test/v1").with_proxy(Some("::nope::".into())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("proxy"), "{err}");
    let p = OpenAiCompatible::new(
        OpenAiCompatConfig::new("openai", "https://x.test/v1").with_api_key(KEY),
    )
    .unwrap();
    assert!(!format!("{p:?}").contains(KEY));
}

/// Against a real vendor: `OPENAI_API_KEY=... cargo test -p picoclaw-providers -- --ignored live`
/// (`OPENAI_BASE_URL` and `OPENAI_MODEL` honoured). Never run in CI.
#[tokio::test]
#[ignore = "needs a real API key and the internet"]
async fn live_openai_compatible() {
    let key = std::env::var("OPENAI_API_KEY")
        .expect("set OPENAI_API_KEY (and optionally OPENAI_BASE_URL, OPENAI_MODEL) to run this");
    let base =
        std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".into());
    let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
    let p =
        OpenAiCompatible::new(OpenAiCompatConfig::new("openai", base).with_api_key(key)).unwrap();
    let req = ChatRequest::new(
        model,
        vec![ChatMessage::user("Reply with the single word: pong")],
    );
    let r = p.chat(req.clone()).await.unwrap();
    assert!(
        r.message.text().to_lowercase().contains("pong"),
        "{}",
        r.message.text()
    );
    let mut stream = p.stream(req).await.unwrap();
    let mut done = false;
    while let Some(ev) = stream.next().await {
        if let StreamEvent::Completed(r) = ev.unwrap() {
            assert!(r.message.text().to_lowercase().contains("pong"));
            done = true;
        }
    }
    assert!(done);
}

#[tokio::test]
async fn tool_calls_written_as_text_by_local_models_become_real_calls() {
    let hermes = r#"<tool_call>
{"name": "read_file", "arguments": {"path": "notes.txt"}}
</tool_call>"#;
    let ep = ScriptedEndpoint::start_with([
        Reply::text(hermes),
        Reply::text(hermes),
        Reply::text("[TOOL_CALLS] [{\"name\": \"read_file\", \"arguments\": {\"path\": \"b\"}}]"),
        Reply::text("{\"name\": \"Ada\", \"likes\": \"tea\"}"),
    ])
    .await;
    let p = provider(&ep);
    let r = p.chat(request()).await.unwrap();
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    assert_eq!(r.message.tool_calls[0].name, "read_file");
    assert_eq!(r.message.tool_calls[0].arguments, r#"{"path":"notes.txt"}"#);
    assert_eq!(r.message.text(), "");

    // Streaming: the markup is never shown to the user as text.
    let (text, r) = collect(&p).await;
    assert_eq!(text, "", "held back, not streamed");
    assert_eq!(r.unwrap().message.tool_calls[0].name, "read_file");
    let (_, r) = collect(&p).await;
    assert_eq!(
        r.unwrap().message.tool_calls[0].arguments,
        r#"{"path":"b"}"#
    );

    // JSON that names no offered tool is an answer, streamed as usual.
    let (text, r) = collect(&p).await;
    let r = r.unwrap();
    assert!(r.message.tool_calls.is_empty());
    assert_eq!(text, "{\"name\": \"Ada\", \"likes\": \"tea\"}");
}

#[tokio::test]
async fn passes_the_provider_conformance_suite() {
    picoclaw_testkit::conformance::wire_suite(
        std::sync::Arc::new(picoclaw_testkit::dialect::ChatCompletionsDialect),
        |ep| {
            std::sync::Arc::new(
                OpenAiCompatible::new(
                    OpenAiCompatConfig::new("openai", ep.base_url()).with_api_key(KEY),
                )
                .unwrap(),
            )
        },
    )
    .await;
}
