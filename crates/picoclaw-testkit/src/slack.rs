//! A fake Slack on 127.0.0.1: the Web API methods a bot uses (`auth.test`,
//! `apps.connections.open`, `chat.postMessage`, `reactions.add`, the external file upload, file
//! downloads with the bot token), a Socket Mode WebSocket that sends `hello` and the envelopes a
//! test pushes and records the acknowledgements, and signed Events API requests for a gateway's
//! `/webhook/slack`. Shapes follow Slack's documentation.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The bot's user id in the fake workspace.
pub const BOT_USER_ID: &str = "UBOT";
/// The bot's bot id (on its own messages).
pub const BOT_ID: &str = "BBOT";

/// A file the bot uploaded.
#[derive(Clone, Debug)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
    pub channel: String,
    pub thread_ts: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    bot_token: String,
    app_token: String,
    base: Mutex<String>,
    ws_addr: Mutex<Option<SocketAddr>>,
    posts: Mutex<Vec<Value>>,
    reactions: Mutex<Vec<(String, String, String)>>,
    uploads: Mutex<Vec<Upload>>,
    pending_uploads: Mutex<HashMap<String, (String, Vec<u8>)>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    downloads: Mutex<Vec<Option<String>>>,
    acks: Mutex<Vec<String>>,
    opens: AtomicU64,
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    rate_limited: Mutex<(u32, u64)>,
    reject_blocks: Mutex<u32>,
    next: AtomicU64,
}

/// A fake Slack; stops when dropped.
#[derive(Debug)]
pub struct FakeSlack {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn slack_ok(mut fields: Value) -> Response {
    fields["ok"] = json!(true);
    axum::Json(fields).into_response()
}

fn slack_error(code: &str) -> Response {
    axum::Json(json!({"ok": false, "error": code})).into_response()
}

async fn api(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Arguments: the query, then a JSON or form body.
    let mut args: serde_json::Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in url::form_urlencoded::parse(&body) {
            args.insert(k.into_owned(), Value::String(v.into_owned()));
        }
    } else if let Ok(Value::Object(map)) = serde_json::from_slice(&body) {
        args.extend(map);
    }
    let args = Value::Object(args);
    if method == "apps.connections.open" {
        if bearer != inner.app_token {
            return slack_error("invalid_auth");
        }
        inner.opens.fetch_add(1, Ordering::SeqCst);
        let addr = inner.ws_addr.lock().unwrap().expect("socket server");
        let n = inner.next.fetch_add(1, Ordering::SeqCst);
        return slack_ok(json!({"url": format!("ws://{addr}/link/?ticket=t{n}&app_id=A1")}));
    }
    if bearer != inner.bot_token {
        return slack_error("invalid_auth");
    }
    match method.as_str() {
        "auth.test" => slack_ok(json!({
            "url": "https://fake.slack.com/", "team": "Fake", "user": "pico",
            "team_id": "T1", "user_id": BOT_USER_ID, "bot_id": BOT_ID
        })),
        "chat.postMessage" => {
            {
                let mut limited = inner.rate_limited.lock().unwrap();
                if limited.0 > 0 {
                    limited.0 -= 1;
                    return (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", limited.1.to_string())],
                        axum::Json(json!({"ok": false, "error": "ratelimited"})),
                    )
                        .into_response();
                }
            }
            if args.get("blocks").is_some() {
                let mut reject = inner.reject_blocks.lock().unwrap();
                if *reject > 0 {
                    *reject -= 1;
                    return slack_error("invalid_blocks");
                }
            }
            // Channels named C-MISSING... do not exist in the fake workspace.
            let Some(channel) = args["channel"]
                .as_str()
                .filter(|c| !c.is_empty() && !c.starts_with("C-MISSING"))
                .map(str::to_owned)
            else {
                return slack_error("channel_not_found");
            };
            let ts = format!(
                "1700000000.{:06}",
                inner.next.fetch_add(1, Ordering::SeqCst)
            );
            inner.posts.lock().unwrap().push(args.clone());
            slack_ok(json!({"channel": channel, "ts": ts,
                "message": {"text": args["text"], "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts}}))
        }
        "reactions.add" => {
            let get = |k: &str| args[k].as_str().unwrap_or_default().to_owned();
            inner
                .reactions
                .lock()
                .unwrap()
                .push((get("channel"), get("timestamp"), get("name")));
            slack_ok(json!({}))
        }
        "files.getUploadURLExternal" => {
            let name = args["filename"].as_str().unwrap_or("file").to_owned();
            let id = format!("F{}", inner.next.fetch_add(1, Ordering::SeqCst));
            inner
                .pending_uploads
                .lock()
                .unwrap()
                .insert(id.clone(), (name, Vec::new()));
            let base = inner.base.lock().unwrap().clone();
            slack_ok(json!({"upload_url": format!("{base}/upload/{id}"), "file_id": id}))
        }
        "files.completeUploadExternal" => {
            let files = args["files"].clone();
            let files: Value = match files {
                Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
                other => other,
            };
            let mut done = Vec::new();
            for f in files.as_array().cloned().unwrap_or_default() {
                let id = f["id"].as_str().unwrap_or_default().to_owned();
                let Some((name, bytes)) = inner.pending_uploads.lock().unwrap().remove(&id) else {
                    return slack_error("file_not_found");
                };
                inner.uploads.lock().unwrap().push(Upload {
                    name,
                    bytes,
                    channel: args["channel_id"].as_str().unwrap_or_default().to_owned(),
                    thread_ts: args["thread_ts"].as_str().map(str::to_owned),
                });
                done.push(json!({"id": id}));
            }
            slack_ok(json!({"files": done}))
        }
        _ => slack_error("unknown_method"),
    }
}

async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    match inner.pending_uploads.lock().unwrap().get_mut(&id) {
        Some(entry) => {
            entry.1 = body.to_vec();
            "OK - 1".into_response()
        }
        None => (axum::http::StatusCode::NOT_FOUND, "no such upload").into_response(),
    }
}

async fn download(
    State(inner): State<Arc<Inner>>,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inner.downloads.lock().unwrap().push(bearer.clone());
    // Slack answers a request without the token with its sign-in page, not the file.
    if bearer.as_deref() != Some(&format!("Bearer {}", inner.bot_token)) {
        return (axum::http::StatusCode::FOUND, [("location", "/signin")]).into_response();
    }
    match inner.files.lock().unwrap().get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// One Socket Mode connection: `hello`, then the envelopes pushed to it; acknowledgements are
/// recorded.
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A1"}});
    if tx
        .send(tokio_tungstenite::tungstenite::Message::text(
            hello.to_string(),
        ))
        .await
        .is_err()
    {
        return;
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    inner.sockets.lock().unwrap().push(out_tx);
    loop {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(frame) if frame == "\u{0}close" => {
                    let _ = tx.close().await;
                    return;
                }
                Some(frame) => {
                    if tx.send(tokio_tungstenite::tungstenite::Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&text)
                        && let Some(id) = v["envelope_id"].as_str()
                    {
                        inner.acks.lock().unwrap().push(id.to_owned());
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

impl FakeSlack {
    /// Starts a fake workspace whose bot token is `bot_token` and app-level token `app_token`.
    pub fn start(bot_token: &str, app_token: &str) -> Self {
        let inner = Arc::new(Inner {
            bot_token: bot_token.to_owned(),
            app_token: app_token.to_owned(),
            next: AtomicU64::new(100),
            ..Inner::default()
        });
        let (listener, addr) = crate::serve::listen();
        let (ws_listener, ws_addr) = crate::serve::listen();
        *inner.ws_addr.lock().unwrap() = Some(ws_addr);
        *inner.base.lock().unwrap() = format!("http://{addr}");
        let app = Router::new()
            .route("/api/{method}", axum::routing::post(api).get(api))
            .route("/upload/{id}", axum::routing::post(upload))
            .route("/files/{name}", axum::routing::get(download))
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.slack.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// A file users can share (its Slack file object): downloadable from its
    /// `url_private_download` with the bot token.
    pub fn add_file(&self, name: &str, bytes: &[u8]) -> Value {
        let id = format!("F{}", self.inner.next.fetch_add(1, Ordering::SeqCst));
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(id.clone(), bytes.to_vec());
        json!({"id": id, "name": name, "mimetype": "text/plain", "size": bytes.len(),
               "url_private_download": format!("http://{}/files/{id}", self.addr)})
    }

    fn next_ts(&self) -> String {
        format!(
            "1710000000.{:06}",
            self.inner.next.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// A `message` event in a direct message from `user` (channel `D<user>`).
    pub fn dm_event(&self, user: &str, text: &str) -> Value {
        json!({"type": "message", "channel": format!("D{user}"), "channel_type": "im",
               "user": user, "text": text, "ts": self.next_ts(), "event_ts": self.next_ts()})
    }

    /// An `app_mention` event in channel `channel` (the text should contain `<@UBOT>`).
    pub fn mention_event(&self, user: &str, channel: &str, text: &str) -> Value {
        json!({"type": "app_mention", "channel": channel, "user": user, "text": text,
               "ts": self.next_ts(), "event_ts": self.next_ts()})
    }

    /// A `message` event in a channel, optionally inside a thread.
    pub fn channel_event(
        &self,
        user: &str,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Value {
        let mut e = json!({"type": "message", "channel": channel, "channel_type": "channel",
                           "user": user, "text": text, "ts": self.next_ts()});
        if let Some(t) = thread_ts {
            e["thread_ts"] = json!(t);
        }
        e
    }

    /// The Events API body (`event_callback`) that carries `event`, with a fresh `event_id`.
    pub fn event_callback(&self, event: Value) -> Value {
        let n = self.inner.next.fetch_add(1, Ordering::SeqCst);
        json!({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "event": event,
               "type": "event_callback", "event_id": format!("Ev{n}"), "event_time": 1710000000,
               "authorizations": [{"team_id": "T1", "user_id": BOT_USER_ID, "is_bot": true}]})
    }

    /// Sends `payload` (an `event_callback` body) over the Socket Mode connection as an
    /// `events_api` envelope, waiting up to 10 s for a connection. Returns the envelope id.
    pub fn push_socket(&self, payload: Value) -> String {
        let n = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let id = format!("env-{n}");
        let envelope = json!({"envelope_id": id, "type": "events_api",
            "accepts_response_payload": false, "retry_attempt": 0, "retry_reason": "",
            "payload": payload});
        self.send_frame(envelope.to_string());
        id
    }

    /// Sends an `interactive` envelope with a `block_actions` press of the button whose value
    /// is `value`, by `user` in `channel` (under a message in `thread_ts`, if any).
    pub fn press_button_socket(
        &self,
        user: &str,
        channel: &str,
        value: &str,
        thread_ts: Option<&str>,
    ) -> String {
        let n = self.inner.next.fetch_add(1, Ordering::SeqCst);
        let id = format!("env-{n}");
        let mut message = json!({"type": "message", "ts": self.next_ts(), "text": "pick",
                                 "user": BOT_USER_ID, "bot_id": BOT_ID});
        if let Some(t) = thread_ts {
            message["thread_ts"] = json!(t);
        }
        let payload = json!({"type": "block_actions", "trigger_id": format!("tr{n}"),
            "user": {"id": user, "username": "someone", "team_id": "T1"},
            "api_app_id": "A1", "team": {"id": "T1", "domain": "fake"},
            "channel": {"id": channel, "name": "chat"},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel},
            "message": message,
            "actions": [{"type": "button", "action_id": "picoclaw_0_0", "block_id": "b1",
                         "value": value, "text": {"type": "plain_text", "text": value},
                         "action_ts": self.next_ts()}]});
        let envelope = json!({"envelope_id": id, "type": "interactive",
            "accepts_response_payload": false, "payload": payload});
        self.send_frame(envelope.to_string());
        id
    }

    /// Asks the connected client to reconnect (Slack's `disconnect` frame), then closes.
    pub fn disconnect_socket(&self) {
        let frame = json!({"type": "disconnect", "reason": "refresh_requested",
                           "debug_info": {"host": "applink-fake"}});
        self.send_frame(frame.to_string());
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send("\u{0}close".to_owned());
        }
    }

    fn send_frame(&self, frame: String) {
        crate::serve::send_to_newest(
            &self.inner.sockets,
            || frame.clone(),
            "Socket Mode connection to the fake Slack",
        );
    }

    /// Signs an Events API request body with `secret` at unix time `ts`, as Slack does:
    /// `v0=` + hex HMAC-SHA256 of `v0:{ts}:{body}`.
    pub fn sign(secret: &str, ts: i64, body: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, format!("v0:{ts}:{body}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("v0={hex}")
    }

    /// Waits up to 10 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }

    /// `chat.postMessage` calls so far (their arguments).
    pub fn posts(&self) -> Vec<Value> {
        self.inner.posts.lock().unwrap().clone()
    }

    /// `reactions.add` calls: (channel, timestamp, name).
    pub fn reactions(&self) -> Vec<(String, String, String)> {
        self.inner.reactions.lock().unwrap().clone()
    }

    /// Files uploaded through files.completeUploadExternal.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.uploads.lock().unwrap().clone()
    }

    /// Envelope ids acknowledged over Socket Mode.
    pub fn acks(&self) -> Vec<String> {
        self.inner.acks.lock().unwrap().clone()
    }

    /// How many times `apps.connections.open` was called.
    pub fn connections_opened(&self) -> u64 {
        self.inner.opens.load(Ordering::SeqCst)
    }

    /// The Authorization headers file downloads came with.
    pub fn downloads(&self) -> Vec<Option<String>> {
        self.inner.downloads.lock().unwrap().clone()
    }

    /// The next `n` chat.postMessage calls are answered 429 with `Retry-After: secs`.
    pub fn rate_limit_posts(&self, n: u32, secs: u64) {
        *self.inner.rate_limited.lock().unwrap() = (n, secs);
    }

    /// The next `n` chat.postMessage calls with blocks are answered `invalid_blocks`.
    pub fn reject_blocks(&self, n: u32) {
        *self.inner.reject_blocks.lock().unwrap() = n;
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
