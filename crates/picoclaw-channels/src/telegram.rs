//! Telegram, through teloxide: long polling, private chats and groups (in groups only messages
//! that mention the bot or reply to it), an allow-list, a typing indicator, answers split at
//! Telegram's 4 096-character limit, 429 `retry_after` honoured. `api_base` points at a
//! self-hosted Bot API server (or a test's loopback fake).
//!
//! An update is confirmed to Telegram (the next `getUpdates` offset moves past it) only after the
//! inbox took the message, so a crash redelivers it, and the gateway's journal drops the
//! redelivery.

use crate::{Channel, ChannelError, Inbox, split_message};
use async_trait::async_trait;
use picoclaw_bus::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use teloxide::RequestError;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::Requester;
use teloxide::types::{ChatAction, ChatId, InputFile, UpdateKind};
use tokio_util::sync::CancellationToken;

/// Telegram's longest message.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// `channels.telegram` of the config.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TelegramConfig {
    pub token: String,
    /// User ids or usernames (with or without `@`) allowed to talk to the bot. Empty: nobody.
    pub allow_from: Vec<String>,
    /// Bot API base URL (default `https://api.telegram.org`).
    pub api_base: Option<String>,
    /// Long-polling timeout in seconds (default 30).
    pub poll_timeout: u32,
}

impl TelegramConfig {
    /// Reads the original PicoClaw's keys (`token`, `allow_from`, `proxy` is not used yet) plus
    /// `api_base`.
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let token = value
            .get("token")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ChannelError::Rejected(
                    "channels.telegram.token is empty: create a bot with @BotFather and put its \
                     token there (or in PICOCLAW_CHANNELS_TELEGRAM_TOKEN)"
                        .into(),
                )
            })?
            .to_owned();
        let allow_from = match value.get("allow_from") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.trim().to_owned()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        let api_base = value
            .get("api_base")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        Ok(Self {
            token,
            allow_from,
            api_base,
            poll_timeout: 30,
        })
    }
}

/// The Telegram channel.
pub struct TelegramChannel {
    bot: teloxide::Bot,
    config: TelegramConfig,
}

impl std::fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("api_base", &self.config.api_base)
            .finish_non_exhaustive()
    }
}

fn platform(e: RequestError) -> ChannelError {
    ChannelError::Platform(format!("telegram: {e}"))
}

impl TelegramChannel {
    pub fn new(config: TelegramConfig) -> Result<Self, ChannelError> {
        let mut bot = teloxide::Bot::new(config.token.clone());
        if let Some(base) = &config.api_base {
            let url = url::Url::parse(base).map_err(|e| {
                ChannelError::Rejected(format!(
                    "channels.telegram.api_base '{base}' is not a URL: {e}"
                ))
            })?;
            bot = bot.set_api_url(url);
        }
        Ok(Self { bot, config })
    }

    fn allowed(&self, user_id: &str, username: Option<&str>) -> bool {
        self.config.allow_from.iter().any(|a| {
            let a = a.trim_start_matches('@');
            a == user_id || username.is_some_and(|u| u.eq_ignore_ascii_case(a))
        })
    }

    /// Calls `f` again after a 429's `retry_after` (at most three times).
    async fn with_retry<T, F, Fut>(&self, mut f: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut tries = 0;
        loop {
            match f().await {
                Err(RequestError::RetryAfter(wait)) if tries < 3 => {
                    tries += 1;
                    let secs = u64::from(wait.seconds()).clamp(1, 60);
                    tracing::warn!(secs, "telegram rate limit: waiting");
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Channel for TelegramChannel {
    fn name(&self) -> &str {
        "telegram"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let me = self.bot.get_me().await.map_err(|e| match e {
            RequestError::Api(api) => ChannelError::Rejected(format!(
                "telegram refused the bot token ({api}); check channels.telegram.token"
            )),
            other => platform(other),
        })?;
        let bot_name = me.username().to_owned();
        let bot_id = me.user.id;
        tracing::info!(bot = %bot_name, "telegram connected");
        if self.config.allow_from.is_empty() {
            tracing::warn!(
                "channels.telegram.allow_from is empty: nobody can talk to the bot; add user ids \
                 or usernames"
            );
        }
        let mut offset: i32 = 0;
        loop {
            let request = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.config.poll_timeout);
            let updates = tokio::select! {
                r = request => r.map_err(platform)?,
                () = stop.cancelled() => return Ok(()),
            };
            for update in updates {
                let next = i32::try_from(update.id.0)
                    .unwrap_or(i32::MAX)
                    .saturating_add(1);
                let UpdateKind::Message(message) = update.kind else {
                    offset = next;
                    continue;
                };
                let (Some(text), Some(from)) = (message.text(), message.from.as_ref()) else {
                    offset = next;
                    continue;
                };
                if from.id == bot_id || from.is_bot {
                    offset = next;
                    continue;
                }
                let user_id = from.id.0.to_string();
                if !self.allowed(&user_id, from.username.as_deref()) {
                    tracing::info!(user = %user_id, username = ?from.username, "telegram: not on allow_from; ignored");
                    offset = next;
                    continue;
                }
                let mut text = text.to_owned();
                if !message.chat.is_private() {
                    // In groups: only when mentioned or replied to.
                    let mention = format!("@{bot_name}");
                    let replied = message
                        .reply_to_message()
                        .and_then(|r| r.from.as_ref())
                        .is_some_and(|u| u.id == bot_id);
                    if !text.contains(&mention) && !replied {
                        offset = next;
                        continue;
                    }
                    text = text.replace(&mention, "").trim().to_owned();
                }
                // Commands addressed to this bot in groups: /new@pico_bot → /new.
                if let Some(rest) = text.strip_prefix('/') {
                    let cmd = rest.split_whitespace().next().unwrap_or_default();
                    let bare = cmd.split('@').next().unwrap_or_default();
                    text = match bare {
                        "start" => "/help".to_owned(),
                        _ => format!("/{bare}{}", &rest[cmd.len()..]),
                    };
                }
                let chat_id = message.chat.id.0.to_string();
                let mut inbound = InboundMessage::new("telegram", chat_id.clone(), user_id, text)
                    .with_metadata("message_id", message.id.0.to_string());
                if let Some(u) = &from.username {
                    inbound = inbound.with_metadata("username", u.clone());
                }
                let _ = self
                    .bot
                    .send_chat_action(message.chat.id, ChatAction::Typing)
                    .await;
                // Taken in only when the inbox has it; otherwise stop here and get it again.
                inbox
                    .deliver(inbound)
                    .await
                    .map_err(|e| ChannelError::Platform(format!("inbox: {e}")))?;
                offset = next;
            }
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let chat: i64 = msg.chat_id.parse().map_err(|_| {
            ChannelError::Rejected(format!("'{}' is not a Telegram chat id", msg.chat_id))
        })?;
        let rejected = |e: RequestError| match e {
            RequestError::Api(api) => ChannelError::Rejected(format!("telegram: {api}")),
            other => platform(other),
        };
        // A file that is gone will not come back: refuse before sending any part.
        if let Some(missing) = msg.media.iter().find(|m| {
            !m.location.starts_with("https://")
                && !m.location.starts_with("http://")
                && !std::path::Path::new(&m.location).is_file()
        }) {
            return Err(ChannelError::Rejected(format!(
                "telegram: the attachment {} no longer exists",
                missing.location
            )));
        }
        if !msg.content.trim().is_empty() || msg.media.is_empty() {
            for part in split_message(&msg.content, MAX_MESSAGE_CHARS) {
                self.with_retry(|| async {
                    self.bot
                        .send_message(ChatId(chat), part.clone())
                        .await
                        .map(|_| ())
                })
                .await
                .map_err(rejected)?;
            }
        }
        for media in &msg.media {
            self.send_file(ChatId(chat), media)
                .await
                .map_err(rejected)?;
        }
        Ok(())
    }
}

impl TelegramChannel {
    /// Uploads one attachment: photos as photos (shown inline), audio and video as such, anything
    /// else as a document. A URL is passed for Telegram to fetch.
    async fn send_file(&self, chat: ChatId, media: &MediaRef) -> Result<(), RequestError> {
        let file = || {
            let input = if media.location.starts_with("https://")
                || media.location.starts_with("http://")
            {
                match media.location.parse() {
                    Ok(url) => InputFile::url(url),
                    Err(_) => InputFile::file(&media.location),
                }
            } else {
                InputFile::file(&media.location)
            };
            match &media.name {
                Some(name) => input.file_name(name.clone()),
                None => input,
            }
        };
        self.with_retry(|| async {
            match media.kind {
                MediaKind::Image => self.bot.send_photo(chat, file()).await.map(|_| ()),
                MediaKind::Audio => self.bot.send_audio(chat, file()).await.map(|_| ()),
                MediaKind::Video => self.bot.send_video(chat, file()).await.map(|_| ()),
                _ => self.bot.send_document(chat, file()).await.map(|_| ()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_reads_the_original_keys() {
        let c = TelegramConfig::from_json(&json!({"enabled": true, "token": "123:abc",
            "allow_from": ["123456", "@ada", 789], "api_base": "http://127.0.0.1:9/"}))
        .unwrap();
        assert_eq!(c.token, "123:abc");
        assert_eq!(c.allow_from, ["123456", "@ada", "789"]);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9/"));
        let err = TelegramConfig::from_json(&json!({"enabled": true, "token": ""})).unwrap_err();
        assert!(err.to_string().contains("@BotFather"));
        let t = TelegramChannel::new(c).unwrap();
        assert!(t.allowed("123456", None));
        assert!(t.allowed("1", Some("Ada")));
        assert!(t.allowed("789", None));
        assert!(!t.allowed("5", Some("eve")));
    }
}
