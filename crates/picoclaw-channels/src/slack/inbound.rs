//! What Slack sends, into inbox messages: Events API events (`message`, `app_mention`) from
//! either transport, button presses, slash commands and the files attached to messages, plus
//! the Socket Mode listener's callbacks.

use super::{Client, Inner, lock, s};
use crate::Inbox;
use picoclaw_api::{InboundMessage, MediaKind, MediaRef};
use serde_json::Value;
use slack_morphism::prelude::*;
use std::sync::Arc;

/// The largest file a user sends that is downloaded.
const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// Event ids and message timestamps remembered for dropping redeliveries.
const SEEN_CAP: usize = 2048;

/// Threads the bot answered in, remembered so that replies there need no mention.
const THREADS_CAP: usize = 1024;

/// Slack escapes `&`, `<` and `>` in message text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Inner {
    /// An Events API event (`message`, `app_mention`) from either transport. `Ok` once the
    /// message is kept or deliberately ignored; `Err` when the inbox could not keep it (Slack
    /// should deliver it again).
    pub(super) async fn take_event(
        self: &Arc<Self>,
        event_id: Option<&str>,
        event: &Value,
        inbox: &dyn Inbox,
    ) -> Result<(), crate::ChannelError> {
        if let Some(id) = event_id
            && lock(&self.seen).contains(id)
        {
            tracing::debug!(event_id = id, "slack: redelivered event dropped");
            return Ok(());
        }
        let Some(me) = self.me() else {
            return Err(crate::ChannelError::Platform(
                "not signed in to Slack yet".into(),
            ));
        };
        let kind = s(event, "type").unwrap_or_default();
        if kind != "message" && kind != "app_mention" {
            return Ok(());
        }
        // Edits, deletions, joins and other bots' posts are not messages to answer.
        if let Some(subtype) = s(event, "subtype")
            && !matches!(subtype, "file_share" | "thread_broadcast")
        {
            return Ok(());
        }
        let (Some(user), Some(channel), Some(ts)) =
            (s(event, "user"), s(event, "channel"), s(event, "ts"))
        else {
            return Ok(());
        };
        // Slack delivers the bot's own posts back.
        if s(event, "bot_id").is_some() || user == me.user_id {
            return Ok(());
        }
        let message_key = format!("{channel}:{ts}");
        if lock(&self.seen).contains(&message_key) {
            // The same message as `message` and as `app_mention`.
            return Ok(());
        }
        // Mentions are markup in the text as Slack sends it; what users typed is escaped.
        let raw = s(event, "text").unwrap_or_default();
        let mention = format!("<@{}>", me.user_id);
        let mentioned = kind == "app_mention" || raw.contains(&mention);
        let direct = s(event, "channel_type") == Some("im") || channel.starts_with('D');
        let thread_ts = s(event, "thread_ts");
        // In channels: answer when mentioned, or inside a thread the bot answers in; and
        // answer in the thread (a new one under the message when it is not in one).
        let chat_id = if direct {
            match thread_ts {
                Some(t) => format!("{channel}/{t}"),
                None => channel.to_owned(),
            }
        } else {
            let chat = format!("{channel}/{}", thread_ts.unwrap_or(ts));
            if !mentioned && !lock(&self.threads).contains(&chat) {
                return Ok(());
            }
            chat
        };
        let content = unescape(&raw.replace(&mention, "")).trim().to_owned();
        let thread_for_notice = (!direct).then_some(thread_ts.unwrap_or(ts));
        if direct && let Some(result) = self.access().try_pair(user, &content) {
            let text = match result {
                crate::access::Pairing::Paired => "Paired: you can talk to me now.",
                crate::access::Pairing::Refused => "That code is wrong or was already used.",
            };
            self.notice(channel, None, text);
            return Ok(());
        }
        if !self.access().allowed(user, None) {
            tracing::info!(user, "slack: not on allow_from; ignored");
            return Ok(());
        }
        if let Err(first) = self.access().take(user) {
            if first {
                self.notice(
                    channel,
                    thread_for_notice,
                    "You are sending messages faster than I can take them; slow down a little.",
                );
            }
            return Ok(());
        }
        let mut inbound = InboundMessage::new("slack", chat_id.clone(), user, content)
            .with_metadata("message_id", ts)
            .with_metadata("channel_type", if direct { "im" } else { "channel" })
            // For bindings: a direct chat is the user's, else the channel's; the workspace.
            .with_metadata("peer_kind", if direct { "user" } else { "channel" });
        if let Some(team) = s(event, "team").or_else(|| s(event, "user_team")) {
            inbound = inbound.with_metadata("team_id", team);
        }
        if let Some(files) = event.get("files").and_then(Value::as_array)
            && self.config.common.media_dir.is_some()
        {
            for file in files.iter().take(10) {
                match self.save_file(file, channel, ts).await {
                    Ok(media) => inbound.media.push(media),
                    Err(e) => {
                        tracing::warn!(error = %e, "slack: a file could not be saved");
                        inbound.content =
                            format!("{}\n[a file could not be downloaded: {e}]", inbound.content)
                                .trim()
                                .to_owned();
                    }
                }
            }
        }
        if inbound.content.is_empty() && inbound.media.is_empty() {
            return Ok(());
        }
        inbox.deliver(inbound).await?;
        {
            let mut seen = lock(&self.seen);
            seen.insert(message_key, SEEN_CAP);
            if let Some(id) = event_id {
                seen.insert(id.to_owned(), SEEN_CAP);
            }
        }
        if !direct {
            lock(&self.threads).insert(chat_id, THREADS_CAP);
        }
        // A read receipt: 👀 on the message once it is kept (best effort).
        let this = Arc::clone(self);
        let req = SlackApiReactionsAddRequest::new(
            channel.to_owned().into(),
            "eyes".to_owned().into(),
            ts.to_owned().into(),
        );
        tokio::spawn(async move {
            let session = this.client.open_session(&this.token);
            if let Err(e) = session.reactions_add(&req).await {
                tracing::debug!(error = %e, "slack: reaction not added");
            }
        });
        Ok(())
    }

    /// A press of one of our buttons (`block_actions`): its value, as a message from the user
    /// who pressed it, in the conversation of the message it was under.
    pub(super) async fn take_interaction(
        &self,
        payload: &Value,
        inbox: &dyn Inbox,
    ) -> Result<(), crate::InboxError> {
        if s(payload, "type") != Some("block_actions") {
            return Ok(());
        }
        let user = payload.get("user").and_then(|u| s(u, "id"));
        let channel = payload.get("channel").and_then(|c| s(c, "id"));
        let (Some(user), Some(channel)) = (user, channel) else {
            return Ok(());
        };
        let Some(action) = payload
            .get("actions")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        else {
            return Ok(());
        };
        let Some(value) = s(action, "value") else {
            return Ok(());
        };
        if !self.access().allowed(user, None) || self.access().take(user).is_err() {
            return Ok(());
        }
        let thread = payload
            .get("message")
            .and_then(|m| s(m, "thread_ts"))
            .or_else(|| payload.get("container").and_then(|c| s(c, "thread_ts")));
        let chat_id = match thread {
            Some(t) => format!("{channel}/{t}"),
            None => channel.to_owned(),
        };
        let press_id = s(action, "action_ts")
            .or_else(|| s(payload, "trigger_id"))
            .unwrap_or_default();
        let inbound = InboundMessage::new("slack", chat_id, user, value)
            .with_metadata("button", "true")
            .with_metadata("message_id", format!("press-{press_id}"));
        inbox.deliver(inbound).await
    }

    /// A slash command: `/picoclaw new` (or a command of its own, `/new`) becomes `/new`.
    pub(super) async fn take_command(
        self: &Arc<Self>,
        command: &str,
        text: &str,
        user: &str,
        channel: &str,
        inbox: &dyn Inbox,
    ) -> Result<&'static str, String> {
        let content = if command == "/picoclaw" {
            format!("/{}", text.trim())
        } else {
            format!("{command} {}", text.trim()).trim().to_owned()
        };
        if let Some(result) = self.access().try_pair(user, &content) {
            return Ok(match result {
                crate::access::Pairing::Paired => "Paired: you can talk to me now.",
                crate::access::Pairing::Refused => "That code is wrong or was already used.",
            });
        }
        if !self.access().allowed(user, None) {
            return Ok("You are not on this bot's allow-list.");
        }
        if self.access().take(user).is_err() {
            return Ok("Slow down a little.");
        }
        let id = format!(
            "cmd-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let inbound = InboundMessage::new("slack", channel, user, content)
            .with_metadata("message_id", id)
            .with_metadata("command", command);
        inbox.deliver(inbound).await.map_err(|e| e.to_string())?;
        // Seen only by the user who typed the command; the answer follows in the conversation.
        Ok("Got it.")
    }

    /// Downloads one file of a message (`url_private_download`, with the bot token) into
    /// `dir/<channel>/<ts>-<name>`.
    async fn save_file(&self, file: &Value, channel: &str, ts: &str) -> Result<MediaRef, String> {
        use http_body_util::BodyExt;
        let name = s(file, "name").unwrap_or("file").to_owned();
        let size = file.get("size").and_then(Value::as_u64).unwrap_or_default();
        if size > MAX_DOWNLOAD_BYTES {
            return Err(format!(
                "{name} is {} MiB; files up to 20 MiB are taken",
                size / (1024 * 1024)
            ));
        }
        let url = s(file, "url_private_download")
            .or_else(|| s(file, "url_private"))
            .ok_or_else(|| format!("{name} has no download URL (the file may be external)"))?;
        let request = hyper::Request::get(url)
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.config.bot_token),
            )
            .body(http_body_util::Empty::new())
            .map_err(|e| format!("bad download URL for {name}: {e}"))?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.download.request(request),
        )
        .await
        .map_err(|_| format!("{name}: download timed out"))?
        .map_err(|e| format!("{name}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!(
                "{name}: Slack answered {} (the app needs the files:read scope)",
                response.status()
            ));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_DOWNLOAD_BYTES as usize)
            .collect()
            .await
            .map_err(|e| format!("{name}: {e}"))?
            .to_bytes();
        let path = crate::settings::save_download(
            &self.config.common,
            channel,
            &format!("{}-{name}", ts.replace('.', "_")),
            body.to_vec(),
        )
        .await?;
        let mime = s(file, "mimetype").unwrap_or_default();
        let kind = if mime.starts_with("image/") {
            MediaKind::Image
        } else if mime.starts_with("audio/") || s(file, "subtype") == Some("slack_audio") {
            MediaKind::Audio
        } else if mime.starts_with("video/") {
            MediaKind::Video
        } else {
            MediaKind::Document
        };
        Ok(MediaRef::new(kind, path.display().to_string()).with_name(name))
    }
}

// Socket Mode callbacks are plain functions; what they need travels in the listener's user
// state.
pub(super) struct SocketState {
    pub(super) inner: Arc<Inner>,
    pub(super) inbox: Arc<dyn Inbox>,
}

async fn socket_state(states: &SlackClientEventsUserState) -> Option<(Arc<Inner>, Arc<dyn Inbox>)> {
    let guard = states.read().await;
    guard
        .get_user_state::<Arc<SocketState>>()
        .map(|s| (Arc::clone(&s.inner), Arc::clone(&s.inbox)))
}

fn boxed(e: String) -> Box<dyn std::error::Error + Send + Sync> {
    e.into()
}

pub(super) async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let (inner, inbox) = socket_state(&states)
        .await
        .ok_or_else(|| boxed("slack: listener state missing".into()))?;
    let value = serde_json::to_value(&event.event).map_err(|e| boxed(e.to_string()))?;
    inner
        .take_event(Some(event.event_id.as_ref()), &value, inbox.as_ref())
        .await
        .map_err(|e| boxed(e.to_string()))
}

pub(super) async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let (inner, inbox) = socket_state(&states)
        .await
        .ok_or_else(|| boxed("slack: listener state missing".into()))?;
    let value = serde_json::to_value(&event).map_err(|e| boxed(e.to_string()))?;
    inner
        .take_interaction(&value, inbox.as_ref())
        .await
        .map_err(|e| boxed(e.to_string()))
}

pub(super) async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<Client>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let (inner, inbox) = socket_state(&states)
        .await
        .ok_or_else(|| boxed("slack: listener state missing".into()))?;
    let reply = inner
        .take_command(
            event.command.as_ref(),
            event.text.as_deref().unwrap_or_default(),
            event.user_id.as_ref(),
            event.channel_id.as_ref(),
            inbox.as_ref(),
        )
        .await
        .map_err(boxed)?;
    Ok(SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text(reply.to_owned()),
    ))
}

/// Errors the listener reports: logged. A failed callback (the inbox could not keep the
/// message) is answered with a non-success status, so the envelope is not acknowledged and
/// Slack delivers it again.
pub(super) fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(error = %err, "slack socket mode");
    HttpStatusCode::SERVICE_UNAVAILABLE
}
