//! The scripted endpoint's Anthropic dialect: `POST /v1/messages` answered in the Messages API's
//! shapes (content blocks, `tool_use`, stop reasons, usage, and the streaming events
//! `message_start` … `message_stop` with `input_json_delta` for tool arguments).

use crate::RecordedRequest;
use crate::dialect::{
    Answer, Content, Dialect, RenderContext, WireResponse, body_model, body_streams,
};
use crate::reply::split_pieces;
use serde_json::{Value, json};

/// Anthropic's Messages API (`x-api-key`).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnthropicDialect;

fn usage(answer: &Answer<'_>) -> Value {
    let u = answer.usage_or_zero();
    json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": u.cached_tokens, "cache_creation_input_tokens": 0})
}

/// (id, name, input) per call; `input` is `null` when the arguments are not JSON.
fn tool_blocks(cx: &RenderContext<'_>, answer: &Answer<'_>) -> Vec<(String, String, Value)> {
    let Content::ToolCalls(calls) = &answer.content else {
        return Vec::new();
    };
    calls
        .iter()
        .map(|call| {
            let id = format!("toolu_{:02}", cx.next_id());
            let input = serde_json::from_str(call.arguments).unwrap_or(Value::Null);
            (id, call.name.to_owned(), input)
        })
        .collect()
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl Dialect for AnthropicDialect {
    fn name(&self) -> &str {
        "anthropic"
    }

    fn serves(&self, request: &RecordedRequest) -> bool {
        request.path.ends_with("/messages")
    }

    fn is_streaming(&self, request: &RecordedRequest) -> bool {
        body_streams(request)
    }

    fn model(&self, request: &RecordedRequest) -> Option<String> {
        body_model(request)
    }

    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool {
        request.header("x-api-key") == Some(key)
    }

    fn error(&self, status: u16, message: &str) -> WireResponse {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        WireResponse::json(
            status,
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        )
    }

    fn unauthorized(&self) -> WireResponse {
        self.error(401, "invalid x-api-key")
    }

    fn garbage_event(&self, body: &str) -> String {
        format!("event: message_start\ndata: {body}\n\n")
    }

    fn answer(&self, answer: &Answer<'_>, cx: &RenderContext<'_>) -> Value {
        let (content, stop) = match &answer.content {
            Content::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
            Content::ToolCalls(_) => (
                tool_blocks(cx, answer)
                    .into_iter()
                    .map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input}))
                    .collect(),
                "tool_use",
            ),
        };
        json!({"id": "msg_scripted", "type": "message", "role": "assistant", "model": cx.model(),
               "content": content, "stop_reason": stop, "stop_sequence": null,
               "usage": usage(answer)})
    }

    fn stream(&self, answer: &Answer<'_>, cut: bool, cx: &RenderContext<'_>) -> Vec<String> {
        let prompt = answer.usage.map_or(0, |u| u.prompt_tokens);
        let mut events = vec![event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_scripted", "type": "message",
                "role": "assistant", "model": cx.model(), "content": [], "stop_reason": null,
                "usage": {"input_tokens": prompt, "output_tokens": 1}}}),
        )];
        events.push(event("ping", json!({"type": "ping"})));
        let stop = match &answer.content {
            Content::Text(text) => {
                events.push(event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
                ));
                for piece in split_pieces(text, 3) {
                    events.push(event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}),
                    ));
                }
                if !cut {
                    events.push(event(
                        "content_block_stop",
                        json!({"type": "content_block_stop", "index": 0}),
                    ));
                }
                "end_turn"
            }
            Content::ToolCalls(calls) => {
                let blocks = tool_blocks(cx, answer);
                let last = blocks.len().saturating_sub(1);
                for (index, (id, name, input)) in blocks.into_iter().enumerate() {
                    events.push(event("content_block_start", json!({"type": "content_block_start",
                        "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
                    let raw = if input.is_null() {
                        calls[index].arguments.to_owned()
                    } else {
                        input.to_string()
                    };
                    for piece in split_pieces(&raw, 3) {
                        events.push(event("content_block_delta", json!({"type": "content_block_delta",
                            "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                    }
                    if !(cut && index == last) {
                        events.push(event(
                            "content_block_stop",
                            json!({"type": "content_block_stop", "index": index}),
                        ));
                    }
                }
                "tool_use"
            }
        };
        if !cut {
            events.push(event(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": answer.usage.map_or(0, |u| u.completion_tokens)}}),
            ));
            events.push(event("message_stop", json!({"type": "message_stop"})));
        }
        events
    }
}
