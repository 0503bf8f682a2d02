//! The scripted endpoint's Anthropic dialect: `POST /v1/messages` answered in the Messages API's
//! shapes (content blocks, `tool_use`, stop reasons, usage, and the streaming events
//! `message_start` … `message_stop` with `input_json_delta` for tool arguments).

use crate::endpoint::json_response;
use crate::reply::{Reply, ReplyKind, split_pieces};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) fn error_response(status: u16, message: &str) -> Response {
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
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        code,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn usage(reply: &Reply) -> Value {
    let u = reply.usage.unwrap_or_default();
    json!({"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
           "cache_read_input_tokens": u.cached_tokens, "cache_creation_input_tokens": 0})
}

fn tool_blocks(ids: &AtomicU64, calls: &[(String, String)]) -> Vec<(String, String, Value)> {
    calls
        .iter()
        .map(|(name, args)| {
            let id = format!("toolu_{:02}", ids.fetch_add(1, Ordering::Relaxed) + 1);
            let input = serde_json::from_str(args).unwrap_or(Value::Null);
            (id, name.clone(), input)
        })
        .collect()
}

pub(crate) fn plain_response(ids: &AtomicU64, reply: &Reply, model: &str) -> Response {
    let (content, stop) = match &reply.kind {
        ReplyKind::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
        ReplyKind::ToolCalls(calls) => (
            tool_blocks(ids, calls)
                .into_iter()
                .map(|(id, name, input)| json!({"type": "tool_use", "id": id, "name": name, "input": input}))
                .collect(),
            "tool_use",
        ),
        ReplyKind::Error { status, message } => return error_response(*status, message),
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.clone())
                .into_response();
        }
        ReplyKind::Truncated(_) | ReplyKind::TruncatedToolCall { .. } => {
            let text = match &reply.kind {
                ReplyKind::Truncated(t) => t.clone(),
                _ => String::new(),
            };
            let full = json!({"id": "msg_x", "type": "message", "content": [{"type": "text", "text": text}]})
                .to_string();
            let half: String = full.chars().take(full.chars().count() / 2).collect();
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], half)
                .into_response();
        }
    };
    json_response(
        StatusCode::OK,
        &json!({"id": "msg_scripted", "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": null,
                "usage": usage(reply)}),
    )
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

pub(crate) fn stream_response(ids: &AtomicU64, reply: &Reply, model: &str) -> Response {
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_scripted", "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "usage": {"input_tokens": reply.usage.map_or(0, |u| u.prompt_tokens), "output_tokens": 1}}}),
    )];
    events.push(event("ping", json!({"type": "ping"})));
    let mut finish = Some("end_turn");
    match &reply.kind {
        ReplyKind::Text(text) | ReplyKind::Truncated(text) => {
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
            if matches!(reply.kind, ReplyKind::Truncated(_)) {
                finish = None;
            } else {
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": 0}),
                ));
            }
        }
        ReplyKind::ToolCalls(calls) => {
            for (index, (id, name, input)) in tool_blocks(ids, calls).into_iter().enumerate() {
                events.push(event("content_block_start", json!({"type": "content_block_start",
                    "index": index, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
                let raw = if input.is_null() {
                    calls[index].1.clone()
                } else {
                    input.to_string()
                };
                for piece in split_pieces(&raw, 3) {
                    events.push(event("content_block_delta", json!({"type": "content_block_delta",
                        "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})));
                }
                events.push(event(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": index}),
                ));
            }
            finish = Some("tool_use");
        }
        ReplyKind::TruncatedToolCall { name, partial } => {
            let id = format!("toolu_{:02}", ids.fetch_add(1, Ordering::Relaxed) + 1);
            events.push(event("content_block_start", json!({"type": "content_block_start",
                "index": 0, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}})));
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta",
                "index": 0, "delta": {"type": "input_json_delta", "partial_json": partial}}),
            ));
            finish = None;
        }
        ReplyKind::Error { status, message } => return error_response(*status, message),
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => {
            events = vec![format!("event: message_start\ndata: {body}\n\n")];
            finish = None;
        }
    }
    if let Some(stop) = finish {
        events.push(event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": {"output_tokens": reply.usage.map_or(0, |u| u.completion_tokens)}}),
        ));
        events.push(event("message_stop", json!({"type": "message_stop"})));
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
        .unwrap_or_else(|_| error_response(500, "could not build the stream"))
}
