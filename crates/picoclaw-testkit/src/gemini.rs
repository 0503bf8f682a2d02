//! The scripted endpoint's Gemini dialect: `POST …/models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse`, answered in `GenerateContentResponse` shapes (candidates
//! with `text` / `functionCall` parts, `finishReason`, `usageMetadata`).

use crate::RecordedRequest;
use crate::dialect::{Answer, Content, Dialect, RenderContext, WireResponse};
use crate::reply::split_pieces;
use serde_json::{Value, json};

/// Gemini's native `generateContent` API (`x-goog-api-key`; a bad key is a 400).
#[derive(Clone, Copy, Debug, Default)]
pub struct GeminiDialect;

fn usage(answer: &Answer<'_>) -> Value {
    let u = answer.usage_or_zero();
    json!({"promptTokenCount": u.prompt_tokens, "candidatesTokenCount": u.completion_tokens,
           "totalTokenCount": u.prompt_tokens + u.completion_tokens})
}

fn response(parts: Vec<Value>, finish: Option<&str>, answer: &Answer<'_>) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = Value::String(f.to_owned());
    }
    json!({"candidates": [candidate], "usageMetadata": usage(answer), "modelVersion": "scripted"})
}

fn call_parts(answer: &Answer<'_>) -> Vec<Value> {
    let Content::ToolCalls(calls) = &answer.content else {
        return Vec::new();
    };
    calls
        .iter()
        .map(|call| {
            let args: Value = serde_json::from_str(call.arguments)
                .unwrap_or_else(|_| Value::String(call.arguments.to_owned()));
            json!({"functionCall": {"name": call.name, "args": args}})
        })
        .collect()
}

impl Dialect for GeminiDialect {
    fn name(&self) -> &str {
        "gemini"
    }

    fn serves(&self, request: &RecordedRequest) -> bool {
        request.path.contains(":generateContent") || request.path.contains(":streamGenerateContent")
    }

    fn is_streaming(&self, request: &RecordedRequest) -> bool {
        request.path.contains(":streamGenerateContent")
    }

    /// `…/models/{model}:generateContent`
    fn model(&self, request: &RecordedRequest) -> Option<String> {
        let (before, _) = request.path.rsplit_once(':')?;
        let (_, model) = before.rsplit_once("/models/")?;
        Some(model.to_owned())
    }

    fn has_key(&self, request: &RecordedRequest, key: &str) -> bool {
        request.header("x-goog-api-key") == Some(key)
    }

    fn error(&self, status: u16, message: &str) -> WireResponse {
        let kind = match status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        };
        WireResponse::json(
            status,
            json!({"error": {"code": status, "message": message, "status": kind}}),
        )
    }

    fn unauthorized(&self) -> WireResponse {
        self.error(400, "API key not valid. Please pass a valid API key.")
    }

    fn garbage_event(&self, body: &str) -> String {
        format!("data: {body}\r\n\r\n")
    }

    fn answer(&self, answer: &Answer<'_>, _cx: &RenderContext<'_>) -> Value {
        match &answer.content {
            Content::Text(text) => response(vec![json!({"text": text})], Some("STOP"), answer),
            Content::ToolCalls(_) => response(call_parts(answer), Some("STOP"), answer),
        }
    }

    fn stream(&self, answer: &Answer<'_>, cut: bool, _cx: &RenderContext<'_>) -> Vec<String> {
        let data = |v: Value| format!("data: {v}\r\n\r\n");
        match &answer.content {
            Content::Text(text) => {
                let pieces = split_pieces(text, 3);
                let last = pieces.len().saturating_sub(1);
                pieces
                    .into_iter()
                    .enumerate()
                    .map(|(i, piece)| {
                        let finish = (i == last && !cut).then_some("STOP");
                        data(response(vec![json!({"text": piece})], finish, answer))
                    })
                    .collect()
            }
            // Gemini sends function calls whole; a cut stream shows as one unfinished text chunk.
            Content::ToolCalls(_) if cut => {
                vec![data(response(vec![json!({"text": ""})], None, answer))]
            }
            Content::ToolCalls(_) => vec![data(response(call_parts(answer), Some("STOP"), answer))],
        }
    }
}
