//! The scripted endpoint's OpenAI Responses dialect: `POST /v1/responses`, answered with
//! `output` items (`message` / `function_call`) and, when streaming, the `response.*` events.

use crate::endpoint::json_response;
use crate::reply::{Reply, ReplyKind, error_json, split_pieces};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

fn usage(reply: &Reply) -> Value {
    let u = reply.usage.unwrap_or_default();
    json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
           "total_tokens": u.prompt_tokens + u.completion_tokens,
           "input_tokens_details": {"cached_tokens": u.cached_tokens}})
}

fn items(ids: &AtomicU64, reply: &Reply) -> Vec<Value> {
    match &reply.kind {
        ReplyKind::Text(text) => vec![json!({"type": "message", "id": "msg_1", "role": "assistant",
            "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]})],
        ReplyKind::ToolCalls(calls) => calls
            .iter()
            .map(|(name, args)| {
                let n = ids.fetch_add(1, Ordering::Relaxed) + 1;
                json!({"type": "function_call", "id": format!("fc_{n}"), "call_id": format!("call_{n}"),
                       "name": name, "arguments": args, "status": "completed"})
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn response(output: Vec<Value>, status: &str, reply: &Reply, model: &str) -> Value {
    json!({"id": "resp_scripted", "object": "response", "status": status, "model": model,
           "output": output, "usage": usage(reply)})
}

pub(crate) fn plain_response(ids: &AtomicU64, reply: &Reply, model: &str) -> Response {
    match &reply.kind {
        ReplyKind::Text(_) | ReplyKind::ToolCalls(_) => json_response(
            StatusCode::OK,
            &response(items(ids, reply), "completed", reply, model),
        ),
        ReplyKind::Error { status, message } => json_response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &error_json(*status, message),
        ),
        ReplyKind::Raw { status, body } => crate::endpoint::raw_response(*status, body),
        ReplyKind::Garbage(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        ReplyKind::Truncated(_) | ReplyKind::TruncatedToolCall { .. } => {
            let full = response(vec![], "completed", reply, model).to_string();
            let half: String = full.chars().take(full.chars().count() / 2).collect();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                half,
            )
                .into_response()
        }
    }
}

fn event(name: &str, mut data: Value, seq: &mut u64) -> String {
    data["type"] = Value::String(name.to_owned());
    data["sequence_number"] = json!(*seq);
    *seq += 1;
    format!("event: {name}\ndata: {data}\n\n")
}

pub(crate) fn stream_response(ids: &AtomicU64, reply: &Reply, model: &str) -> Response {
    let mut seq = 0;
    let mut events = vec![event(
        "response.created",
        json!({"response": response(vec![], "in_progress", reply, model)}),
        &mut seq,
    )];
    let mut complete = true;
    match &reply.kind {
        ReplyKind::Text(text) | ReplyKind::Truncated(text) => {
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
            complete = matches!(reply.kind, ReplyKind::Text(_));
        }
        ReplyKind::ToolCalls(_) => {
            for (index, item) in items(ids, reply).into_iter().enumerate() {
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
                events.push(event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                    &mut seq,
                ));
            }
        }
        ReplyKind::TruncatedToolCall { name, partial } => {
            events.push(event("response.output_item.added", json!({"output_index": 0,
                "item": {"type": "function_call", "id": "fc_cut", "call_id": "call_cut", "name": name, "arguments": ""}}), &mut seq));
            events.push(event(
                "response.function_call_arguments.delta",
                json!({"output_index": 0,
                "item_id": "fc_cut", "delta": partial}),
                &mut seq,
            ));
            complete = false;
        }
        ReplyKind::Error { status, message } => {
            return json_response(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &error_json(*status, message),
            );
        }
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => {
            events = vec![format!("event: response.created\ndata: {body}\n\n")];
            complete = false;
        }
    }
    if complete {
        let done = response(items(ids, reply), "completed", reply, model);
        events.push(event(
            "response.completed",
            json!({"response": done}),
            &mut seq,
        ));
    }
    let stream = futures::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, std::io::Error>(Bytes::from(e))),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &error_json(500, "stream"),
            )
        })
}
