//! The scripted endpoint's Gemini dialect: `POST …/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, answered in `GenerateContentResponse` shapes (candidates
//! with `text` / `functionCall` parts, `finishReason`, `usageMetadata`).

use crate::endpoint::json_response;
use crate::reply::{Reply, ReplyKind, split_pieces};
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) fn error_response(status: u16, message: &str) -> Response {
    let kind = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(
        code,
        &json!({"error": {"code": status, "message": message, "status": kind}}),
    )
}

fn usage(reply: &Reply) -> Value {
    let u = reply.usage.unwrap_or_default();
    json!({"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.completion_tokens,
           "totalTokenCount": u.prompt_tokens + u.completion_tokens})
}

fn response(parts: Vec<Value>, finish: Option<&str>, reply: &Reply) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = Value::String(f.to_owned());
    }
    json!({"candidates": [candidate], "usageMetadata": usage(reply), "modelVersion": "scripted"})
}

fn call_parts(calls: &[(String, String)]) -> Vec<Value> {
    calls
        .iter()
        .map(|(name, args)| {
            let args: Value = serde_json::from_str(args).unwrap_or(Value::String(args.clone()));
            json!({"functionCall": {"name": name, "args": args}})
        })
        .collect()
}

pub(crate) fn plain_response(reply: &Reply) -> Response {
    match &reply.kind {
        ReplyKind::Text(text) => json_response(
            StatusCode::OK,
            &response(vec![json!({"text": text})], Some("STOP"), reply),
        ),
        ReplyKind::ToolCalls(calls) => json_response(
            StatusCode::OK,
            &response(call_parts(calls), Some("STOP"), reply),
        ),
        ReplyKind::Error { status, message } => error_response(*status, message),
        ReplyKind::Raw { status, body } => crate::endpoint::raw_response(*status, body),
        ReplyKind::Garbage(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        ReplyKind::Truncated(_) | ReplyKind::TruncatedToolCall { .. } => {
            let full = response(vec![json!({"text": "cut"})], Some("STOP"), reply).to_string();
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

pub(crate) fn stream_response(reply: &Reply) -> Response {
    let data = |v: Value| format!("data: {v}\r\n\r\n");
    let mut events = Vec::new();
    match &reply.kind {
        ReplyKind::Text(text) => {
            let pieces = split_pieces(text, 3);
            let last = pieces.len().saturating_sub(1);
            for (i, piece) in pieces.into_iter().enumerate() {
                let finish = (i == last).then_some("STOP");
                events.push(data(response(vec![json!({"text": piece})], finish, reply)));
            }
        }
        ReplyKind::ToolCalls(calls) => {
            events.push(data(response(call_parts(calls), Some("STOP"), reply)));
        }
        ReplyKind::Truncated(text) => {
            for piece in split_pieces(text, 3) {
                events.push(data(response(vec![json!({"text": piece})], None, reply)));
            }
        }
        ReplyKind::TruncatedToolCall { .. } => {
            // Gemini sends function calls whole; a cut stream shows as one unfinished text chunk.
            events.push(data(response(vec![json!({"text": ""})], None, reply)));
        }
        ReplyKind::Error { status, message } => return error_response(*status, message),
        ReplyKind::Raw { status, body } => {
            return crate::endpoint::raw_response(*status, body);
        }
        ReplyKind::Garbage(body) => events.push(format!("data: {body}\r\n\r\n")),
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
