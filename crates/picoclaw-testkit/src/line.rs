//! A fake LINE Messaging API on 127.0.0.1: `GET /v2/bot/info`, the reply API (reply tokens
//! work once, and only those the fake issued), the push API, the loading animation and message
//! content downloads, all with the channel access token as bearer; plus webhook events signed as
//! LINE signs them (`X-Line-Signature`: base64 HMAC-SHA256 of the body under the channel
//! secret), to hand to a channel or to POST to a listener. Shapes follow the Messaging API
//! reference.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use picoclaw_api::WebhookRequest;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The bot's user id.
pub const BOT_USER_ID: &str = "Ubot0000000000000000000000000000";

/// A reply or push call the bot made.
#[derive(Clone, Debug)]
pub struct Sent {
    /// `reply` or `push`.
    pub api: String,
    /// The reply token, or the push's `to`.
    pub target: String,
    /// The message objects.
    pub messages: Vec<Value>,
}

impl Sent {
    /// The texts of the text message objects.
    pub fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Inner {
    token: String,
    secret: String,
    sent: Mutex<Vec<Sent>>,
    loading: Mutex<Vec<String>>,
    reply_tokens: Mutex<HashSet<String>>,
    content: Mutex<HashMap<String, (String, Vec<u8>)>>,
    downloads: Mutex<Vec<String>>,
    next: AtomicU64,
    /// Content downloads hold their answer back until this is cleared.
    stall: AtomicBool,
}

/// A fake LINE platform; stops when dropped.
#[derive(Debug)]
pub struct FakeLine {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn line_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        == Some(inner.token.as_str())
}

const UNAUTHORIZED: &str =
    "Authentication failed. Confirm that the access token in the authorization header is valid.";

async fn bot_info(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if !authorized(&inner, &headers) {
        return line_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    axum::Json(
        json!({"userId": BOT_USER_ID, "basicId": "@123abcde", "displayName": "pico",
                      "chatMode": "bot", "markAsReadMode": "manual"}),
    )
    .into_response()
}

/// Checks what the Messaging API checks of a message array.
fn check_messages(messages: &Value) -> Result<Vec<Value>, &'static str> {
    let list = messages
        .as_array()
        .ok_or("The request body has 1 error(s)")?;
    if list.is_empty() || list.len() > 5 {
        return Err("Size must be between 1 and 5");
    }
    for m in list {
        if m["type"] == "text" && m["text"].as_str().is_none_or(|t| t.chars().count() > 5000) {
            return Err("Length must be between 0 and 5000");
        }
    }
    Ok(list.clone())
}

async fn send(
    State(inner): State<Arc<Inner>>,
    Path(api): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&inner, &headers) {
        return line_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    let messages = match check_messages(&body["messages"]) {
        Ok(m) => m,
        Err(e) => return line_error(StatusCode::BAD_REQUEST, e),
    };
    let target = match api.as_str() {
        "reply" => {
            let token = body["replyToken"].as_str().unwrap_or_default().to_owned();
            if !inner.reply_tokens.lock().unwrap().remove(&token) {
                return line_error(StatusCode::BAD_REQUEST, "Invalid reply token");
            }
            token
        }
        "push" => body["to"].as_str().unwrap_or_default().to_owned(),
        _ => return line_error(StatusCode::NOT_FOUND, "Not found"),
    };
    inner.sent.lock().unwrap().push(Sent {
        api,
        target,
        messages,
    });
    axum::Json(json!({"sentMessages": []})).into_response()
}

async fn loading(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&inner, &headers) {
        return line_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    let chat = body["chatId"].as_str().unwrap_or_default().to_owned();
    inner.loading.lock().unwrap().push(chat);
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}

async fn content(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&inner, &headers) {
        return line_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED);
    }
    inner.downloads.lock().unwrap().push(id.clone());
    while inner.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    match inner.content.lock().unwrap().get(&id) {
        Some((mime, bytes)) => (
            [(axum::http::header::CONTENT_TYPE, mime.clone())],
            bytes.clone(),
        )
            .into_response(),
        None => line_error(StatusCode::NOT_FOUND, "Not found"),
    }
}

impl FakeLine {
    /// Starts a fake LINE whose channel takes `access_token` and signs with `channel_secret`.
    pub fn start(channel_secret: &str, access_token: &str) -> Self {
        let inner = Arc::new(Inner {
            token: access_token.to_owned(),
            secret: channel_secret.to_owned(),
            ..Inner::default()
        });
        let app = Router::new()
            .route("/v2/bot/info", axum::routing::get(bot_info))
            .route("/v2/bot/message/{api}", axum::routing::post(send))
            .route("/v2/bot/chat/loading/start", axum::routing::post(loading))
            .route("/v2/bot/message/{id}/content", axum::routing::get(content))
            .with_state(Arc::clone(&inner));
        let (listener, addr) = crate::serve::listen();
        let shutdown = crate::serve::spawn(listener, app, std::future::pending);
        Self {
            addr,
            inner,
            _shutdown: shutdown,
        }
    }

    /// What goes in `channels.line.api_base` (and serves the content API too).
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A `message` event with `message` from `user` in `source` (`{"type":"user",...}` etc.),
    /// with a fresh webhook event id and a reply token the fake will take once.
    fn event(&self, user: &str, source: Value, message: Value) -> Value {
        let n = self.next();
        let token = format!("rt{n:030}");
        self.inner
            .reply_tokens
            .lock()
            .unwrap()
            .insert(token.clone());
        let mut source = source;
        source["userId"] = json!(user);
        json!({
            "type": "message", "mode": "active", "timestamp": 1_700_000_000_000u64 + n,
            "webhookEventId": format!("01FAKE{n:020}"),
            "deliveryContext": {"isRedelivery": false},
            "replyToken": token, "source": source, "message": message,
        })
    }

    /// A text message from `user` in a 1:1 chat.
    pub fn text_event(&self, user: &str, text: &str) -> Value {
        let id = self.next().to_string();
        self.event(
            user,
            json!({"type": "user"}),
            json!({"type": "text", "id": id, "quoteToken": "q", "text": text}),
        )
    }

    /// A text message from `user` in group `group`; `mentions` are (index, length, isSelf)
    /// spans of `text` in UTF-16 units.
    pub fn group_text_event(
        &self,
        group: &str,
        user: &str,
        text: &str,
        mentions: &[(usize, usize, bool)],
    ) -> Value {
        let id = self.next().to_string();
        let mentionees: Vec<Value> = mentions
            .iter()
            .map(|(index, length, me)| {
                let mut m = json!({"index": index, "length": length, "type": "user"});
                if *me {
                    m["isSelf"] = json!(true);
                } else {
                    m["userId"] = json!("Uother000000000000000000000000000");
                    m["isSelf"] = json!(false);
                }
                m
            })
            .collect();
        let mut message = json!({"type": "text", "id": id, "quoteToken": "q", "text": text});
        if !mentionees.is_empty() {
            message["mention"] = json!({"mentionees": mentionees});
        }
        self.event(user, json!({"type": "group", "groupId": group}), message)
    }

    /// An image (`kind` "image") or voice note (`kind` "audio") from `user` in a 1:1 chat, its
    /// content `bytes` downloadable as `mime`.
    pub fn media_event(&self, user: &str, kind: &str, mime: &str, bytes: &[u8]) -> Value {
        let id = self.next().to_string();
        self.inner
            .content
            .lock()
            .unwrap()
            .insert(id.clone(), (mime.to_owned(), bytes.to_vec()));
        let mut message = json!({"type": kind, "id": id,
                                 "contentProvider": {"type": "line"}});
        if kind == "audio" {
            message["duration"] = json!(1200);
        }
        self.event(user, json!({"type": "user"}), message)
    }

    /// `event` as LINE redelivers it: the same event id, flagged.
    pub fn redelivery(event: &Value) -> Value {
        let mut again = event.clone();
        again["deliveryContext"]["isRedelivery"] = json!(true);
        again
    }

    /// The webhook body carrying `events`.
    pub fn body(events: &[Value]) -> String {
        json!({"destination": BOT_USER_ID, "events": events}).to_string()
    }

    /// `X-Line-Signature` of `body` under `secret`.
    pub fn sign(secret: &str, body: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, body.as_bytes()))
    }

    /// A signed webhook request carrying `events`, as the gateway hands it to the channel.
    pub fn webhook(&self, events: &[Value]) -> WebhookRequest {
        let body = Self::body(events);
        WebhookRequest::new("POST", body.clone())
            .with_header("content-type", "application/json")
            .with_header("x-line-signature", Self::sign(&self.inner.secret, &body))
    }

    /// Sends `events`, signed, to a listener at `addr` + `path`; returns the HTTP status.
    pub fn post_webhook(&self, addr: SocketAddr, path: &str, events: &[Value]) -> u16 {
        let body = Self::body(events);
        let sig = Self::sign(&self.inner.secret, &body);
        post_raw(addr, path, &[("X-Line-Signature", &sig)], body.as_bytes())
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }

    /// Reply and push calls so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// Chats the loading animation was started in.
    pub fn loadings(&self) -> Vec<String> {
        self.inner.loading.lock().unwrap().clone()
    }

    /// Message ids whose content was downloaded.
    pub fn downloads(&self) -> Vec<String> {
        self.inner.downloads.lock().unwrap().clone()
    }

    /// While `on`, content downloads hold their answer back (a slow download).
    pub fn stall_downloads(&self, on: bool) {
        self.inner.stall.store(on, Ordering::SeqCst);
    }

    /// Makes every reply token issued so far invalid (used, or expired).
    pub fn expire_reply_tokens(&self) {
        self.inner.reply_tokens.lock().unwrap().clear();
    }
}

/// POSTs `body` with `headers` to `http://addr{path_and_query}` over a plain HTTP/1.1
/// connection; returns the status (0 when there was no answer).
pub fn post_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    request_raw(addr, "POST", path, headers, body).0
}

/// One plain HTTP/1.1 request to `addr`: the status (0 when there was no answer) and the body.
pub fn request_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut tcp) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if tcp.write_all(head.as_bytes()).is_err() || tcp.write_all(body).is_err() {
        return (0, String::new());
    }
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
