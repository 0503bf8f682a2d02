//! OpenAI's reasoning models (o1, o3, o4, gpt-5 and later) refuse `max_tokens` and a
//! temperature other than 1: requests for them go right the first time by the model's name or
//! `reasoning` in config, and a refusal of a model nobody said reasons is mended, resent (once
//! per refused parameter) and remembered. Against a loopback endpoint answering exactly as OpenAI does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use futures::StreamExt;
use picoclaw_api::ChatMessage;
use picoclaw_provider_openai::{
    ChatRequest, LlmProvider, OpenAiCompatConfig, OpenAiCompatible, ProviderError, StreamEvent,
    is_reasoning_model,
};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;

fn max_tokens_refusal() -> Reply {
    Reply::raw_json(
        400,
        json!({"error": {
            "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}),
    )
    .when_request_contains("\"max_tokens\"")
}

fn temperature_refusal() -> Reply {
    Reply::raw_json(
        400,
        json!({"error": {
            "message": "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.",
            "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}),
    )
    .when_request_contains("\"temperature\":0.7")
}

/// A server refusing as OpenAI does, with `answers` normal answers for acceptable requests
/// (and as many refusals of each kind).
async fn refusing(answers: usize) -> ScriptedEndpoint {
    let mut script = Vec::new();
    for _ in 0..answers {
        script.push(max_tokens_refusal());
        script.push(temperature_refusal());
    }
    for i in 0..answers {
        script.push(Reply::text(format!("answer {i}")));
    }
    ScriptedEndpoint::start_with(script).await
}

fn request(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![ChatMessage::user("hi")])
        .with_max_tokens(Some(500))
        .with_temperature(Some(0.7))
}

fn openai(
    ep: &ScriptedEndpoint,
    cfg: impl FnOnce(OpenAiCompatConfig) -> OpenAiCompatConfig,
) -> OpenAiCompatible {
    OpenAiCompatible::new(cfg(
        OpenAiCompatConfig::new("openai", ep.base_url()).with_api_key("sk-test")
    ))
    .unwrap()
}

fn azure(ep: &ScriptedEndpoint, reasoning: Option<bool>) -> OpenAiCompatible {
    OpenAiCompatible::azure(
        OpenAiCompatConfig::new("azure", ep.base_url().trim_end_matches("/v1"))
            .with_api_key("azure-key")
            .with_reasoning(reasoning),
        "my-deployment",
        "2024-10-21",
        None,
    )
    .unwrap()
}

fn assert_reasoning_shape(body: &serde_json::Value) {
    assert_eq!(body["max_completion_tokens"], 500, "{body}");
    assert!(body.get("max_tokens").is_none(), "{body}");
    assert!(body.get("temperature").is_none(), "{body}");
    assert!(body.get("top_p").is_none(), "{body}");
}

#[test]
fn reasoning_families_by_name() {
    for m in [
        "o1",
        "o1-mini",
        "o3",
        "o3-mini",
        "o3-pro",
        "o4-mini",
        "o4-mini-2025-04-16",
        "gpt-5",
        "gpt-5-mini",
        "gpt-5.2-chat",
        "gpt-6",
        "openai/o3-mini",
        "GPT-5",
    ] {
        assert!(is_reasoning_model(m), "{m}");
    }
    for m in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-3.5-turbo",
        "omni",
        "o",
        "o0",
        "ollama-llama3",
        "my-deployment",
        "deepseek-chat",
        "gpt-50x",
    ] {
        assert!(!is_reasoning_model(m), "{m}");
    }
}

#[tokio::test]
async fn reasoning_models_are_right_the_first_time() {
    for model in ["o3-mini", "gpt-5"] {
        let ep = refusing(1).await;
        let p = openai(&ep, |c| c);
        assert_eq!(
            p.chat(request(model)).await.unwrap().message.text(),
            "answer 0"
        );
        let requests = ep.requests();
        assert_eq!(requests.len(), 1, "{model}: one request");
        assert_reasoning_shape(&requests[0].body);
    }
}

#[tokio::test]
async fn other_models_keep_max_tokens_and_temperature() {
    let ep = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    let p = openai(&ep, |c| c);
    p.chat(request("gpt-4o")).await.unwrap();
    let body = &ep.requests()[0].body;
    assert_eq!(body["max_tokens"], 500);
    assert_eq!(body["temperature"], 0.7);
    assert!(body.get("reasoning_effort").is_none());
}

#[tokio::test]
async fn reasoning_effort_and_an_explicit_temperature_are_sent() {
    let ep = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    let p = openai(&ep, |c| {
        c.with_reasoning_effort(Some("high".into()))
            .with_temperature(Some(1.0))
    });
    p.chat(request("o3")).await.unwrap();
    let body = &ep.requests()[0].body;
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["temperature"], 1.0, "the model's own temperature goes");
    assert_eq!(body["max_completion_tokens"], 500);
}

#[tokio::test]
async fn an_azure_deployment_marked_reasoning_is_right_the_first_time() {
    let ep = refusing(1).await;
    let p = azure(&ep, Some(true));
    // The request's model says nothing: only the config does.
    let r = p.chat(request("my-deployment")).await.unwrap();
    assert_eq!(r.message.text(), "answer 0");
    let requests = ep.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_reasoning_shape(&requests[0].body);
}

#[tokio::test]
async fn an_unmarked_deployment_is_mended_once_and_remembers() {
    let ep = refusing(2).await;
    let p = azure(&ep, None);
    let r = p.chat(request("my-deployment")).await.unwrap();
    assert_eq!(r.message.text(), "answer 0");
    let requests = ep.requests();
    assert_eq!(requests.len(), 2, "refused, then mended");
    assert_eq!(requests[0].body["temperature"], 0.7);
    assert!(requests[1].body.get("temperature").is_none());
    assert_eq!(requests[1].body["max_completion_tokens"], 500);

    // The second call goes right the first time.
    let r = p.chat(request("my-deployment")).await.unwrap();
    assert_eq!(r.message.text(), "answer 1");
    let requests = ep.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[2].body.get("temperature").is_none());
}

#[tokio::test]
async fn max_tokens_refusal_is_mended_on_chat_completions() {
    // A server that refuses max_tokens only (its temperature is fine).
    let ep = ScriptedEndpoint::start_with([
        max_tokens_refusal(),
        Reply::text("first"),
        Reply::text("second"),
    ])
    .await;
    let p = openai(&ep, |c| c);
    assert_eq!(
        p.chat(request("custom-model"))
            .await
            .unwrap()
            .message
            .text(),
        "first"
    );
    assert_eq!(
        p.chat(request("custom-model"))
            .await
            .unwrap()
            .message
            .text(),
        "second"
    );
    let requests = ep.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].body["max_tokens"], 500);
    for r in &requests[1..] {
        assert_eq!(r.body["max_completion_tokens"], 500);
        assert!(r.body.get("max_tokens").is_none());
        assert_eq!(
            r.body["temperature"], 0.7,
            "only the refused parameter changes"
        );
    }
}

#[tokio::test]
async fn streaming_is_mended_too() {
    let ep = ScriptedEndpoint::start_with([temperature_refusal(), Reply::text("streamed")]).await;
    let p = openai(&ep, |c| c);
    let mut s = p.stream(request("custom-model")).await.unwrap();
    let mut text = String::new();
    while let Some(ev) = s.next().await {
        match ev.unwrap() {
            StreamEvent::TextDelta(d) => text.push_str(&d),
            StreamEvent::Completed(_) => break,
            _ => {}
        }
    }
    assert_eq!(text, "streamed");
    let requests = ep.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].body["stream"], true);
    assert!(requests[1].body.get("temperature").is_none());
}

#[tokio::test]
async fn another_400_is_not_retried() {
    let ep = ScriptedEndpoint::start_with([
        Reply::raw_json(
            400,
            json!({"error": {"message": "Invalid 'messages[0].content'.",
                "type": "invalid_request_error", "param": "messages", "code": "invalid_value"}}),
        ),
        Reply::text("never"),
    ])
    .await;
    let p = openai(&ep, |c| c);
    let err = p.chat(request("custom-model")).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidRequest { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("messages[0].content"), "{err}");
    assert_eq!(ep.requests().len(), 1);
}

#[tokio::test]
async fn a_model_refusing_both_is_mended_twice_in_one_call_then_remembered() {
    // OpenAI names one refused parameter per answer: the temperature, then max_tokens.
    let ep = ScriptedEndpoint::start_with([
        temperature_refusal(),
        Reply::raw_json(
            400,
            json!({"error": {"message": "Unsupported parameter: 'max_tokens'",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}),
        ),
        Reply::text("first"),
        Reply::text("second"),
    ])
    .await;
    let p = openai(&ep, |c| c);
    let r = p.chat(request("custom-model")).await.unwrap();
    assert_eq!(r.message.text(), "first");
    assert_eq!(
        ep.requests().len(),
        3,
        "two resends, one per refused parameter"
    );
    let r = p.chat(request("custom-model")).await.unwrap();
    assert_eq!(r.message.text(), "second");
    let requests = ep.requests();
    assert_eq!(requests.len(), 4, "both mends remembered");
    assert!(requests[3].body.get("temperature").is_none());
    assert!(requests[3].body.get("max_tokens").is_none());
    assert_eq!(requests[3].body["max_completion_tokens"], 500);
}

#[tokio::test]
async fn a_refusal_the_mend_does_not_fix_is_not_retried_again() {
    // A server that still refuses the temperature once none is sent: one resend, then the error.
    let refusal = || {
        Reply::raw_json(
            400,
            json!({"error": {"message": "Unsupported value: 'temperature'",
                "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}}),
        )
    };
    let ep = ScriptedEndpoint::start_with([refusal(), refusal(), Reply::text("never")]).await;
    let p = openai(&ep, |c| c);
    let err = p.chat(request("custom-model")).await.unwrap_err();
    assert!(err.to_string().contains("temperature"), "{err}");
    assert_eq!(ep.requests().len(), 2, "only one resend");
}
