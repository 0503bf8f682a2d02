//! The provider conformance suite: what every [`LlmProvider`] must do, run against a
//! [`ScriptedEndpoint`] speaking that provider's wire format. A new provider passes it by
//! handing over a constructor:
//!
//! ```ignore
//! picoclaw_testkit::conformance::provider_suite(|ep| Arc::new(MyProvider::new(ep.base_url()))).await;
//! ```

use crate::{Reply, ScriptedEndpoint};
use futures::StreamExt;
use picoclaw_api::{ChatMessage, FinishReason, ToolCall, ToolSpec};
use picoclaw_providers::{ChatRequest, ChatResponse, LlmProvider, ProviderError, StreamEvent};
use serde_json::json;
use std::sync::Arc;

fn request() -> ChatRequest {
    ChatRequest::new(
        "conformance-model",
        vec![
            ChatMessage::system("You are a test."),
            ChatMessage::user("list the files"),
            ChatMessage::assistant_with_tools(
                "",
                vec![ToolCall::new("call_0", "list_dir", r#"{"path":"."}"#)],
            ),
            ChatMessage::tool_result("call_0", "list_dir", "FILE: a.txt"),
            ChatMessage::user("and now?"),
        ],
    )
    .with_tools(vec![
        ToolSpec::new(
            "list_dir",
            "List a directory.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        ),
        ToolSpec::new(
            "read_file",
            "Read a file.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        ),
    ])
    .with_max_tokens(Some(256))
}

async fn stream(p: &dyn LlmProvider) -> (String, Result<ChatResponse, ProviderError>) {
    let mut s = match p.stream(request()).await {
        Ok(s) => s,
        Err(e) => return (String::new(), Err(e)),
    };
    let mut text = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::TextDelta(d)) => text.push_str(&d),
            Ok(StreamEvent::Completed(r)) => {
                assert!(s.next().await.is_none(), "nothing may follow Completed");
                return (text, Ok(r));
            }
            Ok(_) => {}
            Err(e) => return (text, Err(e)),
        }
    }
    (
        text,
        Err(ProviderError::response(
            "suite",
            "stream ended without Completed",
        )),
    )
}

fn args(call: &ToolCall) -> serde_json::Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|e| {
        panic!(
            "arguments of {} are not JSON ({e}): {}",
            call.name, call.arguments
        )
    })
}

/// Runs every check with a fresh endpoint per check; `make` builds the provider for it.
pub async fn provider_suite(make: impl Fn(&ScriptedEndpoint) -> Arc<dyn LlmProvider>) {
    // Plain answer, with usage.
    let ep = ScriptedEndpoint::start_with([Reply::text("plain answer").with_usage(20, 5)]).await;
    let p = make(&ep);
    let r = p.chat(request()).await.expect("plain chat");
    assert_eq!(r.message.text(), "plain answer");
    assert_eq!(r.finish_reason, FinishReason::Stop);
    let u = r.usage.expect("usage reported");
    assert_eq!((u.completion_tokens, u.total_tokens >= 25), (5, true));
    assert_eq!(ep.requests().len(), 1);

    // Streaming text arrives in pieces and completes with the whole answer.
    let ep = ScriptedEndpoint::start_with([Reply::text("streamed answer here")]).await;
    let p = make(&ep);
    let (text, r) = stream(p.as_ref()).await;
    assert_eq!(text, "streamed answer here");
    assert_eq!(
        r.expect("stream completes").message.text(),
        "streamed answer here"
    );

    // One tool call, plain and streamed.
    let ep = ScriptedEndpoint::start_with([
        Reply::tool_call("read_file", json!({"path": "a.txt"})),
        Reply::tool_call("read_file", json!({"path": "b.txt"})),
    ])
    .await;
    let p = make(&ep);
    let r = p.chat(request()).await.expect("tool call");
    assert_eq!(r.finish_reason, FinishReason::ToolCalls);
    let call = &r.message.tool_calls[0];
    assert_eq!(
        (call.name.as_str(), args(call)),
        ("read_file", json!({"path": "a.txt"}))
    );
    assert!(!call.id.is_empty(), "tool calls carry an id");
    let (_, r) = stream(p.as_ref()).await;
    let r = r.expect("streamed tool call");
    assert_eq!(args(&r.message.tool_calls[0]), json!({"path": "b.txt"}));

    // Parallel tool calls keep their order and their own arguments.
    let ep = ScriptedEndpoint::start_with([
        Reply::tool_calls(vec![
            ("read_file", json!({"path": "1"})),
            ("list_dir", json!({"path": "d"})),
        ]),
        Reply::tool_calls(vec![
            ("read_file", json!({"path": "1"})),
            ("list_dir", json!({"path": "d"})),
        ]),
    ])
    .await;
    let p = make(&ep);
    for streamed in [false, true] {
        let r = if streamed {
            stream(p.as_ref()).await.1
        } else {
            p.chat(request()).await
        }
        .expect("parallel calls");
        let calls = &r.message.tool_calls;
        assert_eq!(calls.len(), 2, "streamed: {streamed}");
        assert_eq!(calls[0].name, "read_file");
        assert_eq!(args(&calls[1]), json!({"path": "d"}));
        assert_ne!(calls[0].id, calls[1].id);
    }

    // Errors are classified.
    let ep = ScriptedEndpoint::start_with([
        Reply::rate_limited(3),
        Reply::error(500, "internal"),
        Reply::error(400, "bad request"),
        Reply::garbage("<html>not an API</html>"),
        Reply::truncated("half an ans"),
        Reply::truncated_tool_call("read_file", "{\"pa"),
    ])
    .await;
    let p = make(&ep);
    let e = p.chat(request()).await.expect_err("429");
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(3)));
    let e = p.chat(request()).await.expect_err("500");
    assert!(e.is_retryable(), "{e:?}");
    let e = p.chat(request()).await.expect_err("400");
    assert!(
        matches!(e, ProviderError::InvalidRequest { status: 400, .. }),
        "{e:?}"
    );
    let e = p.chat(request()).await.expect_err("garbage");
    assert!(matches!(e, ProviderError::Response { .. }), "{e:?}");
    let (_, r) = stream(p.as_ref()).await;
    assert!(
        matches!(r, Err(ProviderError::Response { .. })),
        "truncated stream: {r:?}"
    );

    // A wrong key is an authentication error that names where to fix it.
    let ep = ScriptedEndpoint::start_with([Reply::text("never")]).await;
    ep.require_api_key("the-right-key");
    let p = make(&ep);
    let e = p.chat(request()).await.expect_err("401");
    assert!(matches!(e, ProviderError::Auth { .. }), "{e:?}");
    assert!(!e.is_retryable());
}
