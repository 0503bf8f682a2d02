//! LINE, through the Messaging API: signed webhooks on the gateway's `/webhook/line` (and on the
//! original's `webhook_host/port/path` listener when it names another port), answers through the
//! reply API while the inbound message's reply token is fresh and the push API otherwise, the
//! loading animation while a turn runs, images and voice saved from the content API.
//!
//! Every request must carry `X-Line-Signature`, the base64 HMAC-SHA256 of the raw body under
//! the channel secret; it is checked (in constant time) before the body is parsed. A webhook is
//! answered 200 as soon as the inbox took its messages; when it could not, 500, so that LINE
//! redelivers (redeliveries keep their `webhookEventId`, by which the kept ones are dropped).
//!
//! Groups and rooms are answered when the bot is mentioned (the mention is cut from the text) or
//! on a configured prefix; 1:1 chats always, subject to `allow_from` (LINE user ids `U...`).

use crate::access::{Access, Admission};
use crate::group::{Claim, GroupTrigger, Seen};
use crate::json_str as s;
use crate::lock;
use crate::settings::{ChannelSettings, Common};
use crate::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest, WebhookResponse};
use async_trait::async_trait;
use base64::Engine as _;
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The longest text of one message object.
pub const MAX_TEXT_CHARS: usize = 5000;
/// Message objects one reply or push call takes.
const MAX_MESSAGES_PER_CALL: usize = 5;
/// The largest image or voice note downloaded.
const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;
/// The largest webhook body taken (LINE batches events, but they are small).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A reply token is valid for a minute after the event; it is used only well within that.
const REPLY_TOKEN_TTL: Duration = Duration::from_secs(50);
/// Reply tokens kept (the newest messages').
const REPLY_TOKENS_CAP: usize = 1024;
/// Event ids remembered to drop redeliveries.
const SEEN_CAP: usize = 4096;
/// How long one API call may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

const DEFAULT_API_BASE: &str = "https://api.line.me";
const DEFAULT_DATA_BASE: &str = "https://api-data.line.me";

/// Builds `channels.line`.
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(LineChannel::from_setup(setup)?))
}

/// `channels.line`, read and checked.
#[derive(Clone)]
#[non_exhaustive]
pub struct LineConfig {
    channel_secret: String,
    channel_access_token: String,
    /// The Messaging API base, without a trailing `/`.
    pub api_base: String,
    /// The content API base (media downloads), without a trailing `/`.
    pub api_data_base: String,
    /// The original's own webhook listener, when it is not the gateway's port.
    pub own_listener: Option<(SocketAddr, String)>,
    /// When groups are answered.
    pub trigger: GroupTrigger,
    /// allow_from, rate limit, media folder, paired-users file.
    pub common: Common,
}

impl std::fmt::Debug for LineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineConfig")
            .field("api_base", &self.api_base)
            .field("api_data_base", &self.api_data_base)
            .field("own_listener", &self.own_listener)
            .field("trigger", &self.trigger)
            .finish_non_exhaustive()
    }
}

impl ChannelSettings for LineConfig {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

fn required(value: Option<&String>, key: &str, how: &str) -> Result<String, ChannelError> {
    crate::sections::trimmed(value).ok_or_else(|| {
        ChannelError::Rejected(format!(
            "channels.line.{key} is empty: {how} (docs/channels/line.md)"
        ))
    })
}

impl LineConfig {
    /// Reads `channels.line` ([`crate::LineSection`]'s keys, `group_trigger`); `gateway_port` is
    /// the port whose `/webhook/line` already serves the channel.
    pub fn from_json(value: &Value, gateway_port: Option<u16>) -> Result<Self, ChannelError> {
        let section: crate::LineSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.line: {e}")))?;
        let channel_secret = required(
            section.channel_secret.as_ref(),
            "channel_secret",
            "copy the Channel secret from the LINE Developers Console (Basic settings)",
        )?;
        let channel_access_token = required(
            section.channel_access_token.as_ref(),
            "channel_access_token",
            "issue a long-lived channel access token in the Messaging API tab",
        )?;
        let api_base = crate::settings::checked_api_base(section.api_base.as_deref(), "line")?;
        let data_base = crate::settings::checked_api_base(section.api_data_base.as_deref(), "line")
            .map_err(|e| {
                ChannelError::Rejected(e.to_string().replace("api_base", "api_data_base"))
            })?;
        let api_data_base = data_base
            .or_else(|| api_base.clone())
            .unwrap_or_else(|| DEFAULT_DATA_BASE.to_owned());
        let own_listener = crate::listener::own_address(
            "line",
            section.webhook_host.as_deref(),
            section.webhook_port,
            section.webhook_path.as_deref(),
            gateway_port,
        )?;
        Ok(Self {
            channel_secret,
            channel_access_token,
            api_base: api_base.unwrap_or_else(|| DEFAULT_API_BASE.to_owned()),
            api_data_base,
            own_listener,
            trigger: GroupTrigger::from_settings(value),
            common: Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute),
        })
    }
}

/// Whether `signature` (the `X-Line-Signature` header) is the base64 HMAC-SHA256 of `body`
/// under `secret`; ring compares in constant time.
pub(crate) fn signature_ok(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, body, &given).is_ok()
}

/// `text` without the spans `[index, index + length)`, counted in UTF-16 units as LINE's
/// clients count characters; spans that do not fit the text are left alone.
pub(crate) fn cut_spans(text: &str, mut spans: Vec<(usize, usize)>) -> String {
    let units: Vec<u16> = text.encode_utf16().collect();
    spans.sort_unstable();
    let mut out: Vec<u16> = Vec::with_capacity(units.len());
    let mut at = 0;
    for (index, length) in spans {
        let end = index.saturating_add(length);
        if index < at || end > units.len() {
            continue;
        }
        out.extend_from_slice(&units[at..index]);
        at = end;
    }
    out.extend_from_slice(&units[at..]);
    String::from_utf16_lossy(&out)
}

/// Reply tokens of recent messages, by message id: each used at most once, and only while fresh.
#[derive(Debug, Default)]
struct ReplyTokens {
    tokens: HashMap<String, (String, Instant)>,
    order: VecDeque<String>,
}

impl ReplyTokens {
    fn insert(&mut self, message_id: &str, token: &str) {
        if self
            .tokens
            .insert(message_id.to_owned(), (token.to_owned(), Instant::now()))
            .is_none()
        {
            self.order.push_back(message_id.to_owned());
        }
        while self.order.len() > REPLY_TOKENS_CAP {
            if let Some(old) = self.order.pop_front() {
                self.tokens.remove(&old);
            }
        }
    }

    fn take(&mut self, message_id: &str, ttl: Duration) -> Option<String> {
        let (token, at) = self.tokens.remove(message_id)?;
        self.order.retain(|id| id != message_id);
        (at.elapsed() < ttl).then_some(token)
    }
}

/// The LINE channel.
pub struct LineChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LineChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: LineConfig,
    http: reqwest::Client,
    /// The bot's own user id, known once `run` asked `/v2/bot/info`.
    bot_user: Mutex<Option<String>>,
    access: OnceLock<Access>,
    seen: Seen,
    replies: Mutex<ReplyTokens>,
}

/// A media message's kind and the file extension of its content.
fn media_kind(kind: &str) -> Option<(MediaKind, &'static str)> {
    match kind {
        "image" => Some((MediaKind::Image, "jpg")),
        "audio" => Some((MediaKind::Audio, "m4a")),
        _ => None,
    }
}

impl LineChannel {
    /// The channel `setup` describes (`channels.line` and the gateway's folders and port).
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let config = LineConfig::from_json(&setup.settings, setup.gateway_port)?
            .with_media_dir(&setup.media_dir)
            .with_media_base(&setup.workspace)
            .with_paired_file(&setup.paired_file);
        Self::new(config)
    }

    /// The channel with `config`.
    pub fn new(config: LineConfig) -> Result<Self, ChannelError> {
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("line: {e}")))?
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("line: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                bot_user: Mutex::new(None),
                access: OnceLock::new(),
                seen: Seen::new(SEEN_CAP),
                replies: Mutex::new(ReplyTokens::default()),
            }),
        })
    }

    /// The one-time pairing code, while pairing is open (nobody on `allow_from` yet).
    pub fn pairing_code(&self) -> Option<String> {
        self.inner.access().pairing_code()
    }

    /// Signed in as `bot_user` without asking LINE (the fuzz targets have no LINE).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn signed_in_for_fuzzing(&self, bot_user: &str) {
        *lock(&self.inner.bot_user) = Some(bot_user.to_owned());
    }
}

impl Inner {
    fn access(&self) -> &Access {
        self.access
            .get_or_init(|| self.config.common.access("line"))
    }

    fn bot_user(&self) -> Option<String> {
        lock(&self.bot_user).clone()
    }

    /// `GET /v2/bot/info`: the bot's user id, and the proof that the access token works.
    async fn identify(&self) -> Result<(), ChannelError> {
        let url = format!("{}/v2/bot/info", self.config.api_base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.config.channel_access_token)
            .send()
            .await
            .map_err(|e| {
                ChannelError::Platform(format!("line: GET /v2/bot/info: {}", e.without_url()))
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if matches!(status.as_u16(), 401 | 403) {
            return Err(ChannelError::Rejected(format!(
                "channels.line.channel_access_token was refused by LINE ({}): {}; issue a new \
                 long-lived token in the Messaging API tab",
                status.as_u16(),
                s(&body, "message").unwrap_or("no reason given")
            )));
        }
        if !status.is_success() {
            return Err(ChannelError::Platform(format!(
                "line: GET /v2/bot/info answered {status}"
            )));
        }
        let Some(user) = s(&body, "userId") else {
            return Err(ChannelError::Platform(
                "line: /v2/bot/info gave no userId".into(),
            ));
        };
        tracing::info!(bot_user = user, "line: signed in");
        *lock(&self.bot_user) = Some(user.to_owned());
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = self.access();
        Ok(())
    }

    /// One webhook request, from the gateway's route or the own listener.
    async fn webhook(&self, request: WebhookRequest, inbox: &dyn Inbox) -> WebhookResponse {
        if request.method != "POST" {
            return WebhookResponse::text(405, "LINE webhooks are POST requests");
        }
        if request.body.len() > MAX_BODY_BYTES {
            return WebhookResponse::text(413, "body too large");
        }
        let signature = request.header("x-line-signature").unwrap_or_default();
        if !signature_ok(&self.config.channel_secret, &request.body, signature) {
            tracing::warn!("line webhook: missing or wrong X-Line-Signature; refused");
            return WebhookResponse::text(401, "bad signature");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return WebhookResponse::text(400, "not a LINE webhook (JSON expected)");
        };
        let events = body
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        // The console's Verify button sends no events.
        if events.is_empty() {
            return WebhookResponse::text(200, "");
        }
        let Some(me) = self.bot_user() else {
            return WebhookResponse::text(503, "not signed in to LINE yet; send it again");
        };
        for event in &events {
            if let Err(e) = self.take_event(event, &me, inbox).await {
                tracing::warn!(error = %e, "line: a message was not kept; LINE may redeliver");
                return WebhookResponse::text(500, "not kept, retry");
            }
        }
        WebhookResponse::text(200, "")
    }

    /// One webhook event. `Err` only when the inbox did not take a message.
    async fn take_event(
        &self,
        event: &Value,
        me: &str,
        inbox: &dyn Inbox,
    ) -> Result<(), picoclaw_api::InboxError> {
        let kind = s(event, "type").unwrap_or_default();
        if kind != "message" {
            tracing::debug!(kind, "line: event ignored");
            return Ok(());
        }
        let message = event.get("message").cloned().unwrap_or(Value::Null);
        let source = event.get("source").cloned().unwrap_or(Value::Null);
        let (Some(message_id), Some(user)) = (s(&message, "id"), s(&source, "userId")) else {
            return Ok(());
        };
        if user == me {
            return Ok(());
        }
        match self.admit(event, &message, &source, user, me).await {
            Some((inbound, claim)) => {
                let reply_token = s(event, "replyToken").map(str::to_owned);
                // On an error (or when LINE gives up on the webhook and this future is
                // dropped) the claim is dropped unkept: the redelivery gets through.
                inbox.deliver(inbound).await?;
                claim.keep();
                if let Some(token) = reply_token {
                    lock(&self.replies).insert(message_id, &token);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The inbox message for a message event and the claim on its event id, or `None` when it
    /// is not for the agent (a group line without mention or prefix, a stranger, a pairing
    /// attempt, a sticker...) or was taken before (LINE's redelivery keeps `webhookEventId`).
    async fn admit(
        &self,
        event: &Value,
        message: &Value,
        source: &Value,
        user: &str,
        me: &str,
    ) -> Option<(InboundMessage, Claim<'_>)> {
        let message_id = s(message, "id")?;
        let chat_kind = s(source, "type").unwrap_or("user");
        let direct = chat_kind == "user";
        let chat_id = if direct {
            user
        } else {
            s(source, "groupId").or_else(|| s(source, "roomId"))?
        };
        let msg_type = s(message, "type").unwrap_or_default();
        let media = media_kind(msg_type);
        let text = match msg_type {
            "text" => self.text_without_mention(message, me),
            _ if media.is_some() => (String::new(), false),
            _ => return None,
        };
        let (text, mentioned) = text;
        let content = if direct {
            text.trim().to_owned()
        } else {
            self.config.trigger.admit(&text, mentioned)?
        };
        let reply_token = s(event, "replyToken");
        let event_id = s(event, "webhookEventId").unwrap_or(message_id);
        let claim = match self
            .access()
            .admit(&[user], direct, &content, || self.seen.claim(event_id))
        {
            Admission::Deliver(claim) => claim,
            Admission::Answer(text) => {
                self.notice(reply_token, chat_id, text).await;
                return None;
            }
            Admission::Ignore => return None,
        };
        let mut inbound = InboundMessage::new("line", chat_id, user, content)
            .with_metadata("message_id", message_id)
            .with_metadata("peer_kind", if direct { "user" } else { "group" })
            .with_metadata("chat_type", chat_kind);
        if let Some(at) = event
            .get("timestamp")
            .and_then(Value::as_i64)
            .and_then(picoclaw_api::reexports::chrono::DateTime::from_timestamp_millis)
        {
            inbound = inbound.with_timestamp(at);
        }
        if let Some((kind, ext)) = media {
            match self.save_media(chat_id, message_id, kind, ext).await {
                Ok(media) => inbound = inbound.with_media(media),
                Err(e) => {
                    tracing::warn!(error = %e, "line: media not saved");
                    // The agent gets a neutral note, never the transport's error text.
                    inbound.content = if kind == MediaKind::Image {
                        "[an image could not be downloaded]".to_owned()
                    } else {
                        "[a voice message could not be downloaded]".to_owned()
                    };
                }
            }
        }
        Some((inbound, claim))
    }

    /// The text of a text message without the bot's mentions, and whether it was mentioned.
    fn text_without_mention(&self, message: &Value, me: &str) -> (String, bool) {
        let text = s(message, "text").unwrap_or_default();
        let mentionees = message
            .get("mention")
            .and_then(|m| m.get("mentionees"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let spans: Vec<(usize, usize)> = mentionees
            .iter()
            .filter(|m| {
                m.get("isSelf").and_then(Value::as_bool) == Some(true) || s(m, "userId") == Some(me)
            })
            .filter_map(|m| {
                let index = usize::try_from(m.get("index")?.as_u64()?).ok()?;
                let length = usize::try_from(m.get("length")?.as_u64()?).ok()?;
                Some((index, length))
            })
            .collect();
        if spans.is_empty() {
            return (text.to_owned(), false);
        }
        (cut_spans(text, spans), true)
    }

    /// Downloads a message's content (capped) and saves it in the media folder.
    async fn save_media(
        &self,
        chat_id: &str,
        message_id: &str,
        kind: MediaKind,
        ext: &str,
    ) -> Result<MediaRef, String> {
        if self.config.common.media_dir.is_none() {
            return Err("no media folder is configured".into());
        }
        let url = format!(
            "{}/v2/bot/message/{message_id}/content",
            self.config.api_data_base
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.config.channel_access_token)
            .send()
            .await
            .map_err(|e| format!("download failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("the content API answered {}", response.status()));
        }
        let mime = crate::settings::mime_of(&response);
        let bytes = crate::settings::read_capped(response, MAX_MEDIA_BYTES).await?;
        let ext = match mime.as_deref() {
            Some("image/png") => "png",
            Some("image/gif") => "gif",
            Some("audio/mpeg") => "mp3",
            _ => ext,
        };
        let name = format!("{message_id}.{ext}");
        let path =
            crate::settings::save_download(&self.config.common, chat_id, &name, bytes).await?;
        let mut media = MediaRef::new(kind, path.to_string_lossy()).with_name(name);
        if let Some(mime) = mime {
            media = media.with_mime(mime);
        }
        Ok(media)
    }

    /// A short answer of the channel's own (pairing, rate limit): by reply token when there is
    /// one, else pushed. Best effort.
    async fn notice(&self, reply_token: Option<&str>, to: &str, text: &str) {
        let messages = vec![json!({"type": "text", "text": text})];
        let sent = match reply_token {
            Some(token) => self.reply(token, &messages).await,
            None => self.push(to, &messages).await,
        };
        if let Err((status, reason)) = sent {
            tracing::debug!(status, %reason, "line: notice not sent");
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(), (u16, String)> {
        let url = format!("{}{path}", self.config.api_base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.config.channel_access_token)
            .json(body)
            .send()
            .await
            .map_err(|e| (0, e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err((
            status.as_u16(),
            s(&body, "message").unwrap_or("no reason given").to_owned(),
        ))
    }

    async fn reply(&self, token: &str, messages: &[Value]) -> Result<(), (u16, String)> {
        self.post(
            "/v2/bot/message/reply",
            &json!({"replyToken": token, "messages": messages}),
        )
        .await
    }

    async fn push(&self, to: &str, messages: &[Value]) -> Result<(), (u16, String)> {
        self.post(
            "/v2/bot/message/push",
            &json!({"to": to, "messages": messages}),
        )
        .await
    }
}

/// A failed send, as the manager should see it.
fn send_error(api: &str, (status, reason): (u16, String)) -> ChannelError {
    match status {
        400 => ChannelError::Rejected(format!("line {api}: LINE refused the message: {reason}")),
        401 | 403 => ChannelError::Platform(format!(
            "line {api}: channels.line.channel_access_token was refused ({status}): {reason}"
        )),
        0 => ChannelError::Platform(format!("line {api}: {reason}")),
        _ => ChannelError::Platform(format!("line {api}: LINE answered {status}: {reason}")),
    }
}

/// The message objects for an answer: its text as plain text in parts LINE takes, and images
/// given by `https://` URL (LINE fetches them itself; local files cannot be sent).
fn message_objects(msg: &OutboundMessage) -> Vec<Value> {
    let mut objects: Vec<Value> = msg
        .media
        .iter()
        .filter(|m| m.kind == MediaKind::Image && m.location.starts_with("https://"))
        .map(|m| {
            json!({"type": "image", "originalContentUrl": m.location,
                   "previewImageUrl": m.location})
        })
        .collect();
    let mut text = crate::format::markdown_to_plain(&msg.content);
    if !msg.buttons.is_empty() {
        text = format!("{text}\n\n{}", picoclaw_api::buttons_as_text(&msg.buttons));
    }
    objects.extend(
        crate::split_message(&text, MAX_TEXT_CHARS)
            .into_iter()
            .filter(|part| !part.trim().is_empty())
            .map(|part| json!({"type": "text", "text": part})),
    );
    objects
}

#[async_trait]
impl Channel for LineChannel {
    fn name(&self) -> &str {
        "line"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        self.inner.identify().await?;
        let Some((addr, path)) = self.inner.config.own_listener.clone() else {
            tracing::info!("line: waiting for webhooks on /webhook/line");
            stop.cancelled().await;
            return Ok(());
        };
        let inner = Arc::clone(&self.inner);
        let handler: crate::listener::Handler = Arc::new(move |request| {
            let (inner, inbox) = (Arc::clone(&inner), Arc::clone(&inbox));
            Box::pin(async move { inner.webhook(request, inbox.as_ref()).await })
        });
        crate::listener::serve("line", addr, path, handler, stop).await
    }

    fn takes_webhooks(&self) -> bool {
        true
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        self.inner.webhook(request, inbox.as_ref()).await
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let inner = &self.inner;
        let objects = message_objects(msg);
        let mut batches = objects.chunks(MAX_MESSAGES_PER_CALL);
        let Some(first) = batches.next() else {
            return Ok(());
        };
        let token = msg
            .reply_to
            .as_deref()
            .and_then(|id| lock(&inner.replies).take(id, REPLY_TOKEN_TTL));
        match token {
            Some(token) => match inner.reply(&token, first).await {
                Ok(()) => {}
                // Used or expired after all: the push API has no such limit.
                Err((400, reason)) => {
                    tracing::debug!(%reason, "line: reply token refused; pushing");
                    inner
                        .push(&msg.chat_id, first)
                        .await
                        .map_err(|e| send_error("push", e))?;
                }
                Err(e) => return Err(send_error("reply", e)),
            },
            None => inner
                .push(&msg.chat_id, first)
                .await
                .map_err(|e| send_error("push", e))?,
        }
        for batch in batches {
            inner
                .push(&msg.chat_id, batch)
                .await
                .map_err(|e| send_error("push", e))?;
        }
        Ok(())
    }

    async fn typing(&self, chat_id: &str) {
        // The loading animation exists in 1:1 chats only (user ids start with U).
        if !chat_id.starts_with('U') {
            return;
        }
        let body = json!({"chatId": chat_id, "loadingSeconds": 20});
        if let Err((status, reason)) = self.inner.post("/v2/bot/chat/loading/start", &body).await {
            tracing::debug!(status, %reason, "line: loading animation not shown");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn signatures_are_base64_hmac_sha256_of_the_raw_body() {
        // RFC 4231-style known vector: HMAC-SHA256("key", "The quick brown fox...").
        let body = b"The quick brown fox jumps over the lazy dog";
        let sig = "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=";
        assert!(signature_ok("key", body, sig));
        assert!(!signature_ok("key2", body, sig));
        assert!(!signature_ok(
            "key",
            b"The quick brown fox jumps over the lazy cat",
            sig
        ));
        assert!(!signature_ok("key", body, ""));
        assert!(!signature_ok("key", body, "not base64!"));
    }

    #[test]
    fn mentions_are_cut_by_utf16_index_and_length() {
        assert_eq!(cut_spans("@pico hello", vec![(0, 5)]), " hello");
        // An emoji is two UTF-16 units.
        assert_eq!(cut_spans("😀 @pico hi", vec![(3, 5)]), "😀  hi");
        assert_eq!(
            cut_spans("@a x @b y", vec![(5, 2), (0, 2)]),
            " x  y",
            "several spans, in any order"
        );
        assert_eq!(cut_spans("short", vec![(3, 10)]), "short");
    }

    #[test]
    fn reply_tokens_work_once_and_only_while_fresh() {
        let mut tokens = ReplyTokens::default();
        tokens.insert("m1", "t1");
        assert_eq!(tokens.take("m1", REPLY_TOKEN_TTL).as_deref(), Some("t1"));
        assert_eq!(tokens.take("m1", REPLY_TOKEN_TTL), None);
        tokens.insert("m2", "t2");
        assert_eq!(tokens.take("m2", Duration::ZERO), None);
        for i in 0..=REPLY_TOKENS_CAP {
            tokens.insert(&i.to_string(), "t");
        }
        assert_eq!(
            tokens.take("0", REPLY_TOKEN_TTL),
            None,
            "the oldest is pushed out"
        );
        assert!(tokens.take("1", REPLY_TOKEN_TTL).is_some());
    }

    #[test]
    fn config_names_the_missing_key_and_defaults_the_bases() {
        let err = |v: Value| LineConfig::from_json(&v, None).unwrap_err().to_string();
        assert!(err(json!({"channel_access_token": "t"})).contains("channels.line.channel_secret"));
        assert!(err(json!({"channel_secret": "s"})).contains("channels.line.channel_access_token"));
        let c = LineConfig::from_json(
            &json!({"channel_secret": "s", "channel_access_token": "t"}),
            None,
        )
        .unwrap();
        assert_eq!(c.api_base, DEFAULT_API_BASE);
        assert_eq!(c.api_data_base, DEFAULT_DATA_BASE);
        let c = LineConfig::from_json(
            &json!({"channel_secret": "s", "channel_access_token": "t",
                    "api_base": "http://127.0.0.1:9/", "webhook_port": 18791}),
            Some(18790),
        )
        .unwrap();
        assert_eq!(c.api_data_base, "http://127.0.0.1:9");
        assert_eq!(c.own_listener.as_ref().unwrap().1, "/webhook/line");
        assert!(format!("{c:?}").contains("api_base") && !format!("{c:?}").contains("\"t\""));
    }
}
