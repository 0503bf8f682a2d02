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

use crate::{Channel, ChannelError, Inbox, WebhookRequest, WebhookResponse, split_message};
use async_trait::async_trait;
use picoclaw_bus::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
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

/// The largest file a user sends that is downloaded.
const MAX_DOWNLOAD_BYTES: u64 = 20 * 1024 * 1024;

/// Event ids and message timestamps remembered for dropping redeliveries.
const SEEN_CAP: usize = 2048;

/// Threads the bot answered in, remembered so that replies there need no mention.
const THREADS_CAP: usize = 1024;

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
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

/// What went wrong in a Web API call, as the channel reports it: refused credentials and
/// unknown channels are not worth retrying.
fn api_error(method: &str, e: &SlackClientError) -> ChannelError {
    match e {
        SlackClientError::ApiError(api) => {
            let hint = match api.code.as_str() {
                "not_in_channel" => ": invite the bot to the channel (/invite @your-bot)",
                "channel_not_found" => {
                    ": the bot cannot see that channel (a private one needs an invite)"
                }
                "missing_scope" | "no_permission" => {
                    ": add the scope under OAuth & Permissions and reinstall the app (docs/channels/slack.md)"
                }
                "invalid_auth" | "not_authed" | "token_revoked" | "token_expired"
                | "account_inactive" => ": check channels.slack.bot_token",
                "is_archived" => ": the channel is archived",
                _ => "",
            };
            let text = format!("slack {method}: {}{hint}", api.code);
            match api.code.as_str() {
                "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
                | "token_expired" | "no_permission" | "missing_scope" | "channel_not_found"
                | "not_in_channel" | "is_archived" | "msg_too_long" | "invalid_blocks" => {
                    ChannelError::Rejected(text)
                }
                _ => ChannelError::Platform(text),
            }
        }
        other => ChannelError::Platform(format!("slack {method}: {other}")),
    }
}

/// `C123` → (`C123`, None); `C123/1700000000.000100` → (`C123`, Some(thread)).
fn split_chat(chat_id: &str) -> (&str, Option<&str>) {
    match chat_id.split_once('/') {
        Some((channel, thread)) if !thread.is_empty() => (channel, Some(thread)),
        _ => (chat_id.trim_end_matches('/'), None),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Slack escapes `&`, `<` and `>` in message text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl SlackChannel {
    pub fn new(config: SlackConfig) -> Result<Self, ChannelError> {
        // Plain http only where api_base asks for it (a gateway, a test's fake).
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

    /// A short reply outside the conversation (pairing, slow down), in the background.
    fn notice(self: &Arc<Self>, channel: &str, thread: Option<&str>, text: &'static str) {
        let this = Arc::clone(self);
        let mut req = SlackApiChatPostMessageRequest::new(
            channel.to_owned().into(),
            SlackMessageContent::new().with_text(text.to_owned()),
        );
        req.thread_ts = thread.map(|t| t.to_owned().into());
        tokio::spawn(async move {
            let session = this.client.open_session(&this.token);
            if let Err(e) = session.chat_post_message(&req).await {
                tracing::debug!(error = %e, "slack: notice not sent");
            }
        });
    }

    /// An Events API event (`message`, `app_mention`) from either transport. `Ok` once the
    /// message is kept or deliberately ignored; `Err` when the inbox could not keep it (Slack
    /// should deliver it again).
    async fn take_event(
        self: &Arc<Self>,
        event_id: Option<&str>,
        event: &Value,
        inbox: &dyn Inbox,
    ) -> Result<(), String> {
        if let Some(id) = event_id
            && lock(&self.seen).contains(id)
        {
            tracing::debug!(event_id = id, "slack: redelivered event dropped");
            return Ok(());
        }
        let Some(me) = self.me() else {
            return Err("not signed in to Slack yet".into());
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
            .with_metadata("channel_type", if direct { "im" } else { "channel" });
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
    async fn take_interaction(&self, payload: &Value, inbox: &dyn Inbox) -> Result<(), String> {
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
    async fn take_command(
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
        inbox.deliver(inbound).await?;
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

    async fn post(
        &self,
        channel: &str,
        thread: Option<&str>,
        text: String,
        blocks: Option<Vec<SlackBlock>>,
    ) -> Result<(), SlackClientError> {
        let mut content = SlackMessageContent::new().with_text(text);
        content.blocks = blocks;
        let mut req = SlackApiChatPostMessageRequest::new(channel.to_owned().into(), content);
        req.thread_ts = thread.map(|t| t.to_owned().into());
        self.client
            .open_session(&self.token)
            .chat_post_message(&req)
            .await
            .map(|_| ())
    }

    /// Uploads a workspace file into the conversation (files.getUploadURLExternal, the upload,
    /// files.completeUploadExternal).
    async fn send_file(
        &self,
        channel: &str,
        thread: Option<&str>,
        media: &MediaRef,
    ) -> Result<(), ChannelError> {
        let bytes = tokio::fs::read(&media.location)
            .await
            .map_err(|e| ChannelError::Rejected(format!("cannot read {}: {e}", media.location)))?;
        let name = media.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&media.location)
                .file_name()
                .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let session = self.client.open_session(&self.token);
        let url = session
            .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                name.clone(),
                bytes.len(),
            ))
            .await
            .map_err(|e| api_error("files.getUploadURLExternal", &e))?;
        session
            .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                url.upload_url,
                bytes,
                media
                    .mime
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
            ))
            .await
            .map_err(|e| api_error("file upload", &e))?;
        let mut complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(url.file_id).with_title(name),
        ]);
        complete.channel_id = Some(channel.to_owned().into());
        complete.thread_ts = thread.map(|t| t.to_owned().into());
        session
            .files_complete_upload_external(&complete)
            .await
            .map_err(|e| api_error("files.completeUploadExternal", &e))?;
        Ok(())
    }
}

/// Block Kit for an answer with buttons: the text as a section, each row an actions block.
fn blocks(text: &str, rows: &[Vec<picoclaw_bus::Button>]) -> Option<Vec<SlackBlock>> {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    for (r, row) in rows.iter().enumerate().take(20) {
        let elements: Vec<Value> = row
            .iter()
            .enumerate()
            .take(25)
            .map(|(i, b)| {
                json!({
                    "type": "button",
                    "action_id": format!("picoclaw_{r}_{i}"),
                    "text": {"type": "plain_text", "text": b.text.chars().take(75).collect::<String>()},
                    "value": b.data.chars().take(2000).collect::<String>(),
                })
            })
            .collect();
        blocks.push(json!({"type": "actions", "elements": elements}));
    }
    serde_json::from_value(Value::Array(blocks)).ok()
}

// Socket Mode callbacks are plain functions; what they need travels in the listener's user
// state.
struct SocketState {
    inner: Arc<Inner>,
    inbox: Arc<dyn Inbox>,
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

async fn on_push(
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
        .map_err(boxed)
}

async fn on_interaction(
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
        .map_err(boxed)
}

async fn on_command(
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
fn on_error(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _states: SlackClientEventsUserState,
) -> HttpStatusCode {
    tracing::warn!(error = %err, "slack socket mode");
    HttpStatusCode::SERVICE_UNAVAILABLE
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
                            format!("{plain}\n\n{}", picoclaw_bus::buttons_as_text(&msg.buttons));
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
    fn chats_carry_their_thread() {
        assert_eq!(split_chat("C1"), ("C1", None));
        assert_eq!(split_chat("C1/17.5"), ("C1", Some("17.5")));
        assert_eq!(split_chat("C1/"), ("C1", None));
    }

    #[test]
    fn buttons_become_block_kit() {
        let rows = vec![vec![
            picoclaw_bus::Button::new("Yes", "yes"),
            picoclaw_bus::Button::new("No", "no"),
        ]];
        let b = blocks("*Pick*", &rows).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v[0]["type"], "section");
        assert_eq!(v[1]["type"], "actions");
        assert_eq!(v[1]["elements"][1]["value"], "no");
        assert_eq!(v[1]["elements"][0]["text"]["text"], "Yes");
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
