//! OneBot v11 (NapCat, Lagrange, go-cqhttp...) over a forward WebSocket: picoclaw dials `ws_url`
//! (with `Authorization: Bearer <access_token>` when set), takes `message` events and sends
//! with the `send_private_msg` / `send_group_msg` actions, each answered by the implementation
//! under the request's `echo`. Reconnects every `reconnect_interval` seconds (default 5),
//! backing off while the implementation stays away. The connection is pinged every 30 s and
//! given up after 90 s without hearing anything (a peer gone without a FIN); every write is
//! bounded by 10 s. Action responses are read while messages are handled: message events wait
//! in a queue of their own, and when that is full, further events are dropped (and logged)
//! rather than stalling the reader.
//!
//! Chats are named `private:<user_id>` and `group:<group_id>`; `send` picks the action from the
//! prefix. Messages come as segment arrays (preferred) or CQ-code strings (unescaped here).
//! Groups are answered when an `at` segment names the bot, or on a configured prefix; private
//! messages always (subject to allow_from on `user_id`, pairing and the rate limit). Images and
//! voice (`image`, `record` segments with a URL) are downloaded, capped at 16 MiB. Answers are
//! plain text, split at 4 500 characters, the first part threaded with a `reply` segment.

use crate::access::{Access, Admission};
use crate::group::{GroupTrigger, Seen};
use crate::lock;
use crate::settings::Common;
use crate::wsclient::{self, CloseFrame, Message};
use crate::{Channel, ChannelError, ChannelSetup, Inbox};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, MediaKind, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest text sent in one message (QQ takes about 5 000 characters).
pub const MAX_MESSAGE_CHARS: usize = 4500;

/// How long an action may wait for its response.
const ACTION_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest image or voice note taken from a user.
const MAX_MEDIA_BYTES: usize = 16 << 20;

/// Files taken from one message.
const MAX_FILES: usize = 10;

const SEEN_CAP: usize = 2048;

/// Message events read but not yet handled; events beyond it are dropped (the reader never
/// waits, so action responses keep coming in).
const EVENT_QUEUE: usize = 256;

/// How often the implementation is pinged.
const PING_EVERY: Duration = Duration::from_secs(30);

/// How long the implementation may stay silent (no frame, no pong, no heartbeat) before the
/// channel dials again.
const SILENCE_LIMIT: Duration = Duration::from_secs(90);

/// The longest one write (or the close frame) may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds `channels.onebot` (registered in [`crate::ChannelRegistry::builtin`]).
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(OnebotChannel::from_setup(setup)?))
}

/// The OneBot v11 channel.
pub struct OnebotChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OnebotChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnebotChannel")
            .field("ws_url", &wsclient::shown(&self.inner.ws_url))
            .field(
                "access_token",
                &self.inner.access_token.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

struct Inner {
    ws_url: String,
    access_token: Option<String>,
    reconnect: Duration,
    /// How often to ping, and how long a silence ends the connection.
    keepalive: (Duration, Duration),
    common: Common,
    access: Access,
    group: GroupTrigger,
    seen: Seen,
    http: reqwest::Client,
    /// Frames for the live connection's writer; `None` while disconnected.
    out: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    /// Actions waiting for their response, by echo.
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    next_echo: AtomicU64,
    /// The bot's QQ number, from the events' `self_id`.
    self_id: Mutex<Option<String>>,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An id OneBot sends as a number (or, in some implementations, a string).
fn id(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

impl OnebotChannel {
    /// The channel `channels.onebot` describes (`ws_url` required).
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let section: crate::OnebotSection = setup.settings()?;
        let ws_url = crate::sections::trimmed(section.ws_url.as_ref()).ok_or_else(|| {
            ChannelError::Rejected(
                "channels.onebot.ws_url is empty: put the forward WebSocket address of your \
                 OneBot implementation there (e.g. ws://127.0.0.1:3001)"
                    .into(),
            )
        })?;
        let parsed = url::Url::parse(&ws_url).map_err(|e| {
            ChannelError::Rejected(format!("channels.onebot.ws_url is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(ChannelError::Rejected(format!(
                "channels.onebot.ws_url '{}' must be a ws:// or wss:// URL",
                wsclient::shown(&ws_url)
            )));
        }
        let mut common =
            Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute);
        common.media_dir = Some(setup.media_dir.clone());
        common.media_base = Some(setup.workspace.clone());
        common.paired_file = Some(setup.paired_file.clone());
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("onebot: HTTP client: {e}")))?
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("onebot: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                ws_url,
                access_token: crate::sections::trimmed(section.access_token.as_ref()),
                reconnect: Duration::from_secs(section.reconnect_interval.unwrap_or(5).max(1)),
                keepalive: (PING_EVERY, SILENCE_LIMIT),
                access: common.access("onebot"),
                common,
                group: GroupTrigger::from_settings(&setup.settings),
                seen: Seen::new(SEEN_CAP),
                http,
                out: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_echo: AtomicU64::new(1),
                self_id: Mutex::new(None),
            }),
        })
    }

    /// The access rules (for the one-time pairing code).
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// Ping every `ping`, and dial again after `silence` without hearing from the
    /// implementation (30 s and 90 s unless changed here; writes are bounded by the smaller of
    /// 10 s and `silence`). For tests, which cannot wait minutes; call it before `run`.
    #[doc(hidden)]
    #[must_use]
    pub fn with_keepalive(mut self, ping: Duration, silence: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.keepalive = (ping.max(Duration::from_millis(10)), silence);
        }
        self
    }
}

/// A chat id: `private:<user_id>` or `group:<group_id>`.
#[derive(Debug, PartialEq, Eq)]
enum Chat {
    Private(i64),
    Group(i64),
}

impl Chat {
    fn parse(chat_id: &str) -> Result<Self, ChannelError> {
        let bad = || {
            ChannelError::Rejected(format!(
                "onebot: chat '{chat_id}' is not private:<user_id> or group:<group_id>"
            ))
        };
        let (kind, number) = chat_id.split_once(':').ok_or_else(bad)?;
        let number: i64 = number.trim().parse().map_err(|_| bad())?;
        match kind {
            "private" => Ok(Self::Private(number)),
            "group" => Ok(Self::Group(number)),
            _ => Err(bad()),
        }
    }

    fn action(&self, message: Value) -> (&'static str, Value) {
        match self {
            Self::Private(user) => (
                "send_private_msg",
                json!({"user_id": user, "message": message}),
            ),
            Self::Group(group) => (
                "send_group_msg",
                json!({"group_id": group, "message": message}),
            ),
        }
    }
}

impl Inner {
    async fn run(
        self: &Arc<Self>,
        inbox: &Arc<dyn Inbox>,
        stop: &CancellationToken,
    ) -> Result<(), ChannelError> {
        let headers: Vec<(&str, String)> = self
            .access_token
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect();
        let mut attempt = 0u32;
        while !stop.is_cancelled() {
            match wsclient::connect("the OneBot implementation", &self.ws_url, &headers).await {
                Ok(ws) => {
                    tracing::info!(url = %wsclient::shown(&self.ws_url), "onebot: connected");
                    attempt = 0;
                    self.session(ws, inbox, stop).await;
                    self.disconnected();
                    tracing::warn!("onebot: connection closed");
                }
                Err(ChannelError::Rejected(e)) => {
                    return Err(ChannelError::Rejected(format!(
                        "channels.onebot.access_token was refused: {e} (it must equal the \
                         access token set in the OneBot implementation)"
                    )));
                }
                Err(e) => tracing::warn!(error = %e, "onebot: cannot connect"),
            }
            attempt = attempt.saturating_add(1);
            let pause = wsclient::reconnect_delay(self.reconnect, attempt);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        Ok(())
    }

    fn disconnected(&self) {
        *lock(&self.out) = None;
        // Waiting actions fail now rather than at their timeout.
        lock(&self.pending).clear();
    }

    /// One connection. Message events are handled in order by a task of their own, so that
    /// action responses keep being read while a message is downloaded or kept; the task ends
    /// with the session (its queue finished, or cut short when the channel stops), so that no
    /// two connections' events are handled at once.
    async fn session(
        self: &Arc<Self>,
        ws: wsclient::WsStream,
        inbox: &Arc<dyn Inbox>,
        stop: &CancellationToken,
    ) {
        let (events, mut queue) = mpsc::channel::<Value>(EVENT_QUEUE);
        let mut handler = {
            let (this, inbox) = (Arc::clone(self), Arc::clone(inbox));
            tokio::spawn(async move {
                while let Some(event) = queue.recv().await {
                    if let Err(e) = this.take(&event, inbox.as_ref()).await {
                        tracing::warn!(error = %e, "onebot: a message was not kept");
                    }
                }
            })
        };
        self.connection(ws, events, stop).await;
        // Answers fail at once from here on, not at their timeout.
        self.disconnected();
        // The reader is done: the queue closes, and what is in it is handled before the next
        // connection's events, unless the channel stops.
        tokio::select! {
            _ = &mut handler => {}
            () = stop.cancelled() => {
                handler.abort();
                let _ = handler.await;
            }
        }
    }

    fn write_timeout(&self) -> Duration {
        WRITE_TIMEOUT.min(self.keepalive.1)
    }

    /// Reads and writes one connection until it closes, fails, stays silent too long or the
    /// channel stops.
    async fn connection(
        &self,
        ws: wsclient::WsStream,
        events: mpsc::Sender<Value>,
        stop: &CancellationToken,
    ) {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        *lock(&self.out) = Some(tx.clone());
        let (ping_every, silence) = self.keepalive;
        let write_timeout = self.write_timeout();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let bye = CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                        reason: "picoclaw stops".into(),
                    };
                    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(bye)))).await;
                    return;
                }
                Some(frame) = rx.recv() => {
                    match tokio::time::timeout(write_timeout, sink.send(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "onebot: writing failed");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(
                                "onebot: the implementation took no frame within {}s; reconnecting",
                                write_timeout.as_secs_f32()
                            );
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= silence {
                        tracing::warn!(
                            "onebot: nothing heard for {}s; reconnecting",
                            silence.as_secs_f32()
                        );
                        return;
                    }
                    let sent = tokio::time::timeout(
                        write_timeout,
                        sink.send(Message::Ping(Vec::new().into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::warn!("onebot: pinging failed; reconnecting");
                        return;
                    }
                }
                incoming = stream.next() => {
                    heard = Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(event) = self.on_frame(text.as_str()) {
                                match events.try_send(event) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(event)) => {
                                        tracing::warn!(
                                            message_id = ?id(&event, "message_id"),
                                            "onebot: {EVENT_QUEUE} messages are waiting; this one \
                                             was dropped"
                                        );
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                        }
                        Some(Ok(Message::Ping(data))) => { let _ = tx.send(Message::Pong(data)); }
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "onebot: connection failed");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Reads one frame: an action's response goes to its waiter, the bot's id is noted from
    /// any event; a message event is returned for the event task.
    fn on_frame(&self, text: &str) -> Option<Value> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::debug!("onebot: a frame is not JSON; ignored");
            return None;
        };
        // An action's response: it has no post_type.
        if frame.get("post_type").is_none() {
            if let Some(echo) = id(&frame, "echo")
                && let Some(waiter) = lock(&self.pending).remove(&echo)
            {
                let _ = waiter.send(frame);
            }
            return None;
        }
        if let Some(me) = id(&frame, "self_id") {
            *lock(&self.self_id) = Some(me);
        }
        (s(&frame, "post_type") == Some("message")).then_some(frame)
    }

    async fn take(&self, event: &Value, inbox: &dyn Inbox) -> Result<(), ChannelError> {
        let Some(user) = id(event, "user_id") else {
            return Ok(());
        };
        let me = lock(&self.self_id).clone();
        if me.as_deref() == Some(user.as_str()) {
            return Ok(());
        }
        let (chat, group) = match s(event, "message_type") {
            Some("private") => (format!("private:{user}"), false),
            Some("group") => match id(event, "group_id") {
                Some(g) => (format!("group:{g}"), true),
                None => return Ok(()),
            },
            _ => return Ok(()),
        };
        let message_id = id(event, "message_id");
        self.take_new(
            event,
            inbox,
            &user,
            &chat,
            group,
            me.as_deref(),
            message_id.as_deref(),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn take_new(
        &self,
        event: &Value,
        inbox: &dyn Inbox,
        user: &str,
        chat: &str,
        group: bool,
        me: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<(), ChannelError> {
        let segments = match event.get("message") {
            Some(Value::Array(items)) => items.clone(),
            Some(Value::String(text)) => parse_cq(text),
            _ => parse_cq(s(event, "raw_message").unwrap_or_default()),
        };
        let parsed = read_segments(&segments, me);
        let text = if group {
            match self.group.admit(&parsed.text, parsed.mentioned) {
                Some(t) => t,
                None => return Ok(()),
            }
        } else {
            parsed.text.trim().to_owned()
        };
        // Claimed after the access checks; kept only once the inbox took the message.
        let key = message_id.map(|m| format!("{chat}/{m}"));
        let claim = || match &key {
            Some(key) => self.seen.claim(key).map(Some),
            None => Some(None),
        };
        let claim = match self.access.admit(&[user], !group, &text, claim) {
            Admission::Deliver(claim) => claim,
            Admission::Answer(notice) => {
                self.notice(chat, notice);
                return Ok(());
            }
            Admission::Ignore => return Ok(()),
        };
        let mut msg = InboundMessage::new("onebot", chat, user, text)
            .with_metadata("peer_kind", if group { "group" } else { "user" });
        if let Some(m) = message_id {
            msg = msg.with_metadata("message_id", m);
        }
        let sender = event.get("sender");
        let name = sender.and_then(|x| s(x, "card").or_else(|| s(x, "nickname")));
        if let Some(name) = name {
            msg = msg.with_metadata("user_name", name);
        }
        if let Some(quoted) = &parsed.reply_to {
            msg = msg.with_metadata("reply_to", quoted.clone());
        }
        for (n, file) in parsed.files.iter().take(MAX_FILES).enumerate() {
            match self
                .download(file, chat, message_id.unwrap_or("msg"), n)
                .await
            {
                Ok(media) => msg.media.push(media),
                Err(e) => {
                    tracing::warn!(error = %e, "onebot: a file was not downloaded");
                    msg.content = format!("{}\n[a file could not be downloaded]", msg.content)
                        .trim()
                        .to_owned();
                }
            }
        }
        if msg.content.is_empty() && msg.media.is_empty() {
            return Ok(());
        }
        inbox.deliver(msg).await?;
        if let Some(claim) = claim {
            claim.keep();
        }
        Ok(())
    }

    async fn download(
        &self,
        file: &FileRef,
        chat: &str,
        message_id: &str,
        n: usize,
    ) -> Result<MediaRef, String> {
        let (bytes, mime) = fetch_capped(&self.http, &file.url).await?;
        let ext = match mime.as_deref().unwrap_or_default() {
            "image/png" => ".png",
            "image/gif" => ".gif",
            "image/webp" => ".webp",
            m if m.starts_with("image/") => ".jpg",
            "audio/amr" => ".amr",
            "audio/mpeg" => ".mp3",
            "audio/ogg" => ".ogg",
            "audio/silk" => ".silk",
            _ if file.kind == MediaKind::Audio => ".amr",
            _ => "",
        };
        let name = format!("{message_id}-{n}{ext}");
        let path = crate::settings::save_download(&self.common, chat, &name, bytes).await?;
        let mut media = MediaRef::new(file.kind, path.display().to_string());
        if let Some(m) = mime {
            media = media.with_mime(m);
        }
        Ok(media)
    }

    fn notice(&self, chat: &str, text: &str) {
        let Ok(chat) = Chat::parse(chat) else {
            return;
        };
        let (action, params) = chat.action(json!([{"type": "text", "data": {"text": text}}]));
        let frame = json!({"action": action, "params": params});
        if let Some(tx) = lock(&self.out).as_ref() {
            let _ = tx.send(Message::text(frame.to_string()));
        }
    }

    /// Sends an action and waits for its response (matched by `echo`).
    async fn call(&self, action: &str, params: Value) -> Result<Value, ChannelError> {
        let echo = format!(
            "picoclaw-{}",
            self.next_echo.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(echo.clone(), tx);
        let frame = json!({"action": action, "params": params, "echo": echo});
        let queued = lock(&self.out)
            .as_ref()
            .is_some_and(|out| out.send(Message::text(frame.to_string())).is_ok());
        if !queued {
            lock(&self.pending).remove(&echo);
            return Err(ChannelError::Platform(
                "onebot: not connected to the OneBot implementation".into(),
            ));
        }
        let response = match tokio::time::timeout(ACTION_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                return Err(ChannelError::Platform(format!(
                    "onebot: the connection closed before {action} was answered"
                )));
            }
            Err(_) => {
                lock(&self.pending).remove(&echo);
                return Err(ChannelError::Platform(format!(
                    "onebot: no answer to {action} within {}s",
                    ACTION_TIMEOUT.as_secs()
                )));
            }
        };
        action_result(action, response)
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let chat = Chat::parse(&msg.chat_id)?;
        let text = crate::format::markdown_to_plain(&msg.content);
        for (n, part) in crate::split_message(&text, MAX_MESSAGE_CHARS)
            .into_iter()
            .enumerate()
        {
            let mut segments = Vec::new();
            if n == 0
                && let Some(reply) = &msg.reply_to
            {
                segments.push(json!({"type": "reply", "data": {"id": reply}}));
            }
            segments.push(json!({"type": "text", "data": {"text": part}}));
            let (action, params) = chat.action(Value::Array(segments));
            self.call(action, params).await?;
        }
        Ok(())
    }
}

/// An action's response: `status: "ok"` (or `"async"`), else an error with its retcode.
fn action_result(action: &str, response: Value) -> Result<Value, ChannelError> {
    match s(&response, "status") {
        Some("ok") | Some("async") => Ok(response),
        _ => {
            let retcode = response
                .get("retcode")
                .and_then(Value::as_i64)
                .unwrap_or(-1);
            let why = s(&response, "wording")
                .or_else(|| s(&response, "message"))
                .or_else(|| s(&response, "msg"))
                .unwrap_or("no reason given");
            let text = format!("onebot: {action} failed (retcode {retcode}): {why}");
            // 1400-1404: the request itself is wrong; resending it cannot help.
            if (1400..=1404).contains(&retcode) {
                Err(ChannelError::Rejected(text))
            } else {
                Err(ChannelError::Platform(text))
            }
        }
    }
}

/// A file a message carries.
#[derive(Debug, PartialEq, Eq)]
struct FileRef {
    kind: MediaKind,
    url: String,
}

/// What a message's segments say.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    text: String,
    mentioned: bool,
    reply_to: Option<String>,
    files: Vec<FileRef>,
}

fn is_web(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Reads segments: text joined, a mention of `me` noted and removed (other mentions kept as
/// `@name`), the quoted message's id, the files with a downloadable URL.
fn read_segments(segments: &[Value], me: Option<&str>) -> Parsed {
    let mut out = Parsed::default();
    for seg in segments {
        let data = seg.get("data").cloned().unwrap_or(Value::Null);
        match s(seg, "type").unwrap_or_default() {
            "text" => out
                .text
                .push_str(data.get("text").and_then(Value::as_str).unwrap_or_default()),
            "at" => {
                let qq = id(&data, "qq").unwrap_or_default();
                if me.is_some_and(|m| m == qq) {
                    out.mentioned = true;
                } else if qq == "all" {
                    out.text.push_str("@all");
                } else {
                    let name = s(&data, "name").unwrap_or(&qq);
                    out.text.push('@');
                    out.text.push_str(name);
                }
            }
            "reply" => out.reply_to = id(&data, "id"),
            kind @ ("image" | "record") => {
                let url = s(&data, "url")
                    .filter(|u| is_web(u))
                    .or_else(|| s(&data, "file").filter(|f| is_web(f)));
                if let Some(url) = url {
                    out.files.push(FileRef {
                        kind: if kind == "image" {
                            MediaKind::Image
                        } else {
                            MediaKind::Audio
                        },
                        url: url.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    out.text = out.text.trim().to_owned();
    out
}

/// GETs `url`, refusing more than [`MAX_MEDIA_BYTES`]; the bytes and their MIME type.
async fn fetch_capped(
    http: &reqwest::Client,
    url: &str,
) -> Result<(Vec<u8>, Option<String>), String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the download answered {}", response.status()));
    }
    let mime = crate::settings::mime_of(&response);
    Ok((
        crate::settings::read_capped(response, MAX_MEDIA_BYTES).await?,
        mime,
    ))
}

/// CQ escaping: `&amp;` `&#91;` `&#93;` everywhere, `&#44;` inside parameters.
fn cq_unescape(text: &str) -> String {
    text.replace("&#91;", "[")
        .replace("&#93;", "]")
        .replace("&#44;", ",")
        .replace("&amp;", "&")
}

/// A CQ-code string (`hi [CQ:at,qq=123] there`) as segments.
pub(crate) fn parse_cq(text: &str) -> Vec<Value> {
    let mut segments = Vec::new();
    let mut rest = text;
    let push_text = |t: &str, segments: &mut Vec<Value>| {
        if !t.is_empty() {
            segments.push(json!({"type": "text", "data": {"text": cq_unescape(t)}}));
        }
    };
    while let Some(start) = rest.find("[CQ:") {
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        push_text(&rest[..start], &mut segments);
        let code = &rest[start + 4..start + len];
        let mut parts = code.split(',');
        let kind = parts.next().unwrap_or_default();
        let data: serde_json::Map<String, Value> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(cq_unescape(v))))
            .collect();
        segments.push(json!({"type": kind, "data": data}));
        rest = &rest[start + len + 1..];
    }
    push_text(rest, &mut segments);
    segments
}

#[async_trait]
impl Channel for OnebotChannel {
    fn name(&self) -> &str {
        "onebot"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        self.inner.run(&inbox, &stop).await
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        self.inner.send(msg).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cq_strings_become_segments_and_are_unescaped() {
        let segs = parse_cq(
            "&#91;hi&#93; [CQ:at,qq=10001] a&amp;b [CQ:image,file=x.jpg,url=https://h/p?a=1&amp;b=2&#44;3]",
        );
        assert_eq!(segs[0], json!({"type": "text", "data": {"text": "[hi] "}}));
        assert_eq!(segs[1], json!({"type": "at", "data": {"qq": "10001"}}));
        assert_eq!(segs[2], json!({"type": "text", "data": {"text": " a&b "}}));
        assert_eq!(segs[3]["data"]["url"], "https://h/p?a=1&b=2,3");
        // A broken code stays text.
        let broken = parse_cq("see [CQ:at,qq=1");
        assert_eq!(
            broken,
            vec![json!({"type": "text", "data": {"text": "see [CQ:at,qq=1"}})]
        );
    }

    #[test]
    fn segments_give_text_mentions_and_files() {
        let segs = json!([
            {"type": "reply", "data": {"id": "77"}},
            {"type": "at", "data": {"qq": "10001"}},
            {"type": "text", "data": {"text": " hello "}},
            {"type": "at", "data": {"qq": 42, "name": "Ada"}},
            {"type": "image", "data": {"file": "abc.image", "url": "https://img/1"}},
            {"type": "record", "data": {"file": "file:///etc/passwd"}},
            {"type": "record", "data": {"file": "https://voice/2"}},
            {"type": "face", "data": {"id": "1"}}
        ]);
        let p = read_segments(segs.as_array().unwrap(), Some("10001"));
        assert!(p.mentioned);
        assert_eq!(p.text, "hello @Ada");
        assert_eq!(p.reply_to.as_deref(), Some("77"));
        assert_eq!(
            p.files,
            vec![
                FileRef {
                    kind: MediaKind::Image,
                    url: "https://img/1".into()
                },
                FileRef {
                    kind: MediaKind::Audio,
                    url: "https://voice/2".into()
                },
            ]
        );
        assert!(!read_segments(segs.as_array().unwrap(), Some("9")).mentioned);
    }

    #[test]
    fn chat_ids_pick_the_action() {
        assert_eq!(Chat::parse("private:42").unwrap(), Chat::Private(42));
        assert_eq!(Chat::parse("group:7").unwrap(), Chat::Group(7));
        assert!(Chat::parse("42").is_err());
        assert!(Chat::parse("group:x").is_err());
        let (action, params) = Chat::Group(7).action(json!([]));
        assert_eq!(action, "send_group_msg");
        assert_eq!(params["group_id"], 7);
    }

    #[test]
    fn failed_actions_say_why() {
        let ok = json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}, "echo": "e"});
        assert!(action_result("send_private_msg", ok).is_ok());
        let failed = json!({"status": "failed", "retcode": 100, "wording": "risk control"});
        let e = action_result("send_group_msg", failed).unwrap_err();
        assert!(
            matches!(e, ChannelError::Platform(ref m) if m.contains("retcode 100") && m.contains("risk control")),
            "{e}"
        );
        let bad = json!({"status": "failed", "retcode": 1400, "msg": "bad params"});
        assert!(matches!(
            action_result("x", bad),
            Err(ChannelError::Rejected(_))
        ));
    }
}
