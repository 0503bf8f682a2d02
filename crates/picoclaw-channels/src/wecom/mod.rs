//! WeCom (企业微信), in the original PicoClaw's two layouts:
//!
//! - the self-built app (`channels.wecom_app`, or `channels.wecom` with `corp_id`): encrypted
//!   XML callbacks from users' 1:1 chats with the app, answers through `message/send` as
//!   Markdown, images and voice downloaded through `media/get`, the access token cached and
//!   renewed;
//! - the group bot (`channels.wecom` without `corp_id`): encrypted JSON callbacks (DMs, and
//!   group messages that @mention the bot), answers through the bot's `webhook_url`.
//!
//! Callbacks arrive on the gateway's `/webhook/<section name>` (and on the original's
//! `webhook_host/port/path` listener when it names another port). Each is checked before its
//! message is decrypted: `msg_signature` in constant time, then the AES envelope, then (app) the
//! receive id against `corp_id`. The callback is answered `success` as soon as the inbox took
//! the message, never with a passive reply; 500 when it could not, so that WeCom retries (its
//! retries keep `MsgId`, by which the kept ones are dropped).

mod crypto;
mod inbound;

use crate::access::Access;
use crate::group::{GroupTrigger, Seen};
use crate::settings::Common;
use crate::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest, WebhookResponse};
use async_trait::async_trait;
use crypto::Crypto;
use picoclaw_api::OutboundMessage;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The most bytes (UTF-8) of one Markdown message through the app's `message/send`.
pub const MAX_APP_BYTES: usize = 2048;
/// The most bytes (UTF-8) of one Markdown message through the group bot's webhook.
pub const MAX_BOT_BYTES: usize = 4096;
/// How long one API call may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is renewed this long before WeCom says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// `message/send` errcodes that mean the access token is no longer good.
const STALE_TOKEN: [i64; 3] = [40001, 40014, 42001];
/// How far a callback's signed `timestamp` may be from now.
const MAX_SKEW: Duration = Duration::from_secs(3600);

const DEFAULT_API_BASE: &str = "https://qyapi.weixin.qq.com";

/// Builds `channels.wecom`: the self-built app when it has `corp_id`, else the group bot.
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(WecomChannel::from_setup(setup)?))
}

/// Builds `channels.wecom_app`.
pub(crate) fn build_app(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(WecomChannel::from_setup(setup)?))
}

/// The keys both sections share, read from either.
#[derive(Default)]
struct Keys {
    token: Option<String>,
    encoding_aes_key: Option<String>,
    webhook_url: Option<String>,
    webhook_host: Option<String>,
    webhook_port: Option<u16>,
    webhook_path: Option<String>,
    corp_id: Option<String>,
    corp_secret: Option<String>,
    agent_id: Option<Value>,
    api_base: Option<String>,
    allow_from: Vec<String>,
    rate_limit_per_minute: Option<u64>,
}

impl Keys {
    fn read(name: &str, settings: &Value) -> Result<Self, ChannelError> {
        let bad = |e: serde_json::Error| ChannelError::Rejected(format!("channels.{name}: {e}"));
        let t = |v: &Option<String>| crate::sections::trimmed(v.as_ref());
        if name == "wecom_app" {
            let s: crate::WecomAppSection =
                serde_json::from_value(settings.clone()).map_err(bad)?;
            return Ok(Self {
                token: t(&s.token),
                encoding_aes_key: t(&s.encoding_aes_key),
                webhook_url: None,
                webhook_host: s.webhook_host.clone(),
                webhook_port: s.webhook_port,
                webhook_path: s.webhook_path.clone(),
                corp_id: t(&s.corp_id),
                corp_secret: t(&s.corp_secret),
                agent_id: s.agent_id.clone(),
                api_base: s.api_base.clone(),
                allow_from: s.allow_from.clone(),
                rate_limit_per_minute: s.rate_limit_per_minute,
            });
        }
        let s: crate::WecomSection = serde_json::from_value(settings.clone()).map_err(bad)?;
        Ok(Self {
            token: t(&s.token),
            encoding_aes_key: t(&s.encoding_aes_key),
            webhook_url: t(&s.webhook_url),
            webhook_host: s.webhook_host.clone(),
            webhook_port: s.webhook_port,
            webhook_path: s.webhook_path.clone(),
            corp_id: t(&s.corp_id),
            corp_secret: t(&s.corp_secret),
            agent_id: s.agent_id.clone(),
            api_base: s.api_base.clone(),
            allow_from: s.allow_from.clone(),
            rate_limit_per_minute: s.rate_limit_per_minute,
        })
    }
}

/// The self-built app's credentials and its cached access token.
struct App {
    corp_id: String,
    corp_secret: String,
    agent_id: u64,
    api_base: String,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

/// Which WeCom the section configures.
enum Mode {
    App(App),
    /// The group bot answers through its webhook URL.
    Bot {
        webhook_url: String,
    },
}

/// A WeCom self-built app or group bot.
pub struct WecomChannel {
    inner: Arc<Inner>,
}

impl WecomChannel {
    /// A callback's `Encrypt` field for `message` and its `msg_signature`, as WeCom makes them
    /// (for the fuzz targets).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn seal_for_fuzzing(
        &self,
        message: &[u8],
        receive_id: &str,
        timestamp: &str,
        nonce: &str,
    ) -> (String, String) {
        let encrypted = self.inner.crypto.encrypt(message, receive_id);
        let signature = self.inner.crypto.signature(timestamp, nonce, &encrypted);
        (encrypted, signature)
    }
}

impl std::fmt::Debug for WecomChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.inner.mode {
            Mode::App(app) => format!("app (api_base {})", app.api_base),
            Mode::Bot { .. } => "group bot".to_owned(),
        };
        f.debug_struct("WecomChannel")
            .field("name", &self.inner.name)
            .field("mode", &mode)
            .field("own_listener", &self.inner.own_listener)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    /// `wecom` or `wecom_app`: the section, the route and the channel's name.
    name: String,
    crypto: Crypto,
    mode: Mode,
    common: Common,
    trigger: GroupTrigger,
    own_listener: Option<(SocketAddr, String)>,
    http: reqwest::Client,
    access: OnceLock<Access>,
    seen: Seen,
}

fn missing(name: &str, key: &str, how: &str) -> ChannelError {
    ChannelError::Rejected(format!(
        "channels.{name}.{key} is empty: {how} (docs/channels/wecom.md)"
    ))
}

/// `agent_id` as a number or a string of digits.
fn agent_id(name: &str, value: Option<&Value>) -> Result<u64, ChannelError> {
    let id = match value {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    id.ok_or_else(|| {
        ChannelError::Rejected(format!(
            "channels.{name}.agent_id must be the app's AgentId (digits, from the app's page \
             in the admin console)"
        ))
    })
}

impl WecomChannel {
    /// The channel `setup` describes: `channels.wecom_app`, or `channels.wecom` (the app when
    /// it has `corp_id`, else the group bot).
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let name = setup.name.as_str();
        let keys = Keys::read(name, &setup.settings)?;
        let token = keys.token.clone().ok_or_else(|| {
            missing(
                name,
                "token",
                "copy the Token from the callback (API receive) settings",
            )
        })?;
        let aes_key = keys.encoding_aes_key.clone().ok_or_else(|| {
            missing(
                name,
                "encoding_aes_key",
                "copy the EncodingAESKey from the callback (API receive) settings",
            )
        })?;
        let crypto = Crypto::new(&token, &aes_key)
            .map_err(|e| ChannelError::Rejected(format!("channels.{name}.encoding_aes_key {e}")))?;
        let mode = if name == "wecom_app" || keys.corp_id.is_some() {
            Mode::App(Self::app(name, &keys)?)
        } else {
            let url = keys.webhook_url.clone().ok_or_else(|| {
                missing(name, "webhook_url", "copy the group bot's webhook address")
            })?;
            let url = crate::settings::checked_api_base(Some(&url), name).map_err(|_| {
                ChannelError::Rejected(format!(
                    "channels.{name}.webhook_url must be an http(s) URL"
                ))
            })?;
            Mode::Bot {
                webhook_url: url.unwrap_or_default(),
            }
        };
        let own_listener = crate::listener::own_address(
            name,
            keys.webhook_host.as_deref(),
            keys.webhook_port,
            keys.webhook_path.as_deref(),
            setup.gateway_port,
        )?;
        let mut common = Common::from_keys(keys.allow_from.clone(), keys.rate_limit_per_minute);
        common.media_dir = Some(setup.media_dir.clone());
        common.media_base = Some(setup.workspace.clone());
        common.paired_file = Some(setup.paired_file.clone());
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("{name}: {e}")))?
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("{name}: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                crypto,
                mode,
                common,
                trigger: GroupTrigger::from_settings(&setup.settings),
                own_listener,
                http,
                access: OnceLock::new(),
                seen: Seen::new(4096),
            }),
        })
    }

    fn app(name: &str, keys: &Keys) -> Result<App, ChannelError> {
        let corp_id = keys
            .corp_id
            .clone()
            .ok_or_else(|| missing(name, "corp_id", "copy the CorpID from My Company"))?;
        let corp_secret = keys
            .corp_secret
            .clone()
            .ok_or_else(|| missing(name, "corp_secret", "copy the app's Secret from its page"))?;
        let agent_id = agent_id(name, keys.agent_id.as_ref())?;
        let api_base = crate::settings::checked_api_base(keys.api_base.as_deref(), name)?
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        Ok(App {
            corp_id,
            corp_secret,
            agent_id,
            api_base,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The one-time pairing code, while pairing is open (nobody on `allow_from` yet).
    pub fn pairing_code(&self) -> Option<String> {
        self.inner.access().pairing_code()
    }
}

impl Inner {
    pub(crate) fn access(&self) -> &Access {
        self.access.get_or_init(|| self.common.access(&self.name))
    }

    /// A fresh access token (`force`: even if the cached one looks good).
    async fn token(&self, app: &App, force: bool) -> Result<String, ChannelError> {
        let mut cached = app.token.lock().await;
        if !force
            && let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = with_query(
            &format!("{}/cgi-bin/gettoken", app.api_base),
            &[("corpid", &app.corp_id), ("corpsecret", &app.corp_secret)],
        );
        // The URL carries corpsecret: reqwest's errors are shown without it.
        let response = self.http.get(&url).send().await.map_err(|e| {
            ChannelError::Platform(format!("{}: gettoken: {}", self.name, e.without_url()))
        })?;
        let body: Value = response.json().await.map_err(|e| {
            ChannelError::Platform(format!(
                "{}: gettoken answered no JSON: {}",
                self.name,
                e.without_url()
            ))
        })?;
        let code = body.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        let reason = body.get("errmsg").and_then(Value::as_str).unwrap_or("");
        let key = match code {
            0 => None,
            40013 => Some("corp_id"),
            40001 | 40125 | 40091 => Some("corp_secret"),
            _ => {
                return Err(ChannelError::Platform(format!(
                    "{}: gettoken errcode {code}: {reason}",
                    self.name
                )));
            }
        };
        if let Some(key) = key {
            return Err(ChannelError::Rejected(format!(
                "channels.{}.{key} was refused by WeCom (errcode {code}): {reason}",
                self.name
            )));
        }
        let Some(token) = body.get("access_token").and_then(Value::as_str) else {
            return Err(ChannelError::Platform(format!(
                "{}: gettoken gave no access_token",
                self.name
            )));
        };
        let lifetime = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(7200);
        let until = Instant::now() + Duration::from_secs(lifetime).saturating_sub(TOKEN_MARGIN);
        *cached = Some((token.to_owned(), until));
        Ok(token.to_owned())
    }

    /// POSTs `body` to an API that answers `{errcode, errmsg}`; the errcode when not 0. The
    /// URL carries a secret (`access_token=`, the group bot's `key=`): errors never show it.
    async fn post_json(&self, url: &str, body: &Value) -> Result<(), (i64, String)> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| (-1, e.without_url().to_string()))?;
        let status = response.status();
        let answer: Value = response
            .json()
            .await
            .map_err(|e| (-1, format!("HTTP {status}, no JSON: {}", e.without_url())))?;
        match answer.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
            0 => Ok(()),
            code => Err((
                code,
                answer
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )),
        }
    }

    /// One Markdown message to `user` through the app, renewing the token once if WeCom says
    /// it went stale.
    async fn app_send(&self, app: &App, user: &str, content: &str) -> Result<(), ChannelError> {
        let body = json!({"touser": user, "msgtype": "markdown", "agentid": app.agent_id,
                          "markdown": {"content": content}});
        let mut force = false;
        loop {
            let token = self.token(app, force).await?;
            let url = with_query(
                &format!("{}/cgi-bin/message/send", app.api_base),
                &[("access_token", &token)],
            );
            match self.post_json(&url, &body).await {
                Ok(()) => return Ok(()),
                Err((code, _)) if STALE_TOKEN.contains(&code) && !force => force = true,
                Err((code, reason)) => {
                    return Err(ChannelError::Platform(format!(
                        "{}: message/send errcode {code}: {reason}",
                        self.name
                    )));
                }
            }
        }
    }

    /// Sends one part of an answer (or a notice) to `chat_id`.
    pub(crate) async fn send_part(&self, chat_id: &str, content: &str) -> Result<(), ChannelError> {
        match &self.mode {
            Mode::App(app) => self.app_send(app, chat_id, content).await,
            Mode::Bot { webhook_url } => {
                let body = json!({"msgtype": "markdown", "markdown": {"content": content}});
                self.post_json(webhook_url, &body)
                    .await
                    .map_err(|(code, reason)| {
                        ChannelError::Platform(format!(
                            "{}: the group bot's webhook_url answered errcode {code}: {reason}",
                            self.name
                        ))
                    })
            }
        }
    }

    /// One callback request: URL verification (GET) or a message (POST).
    async fn webhook(
        self: &Arc<Self>,
        request: WebhookRequest,
        inbox: &dyn Inbox,
    ) -> WebhookResponse {
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(request.query.as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
        let (signature, timestamp, nonce) = (get("msg_signature"), get("timestamp"), get("nonce"));
        if signature.is_empty() || timestamp.is_empty() || nonce.is_empty() {
            return WebhookResponse::text(400, "msg_signature, timestamp and nonce are required");
        }
        match request.method.as_str() {
            "GET" => self.verify_url(signature, timestamp, nonce, get("echostr")),
            "POST" => {
                if request.body.len() > inbound::MAX_BODY_BYTES {
                    return WebhookResponse::text(413, "body too large");
                }
                self.take_callback(&request.body, signature, timestamp, nonce, inbox)
                    .await
            }
            _ => WebhookResponse::text(405, "GET (URL check) or POST (messages) only"),
        }
    }

    /// The console's URL check: the decrypted `echostr`, as plain text.
    fn verify_url(
        &self,
        signature: &str,
        timestamp: &str,
        nonce: &str,
        echo: &str,
    ) -> WebhookResponse {
        if echo.is_empty() || !self.crypto.verify(signature, timestamp, nonce, echo) {
            tracing::warn!(channel = %self.name, "URL check with a bad signature refused");
            return WebhookResponse::text(401, "bad signature");
        }
        if let Err(response) = self.fresh(timestamp) {
            return response;
        }
        match self.open(echo) {
            Ok(plain) => {
                WebhookResponse::text(200, String::from_utf8_lossy(&plain).trim().to_owned())
            }
            Err(response) => response,
        }
    }

    /// Refuses a signed request whose `timestamp` is more than [`MAX_SKEW`] from now: a
    /// captured callback cannot be replayed later (after a restart the seen ids are gone).
    pub(crate) fn fresh(&self, timestamp: &str) -> Result<(), WebhookResponse> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fresh = timestamp
            .trim()
            .parse::<u64>()
            .is_ok_and(|t| t.abs_diff(now) <= MAX_SKEW.as_secs());
        if fresh {
            return Ok(());
        }
        tracing::warn!(channel = %self.name, timestamp, "callback with a stale or bad timestamp refused (a replay?)");
        Err(WebhookResponse::text(403, "stale timestamp"))
    }

    /// Decrypts an envelope and checks its receive id (the app's corp id; the bot's is empty).
    fn open(&self, encrypted: &str) -> Result<Vec<u8>, WebhookResponse> {
        let (plain, receive_id) = self.crypto.decrypt(encrypted).map_err(|e| {
            tracing::warn!(channel = %self.name, error = %e, "callback not decrypted");
            WebhookResponse::text(400, "cannot decrypt")
        })?;
        if let Mode::App(app) = &self.mode
            && receive_id != app.corp_id
        {
            tracing::warn!(channel = %self.name, "callback for another corp id refused");
            return Err(WebhookResponse::text(403, "not for this corp_id"));
        }
        Ok(plain)
    }
}

/// `base` with `params` as its query string, each value encoded.
pub(crate) fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{base}?{query}")
}

/// `text` in parts of at most `max_bytes` UTF-8 bytes, cut where `split_message` cuts
/// (paragraphs, lines, spaces; code blocks closed and reopened).
pub(crate) fn split_bytes(text: &str, max_bytes: usize) -> Vec<String> {
    let mut max_chars = max_bytes;
    loop {
        let parts = crate::split_message(text, max_chars);
        if max_chars <= 64 || parts.iter().all(|p| p.len() <= max_bytes) {
            return parts;
        }
        max_chars = max_chars * 3 / 4;
    }
}

#[async_trait]
impl Channel for WecomChannel {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        if let Mode::App(app) = &inner.mode {
            inner.token(app, true).await?;
            tracing::info!(channel = %inner.name, agent_id = app.agent_id, "wecom: app signed in");
        }
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = inner.access();
        let Some((addr, path)) = inner.own_listener.clone() else {
            tracing::info!(channel = %inner.name, "wecom: waiting for callbacks on /webhook/{}", inner.name);
            stop.cancelled().await;
            return Ok(());
        };
        let shared = Arc::clone(inner);
        let handler: crate::listener::Handler = Arc::new(move |request| {
            let (inner, inbox) = (Arc::clone(&shared), Arc::clone(&inbox));
            Box::pin(async move { inner.webhook(request, inbox.as_ref()).await })
        });
        crate::listener::serve(&inner.name, addr, path, handler, stop).await
    }

    fn takes_webhooks(&self) -> bool {
        true
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        self.inner.webhook(request, inbox.as_ref()).await
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let mut text = msg.content.clone();
        if !msg.buttons.is_empty() {
            text = format!("{text}\n\n{}", picoclaw_api::buttons_as_text(&msg.buttons));
        }
        let max_bytes = match self.inner.mode {
            Mode::App(_) => MAX_APP_BYTES,
            Mode::Bot { .. } => MAX_BOT_BYTES,
        };
        for part in split_bytes(&text, max_bytes) {
            if !part.trim().is_empty() {
                self.inner.send_part(&msg.chat_id, &part).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_are_split_by_utf8_bytes() {
        let text = "字".repeat(3000);
        let parts = split_bytes(&text, MAX_BOT_BYTES);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|p| p.len() <= MAX_BOT_BYTES));
        assert_eq!(parts.concat(), text);
        let parts = split_bytes(&text, MAX_APP_BYTES);
        assert!(parts.len() >= 5);
        assert!(parts.iter().all(|p| p.len() <= MAX_APP_BYTES));
        assert_eq!(split_bytes("short", MAX_APP_BYTES), ["short"]);
    }

    #[test]
    fn agent_ids_are_numbers_or_digits() {
        assert_eq!(
            agent_id("wecom_app", Some(&json!(1000002))).unwrap(),
            1000002
        );
        assert_eq!(agent_id("wecom_app", Some(&json!(" 7 "))).unwrap(), 7);
        let err = agent_id("wecom_app", Some(&json!("x")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("channels.wecom_app.agent_id"));
        assert!(agent_id("wecom", None).is_err());
    }
}
