//! Rendering a stored session for people and tools: Markdown for reading, JSON for keeping
//! (`picoclaw sessions export`).

use picoclaw_api::{ChatMessage, Role};
use picoclaw_state::Session;
use serde_json::{Value, json};

/// The session as JSON: key, summary and every message in picoclaw's message format.
pub fn to_json(session: &Session) -> Value {
    json!({
        "key": session.key.as_ref().map(|k| k.as_str().to_owned()),
        "summary": session.summary,
        "messages": session.messages,
    })
}

fn quote(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                ">".to_owned()
            } else {
                format!("> {l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One message as a Markdown block.
pub fn message_markdown(msg: &ChatMessage) -> String {
    let text = msg.text();
    match msg.role {
        Role::System => format!("**System**\n\n{text}\n"),
        Role::User => {
            let images = msg.content.len() - usize::from(!text.is_empty());
            let note = if msg.has_images() {
                format!("\n\n*({images} image(s) attached)*")
            } else {
                String::new()
            };
            format!("**User**\n\n{text}{note}\n")
        }
        Role::Assistant => {
            let mut out = String::from("**Assistant**\n\n");
            if !text.is_empty() {
                out.push_str(&text);
                out.push('\n');
            }
            for call in &msg.tool_calls {
                out.push_str(&format!("\n`{}` `{}`\n", call.name, call.arguments));
            }
            out
        }
        Role::Tool => format!(
            "**Tool result** (`{}`)\n\n{}\n",
            msg.name.as_deref().unwrap_or("tool"),
            quote(&text)
        ),
    }
}

/// The whole session as a Markdown document.
pub fn to_markdown(session: &Session) -> String {
    let key = session.key.as_ref().map_or("(unnamed)", |k| k.as_str());
    let mut out = format!("# Session `{key}`\n\n");
    if let Some(summary) = session.summary.as_deref().filter(|s| !s.trim().is_empty()) {
        out.push_str(&format!("## Summary of earlier turns\n\n{summary}\n\n"));
    }
    for msg in &session.messages {
        out.push_str(&message_markdown(msg));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use picoclaw_api::{SessionKey, ToolCall};

    fn session() -> Session {
        Session::new(
            SessionKey::new("cli:default"),
            vec![
                ChatMessage::user("list files"),
                ChatMessage::assistant_with_tools(
                    "",
                    vec![ToolCall::new("c1", "list_dir", r#"{"path":"."}"#)],
                ),
                ChatMessage::tool_result("c1", "list_dir", "FILE: a.txt\nFILE: b.txt"),
                ChatMessage::assistant("Two files."),
            ],
            Some("Earlier: greetings.".into()),
        )
    }

    #[test]
    fn markdown_reads_like_a_transcript() {
        assert_eq!(
            to_markdown(&session()),
            "# Session `cli:default`\n\n## Summary of earlier turns\n\nEarlier: greetings.\n\n\
             **User**\n\nlist files\n\n\
             **Assistant**\n\n\n`list_dir` `{\"path\":\".\"}`\n\n\
             **Tool result** (`list_dir`)\n\n> FILE: a.txt\n> FILE: b.txt\n\n\
             **Assistant**\n\nTwo files.\n\n"
        );
    }

    #[test]
    fn json_round_trips_the_messages() {
        let v = to_json(&session());
        assert_eq!(v["key"], "cli:default");
        let back: Vec<ChatMessage> = serde_json::from_value(v["messages"].clone()).unwrap();
        assert_eq!(back, session().messages);
    }
}
