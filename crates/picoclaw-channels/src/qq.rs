//! QQ, through the official bot API (bot.q.qq.com): 1:1 messages (`C2C_MESSAGE_CREATE`) and
//! @-mentions in groups (`GROUP_AT_MESSAGE_CREATE`), received either on the WebSocket gateway
//! (`mode: "websocket"`, the default: identify with intent `GROUP_AND_C2C_EVENT`, heartbeats,
//! resume after a drop) or as Ed25519-signed callbacks on the gateway's `/webhook/qq`
//! (`mode: "webhook"`).
//!
//! Every call carries an app access token (`Authorization: QQBot <token>`) from
//! `{auth_base}/app/getAppAccessToken`, cached and renewed a minute before it expires. Answers
//! are passive replies to the message they answer (its `msg_id`, the parts of a split answer
//! numbered by `msg_seq`, which QQ requires to differ), as plain text or, with
//! `send_markdown`, as Markdown. Chat ids are `user:<user_openid>` and `group:<group_openid>`.
//!
//! `api_base` and `auth_base` point the OpenAPI (and through `/gateway`, the WebSocket) and
//! the token endpoint at a test's loopback fake.

use crate::access::{Access, Admission};
use crate::group::{Claim, GroupTrigger, Seen};
use crate::json_str as s;
use crate::lock;
use crate::settings::Common;
use crate::settings::read_capped;
use crate::wsclient::{CloseFrame, Message, WsStream};
use crate::{
    Channel, ChannelError, ChannelSetup, Inbox, InboxError, WebhookRequest, WebhookResponse,
    split_message,
};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The OpenAPI of QQ bots.
pub const DEFAULT_API_BASE: &str = "https://api.sgroup.qq.com";
/// Where app access tokens come from.
pub const DEFAULT_AUTH_BASE: &str = "https://bots.qq.com";
/// The longest message part unless `max_message_length` says otherwise.
pub const DEFAULT_MAX_MESSAGE_CHARS: usize = 2000;
/// Group and 1:1 messages (`GROUP_AND_C2C_EVENT`): without it no message arrives.
pub const INTENT_GROUP_AND_C2C: u64 = 1 << 25;

/// The largest file a user sends that is downloaded.
const MAX_DOWNLOAD_BYTES: usize = 16 << 20;
/// The largest API answer or webhook body read.
const MAX_BODY_BYTES: usize = 1 << 20;
/// The token is renewed this long before QQ says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
/// Message ids whose reply parts are counted, for `msg_seq`.
const SEQ_CAP: usize = 1024;
/// The first pause before reconnecting; it doubles per failed attempt up to a minute.
const RECONNECT_BASE: Duration = Duration::from_millis(500);
/// The longest a frame written to the gateway (a heartbeat, Identify/Resume, the close frame)
/// may take; a peer that stops reading ends the connection instead of holding `run`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A signed callback whose `X-Signature-Timestamp` is further than this from now is refused
/// (a recorded callback cannot be replayed later).
const REPLAY_WINDOW_SECS: u64 = 3600;
/// The codes QQ's token endpoint answers wrong app credentials with (with HTTP 200); other
/// codes (throttling, internal errors) are retried.
const BAD_CREDENTIAL_CODES: &[i64] = &[100016];

/// Gateway opcodes.
const OP_DISPATCH: u64 = 0;
const OP_HEARTBEAT: u64 = 1;
const OP_IDENTIFY: u64 = 2;
const OP_RESUME: u64 = 6;
const OP_RECONNECT: u64 = 7;
const OP_INVALID_SESSION: u64 = 9;
const OP_HELLO: u64 = 10;
const OP_HEARTBEAT_ACK: u64 = 11;
const OP_CALLBACK_ACK: u64 = 12;
const OP_VALIDATION: u64 = 13;

/// How messages arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    WebSocket,
    Webhook,
}

/// `channels.qq`, checked.
#[derive(Clone)]
struct Config {
    app_id: String,
    app_secret: String,
    mode: Mode,
    api_base: String,
    auth_base: String,
    max_chars: usize,
    markdown: bool,
    common: Common,
    group: GroupTrigger,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_id", &self.app_id)
            .field("mode", &self.mode)
            .field("api_base", &self.api_base)
            .field("auth_base", &self.auth_base)
            .finish_non_exhaustive()
    }
}

impl Config {
    fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let section: crate::QqSection = setup.settings()?;
        let need = |v: &Option<String>, key: &str, what: &str| {
            crate::sections::trimmed(v.as_ref()).ok_or_else(|| {
                ChannelError::Rejected(format!(
                    "channels.qq.{key} is empty: put the bot's {what} there (q.qq.com → your bot \
                     → Development → Settings; docs/channels/qq.md)"
                ))
            })
        };
        let app_id = need(&section.app_id, "app_id", "AppID")?;
        let app_secret = need(&section.app_secret, "app_secret", "AppSecret")?;
        let mode = match section.mode.as_deref().map(str::trim) {
            None | Some("") | Some("websocket") => Mode::WebSocket,
            Some("webhook") => Mode::Webhook,
            Some(other) => {
                return Err(ChannelError::Rejected(format!(
                    "channels.qq.mode is '{other}'; use \"websocket\" (default) or \"webhook\""
                )));
            }
        };
        let base = |v: Option<&str>, key: &str, default: &str| {
            crate::settings::checked_api_base(v, "qq")
                .map_err(|e| ChannelError::Rejected(e.to_string().replace("api_base", key)))
                .map(|b| b.unwrap_or_else(|| default.to_owned()))
        };
        let mut common =
            Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute);
        common.media_dir = Some(setup.media_dir.clone());
        common.media_base = Some(setup.workspace.clone());
        common.paired_file = Some(setup.paired_file.clone());
        Ok(Self {
            api_base: base(section.api_base.as_deref(), "api_base", DEFAULT_API_BASE)?,
            auth_base: base(section.auth_base.as_deref(), "auth_base", DEFAULT_AUTH_BASE)?,
            max_chars: section
                .max_message_length
                .filter(|n| *n > 0)
                .map_or(DEFAULT_MAX_MESSAGE_CHARS, |n| n.min(100_000) as usize),
            markdown: section.send_markdown.unwrap_or(false),
            app_id,
            app_secret,
            mode,
            common,
            group: GroupTrigger::from_settings(&setup.settings),
        })
    }
}

/// Builds `channels.qq`.
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(QqChannel::from_setup(setup)?))
}

/// The Ed25519 seed QQ derives from the app secret: the secret repeated to 32 bytes.
fn seed(secret: &str) -> Option<[u8; 32]> {
    let bytes = secret.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = bytes[i % bytes.len()];
    }
    Some(seed)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A number QQ may send as a string (`expires_in`, `event_ts`).
fn number_or_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Mention markup (`<@!id>`, `<@id>`) taken out of a message's text.
fn strip_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        out.push_str(&rest[..start]);
        match rest[start..].find('>') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

/// QQ gives attachment URLs without a scheme at times.
fn attachment_url(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("https://{}", url.trim_start_matches('/'))
    }
}

/// What an attachment's `content_type` makes it.
fn attachment_kind(content_type: &str) -> Option<MediaKind> {
    if content_type.starts_with("image") {
        Some(MediaKind::Image)
    } else if content_type == "voice" || content_type.starts_with("audio") {
        Some(MediaKind::Audio)
    } else {
        None
    }
}

/// Validation fields QQ sends are short and alphanumeric; anything else is refused, so that an
/// unsigned validation request cannot have us sign the bytes of a forged callback (which
/// start with `{`).
fn plain_field(text: &str) -> bool {
    !text.is_empty() && text.len() <= 128 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether a signed callback's timestamp (seconds since the epoch) is within the replay window
/// of `now` (seconds since the epoch).
fn fresh(timestamp: &str, now: u64) -> bool {
    timestamp
        .trim()
        .parse::<u64>()
        .is_ok_and(|ts| ts.abs_diff(now) <= REPLAY_WINDOW_SECS)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether the token endpoint's answer (`status`, JSON `value`) says the app's credentials are
/// wrong: what retrying cannot fix.
fn bad_credentials(status: u16, value: &Value) -> bool {
    matches!(status, 401 | 403)
        || value
            .get("code")
            .and_then(Value::as_i64)
            .is_some_and(|code| BAD_CREDENTIAL_CODES.contains(&code))
}

/// Writes `message`, bounded by [`WRITE_TIMEOUT`]; `false` when the connection is done.
async fn write(ws: &mut WsStream, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, ws.send(message)).await,
        Ok(Ok(()))
    )
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

/// Where a chat id sends to.
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
            "qq: chat id '{chat_id}' is neither user:<user_openid> nor group:<group_openid>"
        ))),
    }
}

/// The gateway session to resume after a drop.
#[derive(Debug, Default)]
struct Resume {
    session_id: Option<String>,
    seq: Option<u64>,
}

/// The close frame of a client that stops.
fn goodbye() -> CloseFrame {
    CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "picoclaw stops".into(),
    }
}

/// How a gateway connection ended.
enum End {
    Stopped,
    Reconnect { worked: bool },
}

/// Reply parts sent per message id, the oldest forgotten first.
#[derive(Debug, Default)]
struct Seqs {
    map: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl Seqs {
    fn next(&mut self, msg_id: &str) -> u64 {
        if !self.map.contains_key(msg_id) {
            self.order.push_back(msg_id.to_owned());
            while self.order.len() > SEQ_CAP {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
        let n = self.map.entry(msg_id.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

/// The QQ channel.
pub struct QqChannel {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: reqwest::Client,
    key: Ed25519KeyPair,
    access: Access,
    seen: Seen,
    seqs: Mutex<Seqs>,
    /// Held across a renewal, so that concurrent calls at expiry make one token request.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for QqChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QqChannel")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl QqChannel {
    /// `X-Signature-Ed25519` of `timestamp + body`, as QQ signs (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn sign_for_fuzzing(&self, timestamp: &str, body: &[u8]) -> String {
        self.inner.sign_for_fuzzing(timestamp, body)
    }

    /// The channel `channels.qq` describes; missing or wrong keys are a clear error.
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let config = Config::from_setup(setup)?;
        let key = seed(&config.app_secret)
            .and_then(|seed| Ed25519KeyPair::from_seed_unchecked(&seed).ok())
            .ok_or_else(|| {
                ChannelError::Rejected("channels.qq.app_secret cannot make a signing key".into())
            })?;
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("qq: HTTP client: {e}")))?
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ChannelError::Platform(format!("qq: HTTP client: {}", e.without_url())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                access: config.common.access("qq"),
                config,
                http,
                key,
                seen: Seen::new(4096),
                seqs: Mutex::new(Seqs::default()),
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
    /// The app access token, cached until a minute before it expires. Refused credentials are
    /// a one-line `Rejected` naming the keys; throttling and outages are `Platform`. The cache
    /// stays locked during a renewal: the calls waiting on it find the new token.
    async fn token(&self) -> Result<String, ChannelError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = format!("{}/app/getAppAccessToken", self.config.auth_base);
        let body = json!({"appId": self.config.app_id, "clientSecret": self.config.app_secret});
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| ChannelError::Platform(format!("qq: {url}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let raw = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| ChannelError::Platform(format!("qq: {url}: {e}")))?;
        let value: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let Some(token) = s(&value, "access_token") else {
            return Err(if bad_credentials(status, &value) {
                ChannelError::Rejected(format!(
                    "channels.qq.app_id / app_secret were refused by QQ ({status}): {}",
                    excerpt(&raw)
                ))
            } else {
                ChannelError::Platform(format!(
                    "qq: the token endpoint answered {status} without a token: {}",
                    excerpt(&raw)
                ))
            });
        };
        let lifetime = number_or_string(value.get("expires_in"))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(7200);
        let until = Instant::now() + Duration::from_secs(lifetime).saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }

    /// Calls the OpenAPI with the token; a refused token is dropped from the cache.
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ChannelError> {
        let token = self.token().await?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.config.api_base))
            .header("Authorization", format!("QQBot {token}"))
            .header("X-Union-Appid", &self.config.app_id);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ChannelError::Platform(format!("qq {path}: {}", e.without_url())))?;
        let status = response.status().as_u16();
        let raw = read_capped(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| ChannelError::Platform(format!("qq {path}: {e}")))?;
        if status == 401 {
            self.forget_token(Some(&token)).await;
        }
        if !(200..300).contains(&status) {
            return Err(ChannelError::Platform(format!(
                "qq {path} answered {status}: {}",
                excerpt(&raw)
            )));
        }
        Ok(serde_json::from_slice(&raw).unwrap_or(Value::Null))
    }

    /// Drops the cached token (`used`: only if it is still that one, not one a concurrent call
    /// renewed meanwhile).
    async fn forget_token(&self, used: Option<&str>) {
        let mut cached = self.token.lock().await;
        if used.is_none_or(|used| cached.as_ref().is_some_and(|(t, _)| t == used)) {
            *cached = None;
        }
    }

    /// Opens the gateway WebSocket.
    async fn connect(&self) -> Result<WsStream, ChannelError> {
        let gateway = self.api(reqwest::Method::GET, "/gateway", None).await?;
        let url = s(&gateway, "url").ok_or_else(|| {
            ChannelError::Platform(format!("qq: /gateway named no url: {gateway}"))
        })?;
        crate::wsclient::connect_ticket("the QQ gateway", url, &[]).await
    }

    /// Speaks the gateway protocol on one connection until it ends.
    async fn session(
        &self,
        mut ws: WsStream,
        resume: &mut Resume,
        inbox: &dyn Inbox,
        stop: &CancellationToken,
    ) -> Result<End, ChannelError> {
        let mut worked = false;
        // Heartbeats start with the server's Hello, at the interval it names.
        let mut period = Duration::from_secs(3600);
        let mut beat = tokio::time::interval(period);
        let mut beating = false;
        let mut acked = true;
        // When the last heartbeat went out, and whether we were busy with an event when the
        // next one came due: its ack may then sit unread in the socket, which is no sign of a
        // dead connection.
        let mut beat_sent = tokio::time::Instant::now();
        let mut excused = false;
        loop {
            let frame = tokio::select! {
                () = stop.cancelled() => {
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, ws.close(Some(goodbye()))).await;
                    return Ok(End::Stopped);
                }
                _ = beat.tick(), if beating => {
                    if !acked && !excused {
                        tracing::warn!("qq: no heartbeat ack; reconnecting");
                        return Ok(End::Reconnect { worked });
                    }
                    acked = false;
                    excused = false;
                    beat_sent = tokio::time::Instant::now();
                    let frame = json!({"op": OP_HEARTBEAT, "d": resume.seq});
                    if !write(&mut ws, Message::Text(frame.to_string().into())).await {
                        return Ok(End::Reconnect { worked });
                    }
                    continue;
                }
                frame = ws.next() => frame,
            };
            let text = match frame {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(close))) => {
                    let code = close.as_ref().map(|c| u16::from(c.code)).unwrap_or(0);
                    return self.closed(code, resume, worked).await;
                }
                None => return Ok(End::Reconnect { worked }),
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "qq: the gateway failed; reconnecting");
                    return Ok(End::Reconnect { worked });
                }
            };
            let Ok(payload) = serde_json::from_str::<Value>(text.as_str()) else {
                tracing::warn!("qq: a gateway frame that is not JSON was ignored");
                continue;
            };
            let d = payload.get("d").cloned().unwrap_or(Value::Null);
            match payload.get("op").and_then(Value::as_u64) {
                Some(OP_HELLO) => {
                    let ms = d
                        .get("heartbeat_interval")
                        .and_then(Value::as_u64)
                        .unwrap_or(41_250)
                        .clamp(50, 300_000);
                    period = Duration::from_millis(ms);
                    beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    // After a busy stretch one heartbeat goes out, not a burst of them.
                    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    beating = true;
                    beat_sent = tokio::time::Instant::now();
                    // A token that cannot be had now (QQ throttles, an outage) is retried on a
                    // new connection that resumes this session: events in the gap are replayed.
                    let hello = match self.hello(resume).await {
                        Ok(hello) => hello,
                        Err(e) => {
                            tracing::warn!(error = %e, "qq: no token for the gateway; reconnecting");
                            return Ok(End::Reconnect { worked: false });
                        }
                    };
                    if !write(&mut ws, Message::Text(hello.to_string().into())).await {
                        return Ok(End::Reconnect { worked });
                    }
                }
                Some(OP_HEARTBEAT_ACK) => acked = true,
                Some(OP_RECONNECT) => {
                    tracing::info!("qq: the gateway asked for a reconnection");
                    return Ok(End::Reconnect { worked });
                }
                Some(OP_INVALID_SESSION) => {
                    tracing::warn!("qq: the gateway session is invalid; identifying again");
                    *resume = Resume::default();
                    return Ok(End::Reconnect { worked });
                }
                Some(OP_DISPATCH) => {
                    worked = true;
                    let kind = s(&payload, "t").unwrap_or_default();
                    if kind == "READY" {
                        resume.session_id = s(&d, "session_id").map(str::to_owned);
                        tracing::info!("qq: gateway session ready");
                    } else {
                        let handled = self.dispatch(kind, &d, inbox).await;
                        if beating && tokio::time::Instant::now() >= beat_sent + period {
                            excused = true;
                        }
                        if let Err(e) = handled {
                            // The sequence number stays before this event: resuming from it
                            // has the gateway send the event again.
                            tracing::warn!(error = %e, "qq: a message was not kept; resuming before it");
                            return Ok(End::Reconnect { worked: false });
                        }
                    }
                    if let Some(seq) = payload.get("s").and_then(Value::as_u64) {
                        resume.seq = Some(seq);
                    }
                }
                _ => {}
            }
        }
    }

    /// Identify (a new session) or resume (after a drop), with a current token.
    async fn hello(&self, resume: &Resume) -> Result<Value, ChannelError> {
        let token = format!("QQBot {}", self.token().await?);
        Ok(match (&resume.session_id, resume.seq) {
            (Some(session), Some(seq)) => json!({"op": OP_RESUME,
                "d": {"token": token, "session_id": session, "seq": seq}}),
            _ => json!({"op": OP_IDENTIFY,
                "d": {"token": token, "intents": INTENT_GROUP_AND_C2C, "shard": [0, 1],
                      "properties": {"$os": std::env::consts::OS, "$browser": "picoclaw",
                                     "$device": "picoclaw"}}}),
        })
    }

    /// A close frame from the gateway: some codes mean a fix in the config, others a new
    /// session or token.
    async fn closed(
        &self,
        code: u16,
        resume: &mut Resume,
        worked: bool,
    ) -> Result<End, ChannelError> {
        match code {
            4914 => Err(ChannelError::Rejected(
                "qq: the bot is offline or in the sandbox only (gateway close 4914): publish it, \
                 or add your account to its sandbox on q.qq.com"
                    .into(),
            )),
            4915 => Err(ChannelError::Rejected(
                "qq: the bot was banned (gateway close 4915)".into(),
            )),
            4004 => {
                self.forget_token(None).await;
                Ok(End::Reconnect { worked })
            }
            4006 | 4007 | 4009 => {
                *resume = Resume::default();
                Ok(End::Reconnect { worked })
            }
            _ => Ok(End::Reconnect { worked }),
        }
    }

    /// A dispatched event from either transport.
    async fn dispatch(&self, kind: &str, d: &Value, inbox: &dyn Inbox) -> Result<(), InboxError> {
        let group = match kind {
            "C2C_MESSAGE_CREATE" => false,
            "GROUP_AT_MESSAGE_CREATE" => true,
            _ => return Ok(()),
        };
        let Some(msg_id) = s(d, "id") else {
            return Ok(());
        };
        let author = d.get("author").cloned().unwrap_or(Value::Null);
        if author.get("bot").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let (sender, chat_id) = if group {
            let (Some(member), Some(group_id)) =
                (s(&author, "member_openid"), s(d, "group_openid"))
            else {
                return Ok(());
            };
            (member, format!("group:{group_id}"))
        } else {
            let Some(user) = s(&author, "user_openid").or_else(|| s(&author, "id")) else {
                return Ok(());
            };
            (user, format!("user:{user}"))
        };
        let text = strip_mentions(s(d, "content").unwrap_or_default());
        let text = if group {
            // QQ delivers only @-mentions of the bot in groups.
            match self.config.group.admit(&text, true) {
                Some(text) => text,
                None => return Ok(()),
            }
        } else {
            text
        };
        // Claimed only after the access checks (a stranger's flood must not push allowed ids
        // out); forgotten again unless the inbox kept the message — also when this future is
        // dropped midway (QQ gave up on the webhook, the channel stopped) — so that the
        // redelivery gets through.
        let claim = match self
            .access
            .admit(&[sender], !group, &text, || self.seen.claim(msg_id))
        {
            Admission::Deliver(claim) => claim,
            Admission::Answer(notice) => {
                self.notice(&chat_id, msg_id, notice).await;
                return Ok(());
            }
            Admission::Ignore => return Ok(()),
        };
        let mut inbound = InboundMessage::new("qq", chat_id, sender, text)
            .with_metadata("message_id", msg_id)
            .with_metadata("peer_kind", if group { "group" } else { "user" });
        for attachment in d
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(10)
        {
            let content_type = s(attachment, "content_type").unwrap_or_default();
            let (Some(kind), Some(url)) = (attachment_kind(content_type), s(attachment, "url"))
            else {
                continue;
            };
            match self
                .download(kind, content_type, url, attachment, msg_id)
                .await
            {
                Ok(item) => inbound.media.push(item),
                Err(e) => {
                    tracing::warn!(error = %e, "qq: a file could not be saved");
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

    async fn download(
        &self,
        kind: MediaKind,
        content_type: &str,
        url: &str,
        attachment: &Value,
        msg_id: &str,
    ) -> Result<MediaRef, String> {
        let response = self
            .http
            .get(attachment_url(url))
            .send()
            .await
            .map_err(|e| format!("download: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("download answered {}", response.status()));
        }
        let bytes = read_capped(response, MAX_DOWNLOAD_BYTES).await?;
        let name = s(attachment, "filename").unwrap_or(match kind {
            MediaKind::Image => "picture.jpg",
            _ => "voice.silk",
        });
        let path = crate::settings::save_download(&self.config.common, msg_id, name, bytes).await?;
        let mut media = MediaRef::new(kind, path.display().to_string()).with_name(name);
        if content_type.contains('/') {
            media = media.with_mime(content_type);
        }
        Ok(media)
    }

    /// A short answer of the channel's own (pairing, rate limit), best effort.
    async fn notice(&self, chat_id: &str, msg_id: &str, text: &str) {
        if let Err(e) = self.post(chat_id, Some(msg_id), text, false).await {
            tracing::debug!(error = %e, "qq: notice not sent");
        }
    }

    /// Sends one part: a passive reply when `reply_to` is known, else an active message.
    async fn post(
        &self,
        chat_id: &str,
        reply_to: Option<&str>,
        text: &str,
        markdown: bool,
    ) -> Result<(), ChannelError> {
        let path = match target(chat_id)? {
            Target::User(openid) => format!("/v2/users/{openid}/messages"),
            Target::Group(openid) => format!("/v2/groups/{openid}/messages"),
        };
        let mut body = if markdown {
            json!({"msg_type": 2, "markdown": {"content": text}})
        } else {
            json!({"msg_type": 0, "content": text})
        };
        if let Some(id) = reply_to {
            body["msg_id"] = json!(id);
            body["msg_seq"] = json!(lock(&self.seqs).next(id));
        }
        self.api(reqwest::Method::POST, &path, Some(&body))
            .await
            .map(|_| ())
    }

    /// A request to `/webhook/qq`, its signature checked before anything else is read.
    async fn webhook(&self, request: &WebhookRequest, inbox: &dyn Inbox) -> WebhookResponse {
        if request.body.len() > MAX_BODY_BYTES {
            return WebhookResponse::text(413, "body too large");
        }
        let signed = match (
            request.header("x-signature-ed25519"),
            request.header("x-signature-timestamp"),
        ) {
            (Some(signature), Some(timestamp)) => {
                if !self.verify(signature, timestamp, &request.body) {
                    tracing::warn!("qq webhook: bad signature; refused");
                    return WebhookResponse::text(401, "bad signature");
                }
                if !fresh(timestamp, now_secs()) {
                    tracing::warn!(
                        timestamp,
                        "qq webhook: signed too long ago (a replay?); refused"
                    );
                    return WebhookResponse::text(401, "stale timestamp");
                }
                true
            }
            _ => false,
        };
        let Ok(payload) = serde_json::from_slice::<Value>(&request.body) else {
            return WebhookResponse::text(400, "not JSON");
        };
        let d = payload.get("d").cloned().unwrap_or(Value::Null);
        match payload.get("op").and_then(Value::as_u64) {
            Some(OP_VALIDATION) => self.validate(&d, signed),
            _ if !signed => WebhookResponse::text(401, "unsigned request"),
            Some(OP_DISPATCH) => {
                let kind = s(&payload, "t").unwrap_or_default();
                match self.dispatch(kind, &d, inbox).await {
                    Ok(()) => WebhookResponse::json(&json!({"op": OP_CALLBACK_ACK, "d": 0})),
                    Err(e) => {
                        tracing::warn!(error = %e, "qq webhook: a message was not kept; QQ retries");
                        WebhookResponse::text(503, "not kept, retry")
                    }
                }
            }
            _ => WebhookResponse::json(&json!({"op": OP_CALLBACK_ACK, "d": 0})),
        }
    }

    /// The callback URL check (op 13): `plain_token` back, with the signature of
    /// `event_ts + plain_token`.
    fn validate(&self, d: &Value, signed: bool) -> WebhookResponse {
        let (Some(plain), Some(ts)) = (s(d, "plain_token"), number_or_string(d.get("event_ts")))
        else {
            return WebhookResponse::text(400, "plain_token and event_ts expected");
        };
        let trusted = signed || (plain_field(plain) && plain_field(&ts));
        if !trusted {
            return WebhookResponse::text(401, "unsigned request");
        }
        let signature = self.key.sign(format!("{ts}{plain}").as_bytes());
        WebhookResponse::json(&json!({"plain_token": plain, "signature": hex(signature.as_ref())}))
    }

    /// `X-Signature-Ed25519` of `timestamp + body`, as QQ signs (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn sign_for_fuzzing(&self, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        hex(self.key.sign(&message).as_ref())
    }

    /// Checks `X-Signature-Ed25519` over `timestamp + body` with the app's public key.
    fn verify(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool {
        let Some(signature) = unhex(signature.trim()) else {
            return false;
        };
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        UnparsedPublicKey::new(&ED25519, self.key.public_key().as_ref())
            .verify(&message, &signature)
            .is_ok()
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

#[async_trait]
impl Channel for QqChannel {
    fn name(&self) -> &str {
        "qq"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        // Wrong credentials show now, as one line, not as a reconnection loop.
        inner.token().await?;
        if inner.config.mode == Mode::Webhook {
            tracing::info!("qq: webhook mode, waiting for callbacks on /webhook/qq");
            stop.cancelled().await;
            return Ok(());
        }
        let mut resume = Resume::default();
        let mut attempt = 0u32;
        loop {
            match inner.connect().await {
                Ok(ws) => {
                    tracing::info!("qq: gateway connected");
                    match inner
                        .session(ws, &mut resume, inbox.as_ref(), &stop)
                        .await?
                    {
                        End::Stopped => return Ok(()),
                        End::Reconnect { worked } if worked => attempt = 0,
                        End::Reconnect { .. } => {}
                    }
                }
                Err(e @ ChannelError::Rejected(_)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "qq: cannot reach the gateway; retrying"),
            }
            attempt = attempt.saturating_add(1);
            let pause = crate::wsclient::reconnect_delay(RECONNECT_BASE, attempt);
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn takes_webhooks(&self) -> bool {
        self.inner.config.mode == Mode::Webhook
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        if self.inner.config.mode != Mode::Webhook {
            return WebhookResponse::text(404, "channels.qq.mode is not \"webhook\"");
        }
        self.inner.webhook(&request, inbox.as_ref()).await
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if msg.content.trim().is_empty() {
            return Ok(());
        }
        let markdown = inner.config.markdown;
        let text = if markdown {
            msg.content.clone()
        } else {
            crate::format::markdown_to_plain(&msg.content)
        };
        for part in split_message(&text, inner.config.max_chars) {
            inner
                .post(&msg.chat_id, msg.reply_to.as_deref(), &part, markdown)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(secret: &str) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&seed(secret).unwrap()).unwrap()
    }

    #[test]
    fn the_validation_signature_matches_the_documented_example() {
        // bot.q.qq.com, "事件订阅与通知 → Webhook方式": secret, event_ts, plain_token, signature.
        let signature = key("DG5g3B4j9X2KOErG").sign(b"1725442341Arq0D5A61EgUu4OxUvOp");
        assert_eq!(
            hex(signature.as_ref()),
            "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85\
             205028a1132afe09280305f13aa6909ffc2d652c706"
        );
    }

    #[test]
    fn the_seed_repeats_the_secret_to_32_bytes() {
        assert_eq!(
            &seed("naOC0ocQE3shWLAfffVLB1rhYPG7").unwrap(),
            b"naOC0ocQE3shWLAfffVLB1rhYPG7naOC"
        );
        assert_eq!(
            hex(key("naOC0ocQE3shWLAfffVLB1rhYPG7").public_key().as_ref()),
            "d7c362fe78aef81ff23287b493628b5db02a3c4fe30b215e4d19609b5d76673a"
        );
        assert!(seed("").is_none());
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(unhex(&hex(&[0, 15, 255])).unwrap(), [0, 15, 255]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        assert!(unhex("é1").is_none());
    }

    #[test]
    fn numbers_may_come_as_strings() {
        assert_eq!(
            number_or_string(Some(&json!("7200"))).as_deref(),
            Some("7200")
        );
        assert_eq!(
            number_or_string(Some(&json!(7200))).as_deref(),
            Some("7200")
        );
        assert_eq!(number_or_string(Some(&json!(null))), None);
    }

    #[test]
    fn mentions_are_taken_out_and_urls_get_a_scheme() {
        assert_eq!(strip_mentions("<@!123> hello <@456>there"), "hello there");
        assert_eq!(strip_mentions(" plain "), "plain");
        assert_eq!(strip_mentions("a <@broken"), "a <@broken");
        assert_eq!(
            attachment_url("multimedia.nt.qq.com.cn/download?x=1"),
            "https://multimedia.nt.qq.com.cn/download?x=1"
        );
        assert_eq!(attachment_url("http://127.0.0.1/f"), "http://127.0.0.1/f");
        assert_eq!(attachment_kind("image/png"), Some(MediaKind::Image));
        assert_eq!(attachment_kind("voice"), Some(MediaKind::Audio));
        assert_eq!(attachment_kind("file"), None);
    }

    #[test]
    fn reply_parts_are_numbered_per_message() {
        let mut seqs = Seqs::default();
        assert_eq!(seqs.next("a"), 1);
        assert_eq!(seqs.next("a"), 2);
        assert_eq!(seqs.next("b"), 1);
        for i in 0..SEQ_CAP {
            seqs.next(&i.to_string());
        }
        assert_eq!(seqs.next("a"), 1, "the oldest is forgotten");
    }

    #[test]
    fn chat_ids_and_validation_fields_are_checked() {
        assert_eq!(target("user:U1").unwrap(), Target::User("U1"));
        assert_eq!(target("group:G1").unwrap(), Target::Group("G1"));
        assert!(target("G1").is_err());
        assert!(plain_field("Arq0D5A61EgUu4OxUvOp"));
        assert!(!plain_field("{\"op\":0}"));
        assert!(!plain_field(""));
        assert!(!plain_field("a b"));
        assert!(!plain_field("a\"b"));
        assert!(!plain_field(&"a".repeat(129)));
    }

    #[test]
    fn signed_callbacks_hold_for_an_hour_either_way() {
        let now = 1_800_000_000;
        assert!(fresh("1800000000", now));
        assert!(fresh("1799996400", now));
        assert!(fresh("1800003600", now));
        assert!(!fresh("1799996399", now));
        assert!(!fresh("1800003601", now));
        assert!(!fresh("soon", now));
        assert!(!fresh("-5", now));
    }

    #[test]
    fn only_refused_credentials_are_final() {
        assert!(bad_credentials(
            200,
            &json!({"code": 100016, "message": "invalid appid or secret"})
        ));
        assert!(bad_credentials(401, &Value::Null));
        assert!(bad_credentials(403, &Value::Null));
        assert!(!bad_credentials(429, &Value::Null));
        assert!(!bad_credentials(
            200,
            &json!({"code": 100017, "message": "rate limited"})
        ));
        assert!(!bad_credentials(500, &json!({"code": 11298})));
        assert!(!bad_credentials(400, &Value::Null));
    }
}
