//! Slack, through slack-morphism: Socket Mode (with an `app_token`, the default: no public URL
//! needed) and the Events API on the gateway's `/webhook/slack` (with a `signing_secret`; bad
//! signatures and stale timestamps refused). DMs, mentions in channels (and the threads the bot
//! answers in), answers in the thread, Markdown rendered as mrkdwn with a plain fallback, files
//! both ways, buttons as Block Kit with their presses coming back as messages, a 👀 reaction once
//! a message is kept, an allow-list with pairing and a per-user rate limit.
//!
//! An event is acknowledged to Slack (the Socket Mode envelope, the webhook's 200) only after the
//! inbox kept its message; the turn runs later, so acknowledging is quick and Slack does not
//! redeliver (it does after 3 s). Redeliveries that come anyway are dropped by `event_id`, and by
//! the gateway's journal by message timestamp.
//!
//! `api_base` points the Web API (and through `apps.connections.open`, the Socket Mode
//! WebSocket) at a Slack-compatible gateway or a test's loopback fake; plain `http://` is then
//! accepted.
//!
//! This module holds the settings, the channel and its shared state, and the [`Channel`] impl;
//! `inbound` turns what Slack sends (events, button presses, slash commands, files, the Socket
//! Mode callbacks) into inbox messages, and `outbound` posts answers (Block Kit buttons, file
//! uploads) and maps Web API errors.

mod inbound;
mod outbound;

use crate::json_str as s;
use crate::lock;
use crate::{Channel, ChannelError, Inbox, WebhookRequest, WebhookResponse, split_message};
use async_trait::async_trait;
use inbound::{SocketState, on_command, on_error, on_interaction, on_push};
use outbound::{api_error, blocks, split_chat};
use picoclaw_api::OutboundMessage;
use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use tokio_util::sync::CancellationToken;

/// The longest text sent in one message. Slack truncates at 40 000 characters, but long
/// messages are hard to read there; 4 000 is its documented recommendation.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// `channels.slack` of the config.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SlackConfig {
    /// The bot token (`xoxb-...`) for the Web API.
    pub bot_token: String,
    /// The app-level token (`xapp-...`, scope `connections:write`) for Socket Mode. Absent: the
    /// Events API through the gateway's webhook route only.
    pub app_token: Option<String>,
    /// Verifies Events API requests to `/webhook/slack`. Absent: webhooks are refused.
    pub signing_secret: Option<String>,
    /// Web API base URL (default `https://slack.com/api`).
    pub api_base: Option<String>,
    /// allow_from, rate limit, media folder, paired-users file.
    pub common: crate::settings::Common,
}

impl SlackConfig {
    /// Reads `channels.slack` from JSON ([`crate::SlackSection`]'s keys).
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::SlackSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.slack: {e}")))?;
        Self::from_section(&section)
    }

    /// Builds from the typed section: the original PicoClaw's keys (`bot_token`, `app_token`,
    /// `allow_from`) plus `signing_secret` and `api_base`.
    pub fn from_section(section: &crate::SlackSection) -> Result<Self, ChannelError> {
        let text = |v: &Option<String>| crate::sections::trimmed(v.as_ref());
        let bot_token = text(&section.bot_token).ok_or_else(|| {
            ChannelError::Rejected(
                "channels.slack.bot_token is empty: install the app to your workspace and put \
                 its Bot User OAuth Token (xoxb-...) there (docs/channels/slack.md)"
                    .into(),
            )
        })?;
        let app_token = text(&section.app_token);
        let signing_secret = text(&section.signing_secret);
        if app_token.is_none() && signing_secret.is_none() {
            return Err(ChannelError::Rejected(
                "channels.slack needs app_token (Socket Mode, no public URL needed) or \
                 signing_secret (Events API on the gateway's /webhook/slack)"
                    .into(),
            ));
        }
        if let Some(t) = &app_token
            && !t.starts_with("xapp-")
        {
            return Err(ChannelError::Rejected(
                "channels.slack.app_token must be an app-level token (xapp-...), made under \
                 Basic Information → App-Level Tokens with the connections:write scope"
                    .into(),
            ));
        }
        let api_base = crate::settings::checked_api_base(section.api_base.as_deref(), "slack")?;
        Ok(Self {
            bot_token,
            app_token,
            signing_secret,
            common: crate::settings::Common::from_keys(
                section.allow_from.clone(),
                section.rate_limit_per_minute,
            ),
            api_base,
        })
    }
}

impl crate::settings::ChannelSettings for SlackConfig {
    fn common_mut(&mut self) -> &mut crate::settings::Common {
        &mut self.common
    }
}

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;
type Client = SlackClient<SlackClientHyperConnector<Connector>>;
type Download = hyper_util::client::legacy::Client<Connector, http_body_util::Empty<bytes::Bytes>>;

/// The bot's identity, from `auth.test`.
#[derive(Clone, Debug)]
struct Me {
    user_id: String,
}

/// A bounded set that forgets the oldest entries.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Recent {
    fn contains(&self, key: &str) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: String, cap: usize) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// The Slack channel.
pub struct SlackChannel {
    inner: Arc<Inner>,
}

struct Inner {
    config: SlackConfig,
    client: Arc<Client>,
    token: SlackApiToken,
    download: Download,
    verifier: Option<SlackEventSignatureVerifier>,
    /// Known once `run` called `auth.test`; webhook requests before that are answered 503.
    me: Mutex<Option<Me>>,
    access: OnceLock<crate::access::Access>,
    /// Event ids and `channel:ts` of messages already kept.
    seen: Mutex<Recent>,
    /// `channel/thread_ts` of threads the bot answered in.
    threads: Mutex<Recent>,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel")
            .field("api_base", &self.inner.config.api_base)
            .field("socket_mode", &self.inner.config.app_token.is_some())
            .field("events_api", &self.inner.verifier.is_some())
            .finish_non_exhaustive()
    }
}

impl SlackChannel {
    pub fn new(config: SlackConfig) -> Result<Self, ChannelError> {
        // Plain http only where api_base asks for it (a gateway, a test's fake). The Web API
        // client gets ring explicitly; nothing here installs a process-wide provider. Socket
        // Mode's WebSocket is opened by slack-morphism through tokio-tungstenite's
        // `connect_async`, which takes no TLS configuration and builds one over rustls' process
        // default (set by the binaries at startup; rustls picks ring itself when it is the only
        // provider compiled in).
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| ChannelError::Platform(format!("slack: no TLS roots: {e}")))?;
        let connector = if config
            .api_base
            .as_deref()
            .is_some_and(|b| b.starts_with("http://"))
        {
            builder
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .build()
        } else {
            builder.https_only().enable_http1().enable_http2().build()
        };
        let mut hyper = SlackClientHyperConnector::with_connector(connector.clone())
            .with_rate_control(
                SlackApiRateControlConfig::new()
                    // No tier throttling of our own (chat.postMessage keeps slack-morphism's
                    // one-per-second-per-channel pacing, Slack's documented limit); retry what
                    // Slack answers 429, after its Retry-After, at most three times.
                    .with_tiers_limits(Default::default())
                    .with_max_retries(3),
            );
        if let Some(base) = &config.api_base {
            hyper = hyper.with_slack_api_url(base);
        }
        let download =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let token = SlackApiToken::new(config.bot_token.clone().into());
        let verifier = config
            .signing_secret
            .as_ref()
            .map(|secret| SlackEventSignatureVerifier::new(&secret.clone().into()));
        Ok(Self {
            inner: Arc::new(Inner {
                client: Arc::new(SlackClient::new(hyper)),
                token,
                download,
                verifier,
                me: Mutex::new(None),
                access: OnceLock::new(),
                seen: Mutex::new(Recent::default()),
                threads: Mutex::new(Recent::default()),
                config,
            }),
        })
    }
}

impl SlackChannel {
    /// Signed in as `user_id` without asking Slack (the fuzz targets have no Slack).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn signed_in_for_fuzzing(&self, user_id: &str) {
        *lock(&self.inner.me) = Some(Me {
            user_id: user_id.to_owned(),
        });
    }
}

impl Inner {
    fn access(&self) -> &crate::access::Access {
        self.access
            .get_or_init(|| self.config.common.access("slack"))
    }

    fn me(&self) -> Option<Me> {
        lock(&self.me).clone()
    }

    /// `auth.test`: who the bot is; a refused token is a clear error, not a retry loop.
    async fn identify(&self) -> Result<Me, ChannelError> {
        let session = self.client.open_session(&self.token);
        let me = session.auth_test().await.map_err(|e| match &e {
            SlackClientError::ApiError(api) => ChannelError::Rejected(format!(
                "Slack refused channels.slack.bot_token ({}): copy the Bot User OAuth Token \
                 (xoxb-...) from OAuth & Permissions",
                api.code
            )),
            other => ChannelError::Platform(format!("slack auth.test: {other}")),
        })?;
        let me = Me {
            user_id: me.user_id.to_string(),
        };
        tracing::info!(bot_user = %me.user_id, "slack: signed in");
        *lock(&self.me) = Some(me.clone());
        // Prints the one-time pairing code when nobody is allowed yet.
        let _ = self.access();
        Ok(me)
    }
}

#[async_trait]
impl Channel for SlackChannel {
    fn name(&self) -> &str {
        "slack"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let inner = &self.inner;
        inner.identify().await?;
        let Some(app_token) = &inner.config.app_token else {
            tracing::info!("slack: Events API mode, waiting for events on /webhook/slack");
            stop.cancelled().await;
            return Ok(());
        };
        let app_token = SlackApiToken::new(app_token.clone().into());
        // A refused app token is a clear error here, not a reconnect loop in the listener.
        inner
            .client
            .open_session(&app_token)
            .apps_connections_open(&SlackApiAppsConnectionOpenRequest::new())
            .await
            .map_err(|e| match &e {
                SlackClientError::ApiError(api) => ChannelError::Rejected(format!(
                    "Slack refused channels.slack.app_token ({}): make an app-level token with \
                     the connections:write scope and turn Socket Mode on",
                    api.code
                )),
                other => ChannelError::Platform(format!("slack apps.connections.open: {other}")),
            })?;
        let state = Arc::new(SocketState {
            inner: Arc::clone(inner),
            inbox,
        });
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(Arc::clone(&inner.client))
                .with_error_handler(on_error)
                .with_user_state(state),
        );
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_push_events(on_push)
            .with_interaction_events(on_interaction)
            .with_command_events(on_command);
        let listener = SlackClientSocketModeListener::new(
            &SlackClientSocketModeConfig::new()
                .with_max_connections_count(1)
                .with_initial_backoff_in_seconds(1),
            environment,
            callbacks,
        );
        listener
            .listen_for(&app_token)
            .await
            .map_err(|e| ChannelError::Platform(format!("slack socket mode: {e}")))?;
        listener.start().await;
        tracing::info!("slack: Socket Mode connected");
        stop.cancelled().await;
        listener.shutdown().await;
        Ok(())
    }

    fn takes_webhooks(&self) -> bool {
        self.inner.verifier.is_some()
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        let inner = &self.inner;
        let Some(verifier) = &inner.verifier else {
            return WebhookResponse::text(404, "channels.slack.signing_secret is not set");
        };
        let body = String::from_utf8_lossy(&request.body);
        let signature = request.header("x-slack-signature").unwrap_or_default();
        let timestamp = request
            .header("x-slack-request-timestamp")
            .unwrap_or_default();
        if let Err(e) = verifier.verify(signature, &body, timestamp) {
            tracing::warn!(error = %e, "slack webhook: request refused");
            return WebhookResponse::text(401, "bad signature or stale timestamp");
        }
        let form = request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if form {
            let fields: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body.as_bytes())
                    .into_owned()
                    .collect();
            if let Some(payload) = fields.get("payload") {
                let Ok(payload) = serde_json::from_str::<Value>(payload) else {
                    return WebhookResponse::text(400, "payload is not JSON");
                };
                return match inner.take_interaction(&payload, inbox.as_ref()).await {
                    Ok(()) => WebhookResponse::text(200, ""),
                    Err(e) => WebhookResponse::text(503, format!("not kept: {e}")),
                };
            }
            if let (Some(command), Some(user), Some(channel)) = (
                fields.get("command"),
                fields.get("user_id"),
                fields.get("channel_id"),
            ) {
                let text = fields.get("text").map(String::as_str).unwrap_or_default();
                return match inner
                    .take_command(command, text, user, channel, inbox.as_ref())
                    .await
                {
                    Ok(reply) => WebhookResponse::text(200, reply),
                    Err(e) => WebhookResponse::text(503, format!("not kept: {e}")),
                };
            }
            return WebhookResponse::text(400, "neither an interaction nor a command");
        }
        let Ok(push) = serde_json::from_slice::<Value>(&request.body) else {
            return WebhookResponse::text(400, "not a Slack event (JSON expected)");
        };
        match s(&push, "type") {
            Some("url_verification") => WebhookResponse::json(
                &json!({"challenge": s(&push, "challenge").unwrap_or_default()}),
            ),
            Some("event_callback") => {
                if inner.me().is_none() {
                    return WebhookResponse::text(503, "not signed in to Slack yet; send it again");
                }
                let event = push.get("event").cloned().unwrap_or(Value::Null);
                match inner
                    .take_event(s(&push, "event_id"), &event, inbox.as_ref())
                    .await
                {
                    Ok(()) => WebhookResponse::text(200, ""),
                    Err(e) => WebhookResponse::text(503, format!("not kept: {e}")),
                }
            }
            Some("app_rate_limited") => {
                tracing::warn!("slack: the app was rate limited; Slack drops events for a minute");
                WebhookResponse::text(200, "")
            }
            _ => WebhookResponse::text(200, ""),
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let inner = &self.inner;
        let (channel, thread) = split_chat(&msg.chat_id);
        for media in &msg.media {
            inner.send_file(channel, thread, media).await?;
        }
        if msg.content.trim().is_empty() && msg.buttons.is_empty() {
            return Ok(());
        }
        let parts = split_message(&msg.content, MAX_MESSAGE_CHARS);
        let count = parts.len();
        for (i, part) in parts.into_iter().enumerate() {
            let last = i + 1 == count;
            let text = crate::format::markdown_to_slack_mrkdwn(&part);
            let with_buttons = last && !msg.buttons.is_empty();
            let blocks = with_buttons.then(|| blocks(&text, &msg.buttons)).flatten();
            match inner.post(channel, thread, text, blocks).await {
                Ok(()) => {}
                // Formatting or blocks Slack will not take: the plain text, buttons as text.
                Err(SlackClientError::ApiError(api))
                    if matches!(
                        api.code.as_str(),
                        "invalid_blocks" | "invalid_blocks_format"
                    ) =>
                {
                    tracing::warn!(code = %api.code, "slack refused the formatting; sent plain");
                    let mut plain = part.clone();
                    if with_buttons {
                        plain =
                            format!("{plain}\n\n{}", picoclaw_api::buttons_as_text(&msg.buttons));
                    }
                    inner
                        .post(channel, thread, crate::format::escape_html(&plain), None)
                        .await
                        .map_err(|e| api_error("chat.postMessage", &e))?;
                }
                Err(e) => return Err(api_error("chat.postMessage", &e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_the_original_keys_and_checks_them() {
        let c = SlackConfig::from_json(&json!({"enabled": true, "bot_token": "xoxb-1",
            "app_token": "xapp-1", "allow_from": ["U1"], "api_base": "http://127.0.0.1:9/api/"}))
        .unwrap();
        assert_eq!(c.bot_token, "xoxb-1");
        assert_eq!(c.app_token.as_deref(), Some("xapp-1"));
        assert_eq!(c.common.allow_from, ["U1"]);
        assert_eq!(c.api_base.as_deref(), Some("http://127.0.0.1:9/api"));
        let err = |v: Value| SlackConfig::from_json(&v).unwrap_err().to_string();
        assert!(err(json!({"app_token": "xapp-1"})).contains("bot_token is empty"));
        assert!(err(json!({"bot_token": "xoxb-1"})).contains("app_token (Socket Mode"));
        assert!(err(json!({"bot_token": "xoxb-1", "app_token": "xoxb-2"})).contains("xapp-"));
        assert!(
            err(json!({"bot_token": "x", "signing_secret": "s", "api_base": "ftp://h"}))
                .contains("http(s)")
        );
    }

    #[test]
    fn recent_forgets_the_oldest() {
        let mut r = Recent::default();
        for i in 0..5 {
            r.insert(i.to_string(), 3);
        }
        assert!(!r.contains("0") && !r.contains("1"));
        assert!(r.contains("2") && r.contains("4"));
    }
}
