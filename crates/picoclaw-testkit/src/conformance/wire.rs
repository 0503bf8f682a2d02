//! The HTTP wire suite: a provider against a [`ScriptedEndpoint`] speaking its [`Dialect`].

use super::contract::{Contract, stream_text};
use crate::dialect::Dialect;
use crate::{Reply, ScriptedEndpoint};
use picoclaw_api::{
    ChatMessage, ChatRequest, FinishReason, LlmProvider, ProviderError, ToolCall, ToolSpec,
};
use serde_json::json;
use std::sync::Arc;

const MODEL: &str = "conformance-model";

fn request() -> ChatRequest {
    ChatRequest::new(
        MODEL,
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

fn args(call: &ToolCall) -> serde_json::Value {
    serde_json::from_str(&call.arguments).unwrap_or_else(|e| {
        panic!(
            "arguments of {} are not JSON ({e}): {}",
            call.name, call.arguments
        )
    })
}

/// Runs every wire check, each against a fresh endpoint speaking `dialect` only; `make` builds
/// the provider for an endpoint (from its [`ScriptedEndpoint::base_url`], with an API key the
/// endpoint does not require unless a check says so). Panics with the dialect's name and what
/// broke.
pub async fn wire_suite(
    dialect: Arc<dyn Dialect>,
    make: impl Fn(&ScriptedEndpoint) -> Arc<dyn LlmProvider>,
) {
    let d = dialect.name().to_owned();
    let endpoint = |replies: Vec<Reply>| ScriptedEndpoint::speaking(Arc::clone(&dialect), replies);

    // Plain answer, with usage; the model id reaches the wire; a plain call does not stream.
    let ep = endpoint(vec![Reply::text("plain answer").with_usage(20, 5)]);
    let p = make(&ep);
    let r = p.chat(request()).await.expect("plain chat");
    assert_eq!(r.message.text(), "plain answer", "{d}: plain text");
    assert_eq!(r.finish_reason, FinishReason::Stop, "{d}: finish reason");
    let u = r.usage.expect("usage reported");
    assert_eq!(
        (u.completion_tokens, u.total_tokens >= 25),
        (5, true),
        "{d}: usage"
    );
    let sent = ep.requests();
    assert_eq!(sent.len(), 1, "{d}: one request for one chat");
    assert!(
        dialect.serves(&sent[0]),
        "{d}: chat went to a path the dialect does not serve: {} {}",
        sent[0].method,
        sent[0].path
    );
    assert_eq!(
        dialect.model(&sent[0]).as_deref(),
        Some(MODEL),
        "{d}: the model id is passed through to the wire"
    );
    assert!(
        !dialect.is_streaming(&sent[0]),
        "{d}: chat asked for a stream"
    );

    // Streaming text arrives in pieces and completes with the whole answer.
    let ep = endpoint(vec![Reply::text("streamed answer here")]);
    let p = make(&ep);
    let (text, r) = stream_text(p.as_ref(), request()).await;
    assert_eq!(text, "streamed answer here", "{d}: streamed deltas");
    assert_eq!(
        r.expect("stream completes").message.text(),
        "streamed answer here",
        "{d}: streamed answer"
    );
    let sent = ep.requests();
    assert!(
        dialect.is_streaming(&sent[0]),
        "{d}: stream() did not ask for a stream"
    );
    assert_eq!(
        dialect.model(&sent[0]).as_deref(),
        Some(MODEL),
        "{d}: the model id is passed through to the wire when streaming"
    );

    // One tool call, plain and streamed.
    let ep = endpoint(vec![
        Reply::tool_call("read_file", json!({"path": "a.txt"})),
        Reply::tool_call("read_file", json!({"path": "b.txt"})),
    ]);
    let p = make(&ep);
    let r = p.chat(request()).await.expect("tool call");
    assert_eq!(r.finish_reason, FinishReason::ToolCalls, "{d}: tool call");
    let call = &r.message.tool_calls[0];
    assert_eq!(
        (call.name.as_str(), args(call)),
        ("read_file", json!({"path": "a.txt"})),
        "{d}: tool call"
    );
    assert!(!call.id.is_empty(), "{d}: tool calls carry an id");
    let (_, r) = stream_text(p.as_ref(), request()).await;
    let r = r.expect("streamed tool call");
    assert_eq!(
        args(&r.message.tool_calls[0]),
        json!({"path": "b.txt"}),
        "{d}: streamed tool call"
    );

    // Parallel tool calls keep their order and their own arguments.
    let parallel = || {
        Reply::tool_calls(vec![
            ("read_file", json!({"path": "1"})),
            ("list_dir", json!({"path": "d"})),
        ])
    };
    let ep = endpoint(vec![parallel(), parallel()]);
    let p = make(&ep);
    for streamed in [false, true] {
        let r = if streamed {
            stream_text(p.as_ref(), request()).await.1
        } else {
            p.chat(request()).await
        }
        .expect("parallel calls");
        let calls = &r.message.tool_calls;
        assert_eq!(calls.len(), 2, "{d}: parallel calls, streamed: {streamed}");
        assert_eq!(
            calls[0].name, "read_file",
            "{d}: order, streamed: {streamed}"
        );
        assert_eq!(
            args(&calls[1]),
            json!({"path": "d"}),
            "{d}: arguments, streamed: {streamed}"
        );
        assert_ne!(calls[0].id, calls[1].id, "{d}: distinct ids");
    }

    // Errors are classified.
    let ep = endpoint(vec![
        Reply::rate_limited(3),
        Reply::error(500, "internal"),
        Reply::error(400, "bad request"),
        Reply::garbage("<html>not an API</html>"),
        Reply::truncated("half an ans"),
        Reply::truncated_tool_call("read_file", "{\"pa"),
        Reply::garbage("<html>not an API</html>"),
    ]);
    let p = make(&ep);
    let e = p.chat(request()).await.expect_err("429");
    assert!(
        matches!(e, ProviderError::RateLimited { .. }),
        "{d}: 429: {e:?}"
    );
    assert_eq!(
        e.retry_after(),
        Some(std::time::Duration::from_secs(3)),
        "{d}: Retry-After"
    );
    let e = p.chat(request()).await.expect_err("500");
    assert!(e.is_retryable(), "{d}: 500 is retryable: {e:?}");
    let e = p.chat(request()).await.expect_err("400");
    assert!(
        matches!(e, ProviderError::InvalidRequest { status: 400, .. }),
        "{d}: 400: {e:?}"
    );
    assert!(!e.is_retryable(), "{d}: 400 is not retryable");
    let e = p.chat(request()).await.expect_err("garbage");
    assert!(
        matches!(e, ProviderError::Response { .. }),
        "{d}: garbage: {e:?}"
    );
    let (_, r) = stream_text(p.as_ref(), request()).await;
    assert!(
        matches!(r, Err(ProviderError::Response { .. })),
        "{d}: truncated stream: {r:?}"
    );
    let (_, r) = stream_text(p.as_ref(), request()).await;
    assert!(
        matches!(r, Err(ProviderError::Response { .. })),
        "{d}: stream cut inside a tool call: {r:?}"
    );
    let (_, r) = stream_text(p.as_ref(), request()).await;
    assert!(
        matches!(r, Err(ProviderError::Response { .. })),
        "{d}: garbage stream: {r:?}"
    );

    // A wrong key is an authentication error that names where to fix it.
    let ep = endpoint(vec![Reply::text("never")]);
    ep.require_api_key("the-right-key");
    let p = make(&ep);
    let e = p.chat(request()).await.expect_err("401");
    assert!(matches!(e, ProviderError::Auth { .. }), "{d}: 401: {e:?}");
    assert!(!e.is_retryable(), "{d}: a wrong key is not retryable");

    // The transport-agnostic contract, over this wire.
    let ep = endpoint((0..12).map(|_| Reply::text("the same answer")).collect());
    let p = make(&ep);
    Contract::new()
        .model(MODEL)
        .expect_answer(|_| "the same answer".to_owned())
        .min_deltas(2)
        .run(p.as_ref())
        .await;
}
