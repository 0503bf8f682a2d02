//! Gemini's native generateContent API over real HTTP against the scripted endpoint's Gemini
//! dialect.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::ChatMessage;
use picoclaw_provider_gemini::{ChatRequest, Gemini, GeminiConfig, LlmProvider, ProviderError};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::sync::Arc;

const KEY: &str = "AIza-test-0123456789";

fn base(ep: &ScriptedEndpoint) -> String {
    // The endpoint serves every path; the native API sits under /v1beta.
    ep.base_url().replace("/v1", "/v1beta")
}

#[tokio::test]
async fn passes_the_provider_conformance_suite() {
    picoclaw_testkit::conformance::wire_suite(
        std::sync::Arc::new(picoclaw_testkit::dialect::GeminiDialect),
        |ep| Arc::new(Gemini::new(GeminiConfig::new(base(ep)).with_api_key(KEY)).unwrap()),
    )
    .await;
}

#[tokio::test]
async fn sends_the_documented_request() {
    let ep = ScriptedEndpoint::start_with([Reply::text("hi"), Reply::text("streamed")]).await;
    ep.require_api_key(KEY);
    let p = Gemini::new(GeminiConfig::new(base(&ep)).with_api_key(KEY)).unwrap();
    let req = ChatRequest::new(
        "gemini-2.5-flash",
        vec![ChatMessage::system("s"), ChatMessage::user("u")],
    );
    assert_eq!(p.chat(req.clone()).await.unwrap().message.text(), "hi");
    let _ = futures::StreamExt::collect::<Vec<_>>(p.stream(req).await.unwrap()).await;
    let reqs = ep.requests();
    assert_eq!(
        reqs[0].path,
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        reqs[1].path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(reqs[0].header("x-goog-api-key"), Some(KEY));
    assert_eq!(
        reqs[0].body["systemInstruction"],
        json!({"parts": [{"text": "s"}]})
    );
    assert_eq!(
        reqs[0].body["contents"],
        json!([{"role": "user", "parts": [{"text": "u"}]}])
    );
}

#[tokio::test]
async fn an_invalid_key_is_an_auth_error_even_as_a_400() {
    let ep = ScriptedEndpoint::start_with([Reply::text("never")]).await;
    ep.require_api_key("AIza-right");
    let p = Gemini::new(GeminiConfig::new(base(&ep)).with_api_key(KEY)).unwrap();
    let e = p
        .chat(ChatRequest::new(
            "gemini-2.5-flash",
            vec![ChatMessage::user("u")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProviderError::Auth { status: 400, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
}
