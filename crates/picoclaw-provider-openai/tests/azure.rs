//! Azure OpenAI: the deployment URL with api-version, `max_completion_tokens`, `api-key` or Entra ID
//! bearer tokens, and Azure's content-filter errors, against the loopback endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::ChatMessage;
use picoclaw_api::{StaticToken, TokenSource};
use picoclaw_provider_openai::{
    ChatRequest, LlmProvider, OpenAiCompatConfig, OpenAiCompatible, ProviderError,
};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use std::sync::Arc;

fn endpoint_base(ep: &ScriptedEndpoint) -> String {
    // The scripted endpoint answers any path; Azure's live under /openai/deployments/...
    ep.base_url().trim_end_matches("/v1").to_owned()
}

fn req() -> ChatRequest {
    ChatRequest::new("gpt-5.2-chat", vec![ChatMessage::user("hi")]).with_max_tokens(Some(321))
}

#[tokio::test]
async fn api_key_requests_use_the_deployment_url_and_max_completion_tokens() {
    let ep = ScriptedEndpoint::start_with([Reply::text("from azure")]).await;
    ep.require_api_key("azure-key-123");
    let p = OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", endpoint_base(&ep)).with_api_key("azure-key-123"),
        "my-deployment",
        "2024-10-21",
        None,
    )
    .unwrap();
    assert_eq!(p.chat(req()).await.unwrap().message.text(), "from azure");
    let r = &ep.requests()[0];
    assert_eq!(r.path, "/openai/deployments/my-deployment/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key"), Some("azure-key-123"));
    assert!(r.header("authorization").is_none());
    assert_eq!(r.body["max_completion_tokens"], 321);
    assert!(r.body.get("max_tokens").is_none());
}

#[tokio::test]
async fn entra_id_tokens_are_sent_as_bearer() {
    let ep = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    ep.require_api_key("eyJ-entra-token");
    let tokens: Arc<dyn TokenSource> = Arc::new(StaticToken::new("eyJ-entra-token"));
    let p = OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", endpoint_base(&ep)),
        "dep",
        "2024-10-21",
        Some(tokens),
    )
    .unwrap();
    assert_eq!(p.chat(req()).await.unwrap().message.text(), "ok");
    assert_eq!(
        ep.requests()[0].header("authorization"),
        Some("Bearer eyJ-entra-token")
    );
}

#[tokio::test]
async fn content_filter_and_configuration_errors() {
    // Azure's documented content-filter error shape.
    let ep = ScriptedEndpoint::start_with([Reply::raw_json(
        400,
        serde_json::json!({"error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
            "type": null, "param": "prompt", "code": "content_filter", "status": 400,
            "innererror": {"code": "ResponsibleAIPolicyViolation",
                           "content_filter_result": {"hate": {"filtered": true, "severity": "high"}}}}}),
    )])
    .await;
    let p = OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", endpoint_base(&ep)).with_api_key("k"),
        "dep",
        "2024-10-21",
        None,
    )
    .unwrap();
    let e = p.chat(req()).await.unwrap_err();
    assert!(matches!(e, ProviderError::ContentFiltered { .. }), "{e:?}");
    assert!(
        e.to_string().contains("content filter") && !e.is_retryable(),
        "{e}"
    );

    let e = OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", "https://x.openai.azure.com"),
        "",
        "v",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("AZURE_OPENAI_DEPLOYMENT"), "{e}");
    let e = OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", "https://x.openai.azure.com"),
        "d",
        "v",
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("neither an API key"), "{e}");
}

#[tokio::test]
async fn passes_the_provider_conformance_suite() {
    picoclaw_testkit::conformance::wire_suite(
        std::sync::Arc::new(picoclaw_testkit::dialect::ChatCompletionsDialect),
        |ep| {
            Arc::new(
                OpenAiCompatible::azure(
                    OpenAiCompatConfig::new("azure", endpoint_base(ep)).with_api_key("azure-k"),
                    "dep",
                    "2024-10-21",
                    None,
                )
                .unwrap(),
            )
        },
    )
    .await;
}
