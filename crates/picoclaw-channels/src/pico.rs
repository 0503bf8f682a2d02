//! The Pico protocol: the original PicoClaw's native chat endpoint, JSON over a WebSocket at
//! the gateway's `/pico/ws`, for custom clients and scripts (docs/channels/pico.md).
//!
//! The gateway's HTTP server takes the upgrade request and asks this channel
//! ([`Channel::socket`]) whether to accept it: the `Origin` against `allow_origins`, the token
//! (`Authorization: Bearer <token>`, the subprotocol `token.<token>`, or `?token=` with
//! `allow_token_query`) compared in constant time, and `max_connections`. The gateway then runs
//! the session over the upgraded connection.
//!
//! Every frame is one JSON object `{"type", "id", "session_id", "timestamp", "payload"}`.
//! Client → server: `message.send` (`payload.content`), `ping` (answered by `pong` with the same
//! `id`). Server → client: `message.create` / `message.update` (`payload.message_id`,
//! `payload.content`): the answer is created with its first text and updated as it grows
//! (`payload.delta` is the new text, `payload.content` all so far), the last update carries
//! the whole answer and `payload.final: true`; an answer that was not streamed (a scheduled
//! job's) is one `message.create` with `final: true`. `typing.start` / `typing.stop` while a
//! turn runs, `error` (`payload.code`, `payload.message`) for what the server refuses.
//!
//! A connection's conversation is `pico:<session_id>` (the `session_id` query parameter, else a
//! random one, named in the answers' frames); a `message.send` naming another `session_id`
//! joins that conversation too. The sender is the `client_id` query parameter (default `pico-user`):
//! `allow_from` names the clients that may talk, and pairing with `/pair CODE` works as on the
//! other channels.

use crate::access::{Access, Pairing};
use crate::lock;
use crate::settings::Common;
use crate::{Channel, ChannelError, Inbox, SocketSession, SocketStream};
use crate::{WebhookRequest, WebhookResponse};
use async_trait::async_trait;
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, OutboundMessage};
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

/// The route the gateway serves this channel on.
pub const ROUTE: &str = "/pico/ws";

/// The largest frame a client may send (a longer message closes the connection).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Frames waiting to be written to one client before it counts as too slow and is dropped.
const QUEUE: usize = 1024;

/// The sender of a connection that names no `client_id` (the original's fixed sender).
pub const DEFAULT_CLIENT: &str = "pico-user";

/// `channels.pico`, read.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PicoConfig {
    /// The secret clients present.
    pub token: String,
    /// Whether `?token=` is taken too.
    pub allow_token_query: bool,
    /// Web page origins allowed (`*`: any); empty: no browser page, only clients without
    /// `Origin`.
    pub allow_origins: Vec<String>,
    /// Between WebSocket pings.
    pub ping_interval: Duration,
    /// Silence from the client (no frame, no pong) before the connection is closed.
    pub read_timeout: Duration,
    /// Longest a write may take.
    pub write_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// allow_from, rate limit, paired-users file.
    pub common: Common,
}

impl PicoConfig {
    /// Reads `channels.pico` from JSON ([`crate::PicoSection`]'s keys).
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::PicoSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.pico: {e}")))?;
        Self::from_section(&section)
    }

    /// Builds from the typed section; a missing token is an error naming the key.
    pub fn from_section(section: &crate::PicoSection) -> Result<Self, ChannelError> {
        let token = crate::sections::trimmed(section.token.as_ref()).ok_or_else(|| {
            ChannelError::Rejected(
                "channels.pico.token is empty: set a long random secret there; clients send it \
                 as Authorization: Bearer <token> (docs/channels/pico.md)"
                    .into(),
            )
        })?;
        let seconds =
            |v: Option<u64>, default: u64| Duration::from_secs(v.unwrap_or(default).max(1));
        Ok(Self {
            token,
            allow_token_query: section.allow_token_query.unwrap_or(false),
            allow_origins: section
                .allow_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            ping_interval: seconds(section.ping_interval.filter(|n| *n > 0), 30),
            read_timeout: seconds(section.read_timeout.filter(|n| *n > 0), 60),
            write_timeout: seconds(section.write_timeout.filter(|n| *n > 0), 10),
            max_connections: section
                .max_connections
                .filter(|n| *n > 0)
                .map_or(100, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            common: Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute),
        })
    }
}

impl crate::settings::ChannelSettings for PicoConfig {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// One open connection: the conversations it takes part in and its outgoing queue.
struct Conn {
    sessions: BTreeSet<String>,
    tx: mpsc::Sender<Message>,
    /// Cancelled when the client reads too slowly for its queue: the connection closes.
    overflow: CancellationToken,
}

/// An answer being streamed in a conversation.
#[derive(Default)]
struct Streaming {
    message_id: Option<String>,
    text: String,
    typing: bool,
}

struct Inner {
    config: PicoConfig,
    access: Access,
    conns: Mutex<HashMap<u64, Conn>>,
    /// Connections open or being opened (a slot is taken before the upgrade).
    open: AtomicUsize,
    next_conn: AtomicU64,
    streams: Mutex<HashMap<String, Streaming>>,
    /// Cancelled when the channel stops: every session closes.
    stop: CancellationToken,
}

/// The Pico protocol channel.
pub struct PicoChannel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PicoChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PicoChannel")
            .field("open", &self.inner.open.load(Ordering::Relaxed))
            .field("max_connections", &self.inner.config.max_connections)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 16 random bytes as hex (ids of sessions and messages).
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No system randomness: the clock and a counter still keep sessions apart.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        return format!("{:016x}{n:016x}", now_ms());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A session or client id a client chose: 1 to 128 letters, digits and `-_.:@`.
fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
}

/// A protocol frame.
fn frame(kind: &str, id: Option<&str>, session: Option<&str>, payload: Option<Value>) -> Message {
    let mut out = Map::new();
    out.insert("type".into(), Value::from(kind));
    if let Some(id) = id {
        out.insert("id".into(), Value::from(id));
    }
    if let Some(session) = session {
        out.insert("session_id".into(), Value::from(session));
    }
    out.insert("timestamp".into(), Value::from(now_ms()));
    if let Some(payload) = payload {
        out.insert("payload".into(), payload);
    }
    Message::text(Value::Object(out).to_string())
}

fn error_frame(code: &str, message: &str, id: Option<&str>) -> Message {
    frame(
        "error",
        id,
        None,
        Some(json!({"code": code, "message": message})),
    )
}

fn refuse(status: u16, why: &str) -> WebhookResponse {
    WebhookResponse::text(status, why.to_owned())
}

impl PicoChannel {
    /// The channel for `config` (pairing opens now when `allow_from` is empty).
    pub fn new(config: PicoConfig) -> Result<Self, ChannelError> {
        let access = config.common.access("pico");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                access,
                conns: Mutex::new(HashMap::new()),
                open: AtomicUsize::new(0),
                next_conn: AtomicU64::new(1),
                streams: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
            }),
        })
    }

    /// The access rules (for the pairing code in tests).
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        lock(&self.inner.conns).len()
    }
}

impl Inner {
    /// Whether the request's `Origin` (if any) may connect.
    fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/')) else {
            return true;
        };
        self.config
            .allow_origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    }

    /// The token the request presents matches (constant time); with the subprotocol that
    /// carried it, when that was how.
    fn authenticate(&self, request: &WebhookRequest) -> Result<Option<String>, ()> {
        use subtle::ConstantTimeEq;
        let token = self.config.token.as_bytes();
        let matches = |given: &str| bool::from(given.trim().as_bytes().ct_eq(token));
        if let Some(given) = request
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            && matches(given)
        {
            return Ok(None);
        }
        if let Some(protocols) = request.header("sec-websocket-protocol") {
            for proto in protocols.split(',').map(str::trim) {
                if let Some(given) = proto.strip_prefix("token.")
                    && matches(given)
                {
                    return Ok(Some(proto.to_owned()));
                }
            }
        }
        if self.config.allow_token_query
            && url::form_urlencoded::parse(request.query.as_bytes())
                .any(|(k, v)| k == "token" && matches(&v))
        {
            return Ok(None);
        }
        Err(())
    }

    /// Queues `msg` for every connection in conversation `session`; whether one took it.
    fn broadcast(&self, session: &str, msg: &Message) -> bool {
        let conns = lock(&self.conns);
        let mut sent = false;
        for conn in conns.values().filter(|c| c.sessions.contains(session)) {
            match conn.tx.try_send(msg.clone()) {
                Ok(()) => sent = true,
                // The client does not read: its connection closes (it may reconnect).
                Err(mpsc::error::TrySendError::Full(_)) => conn.overflow.cancel(),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }
}

/// A slot among `max_connections`, given back when the connection ends (or never opens).
struct Slot {
    inner: Arc<Inner>,
    conn: Option<u64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(id) = self.conn {
            lock(&self.inner.conns).remove(&id);
        }
        self.inner.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted connection, before and while it runs.
struct Session {
    slot: Slot,
    protocol: Option<String>,
    session: String,
    client: String,
    inbox: Arc<dyn Inbox>,
}

#[async_trait]
impl SocketSession for Session {
    fn protocol(&self) -> Option<String> {
        self.protocol.clone()
    }

    async fn run(self: Box<Self>, stream: Box<dyn SocketStream>) {
        let Session {
            mut slot,
            session,
            client,
            inbox,
            ..
        } = *self;
        let inner = slot.inner.clone();
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_FRAME_BYTES))
            .max_frame_size(Some(MAX_FRAME_BYTES));
        let ws = WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await;
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        let overflow = CancellationToken::new();
        lock(&inner.conns).insert(
            id,
            Conn {
                sessions: BTreeSet::from([session.clone()]),
                tx: tx.clone(),
                overflow: overflow.clone(),
            },
        );
        slot.conn = Some(id);
        tracing::info!(conn = id, session = %session, client = %client, "pico: client connected");
        let stop = inner.stop.clone();
        let conn = Connection {
            inner: inner.clone(),
            id,
            session,
            client,
            inbox,
            tx,
        };
        conn.serve(ws, rx, stop, overflow).await;
        tracing::info!(conn = id, "pico: client disconnected");
        drop(slot);
    }
}

/// A running connection.
struct Connection {
    inner: Arc<Inner>,
    id: u64,
    /// The conversation the connection opened with.
    session: String,
    client: String,
    inbox: Arc<dyn Inbox>,
    tx: mpsc::Sender<Message>,
}

impl Connection {
    async fn serve(
        &self,
        ws: WebSocketStream<Box<dyn SocketStream>>,
        mut rx: mpsc::Receiver<Message>,
        stop: CancellationToken,
        overflow: CancellationToken,
    ) {
        let config = &self.inner.config;
        let (mut sink, mut frames) = ws.split();
        let write_timeout = config.write_timeout;
        let mut ping = tokio::time::interval(config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        loop {
            let deadline = last_heard + config.read_timeout;
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(None))).await;
                    return;
                }
                () = overflow.cancelled() => {
                    tracing::info!(conn = self.id, "pico: the client reads too slowly; closing");
                    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(None))).await;
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(conn = self.id, "pico: client silent too long; closing");
                    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(None))).await;
                    return;
                }
                _ = ping.tick() => {
                    let sent = tokio::time::timeout(write_timeout, sink.send(Message::Ping(Vec::new().into()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return;
                    }
                }
                out = rx.recv() => {
                    let Some(out) = out else { return };
                    let sent = tokio::time::timeout(write_timeout, sink.send(out)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::debug!(conn = self.id, "pico: a write failed or took too long; closing");
                        return;
                    }
                }
                incoming = frames.next() => {
                    last_heard = tokio::time::Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => self.handle(text.as_str()).await,
                        Some(Ok(Message::Binary(_))) => {
                            self.reply(error_frame("invalid_message", "frames are JSON text", None));
                        }
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(conn = self.id, error = %e, "pico: connection closed");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Queues a frame for this connection only.
    fn reply(&self, msg: Message) {
        let _ = self.tx.try_send(msg);
    }

    async fn handle(&self, text: &str) {
        let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
            self.reply(error_frame(
                "invalid_message",
                "failed to parse message",
                None,
            ));
            return;
        };
        let id = msg.get("id").and_then(Value::as_str);
        match msg.get("type").and_then(Value::as_str).unwrap_or_default() {
            "ping" => self.reply(frame("pong", id, None, None)),
            "message.send" => self.message_send(&msg, id).await,
            "media.send" => self.reply(error_frame(
                "unsupported",
                "media.send is not supported by this server; send text with message.send",
                id,
            )),
            other => self.reply(error_frame(
                "unknown_type",
                &format!(
                    "unknown message type: {}",
                    other.chars().take(64).collect::<String>()
                ),
                id,
            )),
        }
    }

    async fn message_send(&self, msg: &Map<String, Value>, id: Option<&str>) {
        let content = msg
            .get("payload")
            .and_then(|p| p.get("content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if content.is_empty() {
            self.reply(error_frame("empty_content", "message content is empty", id));
            return;
        }
        let session = match msg.get("session_id").and_then(Value::as_str) {
            None | Some("") => self.session.clone(),
            Some(s) if valid_id(s) => {
                if let Some(conn) = lock(&self.inner.conns).get_mut(&self.id) {
                    conn.sessions.insert(s.to_owned());
                }
                s.to_owned()
            }
            Some(_) => {
                self.reply(error_frame(
                    "invalid_session",
                    "session_id must be 1 to 128 letters, digits or -_.:@",
                    id,
                ));
                return;
            }
        };
        let access = &self.inner.access;
        let notice = |text: &str| {
            frame(
                "message.create",
                None,
                Some(&session),
                Some(json!({"message_id": random_id(), "content": text, "final": true})),
            )
        };
        if let Some(result) = access.try_pair(&self.client, &content) {
            self.reply(notice(match result {
                Pairing::Paired => "Paired: you can talk to me now.",
                Pairing::Refused => "That code is wrong or was already used.",
            }));
            return;
        }
        if !access.allowed(&self.client, None) {
            tracing::info!(client = %self.client, "pico: not on allow_from; refused");
            self.reply(error_frame(
                "not_allowed",
                &format!(
                    "client '{}' is not on channels.pico.allow_from; add it there, or send \
                     /pair CODE with the code from the gateway log",
                    self.client
                ),
                id,
            ));
            return;
        }
        if let Err(first) = access.take(&self.client) {
            if first {
                self.reply(error_frame(
                    "rate_limited",
                    "you are sending messages faster than I can take them; slow down a little",
                    id,
                ));
            }
            return;
        }
        let mut inbound =
            InboundMessage::new("pico", session.clone(), self.client.clone(), content)
                .with_metadata("platform", "pico")
                .with_metadata("session_id", session)
                .with_metadata("conn_id", self.id.to_string());
        if let Some(id) = id {
            inbound = inbound.with_metadata(
                "client_message_id",
                id.chars().take(128).collect::<String>(),
            );
        }
        if let Err(e) = self.inbox.deliver(inbound).await {
            tracing::warn!(error = %e, "pico: a message was not taken");
            self.reply(error_frame("unavailable", &e.to_string(), id));
        }
    }
}

#[async_trait]
impl Channel for PicoChannel {
    fn name(&self) -> &str {
        "pico"
    }

    async fn run(
        &self,
        _inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        // Connections arrive through the gateway's route (`socket`); this only ends them all
        // when the channel stops.
        let sessions = self.inner.stop.clone();
        tracing::info!("pico: taking WebSocket connections on {ROUTE}");
        stop.cancelled().await;
        sessions.cancel();
        Ok(())
    }

    fn takes_sockets(&self) -> bool {
        true
    }

    async fn socket(
        &self,
        request: WebhookRequest,
        inbox: Arc<dyn Inbox>,
    ) -> Result<Box<dyn SocketSession>, WebhookResponse> {
        let inner = &self.inner;
        if !inner.origin_allowed(request.header("origin")) {
            tracing::debug!(origin = ?request.header("origin"), "pico: refused a page of another origin");
            return Err(refuse(
                403,
                "this origin may not connect: add it to channels.pico.allow_origins",
            ));
        }
        let Ok(protocol) = inner.authenticate(&request) else {
            return Err(refuse(
                401,
                "unauthorized: send Authorization: Bearer <channels.pico.token>",
            ));
        };
        let taken = inner.open.fetch_add(1, Ordering::SeqCst);
        let slot = Slot {
            inner: inner.clone(),
            conn: None,
        };
        if taken >= inner.config.max_connections {
            drop(slot);
            tracing::warn!(
                max = inner.config.max_connections,
                "pico: too many connections; one refused"
            );
            return Err(refuse(
                503,
                "too many connections (channels.pico.max_connections)",
            ));
        }
        let mut session = None;
        let mut client = None;
        for (key, value) in url::form_urlencoded::parse(request.query.as_bytes()) {
            match &*key {
                "session_id" => session = Some(value.into_owned()),
                "client_id" => client = Some(value.into_owned()),
                _ => {}
            }
        }
        for (name, value) in [("session_id", &session), ("client_id", &client)] {
            if value.as_deref().is_some_and(|v| !valid_id(v)) {
                return Err(refuse(
                    400,
                    &format!("{name} must be 1 to 128 letters, digits or -_.:@"),
                ));
            }
        }
        Ok(Box::new(Session {
            slot,
            protocol,
            session: session.unwrap_or_else(random_id),
            client: client.unwrap_or_else(|| DEFAULT_CLIENT.to_owned()),
            inbox,
        }))
    }

    fn stream_text(&self, chat_id: &str, delta: &str) {
        let mut streams = lock(&self.inner.streams);
        if delta.is_empty() {
            // A new answer begins: forget one a cancelled turn left half-streamed.
            if let Some(old) = streams.get_mut(chat_id) {
                old.message_id = None;
                old.text.clear();
            }
            return;
        }
        let stream = streams.entry(chat_id.to_owned()).or_default();
        stream.text.push_str(delta);
        let (kind, message_id) = match &stream.message_id {
            Some(id) => ("message.update", id.clone()),
            None => {
                let id = random_id();
                stream.message_id = Some(id.clone());
                ("message.create", id)
            }
        };
        let msg = frame(
            kind,
            None,
            Some(chat_id),
            Some(
                json!({"message_id": message_id, "content": stream.text, "delta": delta,
                        "final": false}),
            ),
        );
        drop(streams);
        self.inner.broadcast(chat_id, &msg);
    }

    async fn typing(&self, chat_id: &str) {
        let first = {
            let mut streams = lock(&self.inner.streams);
            let stream = streams.entry(chat_id.to_owned()).or_default();
            !std::mem::replace(&mut stream.typing, true)
        };
        if first {
            self.inner
                .broadcast(chat_id, &frame("typing.start", None, Some(chat_id), None));
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let session = msg.chat_id.as_str();
        let stream = lock(&self.inner.streams)
            .remove(session)
            .unwrap_or_default();
        if stream.typing {
            self.inner
                .broadcast(session, &frame("typing.stop", None, Some(session), None));
        }
        let msg = match stream.message_id {
            Some(id) => frame(
                "message.update",
                None,
                Some(session),
                Some(json!({"message_id": id, "content": msg.content, "final": true})),
            ),
            None => frame(
                "message.create",
                None,
                Some(session),
                Some(json!({"message_id": random_id(), "content": msg.content, "final": true})),
            ),
        };
        if self.inner.broadcast(session, &msg) {
            Ok(())
        } else {
            Err(ChannelError::Platform(format!(
                "no pico client is connected for session {session}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(extra: Value) -> PicoConfig {
        let mut v = json!({"enabled": true, "token": "s3cret", "allow_from": ["pico-user"]});
        if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
            base.extend(extra);
        }
        PicoConfig::from_json(&v).unwrap()
    }

    #[test]
    fn a_missing_token_is_one_line_naming_the_key() {
        let e = PicoConfig::from_json(&json!({"enabled": true})).unwrap_err();
        assert!(
            e.to_string().starts_with("channels.pico.token is empty"),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
        let c = config(json!({}));
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.ping_interval, Duration::from_secs(30));
    }

    #[test]
    fn the_token_comes_by_header_subprotocol_or_query_when_allowed() {
        let ch = PicoChannel::new(config(json!({}))).unwrap();
        let inner = &ch.inner;
        let bearer = WebhookRequest::new("GET", "").with_header("Authorization", "Bearer s3cret");
        assert_eq!(inner.authenticate(&bearer), Ok(None));
        let proto = WebhookRequest::new("GET", "")
            .with_header("Sec-WebSocket-Protocol", "chat, token.s3cret");
        assert_eq!(inner.authenticate(&proto), Ok(Some("token.s3cret".into())));
        let query = WebhookRequest::new("GET", "").with_query("token=s3cret");
        assert!(inner.authenticate(&query).is_err());
        let wrong = WebhookRequest::new("GET", "").with_header("Authorization", "Bearer s3cre");
        assert!(inner.authenticate(&wrong).is_err());
        let ch = PicoChannel::new(config(json!({"allow_token_query": true}))).unwrap();
        assert_eq!(ch.inner.authenticate(&query), Ok(None));
    }

    #[test]
    fn origins_empty_means_no_browser_page() {
        let ch = PicoChannel::new(config(json!({}))).unwrap();
        assert!(ch.inner.origin_allowed(None));
        assert!(!ch.inner.origin_allowed(Some("https://evil.example")));
        let ch =
            PicoChannel::new(config(json!({"allow_origins": ["https://app.example/"]}))).unwrap();
        assert!(ch.inner.origin_allowed(Some("https://app.example")));
        assert!(!ch.inner.origin_allowed(Some("https://evil.example")));
        let ch = PicoChannel::new(config(json!({"allow_origins": ["*"]}))).unwrap();
        assert!(ch.inner.origin_allowed(Some("https://any.example")));
    }

    #[test]
    fn ids_clients_choose_are_checked() {
        assert!(valid_id("abc-1_2.3:4@x"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"x".repeat(129)));
        assert_eq!(random_id().len(), 32);
    }
}
