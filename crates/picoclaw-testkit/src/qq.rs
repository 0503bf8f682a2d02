//! A fake QQ bot platform on 127.0.0.1: the app access token endpoint (`expires_in` as a
//! string, as QQ sends it), `/gateway`, a WebSocket gateway (Hello, Identify → READY, Resume →
//! RESUMED, heartbeats answered, the dispatches a test pushes, Reconnect and Invalid Session on
//! demand), the v2 message APIs (refusing a repeated `msg_id` + `msg_seq` as QQ does), file
//! downloads, and Ed25519-signed callbacks for `/webhook/qq` made with the key QQ derives from
//! the app secret. Shapes follow bot.q.qq.com and tencent-connect/botpy.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The bot's own user id (READY's `user.id`).
pub const BOT_ID: &str = "bot-4242";

/// The frame that closes a connection from the fake's side.
const CLOSE: &str = "\u{0}close";

#[derive(Debug, Default)]
struct Inner {
    app_id: String,
    app_secret: String,
    ws_addr: Mutex<Option<SocketAddr>>,
    tokens: Mutex<Vec<String>>,
    token_lifetime: AtomicU64,
    heartbeat_ms: AtomicU64,
    received: Mutex<Vec<Value>>,
    posts: Mutex<Vec<(String, Value)>>,
    replies: Mutex<HashSet<(String, u64)>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    seq: AtomicU64,
    next: AtomicU64,
    /// Per coming token request: `None` answers it, `Some` fails it with (status, body).
    token_plan: Mutex<VecDeque<Option<(u16, Value)>>>,
    token_delay_ms: AtomicU64,
    token_requests: AtomicU64,
    file_delay_ms: AtomicU64,
}

impl Inner {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        let app = headers.get("x-union-appid").and_then(|v| v.to_str().ok());
        let newest = self.tokens.lock().unwrap().last().cloned();
        matches!((auth, newest), (Some(a), Some(t)) if a == format!("QQBot {t}"))
            && app == Some(self.app_id.as_str())
    }
}

/// A fake QQ; stops when dropped.
#[derive(Debug)]
pub struct FakeQq {
    addr: SocketAddr,
    inner: Arc<Inner>,
    key: Arc<Ed25519KeyPair>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn refused(status: StatusCode, code: u64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn access_token(
    State(inner): State<Arc<Inner>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    inner.token_requests.fetch_add(1, Ordering::SeqCst);
    let delay = inner.token_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    if let Some(Some((status, body))) = inner.token_plan.lock().unwrap().pop_front() {
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response();
    }
    if body["appId"] != inner.app_id.as_str() || body["clientSecret"] != inner.app_secret.as_str() {
        // QQ answers a wrong secret with 200 and an error code.
        return axum::Json(json!({"code": 100016, "message": "invalid appid or secret"}))
            .into_response();
    }
    let token = format!("qt-{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.tokens.lock().unwrap().push(token.clone());
    let lifetime = inner.token_lifetime.load(Ordering::SeqCst);
    axum::Json(json!({"access_token": token, "expires_in": lifetime.to_string()})).into_response()
}

async fn gateway(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if !inner.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, 11241, "wrong token");
    }
    let addr = inner.ws_addr.lock().unwrap().expect("socket server");
    axum::Json(json!({"url": format!("ws://{addr}/websocket")})).into_response()
}

async fn message(
    State(inner): State<Arc<Inner>>,
    Path((kind, openid)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !inner.authorized(&headers) {
        return refused(StatusCode::UNAUTHORIZED, 11241, "wrong token");
    }
    if let (Some(id), Some(seq)) = (body["msg_id"].as_str(), body["msg_seq"].as_u64())
        && !inner.replies.lock().unwrap().insert((id.to_owned(), seq))
    {
        return refused(StatusCode::BAD_REQUEST, 40054005, "duplicated msg_seq");
    }
    inner
        .posts
        .lock()
        .unwrap()
        .push((format!("/v2/{kind}/{openid}/messages"), body));
    let n = inner.next.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"id": format!("sent-{n}"), "timestamp": "2026-01-01T00:00:00+08:00"}))
        .into_response()
}

async fn file(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> Response {
    let delay = inner.file_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    match inner.files.lock().unwrap().get(&name) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// One gateway connection: Hello, then Identify/Resume answered, heartbeats acknowledged,
/// pushed frames sent; everything the client sends is recorded.
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let hello =
        json!({"op": 10, "d": {"heartbeat_interval": inner.heartbeat_ms.load(Ordering::SeqCst)}});
    if tx.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    inner.sockets.lock().unwrap().push(out_tx);
    loop {
        let reply = tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(frame) if frame == CLOSE => {
                    let _ = tx.close().await;
                    return;
                }
                Some(frame) => Some(frame),
                None => return,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                    inner.received.lock().unwrap().push(v.clone());
                    answer(&inner, &v)
                }
                Some(Ok(_)) => None,
                _ => return,
            },
        };
        if let Some(reply) = reply
            && tx.send(Message::text(reply)).await.is_err()
        {
            return;
        }
    }
}

/// The gateway's answer to a client frame.
fn answer(inner: &Inner, frame: &Value) -> Option<String> {
    let token_ok = |d: &Value| {
        let newest = inner
            .tokens
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        d["token"] == format!("QQBot {newest}")
    };
    match frame["op"].as_u64() {
        Some(1) => Some(json!({"op": 11}).to_string()),
        Some(2) if token_ok(&frame["d"]) => {
            let n = inner.next.fetch_add(1, Ordering::SeqCst);
            let s = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
            Some(
                json!({"op": 0, "s": s, "t": "READY", "id": format!("ready-{n}"),
                    "d": {"version": 1, "session_id": format!("session-{n}"),
                          "user": {"id": BOT_ID, "username": "pico-bot", "bot": true},
                          "shard": [0, 1]}})
                .to_string(),
            )
        }
        Some(6) if token_ok(&frame["d"]) => {
            let s = inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
            Some(json!({"op": 0, "s": s, "t": "RESUMED", "d": ""}).to_string())
        }
        Some(2 | 6) => Some(json!({"op": 9, "d": false}).to_string()),
        _ => None,
    }
}

impl FakeQq {
    /// Starts a fake QQ for the bot `app_id` / `app_secret`; tokens last 7200 s and the
    /// gateway asks for a heartbeat every 45 s until changed.
    pub fn start(app_id: &str, app_secret: &str) -> Self {
        let inner = Arc::new(Inner {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            token_lifetime: AtomicU64::new(7200),
            heartbeat_ms: AtomicU64::new(45_000),
            next: AtomicU64::new(100),
            ..Inner::default()
        });
        let key = Arc::new(key_of(app_secret));
        let (listener, addr) = crate::serve::listen();
        let (ws_listener, ws_addr) = crate::serve::listen();
        *inner.ws_addr.lock().unwrap() = Some(ws_addr);
        let app = Router::new()
            .route("/app/getAppAccessToken", axum::routing::post(access_token))
            .route("/gateway", axum::routing::get(gateway))
            .route("/v2/{kind}/{openid}/messages", axum::routing::post(message))
            .route("/files/{name}", axum::routing::get(file))
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            addr,
            inner,
            key,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.qq.api_base` and `channels.qq.auth_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tokens issued from now on last `secs` seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.inner.token_lifetime.store(secs, Ordering::SeqCst);
    }

    /// The heartbeat interval new connections are told in Hello.
    pub fn set_heartbeat_ms(&self, ms: u64) {
        self.inner.heartbeat_ms.store(ms, Ordering::SeqCst);
    }

    /// Plans the coming token requests: one entry per request, `None` answered as usual,
    /// `Some((status, body))` answered with that instead; later requests are answered.
    pub fn plan_tokens(&self, plan: Vec<Option<(u16, Value)>>) {
        *self.inner.token_plan.lock().unwrap() = plan.into();
    }

    /// The token endpoint answers after `ms` milliseconds from now on.
    pub fn set_token_delay_ms(&self, ms: u64) {
        self.inner.token_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Access token requests received, refused ones included.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// File downloads answer after `ms` milliseconds from now on (a slow attachment).
    pub fn set_file_delay_ms(&self, ms: u64) {
        self.inner.file_delay_ms.store(ms, Ordering::SeqCst);
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst)
    }

    /// The `d` of a 1:1 message from `user_openid`.
    pub fn c2c_message(&self, user_openid: &str, text: &str) -> Value {
        let n = self.next();
        json!({"id": format!("ROBOT1.0_c2c{n}"), "content": text,
               "timestamp": "2026-01-01T00:00:00+08:00",
               "author": {"id": user_openid, "user_openid": user_openid}, "attachments": []})
    }

    /// The `d` of an @-message in group `group_openid` from `member_openid` (QQ puts the
    /// mention markup first).
    pub fn group_message(&self, group_openid: &str, member_openid: &str, text: &str) -> Value {
        let n = self.next();
        json!({"id": format!("ROBOT1.0_grp{n}"), "content": format!("<@!{BOT_ID}> {text}"),
               "timestamp": "2026-01-01T00:00:00+08:00", "group_openid": group_openid,
               "group_id": group_openid,
               "author": {"id": member_openid, "member_openid": member_openid}})
    }

    /// A 1:1 message with an attachment of `content_type` (`image/png`, `voice`) holding
    /// `bytes`, downloadable from the fake.
    pub fn c2c_attachment(&self, user_openid: &str, content_type: &str, bytes: &[u8]) -> Value {
        let name = format!("f{}.bin", self.next());
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(name.clone(), bytes.to_vec());
        let mut d = self.c2c_message(user_openid, "");
        d["attachments"] = json!([{"content_type": content_type, "filename": name,
            "size": bytes.len(), "url": format!("http://{}/files/{name}", self.addr)}]);
        d
    }

    /// Pushes a dispatch (`op 0`) of event type `t` with `d` on the newest gateway connection,
    /// waiting up to 10 s for one. Returns its sequence number.
    pub fn push(&self, t: &str, d: &Value) -> u64 {
        let s = self.inner.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = json!({"op": 0, "s": s, "t": t, "id": format!("{t}:{}", self.next()), "d": d});
        self.send_frame(frame.to_string());
        s
    }

    /// Asks the client to reconnect (op 7).
    pub fn ask_to_reconnect(&self) {
        self.send_frame(json!({"op": 7}).to_string());
    }

    /// Tells the client its session is invalid (op 9).
    pub fn invalidate_session(&self) {
        self.send_frame(json!({"op": 9, "d": false}).to_string());
    }

    /// Closes every gateway connection (a network drop), waiting for one if none is open yet.
    pub fn drop_connections(&self) {
        crate::serve::wait_until("a connection to drop", || {
            let mut sockets = self.inner.sockets.lock().unwrap();
            sockets.retain(|s| !s.is_closed());
            !sockets.is_empty()
        });
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send(CLOSE.to_owned());
        }
    }

    fn send_frame(&self, frame: String) {
        crate::serve::send_to_newest(
            &self.inner.sockets,
            || frame.clone(),
            "gateway connection to the fake QQ",
        );
    }

    /// A callback body for `/webhook/qq`: a dispatch of `t` with `d`.
    pub fn callback(&self, t: &str, d: &Value) -> Vec<u8> {
        json!({"op": 0, "id": format!("{t}:{}", self.next()), "t": t, "d": d})
            .to_string()
            .into_bytes()
    }

    /// The headers QQ signs a callback `body` with at `timestamp`:
    /// `X-Signature-Ed25519` (hex of the Ed25519 signature of timestamp + body) and
    /// `X-Signature-Timestamp`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> Vec<(String, String)> {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        vec![
            (
                "x-signature-ed25519".to_owned(),
                hex(self.key.sign(&message).as_ref()),
            ),
            ("x-signature-timestamp".to_owned(), timestamp.to_owned()),
            ("x-bot-appid".to_owned(), self.inner.app_id.clone()),
        ]
    }

    /// The signature QQ expects for a validation request: hex Ed25519 of event_ts +
    /// plain_token.
    pub fn validation_signature(&self, event_ts: &str, plain_token: &str) -> String {
        hex(self
            .key
            .sign(format!("{event_ts}{plain_token}").as_bytes())
            .as_ref())
    }

    /// The app's Ed25519 public key (hex).
    pub fn public_key(&self) -> String {
        hex(self.key.public_key().as_ref())
    }

    /// Access tokens issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.inner.tokens.lock().unwrap().clone()
    }

    /// Frames the client sent on gateway connections.
    pub fn received(&self) -> Vec<Value> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Received frames with opcode `op`.
    pub fn received_op(&self, op: u64) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|f| f["op"] == op)
            .collect()
    }

    /// Messages the bot posted: (path, body).
    pub fn posts(&self) -> Vec<(String, Value)> {
        self.inner.posts.lock().unwrap().clone()
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }
}

/// The key QQ derives from an app secret: the secret repeated to a 32-byte Ed25519 seed.
fn key_of(secret: &str) -> Ed25519KeyPair {
    let bytes = secret.as_bytes();
    let seed: Vec<u8> = (0..32).map(|i| bytes[i % bytes.len()]).collect();
    Ed25519KeyPair::from_seed_unchecked(&seed).expect("a 32-byte seed")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Drop for FakeQq {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
