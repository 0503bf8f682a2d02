//! A fake DingTalk on 127.0.0.1: Stream mode (`/v1.0/gateway/connections/open` checking the
//! client id and secret and handing out a ticket, then a WebSocket taking only issued tickets
//! that sends the frames a test pushes and records the acknowledgements), the app access token
//! endpoint, the robot APIs (`oToMessages/batchSend`, `groupMessages/send`,
//! `messageFiles/download`) behind `x-acs-dingtalk-access-token`, file downloads, and session
//! webhooks that record what the bot answered. Shapes follow DingTalk's Stream SDKs and Open API
//! documentation.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The bot's user id in conversations (`chatbotUserId`).
pub const BOT_USER_ID: &str = "$:LWCP_v1:$bot";

/// The frame that closes a connection from the fake's side.
const CLOSE: &str = "\u{0}close";

#[derive(Debug, Default)]
struct Inner {
    client_id: String,
    client_secret: String,
    base: Mutex<String>,
    ws_addr: Mutex<Option<SocketAddr>>,
    opens: Mutex<Vec<Value>>,
    tickets: Mutex<HashSet<String>>,
    tokens: Mutex<Vec<String>>,
    token_lifetime: AtomicU64,
    api_calls: Mutex<Vec<(String, Value, Option<String>)>>,
    session_posts: Mutex<Vec<(String, Value)>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    acks: Mutex<Vec<Value>>,
    sockets: Mutex<Vec<mpsc::UnboundedSender<String>>>,
    next: AtomicU64,
    open_failures: Mutex<VecDeque<(u16, Value)>>,
    token_failures: Mutex<VecDeque<(u16, Value)>>,
    token_delay_ms: AtomicU64,
    token_requests: AtomicU64,
}

/// The next queued failure, as a response.
fn queued_failure(queue: &Mutex<VecDeque<(u16, Value)>>) -> Option<Response> {
    let (status, body) = queue.lock().unwrap().pop_front()?;
    Some(
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(body),
        )
            .into_response(),
    )
}

/// A fake DingTalk; stops when dropped.
#[derive(Debug)]
pub struct FakeDingtalk {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

async fn open(State(inner): State<Arc<Inner>>, axum::Json(body): axum::Json<Value>) -> Response {
    if let Some(failure) = queued_failure(&inner.open_failures) {
        return failure;
    }
    if body["clientId"] != inner.client_id.as_str()
        || body["clientSecret"] != inner.client_secret.as_str()
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthentication",
            "clientId or clientSecret is invalid",
        );
    }
    inner.opens.lock().unwrap().push(body);
    let n = inner.next.fetch_add(1, Ordering::SeqCst);
    // A ticket with characters that need encoding in a query.
    let ticket = format!("tk+{n}/=");
    inner.tickets.lock().unwrap().insert(ticket.clone());
    let addr = inner.ws_addr.lock().unwrap().expect("socket server");
    axum::Json(json!({"endpoint": format!("ws://{addr}/connect"), "ticket": ticket}))
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
    if let Some(failure) = queued_failure(&inner.token_failures) {
        return failure;
    }
    if body["appKey"] != inner.client_id.as_str()
        || body["appSecret"] != inner.client_secret.as_str()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalidClientIdOrSecret",
            "invalid appKey or appSecret",
        );
    }
    let token = format!("at-{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.tokens.lock().unwrap().push(token.clone());
    let lifetime = inner.token_lifetime.load(Ordering::SeqCst);
    axum::Json(json!({"accessToken": token, "expireIn": lifetime})).into_response()
}

/// The robot APIs: the token must be the newest one issued.
async fn robot(
    State(inner): State<Arc<Inner>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let token = headers
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    inner
        .api_calls
        .lock()
        .unwrap()
        .push((method.clone(), body.clone(), token.clone()));
    let newest = inner.tokens.lock().unwrap().last().cloned();
    if token.is_none() || token != newest {
        return error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthentication",
            "access token is invalid",
        );
    }
    match method.as_str() {
        "oToMessages/batchSend" => axum::Json(json!({"processQueryKey": "pqk",
            "invalidStaffIdList": [], "flowControlledStaffIdList": []}))
        .into_response(),
        "groupMessages/send" => axum::Json(json!({"processQueryKey": "pqk"})).into_response(),
        "messageFiles/download" => {
            let code = body["downloadCode"].as_str().unwrap_or_default();
            if !inner.files.lock().unwrap().contains_key(code) {
                return error(StatusCode::BAD_REQUEST, "invalidParameter", "no such file");
            }
            let base = inner.base.lock().unwrap().clone();
            axum::Json(json!({"downloadUrl": format!("{base}/files/{code}")})).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "notFound", "no such API"),
    }
}

async fn file(State(inner): State<Arc<Inner>>, Path(code): Path<String>) -> Response {
    match inner.files.lock().unwrap().get(&code) {
        Some(bytes) => ([("content-type", "image/png")], bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn session_webhook(
    State(inner): State<Arc<Inner>>,
    Path(session): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    inner.session_posts.lock().unwrap().push((session, body));
    axum::Json(json!({"errcode": 0, "errmsg": "ok"})).into_response()
}

/// One Stream connection: refused without an issued ticket; then the frames pushed to it, and
/// the acknowledgements recorded.
async fn socket(inner: Arc<Inner>, stream: tokio::net::TcpStream) {
    let tickets = Arc::clone(&inner);
    // The signature is tungstenite's handshake callback's.
    #[allow(clippy::result_large_err)]
    let check = move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                      response| {
        let query = request.uri().query().unwrap_or_default();
        let ticket = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "ticket")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if tickets.tickets.lock().unwrap().remove(&ticket) {
            Ok(response)
        } else {
            let mut refused = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
                Some("bad ticket".to_owned()),
            );
            *refused.status_mut() = StatusCode::UNAUTHORIZED;
            Err(refused)
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    inner.sockets.lock().unwrap().push(out_tx);
    loop {
        tokio::select! {
            frame = out_rx.recv() => match frame {
                Some(frame) if frame == CLOSE => {
                    let _ = tx.close().await;
                    return;
                }
                Some(frame) => {
                    if tx.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&text) {
                        inner.acks.lock().unwrap().push(v);
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

impl FakeDingtalk {
    /// Starts a fake DingTalk whose app has `client_id` and `client_secret`; access tokens
    /// last two hours until [`FakeDingtalk::set_token_lifetime`].
    pub fn start(client_id: &str, client_secret: &str) -> Self {
        let inner = Arc::new(Inner {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            token_lifetime: AtomicU64::new(7200),
            next: AtomicU64::new(100),
            ..Inner::default()
        });
        let (listener, addr) = crate::serve::listen();
        let (ws_listener, ws_addr) = crate::serve::listen();
        *inner.ws_addr.lock().unwrap() = Some(ws_addr);
        *inner.base.lock().unwrap() = format!("http://{addr}");
        let app = Router::new()
            .route("/v1.0/gateway/connections/open", axum::routing::post(open))
            .route(
                "/v1.0/oauth2/accessToken",
                axum::routing::post(access_token),
            )
            .route("/v1.0/robot/{*method}", axum::routing::post(robot))
            .route("/files/{code}", axum::routing::get(file))
            .route("/session/{id}", axum::routing::post(session_webhook))
            .with_state(Arc::clone(&inner));
        let tx =
            crate::serve::spawn_with_ws(listener, app, ws_listener, Arc::clone(&inner), socket);
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.dingtalk.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Access tokens issued from now on last `secs` seconds.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.inner.token_lifetime.store(secs, Ordering::SeqCst);
    }

    /// The next `connections/open` call is answered `status` with the JSON `body` (queued:
    /// call it again for the call after).
    pub fn fail_next_open(&self, status: u16, body: Value) {
        self.inner
            .open_failures
            .lock()
            .unwrap()
            .push_back((status, body));
    }

    /// The next access token request is answered `status` with the JSON `body` (queued).
    pub fn fail_next_token(&self, status: u16, body: Value) {
        self.inner
            .token_failures
            .lock()
            .unwrap()
            .push_back((status, body));
    }

    /// The token endpoint answers after `ms` milliseconds from now on.
    pub fn set_token_delay_ms(&self, ms: u64) {
        self.inner.token_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Access token requests received, refused ones included.
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::SeqCst)
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst)
    }

    /// A 1:1 text message from staff member `staff_id` (robot message callback data), with a
    /// session webhook valid for `session_secs` seconds (negative: already expired).
    pub fn direct_message(&self, staff_id: &str, text: &str, session_secs: i64) -> Value {
        let n = self.next();
        json!({
            "conversationId": format!("cid-dm-{staff_id}"),
            "conversationType": "1",
            "chatbotUserId": BOT_USER_ID,
            "msgId": format!("msg{n}"),
            "senderNick": format!("Nick {staff_id}"),
            "isAdmin": false,
            "senderStaffId": staff_id,
            "senderId": format!("$:LWCP_v1:${staff_id}"),
            "sessionWebhookExpiredTime": expiry_ms(session_secs),
            "createAt": 1_700_000_000_000u64,
            "senderCorpId": "corp1",
            "robotCode": "",
            "msgtype": "text",
            "text": {"content": text},
            "sessionWebhook": format!("{}/session/s{n}", self.api_base()),
        })
    }

    /// A group text message in `conversation` from `staff_id`; `at_bot` says whether it
    /// @-mentions the bot (`isInAtList`).
    pub fn group_message(
        &self,
        staff_id: &str,
        conversation: &str,
        text: &str,
        at_bot: bool,
    ) -> Value {
        let mut m = self.direct_message(staff_id, text, 5400);
        m["conversationType"] = json!("2");
        m["conversationId"] = json!(conversation);
        m["conversationTitle"] = json!("Team");
        m["isInAtList"] = json!(at_bot);
        m
    }

    /// A 1:1 picture (`picture`) or voice note (`audio`, with DingTalk's transcription) whose
    /// file holds `bytes`.
    pub fn media_message(&self, staff_id: &str, msgtype: &str, bytes: &[u8]) -> Value {
        let code = format!("dl{}", self.next());
        self.inner
            .files
            .lock()
            .unwrap()
            .insert(code.clone(), bytes.to_vec());
        let mut m = self.direct_message(staff_id, "", 5400);
        m.as_object_mut().unwrap().remove("text");
        m["msgtype"] = json!(msgtype);
        m["content"] = if msgtype == "audio" {
            json!({"downloadCode": code, "duration": 3000, "recognition": "voice words"})
        } else {
            json!({"downloadCode": code})
        };
        m
    }

    /// Pushes a robot message as a `CALLBACK` frame on the newest connection, waiting up to
    /// 10 s for one. Returns the frame's message id.
    pub fn push_callback(&self, message: &Value) -> String {
        self.push_frame(
            "CALLBACK",
            "/v1.0/im/bot/messages/get",
            &message.to_string(),
        )
    }

    /// Pushes a SYSTEM `ping` with an opaque value; returns the frame's message id.
    pub fn ping(&self) -> String {
        self.push_frame("SYSTEM", "ping", r#"{"opaque":"op-123"}"#)
    }

    /// Pushes an `EVENT` frame; returns its message id.
    pub fn push_event(&self, topic: &str, data: &Value) -> String {
        self.push_frame("EVENT", topic, &data.to_string())
    }

    /// Pushes a SYSTEM `disconnect` (DingTalk asks the client to open a new connection).
    pub fn ask_to_reconnect(&self) {
        self.push_frame("SYSTEM", "disconnect", "{}");
    }

    /// Closes every open Stream connection (a network drop), waiting for one if none is open
    /// yet.
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

    /// Sends any frame of `kind` on `topic` with `data` (a JSON string); returns its id.
    pub fn push_frame(&self, kind: &str, topic: &str, data: &str) -> String {
        let id = format!("frame-{}", self.next());
        let frame = json!({"specVersion": "1.0", "type": kind,
            "headers": {"appId": "app1", "connectionId": "conn1",
                        "contentType": "application/json", "messageId": id,
                        "time": "1700000000000", "topic": topic},
            "data": data})
        .to_string();
        crate::serve::send_to_newest(
            &self.inner.sockets,
            || frame.clone(),
            "Stream connection to the fake DingTalk",
        );
        id
    }

    /// The acknowledgement sent for frame `id`, if any.
    pub fn ack_of(&self, id: &str) -> Option<Value> {
        self.acks()
            .into_iter()
            .find(|a| a["headers"]["messageId"] == id)
    }

    /// Everything the client sent on Stream connections.
    pub fn acks(&self) -> Vec<Value> {
        self.inner.acks.lock().unwrap().clone()
    }

    /// The bodies of successful `connections/open` calls.
    pub fn opens(&self) -> Vec<Value> {
        self.inner.opens.lock().unwrap().clone()
    }

    /// Access tokens issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.inner.tokens.lock().unwrap().clone()
    }

    /// Robot API calls: (method after `/v1.0/robot/`, body, token header).
    pub fn api_calls(&self) -> Vec<(String, Value, Option<String>)> {
        self.inner.api_calls.lock().unwrap().clone()
    }

    /// Messages posted to session webhooks: (session id, body).
    pub fn session_posts(&self) -> Vec<(String, Value)> {
        self.inner.session_posts.lock().unwrap().clone()
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }
}

/// Milliseconds since the epoch `secs` from now.
fn expiry_ms(secs: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    now + secs * 1000
}

impl Drop for FakeDingtalk {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
