//! Compaction: when a session's history outgrows its token budget, the older turns are
//! summarised by the model into the session's summary, and only the recent turns stay verbatim.
//! A split never separates a tool call from its results: the kept part starts at a user message.

use crate::context::message_tokens;
use crate::transcript::message_markdown;
use picoclaw_api::{ChatMessage, Role};
use picoclaw_providers::ChatRequest;

/// The instruction for the summarising call.
pub(crate) const SUMMARY_PROMPT: &str = "You compress conversations. Summarise the conversation \
below for the assistant who will continue it: facts about the user, decisions made, open tasks, \
file names, commands and results that still matter. Be concise and specific. Plain text, no \
preamble.";

/// How many of the newest messages to keep verbatim: as many as fit in `keep_tokens`, moved
/// forward to start at a user message.
pub(crate) fn keep_count(history: &[ChatMessage], keep_tokens: usize) -> usize {
    let mut used = 0usize;
    let mut start = history.len();
    while start > 0 {
        let cost = message_tokens(&history[start - 1]);
        if used + cost > keep_tokens {
            break;
        }
        used += cost;
        start -= 1;
    }
    while start < history.len() && history[start].role != Role::User {
        start += 1;
    }
    history.len() - start
}

/// The request that summarises `older` (newest first until `budget_tokens`), folding in the
/// previous summary.
pub(crate) fn summary_request(
    model: &str,
    previous: Option<&str>,
    older: &[ChatMessage],
    budget_tokens: usize,
) -> ChatRequest {
    let mut parts: Vec<String> = Vec::new();
    let mut used = 0usize;
    for msg in older.iter().rev() {
        let block = message_markdown(msg);
        let cost = crate::context::estimate_tokens(&block);
        if used + cost > budget_tokens && !parts.is_empty() {
            break;
        }
        used += cost;
        parts.push(block);
    }
    parts.reverse();
    let mut text = String::new();
    if let Some(p) = previous.filter(|p| !p.trim().is_empty()) {
        text.push_str("Summary of what came before:\n");
        text.push_str(p.trim());
        text.push_str("\n\nThe conversation since then:\n\n");
    }
    text.push_str(&parts.join("\n"));
    ChatRequest::new(
        model,
        vec![ChatMessage::system(SUMMARY_PROMPT), ChatMessage::user(text)],
    )
    .with_max_tokens(Some(1024))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use picoclaw_api::ToolCall;

    #[test]
    fn the_kept_part_starts_at_a_user_message() {
        let history = vec![
            ChatMessage::user("a".repeat(400)),
            ChatMessage::assistant("b".repeat(400)),
            ChatMessage::user("question"),
            ChatMessage::assistant_with_tools("", vec![ToolCall::new("c", "exec", "{}")]),
            ChatMessage::tool_result("c", "exec", "x".repeat(40)),
            ChatMessage::assistant("answer"),
        ];
        // Room for the last three only: that would start at a tool result, so fewer are kept.
        let tail: usize = history[3..].iter().map(message_tokens).sum();
        assert_eq!(keep_count(&history, tail), 0);
        let from_question: usize = history[2..].iter().map(message_tokens).sum();
        assert_eq!(keep_count(&history, from_question), 4);
        assert_eq!(keep_count(&history, usize::MAX), 6);
    }

    #[test]
    fn the_summary_request_carries_the_previous_summary_and_the_newest_messages() {
        let older = vec![
            ChatMessage::user("old ".repeat(2000)),
            ChatMessage::user("recent fact"),
        ];
        let req = summary_request("m", Some("User is Ada."), &older, 100);
        let text = req.messages[1].text();
        assert!(text.starts_with("Summary of what came before:\nUser is Ada."));
        assert!(text.contains("recent fact"));
        assert!(
            !text.contains("old old"),
            "over budget, the oldest is left out"
        );
        assert_eq!(req.messages[0].text(), SUMMARY_PROMPT);
    }
}
