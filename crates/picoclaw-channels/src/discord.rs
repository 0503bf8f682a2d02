//! Discord, through serenity: the gateway connection (DMs, guild channels and threads, with
//! reconnect and resume done by serenity), messages answered in guild channels only when they
//! mention the bot or reply to it (`mention_only`, default on), answers split at Discord's
//! 2 000 characters, attachments both ways, buttons as message components with their presses
//! coming back as messages, a typing indicator and a 👀 reaction once a message is kept, an
//! allow-list with pairing and a per-user rate limit. Answers never ping anyone (no allowed
//! mentions), whatever the model writes.
//!
//! `api_base` sends the REST API to a proxy (or a test's loopback fake) with serenity's rate
//! limiter off — serenity ignores the proxy while its rate limiter is on, and the proxy owns
//! rate limits — and the gateway URL then comes from `GET /api/v10/gateway` on that base.
//!
//! Discord has no acknowledgement to hold back: a message the inbox cannot keep is offered again
//! a few times, then logged as lost. Messages reach the inbox in Discord's order (serenity hands
//! events over in parallel tasks; a worker puts them back in order).

use crate::lock;
use crate::{Channel, ChannelError, Inbox, split_message};
use async_trait::async_trait;
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::Value;
use serenity::all::{
    ButtonStyle, ChannelId, Context, CreateActionRow, CreateAllowedMentions, CreateAttachment,
    CreateButton, CreateInteractionResponse, CreateMessage, EventHandler, GatewayIntents, Http,
    HttpBuilder, Interaction, Message, MessageId, ReactionType, Ready, UserId,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Discord's longest message.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// The largest attachment a user sends that is downloaded.
const MAX_DOWNLOAD_BYTES: u32 = 25 * 1024 * 1024;

/// Discord's longest button `custom_id`.
const MAX_CUSTOM_ID: usize = 100;

/// `channels.discord` of the config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DiscordConfig {
    pub token: String,
    /// REST base URL (default `https://discord.com`).
    pub api_base: Option<String>,
    /// In guild channels, answer only messages that mention the bot or reply to it (default
    /// true). DMs are always answered.
    pub mention_only: bool,
    /// allow_from, rate limit, media folder, paired-users file.
    pub common: crate::settings::Common,
}

impl DiscordConfig {
    /// Reads `channels.discord` from JSON ([`crate::DiscordSection`]'s keys).
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::DiscordSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.discord: {e}")))?;
        Self::from_section(&section)
    }

    /// Builds from the typed section: the original PicoClaw's keys (`token`, `allow_from`)
    /// plus `api_base` and `mention_only`.
    pub fn from_section(section: &crate::DiscordSection) -> Result<Self, ChannelError> {
        let token = crate::sections::trimmed(section.token.as_ref()).ok_or_else(|| {
            ChannelError::Rejected(
                "channels.discord.token is empty: create an application at \
                 https://discord.com/developers/applications, add a bot, and put its token there \
                 (docs/channels/discord.md)"
                    .into(),
            )
        })?;
        let token = token
            .strip_prefix("Bot ")
            .map_or(token.clone(), str::to_owned);
        let api_base = crate::settings::checked_api_base(section.api_base.as_deref(), "discord")?;
        Ok(Self {
            token,
            common: crate::settings::Common::from_keys(
                section.allow_from.clone(),
                section.rate_limit_per_minute,
            ),
            api_base,
            mention_only: section.mention_only.unwrap_or(true),
        })
    }
}

impl crate::settings::ChannelSettings for DiscordConfig {
    fn common_mut(&mut self) -> &mut crate::settings::Common {
        &mut self.common
    }
}

/// The gateway intents the bot asks for. `MESSAGE_CONTENT` is privileged: it must be switched
/// on in the Developer Portal (Bot → Privileged Gateway Intents), or Discord closes the
/// connection (4014).
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The Discord channel.
pub struct DiscordChannel {
    inner: Arc<Inner>,
}

struct Inner {
    config: DiscordConfig,
    http: Arc<Http>,
    /// The bot's user id, known once `run` asked `users/@me`.
    me: Mutex<Option<UserId>>,
    access: OnceLock<crate::access::Access>,
}

impl std::fmt::Debug for DiscordChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordChannel")
            .field("api_base", &self.inner.config.api_base)
            .field("mention_only", &self.inner.config.mention_only)
            .finish_non_exhaustive()
    }
}

/// A REST client: through `api_base` with serenity's rate limiter off, or Discord itself with
/// it on.
fn http_client(config: &DiscordConfig) -> Http {
    let builder = HttpBuilder::new(&config.token);
    match &config.api_base {
        Some(base) => builder
            .proxy(base.as_str())
            .ratelimiter_disabled(true)
            .build(),
        None => builder.build(),
    }
}

/// The HTTP status of a failed REST call, if it got that far.
fn status_of(e: &serenity::Error) -> Option<u16> {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
            Some(r.status_code.as_u16())
        }
        _ => None,
    }
}

fn rest_error(what: &str, e: &serenity::Error) -> ChannelError {
    match status_of(e) {
        // Wrong channel, no permission, a message Discord will not take: retrying won't help.
        Some(400 | 401 | 403 | 404 | 413) => ChannelError::Rejected(format!("discord {what}: {e}")),
        _ => ChannelError::Platform(format!("discord {what}: {e}")),
    }
}

impl DiscordChannel {
    pub fn new(config: DiscordConfig) -> Result<Self, ChannelError> {
        Ok(Self {
            inner: Arc::new(Inner {
                http: Arc::new(http_client(&config)),
                config,
                me: Mutex::new(None),
                access: OnceLock::new(),
            }),
        })
    }
}

impl Inner {
    fn access(&self) -> &crate::access::Access {
        self.access
            .get_or_init(|| self.config.common.access("discord"))
    }

    fn me(&self) -> Option<UserId> {
        *lock(&self.me)
    }

    /// A short reply outside the conversation (pairing, slow down), in the background.
    fn notice(&self, channel: ChannelId, text: &'static str) {
        let http = Arc::clone(&self.http);
        tokio::spawn(async move {
            let _ = channel
                .send_message(
                    &http,
                    CreateMessage::new()
                        .content(text)
                        .allowed_mentions(CreateAllowedMentions::new()),
                )
                .await;
        });
    }

    /// The inbound message a Discord message carries for the agent, if it is one to answer.
    fn inbound_of(&self, msg: &Message) -> Option<InboundMessage> {
        let me = self.me()?;
        // Discord delivers the bot's own messages and other bots' too.
        if msg.author.bot || msg.author.id == me || msg.webhook_id.is_some() {
            return None;
        }
        let direct = msg.guild_id.is_none();
        let mention_tags = [format!("<@{me}>"), format!("<@!{me}>")];
        let mentioned = msg.mentions.iter().any(|u| u.id == me)
            || mention_tags
                .iter()
                .any(|t| msg.content.contains(t.as_str()));
        let replied_to_me = msg
            .referenced_message
            .as_ref()
            .is_some_and(|m| m.author.id == me);
        if !direct && self.config.mention_only && !mentioned && !replied_to_me {
            return None;
        }
        let mut content = msg.content.clone();
        for tag in &mention_tags {
            content = content.replace(tag.as_str(), "");
        }
        let content = content.trim().to_owned();
        let user_id = msg.author.id.to_string();
        if direct && let Some(result) = self.access().try_pair(&user_id, &content) {
            let text = match result {
                crate::access::Pairing::Paired => "Paired: you can talk to me now.",
                crate::access::Pairing::Refused => "That code is wrong or was already used.",
            };
            self.notice(msg.channel_id, text);
            return None;
        }
        if !self.access().allowed(&user_id, Some(&msg.author.name)) {
            tracing::info!(user = %user_id, username = %msg.author.name, "discord: not on allow_from; ignored");
            return None;
        }
        if let Err(first) = self.access().take(&user_id) {
            if first {
                self.notice(
                    msg.channel_id,
                    "You are sending messages faster than I can take them; slow down a little.",
                );
            }
            return None;
        }
        let mut inbound =
            InboundMessage::new("discord", msg.channel_id.to_string(), user_id, content)
                .with_metadata("message_id", msg.id.to_string())
                .with_metadata("username", msg.author.name.clone());
        // For bindings: a guild message is its channel's, a direct message the user's.
        match msg.guild_id {
            Some(guild) => {
                inbound = inbound
                    .with_metadata("guild_id", guild.to_string())
                    .with_metadata("peer_kind", "channel");
            }
            None => inbound = inbound.with_metadata("peer_kind", "user"),
        }
        Some(inbound)
    }

    /// Typing indicator, attachments saved, the message handed to the inbox (offered again a
    /// few times if the inbox cannot keep it), then 👀.
    async fn take_in(&self, inbox: &dyn Inbox, mut inbound: InboundMessage, msg: &Message) {
        let _ = msg.channel_id.broadcast_typing(&self.http).await;
        if self.config.common.media_dir.is_some() {
            for attachment in msg.attachments.iter().take(10) {
                match self.save_attachment(attachment, msg).await {
                    Ok(media) => inbound.media.push(media),
                    Err(e) => {
                        tracing::warn!(error = %e, "discord: an attachment could not be saved");
                        inbound.content = format!(
                            "{}\n[an attachment could not be downloaded: {e}]",
                            inbound.content
                        )
                        .trim()
                        .to_owned();
                    }
                }
            }
        }
        if inbound.content.is_empty() && inbound.media.is_empty() {
            return;
        }
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=6 {
            match inbox.deliver(inbound.clone()).await {
                Ok(()) => {
                    let http = Arc::clone(&self.http);
                    let (channel, id) = (msg.channel_id, msg.id);
                    tokio::spawn(async move {
                        let _ = http
                            .create_reaction(channel, id, &ReactionType::Unicode("👀".into()))
                            .await;
                    });
                    return;
                }
                Err(e) if attempt < 6 => {
                    tracing::warn!(error = %e, attempt, "discord: the inbox did not keep a message; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e, message_id = %msg.id, "discord: a message was lost (the inbox refused it six times)");
                }
            }
        }
    }

    async fn save_attachment(
        &self,
        attachment: &serenity::all::Attachment,
        msg: &Message,
    ) -> Result<MediaRef, String> {
        let name = attachment.filename.clone();
        if attachment.size > MAX_DOWNLOAD_BYTES {
            return Err(format!(
                "{name} is {} MiB; attachments up to 25 MiB are taken",
                attachment.size / (1024 * 1024)
            ));
        }
        let bytes = tokio::time::timeout(Duration::from_secs(60), attachment.download())
            .await
            .map_err(|_| format!("{name}: download timed out"))?
            .map_err(|e| format!("{name}: {e}"))?;
        let path = crate::settings::save_download(
            &self.config.common,
            &msg.channel_id.to_string(),
            &format!("{}-{name}", msg.id),
            bytes,
        )
        .await?;
        let mime = attachment.content_type.as_deref().unwrap_or_default();
        let kind = if mime.starts_with("image/") {
            MediaKind::Image
        } else if mime.starts_with("audio/") {
            MediaKind::Audio
        } else if mime.starts_with("video/") {
            MediaKind::Video
        } else {
            MediaKind::Document
        };
        Ok(MediaRef::new(kind, path.display().to_string()).with_name(name))
    }
}

/// What serenity calls with gateway events. serenity runs each call in a task of its own, so
/// two messages dispatched back to back may start in either order: messages go to one worker
/// ([`take_in_order`]) at once, which puts each burst back in Discord's order.
struct Handler {
    inner: Arc<Inner>,
    inbox: Arc<dyn Inbox>,
    messages: tokio::sync::mpsc::UnboundedSender<Message>,
}

/// How long the worker waits for the rest of a burst before ordering it.
const BURST: Duration = Duration::from_millis(25);

/// Takes messages in Discord's order: a burst (a resume replays many at once) is sorted by
/// message id (snowflakes grow with time), then each is taken in turn.
async fn take_in_order(
    inner: Arc<Inner>,
    inbox: Arc<dyn Inbox>,
    mut messages: tokio::sync::mpsc::UnboundedReceiver<Message>,
) {
    while let Some(first) = messages.recv().await {
        let mut burst = vec![first];
        tokio::time::sleep(BURST).await;
        while let Ok(more) = messages.try_recv() {
            burst.push(more);
        }
        burst.sort_by_key(|m| m.id);
        for msg in burst {
            if let Some(inbound) = inner.inbound_of(&msg) {
                inner.take_in(inbox.as_ref(), inbound, &msg).await;
            }
        }
    }
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        *lock(&self.inner.me) = Some(ready.user.id);
        tracing::info!(bot = %ready.user.name, guilds = ready.guilds.len(), "discord connected");
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        let _ = self.messages.send(msg);
    }

    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let Interaction::Component(press) = interaction else {
            return;
        };
        // Discord wants an answer within 3 s, or the user sees "interaction failed".
        let _ = press
            .create_response(&self.inner.http, CreateInteractionResponse::Acknowledge)
            .await;
        let user_id = press.user.id.to_string();
        if press.user.bot
            || !self
                .inner
                .access()
                .allowed(&user_id, Some(&press.user.name))
            || self.inner.access().take(&user_id).is_err()
        {
            return;
        }
        let inbound = InboundMessage::new(
            "discord",
            press.channel_id.to_string(),
            user_id,
            press.data.custom_id.clone(),
        )
        .with_metadata("button", "true")
        .with_metadata("message_id", format!("press-{}", press.id));
        if let Err(e) = self.inbox.deliver(inbound).await {
            tracing::warn!(error = %e, "discord: a button press was not kept");
        }
    }
}

/// Stops the message worker when `run` ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Message components for button rows (at most 5 rows of 5 buttons, Discord's limits).
fn components(rows: &[Vec<picoclaw_api::Button>]) -> Vec<CreateActionRow> {
    rows.iter()
        .take(5)
        .map(|row| {
            CreateActionRow::Buttons(
                row.iter()
                    .take(5)
                    .map(|b| {
                        let id: String = b.data.chars().take(MAX_CUSTOM_ID).collect();
                        let label: String = b.text.chars().take(80).collect();
                        CreateButton::new(id)
                            .label(label)
                            .style(ButtonStyle::Primary)
                    })
                    .collect(),
            )
        })
        .collect()
}

#[async_trait]
impl Channel for DiscordChannel {
    fn name(&self) -> &str {
        "discord"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        // A refused token is a clear error here, not a retry loop.
        let me = inner.http.get_current_user().await.map_err(|e| {
            if status_of(&e) == Some(401) {
                ChannelError::Rejected(
                    "Discord refused channels.discord.token (401 Unauthorized): copy the token \
                     from the Developer Portal (Bot → Reset Token)"
                        .into(),
                )
            } else {
                ChannelError::Platform(format!("discord users/@me: {e}"))
            }
        })?;
        *lock(&inner.me) = Some(me.id);
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = inner.access();
        if inner.config.api_base.is_some() {
            // serenity falls back to Discord's own gateway when this fails; through a proxy,
            // fail instead.
            inner.http.get_gateway().await.map_err(|e| {
                ChannelError::Platform(format!("discord gateway URL from api_base: {e}"))
            })?;
        }
        let (messages, queue) = tokio::sync::mpsc::unbounded_channel();
        let worker = tokio::spawn(take_in_order(Arc::clone(inner), Arc::clone(&inbox), queue));
        let _worker = AbortOnDrop(worker);
        let handler = Handler {
            inner: Arc::clone(inner),
            inbox,
            messages,
        };
        let mut client =
            serenity::client::ClientBuilder::new_with_http(http_client(&inner.config), intents())
                .event_handler(handler)
                .await
                .map_err(|e| ChannelError::Platform(format!("discord client: {e}")))?;
        let shards = Arc::clone(&client.shard_manager);
        tokio::select! {
            result = client.start() => match result {
                Ok(()) => Ok(()),
                Err(serenity::Error::Gateway(serenity::gateway::GatewayError::InvalidAuthentication)) => {
                    Err(ChannelError::Rejected("Discord refused the token at the gateway (4004)".into()))
                }
                Err(serenity::Error::Gateway(
                    serenity::gateway::GatewayError::DisallowedGatewayIntents
                    | serenity::gateway::GatewayError::InvalidGatewayIntents,
                )) => Err(ChannelError::Rejected(
                    "Discord refused the gateway intents (4014): switch on MESSAGE CONTENT \
                     INTENT under Bot → Privileged Gateway Intents in the Developer Portal"
                        .into(),
                )),
                Err(e) => Err(ChannelError::Platform(format!("discord gateway: {e}"))),
            },
            () = stop.cancelled() => {
                shards.shutdown_all().await;
                Ok(())
            }
        }
    }

    async fn typing(&self, chat_id: &str) {
        if let Some(channel) = chat_id.parse::<u64>().ok().filter(|id| *id != 0) {
            let _ = ChannelId::new(channel)
                .broadcast_typing(&self.inner.http)
                .await;
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let inner = &self.inner;
        let channel: ChannelId = msg
            .chat_id
            .parse::<u64>()
            .ok()
            .filter(|id| *id != 0)
            .map(ChannelId::new)
            .ok_or_else(|| {
                ChannelError::Rejected(format!("'{}' is not a Discord channel id", msg.chat_id))
            })?;
        // Threaded under the message it answers, where there is one.
        let reply_to = msg
            .reply_to
            .as_deref()
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|id| *id != 0)
            .map(MessageId::new);
        let mut parts = split_message(&msg.content, MAX_MESSAGE_CHARS);
        if parts.is_empty() && (!msg.media.is_empty() || !msg.buttons.is_empty()) {
            parts.push(String::new());
        }
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == count;
            let mut create = CreateMessage::new()
                .content(part)
                // The model's text never pings @everyone, roles or users.
                .allowed_mentions(CreateAllowedMentions::new());
            if i == 0
                && let Some(id) = reply_to
            {
                create = create.reference_message((channel, id));
            }
            if last {
                if !msg.buttons.is_empty() {
                    create = create.components(components(&msg.buttons));
                }
                for media in &msg.media {
                    let file = CreateAttachment::path(&media.location).await.map_err(|e| {
                        ChannelError::Rejected(format!("cannot read {}: {e}", media.location))
                    })?;
                    create = create.add_file(file);
                }
            }
            channel
                .send_message(&inner.http, create)
                .await
                .map_err(|e| rest_error("create message", &e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_reads_the_original_keys_and_checks_them() {
        let c = DiscordConfig::from_json(&json!({"enabled": true, "token": "Bot abc",
            "allow_from": ["123", "ada"], "api_base": "http://127.0.0.1:9/"}))
        .unwrap();
        assert_eq!(c.token, "abc");
        assert_eq!(c.common.allow_from, ["123", "ada"]);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9"));
        assert!(c.mention_only);
        let c = DiscordConfig::from_json(&json!({"token": "t", "mention_only": false})).unwrap();
        assert!(!c.mention_only);
        assert!(
            DiscordConfig::from_json(&json!({"token": " "}))
                .unwrap_err()
                .to_string()
                .contains("token is empty")
        );
        assert!(
            DiscordConfig::from_json(&json!({"token": "t", "api_base": "wss://x"}))
                .unwrap_err()
                .to_string()
                .contains("http(s)")
        );
    }

    #[test]
    fn the_bot_asks_for_message_content() {
        assert!(intents().contains(GatewayIntents::MESSAGE_CONTENT));
        assert!(intents().contains(GatewayIntents::DIRECT_MESSAGES));
    }
}
