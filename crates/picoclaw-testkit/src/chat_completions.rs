//! The scripted endpoint's OpenAI Chat Completions dialect: `POST …/chat/completions` answered
//! with a `chat.completion` (or `chat.completion.chunk` SSE events ending in `[DONE]`, tool-call
//! arguments in indexed deltas), OpenAI's `{"error": {...}}` shape, `GET …/models`; Azure
//! OpenAI's deployment URLs take an `api-key` header as well as a bearer token.

use crate::RecordedRequest;
use crate::dialect::{
    Answer, Content, Dialect, RenderContext, WireResponse, body_model, body_streams,
};
use crate::reply::{error_json, split_pieces, usage_json};
use serde_json::{Value, json};

/// OpenAI Chat Completions (and every OpenAI-compatible vendor, Azure OpenAI included).
#[derive(Clone, Copy, Debug, Default)]
pub struct ChatCompletionsDialect;

fn response_id(cx: &RenderContext<'_>) -> String {
    format!("chatcmpl-{}", cx.request_number())
}

fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>) -> String {
    let chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    format!("data: {chunk}\n\n")
}

impl Dialect for ChatCompletionsDialect {
    fn name(&self) -> &str {
        "chat-completions"
    }

    fn serves(&self, request: &RecordedRequest) -> bool {
        request.path.ends_with("/chat/completions") || request.path.ends_with("/models")
    }

    fn is_streaming(&self, request: &RecordedRequest) -> bool {
        body_streams(request)
    }

    fn model(&self, request: &RecordedRequest) -> Option<String> {
        body_model(request)
    }

    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool {
        let bearer = request.header("authorization") == Some(format!("Bearer {key}").as_str());
        // Azure OpenAI: an `api-key` header, or an Entra ID bearer token.
        bearer
            || request.path.contains("/openai/deployments/")
                && request.header("api-key") == Some(key)
    }

    fn error(&self, status: u16, message: &str) -> WireResponse {
        WireResponse::json(status, error_json(status, message))
    }

    fn unauthorized(&self) -> WireResponse {
        self.error(
            401,
            "Incorrect API key provided. You can find your API key in your account settings.",
        )
    }

    fn fixed(&self, request: &RecordedRequest) -> Option<WireResponse> {
        (request.method == "GET" && request.path.ends_with("/models")).then(|| {
            WireResponse::json(
                200,
                json!({"object": "list", "data": [{"id": "scripted-model", "object": "model",
                    "owned_by": "picoclaw-testkit"}]}),
            )
        })
    }

    fn answer(&self, answer: &Answer<'_>, cx: &RenderContext<'_>) -> Value {
        let (message, finish) = match &answer.content {
            Content::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
            Content::ToolCalls(calls) => {
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|call| {
                        json!({"id": format!("call_{}", cx.next_id()), "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments}})
                    })
                    .collect();
                (
                    json!({"role": "assistant", "content": null, "tool_calls": calls}),
                    "tool_calls",
                )
            }
        };
        let mut body = json!({
            "id": response_id(cx),
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": cx.model(),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        });
        if let Some(usage) = &answer.usage {
            body["usage"] = usage_json(usage);
        }
        body
    }

    fn stream(&self, answer: &Answer<'_>, cut: bool, cx: &RenderContext<'_>) -> Vec<String> {
        let id = response_id(cx);
        let model = cx.model();
        let mut events = Vec::new();
        let finish = match &answer.content {
            Content::Text(text) => {
                events.push(chunk(
                    &id,
                    model,
                    json!({"role": "assistant", "content": ""}),
                    None,
                ));
                for piece in split_pieces(text, 3) {
                    events.push(chunk(&id, model, json!({"content": piece}), None));
                }
                "stop"
            }
            Content::ToolCalls(calls) => {
                events.push(chunk(
                    &id,
                    model,
                    json!({"role": "assistant", "content": null}),
                    None,
                ));
                for (index, call) in calls.iter().enumerate() {
                    events.push(chunk(
                        &id,
                        model,
                        json!({"tool_calls": [{"index": index, "id": format!("call_{}", cx.next_id()),
                            "type": "function", "function": {"name": call.name, "arguments": ""}}]}),
                        None,
                    ));
                    for piece in split_pieces(call.arguments, 3) {
                        events.push(chunk(
                            &id,
                            model,
                            json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                            None,
                        ));
                    }
                }
                "tool_calls"
            }
        };
        if cut {
            return events;
        }
        events.push(chunk(&id, model, json!({}), Some(finish)));
        if let Some(usage) = &answer.usage {
            let last = json!({"id": id, "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model, "choices": [], "usage": usage_json(usage)});
            events.push(format!("data: {last}\n\n"));
        }
        events.push("data: [DONE]\n\n".to_owned());
        events
    }
}
