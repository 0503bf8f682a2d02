//! The scripted endpoint's OpenAI Responses dialect: `POST /v1/responses`, answered with
//! `output` items (`message` / `function_call`) and, when streaming, the `response.*` events.

use crate::RecordedRequest;
use crate::dialect::{
    Answer, Content, Dialect, RenderContext, WireResponse, body_model, body_streams,
};
use crate::reply::{error_json, split_pieces};
use serde_json::{Value, json};

/// The OpenAI Responses API (bearer token, OpenAI's error shape).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponsesDialect;

fn usage(answer: &Answer<'_>) -> Value {
    let u = answer.usage_or_zero();
    json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
           "total_tokens": u.prompt_tokens + u.completion_tokens,
           "input_tokens_details": {"cached_tokens": u.cached_tokens},
           "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens}})
}

/// The output items; tool calls get ids from `ids` (the same ones for every rendering of the
/// answer, so the stream's added and done items agree).
fn items(answer: &Answer<'_>, ids: &[u64]) -> Vec<Value> {
    match &answer.content {
        Content::Text(text) => vec![json!({"type": "message", "id": "msg_1", "role": "assistant",
            "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]})],
        Content::ToolCalls(calls) => calls
            .iter()
            .zip(ids)
            .map(|(call, n)| {
                json!({"type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
                       "name": call.name, "arguments": call.arguments, "status": "completed"})
            })
            .collect(),
    }
}

fn call_ids(answer: &Answer<'_>, cx: &RenderContext<'_>) -> Vec<u64> {
    match &answer.content {
        Content::Text(_) => Vec::new(),
        Content::ToolCalls(calls) => calls.iter().map(|_| cx.next_id()).collect(),
    }
}

fn response(output: Vec<Value>, status: &str, answer: &Answer<'_>, model: &str) -> Value {
    json!({"id": "resp_scripted", "object": "response", "status": status, "model": model,
           "output": output, "usage": usage(answer)})
}

fn event(name: &str, mut data: Value, seq: &mut u64) -> String {
    data["type"] = Value::String(name.to_owned());
    data["sequence_number"] = json!(*seq);
    *seq += 1;
    format!("event: {name}\ndata: {data}\n\n")
}

impl Dialect for ResponsesDialect {
    fn name(&self) -> &str {
        "responses"
    }

    fn serves(&self, request: &RecordedRequest) -> bool {
        request.path.ends_with("/responses")
    }

    fn is_streaming(&self, request: &RecordedRequest) -> bool {
        body_streams(request)
    }

    fn model(&self, request: &RecordedRequest) -> Option<String> {
        body_model(request)
    }

    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool {
        request.header("authorization") == Some(format!("Bearer {key}").as_str())
    }

    fn error(&self, status: u16, message: &str) -> WireResponse {
        WireResponse::json(status, error_json(status, message))
    }

    fn garbage_event(&self, body: &str) -> String {
        format!("event: response.created\ndata: {body}\n\n")
    }

    fn answer(&self, answer: &Answer<'_>, cx: &RenderContext<'_>) -> Value {
        let ids = call_ids(answer, cx);
        response(items(answer, &ids), "completed", answer, cx.model())
    }

    fn stream(&self, answer: &Answer<'_>, cut: bool, cx: &RenderContext<'_>) -> Vec<String> {
        let mut seq = 0;
        let mut events = vec![event(
            "response.created",
            json!({"response": response(vec![], "in_progress", answer, cx.model())}),
            &mut seq,
        )];
        let ids = call_ids(answer, cx);
        match &answer.content {
            Content::Text(text) => {
                events.push(event(
                    "response.output_item.added",
                    json!({"output_index": 0,
                    "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
                    &mut seq,
                ));
                for piece in split_pieces(text, 3) {
                    events.push(event(
                        "response.output_text.delta",
                        json!({"output_index": 0,
                        "item_id": "msg_1", "content_index": 0, "delta": piece}),
                        &mut seq,
                    ));
                }
            }
            Content::ToolCalls(_) => {
                let all = items(answer, &ids);
                let last = all.len().saturating_sub(1);
                for (index, item) in all.into_iter().enumerate() {
                    let mut added = item.clone();
                    added["arguments"] = json!("");
                    events.push(event(
                        "response.output_item.added",
                        json!({"output_index": index, "item": added}),
                        &mut seq,
                    ));
                    let args = item["arguments"].as_str().unwrap_or_default().to_owned();
                    for piece in split_pieces(&args, 3) {
                        events.push(event(
                            "response.function_call_arguments.delta",
                            json!({"output_index": index,
                            "item_id": item["id"], "delta": piece}),
                            &mut seq,
                        ));
                    }
                    if !(cut && index == last) {
                        events.push(event(
                            "response.output_item.done",
                            json!({"output_index": index, "item": item}),
                            &mut seq,
                        ));
                    }
                }
            }
        }
        if !cut {
            let done = response(items(answer, &ids), "completed", answer, cx.model());
            events.push(event(
                "response.completed",
                json!({"response": done}),
                &mut seq,
            ));
        }
        events
    }
}
