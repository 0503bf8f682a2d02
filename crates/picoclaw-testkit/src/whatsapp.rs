//! Fakes of WhatsApp's two transports on 127.0.0.1.
//!
//! [`FakeBridge`]: the original PicoClaw's bridge, a WebSocket server that pushes
//! `{"type":"message","from","chat","content","id","from_name"}` frames and records the
//! `{"type":"message","to","content"}` frames the channel sends; it also serves files over HTTP
//! for the `media` URLs of a message.
//!
//! [`FakeCloud`]: the Graph API of the WhatsApp Business Cloud API (`GET /{version}/{id}` for
//! the phone number and media objects, `POST /{version}/{phone_number_id}/messages`, media
//! downloads with the bearer token) plus the webhook bodies Meta posts and their
//! `X-Hub-Signature-256`. Shapes follow Meta's Cloud API reference.

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

/// Files served over HTTP, by name: (bytes, content type).
type Files = Mutex<HashMap<String, (Vec<u8>, String)>>;

#[derive(Debug, Default)]
struct BridgeInner {
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    sent: Mutex<Vec<Value>>,
    connections: AtomicU64,
    files: Files,
    next: AtomicU64,
}

/// A fake WhatsApp bridge; stops when dropped.
#[derive(Debug)]
pub struct FakeBridge {
    http: SocketAddr,
    ws: SocketAddr,
    inner: Arc<BridgeInner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

const CLOSE: &str = "\u{0}close";
/// Tells a connection to stop reading and writing, as a peer that vanished without closing.
const STALL: &str = "\u{0}stall";

async fn bridge_socket(inner: Arc<BridgeInner>, stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
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
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        inner.sent.lock().unwrap().push(v);
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn serve_file(State(files): State<Arc<BridgeInner>>, Path(name): Path<String>) -> Response {
    match files.files.lock().unwrap().get(&name) {
        Some((bytes, mime)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

impl FakeBridge {
    /// Starts a bridge with no client connected.
    pub fn start() -> Self {
        let inner = Arc::new(BridgeInner {
            next: AtomicU64::new(1),
            ..BridgeInner::default()
        });
        let (listener, http) = crate::serve::listen();
        let (ws_listener, ws) = crate::serve::listen();
        let app = Router::new()
            .route("/files/{name}", axum::routing::get(serve_file))
            .with_state(Arc::clone(&inner));
        let tx = crate::serve::spawn_with_ws(
            listener,
            app,
            ws_listener,
            Arc::clone(&inner),
            bridge_socket,
        );
        Self {
            http,
            ws,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.whatsapp.bridge_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws)
    }

    /// A message frame from `from` (a JID) in `chat`, with a fresh id.
    pub fn message(&self, from: &str, chat: &str, content: &str) -> Value {
        let n = self.inner.next.fetch_add(1, Ordering::SeqCst);
        json!({"type": "message", "from": from, "chat": chat, "content": content,
               "id": format!("3EB0{n:012X}"), "from_name": "Someone"})
    }

    /// Sends `frame` (any JSON) to the newest connected client, waiting up to 10 s for one.
    pub fn push(&self, frame: &Value) {
        let text = frame.to_string();
        crate::serve::send_to_newest(&self.inner.sockets, || text.clone(), "bridge client");
    }

    /// Sends raw text (malformed frames, say) to the newest client.
    pub fn push_raw(&self, text: &str) {
        crate::serve::send_to_newest(&self.inner.sockets, || text.to_owned(), "bridge client");
    }

    /// Serves `bytes` as `content_type` at the returned URL (for a message's `media`).
    pub fn add_file(&self, name: &str, bytes: &[u8], content_type: &str) -> String {
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(name.to_owned(), (bytes.to_vec(), content_type.to_owned()));
        format!("http://{}/files/{name}", self.http)
    }

    /// The frames the channel sent.
    pub fn sent(&self) -> Vec<Value> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// How many WebSocket connections the bridge accepted.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Closes every client connection (the bridge restarting).
    pub fn drop_connections(&self) {
        for s in self.inner.sockets.lock().unwrap().drain(..) {
            let _ = s.send(CLOSE.to_owned());
        }
    }

    /// Makes every client connection go silent without closing it (a bridge whose host
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

impl Drop for FakeBridge {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The fake business number's display form, as Meta puts it in webhook metadata.
pub const DISPLAY_PHONE_NUMBER: &str = "15550100";

#[derive(Debug, Default)]
struct CloudInner {
    access_token: String,
    phone_number_id: String,
    base: Mutex<String>,
    media: Files,
    messages: Mutex<Vec<Value>>,
    reads: Mutex<Vec<String>>,
    downloads: Mutex<Vec<Option<String>>>,
    fail_sends: Mutex<Vec<(u16, Value)>>,
    /// While set, media downloads wait before answering.
    stall_downloads: std::sync::atomic::AtomicBool,
    next: AtomicU64,
}

/// A fake Graph API for the WhatsApp Cloud API; stops when dropped.
#[derive(Debug)]
pub struct FakeCloud {
    addr: SocketAddr,
    app_secret: String,
    inner: Arc<CloudInner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

fn graph_error(status: u16, code: i64, message: &str, kind: &str) -> Response {
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    let body = json!({"error": {"message": message, "type": kind, "code": code,
                                "fbtrace_id": "AbCdEfGhIjK"}});
    (status, axum::Json(body)).into_response()
}

fn bad_token() -> Response {
    graph_error(
        401,
        190,
        "Invalid OAuth access token - Cannot parse access token",
        "OAuthException",
    )
}

async fn graph_get(
    State(inner): State<Arc<CloudInner>>,
    Path((_version, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    if bearer(&headers).as_deref() != Some(inner.access_token.as_str()) {
        return bad_token();
    }
    if id == inner.phone_number_id {
        return axum::Json(
            json!({"verified_name": "Pico Test", "code_verification_status":
            "VERIFIED", "display_phone_number": "+1 555-0100", "quality_rating": "GREEN",
            "id": id}),
        )
        .into_response();
    }
    let media = inner.media.lock().unwrap();
    let Some((bytes, mime)) = media.get(&id) else {
        return graph_error(
            400,
            100,
            "Unsupported get request. Object does not exist",
            "GraphMethodException",
        );
    };
    let base = inner.base.lock().unwrap().clone();
    axum::Json(
        json!({"messaging_product": "whatsapp", "url": format!("{base}/media-files/{id}"),
        "mime_type": mime, "sha256": "0", "file_size": bytes.len(), "id": id}),
    )
    .into_response()
}

async fn graph_post(
    State(inner): State<Arc<CloudInner>>,
    Path((_version, id, edge)): Path<(String, String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if bearer(&headers).as_deref() != Some(inner.access_token.as_str()) {
        return bad_token();
    }
    if id != inner.phone_number_id || edge != "messages" {
        return graph_error(400, 100, "Unsupported post request", "GraphMethodException");
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return graph_error(400, 100, "Invalid parameter", "OAuthException");
    };
    if body["messaging_product"] != "whatsapp" {
        return graph_error(400, 100, "messaging_product is required", "OAuthException");
    }
    if body["status"] == "read" {
        let id = body["message_id"].as_str().unwrap_or_default().to_owned();
        inner.reads.lock().unwrap().push(id);
        return axum::Json(json!({"success": true})).into_response();
    }
    if let Some((status, error)) = {
        let mut fails = inner.fail_sends.lock().unwrap();
        (!fails.is_empty()).then(|| fails.remove(0))
    } {
        return (
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(error),
        )
            .into_response();
    }
    let n = inner.next.fetch_add(1, Ordering::SeqCst);
    let to = body["to"].clone();
    inner.messages.lock().unwrap().push(body);
    axum::Json(json!({"messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": format!("wamid.OUT{n}")}]}))
    .into_response()
}

async fn media_file(
    State(inner): State<Arc<CloudInner>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = bearer(&headers);
    inner.downloads.lock().unwrap().push(token.clone());
    while inner.stall_downloads.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if token.as_deref() != Some(inner.access_token.as_str()) {
        return bad_token();
    }
    match inner.media.lock().unwrap().get(&id) {
        Some((bytes, mime)) => ([("content-type", mime.clone())], bytes.clone()).into_response(),
        None => (axum::http::StatusCode::NOT_FOUND, "no such media").into_response(),
    }
}

impl FakeCloud {
    /// Starts a Graph API that takes `access_token`, whose business number has the id
    /// `phone_number_id`, and whose webhooks are signed with `app_secret`.
    pub fn start(access_token: &str, app_secret: &str, phone_number_id: &str) -> Self {
        let inner = Arc::new(CloudInner {
            access_token: access_token.to_owned(),
            phone_number_id: phone_number_id.to_owned(),
            next: AtomicU64::new(1),
            ..CloudInner::default()
        });
        let (listener, addr) = crate::serve::listen();
        *inner.base.lock().unwrap() = format!("http://{addr}");
        let app = Router::new()
            .route("/media-files/{id}", axum::routing::get(media_file))
            .route("/{version}/{id}", axum::routing::get(graph_get))
            .route("/{version}/{id}/{edge}", axum::routing::post(graph_post))
            .with_state(Arc::clone(&inner));
        let tx = crate::serve::spawn(listener, app, std::future::pending::<()>);
        Self {
            addr,
            app_secret: app_secret.to_owned(),
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.whatsapp.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Uploads a media object users can send; returns its media id.
    pub fn add_media(&self, bytes: &[u8], mime: &str) -> String {
        let id = format!(
            "{}",
            900_000 + self.inner.next.fetch_add(1, Ordering::SeqCst)
        );
        self.inner
            .media
            .lock()
            .unwrap()
            .insert(id.clone(), (bytes.to_vec(), mime.to_owned()));
        id
    }

    /// A text message from `wa_id` (an entry of a webhook's `messages`).
    pub fn text(&self, wa_id: &str, body: &str) -> Value {
        json!({"from": wa_id, "id": self.wamid(), "timestamp": "1733390000", "type": "text",
               "text": {"body": body}})
    }

    /// An image, voice note (`audio` with `voice: true`) or document message from `wa_id`.
    pub fn media_message(&self, wa_id: &str, kind: &str, media_id: &str, mime: &str) -> Value {
        let mut part = json!({"id": media_id, "mime_type": mime, "sha256": "0"});
        if kind == "audio" {
            part["voice"] = json!(true);
        }
        let mut m = json!({"from": wa_id, "id": self.wamid(), "timestamp": "1733390000",
                           "type": kind});
        m[kind] = part;
        m
    }

    fn wamid(&self) -> String {
        let n = self.inner.next.fetch_add(1, Ordering::SeqCst);
        format!("wamid.HBgLMTU1NTAxMDAVAgASGBQz{n:08}")
    }

    /// The webhook body Meta posts for `messages` from a contact named `name` (`wa_id` of the
    /// first message).
    pub fn notification(&self, name: &str, messages: &[Value]) -> String {
        let wa_id = messages
            .first()
            .and_then(|m| m["from"].as_str())
            .unwrap_or_default();
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER,
                             "phone_number_id": self.inner.phone_number_id},
                "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                "messages": messages}}]}]})
        .to_string()
    }

    /// A status update webhook (delivered/read receipts of the bot's own messages).
    pub fn status_notification(&self, message_id: &str, recipient: &str) -> String {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                "metadata": {"display_phone_number": DISPLAY_PHONE_NUMBER,
                             "phone_number_id": self.inner.phone_number_id},
                "statuses": [{"id": message_id, "status": "delivered",
                              "timestamp": "1733390001", "recipient_id": recipient}]}}]}]})
        .to_string()
    }

    /// `X-Hub-Signature-256` of `body` under the app secret.
    pub fn signature(&self, body: &str) -> String {
        Self::sign(&self.app_secret, body)
    }

    /// `sha256=` + hex HMAC-SHA256 of `body` under `secret`, as Meta signs webhooks.
    pub fn sign(secret: &str, body: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, body.as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256={hex}")
    }

    /// The messages the channel sent (bodies of `POST .../messages` other than read receipts).
    pub fn messages(&self) -> Vec<Value> {
        self.inner.messages.lock().unwrap().clone()
    }

    /// The message ids the channel marked read.
    pub fn reads(&self) -> Vec<String> {
        self.inner.reads.lock().unwrap().clone()
    }

    /// The bearer tokens media downloads came with.
    pub fn downloads(&self) -> Vec<Option<String>> {
        self.inner.downloads.lock().unwrap().clone()
    }

    /// While `stalled`, media downloads hang (a slow CDN) until it is cleared.
    pub fn stall_downloads(&self, stalled: bool) {
        self.inner.stall_downloads.store(stalled, Ordering::SeqCst);
    }

    /// The next send is answered `status` with the Graph API error `code` and `message`.
    pub fn fail_next_send(&self, status: u16, code: i64, message: &str) {
        self.inner.fail_sends.lock().unwrap().push((
            status,
            json!({"error": {"message": message, "type": "OAuthException", "code": code}}),
        ));
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
