//! `Reply`: one scripted model answer, renderable as a provider response, as OpenAI JSON, or as an
//! OpenAI SSE stream.

use picoclaw_api::Usage;
use serde_json::{Value, json};
use std::time::Duration;

/// One scripted model answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub(crate) kind: ReplyKind,
    pub(crate) usage: Option<Usage>,
    pub(crate) delay: Option<Duration>,
    /// Pause between stream events (OpenAI-compatible SSE): a slow, streaming model.
    pub(crate) pace: Option<Duration>,
    pub(crate) headers: Vec<(String, String)>,
    /// Only for a request whose body contains this text (see [`Reply::when_request_contains`]).
    pub(crate) when: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) enum ReplyKind {
    /// A final answer (finish reason "stop").
    Text(String),
    /// Tool calls: (name, raw JSON arguments). Finish reason "tool_calls".
    ToolCalls(Vec<(String, String)>),
    /// A vendor error in OpenAI's error shape.
    Error { status: u16, message: String },
    /// 200 with a body that is not the API shape.
    Garbage(String),
    /// Some text, then the connection ends: no finish reason, no `[DONE]`.
    Truncated(String),
    /// A tool call whose arguments stop half-way, then the connection ends.
    TruncatedToolCall { name: String, partial: String },
    /// A status with a JSON body exactly as given (vendor-specific error shapes).
    Raw { status: u16, body: Value },
}

impl Reply {
    fn of(kind: ReplyKind) -> Self {
        Self {
            kind,
            usage: None,
            delay: None,
            pace: None,
            headers: Vec::new(),
            when: None,
        }
    }

    /// This reply answers the first request whose JSON body contains `text`, wherever it sits in
    /// the script; replies without a condition answer the others in order. For concurrent
    /// callers (a sub-agent and its parent) whose requests arrive in no fixed order.
    pub fn when_request_contains(mut self, text: &str) -> Self {
        self.when = Some(text.to_owned());
        self
    }

    /// Takes the reply for a request with body `body` out of `script`: the first whose condition
    /// the body meets, or else the first without a condition.
    pub(crate) fn take_for(
        script: &mut std::collections::VecDeque<Reply>,
        body: &str,
    ) -> Option<Reply> {
        let matching = script
            .iter()
            .position(|r| r.when.as_deref().is_some_and(|w| body.contains(w)))
            .or_else(|| script.iter().position(|r| r.when.is_none()))?;
        script.remove(matching)
    }

    /// A final text answer (finish reason "stop").
    pub fn text(text: impl Into<String>) -> Self {
        Self::of(ReplyKind::Text(text.into()))
    }

    /// One tool call (finish reason "tool_calls").
    pub fn tool_call(name: &str, args: Value) -> Self {
        Self::tool_calls(vec![(name, args)])
    }

    /// Several tool calls in one answer.
    pub fn tool_calls(calls: Vec<(&str, Value)>) -> Self {
        Self::of(ReplyKind::ToolCalls(
            calls
                .into_iter()
                .map(|(name, args)| (name.to_owned(), args.to_string()))
                .collect(),
        ))
    }

    /// A tool call whose arguments are sent verbatim (for invalid JSON tests).
    pub fn tool_call_raw(name: &str, raw_arguments: &str) -> Self {
        Self::of(ReplyKind::ToolCalls(vec![(
            name.to_owned(),
            raw_arguments.to_owned(),
        )]))
    }

    /// A vendor error: the HTTP status with OpenAI's `{"error": {...}}` body.
    pub fn error(status: u16, message: &str) -> Self {
        Self::of(ReplyKind::Error {
            status,
            message: message.to_owned(),
        })
    }

    /// A 429 with a `Retry-After` header (seconds).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::error(429, "Rate limit reached for requests")
            .with_header("retry-after", &retry_after_secs.to_string())
    }

    /// `status` with exactly this JSON body, for vendor-specific shapes (Azure's content filter…).
    pub fn raw_json(status: u16, body: Value) -> Self {
        Self::of(ReplyKind::Raw { status, body })
    }

    /// A 200 whose body is not the API's shape (a proxy's HTML page, a different API...).
    pub fn garbage(body: &str) -> Self {
        Self::of(ReplyKind::Garbage(body.to_owned()))
    }

    /// An answer cut off mid-way: a streamed reply sends some deltas and then closes the
    /// connection without a finish reason or `[DONE]`; a plain reply sends half a JSON body.
    pub fn truncated(text: &str) -> Self {
        Self::of(ReplyKind::Truncated(text.to_owned()))
    }

    /// A streamed tool call cut off inside its arguments (no finish reason, no `[DONE]`); a
    /// plain reply sends half a JSON body.
    pub fn truncated_tool_call(name: &str, partial_arguments: &str) -> Self {
        Self::of(ReplyKind::TruncatedToolCall {
            name: name.to_owned(),
            partial: partial_arguments.to_owned(),
        })
    }

    /// Reports token usage with this answer.
    pub fn with_usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some(Usage::new(prompt, completion));
        self
    }

    /// Reports `reasoning` of the completion tokens as spent reasoning
    /// (`completion_tokens_details.reasoning_tokens`; `output_tokens_details` on the Responses
    /// API). Call it after [`Reply::with_usage`]; alone, the usage reports only these.
    pub fn with_reasoning(mut self, reasoning: u64) -> Self {
        self.usage = Some(self.usage.unwrap_or_default().with_reasoning(reasoning));
        self
    }

    /// Waits this long before answering (timeouts, cancellation).
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Streams slowly: waits this long before each SSE event (OpenAI-compatible endpoint).
    pub fn paced(mut self, pause: Duration) -> Self {
        self.pace = Some(pause);
        self
    }

    /// Adds a response header (HTTP endpoint only).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Splits `s` into up to `n` pieces on char boundaries (streams send text in several deltas).
pub(crate) fn split_pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(n.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

pub(crate) fn usage_json(usage: &Usage) -> Value {
    let mut json = json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    });
    if usage.reasoning_tokens > 0 {
        json["completion_tokens_details"] = json!({"reasoning_tokens": usage.reasoning_tokens});
    }
    json
}

pub(crate) fn error_json(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        401 | 403 => ("invalid_request_error", "invalid_api_key"),
        429 => ("requests", "rate_limit_exceeded"),
        500..=599 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "invalid_request"),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_pieces_keeps_every_char() {
        let pieces = split_pieces("héllo wörld", 3);
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), "héllo wörld");
        assert!(split_pieces("", 3).is_empty());
        assert_eq!(split_pieces("ab", 5), vec!["a", "b"]);
    }

    #[test]
    fn reasoning_tokens_are_reported_in_the_completion_details() {
        let reply = Reply::text("hm").with_usage(10, 30).with_reasoning(20);
        let json = usage_json(&reply.usage.unwrap_or_default());
        assert_eq!(json["completion_tokens"], 30);
        assert_eq!(json["completion_tokens_details"]["reasoning_tokens"], 20);
        let plain = usage_json(&Usage::new(10, 30));
        assert!(plain.get("completion_tokens_details").is_none(), "{plain}");
    }
}
