//! Telegram, through teloxide: long polling (default) or a webhook on the gateway's
//! `/webhook/telegram` (`webhook_url`, checked with a secret token), private chats and groups (in
//! groups only messages that mention the bot or reply to it), an allow-list, a typing indicator,
//! answers split at Telegram's 4 096-character limit, files out, 429 `retry_after` honoured.
//! `api_base` points at a self-hosted Bot API server (or a test's loopback fake).
//!
//! An update is confirmed to Telegram (the next `getUpdates` offset moves past it) only after the
//! inbox took the message, so a crash redelivers it, and the gateway's journal drops the
//! redelivery.

use crate::{
    Channel, ChannelError, Inbox, InboxError, WebhookRequest, WebhookResponse, split_message,
};
use async_trait::async_trait;
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use teloxide::RequestError;
use teloxide::payloads::{GetUpdatesSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::{ChatAction, ChatId, InputFile, UpdateKind};
use tokio_util::sync::CancellationToken;

/// Telegram's longest message.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// How much longer than a long poll's `timeout` the HTTP client waits for its answer.
const POLL_MARGIN: Duration = Duration::from_secs(15);

/// The largest file the Bot API lets a bot download.
const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// `channels.telegram` of the config.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TelegramConfig {
    pub token: String,
    /// Bot API base URL (default `https://api.telegram.org`).
    pub api_base: Option<String>,
    /// Long-polling timeout in seconds (default 30).
    pub poll_timeout: u32,
    /// Webhook mode: the public HTTPS URL Telegram posts updates to, which reaches the gateway's
    /// `/webhook/telegram` (through a reverse proxy or tunnel). Absent: long polling.
    pub webhook_url: Option<String>,
    /// The secret Telegram sends back with every update (`X-Telegram-Bot-Api-Secret-Token`);
    /// derived from the token when absent.
    pub webhook_secret: Option<String>,
    /// allow_from, rate limit, media folder, paired-users file.
    pub common: crate::settings::Common,
}

impl TelegramConfig {
    /// Reads `channels.telegram` from JSON ([`crate::TelegramSection`]'s keys).
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::TelegramSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.telegram: {e}")))?;
        Self::from_section(&section)
    }

    /// Builds from the typed section: the original PicoClaw's keys (`token`, `allow_from`;
    /// `proxy` is not used yet) plus `api_base` (alias `base_url`), `webhook_url`,
    /// `webhook_secret`.
    pub fn from_section(section: &crate::TelegramSection) -> Result<Self, ChannelError> {
        let text = |v: &Option<String>| crate::sections::trimmed(v.as_ref());
        let token = text(&section.token).ok_or_else(|| {
            ChannelError::Rejected(
                "channels.telegram.token is empty: create a bot with @BotFather and put its \
                 token there (or in PICOCLAW_CHANNELS_TELEGRAM_TOKEN)"
                    .into(),
            )
        })?;
        let api_base = text(&section.api_base);
        let webhook_url = text(&section.webhook_url);
        if let Some(url) = &webhook_url {
            let parsed = url::Url::parse(url).map_err(|e| {
                ChannelError::Rejected(format!(
                    "channels.telegram.webhook_url '{url}' is not a URL: {e}"
                ))
            })?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(ChannelError::Rejected(format!(
                    "channels.telegram.webhook_url '{url}' must be an https:// URL (Telegram \
                     posts only to HTTPS on ports 443, 80, 88 or 8443; http:// only works with \
                     a self-hosted Bot API server)"
                )));
            }
        }
        let webhook_secret = text(&section.webhook_secret);
        if let Some(secret) = &webhook_secret {
            let valid = (1..=256).contains(&secret.len())
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(ChannelError::Rejected(
                    "channels.telegram.webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, \
                     _ and - (Telegram's rule)"
                        .into(),
                ));
            }
        }
        Ok(Self {
            token,
            common: crate::settings::Common::from_keys(
                section.allow_from.clone(),
                section.rate_limit_per_minute,
            ),
            api_base,
            poll_timeout: 30,
            webhook_url,
            webhook_secret,
        })
    }
}

impl crate::settings::ChannelSettings for TelegramConfig {
    fn common_mut(&mut self) -> &mut crate::settings::Common {
        &mut self.common
    }
}

/// The bot's own identity, from `getMe`.
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub(crate) username: String,
    pub(crate) id: teloxide::types::UserId,
}

/// The Telegram channel.
pub struct TelegramChannel {
    bot: teloxide::Bot,
    config: TelegramConfig,
    /// Known once `run` has called `getMe`; webhook requests before that are answered 503.
    pub(crate) me: std::sync::Mutex<Option<Me>>,
    /// What Telegram must send in `X-Telegram-Bot-Api-Secret-Token` (webhook mode).
    webhook_secret: String,
    /// allow_from, pairing, rate limit. Made when the channel starts (the pairing code is
    /// printed then).
    access: std::sync::OnceLock<crate::access::Access>,
}

impl std::fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramChannel")
            .field("api_base", &self.config.api_base)
            .finish_non_exhaustive()
    }
}

/// The webhook secret when the config has none: HMAC-SHA256 of a fixed label under the bot token,
/// in hex. Stable across restarts and instances; only someone with the token can compute it (and
/// they could call setWebhook themselves anyway).
fn derive_secret(token: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let tag = ring::hmac::sign(&key, b"picoclaw telegram webhook secret");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn platform(e: RequestError) -> ChannelError {
    ChannelError::Platform(format!("telegram: {e}"))
}

/// Whether Telegram refused a request for good (a bad request, a chat the bot may not write
/// to, a wrong token): retrying it will not help. An error teloxide does not know, whose text
/// is not one of those refusals, is Telegram failing (`500 Internal Server Error`, `502 Bad
/// Gateway` in its JSON shape) and worth another try.
fn refused(api: &teloxide::ApiError) -> bool {
    match api {
        teloxide::ApiError::Unknown(text) => {
            ["Bad Request", "Forbidden", "Unauthorized", "Not Found"]
                .iter()
                .any(|refusal| text.starts_with(refusal))
        }
        _ => true,
    }
}

/// A failed send as the deliverer must treat it: refused for good, or worth another try.
fn send_error(e: RequestError) -> ChannelError {
    match e {
        RequestError::Api(api) if refused(&api) => {
            ChannelError::Rejected(format!("telegram: {api}"))
        }
        other => platform(other),
    }
}

impl TelegramChannel {
    pub fn new(config: TelegramConfig) -> Result<Self, ChannelError> {
        // teloxide's default client gives up on any request after 17 s, while Telegram holds a
        // quiet getUpdates for its whole `timeout` (30 s): every quiet poll would fail and the
        // channel restart. The client waits for the poll, and a little more.
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(u64::from(config.poll_timeout)) + POLL_MARGIN)
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("telegram: cannot make an HTTP client: {e}"))
            })?;
        let mut bot = teloxide::Bot::with_client(config.token.clone(), client);
        if let Some(base) = &config.api_base {
            let url = url::Url::parse(base).map_err(|e| {
                ChannelError::Rejected(format!(
                    "channels.telegram.api_base '{base}' is not a URL: {e}"
                ))
            })?;
            bot = bot.set_api_url(url);
        }
        let webhook_secret = config
            .webhook_secret
            .clone()
            .unwrap_or_else(|| derive_secret(&config.token));
        Ok(Self {
            bot,
            config,
            me: std::sync::Mutex::new(None),
            webhook_secret,
            access: std::sync::OnceLock::new(),
        })
    }

    fn me(&self) -> Option<Me> {
        match self.me.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Asks Telegram who the bot is; a refused token cannot be fixed by retrying.
    async fn identify(&self) -> Result<Me, ChannelError> {
        let me = self.bot.get_me().await.map_err(|e| match e {
            RequestError::Api(api) => ChannelError::Rejected(format!(
                "telegram refused the bot token ({api}); check channels.telegram.token"
            )),
            other => platform(other),
        })?;
        let me = Me {
            username: me.username().to_owned(),
            id: me.user.id,
        };
        tracing::info!(bot = %me.username, "telegram connected");
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = self.access();
        match self.me.lock() {
            Ok(mut g) => *g = Some(me.clone()),
            Err(p) => *p.into_inner() = Some(me.clone()),
        }
        Ok(me)
    }

    /// The inbound message an update carries for the agent, if any: text from an allowed user,
    /// in a private chat, or in a group when the bot is mentioned or replied to. Commands lose
    /// their `@bot` suffix and `/start` becomes `/help`.
    fn inbound_of(
        &self,
        update: teloxide::types::Update,
        me: &Me,
    ) -> Option<(
        InboundMessage,
        ChatId,
        Option<Box<teloxide::types::Message>>,
    )> {
        let message = match update.kind {
            UpdateKind::Message(message) => message,
            UpdateKind::CallbackQuery(query) => return self.button_press(query),
            _ => return None,
        };
        let has_media = message.voice().is_some()
            || message.audio().is_some()
            || message.photo().is_some()
            || message.document().is_some();
        let text = message
            .text()
            .or_else(|| message.caption())
            .or(has_media.then_some(""));
        let (Some(text), Some(from)) = (text, message.from.as_ref()) else {
            return None;
        };
        if from.id == me.id || from.is_bot {
            return None;
        }
        let user_id = from.id.0.to_string();
        if message.chat.is_private()
            && let Some(result) = self.access().try_pair(&user_id, text)
        {
            self.notice(
                message.chat.id,
                match result {
                    crate::access::Pairing::Paired => "Paired: you can talk to me now.",
                    crate::access::Pairing::Refused => "That code is wrong or was already used.",
                },
            );
            return None;
        }
        if !self.allowed(&user_id, from.username.as_deref()) {
            tracing::info!(user = %user_id, username = ?from.username, "telegram: not on allow_from; ignored");
            return None;
        }
        let mut text = text.to_owned();
        if !message.chat.is_private() {
            // In groups: only when mentioned or replied to.
            let mention = format!("@{}", me.username);
            let replied = message
                .reply_to_message()
                .and_then(|r| r.from.as_ref())
                .is_some_and(|u| u.id == me.id);
            if !text.contains(&mention) && !replied {
                return None;
            }
            text = text.replace(&mention, "").trim().to_owned();
        }
        // Only messages for the bot count against the sender's allowance.
        if let Err(first) = self.access().take(&user_id) {
            tracing::info!(user = %user_id, "telegram: over the rate limit; message dropped");
            if first {
                self.notice(
                    message.chat.id,
                    "You are sending messages faster than I can take them; wait a minute.",
                );
            }
            return None;
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
        // For bindings: a private chat is the user's; a group's or a channel's is the chat's.
        let peer_kind = if message.chat.is_private() {
            "user"
        } else if message.chat.is_channel() {
            "channel"
        } else {
            "group"
        };
        let mut inbound = InboundMessage::new("telegram", chat_id, user_id, text)
            .with_metadata("message_id", message.id.0.to_string())
            .with_metadata("peer_kind", peer_kind);
        if let Some(u) = &from.username {
            inbound = inbound.with_metadata("username", u.clone());
        }
        let chat = message.chat.id;
        Some((inbound, chat, Some(Box::new(message))))
    }

    /// A press of one of our buttons: its data, as a message from the user who pressed it, in
    /// the chat of the message it was under. The spinner on the button is stopped.
    fn button_press(
        &self,
        query: teloxide::types::CallbackQuery,
    ) -> Option<(
        InboundMessage,
        ChatId,
        Option<Box<teloxide::types::Message>>,
    )> {
        {
            let bot = self.bot.clone();
            let id = query.id.clone();
            tokio::spawn(async move {
                let _ = bot.answer_callback_query(id).await;
            });
        }
        let data = query.data.filter(|d| !d.trim().is_empty())?;
        let chat = query.message.as_ref().map(|m| m.chat().id)?;
        let user_id = query.from.id.0.to_string();
        if query.from.is_bot || !self.allowed(&user_id, query.from.username.as_deref()) {
            return None;
        }
        if self.access().take(&user_id).is_err() {
            return None;
        }
        let mut inbound = InboundMessage::new("telegram", chat.0.to_string(), user_id, data)
            .with_metadata("button", "true");
        if let Some(u) = &query.from.username {
            inbound = inbound.with_metadata("username", u.clone());
        }
        Some((inbound, chat, None))
    }

    /// Shows "typing…", saves the message's attachment (when it has one and a media folder is
    /// set), and hands the message to the inbox.
    async fn take_in(
        &self,
        inbox: &dyn Inbox,
        mut inbound: InboundMessage,
        chat: ChatId,
        message: Option<&teloxide::types::Message>,
    ) -> Result<(), InboxError> {
        let _ = self.bot.send_chat_action(chat, ChatAction::Typing).await;
        if let (Some(message), Some(_)) = (message, &self.config.common.media_dir) {
            match self.save_attachment(message).await {
                Ok(Some(media)) => inbound.media.push(media),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "telegram: an attachment could not be saved");
                    inbound.content = format!(
                        "{}\n[an attachment could not be downloaded: {e}]",
                        inbound.content
                    )
                    .trim()
                    .to_owned();
                }
            }
        }
        if inbound.content.trim().is_empty() && inbound.media.is_empty() {
            return Ok(());
        }
        let message_id = message.map(|m| m.id);
        inbox.deliver(inbound).await?;
        // A read receipt: 👀 on the message once it is kept (best effort, in the background).
        if let Some(id) = message_id {
            use teloxide::payloads::SetMessageReactionSetters;
            let bot = self.bot.clone();
            tokio::spawn(async move {
                let _ = bot
                    .set_message_reaction(chat, id)
                    .reaction(vec![teloxide::types::ReactionType::Emoji {
                        emoji: "👀".into(),
                    }])
                    .await;
            });
        }
        Ok(())
    }

    /// Downloads a voice note, audio file, photo (its largest size) or document into `dir`.
    async fn save_attachment(
        &self,
        message: &teloxide::types::Message,
    ) -> Result<Option<MediaRef>, String> {
        use teloxide::net::Download;
        let (meta, kind, name) = if let Some(v) = message.voice() {
            (&v.file, MediaKind::Audio, "voice.ogg".to_owned())
        } else if let Some(a) = message.audio() {
            let name = a.file_name.clone().unwrap_or_else(|| "audio.mp3".into());
            (&a.file, MediaKind::Audio, name)
        } else if let Some(p) = message.photo().and_then(|sizes| sizes.last()) {
            (&p.file, MediaKind::Image, "photo.jpg".to_owned())
        } else if let Some(d) = message.document() {
            let name = d.file_name.clone().unwrap_or_else(|| "document".into());
            (&d.file, MediaKind::Document, name)
        } else {
            return Ok(None);
        };
        if u64::from(meta.size) > MAX_DOWNLOAD_BYTES {
            return Err(format!(
                "{name} is {} MiB; bots can download files up to 20 MiB",
                meta.size / (1024 * 1024)
            ));
        }
        let file = self
            .bot
            .get_file(meta.id.clone())
            .await
            .map_err(|e| format!("telegram: {e}"))?;
        let mut bytes: Vec<u8> = Vec::new();
        self.bot
            .download_file(&file.path, &mut bytes)
            .await
            .map_err(|e| format!("download failed: {e}"))?;
        let path = crate::settings::save_download(
            &self.config.common,
            &message.chat.id.0.to_string(),
            &format!("{}-{name}", message.id.0),
            bytes,
        )
        .await?;
        Ok(Some(
            MediaRef::new(kind, path.display().to_string()).with_name(name),
        ))
    }

    fn access(&self) -> &crate::access::Access {
        self.access
            .get_or_init(|| self.config.common.access("telegram"))
    }

    fn allowed(&self, user_id: &str, username: Option<&str>) -> bool {
        self.access().allowed(user_id, username)
    }

    /// A short reply outside the conversation (pairing, slow down), sent in the background.
    fn notice(&self, chat: ChatId, text: &'static str) {
        let bot = self.bot.clone();
        tokio::spawn(async move {
            let _ = bot.send_message(chat, text).await;
        });
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
        let me = self.identify().await?;
        if let Some(url) = &self.config.webhook_url {
            // Webhook mode: Telegram posts updates to the gateway's /webhook/telegram.
            self.bot
                .set_webhook(url.parse().map_err(|e| {
                    ChannelError::Rejected(format!("channels.telegram.webhook_url: {e}"))
                })?)
                .secret_token(self.webhook_secret.clone())
                .allowed_updates(vec![
                    teloxide::types::AllowedUpdate::Message,
                    teloxide::types::AllowedUpdate::CallbackQuery,
                ])
                .await
                .map_err(|e| match e {
                    RequestError::Api(api) => ChannelError::Rejected(format!(
                        "telegram refused the webhook {url} ({api}); check \
                         channels.telegram.webhook_url"
                    )),
                    other => platform(other),
                })?;
            tracing::info!(%url, "telegram webhook set");
            stop.cancelled().await;
            return Ok(());
        }
        // Long polling, which Telegram refuses while a webhook is set (from an earlier run in
        // webhook mode): remove it, keeping the updates that are waiting.
        self.bot.delete_webhook().await.map_err(platform)?;
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
                if let Some((inbound, chat, message)) = self.inbound_of(update, &me) {
                    // Taken in only when the inbox has it; otherwise stop here and get it again.
                    self.take_in(inbox.as_ref(), inbound, chat, message.as_deref())
                        .await
                        .map_err(|e| ChannelError::Platform(format!("inbox: {e}")))?;
                }
                offset = next;
            }
        }
    }

    fn takes_webhooks(&self) -> bool {
        self.config.webhook_url.is_some()
    }

    async fn typing(&self, chat_id: &str) {
        if let Ok(chat) = chat_id.parse::<i64>() {
            let _ = self
                .bot
                .send_chat_action(ChatId(chat), ChatAction::Typing)
                .await;
        }
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        use subtle::ConstantTimeEq;
        let given = request
            .header("x-telegram-bot-api-secret-token")
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(self.webhook_secret.as_bytes())) {
            tracing::warn!(
                "telegram webhook: a request without the right secret token was refused"
            );
            return WebhookResponse::text(401, "wrong or missing secret token");
        }
        if request.method != "POST" {
            return WebhookResponse::text(405, "Telegram posts updates");
        }
        let update: teloxide::types::Update = match serde_json::from_slice(&request.body) {
            Ok(u) => u,
            Err(e) => return WebhookResponse::text(400, format!("not a Telegram update: {e}")),
        };
        let Some(me) = self.me() else {
            return WebhookResponse::text(503, "not connected to Telegram yet; send it again");
        };
        if let Some((inbound, chat, message)) = self.inbound_of(update, &me)
            && let Err(e) = self
                .take_in(inbox.as_ref(), inbound, chat, message.as_deref())
                .await
        {
            // Telegram sends the update again.
            return WebhookResponse::text(503, format!("could not take the message in: {e}"));
        }
        WebhookResponse::json(&serde_json::json!({"ok": true}))
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let chat: i64 = msg.chat_id.parse().map_err(|_| {
            ChannelError::Rejected(format!("'{}' is not a Telegram chat id", msg.chat_id))
        })?;
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
            // Split the Markdown (code blocks stay whole), then render each part; HTML is longer
            // than its Markdown, so parts leave room for the tags.
            let parts = split_message(&msg.content, MAX_MESSAGE_CHARS - HTML_ROOM);
            let last = parts.len().saturating_sub(1);
            for (i, part) in parts.iter().enumerate() {
                // Buttons go under the last part.
                let markup = (i == last && !msg.buttons.is_empty()).then(|| keyboard(&msg.buttons));
                self.send_formatted(ChatId(chat), part, markup)
                    .await
                    .map_err(send_error)?;
            }
        }
        for media in &msg.media {
            self.send_file(ChatId(chat), media)
                .await
                .map_err(send_error)?;
        }
        Ok(())
    }
}

/// Buttons as an inline keyboard; a press sends back `data` (cut to Telegram's 64 bytes).
fn keyboard(rows: &[Vec<picoclaw_api::Button>]) -> teloxide::types::InlineKeyboardMarkup {
    teloxide::types::InlineKeyboardMarkup::new(rows.iter().map(|row| {
        row.iter()
            .map(|b| {
                let mut data = b.data.clone();
                while data.len() > 64 {
                    data.pop();
                }
                teloxide::types::InlineKeyboardButton::callback(b.text.clone(), data)
            })
            .collect::<Vec<_>>()
    }))
}

/// Characters each part leaves for the HTML tags its Markdown turns into.
const HTML_ROOM: usize = 512;

impl TelegramChannel {
    /// Sends one part as Telegram HTML, or, when Telegram cannot parse it (or it grew past the
    /// limit), as the plain Markdown text.
    async fn send_formatted(
        &self,
        chat: ChatId,
        markdown: &str,
        markup: Option<teloxide::types::InlineKeyboardMarkup>,
    ) -> Result<(), RequestError> {
        use teloxide::payloads::SendMessageSetters;
        let html = crate::format::markdown_to_telegram_html(markdown);
        if !html.trim().is_empty() && html.chars().count() <= MAX_MESSAGE_CHARS {
            let sent = self
                .with_retry(|| async {
                    let mut request = self
                        .bot
                        .send_message(chat, html.clone())
                        .parse_mode(teloxide::types::ParseMode::Html);
                    if let Some(m) = &markup {
                        request = request.reply_markup(m.clone());
                    }
                    request.await.map(|_| ())
                })
                .await;
            match sent {
                // Only a refusal (HTML it cannot parse): Telegram failing is not the HTML's fault.
                Err(RequestError::Api(api)) if refused(&api) => {
                    tracing::warn!(error = %api, "telegram refused the formatted message; sending it as plain text");
                }
                other => return other,
            }
        }
        self.with_retry(|| async {
            let mut request = self.bot.send_message(chat, markdown.to_owned());
            if let Some(m) = &markup {
                request = request.reply_markup(m.clone());
            }
            request.await.map(|_| ())
        })
        .await
    }

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

    #[test]
    fn telegram_failing_is_retried_and_a_refusal_is_not() {
        use teloxide::ApiError;
        for failing in ["Bad Gateway", "Internal Server Error", "Gateway Timeout"] {
            assert!(!refused(&ApiError::Unknown(failing.into())), "{failing}");
        }
        for refusal in [
            "Bad Request: message text is empty",
            "Forbidden: bot was kicked from the group chat",
            "Unauthorized",
        ] {
            assert!(refused(&ApiError::Unknown(refusal.into())), "{refusal}");
        }
        assert!(refused(&ApiError::BotBlocked));
        assert!(matches!(
            send_error(RequestError::Api(ApiError::Unknown("Bad Gateway".into()))),
            ChannelError::Platform(_)
        ));
    }
    use serde_json::json;

    #[test]
    fn config_reads_the_original_keys() {
        let c = TelegramConfig::from_json(&json!({"enabled": true, "token": "123:abc",
            "allow_from": ["123456", "@ada", 789], "api_base": "http://127.0.0.1:9/"}))
        .unwrap();
        assert_eq!(c.token, "123:abc");
        assert_eq!(c.common.allow_from, ["123456", "@ada", "789"]);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9/"));
        let err = TelegramConfig::from_json(&json!({"enabled": true, "token": ""})).unwrap_err();
        assert!(err.to_string().contains("@BotFather"));
        let t = TelegramChannel::new(c).unwrap();
        assert!(t.allowed("123456", None));
        assert!(t.allowed("1", Some("Ada")));
        assert!(t.allowed("789", None));
        assert!(!t.allowed("5", Some("eve")));
        assert!(!t.takes_webhooks());
    }

    #[test]
    fn webhook_settings_are_checked() {
        let base = json!({"enabled": true, "token": "123:abc"});
        let with = |extra: Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            TelegramConfig::from_json(&v)
        };
        let c = with(json!({"webhook_url": "https://bot.example.com/webhook/telegram"})).unwrap();
        let t = TelegramChannel::new(c).unwrap();
        assert!(t.takes_webhooks());
        // Derived secret: stable, 64 hex characters, different per token.
        assert_eq!(t.webhook_secret, derive_secret("123:abc"));
        assert_eq!(t.webhook_secret.len(), 64);
        assert_ne!(derive_secret("123:abc"), derive_secret("123:abd"));
        for (extra, want) in [
            (json!({"webhook_url": "not a url"}), "is not a URL"),
            (
                json!({"webhook_url": "ftp://x/y"}),
                "must be an https:// URL",
            ),
            (
                json!({"webhook_url": "https://x/", "webhook_secret": "has spaces"}),
                "webhook_secret must be",
            ),
        ] {
            let err = with(extra.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{extra}: {err}");
        }
        let c =
            with(json!({"webhook_url": "https://x/", "webhook_secret": "my_Secret-1"})).unwrap();
        assert_eq!(
            TelegramChannel::new(c).unwrap().webhook_secret,
            "my_Secret-1"
        );
    }
}
