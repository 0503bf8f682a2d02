//! A fake Feishu (Lark) on 127.0.0.1: the Open API a bot uses (the tenant access token, bot
//! info, sending and replying, message resources), the long connection (`/callback/ws/endpoint`
//! and a WebSocket speaking protobuf `pbbp2.Frame`s: events pushed as data frames, pings
//! answered with pongs, acknowledgements recorded), and signed, encrypted webhook requests for a
//! gateway's `/webhook/feishu`. Shapes follow Feishu's documentation and official SDKs.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use picoclaw_api::channel::WebhookRequest;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The bot's open_id in the fake tenant.
pub const BOT_OPEN_ID: &str = "ou_bot";
/// The verification token the fake's events carry.
pub const VERIFICATION_TOKEN: &str = "v-token";
/// The `service_id` in the long connection's URL (pings must name it).
pub const SERVICE_ID: i32 = 7;

/// A message the bot sent.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `create` (to a chat) or `reply` (to a message).
    pub kind: String,
    /// The chat id (create) or the message id answered (reply).
    pub target: String,
    /// `msg_type`: `interactive`, `text`...
    pub msg_type: String,
    /// `content`, parsed from its JSON text.
    pub content: Value,
}

impl Sent {
    /// The markdown of an interactive card (JSON 2.0 `body.elements`, or 1.0 `elements`), or
    /// the text of a text message.
    pub fn text(&self) -> String {
        if self.msg_type == "text" {
            return self.content["text"].as_str().unwrap_or_default().to_owned();
        }
        let elements = if self.content["schema"] == "2.0" {
            &self.content["body"]["elements"]
        } else {
            &self.content["elements"]
        };
        elements
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["tag"] == "markdown")
            .filter_map(|e| e["content"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A file the bot uploaded (`/im/v1/images` or `/im/v1/files`).
#[derive(Clone, Debug)]
pub struct Upload {
    /// `image` or `file`.
    pub kind: String,
    /// The key the fake gave it (`img_up...`, `file_up...`).
    pub key: String,
    /// The form's text fields (`image_type`, `file_type`, `file_name`).
    pub fields: HashMap<String, String>,
    /// The uploaded part's file name.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A data frame the client sent back.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The `message_id` header of the frame acknowledged.
    pub message_id: String,
    /// `code` of the response payload (200: handled).
    pub code: i64,
    /// The `biz_rt` header, when present.
    pub biz_rt: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    app_id: String,
    app_secret: String,
    ws_addr: Mutex<Option<SocketAddr>>,
    tokens: Mutex<Vec<String>>,
    token_requests: AtomicU64,
    expire: AtomicU64,
    endpoint_calls: AtomicU64,
    connections: AtomicU64,
    sent: Mutex<Vec<Sent>>,
    resources: Mutex<HashMap<String, (Vec<u8>, String)>>,
    downloads: Mutex<Vec<(String, String, String)>>,
    uploads: Mutex<Vec<Upload>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<Option<Vec<u8>>>>>,
    pings: Mutex<Vec<i32>>,
    acks: Mutex<Vec<Ack>>,
    next: AtomicU64,
    /// Codes the next token requests are answered with (front first), instead of a token.
    token_failures: Mutex<Vec<i64>>,
    /// Resource keys whose download hangs until released.
    stalled: Mutex<Vec<String>>,
    /// The number of the connection (1, 2...) that stopped answering (0: none).
    silent: AtomicU64,
}

/// A fake Feishu; stops when dropped.
#[derive(Debug)]
pub struct FakeFeishu {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn answer(status: u16, body: Value) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    (status, axum::Json(body)).into_response()
}

fn bearer(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

/// Feishu's answer to a token it does not know; `None` for a good one.
fn bad_token(inner: &Inner, headers: &axum::http::HeaderMap) -> Option<Response> {
    let token = bearer(headers);
    (!inner.tokens.lock().unwrap().contains(&token)).then(|| {
        answer(
            400,
            json!({"code": 99991663, "msg": "Invalid access token for authorization."}),
        )
    })
}

async fn tenant_token(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    inner.token_requests.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["app_id"] != inner.app_id.as_str() {
        return answer(400, json!({"code": 10003, "msg": "invalid param"}));
    }
    if v["app_secret"] != inner.app_secret.as_str() {
        return answer(400, json!({"code": 10014, "msg": "app secret invalid"}));
    }
    let failure = {
        let mut failures = inner.token_failures.lock().unwrap();
        (!failures.is_empty()).then(|| failures.remove(0))
    };
    if let Some(code) = failure {
        return answer(
            400,
            json!({"code": code, "msg": "request trigger frequency limit"}),
        );
    }
    let token = format!("t-{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.tokens.lock().unwrap().push(token.clone());
    answer(
        200,
        json!({"code": 0, "msg": "ok", "tenant_access_token": token,
               "expire": inner.expire.load(Ordering::SeqCst)}),
    )
}

async fn bot_info(State(inner): State<Arc<Inner>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(r) = bad_token(&inner, &headers) {
        return r;
    }
    answer(
        200,
        json!({"code": 0, "msg": "ok", "bot": {"activate_status": 2, "app_name": "pico",
               "avatar_url": "", "ip_white_list": [], "open_id": BOT_OPEN_ID}}),
    )
}

async fn endpoint(State(inner): State<Arc<Inner>>, body: axum::body::Bytes) -> Response {
    inner.endpoint_calls.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if v["AppID"] != inner.app_id.as_str() || v["AppSecret"] != inner.app_secret.as_str() {
        return answer(200, json!({"code": 403, "msg": "forbidden", "data": null}));
    }
    let addr = inner.ws_addr.lock().unwrap().expect("socket server");
    let n = inner.next.fetch_add(1, Ordering::SeqCst);
    answer(
        200,
        json!({"code": 0, "msg": "ok", "data": {
            "URL": format!("ws://{addr}/ws/v2?fpid=1&aid=2&device_id=d{n}&access_key=k&service_id={SERVICE_ID}&ticket=t{n}"),
            "ClientConfig": {"ReconnectCount": -1, "ReconnectInterval": 1, "ReconnectNonce": 0,
                             "PingInterval": 1}}}),
    )
}

fn record_send(inner: &Inner, kind: &str, target: String, body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (Some(msg_type), Some(content)) = (v["msg_type"].as_str(), v["content"].as_str()) else {
        return answer(400, json!({"code": 230001, "msg": "param invalid"}));
    };
    let Ok(content) = serde_json::from_str::<Value>(content) else {
        return answer(400, json!({"code": 230001, "msg": "content is not JSON"}));
    };
    let id = format!("om_sent{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.sent.lock().unwrap().push(Sent {
        kind: kind.to_owned(),
        target,
        msg_type: msg_type.to_owned(),
        content,
    });
    answer(
        200,
        json!({"code": 0, "msg": "success", "data": {"message_id": id}}),
    )
}

async fn create(
    State(inner): State<Arc<Inner>>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = bad_token(&inner, &headers) {
        return r;
    }
    if query.get("receive_id_type").map(String::as_str) != Some("chat_id") {
        return answer(
            400,
            json!({"code": 99992402, "msg": "field validation failed"}),
        );
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let chat = v["receive_id"].as_str().unwrap_or_default().to_owned();
    if !chat.starts_with("oc_") {
        return answer(
            400,
            json!({"code": 230002, "msg": "The bot is not in the chat."}),
        );
    }
    record_send(&inner, "create", chat, &body)
}

async fn reply(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = bad_token(&inner, &headers) {
        return r;
    }
    // Messages named om_gone... were recalled.
    if id.starts_with("om_gone") {
        return answer(
            400,
            json!({"code": 230011, "msg": "The message was withdrawn."}),
        );
    }
    record_send(&inner, "reply", id, &body)
}

async fn resource(
    State(inner): State<Arc<Inner>>,
    Path((id, key)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(r) = bad_token(&inner, &headers) {
        return r;
    }
    let kind = query.get("type").cloned().unwrap_or_default();
    while inner.stalled.lock().unwrap().contains(&key) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    inner
        .downloads
        .lock()
        .unwrap()
        .push((id, key.clone(), kind.clone()));
    let Some((bytes, mime)) = inner.resources.lock().unwrap().get(&key).cloned() else {
        return answer(400, json!({"code": 234003, "msg": "File not in msg."}));
    };
    if kind != "image" && kind != "file" {
        return answer(
            400,
            json!({"code": 234001, "msg": "Invalid request param."}),
        );
    }
    ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response()
}

/// The parts of a `multipart/form-data` body: (name, file name, bytes).
fn form_parts(content_type: &str, body: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = content_type.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let content = &rest[head_end + 4..];
        let Some(end) = find(content, delimiter.as_bytes()) else {
            break;
        };
        let value = content[..end.saturating_sub(2)].to_vec();
        let attr = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .map(str::to_owned)
        };
        if let Some(name) = attr(" name") {
            parts.push((name, attr("filename"), value));
        }
        rest = &content[end..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(kind): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = bad_token(&inner, &headers) {
        return r;
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (kind, file_field, key_name) = match kind.as_str() {
        "images" => ("image", "image", "image_key"),
        "files" => ("file", "file", "file_key"),
        _ => return answer(404, json!({"code": 404, "msg": "not found"})),
    };
    let mut fields = HashMap::new();
    let mut file = None;
    for (name, file_name, value) in form_parts(content_type, &body) {
        if name == file_field {
            file = Some((file_name.unwrap_or_default(), value));
        } else {
            fields.insert(name, String::from_utf8_lossy(&value).into_owned());
        }
    }
    let Some((name, bytes)) = file else {
        return answer(
            400,
            json!({"code": 234001, "msg": "Invalid request param."}),
        );
    };
    let key = format!("{kind}_up{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.uploads.lock().unwrap().push(Upload {
        kind: kind.to_owned(),
        key: key.clone(),
        fields,
        name,
        bytes,
    });
    answer(
        200,
        json!({"code": 0, "msg": "success", "data": { key_name: key }}),
    )
}

/// One long connection: frames pushed by the test go out; pings are answered with pongs;
/// acknowledgements are recorded.
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let number = inner.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    inner.sockets.lock().unwrap().push(out_tx);
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(Some(bytes)) => {
                    if tx.send(Message::binary(bytes)).await.is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = tx.close().await;
                    return;
                }
            },
            incoming = rx.next() => match incoming {
                // A silent connection reads on but answers nothing (a peer gone away).
                Some(Ok(_)) if inner.silent.load(Ordering::SeqCst) == number => {}
                Some(Ok(Message::Binary(bytes))) => {
                    let Some(frame) = pb::Frame::decode(&bytes) else { continue };
                    if frame.method == 0 && frame.header("type") == Some("ping") {
                        inner.pings.lock().unwrap().push(frame.service);
                        let pong = pb::Frame {
                            service: frame.service,
                            method: 0,
                            headers: vec![("type".into(), "pong".into())],
                            payload: br#"{"PingInterval":1}"#.to_vec(),
                            ..pb::Frame::default()
                        };
                        if tx.send(Message::binary(pong.encode())).await.is_err() {
                            return;
                        }
                    } else if frame.method == 1 {
                        let v: Value = serde_json::from_slice(&frame.payload).unwrap_or(Value::Null);
                        inner.acks.lock().unwrap().push(Ack {
                            message_id: frame.header("message_id").unwrap_or_default().to_owned(),
                            code: v["code"].as_i64().unwrap_or_default(),
                            biz_rt: frame.header("biz_rt").map(str::to_owned),
                        });
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

impl FakeFeishu {
    /// Starts a fake tenant where app `app_id` with `app_secret` is installed as a bot.
    pub fn start(app_id: &str, app_secret: &str) -> Self {
        let inner = Arc::new(Inner {
            app_id: app_id.to_owned(),
            app_secret: app_secret.to_owned(),
            expire: AtomicU64::new(7200),
            next: AtomicU64::new(100),
            ..Inner::default()
        });
        let (listener, addr) = crate::serve::listen();
        let (ws_listener, ws_addr) = crate::serve::listen();
        *inner.ws_addr.lock().unwrap() = Some(ws_addr);
        let app = Router::new()
            .route(
                "/open-apis/auth/v3/tenant_access_token/internal",
                post(tenant_token),
            )
            .route("/open-apis/bot/v3/info", get(bot_info))
            .route("/callback/ws/endpoint", post(endpoint))
            .route("/open-apis/im/v1/messages", post(create))
            .route("/open-apis/im/v1/{kind}", post(upload))
            .route("/open-apis/im/v1/messages/{id}/reply", post(reply))
            .route(
                "/open-apis/im/v1/messages/{id}/resources/{key}",
                get(resource),
            )
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.feishu.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst)
    }

    /// An `im.message.receive_v1` event (schema 2.0) from user `open_id` in chat `chat_id`
    /// (`chat_type` `p2p` or `group`), with a fresh event id and message id.
    pub fn message_event(
        &self,
        open_id: &str,
        chat_id: &str,
        chat_type: &str,
        message_type: &str,
        content: &Value,
        mentions: &[Value],
    ) -> Value {
        let n = self.next();
        json!({"schema": "2.0",
            "header": {"event_id": format!("ev{n}"), "event_type": "im.message.receive_v1",
                       "create_time": "1710000000000", "token": VERIFICATION_TOKEN,
                       "app_id": self.inner.app_id, "tenant_key": "tk"},
            "event": {
                "sender": {"sender_id": {"open_id": open_id, "union_id": format!("on_{open_id}"),
                                         "user_id": format!("u_{open_id}")},
                           "sender_type": "user", "tenant_key": "tk"},
                "message": {"message_id": format!("om_{n}"), "create_time": "1710000000000",
                            "chat_id": chat_id, "chat_type": chat_type,
                            "message_type": message_type, "content": content.to_string(),
                            "mentions": mentions}}})
    }

    /// A text message in a direct chat (`oc_dm_<open_id>`).
    pub fn dm(&self, open_id: &str, text: &str) -> Value {
        let chat = format!("oc_dm_{open_id}");
        self.message_event(open_id, &chat, "p2p", "text", &json!({"text": text}), &[])
    }

    /// A text message in group `chat_id`; with `mention_bot`, it starts with `@_user_1`, the
    /// bot's mention key.
    pub fn group(&self, open_id: &str, chat_id: &str, text: &str, mention_bot: bool) -> Value {
        let (text, mentions) = if mention_bot {
            (
                format!("@_user_1 {text}"),
                vec![json!({"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID,
                            "union_id": "on_bot", "user_id": ""}, "name": "pico",
                            "tenant_key": "tk"})],
            )
        } else {
            (text.to_owned(), Vec::new())
        };
        self.message_event(
            open_id,
            chat_id,
            "group",
            "text",
            &json!({"text": text}),
            &mentions,
        )
    }

    /// Makes a resource downloadable (an image's `image_key`, a file's `file_key`).
    pub fn add_resource(&self, key: &str, bytes: &[u8], mime: &str) {
        self.inner
            .resources
            .lock()
            .unwrap()
            .insert(key.to_owned(), (bytes.to_vec(), mime.to_owned()));
    }

    /// Sends `event` over the newest long connection as one data frame (or `parts` frames);
    /// returns the frame's `message_id` header.
    pub fn push_event(&self, event: &Value, parts: usize) -> String {
        let id = format!("frame-{}", self.next());
        let bytes = event.to_string().into_bytes();
        let parts = parts.clamp(1, bytes.len());
        let size = bytes.len().div_ceil(parts);
        let chunks: Vec<Vec<u8>> = bytes.chunks(size).map(<[u8]>::to_vec).collect();
        // Sent last part first: the client must order them by seq.
        for (seq, chunk) in chunks.iter().enumerate().rev() {
            let frame = pb::Frame {
                seq_id: seq as u64,
                log_id: 1,
                service: SERVICE_ID,
                method: 1,
                headers: vec![
                    ("type".into(), "event".into()),
                    ("message_id".into(), id.clone()),
                    ("sum".into(), chunks.len().to_string()),
                    ("seq".into(), seq.to_string()),
                    ("trace_id".into(), "trace".into()),
                ],
                payload: chunk.clone(),
            };
            let bytes = frame.encode();
            crate::serve::send_to_newest(
                &self.inner.sockets,
                || Some(bytes.clone()),
                "long connection to the fake Feishu",
            );
        }
        id
    }

    /// Sends raw bytes as a binary frame (malformed frames).
    pub fn push_raw(&self, bytes: &[u8]) {
        crate::serve::send_to_newest(
            &self.inner.sockets,
            || Some(bytes.to_vec()),
            "long connection to the fake Feishu",
        );
    }

    /// The next token requests are answered with these codes (HTTP 400), one each, instead of
    /// a token: 99991400 is Feishu's rate limit.
    pub fn fail_token_requests(&self, codes: &[i64]) {
        self.inner
            .token_failures
            .lock()
            .unwrap()
            .extend_from_slice(codes);
    }

    /// Downloads of resource `key` hang until [`FakeFeishu::release`].
    pub fn stall(&self, key: &str) {
        self.inner.stalled.lock().unwrap().push(key.to_owned());
    }

    /// Lets the stalled downloads of `key` finish.
    pub fn release(&self, key: &str) {
        self.inner.stalled.lock().unwrap().retain(|k| k != key);
    }

    /// The newest long connection stops answering (no pongs, no acks recorded) while it stays
    /// open, as a peer gone away without closing does.
    pub fn go_silent(&self) {
        let newest = self.inner.connections.load(Ordering::SeqCst);
        self.inner.silent.store(newest, Ordering::SeqCst);
    }

    /// Closes every long connection.
    pub fn drop_connections(&self) {
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send(None);
        }
    }

    /// A webhook request carrying `event` as Feishu posts it: encrypted and signed with
    /// `encrypt_key` when given, plain JSON otherwise.
    pub fn webhook(event: &Value, encrypt_key: Option<&str>) -> WebhookRequest {
        let Some(key) = encrypt_key else {
            return WebhookRequest::new("POST", event.to_string())
                .with_header("content-type", "application/json");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Self::webhook_at(event, key, &now.to_string())
    }

    /// [`FakeFeishu::webhook`] encrypted and signed with `key` at `timestamp` (seconds; Feishu
    /// sends the time of the request).
    pub fn webhook_at(event: &Value, key: &str, timestamp: &str) -> WebhookRequest {
        let body = json!({"encrypt": Self::encrypt(key, event.to_string().as_bytes())}).to_string();
        let (ts, nonce) = (timestamp, "nonce-1");
        WebhookRequest::new("POST", body.clone())
            .with_header("content-type", "application/json")
            .with_header("x-lark-request-timestamp", ts)
            .with_header("x-lark-request-nonce", nonce)
            .with_header(
                "x-lark-signature",
                Self::sign(ts, nonce, key, body.as_bytes()),
            )
    }

    /// `base64(iv ‖ AES-256-CBC(sha256(key), iv, PKCS#7(plain)))`, as Feishu encrypts bodies.
    pub fn encrypt(key: &str, plain: &[u8]) -> String {
        use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
        use ring::rand::SecureRandom;
        let mut iv = [0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut iv).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let cipher = cbc::Encryptor::<aes::Aes256>::new_from_slices(digest.as_ref(), &iv)
            .unwrap()
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        let mut out = iv.to_vec();
        out.extend_from_slice(&cipher);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// `X-Lark-Signature`: hex SHA-256 of timestamp + nonce + encrypt_key + body.
    pub fn sign(timestamp: &str, nonce: &str, key: &str, body: &[u8]) -> String {
        let mut data = format!("{timestamp}{nonce}{key}").into_bytes();
        data.extend_from_slice(body);
        ring::digest::digest(&ring::digest::SHA256, &data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }

    /// Messages the bot sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// Data frames acknowledged over the long connection.
    pub fn acks(&self) -> Vec<Ack> {
        self.inner.acks.lock().unwrap().clone()
    }

    /// The `service` of each ping received.
    pub fn pings(&self) -> Vec<i32> {
        self.inner.pings.lock().unwrap().clone()
    }

    /// Long connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Tenant access tokens issued so far.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    /// Tokens issued from now on last `secs` seconds.
    pub fn set_token_expire(&self, secs: u64) {
        self.inner.expire.store(secs, Ordering::SeqCst);
    }

    /// Every token issued so far stops working (Feishu answers 99991663).
    pub fn revoke_tokens(&self) {
        self.inner.tokens.lock().unwrap().clear();
    }

    /// Files uploaded for messages, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.inner.uploads.lock().unwrap().clone()
    }

    /// Resource downloads: (message id, key, type).
    pub fn downloads(&self) -> Vec<(String, String, String)> {
        self.inner.downloads.lock().unwrap().clone()
    }
}

impl Drop for FakeFeishu {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `pbbp2.Frame` for the fake's side, written from the `.proto` independently of the channel's
/// codec, so that the two check each other.
mod pb {
    #[derive(Debug, Default)]
    pub(super) struct Frame {
        pub seq_id: u64,
        pub log_id: u64,
        pub service: i32,
        pub method: i32,
        pub headers: Vec<(String, String)>,
        pub payload: Vec<u8>,
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field_bytes(out: &mut Vec<u8>, n: u64, b: &[u8]) {
        varint(out, n << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn read_bytes<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a [u8]> {
        let len = read_varint(b, i)? as usize;
        let out = b.get(*i..*i + len)?;
        *i += len;
        Some(out)
    }

    impl Frame {
        pub(super) fn header(&self, key: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        }

        pub(super) fn encode(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for (n, v) in [
                (1, self.seq_id),
                (2, self.log_id),
                (3, self.service as i64 as u64),
                (4, self.method as i64 as u64),
            ] {
                varint(&mut out, n << 3);
                varint(&mut out, v);
            }
            for (k, v) in &self.headers {
                let mut h = Vec::new();
                field_bytes(&mut h, 1, k.as_bytes());
                field_bytes(&mut h, 2, v.as_bytes());
                field_bytes(&mut out, 5, &h);
            }
            field_bytes(&mut out, 8, &self.payload);
            out
        }

        pub(super) fn decode(b: &[u8]) -> Option<Self> {
            let mut f = Self::default();
            let mut i = 0;
            while i < b.len() {
                let tag = read_varint(b, &mut i)?;
                match (tag >> 3, tag & 7) {
                    (1, 0) => f.seq_id = read_varint(b, &mut i)?,
                    (2, 0) => f.log_id = read_varint(b, &mut i)?,
                    (3, 0) => f.service = read_varint(b, &mut i)? as i32,
                    (4, 0) => f.method = read_varint(b, &mut i)? as i32,
                    (5, 2) => {
                        let h = read_bytes(b, &mut i)?;
                        let (mut j, mut k, mut v) = (0, String::new(), String::new());
                        while j < h.len() {
                            let t = read_varint(h, &mut j)?;
                            let s = String::from_utf8(read_bytes(h, &mut j)?.to_vec()).ok()?;
                            if t >> 3 == 1 {
                                k = s;
                            } else {
                                v = s;
                            }
                        }
                        f.headers.push((k, v));
                    }
                    (8, 2) => f.payload = read_bytes(b, &mut i)?.to_vec(),
                    (_, 0) => {
                        read_varint(b, &mut i)?;
                    }
                    (_, 2) => {
                        read_bytes(b, &mut i)?;
                    }
                    _ => return None,
                }
            }
            Some(f)
        }
    }
}
