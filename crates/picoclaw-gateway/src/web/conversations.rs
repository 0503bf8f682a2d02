//! The Conversations page: every conversation of the state database (channels', the API's, the
//! dashboard's), searchable; one conversation's history; export as JSON or Markdown; clearing a
//! dashboard conversation (the channels' belong to their channel and are read-only here).

use super::chat::{SHOWN_MESSAGES, chat_link, history, pretty_time, web_conversation};
use super::{Ctx, Page, Web, back_to, csrf_field, encode_query, layout};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::html;
use picoclaw_core::{ChatMessage, Role, SessionKey};
use serde::Deserialize;

/// A search reads at most this many of the newest messages of each conversation...
const SEARCH_MESSAGES: usize = 200;
/// ...of at most this many conversations (the most recently updated).
const SEARCH_SESSIONS: usize = 500;
/// Rows listed.
const LISTED: usize = 500;
/// Longest key taken from a request.
const MAX_KEY_CHARS: usize = 512;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route(Page::Conversations.path(), get(list))
        .route("/ui/conversations/view", get(view))
        .route("/ui/conversations/export", get(export))
        .route("/ui/conversations/clear", post(clear))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: String,
}

/// The channel a key belongs to (`telegram`, `api`, `web`...), and the agent for
/// `agent:<id>:<channel>:...` keys.
fn channel_of(key: &str) -> (Option<&str>, &str) {
    if let Some(rest) = key.strip_prefix("agent:")
        && let Some((agent, rest)) = rest.split_once(':')
        && !rest.is_empty()
    {
        return (Some(agent), rest.split(':').next().unwrap_or(rest));
    }
    (None, key.split(':').next().unwrap_or(key))
}

/// Whether any message's text (or tool call) contains `needle` (lowercase).
fn messages_match(messages: &[ChatMessage], needle: &str) -> bool {
    messages.iter().any(|m| {
        m.text().to_lowercase().contains(needle)
            || m.tool_calls
                .iter()
                .any(|c| c.arguments.to_lowercase().contains(needle))
    })
}

async fn list(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Query(query): Query<ListQuery>,
) -> Response {
    let sessions = match web.api.store.list().await {
        Ok(s) => s,
        Err(e) => {
            return super::failure(
                &ctx,
                Page::Conversations,
                "cannot read the conversations",
                e,
            );
        }
    };
    let q = query.q.trim().chars().take(200).collect::<String>();
    let needle = q.to_lowercase();
    let total = sessions.len();
    let mut cut = false;
    let mut rows = Vec::new();
    if needle.is_empty() {
        cut = total > LISTED;
        rows.extend(sessions.into_iter().take(LISTED));
    } else {
        for (i, info) in sessions.into_iter().enumerate() {
            if info.key.as_str().to_lowercase().contains(&needle) {
                rows.push(info);
                continue;
            }
            if i >= SEARCH_SESSIONS {
                cut = true;
                continue;
            }
            if info.message_count > SEARCH_MESSAGES as u64 {
                cut = true;
            }
            match web.api.store.load(&info.key, Some(SEARCH_MESSAGES)).await {
                Ok(s) => {
                    let summary_hit = s
                        .summary
                        .as_deref()
                        .is_some_and(|t| t.to_lowercase().contains(&needle));
                    if summary_hit || messages_match(&s.messages, &needle) {
                        rows.push(info);
                    }
                }
                Err(e) => {
                    return super::failure(
                        &ctx,
                        Page::Conversations,
                        "cannot read a conversation",
                        e,
                    );
                }
            }
        }
        if rows.len() > LISTED {
            rows.truncate(LISTED);
            cut = true;
        }
    }
    let body = html! {
        h1 { (Page::Conversations.title()) }
        form.row.search method="get" action=(Page::Conversations.path()) role="search" {
            div {
                label for="conversation-search" { "Search (the key or the text of the messages)" }
                input #conversation-search type="search" name="q" value=(q);
            }
            button type="submit" { "Search" }
            @if !q.is_empty() {
                a.button.secondary href=(Page::Conversations.path()) { "Show all" }
            }
        }
        @if cut {
            p.muted {
                @if needle.is_empty() {
                    "Showing the " (LISTED) " most recently updated of " (total) " conversations; search to find the others."
                } @else {
                    "The search read the newest " (SEARCH_MESSAGES) " messages of the "
                    (SEARCH_SESSIONS) " most recently updated conversations (keys of all " (total)
                    " were matched); older messages were not searched."
                }
            }
        }
        @if rows.is_empty() {
            p.muted {
                @if needle.is_empty() { "No conversations yet." }
                @else { "No conversation matches “" (q) "”." }
            }
        } @else {
            div.table-wrap {
                table #conversation-list {
                    thead {
                        tr {
                            th scope="col" { "Conversation" }
                            th scope="col" { "Channel" }
                            th.num scope="col" { "Messages" }
                            th scope="col" { "Last update" }
                            th scope="col" { "Open" }
                        }
                    }
                    tbody {
                        @for info in &rows {
                            @let key = info.key.as_str();
                            @let (agent, channel) = channel_of(key);
                            @let web_chat = web_conversation(key);
                            tr {
                                td {
                                    a.mono href=(format!("/ui/conversations/view?key={}", encode_query(key))) { (key) }
                                }
                                td {
                                    span.badge.channel { (channel) }
                                    @if let Some(a) = agent { " " span.badge { "agent " (a) } }
                                    @if web_chat.is_none() { " " span.muted { "read-only" } }
                                }
                                td.num { (info.message_count) }
                                td { (pretty_time(&info.updated_at)) }
                                td {
                                    @if let Some((agent, id)) = web_chat {
                                        a href=(chat_link(agent, id)) { "Open in chat" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&ctx, Page::Conversations, body)
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
    #[serde(default)]
    format: String,
}

/// The key of a request, checked: present and not too long.
fn key_of(key: &str) -> Result<SessionKey, String> {
    let key = key.trim();
    if key.is_empty() {
        return Err("no conversation named: pick one from the list".into());
    }
    if key.chars().count() > MAX_KEY_CHARS || key.chars().any(char::is_control) {
        return Err("that is not a conversation key: pick one from the list".into());
    }
    Ok(SessionKey::new(key))
}

fn not_found(ctx: &Ctx, status: StatusCode, why: &str) -> Response {
    let body = html! {
        h1 { (Page::Conversations.title()) }
        p.notice.error role="alert" { (why) }
        p { a href=(Page::Conversations.path()) { "Back to the conversations" } }
    };
    let mut response = layout(ctx, Page::Conversations, body);
    *response.status_mut() = status;
    response
}

async fn view(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Query(query): Query<KeyQuery>,
) -> Response {
    let key = match key_of(&query.key) {
        Ok(k) => k,
        Err(why) => return not_found(&ctx, StatusCode::BAD_REQUEST, &why),
    };
    let session = match web.api.store.load(&key, Some(SHOWN_MESSAGES)).await {
        Ok(s) => s,
        Err(e) => {
            return super::failure(&ctx, Page::Conversations, "cannot read the conversation", e);
        }
    };
    if session.messages.is_empty() && session.summary.is_none() {
        return not_found(
            &ctx,
            StatusCode::NOT_FOUND,
            "There is no conversation with that key (it may have been cleared).",
        );
    }
    let info = web
        .api
        .store
        .list()
        .await
        .ok()
        .and_then(|all| all.into_iter().find(|i| i.key == key));
    let k = key.as_str();
    let (agent, channel) = channel_of(k);
    let web_chat = web_conversation(k);
    let encoded = encode_query(k);
    let body = html! {
        p { a href=(Page::Conversations.path()) { "← All conversations" } }
        h1.mono { (k) }
        p {
            span.badge.channel { (channel) }
            @if let Some(a) = agent { " " span.badge { "agent " (a) } }
            @if let Some(info) = &info {
                " " (info.message_count) " messages · last update " (pretty_time(&info.updated_at))
                @if info.message_count > session.messages.len() as u64 {
                    " · showing the newest " (session.messages.len())
                }
            }
        }
        div.row.conversation-actions {
            a.button.secondary.export-json href=(format!("/ui/conversations/export?key={encoded}&format=json")) download { "Export JSON" }
            a.button.secondary.export-md href=(format!("/ui/conversations/export?key={encoded}&format=md")) download { "Export Markdown" }
            @if let Some((agent, id)) = web_chat {
                a.button href=(chat_link(agent, id)) { "Continue in chat" }
                form.inline method="post" action="/ui/conversations/clear"
                    data-confirm="Delete this conversation's history? This cannot be undone." {
                    (csrf_field(&ctx))
                    input type="hidden" name="key" value=(k);
                    button #conversation-clear.danger type="submit" { "Clear" }
                }
            } @else {
                p.muted { "This conversation belongs to its channel: it is shown read-only." }
            }
        }
        @if let Some(summary) = &session.summary {
            section.card {
                h2 { "Summary of earlier messages" }
                p.pre { (summary) }
            }
        }
        div #chat-log.conversation-log {
            (history(&session.messages))
        }
        script src=(super::asset_url("chat.js")) defer {}
    };
    layout(&ctx, Page::Conversations, body)
}

/// A file name for a key: `conversation-<key with [A-Za-z0-9_-] only>`.
fn file_name(key: &str, ext: &str) -> String {
    let stem: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    format!("conversation-{stem}.{ext}")
}

/// A conversation as Markdown: its summary, then each message under its role.
fn markdown(key: &str, summary: Option<&str>, messages: &[ChatMessage]) -> String {
    let mut out = format!("# Conversation {key}\n\n");
    if let Some(summary) = summary {
        out.push_str(&format!("## Summary of earlier messages\n\n{summary}\n\n"));
    }
    for m in messages {
        let role = match m.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::Tool => "Tool result",
            _ => "System",
        };
        let text = m.text();
        if m.role == Role::Tool {
            let name = m.name.as_deref().unwrap_or("tool");
            out.push_str(&format!("### {role} `{name}`\n\n```\n{text}\n```\n\n"));
            continue;
        }
        if !text.is_empty() {
            out.push_str(&format!("## {role}\n\n{text}\n\n"));
        }
        for call in &m.tool_calls {
            out.push_str(&format!(
                "### Tool call `{}`\n\n```json\n{}\n```\n\n",
                call.name, call.arguments
            ));
        }
    }
    out
}

async fn export(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Query(query): Query<KeyQuery>,
) -> Response {
    let key = match key_of(&query.key) {
        Ok(k) => k,
        Err(why) => return not_found(&ctx, StatusCode::BAD_REQUEST, &why),
    };
    let format = query.format.trim();
    if format != "json" && format != "md" {
        return not_found(
            &ctx,
            StatusCode::BAD_REQUEST,
            "Export as format=json or format=md.",
        );
    }
    let session = match web.api.store.load(&key, None).await {
        Ok(s) => s,
        Err(e) => {
            return super::failure(&ctx, Page::Conversations, "cannot read the conversation", e);
        }
    };
    if session.messages.is_empty() && session.summary.is_none() {
        return not_found(
            &ctx,
            StatusCode::NOT_FOUND,
            "There is no conversation with that key (it may have been cleared).",
        );
    }
    let (body, content_type) = if format == "json" {
        let doc = serde_json::json!({
            "key": key.as_str(),
            "summary": session.summary,
            "messages": session.messages,
        });
        match serde_json::to_string_pretty(&doc) {
            Ok(text) => (text, "application/json; charset=utf-8"),
            Err(e) => {
                return super::failure(&ctx, Page::Conversations, "cannot export", e);
            }
        }
    } else {
        (
            markdown(key.as_str(), session.summary.as_deref(), &session.messages),
            "text/markdown; charset=utf-8",
        )
    };
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name(key.as_str(), format)
    );
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ClearForm {
    #[serde(default)]
    key: String,
}

async fn clear(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    axum::Form(form): axum::Form<ClearForm>,
) -> Response {
    let back = Page::Conversations.path();
    let key = match key_of(&form.key) {
        Ok(k) => k,
        Err(why) => return back_to(&web, &ctx, back, Err(why)),
    };
    if web_conversation(key.as_str()).is_none() {
        let (_, channel) = channel_of(key.as_str());
        return back_to(
            &web,
            &ctx,
            back,
            Err(format!(
                "'{}' belongs to its channel ({channel}) and is read-only here; only the \
                 dashboard's own conversations (web:...) can be cleared (a chat user can send \
                 /new to start over)",
                key.as_str().chars().take(100).collect::<String>()
            )),
        );
    }
    if super::chat::Slot::busy(&web, &key) {
        return back_to(
            &web,
            &ctx,
            back,
            Err(
                "An answer is being written in this conversation; cancel it or wait, then clear."
                    .to_owned(),
            ),
        );
    }
    match web.api.store.delete(&key).await {
        Ok(true) => back_to(
            &web,
            &ctx,
            back,
            Ok(format!("Cleared the conversation {}.", key.as_str())),
        ),
        Ok(false) => back_to(
            &web,
            &ctx,
            back,
            Err(format!(
                "There is no conversation {} (it was already cleared).",
                key.as_str()
            )),
        ),
        Err(e) => back_to(
            &web,
            &ctx,
            back,
            Err(format!("Could not clear the conversation: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_channel() {
        assert_eq!(channel_of("telegram:42"), (None, "telegram"));
        assert_eq!(channel_of("web:abc"), (None, "web"));
        assert_eq!(channel_of("agent:coder:api:x"), (Some("coder"), "api"));
        assert_eq!(channel_of("cron"), (None, "cron"));
        assert!(key_of(" ").is_err());
        assert!(key_of(&"k".repeat(513)).is_err());
        assert!(key_of("a\nb").is_err());
        assert_eq!(key_of(" web:x ").unwrap().as_str(), "web:x");
    }

    #[test]
    fn exports_have_safe_names_and_every_message() {
        assert_eq!(
            file_name("telegram:../../x\"y", "md"),
            "conversation-telegram_______x_y.md"
        );
        let mut asked = ChatMessage::assistant("");
        asked
            .tool_calls
            .push(picoclaw_api::ToolCall::new("c1", "list_dir", "{}"));
        let md = markdown(
            "web:a",
            Some("earlier"),
            &[
                ChatMessage::user("hello"),
                asked,
                ChatMessage::tool_result("c1", "list_dir", "a.txt"),
                ChatMessage::assistant("bye"),
            ],
        );
        for part in [
            "# Conversation web:a",
            "earlier",
            "## User\n\nhello",
            "### Tool call `list_dir`",
            "a.txt",
            "## Assistant\n\nbye",
        ] {
            assert!(md.contains(part), "{part}: {md}");
        }
    }
}
