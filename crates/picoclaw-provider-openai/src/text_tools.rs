//! Tool calls written as text. Local servers (Ollama, vLLM, llama.cpp, LM Studio) running open
//! models often return a tool call inside the message text instead of as structured
//! `tool_calls`. These are the formats the common model families emit:
//!
//! - Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (one or more)
//! - Mistral: `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`
//! - Llama 3.x: `<|python_tag|>{"name": ..., "parameters": {...}}` (`;`-separated), or the bare
//!   JSON object as the whole message
//! - any of the JSON shapes inside a ```json fence
//!
//! Marked formats are trusted; a bare JSON answer only counts when it names an offered tool, so a
//! model answering with JSON data is not mistaken for a call.

use picoclaw_api::ToolCall;
use serde_json::Value;

/// Prefixes that start a text tool call; a stream holds its text back while it might be one.
pub(crate) const MARKERS: &[&str] = &[
    "<tool_call>",
    "[TOOL_CALLS]",
    "<|python_tag|>",
    "```json",
    "{\"name\"",
];

/// Whether streamed text that so far reads `acc` may still turn out to be a tool call.
pub(crate) fn may_be_tool_call(acc: &str) -> bool {
    let acc = acc.trim_start();
    acc.is_empty()
        || MARKERS
            .iter()
            .any(|m| acc.starts_with(m) || m.starts_with(acc))
}

/// Parses tool calls out of `text`; returns the remaining text and the calls, or `None` when the
/// text holds no tool call.
pub(crate) fn extract(text: &str, offered: &[String]) -> Option<(String, Vec<ToolCall>)> {
    let trimmed = text.trim();
    let mut calls = Vec::new();
    let mut rest = String::new();

    if trimmed.contains("<tool_call>") {
        let mut remaining = trimmed;
        while let Some(start) = remaining.find("<tool_call>") {
            rest.push_str(&remaining[..start]);
            let after = &remaining[start + "<tool_call>".len()..];
            let (body, next) = match after.find("</tool_call>") {
                Some(end) => (&after[..end], &after[end + "</tool_call>".len()..]),
                None => (after, ""),
            };
            calls.extend(json_calls(body.trim())?);
            remaining = next;
        }
        rest.push_str(remaining);
    } else if let Some(after) = trimmed.strip_prefix("[TOOL_CALLS]") {
        calls.extend(json_calls(after.trim())?);
    } else if let Some(after) = trimmed.strip_prefix("<|python_tag|>") {
        for part in after.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            calls.extend(json_calls(part)?);
        }
    } else {
        let body = fenced(trimmed).unwrap_or(trimmed);
        if !body.starts_with('{') && !body.starts_with('[') {
            return None;
        }
        let found = json_calls(body)?;
        // Unmarked JSON is only a call when it names a tool we offered.
        if !found.iter().all(|c| offered.iter().any(|o| o == &c.name)) {
            return None;
        }
        calls.extend(found);
    }
    if calls.is_empty() {
        return None;
    }
    for (i, call) in calls.iter_mut().enumerate() {
        call.id = format!("call_text_{}", i + 1);
    }
    Some((rest.trim().to_owned(), calls))
}

fn fenced(text: &str) -> Option<&str> {
    let inner = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))?;
    Some(inner.strip_suffix("```")?.trim())
}

/// One call object or an array of them.
fn json_calls(body: &str) -> Option<Vec<ToolCall>> {
    let value: Value = serde_json::from_str(body).ok()?;
    match value {
        Value::Array(items) => items.iter().map(one_call).collect(),
        obj @ Value::Object(_) => Some(vec![one_call(&obj)?]),
        _ => None,
    }
}

fn one_call(v: &Value) -> Option<ToolCall> {
    // Some models nest it as {"function": {"name", "arguments"}}.
    let v = v.get("function").filter(|f| f.is_object()).unwrap_or(v);
    let name = v.get("name")?.as_str()?.trim();
    if name.is_empty() {
        return None;
    }
    let args = v
        .get("arguments")
        .or_else(|| v.get("parameters"))
        .or_else(|| v.get("args"))
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let args = match args {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some(ToolCall::new(String::new(), name, args))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn offered() -> Vec<String> {
        vec!["read_file".into(), "exec".into()]
    }

    fn check(text: &str, expected: &[(&str, &str)], rest: &str) {
        let (r, calls) = extract(text, &offered()).unwrap_or_else(|| panic!("no call in {text}"));
        let got: Vec<(&str, &str)> = calls
            .iter()
            .map(|c| (c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(got, expected, "{text}");
        assert_eq!(r, rest);
        assert_eq!(calls[0].id, "call_text_1");
    }

    #[test]
    fn hermes_qwen_format() {
        check(
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}\n</tool_call>",
            &[("read_file", r#"{"path":"a.txt"}"#)],
            "",
        );
        check(
            "Let me look.\n<tool_call>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}</tool_call>\n<tool_call>{\"name\": \"exec\", \"arguments\": {\"command\": \"ls\"}}</tool_call>",
            &[
                ("read_file", r#"{"path":"a"}"#),
                ("exec", r#"{"command":"ls"}"#),
            ],
            "Let me look.",
        );
        // A missing closing tag at the very end (the model stopped there).
        check(
            "<tool_call>{\"name\": \"exec\", \"arguments\": {\"command\": \"ls\"}}",
            &[("exec", r#"{"command":"ls"}"#)],
            "",
        );
    }

    #[test]
    fn mistral_and_llama_formats() {
        check(
            "[TOOL_CALLS] [{\"name\": \"exec\", \"arguments\": {\"command\": \"pwd\"}}]",
            &[("exec", r#"{"command":"pwd"}"#)],
            "",
        );
        check(
            "<|python_tag|>{\"name\": \"read_file\", \"parameters\": {\"path\": \"x\"}}; {\"name\": \"exec\", \"parameters\": {\"command\": \"ls\"}}",
            &[
                ("read_file", r#"{"path":"x"}"#),
                ("exec", r#"{"command":"ls"}"#),
            ],
            "",
        );
        check(
            "{\"name\": \"exec\", \"parameters\": {\"command\": \"date\"}}",
            &[("exec", r#"{"command":"date"}"#)],
            "",
        );
        check(
            "```json\n{\"name\": \"read_file\", \"arguments\": \"{\\\"path\\\": \\\"b\\\"}\"}\n```",
            &[("read_file", r#"{"path": "b"}"#)],
            "",
        );
    }

    #[test]
    fn plain_answers_are_left_alone() {
        for text in [
            "The answer is 42.",
            "{\"name\": \"Ada\", \"age\": 36}",
            "[1, 2, 3]",
            "<tool_call>not json</tool_call>",
            "",
        ] {
            assert!(extract(text, &offered()).is_none(), "{text}");
        }
    }

    #[test]
    fn stream_holding_rule() {
        assert!(may_be_tool_call(""));
        assert!(may_be_tool_call("  <tool"));
        assert!(may_be_tool_call("<tool_call>{\"na"));
        assert!(may_be_tool_call("{"));
        assert!(!may_be_tool_call("Hello"));
        assert!(!may_be_tool_call("{\"answer\""));
    }
}
