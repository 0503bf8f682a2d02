//! A fake Discord on 127.0.0.1: the REST routes a bot uses under `/api/v10` (`users/@me`,
//! `gateway`, channel messages with JSON or multipart bodies, typing, reactions, interaction
//! callbacks, attachment downloads) and a Gateway WebSocket speaking the documented protocol:
//! HELLO, IDENTIFY → READY (or close 4004 for a wrong token, 4014 when asked), heartbeats and
//! their ACKs, dispatches (`MESSAGE_CREATE`, `INTERACTION_CREATE`) with sequence numbers,
//! RECONNECT (op 7) and RESUME → RESUMED.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The bot's user id.
pub const BOT_ID: &str = "900000000000000001";

/// A message the bot created.
#[derive(Clone, Debug)]
pub struct Sent {
    pub channel: String,
    /// The JSON body (`payload_json` for multipart requests).
    pub body: Value,
    /// Names and bytes of attached files.
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Inner {
    token: String,
    base: Mutex<String>,
    ws: Mutex<String>,
    sent: Mutex<Vec<Sent>>,
    typing: Mutex<Vec<String>>,
    reactions: Mutex<Vec<(String, String, String)>>,
    callbacks: Mutex<Vec<(String, Value)>>,
    identifies: Mutex<Vec<Value>>,
    resumes: Mutex<Vec<Value>>,
    heartbeats: AtomicU64,
    files: Mutex<HashMap<String, Vec<u8>>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<Frame>>>,
    seq: AtomicU64,
    next: AtomicU64,
    /// Close code for the next IDENTIFY (4014 to refuse the intents).
    refuse_identify: Mutex<Option<u16>>,
    /// The heartbeat interval HELLO announces, in ms (0: Discord's usual 41 250).
    heartbeat_ms: AtomicU64,
}

/// A fake Discord; stops when dropped.
#[derive(Debug)]
pub struct FakeDiscord {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn user(id: &str, name: &str, bot: bool) -> Value {
    json!({"id": id, "username": name, "discriminator": "0", "global_name": name,
           "avatar": null, "bot": bot})
}

impl Inner {
    fn snowflake(&self) -> String {
        (1_100_000_000_000_000_000u64 + self.next.fetch_add(1, Ordering::SeqCst)).to_string()
    }

    /// A full Message object, as Discord documents it.
    fn message(&self, channel: &str, author: Value, content: &str) -> Value {
        json!({"id": self.snowflake(), "channel_id": channel, "author": author,
               "content": content, "timestamp": "2026-11-29T12:00:00.000000+00:00",
               "edited_timestamp": null, "tts": false, "mention_everyone": false,
               "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
               "pinned": false, "type": 0})
    }
}

fn error(status: u16, code: u32, message: &str) -> Response {
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

fn authorized(inner: &Inner, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bot {}", inner.token))
}

async fn me(State(inner): State<Arc<Inner>>, headers: axum::http::HeaderMap) -> Response {
    if !authorized(&inner, &headers) {
        return error(401, 0, "401: Unauthorized");
    }
    axum::Json(user(BOT_ID, "pico", true)).into_response()
}

async fn gateway(State(inner): State<Arc<Inner>>) -> Response {
    let url = inner.ws.lock().unwrap().clone();
    axum::Json(json!({"url": url})).into_response()
}

async fn gateway_bot(State(inner): State<Arc<Inner>>) -> Response {
    let url = inner.ws.lock().unwrap().clone();
    axum::Json(json!({"url": url, "shards": 1, "session_start_limit":
        {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}))
    .into_response()
}

async fn create_message(
    State(inner): State<Arc<Inner>>,
    Path(channel): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&inner, &headers) {
        return error(401, 0, "401: Unauthorized");
    }
    if channel.starts_with("404") {
        return error(404, 10003, "Unknown Channel");
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (payload, files) = if content_type.starts_with("multipart/form-data") {
        let mut payload = Value::Null;
        let mut files = Vec::new();
        for (name, filename, value) in crate::telegram::multipart_fields(&content_type, &body) {
            if name == "payload_json" {
                payload = serde_json::from_slice(&value).unwrap_or(Value::Null);
            } else if let Some(filename) = filename {
                files.push((filename, value));
            }
        }
        (payload, files)
    } else {
        (
            serde_json::from_slice(&body).unwrap_or(Value::Null),
            Vec::new(),
        )
    };
    let content = payload["content"].as_str().unwrap_or_default().to_owned();
    if content.chars().count() > 2000 {
        return error(
            400,
            50035,
            "Invalid Form Body (content: Must be 2000 or fewer in length.)",
        );
    }
    inner.sent.lock().unwrap().push(Sent {
        channel: channel.clone(),
        body: payload,
        files,
    });
    axum::Json(inner.message(&channel, user(BOT_ID, "pico", true), &content)).into_response()
}

async fn typing(State(inner): State<Arc<Inner>>, Path(channel): Path<String>) -> Response {
    inner.typing.lock().unwrap().push(channel);
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn react(
    State(inner): State<Arc<Inner>>,
    Path((channel, message, emoji)): Path<(String, String, String)>,
) -> Response {
    inner
        .reactions
        .lock()
        .unwrap()
        .push((channel, message, emoji));
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn callback(
    State(inner): State<Arc<Inner>>,
    Path((id, _token)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    inner.callbacks.lock().unwrap().push((id, body));
    axum::http::StatusCode::NO_CONTENT.into_response()
}

async fn attachment(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    match inner.files.lock().unwrap().get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such attachment").into_response(),
    }
}

fn dispatch(inner: &Inner, event: &str, data: Value) -> Frame {
    let s = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
    Frame::text(json!({"op": 0, "t": event, "s": s, "d": data}).to_string())
}

/// One Gateway connection.
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let interval = match inner.heartbeat_ms.load(Ordering::SeqCst) {
        0 => 41_250,
        ms => ms,
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null});
    if tx.send(Frame::text(hello.to_string())).await.is_err() {
        return;
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
    loop {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(frame) => {
                    let close = matches!(frame, Frame::Close(_));
                    if tx.send(frame).await.is_err() || close {
                        return;
                    }
                }
                None => return,
            },
            incoming = rx.next() => {
                let Some(Ok(Frame::Text(text))) = incoming else {
                    if matches!(incoming, Some(Ok(Frame::Ping(_) | Frame::Pong(_)))) {
                        continue;
                    }
                    return;
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["op"].as_u64() {
                    Some(1) => {
                        inner.heartbeats.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send(Frame::text(json!({"op": 11}).to_string())).await;
                    }
                    Some(2) => {
                        inner.identifies.lock().unwrap().push(v["d"].clone());
                        let refuse = inner.refuse_identify.lock().unwrap().take();
                        // Discord takes the token with or without the "Bot " prefix.
                        let token = v["d"]["token"].as_str().unwrap_or_default();
                        let code = if token.strip_prefix("Bot ").unwrap_or(token) != inner.token {
                            Some(4004)
                        } else {
                            refuse
                        };
                        if let Some(code) = code {
                            let reason = if code == 4004 { "Authentication failed." } else { "Disallowed intent(s)." };
                            let _ = tx.send(Frame::Close(Some(
                                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                                    code: code.into(),
                                    reason: reason.into(),
                                },
                            ))).await;
                            return;
                        }
                        let ws_url = inner.ws.lock().unwrap().clone();
                        let ready = json!({"v": 10, "user": user(BOT_ID, "pico", true),
                            "guilds": [], "session_id": "fake-session",
                            "resume_gateway_url": ws_url, "shard": [0, 1],
                            "application": {"id": BOT_ID, "flags": 0}});
                        let _ = tx.send(dispatch(&inner, "READY", ready)).await;
                        inner.sockets.lock().unwrap().push(out_tx.clone());
                    }
                    Some(6) => {
                        inner.resumes.lock().unwrap().push(v["d"].clone());
                        let _ = tx.send(dispatch(&inner, "RESUMED", json!({}))).await;
                        inner.sockets.lock().unwrap().push(out_tx.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

impl FakeDiscord {
    /// Starts a fake Discord whose bot token is `token`.
    pub fn start(token: &str) -> Self {
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            ..Inner::default()
        });
        let (listener, addr) = crate::serve::listen();
        let (ws_listener, ws_addr) = crate::serve::listen();
        *inner.ws.lock().unwrap() = format!("ws://{ws_addr}");
        *inner.base.lock().unwrap() = format!("http://{addr}");
        let app = Router::new()
            .route("/api/v10/users/@me", axum::routing::get(me))
            .route("/api/v10/gateway", axum::routing::get(gateway))
            .route("/api/v10/gateway/bot", axum::routing::get(gateway_bot))
            .route(
                "/api/v10/channels/{channel}/messages",
                axum::routing::post(create_message),
            )
            .route(
                "/api/v10/channels/{channel}/typing",
                axum::routing::post(typing),
            )
            .route(
                "/api/v10/channels/{channel}/messages/{message}/reactions/{emoji}/@me",
                axum::routing::put(react),
            )
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                axum::routing::post(callback),
            )
            .route("/attachments/{id}", axum::routing::get(attachment))
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.discord.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn send_frame(&self, make: impl Fn() -> Frame) {
        crate::serve::send_to_newest(
            &self.inner.sockets,
            make,
            "identified Gateway connection to the fake Discord",
        );
    }

    /// Dispatches `MESSAGE_CREATE`: `author_id` writes `content` in `channel` (a DM when
    /// `guild` is None). `extra` fields are merged into the message (mentions,
    /// referenced_message, attachments...). Returns the message id.
    pub fn message(
        &self,
        channel: &str,
        guild: Option<&str>,
        author_id: &str,
        username: &str,
        content: &str,
        extra: Value,
    ) -> String {
        let mut m = self
            .inner
            .message(channel, user(author_id, username, false), content);
        if let Some(g) = guild {
            m["guild_id"] = json!(g);
            m["member"] = json!({"roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
                                 "deaf": false, "mute": false, "flags": 0});
        }
        if let Value::Object(extra) = extra {
            for (k, v) in extra {
                m[k] = v;
            }
        }
        let id = m["id"].as_str().unwrap().to_owned();
        self.send_frame(|| dispatch(&self.inner, "MESSAGE_CREATE", m.clone()));
        id
    }

    /// Dispatches a message from a bot (`bot: true`), as Discord does for the bot's own posts.
    pub fn bot_message(&self, channel: &str, author_id: &str, content: &str) {
        let m = self
            .inner
            .message(channel, user(author_id, "somebot", true), content);
        self.send_frame(|| dispatch(&self.inner, "MESSAGE_CREATE", m.clone()));
    }

    /// A user object, for `mentions` and `referenced_message.author`.
    pub fn user(id: &str, name: &str, bot: bool) -> Value {
        user(id, name, bot)
    }

    /// A message object by `author` (for `referenced_message`).
    pub fn message_object(&self, channel: &str, author: Value, content: &str) -> Value {
        self.inner.message(channel, author, content)
    }

    /// An attachment users can send, downloadable from the fake's CDN route.
    pub fn attachment(&self, name: &str, bytes: &[u8]) -> Value {
        let id = self.inner.snowflake();
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(id.clone(), bytes.to_vec());
        json!({"id": id, "filename": name, "size": bytes.len(), "content_type": "text/plain",
               "url": format!("http://{}/attachments/{id}", self.addr),
               "proxy_url": format!("http://{}/attachments/{id}", self.addr)})
    }

    /// Dispatches `INTERACTION_CREATE`: `user_id` pressed the button `custom_id` under a bot
    /// message in the DM `channel`. Returns the interaction id.
    pub fn press_button(&self, channel: &str, user_id: &str, custom_id: &str) -> String {
        let id = self.inner.snowflake();
        let message = self
            .inner
            .message(channel, user(BOT_ID, "pico", true), "pick one");
        let interaction = json!({"id": id, "application_id": BOT_ID, "type": 3,
            "data": {"custom_id": custom_id, "component_type": 2},
            "channel_id": channel, "user": user(user_id, "presser", false),
            "token": format!("itoken-{id}"), "version": 1, "message": message,
            "locale": "en-US", "entitlements": [], "attachment_size_limit": 10485760});
        self.send_frame(|| dispatch(&self.inner, "INTERACTION_CREATE", interaction.clone()));
        id
    }

    /// Sends op 7 (RECONNECT): the client should reconnect and RESUME.
    pub fn request_reconnect(&self) {
        let sockets: Vec<_> = self.inner.sockets.lock().unwrap().drain(..).collect();
        for s in sockets {
            let _ = s.send(Frame::text(json!({"op": 7, "d": null}).to_string()));
        }
    }

    /// Announces `ms` as the heartbeat interval to connections made from now on (a client
    /// notices a dead connection by its missing heartbeat ACKs).
    pub fn set_heartbeat_interval(&self, ms: u64) {
        self.inner.heartbeat_ms.store(ms, Ordering::SeqCst);
    }

    /// Drops every Gateway connection without a word (network loss): the client should
    /// reconnect and resume.
    pub fn drop_connections(&self) {
        let sockets: Vec<_> = self.inner.sockets.lock().unwrap().drain(..).collect();
        for s in sockets {
            let _ = s.send(Frame::Close(None));
        }
    }

    /// The next IDENTIFY is answered by closing with `code` (4014: disallowed intents).
    pub fn refuse_next_identify(&self, code: u16) {
        *self.inner.refuse_identify.lock().unwrap() = Some(code);
    }

    /// Waits up to 10 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }

    /// Messages the bot created.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// Channels the bot showed "typing" in.
    pub fn typing(&self) -> Vec<String> {
        self.inner.typing.lock().unwrap().clone()
    }

    /// Reactions the bot added: (channel, message, emoji as sent, percent-encoded).
    pub fn reactions(&self) -> Vec<(String, String, String)> {
        self.inner.reactions.lock().unwrap().clone()
    }

    /// Interaction callbacks: (interaction id, body).
    pub fn callbacks(&self) -> Vec<(String, Value)> {
        self.inner.callbacks.lock().unwrap().clone()
    }

    /// IDENTIFY payloads received.
    pub fn identifies(&self) -> Vec<Value> {
        self.inner.identifies.lock().unwrap().clone()
    }

    /// RESUME payloads received.
    pub fn resumes(&self) -> Vec<Value> {
        self.inner.resumes.lock().unwrap().clone()
    }

    /// Heartbeats received.
    pub fn heartbeats(&self) -> u64 {
        self.inner.heartbeats.load(Ordering::SeqCst)
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
