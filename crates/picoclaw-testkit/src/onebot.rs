//! A fake OneBot v11 implementation (NapCat, Lagrange...) on 127.0.0.1: a forward WebSocket
//! server that checks `Authorization: Bearer` at the handshake (401 otherwise), sends a
//! `lifecycle` meta event on connect, pushes the message events a test makes, and answers the
//! `send_private_msg` / `send_group_msg` actions with `{"status","retcode","data","echo"}`,
//! recording them. It also serves files over HTTP for `image` / `record` segment URLs. Shapes
//! follow the OneBot 11 specification (github.com/botuniverse/onebot-11).

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
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response as Ws};

const CLOSE: &str = "\u{0}close";
/// Tells a connection to stop reading and writing, as a peer that vanished without closing.
const STALL: &str = "\u{0}stall";

#[derive(Debug, Default)]
struct Inner {
    access_token: Option<String>,
    self_id: i64,
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    actions: Mutex<Vec<Value>>,
    failures: Mutex<Vec<(i64, String)>>,
    connections: AtomicU64,
    refused: AtomicU64,
    files: Mutex<HashMap<String, (Vec<u8>, String)>>,
    next: AtomicU64,
}

/// A fake OneBot v11 implementation; stops when dropped.
#[derive(Debug)]
pub struct FakeOnebot {
    http: SocketAddr,
    ws: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The response to one action, as an implementation answers it.
fn answer(inner: &Inner, request: &Value) -> Value {
    let echo = request.get("echo").cloned().unwrap_or(Value::Null);
    let failure = {
        let mut f = inner.failures.lock().unwrap();
        (!f.is_empty()).then(|| f.remove(0))
    };
    if let Some((retcode, wording)) = failure {
        return json!({"status": "failed", "retcode": retcode, "data": null,
                      "message": wording, "wording": wording, "echo": echo});
    }
    let data = match request["action"].as_str().unwrap_or_default() {
        "send_private_msg" | "send_group_msg" | "send_msg" => {
            json!({"message_id": 100_000 + inner.next.fetch_add(1, Ordering::SeqCst)})
        }
        "get_login_info" => json!({"user_id": inner.self_id, "nickname": "pico"}),
        _ => {
            return json!({"status": "failed", "retcode": 1404, "data": null,
                          "wording": "unknown action", "echo": echo});
        }
    };
    json!({"status": "ok", "retcode": 0, "data": data, "echo": echo})
}

// The handshake callback's error type is tungstenite's own.
#[allow(clippy::result_large_err)]
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let expected = inner.access_token.clone();
    let check = |req: &Request, resp: Ws| -> Result<Ws, ErrorResponse> {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match &expected {
            Some(token) if given != Some(token.as_str()) => {
                let mut refusal = ErrorResponse::new(Some("access token wrong".into()));
                *refusal.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::UNAUTHORIZED;
                Err(refusal)
            }
            _ => Ok(resp),
        }
    };
    let ws = match tokio_tungstenite::accept_hdr_async(stream, check).await {
        Ok(ws) => ws,
        Err(_) => {
            inner.refused.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let (mut tx, mut rx) = ws.split();
    let hello = json!({"time": 1733390000, "self_id": inner.self_id, "post_type": "meta_event",
                       "meta_event_type": "lifecycle", "sub_type": "connect"});
    if tx.send(Message::text(hello.to_string())).await.is_err() {
        return;
    }
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    inner.sockets.lock().unwrap().push(out_tx);
    // Counted once it can be pushed to and dropped.
    inner.connections.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(f) if f == CLOSE => {
                    let _ = tx.close().await;
                    return;
                }
                Some(f) if f == STALL => {
                    // Holds the socket open and never touches it again: no reads, no pongs.
                    let _held = (tx, rx);
                    std::future::pending::<()>().await;
                    return;
                }
                Some(f) => {
                    if tx.send(Message::text(f)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let Ok(request) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    inner.actions.lock().unwrap().push(request.clone());
                    let reply = answer(&inner, &request);
                    if tx.send(Message::text(reply.to_string())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn serve_file(State(inner): State<Arc<Inner>>, Path(name): Path<String>) -> Response {
    match inner.files.lock().unwrap().get(&name) {
        Some((bytes, mime)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

impl FakeOnebot {
    /// Starts an implementation logged in as QQ `self_id` that requires `access_token` (when
    /// given) at the handshake.
    pub fn start(access_token: Option<&str>, self_id: i64) -> Self {
        let inner = Arc::new(Inner {
            access_token: access_token.map(str::to_owned),
            self_id,
            next: AtomicU64::new(1),
            ..Inner::default()
        });
        let (listener, http) = crate::serve::listen();
        let (ws_listener, ws) = crate::serve::listen();
        let app = Router::new()
            .route("/files/{name}", axum::routing::get(serve_file))
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            http,
            ws,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.onebot.ws_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    fn next_id(&self) -> i64 {
        (self.inner.next.fetch_add(1, Ordering::SeqCst) as i64) + 5_000
    }

    /// A private `message` event from `user_id`; `message` is a segment array or a CQ string.
    pub fn private_message(&self, user_id: i64, message: Value) -> Value {
        let raw = raw_of(&message);
        json!({"time": 1733390000, "self_id": self.inner.self_id, "post_type": "message",
               "message_type": "private", "sub_type": "friend", "message_id": self.next_id(),
               "user_id": user_id, "message": message, "raw_message": raw, "font": 0,
               "sender": {"user_id": user_id, "nickname": "Ada", "sex": "unknown", "age": 0}})
    }

    /// A group `message` event from `user_id` in `group_id`.
    pub fn group_message(&self, group_id: i64, user_id: i64, message: Value) -> Value {
        let raw = raw_of(&message);
        json!({"time": 1733390000, "self_id": self.inner.self_id, "post_type": "message",
               "message_type": "group", "sub_type": "normal", "message_id": self.next_id(),
               "group_id": group_id, "user_id": user_id, "anonymous": null,
               "message": message, "raw_message": raw, "font": 0,
               "sender": {"user_id": user_id, "nickname": "Ada", "card": "Ada L.",
                          "role": "member"}})
    }

    /// A `heartbeat` meta event.
    pub fn heartbeat(&self) -> Value {
        json!({"time": 1733390000, "self_id": self.inner.self_id, "post_type": "meta_event",
               "meta_event_type": "heartbeat", "status": {"online": true, "good": true},
               "interval": 5000})
    }

    /// Sends `event` to the newest connected client, waiting up to 10 s for one.
    pub fn push(&self, event: &Value) {
        let text = event.to_string();
        crate::serve::send_to_newest(&self.inner.sockets, || text.clone(), "OneBot client");
    }

    /// Serves `bytes` as `content_type` at the returned URL (for `image` / `record` segments).
    pub fn add_file(&self, name: &str, bytes: &[u8], content_type: &str) -> String {
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), (bytes.to_vec(), content_type.to_owned()));
        format!("http://{}/files/{name}", self.http)
    }

    /// The actions the client sent (`{"action","params","echo"}`).
    pub fn actions(&self) -> Vec<Value> {
        self.inner.actions.lock().unwrap().clone()
    }

    /// The next action fails with `retcode` and `wording`.
    pub fn fail_next(&self, retcode: i64, wording: &str) {
        self.inner
            .failures
            .lock()
            .unwrap()
            .push((retcode, wording.to_owned()));
    }

    /// Accepted WebSocket connections.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Handshakes refused for a wrong or missing access token.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::SeqCst)
    }

    /// Closes every client connection (the implementation restarting).
    pub fn drop_connections(&self) {
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send(CLOSE.to_owned());
        }
    }

    /// Makes every client connection go silent without closing it (a implementation whose host
    /// vanished): nothing is read or written on it any more, pings go unanswered.
    pub fn stall_connections(&self) {
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send(STALL.to_owned());
        }
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }
}

/// The `raw_message` of a message: the CQ string itself, or the array's text rendered as CQ.
fn raw_of(message: &Value) -> String {
    match message {
        Value::String(s) => s.clone(),
        Value::Array(segments) => segments
            .iter()
            .map(|seg| match seg["type"].as_str().unwrap_or_default() {
                "text" => seg["data"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .replace('&', "&amp;")
                    .replace('[', "&#91;")
                    .replace(']', "&#93;"),
                kind => {
                    let params: Vec<String> = seg["data"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                                    format!("{k}={}", v.replace('&', "&amp;").replace(',', "&#44;"))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "[CQ:{kind}{}{}]",
                        if params.is_empty() { "" } else { "," },
                        params.join(",")
                    )
                }
            })
            .collect(),
        _ => String::new(),
    }
}

impl Drop for FakeOnebot {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
