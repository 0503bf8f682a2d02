//! Feishu (飞书), or Lark with `is_lark`: a custom app's bot. Events come over the long
//! connection the official SDKs use (`mode: "websocket"`, the default: no public URL needed) or
//! as event subscriptions on the gateway's `/webhook/feishu` (`mode: "webhook"`: signed,
//! encrypted, token-checked). Direct messages are answered; in groups, mentions of the bot and
//! messages starting with a configured prefix. Text, rich text (`post`), images and voice come
//! in; answers go out as interactive cards (JSON 2.0) whose markdown element renders the agent's
//! Markdown, split into parts, the first a reply to the message it answers.
//!
//! Events are acknowledged (the long connection's frame, the webhook's 200) only once the inbox
//! kept their message; redeliveries are dropped by event id and message id.
//!
//! `api_base` points every Open API call and the long connection's endpoint at another host (a
//! test's loopback fake); plain `http://` is then accepted. This module holds the settings, the
//! channel and how events become inbox messages; `api` speaks the Open API, `frame` and `ws` the
//! long connection, `webhook` the HTTP callbacks.

mod api;
mod frame;
pub(crate) mod webhook;
mod ws;

use crate::access::{Access, Admission};
use crate::group::{GroupTrigger, Seen};
use crate::json_str as s;
use crate::lock;
use crate::settings::{ChannelSettings, Common};
use crate::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest, WebhookResponse};
use async_trait::async_trait;
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// The longest part of an answer, in characters: cards are limited to about 30 KB of JSON, and
/// long cards are hard to read in the client.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Feishu's Open API (China).
pub const FEISHU_API_BASE: &str = "https://open.feishu.cn";
/// Lark's Open API (outside China).
pub const LARK_API_BASE: &str = "https://open.larksuite.com";

/// Event and message ids remembered against redeliveries.
const SEEN_CAP: usize = 4096;

/// How events reach picoclaw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeishuMode {
    /// The long connection picoclaw dials (no public URL needed).
    #[default]
    WebSocket,
    /// Event subscriptions posted to the gateway's `/webhook/feishu`.
    Webhook,
}

/// `channels.feishu` of the config.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct FeishuConfig {
    /// The app's id (`cli_...`).
    pub app_id: String,
    /// The app's secret.
    pub app_secret: String,
    /// Decrypts bodies and checks signatures of webhooks.
    pub encrypt_key: Option<String>,
    /// The token webhook events carry.
    pub verification_token: Option<String>,
    /// How events arrive.
    pub mode: FeishuMode,
    /// The Open API base, without a trailing `/`.
    pub api_base: String,
    /// When groups are answered.
    pub group: GroupTrigger,
    /// allow_from, rate limit, media folder, paired-users file.
    pub common: Common,
}

impl std::fmt::Debug for FeishuConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuConfig")
            .field("app_id", &self.app_id)
            .field("mode", &self.mode)
            .field("api_base", &self.api_base)
            .field("encrypt_key", &self.encrypt_key.as_ref().map(|_| "<set>"))
            .field(
                "verification_token",
                &self.verification_token.as_ref().map(|_| "<set>"),
            )
            .field("allow_from", &self.common.allow_from)
            .finish_non_exhaustive()
    }
}

impl ChannelSettings for FeishuConfig {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn missing(key: &str, how: &str) -> ChannelError {
    ChannelError::Rejected(format!(
        "channels.feishu.{key} is empty: {how} (docs/channels/feishu.md)"
    ))
}

/// Webhook mode without an `encrypt_key`: events would be neither signed nor encrypted, and
/// the verification token they carry in the clear proves nothing.
fn webhook_needs_encrypt_key() -> ChannelError {
    ChannelError::Rejected(
        "channels.feishu.encrypt_key is empty: webhook mode needs it, or anyone who finds \
         /webhook/feishu could post events (without it they are neither signed nor encrypted); \
         copy the Encrypt Key from the developer console, Events & Callbacks → Encryption \
         Strategy (docs/channels/feishu.md)"
            .into(),
    )
}

impl FeishuConfig {
    /// Reads `channels.feishu` ([`crate::FeishuSection`]'s keys) from JSON.
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::FeishuSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.feishu: {e}")))?;
        Self::from_section(&section, value)
    }

    /// Builds from the typed section; `raw` is the same section as JSON (for `group_trigger`).
    pub fn from_section(section: &crate::FeishuSection, raw: &Value) -> Result<Self, ChannelError> {
        let text = |v: &Option<String>| crate::sections::trimmed(v.as_ref());
        let app_id = text(&section.app_id).ok_or_else(|| {
            missing(
                "app_id",
                "put the App ID (cli_...) from the app's Credentials & Basic Info page there",
            )
        })?;
        let app_secret = text(&section.app_secret).ok_or_else(|| {
            missing(
                "app_secret",
                "put the App Secret from the app's Credentials & Basic Info page there",
            )
        })?;
        let mode = match text(&section.mode).as_deref() {
            None | Some("websocket" | "ws") => FeishuMode::WebSocket,
            Some("webhook") => FeishuMode::Webhook,
            Some(other) => {
                return Err(ChannelError::Rejected(format!(
                    "channels.feishu.mode is '{other}'; use \"websocket\" (the long connection, \
                     no public URL) or \"webhook\" (/webhook/feishu)"
                )));
            }
        };
        let encrypt_key = text(&section.encrypt_key);
        let verification_token = text(&section.verification_token);
        if mode == FeishuMode::Webhook && encrypt_key.is_none() {
            return Err(webhook_needs_encrypt_key());
        }
        let default_base = if section.is_lark.unwrap_or(false) {
            LARK_API_BASE
        } else {
            FEISHU_API_BASE
        };
        let api_base = crate::settings::checked_api_base(section.api_base.as_deref(), "feishu")?
            .unwrap_or_else(|| default_base.to_owned());
        Ok(Self {
            app_id,
            app_secret,
            encrypt_key,
            verification_token,
            mode,
            api_base,
            group: GroupTrigger::from_settings(raw),
            common: Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute),
        })
    }
}

/// Builds `channels.feishu` for the gateway.
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    let section: crate::FeishuSection = setup.settings()?;
    let config = FeishuConfig::from_section(&section, &setup.settings)?
        .with_media_dir(&setup.media_dir)
        .with_media_base(&setup.workspace)
        .with_paired_file(&setup.paired_file);
    Ok(Arc::new(FeishuChannel::new(config)?))
}

/// The Feishu / Lark channel.
pub struct FeishuChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FeishuChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeishuChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    config: FeishuConfig,
    api: api::Api,
    /// The bot's open_id, known once `run` asked Feishu.
    bot: Mutex<Option<String>>,
    access: OnceLock<Access>,
    seen: Seen,
}

impl FeishuChannel {
    /// The channel of `config`; nothing is contacted before `run`.
    pub fn new(config: FeishuConfig) -> Result<Self, ChannelError> {
        if config.mode == FeishuMode::Webhook && config.encrypt_key.is_none() {
            return Err(webhook_needs_encrypt_key());
        }
        let api = api::Api::new(
            config.api_base.clone(),
            config.app_id.clone(),
            config.app_secret.clone(),
        )?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                api,
                bot: Mutex::new(None),
                access: OnceLock::new(),
                seen: Seen::new(SEEN_CAP),
            }),
        })
    }

    /// Who may talk to the bot (the one-time pairing code, for tests and `status`).
    pub fn access(&self) -> &Access {
        self.inner.access()
    }

    /// Signed in as `bot` without asking Feishu (the fuzz targets have no Feishu).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn signed_in_for_fuzzing(&self, bot: &str) {
        *lock(&self.inner.bot) = Some(bot.to_owned());
    }

    /// Sends one message: as a reply to `reply_to` when it names one (taken: later messages go
    /// to the chat), else to the chat. A reply to a message that is gone (recalled) goes to the
    /// chat instead.
    async fn post(
        &self,
        chat_id: &str,
        reply_to: &mut Option<&str>,
        msg_type: &str,
        content: &str,
    ) -> Result<(), ChannelError> {
        let api = &self.inner.api;
        let Some(target) = reply_to.take() else {
            return api.send(chat_id, None, msg_type, content).await;
        };
        if let Err(e) = api.send(chat_id, Some(target), msg_type, content).await {
            tracing::warn!(error = %e, "feishu: reply failed; posting to the chat");
            api.send(chat_id, None, msg_type, content).await?;
        }
        Ok(())
    }
}

/// What a message says, once its content is read.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    text: String,
    /// Resources to download: (key, `image` or `file`, kind, file name).
    resources: Vec<(String, &'static str, MediaKind, String)>,
}

/// Reads `content` (a JSON text) of a message of `message_type`.
fn parse_content(message_type: &str, content: &str) -> Parsed {
    let v: Value = serde_json::from_str(content).unwrap_or(Value::Null);
    let mut parsed = Parsed::default();
    match message_type {
        "text" => parsed.text = s(&v, "text").unwrap_or_default().to_owned(),
        "post" => flatten_post(&v, &mut parsed),
        "image" => {
            if let Some(key) = s(&v, "image_key") {
                parsed.resources.push((
                    key.to_owned(),
                    "image",
                    MediaKind::Image,
                    format!("{key}.jpg"),
                ));
            }
        }
        "audio" => {
            if let Some(key) = s(&v, "file_key") {
                parsed.resources.push((
                    key.to_owned(),
                    "file",
                    MediaKind::Audio,
                    format!("{key}.opus"),
                ));
            }
        }
        "file" => {
            if let Some(key) = s(&v, "file_key") {
                let name = s(&v, "file_name").unwrap_or(key).to_owned();
                parsed
                    .resources
                    .push((key.to_owned(), "file", MediaKind::Document, name));
            }
        }
        _ => {}
    }
    parsed
}

/// Rich text as plain text: the title, then each paragraph's elements on a line of its own;
/// images in it are taken as resources. Either layout: `{title, content}` or per language.
fn flatten_post(v: &Value, parsed: &mut Parsed) {
    let body = if v.get("content").is_some() {
        v
    } else {
        v.as_object()
            .and_then(|langs| langs.values().find(|l| l.get("content").is_some()))
            .unwrap_or(&Value::Null)
    };
    let mut lines = Vec::new();
    if let Some(title) = s(body, "title") {
        lines.push(title.to_owned());
    }
    for paragraph in body
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut line = String::new();
        for element in paragraph.as_array().into_iter().flatten() {
            match s(element, "tag").unwrap_or_default() {
                "text" | "md" => line.push_str(s(element, "text").unwrap_or_default()),
                "a" => {
                    let text = s(element, "text").unwrap_or_default();
                    match s(element, "href") {
                        Some(href) if href != text => line.push_str(&format!("{text} ({href})")),
                        _ => line.push_str(text),
                    }
                }
                "at" => line.push_str(
                    s(element, "user_id")
                        .or_else(|| s(element, "user_name"))
                        .unwrap_or_default(),
                ),
                "code_block" => {
                    line.push_str(&format!(
                        "```{}\n{}\n```",
                        s(element, "language").unwrap_or_default().to_lowercase(),
                        s(element, "text").unwrap_or_default().trim_end()
                    ));
                }
                "img" => {
                    if let Some(key) = s(element, "image_key") {
                        parsed.resources.push((
                            key.to_owned(),
                            "image",
                            MediaKind::Image,
                            format!("{key}.jpg"),
                        ));
                    }
                }
                "emotion" => {
                    if let Some(e) = s(element, "emoji_type") {
                        line.push_str(&format!(":{e}:"));
                    }
                }
                _ => {}
            }
        }
        lines.push(line);
    }
    parsed.text = lines.join("\n").trim().to_owned();
}

/// Replaces the mention keys (`@_user_1`) in `text`: the bot's are removed, other people's
/// become `@name`. Returns the text and whether the bot was mentioned.
fn resolve_mentions(text: &str, mentions: &[Value], bot: &str) -> (String, bool) {
    let mut out = text.to_owned();
    let mut mentioned = false;
    // Longest keys first: `@_user_1` must not eat the start of `@_user_10`.
    let mut sorted: Vec<&Value> = mentions.iter().collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(s(m, "key").map_or(0, str::len)));
    for m in sorted {
        let Some(key) = s(m, "key") else { continue };
        let open_id = m.get("id").and_then(|id| s(id, "open_id"));
        if open_id == Some(bot) {
            mentioned = true;
            out = out.replace(key, "");
        } else {
            let name = s(m, "name").unwrap_or("someone");
            out = out.replace(key, &format!("@{name}"));
        }
    }
    // Spaces left around a removed mention are folded; line breaks stay.
    let text = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned();
    (text, mentioned)
}

/// An answer part as an interactive card (JSON 2.0, as the original sends) with one markdown
/// element: the card markdown renders the agent's Markdown (code blocks, lists, links).
fn card(markdown: &str) -> String {
    json!({
        "schema": "2.0",
        "config": {"wide_screen_mode": true},
        "body": {"elements": [{"tag": "markdown", "content": markdown}]}
    })
    .to_string()
}

impl Inner {
    fn access(&self) -> &Access {
        self.access
            .get_or_init(|| self.config.common.access("feishu"))
    }

    pub(crate) fn bot(&self) -> Option<String> {
        lock(&self.bot).clone()
    }

    /// Checks the credentials (a refused secret is a clear error) and learns the bot's open_id.
    async fn identify(&self) -> Result<(), ChannelError> {
        self.api.token().await?;
        let bot = self.api.bot_open_id().await?;
        tracing::info!(bot_open_id = %bot, "feishu: signed in");
        *lock(&self.bot) = Some(bot);
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = self.access();
        Ok(())
    }

    /// The sender's ids allow_from may name: the open_id first (it pairs and counts for the
    /// rate limit), then the user_id and union_id Feishu gives.
    fn sender_ids<'a>(&self, ids: &'a Value, open_id: &'a str) -> Vec<&'a str> {
        std::iter::once(open_id)
            .chain(["user_id", "union_id"].iter().filter_map(|k| s(ids, k)))
            .collect()
    }

    /// A short text to a chat (pairing, rate limit), in the background.
    fn notice(self: &Arc<Self>, chat_id: &str, text: &str) {
        let this = Arc::clone(self);
        let (chat_id, content) = (chat_id.to_owned(), json!({"text": text}).to_string());
        tokio::spawn(async move {
            if let Err(e) = this.api.send(&chat_id, None, "text", &content).await {
                tracing::warn!(error = %e, "feishu: notice not sent");
            }
        });
    }

    /// An event from either transport. `Ok` once its message is kept or deliberately ignored;
    /// `Err` when the inbox could not keep it (Feishu should send it again).
    pub(crate) async fn take_event(
        self: &Arc<Self>,
        event: &Value,
        inbox: &dyn Inbox,
    ) -> Result<(), ChannelError> {
        let header = event.get("header").unwrap_or(&Value::Null);
        if s(header, "event_type") != Some("im.message.receive_v1") {
            tracing::debug!(event_type = ?s(header, "event_type"), "feishu: event ignored");
            return Ok(());
        }
        let body = event.get("event").unwrap_or(&Value::Null);
        let message = body.get("message").unwrap_or(&Value::Null);
        let sender = body.get("sender").unwrap_or(&Value::Null);
        let ids = sender.get("sender_id").unwrap_or(&Value::Null);
        let (Some(message_id), Some(chat_id), Some(open_id)) = (
            s(message, "message_id"),
            s(message, "chat_id"),
            s(ids, "open_id"),
        ) else {
            return Ok(());
        };
        let event_id = s(header, "event_id").unwrap_or(message_id);
        let Some(bot) = self.bot() else {
            return Err(ChannelError::Platform("not signed in to Feishu yet".into()));
        };
        // The bot's own messages and other apps' are not for the agent.
        if s(sender, "sender_type") == Some("app") || open_id == bot {
            return Ok(());
        }
        // Only the two kinds of chat Feishu documents; a missing or unknown kind is neither
        // answered as a DM (no group trigger, pairing) nor guessed to be a group.
        let direct = match s(message, "chat_type") {
            Some("p2p") => true,
            Some("group" | "topic_group") => false,
            other => {
                tracing::info!(chat_type = ?other, "feishu: a message of an unknown chat type dropped");
                return Ok(());
            }
        };
        let message_type = s(message, "message_type").unwrap_or_default();
        let parsed = parse_content(message_type, s(message, "content").unwrap_or("{}"));
        let mentions = message
            .get("mentions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (text, mentioned) = resolve_mentions(&parsed.text, &mentions, &bot);
        let content = if direct {
            text
        } else {
            match self.config.group.admit(&text, mentioned) {
                Some(t) => t,
                None => return Ok(()),
            }
        };
        // Redeliveries are dropped by event id and by message id (the same message under
        // another event id). The claims are given up unless the inbox kept the message: a
        // refusal or a handler dropped midway lets Feishu's redelivery through.
        let message_key = format!("msg:{message_id}");
        let (event_claim, message_claim) =
            match self
                .access()
                .admit(&self.sender_ids(ids, open_id), direct, &content, || {
                    Some((self.seen.claim(event_id)?, self.seen.claim(&message_key)?))
                }) {
                Admission::Deliver(claims) => claims,
                Admission::Answer(text) => {
                    self.notice(chat_id, text);
                    return Ok(());
                }
                Admission::Ignore => return Ok(()),
            };
        let mut inbound = InboundMessage::new("feishu", chat_id, open_id, content)
            .with_metadata("message_id", message_id)
            .with_metadata("chat_type", if direct { "p2p" } else { "group" })
            .with_metadata("peer_kind", if direct { "user" } else { "group" })
            .with_metadata("message_type", message_type);
        // Feishu's time of the message (milliseconds), not when it reached us.
        let sent_at = s(message, "create_time")
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(picoclaw_api::reexports::chrono::DateTime::from_timestamp_millis);
        if let Some(at) = sent_at {
            inbound = inbound.with_timestamp(at);
        }
        self.attach(&mut inbound, &parsed, message_id, chat_id)
            .await;
        if inbound.content.is_empty() && inbound.media.is_empty() {
            return Ok(());
        }
        inbox.deliver(inbound).await?;
        event_claim.keep();
        message_claim.keep();
        Ok(())
    }

    /// Downloads the message's images, voice and files (a failure is noted in the text).
    async fn attach(
        &self,
        inbound: &mut InboundMessage,
        parsed: &Parsed,
        message_id: &str,
        chat_id: &str,
    ) {
        if self.config.common.media_dir.is_none() {
            return;
        }
        for (key, kind_param, kind, name) in parsed.resources.iter().take(10) {
            let saved = match self.api.download(message_id, key, kind_param).await {
                Ok(d) => {
                    let name = format!("{message_id}-{name}");
                    crate::settings::save_download(&self.config.common, chat_id, &name, d.bytes)
                        .await
                        .map(|path| (path, d.mime))
                }
                Err(e) => Err(e),
            };
            match saved {
                Ok((path, mime)) => {
                    let mut media =
                        MediaRef::new(*kind, path.display().to_string()).with_name(name.clone());
                    if let Some(mime) = mime.filter(|m| m != "application/octet-stream") {
                        media = media.with_mime(mime);
                    }
                    inbound.media.push(media);
                }
                Err(e) => {
                    // The reason goes to the log; the agent gets a neutral note.
                    tracing::warn!(error = %e, "feishu: a file could not be saved");
                    inbound.content =
                        format!("{}\n[a file could not be downloaded]", inbound.content)
                            .trim()
                            .to_owned();
                }
            }
        }
    }
}

#[async_trait]
impl Channel for FeishuChannel {
    fn name(&self) -> &str {
        "feishu"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        inner.identify().await?;
        match inner.config.mode {
            FeishuMode::WebSocket => ws::run(inner, &inbox, &stop).await,
            FeishuMode::Webhook => {
                tracing::info!("feishu: webhook mode, waiting for events on /webhook/feishu");
                stop.cancelled().await;
                Ok(())
            }
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let mut text = msg.content.clone();
        let mut files = Vec::new();
        for media in &msg.media {
            if media.location.starts_with("https://") || media.location.starts_with("http://") {
                // A link, not a file here: shown as one.
                let name = media.name.as_deref().unwrap_or("file");
                text.push_str(&format!("\n\n[{name}]({})", media.location));
            } else {
                files.push(media);
            }
        }
        if !msg.buttons.is_empty() {
            text.push_str("\n\n");
            text.push_str(&picoclaw_api::channel::buttons_as_text(&msg.buttons));
        }
        let mut reply_to = msg.reply_to.as_deref().filter(|r| !r.is_empty());
        for part in crate::split_message(&text, MAX_MESSAGE_CHARS) {
            self.post(&msg.chat_id, &mut reply_to, "interactive", &card(&part))
                .await?;
        }
        for media in files {
            let path = std::path::Path::new(&media.location);
            let name = media.name.clone().unwrap_or_else(|| {
                path.file_name()
                    .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned())
            });
            let image = media.kind == MediaKind::Image;
            let (msg_type, content) = self.inner.api.upload(path, &name, image).await?;
            self.post(&msg.chat_id, &mut reply_to, msg_type, &content)
                .await?;
        }
        Ok(())
    }

    fn takes_webhooks(&self) -> bool {
        self.inner.config.mode == FeishuMode::Webhook
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        if self.inner.config.mode != FeishuMode::Webhook {
            return WebhookResponse::text(404, "channels.feishu.mode is not \"webhook\"");
        }
        webhook::handle(&self.inner, request, inbox).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mentions_of_the_bot_are_removed_and_others_named() {
        let mentions = vec![
            json!({"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "pico"}),
            json!({"key": "@_user_10", "id": {"open_id": "ou_eve"}, "name": "Eve"}),
        ];
        let (text, mentioned) =
            resolve_mentions("@_user_1 ask @_user_10 please", &mentions, "ou_bot");
        assert_eq!(text, "ask @Eve please");
        assert!(mentioned);
        let (text, mentioned) = resolve_mentions("hi @_user_10", &mentions[1..], "ou_bot");
        assert_eq!((text.as_str(), mentioned), ("hi @Eve", false));
    }

    #[test]
    fn posts_flatten_to_text_and_their_images_are_resources() {
        let post = json!({"title": "Plan", "content": [
            [{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": " see "},
             {"tag": "a", "text": "docs", "href": "https://x.test/d"}],
            [{"tag": "img", "image_key": "img_1"}],
            [{"tag": "code_block", "language": "RUST", "text": "fn main() {}\n"}]
        ]})
        .to_string();
        let parsed = parse_content("post", &post);
        assert_eq!(
            parsed.text,
            "Plan\n@_user_1 see docs (https://x.test/d)\n\n```rust\nfn main() {}\n```"
        );
        assert_eq!(parsed.resources[0].0, "img_1");
        let localized =
            json!({"zh_cn": {"title": "", "content": [[{"tag": "text", "text": "你好"}]]}});
        assert_eq!(parse_content("post", &localized.to_string()).text, "你好");
        assert_eq!(parse_content("text", "not json").text, "");
        let audio = parse_content("audio", r#"{"file_key":"file_v3_1","duration":2000}"#);
        assert_eq!(audio.resources[0].1, "file");
        assert_eq!(audio.resources[0].2, MediaKind::Audio);
    }

    #[test]
    fn the_registry_builds_either_mode() {
        let registry = crate::ChannelRegistry::builtin();
        let dir = std::path::Path::new("/tmp/picoclaw-feishu-test");
        let setup = |v: Value| ChannelSetup::new("feishu", v, dir, dir);
        let ws = registry
            .build(&setup(
                json!({"enabled": true, "app_id": "cli_1", "app_secret": "s"}),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(ws.name(), "feishu");
        assert!(!ws.takes_webhooks());
        let hook = registry
            .build(&setup(
                json!({"enabled": true, "app_id": "cli_1", "app_secret": "s",
                                  "mode": "webhook", "encrypt_key": "k"}),
            ))
            .unwrap()
            .unwrap();
        assert!(hook.takes_webhooks());
        let Some(Err(e)) = registry.build(&setup(json!({"enabled": true, "app_idd": "x"}))) else {
            panic!("a typo was accepted");
        };
        assert!(e.to_string().contains("channels.feishu"), "{e}");
    }

    #[test]
    fn the_config_names_what_is_missing() {
        let e = FeishuConfig::from_json(&json!({"app_secret": "s"})).unwrap_err();
        assert!(e.to_string().contains("channels.feishu.app_id"), "{e}");
        let e = FeishuConfig::from_json(&json!({"app_id": "cli_1"})).unwrap_err();
        assert!(e.to_string().contains("channels.feishu.app_secret"), "{e}");
        let e =
            FeishuConfig::from_json(&json!({"app_id": "a", "app_secret": "s", "mode": "webhook"}))
                .unwrap_err();
        assert!(e.to_string().contains("channels.feishu.encrypt_key"), "{e}");
        // A verification token alone is no authentication: refused too, on one line.
        let e = FeishuConfig::from_json(&json!({"app_id": "a", "app_secret": "s",
                                                "mode": "webhook", "verification_token": "t"}))
        .unwrap_err();
        assert!(matches!(e, ChannelError::Rejected(_)), "{e:?}");
        assert!(e.to_string().contains("channels.feishu.encrypt_key"), "{e}");
        assert!(e.to_string().contains("Encryption Strategy"), "{e}");
        assert!(!e.to_string().contains('\n'));
        let mut built = FeishuConfig::from_json(&json!({"app_id": "a", "app_secret": "s",
                                                        "mode": "webhook", "encrypt_key": "k"}))
        .unwrap();
        built.encrypt_key = None;
        assert!(FeishuChannel::new(built).is_err(), "new() checks it too");
        let lark =
            FeishuConfig::from_json(&json!({"app_id": "a", "app_secret": "s", "is_lark": true}))
                .unwrap();
        assert_eq!(lark.api_base, LARK_API_BASE);
        assert_eq!(lark.mode, FeishuMode::WebSocket);
        let own = FeishuConfig::from_json(
            &json!({"app_id": "a", "app_secret": "s", "api_base": "http://127.0.0.1:9/"}),
        )
        .unwrap();
        assert_eq!(own.api_base, "http://127.0.0.1:9");
        assert!(!format!("{own:?}").contains("\"s\""));
    }
}
