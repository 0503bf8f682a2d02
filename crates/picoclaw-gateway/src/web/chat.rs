//! The Chat page: the dashboard's own conversations (`web:<id>`, or `agent:<a>:web:<id>` with
//! another agent), their history rendered on the server, and `POST /ui/api/chat`, which runs a
//! turn and streams its events (`text/event-stream`) to the page's script (`assets/chat.js`).
//!
//! One turn at a time per conversation (a second send gets 409); a browser that goes away
//! cancels its turn. An attached file is saved under the agent's workspace
//! (`media/web/<id>/<name>`, the name reduced to safe characters) and handed to the model the
//! way the channels' files are: an image is shown to the model, any other file is named by
//! where it was saved.

use super::{Ctx, Page, Web, asset_url, json_error, layout};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use maud::{Markup, html};
use picoclaw_core::{AgentEvent, ChatMessage, ContentPart, Role, SessionKey, TurnOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Largest attached file (decoded).
pub(super) const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
/// Largest image shown to the model (vendors take about 5 MB per image), as the channels do.
const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Longest message text.
const MAX_MESSAGE_CHARS: usize = 100_000;
/// The chat request's body limit: a 10 MiB file in base64 and the message.
const MAX_CHAT_BODY_BYTES: usize = MAX_ATTACHMENT_BYTES / 3 * 4 + 1024 * 1024;
/// Conversations listed beside the chat.
const LISTED: usize = 40;
/// Messages of a conversation shown (the newest).
pub(super) const SHOWN_MESSAGES: usize = 1000;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route(Page::Chat.path(), get(show))
        .route(
            "/ui/api/chat",
            post(send).layer(DefaultBodyLimit::max(MAX_CHAT_BODY_BYTES)),
        )
}

/// Whether `id` may name a dashboard conversation: `[A-Za-z0-9_-]{1,64}`.
pub(super) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new conversation id: 12 random hex digits.
fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The dashboard conversation a session key is, if it is one: `(agent, id)`, the agent `None`
/// for the default one (`web:<id>`), `Some(a)` for `agent:<a>:web:<id>`.
pub(super) fn web_conversation(key: &str) -> Option<(Option<&str>, &str)> {
    if let Some(id) = key.strip_prefix("web:") {
        return valid_id(id).then_some((None, id));
    }
    let rest = key.strip_prefix("agent:")?;
    let (agent, rest) = rest.split_once(':')?;
    let id = rest.strip_prefix("web:")?;
    (!agent.is_empty() && valid_id(id)).then_some((Some(agent), id))
}

/// The chat's link for a dashboard conversation.
pub(super) fn chat_link(agent: Option<&str>, id: &str) -> String {
    match agent {
        Some(a) => format!(
            "/ui/chat?c={}&agent={}",
            super::encode_query(id),
            super::encode_query(a)
        ),
        None => format!("/ui/chat?c={}", super::encode_query(id)),
    }
}

/// The agent a dashboard conversation talks to.
struct Target {
    /// The agent's id when it is not the default one.
    named: Option<String>,
    agent: picoclaw_core::Agent,
    workspace: Option<PathBuf>,
    key: SessionKey,
}

/// The agent `agent` (the default when `None` or empty) and the key of conversation `id` with it.
fn resolve(web: &Web, agent: Option<&str>, id: &str) -> Result<Target, String> {
    let agent = agent.map(str::trim).filter(|a| !a.is_empty());
    let base = format!("web:{id}");
    let Some(agents) = &web.api.agents else {
        return match agent {
            None | Some(picoclaw_config::MAIN_AGENT) => Ok(Target {
                named: None,
                agent: web.api.agent.clone(),
                workspace: None,
                key: SessionKey::new(base),
            }),
            Some(a) => Err(format!(
                "no agent '{}'; this gateway has one agent, main",
                a.chars().take(64).collect::<String>()
            )),
        };
    };
    let chosen = match agent {
        None => agents.default_agent(),
        Some(a) => agents.get(a).ok_or_else(|| {
            format!(
                "no agent '{}'; known: {}",
                a.chars().take(64).collect::<String>(),
                agents.ids()
            )
        })?,
    };
    let is_default = chosen.id == agents.default_agent().id;
    Ok(Target {
        named: (!is_default).then(|| chosen.id.clone()),
        agent: chosen.agent.clone(),
        workspace: Some(chosen.workspace.clone()).filter(|w| !w.as_os_str().is_empty()),
        key: agents.session_key(&chosen.id, &base),
    })
}

#[derive(Debug, Deserialize)]
struct ChatQuery {
    #[serde(default)]
    c: Option<String>,
    #[serde(default)]
    agent: Option<String>,
}

/// One listed dashboard conversation.
struct Listed {
    agent: Option<String>,
    id: String,
    title: String,
    updated: String,
}

/// The dashboard's conversations, newest first, each titled by its first user words.
async fn listed(web: &Web) -> Result<Vec<Listed>, picoclaw_state::StateError> {
    let mut out = Vec::new();
    for info in web.api.store.list().await? {
        let Some((agent, id)) = web_conversation(info.key.as_str()) else {
            continue;
        };
        let session = web.api.store.load(&info.key, Some(200)).await?;
        let first = session
            .messages
            .iter()
            .find(|m| m.role == Role::User)
            .map(ChatMessage::text)
            .unwrap_or_default();
        out.push(Listed {
            agent: agent.map(str::to_owned),
            id: id.to_owned(),
            title: title_of(&first),
            updated: pretty_time(&info.updated_at),
        });
        if out.len() == LISTED {
            break;
        }
    }
    Ok(out)
}

/// The first words of a message (at most 60 characters, on one line).
fn title_of(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(no text)".to_owned();
    }
    if flat.chars().count() <= 60 {
        return flat;
    }
    let mut cut: String = flat.chars().take(59).collect();
    cut.push('…');
    cut
}

/// An RFC 3339 time as [`super::when`] shows times (the text itself when it does not parse).
pub(super) fn pretty_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| super::when(t.timestamp_millis()))
        .unwrap_or_else(|_| rfc3339.to_owned())
}

async fn show(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Query(q): Query<ChatQuery>,
) -> Response {
    let (id, is_new) = match q.c.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) if valid_id(c) => (c.to_owned(), false),
        Some(_) => {
            return refused(
                &ctx,
                "That conversation id is not valid (letters, digits, - and _, at most 64): \
                 pick a conversation from the list or start a new one.",
            );
        }
        None => match new_id() {
            Ok(id) => (id, true),
            Err(e) => {
                return super::failure(&ctx, Page::Chat, "cannot make a conversation id", e);
            }
        },
    };
    let target = match resolve(&web, q.agent.as_deref(), &id) {
        Ok(t) => t,
        Err(why) => return refused(&ctx, &format!("{why}. Pick an agent from the list.")),
    };
    let conversations = match listed(&web).await {
        Ok(l) => l,
        Err(e) => return super::failure(&ctx, Page::Chat, "cannot read the conversations", e),
    };
    let session = if is_new {
        picoclaw_state::Session::default()
    } else {
        match web.api.store.load(&target.key, Some(SHOWN_MESSAGES)).await {
            Ok(s) => s,
            Err(e) => {
                return super::failure(&ctx, Page::Chat, "cannot read the conversation", e);
            }
        }
    };
    let agents: Vec<(String, String)> = web
        .api
        .agents
        .as_ref()
        .map(|set| {
            set.agents()
                .iter()
                .map(|a| {
                    let label = if a.name.is_empty() {
                        a.id.clone()
                    } else {
                        format!("{} ({})", a.name, a.id)
                    };
                    (a.id.clone(), label)
                })
                .collect()
        })
        .unwrap_or_default();
    let agent_value = target.named.clone().unwrap_or_default();
    let body = html! {
        div.chat-page {
            aside.chat-side aria-label="Conversations" {
                form.chat-new-form method="get" action="/ui/chat" {
                    @if agents.len() > 1 {
                        label for="chat-agent" { "Agent" }
                        select #chat-agent name="agent" {
                            @for (agent_id, label) in &agents {
                                @if Some(agent_id) == target.named.as_ref()
                                    || (target.named.is_none() && Some(agent_id) == agents.first().map(|a| &a.0)) {
                                    option value=(agent_id) selected { (label) }
                                } @else {
                                    option value=(agent_id) { (label) }
                                }
                            }
                        }
                    }
                    button #chat-new type="submit" { "New conversation" }
                }
                h2 { "Conversations" }
                @if conversations.is_empty() {
                    p.muted { "No dashboard conversations yet." }
                }
                ul #chat-conversations {
                    @for c in &conversations {
                        li {
                            @let current = c.id == id && c.agent == target.named;
                            a href=(chat_link(c.agent.as_deref(), &c.id)) aria-current=[current.then_some("page")] {
                                span.title { (c.title) }
                                span.meta.muted {
                                    @if let Some(a) = &c.agent { (a) " · " }
                                    (c.updated)
                                }
                            }
                        }
                    }
                }
            }
            section.chat-main aria-label="Chat" {
                h1 {
                    (Page::Chat.title())
                    @if let Some(a) = &target.named { " with " (a) }
                }
                @if let Some(summary) = &session.summary {
                    details.summary {
                        summary { "Summary of earlier messages" }
                        p.pre { (summary) }
                    }
                }
                div #chat-log aria-live="polite" {
                    (history(&session.messages))
                }
                noscript { p.notice.error { "Sending messages needs JavaScript." } }
                form #chat-form data-conversation=(id) data-agent=(agent_value) {
                    label for="chat-input" { "Message" }
                    textarea #chat-input name="message" rows="3"
                        placeholder="Write a message (Enter sends, Shift+Enter is a new line)" {}
                    div.row.chat-actions {
                        div.chat-file-wrap {
                            label for="chat-file" { "Attach a file (up to 10 MiB)" }
                            input #chat-file type="file" name="file";
                        }
                        button #chat-send type="submit" { "Send" }
                        button #chat-cancel.secondary type="button" disabled { "Cancel" }
                    }
                    p #chat-status.muted role="status" {}
                }
            }
        }
        script src=(asset_url("chat.js")) defer {}
    };
    layout(&ctx, Page::Chat, body)
}

/// A page that says why a request was refused (400).
fn refused(ctx: &Ctx, why: &str) -> Response {
    let body = html! {
        h1 { (Page::Chat.title()) }
        p.notice.error role="alert" { (why) }
        p { a href="/ui/chat" { "Start a new conversation" } }
    };
    let mut response = layout(ctx, Page::Chat, body);
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// A conversation's messages: the user's as text, the assistant's Markdown as text the script
/// renders (`div.md[data-md]`), tool calls folded with their arguments and results.
pub(super) fn history(messages: &[ChatMessage]) -> Markup {
    let results: std::collections::HashMap<&str, &ChatMessage> = messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .filter_map(|m| m.tool_call_id.as_deref().map(|id| (id, m)))
        .collect();
    let calls: HashSet<&str> = messages
        .iter()
        .flat_map(|m| m.tool_calls.iter().map(|c| c.id.as_str()))
        .collect();
    html! {
        @for m in messages {
            @match m.role {
                Role::User => {
                    div.msg.user {
                        div.who { "You" }
                        p.pre { (m.text()) }
                        @if m.has_images() { p.muted { "(with an image)" } }
                    }
                },
                Role::Assistant => {
                    @let text = m.text();
                    @if !text.is_empty() {
                        div.msg.assistant {
                            div.who { "Assistant" }
                            div.md data-md { (text) }
                        }
                    }
                    @for call in &m.tool_calls {
                        @let result = results.get(call.id.as_str());
                        (tool_details(&call.name, &call.arguments, result.map(|r| r.text())))
                    }
                },
                // Results whose call is not in the loaded messages (cut by the limit).
                Role::Tool if !m.tool_call_id.as_deref().is_some_and(|id| calls.contains(id)) => {
                    (tool_details(m.name.as_deref().unwrap_or("tool"), "", Some(m.text())))
                },
                _ => {},
            }
        }
    }
}

fn tool_details(name: &str, arguments: &str, result: Option<String>) -> Markup {
    html! {
        details.tool {
            summary { "Tool " code { (name) } }
            @if !arguments.is_empty() {
                div.tool-part { span.muted { "Arguments" } pre { (arguments) } }
            }
            @if let Some(result) = result {
                div.tool-part { span.muted { "Result" } pre { (result) } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct SendRequest {
    conversation: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    attachment: Option<Attachment>,
}

#[derive(Debug, Deserialize)]
struct Attachment {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    data: String,
}

/// The conversations with a turn running (the gateway's state, by address, and the key).
static RUNNING: Mutex<Option<HashSet<(usize, String)>>> = Mutex::new(None);

/// A conversation's turn slot, given back when dropped.
pub(super) struct Slot((usize, String));

impl Slot {
    /// Whether a turn of `key` is running now.
    pub(super) fn busy(web: &Web, key: &SessionKey) -> bool {
        let entry = (Arc::as_ptr(&web.api) as usize, key.as_str().to_owned());
        RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|set| set.contains(&entry))
    }

    fn claim(web: &Web, key: &SessionKey) -> Option<Slot> {
        let entry = (Arc::as_ptr(&web.api) as usize, key.as_str().to_owned());
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Not `then_some(Slot(..))`: that builds the slot, and drops it (giving the
        // conversation back, under this very lock) when the conversation is taken.
        if running
            .get_or_insert_with(HashSet::new)
            .insert(entry.clone())
        {
            Some(Slot(entry))
        } else {
            None
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(set) = running.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// One server-sent event.
fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Forwards a turn's events to the response stream.
struct Events(tokio::sync::mpsc::UnboundedSender<String>);

impl picoclaw_core::EventSink for Events {
    fn event(&self, e: AgentEvent) {
        let line = match e {
            AgentEvent::TextDelta(text) => event("delta", &Value::String(text)),
            AgentEvent::ToolStarted {
                id,
                name,
                arguments,
            } => event(
                "tool_start",
                &json!({"id": id, "name": name, "arguments": arguments}),
            ),
            AgentEvent::ToolFinished {
                id,
                name,
                is_error,
                preview,
            } => event(
                "tool_end",
                &json!({"id": id, "name": name, "is_error": is_error, "preview": preview}),
            ),
            _ => return,
        };
        let _ = self.0.send(line);
    }
}

/// A file name reduced to `[A-Za-z0-9._-]`: its last path component, no leading dots.
pub(super) fn safe_name(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| if c.is_ascii() { c } else { '_' })
        .collect();
    picoclaw_channels::settings::safe_file_name(&ascii)
}

/// The MIME type of an image the model can be shown, by the file's extension.
fn image_mime(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// Decodes an attachment's base64 (a `data:` URL's prefix is dropped), at most
/// [`MAX_ATTACHMENT_BYTES`].
fn decode_attachment(data: &str) -> Result<Vec<u8>, (StatusCode, String)> {
    use base64::Engine;
    let data = match data.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => data,
    };
    let data = data.trim();
    let too_big = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the attached file is larger than {} MiB; send a smaller file",
                MAX_ATTACHMENT_BYTES / (1024 * 1024)
            ),
        )
    };
    if data.len() / 4 * 3 > MAX_ATTACHMENT_BYTES + 3 {
        return Err(too_big());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the attachment's data is not base64 ({e}); attach the file again"),
            )
        })?;
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

async fn send(State(web): State<Web>, body: Bytes) -> Response {
    let request: SendRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request is not a chat message ({e}); send \
                     {{\"conversation\": id, \"message\": text}}"
                ),
            );
        }
    };
    let id = request.conversation.trim();
    if !valid_id(id) {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the conversation id must be 1 to 64 letters, digits, - or _; start a new \
             conversation",
        );
    }
    let text = request.message.trim();
    if text.is_empty() && request.attachment.is_none() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the message is empty: write something or attach a file",
        );
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the message is longer than {MAX_MESSAGE_CHARS} characters; shorten it"),
        );
    }
    let target = match resolve(&web, request.agent.as_deref(), id) {
        Ok(t) => t,
        Err(why) => return json_error(StatusCode::NOT_FOUND, why),
    };
    let Some(slot) = Slot::claim(&web, &target.key) else {
        return json_error(
            StatusCode::CONFLICT,
            "this conversation is still answering the previous message; wait for it or cancel \
             it, then send again",
        );
    };
    let mut content = text.to_owned();
    let mut images = Vec::new();
    if let Some(attachment) = &request.attachment {
        let bytes = match decode_attachment(&attachment.data) {
            Ok(b) => b,
            Err((status, why)) => return json_error(status, why),
        };
        let Some(workspace) = &target.workspace else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "this gateway's agent has no workspace to save files in; send the message \
                 without the file",
            );
        };
        let name = safe_name(&attachment.name);
        let mut common = picoclaw_channels::settings::Common::default();
        common.media_dir = Some(workspace.join("media").join("web"));
        common.media_base = Some(workspace.clone());
        let image = image_mime(&name)
            .filter(|_| bytes.len() <= MAX_IMAGE_BYTES)
            .map(|mime| {
                use base64::Engine;
                let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                format!("data:{mime};base64,{data}")
            });
        let saved =
            match picoclaw_channels::settings::save_download(&common, id, &name, bytes).await {
                Ok(path) => path,
                Err(e) => {
                    return json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("{e}; check that the agent's workspace is writable"),
                    );
                }
            };
        tracing::debug!(
            file = %saved.display(),
            kind = %attachment.kind.chars().filter(|c| !c.is_control()).take(100).collect::<String>(),
            "saved a dashboard attachment"
        );
        // The notes the channels write for their files (see the dispatcher).
        let note = match image {
            Some(url) => {
                images.push(ContentPart::image(url));
                format!("[photo saved at {}]", saved.display())
            }
            None => format!("[file {name} saved at {}]", saved.display()),
        };
        if !content.is_empty() {
            content.push('\n');
        }
        content.push_str(&note);
    }
    stream_turn(&web, target, id.to_owned(), content, images, slot)
}

/// Runs the turn and streams its events; the turn is cancelled when the browser goes away.
fn stream_turn(
    web: &Web,
    target: Target,
    id: String,
    content: String,
    images: Vec<ContentPart>,
    slot: Slot,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let cancel = picoclaw_core::CancellationToken::new();
    let guard = cancel.clone().drop_guard();
    let timeout = web.api.turn_timeout;
    let metrics = web.api.metrics.clone();
    tokio::spawn(async move {
        let sink = Events(tx);
        let options = TurnOptions::new()
            .cancel_with(cancel)
            .chat("web", id)
            .with_images(images);
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(
            timeout,
            target
                .agent
                .turn(&target.key, ChatMessage::user(content), options, &sink),
        )
        .await;
        // Counted as the API's turns are (the dashboard is a client of the same agent).
        crate::http::count_turn(&metrics, started, &result);
        let last = match &result {
            Ok(Ok(o)) => {
                let finish = match o.end {
                    picoclaw_core::TurnEnd::Truncated => "length",
                    picoclaw_core::TurnEnd::MaxIterations => "max_iterations",
                    picoclaw_core::TurnEnd::RateLimited => "rate_limited",
                    _ => "stop",
                };
                event(
                    "done",
                    &json!({"finish": finish, "usage": {
                        "prompt_tokens": o.usage.prompt_tokens,
                        "completion_tokens": o.usage.completion_tokens}}),
                )
            }
            other => {
                let message = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the agent did not finish within the gateway's turn timeout".to_owned(),
                };
                event("error", &json!({"message": message}))
            }
        };
        // The conversation is free before the browser hears the end, so a send that follows at
        // once is not refused as a second turn.
        drop(slot);
        let _ = sink.0.send(last);
    });
    let body = futures::stream::poll_fn(move |cx| {
        // The guard lives as long as the response: a browser that goes away cancels the turn.
        let _keep = &guard;
        rx.poll_recv(cx)
    })
    .map(|s| Ok::<_, std::convert::Infallible>(Bytes::from(s)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        assert!(valid_id("a1b2c3d4e5f6"));
        assert!(valid_id("my-chat_2"));
        assert!(valid_id(&"x".repeat(64)));
        for bad in ["", "../x", "a b", "a:b", "é", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
        let id = new_id().unwrap();
        assert_eq!(id.len(), 12);
        assert!(valid_id(&id));
    }

    #[test]
    fn web_keys_are_recognised() {
        assert_eq!(web_conversation("web:abc"), Some((None, "abc")));
        assert_eq!(
            web_conversation("agent:coder:web:abc"),
            Some((Some("coder"), "abc"))
        );
        for other in [
            "telegram:1",
            "api:web:x",
            "web:",
            "web:a/b",
            "agent::web:x",
            "agent:x",
        ] {
            assert_eq!(web_conversation(other), None, "{other}");
        }
        assert_eq!(chat_link(Some("a b"), "x"), "/ui/chat?c=x&agent=a%20b");
    }

    #[test]
    fn names_cannot_climb() {
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("rapport été.pdf"), "rapport__t_.pdf");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(image_mime("a.PNG"), Some("image/png"));
        assert_eq!(image_mime("a.txt"), None);
    }

    #[test]
    fn attachments_are_bounded() {
        assert_eq!(decode_attachment("aGk=").unwrap(), b"hi");
        assert_eq!(
            decode_attachment("data:text/plain;base64,aGk=").unwrap(),
            b"hi"
        );
        assert_eq!(
            decode_attachment("not base64!").unwrap_err().0,
            StatusCode::BAD_REQUEST
        );
        let big = "A".repeat((MAX_ATTACHMENT_BYTES + 8) / 3 * 4);
        assert_eq!(
            decode_attachment(&big).unwrap_err().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn history_escapes_and_folds_tools() {
        let call = picoclaw_api::ToolCall::new("c1", "read_file", r#"{"path":"a.txt"}"#);
        let mut asked = ChatMessage::assistant("");
        asked.tool_calls.push(call);
        let messages = vec![
            ChatMessage::user("<b>hi</b>"),
            asked,
            ChatMessage::tool_result("c1", "read_file", "contents <i>"),
            ChatMessage::assistant("<script>alert(1)</script>"),
        ];
        let html = history(&messages).into_string();
        assert!(html.contains("&lt;b&gt;hi&lt;/b&gt;"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert_eq!(
            html.matches("<details class=\"tool\">").count(),
            1,
            "{html}"
        );
        assert!(html.contains("contents &lt;i&gt;"), "{html}");
        assert!(
            html.contains("{&quot;path&quot;:&quot;a.txt&quot;}"),
            "{html}"
        );
        assert_eq!(title_of("  hello\n  world "), "hello world");
        assert_eq!(title_of(&"w".repeat(100)).chars().count(), 60);
    }
}
