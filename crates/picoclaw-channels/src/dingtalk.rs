//! DingTalk, in Stream mode: picoclaw opens the connection (`/v1.0/gateway/connections/open`
//! with the app's Client ID and Secret, then a WebSocket to the endpoint it names), so no public
//! URL is needed. Robot messages arrive as `CALLBACK` frames on `/v1.0/im/bot/messages/get`; each
//! is acknowledged on the socket only after the inbox kept it (DingTalk redelivers what is not
//! acknowledged; redeliveries are dropped by `msgId`).
//!
//! Answers go back through the message's `sessionWebhook` while it lasts (about 90 minutes),
//! else proactively through the robot APIs with an app access token (cached, renewed before it
//! expires): `oToMessages/batchSend` to a user, `groupMessages/send` to a group. Chat ids say
//! which: `user:<staffId>` for a 1:1 chat, `group:<openConversationId>` for a group.
//!
//! `api_base` points the Open API (and through `connections/open`, the WebSocket) at a test's
//! loopback fake; plain `http://` is then accepted.

use crate::access::{Access, Admission};
use crate::group::{Claim, GroupTrigger, Seen};
use crate::json_str as s;
use crate::lock;
use crate::settings::Common;
use crate::settings::read_capped;
use crate::wsclient::{CloseFrame, Message, WsStream};
use crate::{Channel, ChannelError, ChannelSetup, Inbox, InboxError, split_message};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The longest Markdown text sent in one message (DingTalk's documented markdown limit is
/// 5 000 characters).
pub const MAX_MESSAGE_CHARS: usize = 5000;

/// The Open API of DingTalk.
pub const DEFAULT_API_BASE: &str = "https://api.dingtalk.com";

/// The Stream topic robot messages arrive on.
pub const BOT_TOPIC: &str = "/v1.0/im/bot/messages/get";

/// The largest file a user sends that is downloaded.
const MAX_DOWNLOAD_BYTES: usize = 16 << 20;

/// The largest API answer read.
const MAX_API_BYTES: usize = 1 << 20;

/// Session webhooks remembered (by message id and by chat) for answers.
const SESSIONS_CAP: usize = 2048;

/// A session webhook this close to its expiry is not used any more.
const SESSION_MARGIN_MS: u64 = 60_000;

/// The access token is renewed this long before DingTalk says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// A socket silent for this long is taken for dead (DingTalk pings every few seconds; we ping
/// every `PING_EVERY`).
const SILENCE_LIMIT: Duration = Duration::from_secs(90);
const PING_EVERY: Duration = Duration::from_secs(30);

/// The first pause before reconnecting; it doubles per failed attempt up to a minute.
const RECONNECT_BASE: Duration = Duration::from_millis(500);

/// A connection that lasted this long worked: the backoff starts over after it. A shorter one
/// (a server that accepts, pings and drops) keeps doubling the pause.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The longest a frame written to the socket (an acknowledgement, a ping, the close frame) may
/// take; a peer that stops reading ends the connection instead of holding `run`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The error codes DingTalk answers wrong app credentials with (besides HTTP 401/403); any
/// other refusal (429 throttling, 5xx...) is retried.
const BAD_CREDENTIAL_CODES: &[&str] = &["invalidClientIdOrSecret", "InvalidAuthentication"];

/// `channels.dingtalk`, checked.
#[derive(Clone)]
struct Config {
    client_id: String,
    client_secret: String,
    robot_code: String,
    api_base: String,
    common: Common,
    group: GroupTrigger,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("client_id", &self.client_id)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl Config {
    fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let section: crate::DingtalkSection = setup.settings()?;
        let need = |v: &Option<String>, key: &str, what: &str| {
            crate::sections::trimmed(v.as_ref()).ok_or_else(|| {
                ChannelError::Rejected(format!(
                    "channels.dingtalk.{key} is empty: put the app's {what} there (DingTalk \
                     developer console → your app → Credentials; docs/channels/dingtalk.md)"
                ))
            })
        };
        let client_id = need(&section.client_id, "client_id", "Client ID (AppKey)")?;
        let client_secret = need(
            &section.client_secret,
            "client_secret",
            "Client Secret (AppSecret)",
        )?;
        let api_base = crate::settings::checked_api_base(section.api_base.as_deref(), "dingtalk")?
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let mut common =
            Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute);
        common.media_dir = Some(setup.media_dir.clone());
        common.media_base = Some(setup.workspace.clone());
        common.paired_file = Some(setup.paired_file.clone());
        Ok(Self {
            robot_code: client_id.clone(),
            client_id,
            client_secret,
            api_base,
            common,
            group: GroupTrigger::from_settings(&setup.settings),
        })
    }
}

/// Builds `channels.dingtalk`.
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(DingtalkChannel::from_setup(setup)?))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Session webhooks by message id and by chat id, the oldest forgotten first.
#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<String, (String, u64)>,
    order: VecDeque<String>,
}

impl Sessions {
    fn insert(&mut self, key: String, url: String, expires_ms: u64) {
        if self.map.insert(key.clone(), (url, expires_ms)).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > SESSIONS_CAP {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    /// The webhook under `key` if it is still good for a minute.
    fn live(&self, key: &str, now_ms: u64) -> Option<String> {
        self.map
            .get(key)
            .filter(|(_, expires)| now_ms + SESSION_MARGIN_MS < *expires)
            .map(|(url, _)| url.clone())
    }
}

/// Where a chat id sends to when no session webhook is live.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    User(&'a str),
    Group(&'a str),
}

fn target(chat_id: &str) -> Result<Target<'_>, ChannelError> {
    match chat_id.split_once(':') {
        Some(("user", id)) if !id.is_empty() => Ok(Target::User(id)),
        Some(("group", id)) if !id.is_empty() => Ok(Target::Group(id)),
        _ => Err(ChannelError::Rejected(format!(
            "dingtalk: chat id '{chat_id}' is neither user:<staffId> nor group:<openConversationId>"
        ))),
    }
}

/// The acknowledgement of frame `message_id` with `data` (a JSON string), as the Stream SDKs
/// send it.
fn ack(message_id: &str, code: u16, message: &str, data: &str) -> String {
    json!({
        "code": code,
        "headers": {"contentType": "application/json", "messageId": message_id},
        "message": message,
        "data": data,
    })
    .to_string()
}

/// The WebSocket URL of an opened connection: the endpoint with the ticket in its query.
fn socket_url(endpoint: &str, ticket: &str) -> Result<String, ChannelError> {
    let mut url = url::Url::parse(endpoint).map_err(|e| {
        ChannelError::Platform(format!("dingtalk: the stream endpoint '{endpoint}': {e}"))
    })?;
    url.query_pairs_mut().append_pair("ticket", ticket);
    Ok(url.into())
}

/// The first 200 characters of an error body, for a log line.
fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// The close frame of a client that stops.
fn goodbye() -> CloseFrame {
    CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "picoclaw stops".into(),
    }
}

/// What a session ended with.
enum End {
    Stopped,
    /// The socket dropped or DingTalk asked for a new connection.
    Reconnect,
}

/// The reconnection attempt after a connection that lasted `lasted`: counting starts over
/// after a connection that held for [`STABLE_AFTER`], else the pause keeps growing.
fn attempt_after(attempt: u32, lasted: Duration) -> u32 {
    if lasted >= STABLE_AFTER { 0 } else { attempt }
}

/// Whether an answer refusing a call (`status`, JSON `value`) says the app's credentials are
/// wrong: what retrying cannot fix.
fn bad_credentials(status: u16, value: &Value) -> bool {
    matches!(status, 401 | 403)
        || (400..500).contains(&status)
            && s(value, "code").is_some_and(|code| BAD_CREDENTIAL_CODES.contains(&code))
}

/// Writes `message`, bounded by [`WRITE_TIMEOUT`]; `false` when the connection is done.
async fn write(ws: &mut WsStream, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await,
        Ok(Ok(()))
    )
}

/// Closes the connection, bounded by [`WRITE_TIMEOUT`].
async fn close(ws: &mut WsStream, frame: Option<CloseFrame>) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(frame)).await;
}

/// The DingTalk channel.
pub struct DingtalkChannel {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    access: Access,
    seen: Seen,
    sessions: Mutex<Sessions>,
    /// Held across a renewal, so that concurrent sends at expiry make one token request.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for DingtalkChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingtalkChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DingtalkChannel {
    /// The channel `channels.dingtalk` describes; missing keys are a clear error.
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let config = Config::from_setup(setup)?;
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("dingtalk: HTTP client: {e}")))?
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("dingtalk: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                access: config.common.access("dingtalk"),
                config,
                http,
                seen: Seen::new(4096),
                sessions: Mutex::new(Sessions::default()),
                token: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// The one-time pairing code, while pairing is open (nobody on `allow_from` yet).
    pub fn pairing_code(&self) -> Option<String> {
        self.inner.access.pairing_code()
    }
}

impl Inner {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.api_base)
    }

    /// POSTs JSON; the status and the answer as JSON (`Null` when it is not).
    async fn post(
        &self,
        url: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<(u16, Value, Vec<u8>), ChannelError> {
        let mut request = self.http.post(url).json(body);
        if let Some(token) = token {
            request = request.header("x-acs-dingtalk-access-token", token);
        }
        let response = request.send().await.map_err(|e| {
            ChannelError::Platform(format!(
                "dingtalk: {}: {}",
                strip_query(url),
                e.without_url()
            ))
        })?;
        let status = response.status().as_u16();
        let raw = read_capped(response, MAX_API_BYTES)
            .await
            .map_err(|e| ChannelError::Platform(format!("dingtalk: {}: {e}", strip_query(url))))?;
        let value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok((status, value, raw))
    }

    /// Opens a Stream connection: the WebSocket URL with its ticket. Refused credentials are a
    /// one-line `Rejected` naming the keys.
    async fn open(&self) -> Result<String, ChannelError> {
        let body = json!({
            "clientId": self.config.client_id,
            "clientSecret": self.config.client_secret,
            "subscriptions": [
                {"type": "EVENT", "topic": "*"},
                {"type": "CALLBACK", "topic": BOT_TOPIC},
            ],
            "ua": concat!("picoclaw/", env!("CARGO_PKG_VERSION")),
            "localIp": "",
        });
        let (status, value, raw) = self
            .post(&self.url("/v1.0/gateway/connections/open"), None, &body)
            .await?;
        if bad_credentials(status, &value) {
            return Err(ChannelError::Rejected(format!(
                "channels.dingtalk.client_id / client_secret were refused by DingTalk ({status}): \
                 {}",
                excerpt(&raw)
            )));
        }
        if !(200..300).contains(&status) {
            return Err(ChannelError::Platform(format!(
                "dingtalk: connections/open answered {status}: {}",
                excerpt(&raw)
            )));
        }
        let (Some(endpoint), Some(ticket)) = (s(&value, "endpoint"), s(&value, "ticket")) else {
            return Err(ChannelError::Platform(format!(
                "dingtalk: connections/open answered {status} without endpoint and ticket: {}",
                excerpt(&raw)
            )));
        };
        socket_url(endpoint, ticket)
    }

    /// The app access token, cached until five minutes before it expires. The cache stays
    /// locked during a renewal: the sends waiting on it find the new token (one request).
    async fn token(&self) -> Result<String, ChannelError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let body = json!({"appKey": self.config.client_id, "appSecret": self.config.client_secret});
        let (status, value, raw) = self
            .post(&self.url("/v1.0/oauth2/accessToken"), None, &body)
            .await?;
        if bad_credentials(status, &value) {
            return Err(ChannelError::Rejected(format!(
                "channels.dingtalk.client_id / client_secret were refused by DingTalk's token \
                 endpoint ({status}): {}",
                excerpt(&raw)
            )));
        }
        let Some(token) = s(&value, "accessToken") else {
            return Err(ChannelError::Platform(format!(
                "dingtalk: no accessToken in the token answer ({status}): {}",
                excerpt(&raw)
            )));
        };
        let lifetime = Duration::from_secs(
            value
                .get("expireIn")
                .and_then(Value::as_u64)
                .unwrap_or(7200),
        );
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }

    /// Calls a robot API with the access token; a refused token is dropped from the cache.
    async fn robot_call(&self, path: &str, body: &Value) -> Result<Value, ChannelError> {
        let token = self.token().await?;
        let (status, value, raw) = self.post(&self.url(path), Some(&token), body).await?;
        if status == 401 {
            // Dropped unless a concurrent call already renewed it.
            let mut cached = self.token.lock().await;
            if cached.as_ref().is_some_and(|(t, _)| *t == token) {
                *cached = None;
            }
        }
        if !(200..300).contains(&status) {
            return Err(ChannelError::Platform(format!(
                "dingtalk {path} answered {status}: {}",
                excerpt(&raw)
            )));
        }
        Ok(value)
    }

    /// Speaks the Stream protocol on one connection until it ends.
    async fn session(&self, mut ws: WsStream, inbox: &dyn Inbox, stop: &CancellationToken) -> End {
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let frame = tokio::select! {
                () = stop.cancelled() => {
                    close(&mut ws, Some(goodbye())).await;
                    return End::Stopped;
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT {
                        tracing::warn!("dingtalk: the stream went silent; reconnecting");
                        return End::Reconnect;
                    }
                    if !write(&mut ws, Message::Ping(Vec::new().into())).await {
                        return End::Reconnect;
                    }
                    continue;
                }
                frame = ws.next() => frame,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return End::Reconnect,
                Some(Ok(_)) => {
                    last_heard = Instant::now();
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "dingtalk: the stream failed; reconnecting");
                    return End::Reconnect;
                }
            };
            let (answer, disconnect) = self.on_frame(text.as_str(), inbox).await;
            // Stamped after the frame was handled: the time spent on it (downloads, a slow
            // inbox) is ours, not the server's silence.
            last_heard = Instant::now();
            if let Some(answer) = answer
                && !write(&mut ws, Message::Text(answer.into())).await
            {
                return End::Reconnect;
            }
            if disconnect {
                tracing::info!("dingtalk: the server asked for a new connection");
                close(&mut ws, None).await;
                return End::Reconnect;
            }
        }
    }

    /// One frame: the acknowledgement to send (if any) and whether to reconnect.
    async fn on_frame(&self, text: &str, inbox: &dyn Inbox) -> (Option<String>, bool) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::warn!("dingtalk: a frame that is not JSON was ignored");
            return (None, false);
        };
        let headers = frame.get("headers").cloned().unwrap_or(Value::Null);
        let id = s(&headers, "messageId").unwrap_or_default();
        let topic = s(&headers, "topic").unwrap_or_default();
        let data = s(&frame, "data").unwrap_or("{}");
        match s(&frame, "type").unwrap_or_default() {
            "SYSTEM" if topic == "ping" => (Some(ack(id, 200, "OK", data)), false),
            "SYSTEM" if topic == "disconnect" => (None, true),
            "SYSTEM" => (None, false),
            "EVENT" => (
                Some(ack(
                    id,
                    200,
                    "OK",
                    r#"{"status":"SUCCESS","message":"success"}"#,
                )),
                false,
            ),
            "CALLBACK" if topic == BOT_TOPIC => {
                let Ok(message) = serde_json::from_str::<Value>(data) else {
                    return (Some(ack(id, 400, "data is not JSON", "{}")), false);
                };
                match self.take(&message, inbox).await {
                    Ok(()) => (Some(ack(id, 200, "OK", r#"{"response":null}"#)), false),
                    Err(e) => {
                        // No acknowledgement: DingTalk delivers it again.
                        tracing::warn!(error = %e, "dingtalk: a message was not kept");
                        (None, false)
                    }
                }
            }
            "CALLBACK" => (Some(ack(id, 404, "no handler for this topic", "{}")), false),
            _ => (None, false),
        }
    }

    /// A robot message; `Ok` once it is kept or deliberately dropped.
    async fn take(&self, message: &Value, inbox: &dyn Inbox) -> Result<(), InboxError> {
        let Some(msg_id) = s(message, "msgId") else {
            return Ok(());
        };
        let sender_id = s(message, "senderId");
        let Some(sender) = s(message, "senderStaffId").or(sender_id) else {
            return Ok(());
        };
        if s(message, "chatbotUserId").is_some_and(|bot| Some(bot) == sender_id || bot == sender) {
            return Ok(());
        }
        let group = s(message, "conversationType") == Some("2");
        let chat_id = if group {
            let Some(conversation) = s(message, "conversationId") else {
                return Ok(());
            };
            format!("group:{conversation}")
        } else {
            format!("user:{sender}")
        };
        self.remember_session(message, msg_id, &chat_id);
        let (text, media) = content(message);
        let text = if group {
            let mentioned = message
                .get("isInAtList")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match self.config.group.admit(&text, mentioned) {
                Some(text) => text,
                None => return Ok(()),
            }
        } else {
            text.trim().to_owned()
        };
        let ids: Vec<&str> = std::iter::once(sender).chain(sender_id).collect();
        // Claimed only after the access checks (a stranger's flood must not push allowed ids
        // out); forgotten again unless the inbox kept the message, so a redelivery gets through.
        let claim = match self
            .access
            .admit(&ids, !group, &text, || self.seen.claim(msg_id))
        {
            Admission::Deliver(claim) => claim,
            Admission::Answer(notice) => {
                self.notice(&chat_id, msg_id, notice).await;
                return Ok(());
            }
            Admission::Ignore => return Ok(()),
        };
        let mut inbound = InboundMessage::new("dingtalk", chat_id, sender, text)
            .with_metadata("message_id", msg_id)
            .with_metadata("peer_kind", if group { "group" } else { "user" });
        if let Some(nick) = s(message, "senderNick") {
            inbound = inbound.with_metadata("sender_name", nick);
        }
        if let Some(conversation) = s(message, "conversationId") {
            inbound = inbound.with_metadata("conversation_id", conversation);
        }
        let robot_code = s(message, "robotCode").unwrap_or(&self.config.robot_code);
        for (kind, code) in media {
            match self.download(robot_code, &code, kind, msg_id).await {
                Ok(item) => inbound.media.push(item),
                Err(e) => {
                    tracing::warn!(error = %e, "dingtalk: a file could not be saved");
                    inbound.content =
                        format!("{}\n[a file could not be downloaded]", inbound.content)
                            .trim()
                            .to_owned();
                }
            }
        }
        if inbound.content.is_empty() && inbound.media.is_empty() {
            return Ok(());
        }
        deliver(inbox, inbound, claim).await
    }

    fn remember_session(&self, message: &Value, msg_id: &str, chat_id: &str) {
        let Some(url) = s(message, "sessionWebhook") else {
            return;
        };
        let expires = message
            .get("sessionWebhookExpiredTime")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut sessions = lock(&self.sessions);
        sessions.insert(msg_id.to_owned(), url.to_owned(), expires);
        sessions.insert(chat_id.to_owned(), url.to_owned(), expires);
    }

    /// A short answer of the channel's own (pairing, rate limit), best effort.
    async fn notice(&self, chat_id: &str, msg_id: &str, text: &str) {
        if let Err(e) = self
            .send_part(chat_id, Some(msg_id), "picoclaw", text)
            .await
        {
            tracing::debug!(error = %e, "dingtalk: notice not sent");
        }
    }

    /// A picture or voice note: its download URL, then the bytes, saved in the media folder.
    async fn download(
        &self,
        robot_code: &str,
        code: &str,
        kind: MediaKind,
        msg_id: &str,
    ) -> Result<MediaRef, String> {
        let answer = self
            .robot_call(
                "/v1.0/robot/messageFiles/download",
                &json!({"downloadCode": code, "robotCode": robot_code}),
            )
            .await
            .map_err(|e| e.to_string())?;
        let url = s(&answer, "downloadUrl").ok_or("no downloadUrl in the answer")?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("download: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("download answered {}", response.status()));
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_capped(response, MAX_DOWNLOAD_BYTES).await?;
        let (name, fallback) = match kind {
            MediaKind::Image => ("picture.jpg", "image/jpeg"),
            _ => ("voice.amr", "audio/amr"),
        };
        let path = crate::settings::save_download(&self.config.common, msg_id, name, bytes).await?;
        Ok(MediaRef::new(kind, path.display().to_string())
            .with_mime(mime.unwrap_or_else(|| fallback.to_owned()))
            .with_name(name))
    }

    /// Sends one part: through a live session webhook (of `reply_to`, else of the chat), else
    /// proactively.
    async fn send_part(
        &self,
        chat_id: &str,
        reply_to: Option<&str>,
        title: &str,
        text: &str,
    ) -> Result<(), ChannelError> {
        let now = now_ms();
        let webhook = {
            let sessions = lock(&self.sessions);
            reply_to
                .and_then(|id| sessions.live(id, now))
                .or_else(|| sessions.live(chat_id, now))
        };
        match webhook {
            Some(url) => self.send_by_session(&url, title, text).await,
            None => self.send_proactive(chat_id, title, text).await,
        }
    }

    async fn send_by_session(
        &self,
        url: &str,
        title: &str,
        text: &str,
    ) -> Result<(), ChannelError> {
        let body = json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}});
        let (status, value, raw) = self.post(url, None, &body).await?;
        let errcode = value.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        if !(200..300).contains(&status) || errcode != 0 {
            return Err(ChannelError::Platform(format!(
                "dingtalk: the session webhook answered {status}: {}",
                excerpt(&raw)
            )));
        }
        Ok(())
    }

    async fn send_proactive(
        &self,
        chat_id: &str,
        title: &str,
        text: &str,
    ) -> Result<(), ChannelError> {
        let param = json!({"title": title, "text": text}).to_string();
        let robot_code = &self.config.robot_code;
        match target(chat_id)? {
            Target::User(staff) => {
                self.robot_call(
                    "/v1.0/robot/oToMessages/batchSend",
                    &json!({"robotCode": robot_code, "userIds": [staff],
                            "msgKey": "sampleMarkdown", "msgParam": param}),
                )
                .await?;
            }
            Target::Group(conversation) => {
                self.robot_call(
                    "/v1.0/robot/groupMessages/send",
                    &json!({"robotCode": robot_code, "openConversationId": conversation,
                            "msgKey": "sampleMarkdown", "msgParam": param}),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// Hands `inbound` to the inbox; the id stays taken only when it was kept.
async fn deliver(
    inbox: &dyn Inbox,
    inbound: InboundMessage,
    claim: Claim<'_>,
) -> Result<(), InboxError> {
    inbox.deliver(inbound).await?;
    claim.keep();
    Ok(())
}

/// A URL without its query (session webhooks carry their credential there).
fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The text of a robot message and the download codes of its picture or voice note.
fn content(message: &Value) -> (String, Vec<(MediaKind, String)>) {
    let body = message.get("content").cloned().unwrap_or(Value::Null);
    let code = |v: &Value| s(v, "downloadCode").map(str::to_owned);
    match s(message, "msgtype").unwrap_or_default() {
        "text" => (
            message
                .get("text")
                .and_then(|t| s(t, "content"))
                .unwrap_or_default()
                .to_owned(),
            Vec::new(),
        ),
        "picture" => (
            String::new(),
            code(&body)
                .map(|c| (MediaKind::Image, c))
                .into_iter()
                .collect(),
        ),
        // DingTalk transcribes voice notes itself.
        "audio" => (
            s(&body, "recognition").unwrap_or_default().to_owned(),
            code(&body)
                .map(|c| (MediaKind::Audio, c))
                .into_iter()
                .collect(),
        ),
        "richText" => {
            let mut text = String::new();
            let mut media = Vec::new();
            for part in body
                .get("richText")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(20)
            {
                if let Some(t) = s(part, "text") {
                    text.push_str(t);
                }
                if let Some(c) = code(part) {
                    media.push((MediaKind::Image, c));
                }
            }
            (text, media)
        }
        _ => (String::new(), Vec::new()),
    }
}

/// A title for a Markdown message (shown in notifications): its first line, plain, short.
fn title_of(text: &str) -> String {
    let plain = crate::format::markdown_to_plain(text);
    let line = plain
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("picoclaw");
    line.chars().take(30).collect()
}

#[async_trait]
impl Channel for DingtalkChannel {
    fn name(&self) -> &str {
        "dingtalk"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        let mut attempt = 0u32;
        loop {
            let opened = match inner.open().await {
                Ok(url) => crate::wsclient::connect_ticket("DingTalk Stream", &url, &[]).await,
                Err(e) => Err(e),
            };
            match opened {
                Ok(ws) => {
                    tracing::info!("dingtalk: Stream mode connected");
                    let began = Instant::now();
                    match inner.session(ws, inbox.as_ref(), &stop).await {
                        End::Stopped => return Ok(()),
                        End::Reconnect => attempt = attempt_after(attempt, began.elapsed()),
                    }
                }
                Err(e @ ChannelError::Rejected(_)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "dingtalk: cannot connect; retrying"),
            }
            attempt = attempt.saturating_add(1);
            let pause = crate::wsclient::reconnect_delay(RECONNECT_BASE, attempt);
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        if msg.content.trim().is_empty() {
            return Ok(());
        }
        for part in split_message(&msg.content, MAX_MESSAGE_CHARS) {
            self.inner
                .send_part(
                    &msg.chat_id,
                    msg.reply_to.as_deref(),
                    &title_of(&part),
                    &part,
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chat_ids_name_a_user_or_a_group() {
        assert_eq!(target("user:0123").unwrap(), Target::User("0123"));
        assert_eq!(target("group:cidX==").unwrap(), Target::Group("cidX=="));
        assert!(target("cidX").is_err());
        assert!(target("user:").is_err());
    }

    #[test]
    fn acks_echo_the_message_id_and_data_as_a_string() {
        let a: Value = serde_json::from_str(&ack("m1", 200, "OK", r#"{"opaque":"x"}"#)).unwrap();
        assert_eq!(a["code"], 200);
        assert_eq!(a["headers"]["messageId"], "m1");
        assert_eq!(a["headers"]["contentType"], "application/json");
        assert_eq!(a["data"], r#"{"opaque":"x"}"#);
    }

    #[test]
    fn the_ticket_is_url_encoded_into_the_endpoint() {
        let url = socket_url(
            "wss://wss-open-connection.dingtalk.com:443/connect",
            "a+b/c=",
        )
        .unwrap();
        assert_eq!(
            url,
            "wss://wss-open-connection.dingtalk.com/connect?ticket=a%2Bb%2Fc%3D"
        );
        assert!(socket_url("not a url", "t").is_err());
    }

    #[test]
    fn session_webhooks_expire_and_the_oldest_are_forgotten() {
        let mut sessions = Sessions::default();
        sessions.insert("m1".into(), "https://h/s1".into(), 1_000_000);
        assert_eq!(sessions.live("m1", 1_000).as_deref(), Some("https://h/s1"));
        assert_eq!(sessions.live("m1", 1_000_000 - SESSION_MARGIN_MS), None);
        for i in 0..SESSIONS_CAP {
            sessions.insert(i.to_string(), "u".into(), u64::MAX);
        }
        assert_eq!(sessions.live("m1", 0), None);
        assert_eq!(sessions.map.len(), SESSIONS_CAP);
    }

    #[test]
    fn content_reads_text_pictures_voice_and_rich_text() {
        let text = json!({"msgtype": "text", "text": {"content": " hi "}});
        assert_eq!(content(&text).0, " hi ");
        let pic = json!({"msgtype": "picture", "content": {"downloadCode": "d1"}});
        assert_eq!(content(&pic).1, [(MediaKind::Image, "d1".to_owned())]);
        let voice = json!({"msgtype": "audio",
            "content": {"downloadCode": "d2", "recognition": "hello"}});
        assert_eq!(
            content(&voice),
            ("hello".into(), vec![(MediaKind::Audio, "d2".into())])
        );
        let rich = json!({"msgtype": "richText", "content": {"richText": [
            {"text": "look "}, {"downloadCode": "d3", "type": "picture"}, {"text": "here"}]}});
        assert_eq!(
            content(&rich),
            ("look here".into(), vec![(MediaKind::Image, "d3".into())])
        );
        assert_eq!(content(&json!({"msgtype": 5})), (String::new(), Vec::new()));
    }

    #[test]
    fn only_a_connection_that_held_resets_the_backoff() {
        assert_eq!(attempt_after(5, Duration::from_millis(300)), 5);
        assert_eq!(attempt_after(5, STABLE_AFTER - Duration::from_secs(1)), 5);
        assert_eq!(attempt_after(5, STABLE_AFTER), 0);
    }

    #[test]
    fn only_refused_credentials_are_final() {
        let none = Value::Null;
        assert!(bad_credentials(401, &none));
        assert!(bad_credentials(403, &none));
        assert!(bad_credentials(
            400,
            &json!({"code": "invalidClientIdOrSecret"})
        ));
        assert!(!bad_credentials(429, &json!({"code": "Throttling"})));
        assert!(!bad_credentials(400, &json!({"code": "Throttling.Api"})));
        assert!(!bad_credentials(503, &none));
        assert!(!bad_credentials(
            200,
            &json!({"code": "invalidClientIdOrSecret"})
        ));
    }

    #[test]
    fn titles_are_the_first_plain_line() {
        assert_eq!(title_of("# Hello **there**\nmore"), "Hello there");
        assert_eq!(title_of(""), "picoclaw");
    }
}
