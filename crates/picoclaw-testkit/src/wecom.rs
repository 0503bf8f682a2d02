//! A fake WeCom on 127.0.0.1: `gettoken` (errcodes 40013/40001 for a wrong corp id or secret,
//! tokens that can be expired), `message/send` (errcode 42001 for a stale token, 45002 past
//! 2048 bytes), `media/get`, the group bot's `webhook/send` (refused past 4096 bytes), and the
//! bot's encrypted image URLs; plus callbacks encrypted and signed as WeCom does (AES-256-CBC
//! with the EncodingAESKey, PKCS#7 to 32 bytes, `msg_signature` = hex SHA-1 of the sorted
//! token, timestamp, nonce and ciphertext): the app's XML, the group bot's JSON, and the
//! console's URL check.

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use picoclaw_api::WebhookRequest;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The callback token the fake signs with.
pub const TOKEN: &str = "QDG6eK";
/// The EncodingAESKey (WeCom's published sample: its last character carries padding bits).
pub const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
/// The group bot's id (`aibotid`).
pub const BOT_ID: &str = "aib-pico";

#[derive(Debug, Default)]
struct Inner {
    corp_id: String,
    corp_secret: String,
    tokens: Mutex<HashSet<String>>,
    token_calls: AtomicU64,
    sends: Mutex<Vec<Value>>,
    bot_posts: Mutex<Vec<Value>>,
    media: Mutex<HashMap<String, (String, Vec<u8>)>>,
    images: Mutex<HashMap<String, Vec<u8>>>,
    downloads: Mutex<Vec<String>>,
    next: AtomicU64,
    /// Every API call has its connection closed without an answer.
    reset: AtomicBool,
    /// `media/get` holds its answer back until this is cleared.
    stall: AtomicBool,
}

/// Ends the connection without an answer (a reset, from the client's side), when asked to. The
/// handler's task unwinds without running the panic hook, so nothing is printed.
fn maybe_reset(inner: &Inner) {
    if inner.reset.load(Ordering::SeqCst) {
        std::panic::resume_unwind(Box::new("the fake WeCom resets the connection"));
    }
}

/// A fake WeCom; stops when dropped.
#[derive(Debug)]
pub struct FakeWecom {
    addr: SocketAddr,
    inner: Arc<Inner>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn errcode(code: i64, msg: &str) -> Response {
    axum::Json(json!({"errcode": code, "errmsg": msg})).into_response()
}

async fn gettoken(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    inner.token_calls.fetch_add(1, Ordering::SeqCst);
    maybe_reset(&inner);
    if q.get("corpid") != Some(&inner.corp_id) {
        return errcode(40013, "invalid corpid");
    }
    if q.get("corpsecret") != Some(&inner.corp_secret) {
        return errcode(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    }
    let token = format!("tok-{}", inner.next.fetch_add(1, Ordering::SeqCst));
    inner.tokens.lock().unwrap().insert(token.clone());
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}))
        .into_response()
}

fn token_ok(inner: &Inner, q: &HashMap<String, String>) -> bool {
    q.get("access_token")
        .is_some_and(|t| inner.tokens.lock().unwrap().contains(t))
}

/// Whether the message's content is missing or longer than `max` bytes.
fn content_too_long(body: &Value, max: usize) -> bool {
    body["markdown"]["content"]
        .as_str()
        .or(body["text"]["content"].as_str())
        .is_none_or(|c| c.len() > max)
}

async fn message_send(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    maybe_reset(&inner);
    if !token_ok(&inner, &q) {
        return errcode(42001, "access_token expired");
    }
    if content_too_long(&body, 2048) {
        return errcode(45002, "content size out of limit");
    }
    inner.sends.lock().unwrap().push(body);
    axum::Json(json!({"errcode": 0, "errmsg": "ok", "msgid": "m"})).into_response()
}

async fn media_get(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    maybe_reset(&inner);
    if !token_ok(&inner, &q) {
        return errcode(42001, "access_token expired");
    }
    let id = q.get("media_id").cloned().unwrap_or_default();
    inner.downloads.lock().unwrap().push(id.clone());
    while inner.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    match inner.media.lock().unwrap().get(&id) {
        Some((mime, bytes)) => (
            [(axum::http::header::CONTENT_TYPE, mime.clone())],
            bytes.clone(),
        )
            .into_response(),
        None => errcode(40007, "invalid media_id"),
    }
}

async fn webhook_send(
    State(inner): State<Arc<Inner>>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    maybe_reset(&inner);
    if content_too_long(&body, 4096) {
        return errcode(40058, "markdown.content exceed max length 4096");
    }
    inner.bot_posts.lock().unwrap().push(body);
    errcode(0, "ok")
}

async fn image(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    inner.downloads.lock().unwrap().push(id.clone());
    match inner.images.lock().unwrap().get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// The AES key of [`AES_KEY`] (base64 of 43 characters plus `=`, trailing bits ignored).
fn key() -> [u8; 32] {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    engine
        .decode(format!("{AES_KEY}="))
        .unwrap()
        .try_into()
        .unwrap()
}

/// `bytes` padded with PKCS#7 to 32-byte blocks and encrypted as WeCom does.
fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    let pad = 32 - bytes.len() % 32;
    bytes.extend(std::iter::repeat_n(pad as u8, pad));
    let key = key();
    let iv: [u8; 16] = key[..16].try_into().unwrap();
    cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec_mut::<NoPadding>(&bytes)
}

impl FakeWecom {
    /// Starts a fake WeCom whose app has `corp_id` and `corp_secret`.
    pub fn start(corp_id: &str, corp_secret: &str) -> Self {
        let inner = Arc::new(Inner {
            corp_id: corp_id.to_owned(),
            corp_secret: corp_secret.to_owned(),
            ..Inner::default()
        });
        let app = Router::new()
            .route("/cgi-bin/gettoken", axum::routing::get(gettoken))
            .route("/cgi-bin/message/send", axum::routing::post(message_send))
            .route("/cgi-bin/media/get", axum::routing::get(media_get))
            .route("/cgi-bin/webhook/send", axum::routing::post(webhook_send))
            .route("/image/{id}", axum::routing::get(image))
            .with_state(Arc::clone(&inner));
        let (listener, addr) = crate::serve::listen();
        let shutdown = crate::serve::spawn(listener, app, std::future::pending);
        Self {
            addr,
            inner,
            _shutdown: shutdown,
        }
    }

    /// What goes in `api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The group bot's `webhook_url`.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/cgi-bin/webhook/send?key=fake-key", self.addr)
    }

    fn next(&self) -> u64 {
        self.inner.next.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// `message` encrypted for `receive_id` (base64).
    pub fn encrypt(message: &str, receive_id: &str) -> String {
        let mut plain = b"fedcba9876543210".to_vec();
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(receive_id.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(seal(plain))
    }

    /// `msg_signature` over `data` with `token`.
    pub fn sign(token: &str, timestamp: &str, nonce: &str, data: &str) -> String {
        let mut parts = [token, timestamp, nonce, data];
        parts.sort_unstable();
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            parts.concat().as_bytes(),
        );
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The query string of a callback whose encrypted text is `data`, signed with `token`, at
    /// the current time.
    pub fn query(token: &str, data: &str, extra: &[(&str, &str)]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Self::query_at(token, data, &now.to_string(), extra)
    }

    /// [`FakeWecom::query`] with the signed `timestamp` given (Unix seconds, as WeCom sends it).
    pub fn query_at(token: &str, data: &str, ts: &str, extra: &[(&str, &str)]) -> String {
        let nonce = "nonce42";
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("msg_signature", &Self::sign(token, ts, nonce, data))
            .append_pair("timestamp", ts)
            .append_pair("nonce", nonce);
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        q.finish()
    }

    /// The console's URL check: GET with `echostr` = `echo` encrypted for `receive_id`.
    pub fn url_check(&self, echo: &str, receive_id: &str) -> WebhookRequest {
        let encrypted = Self::encrypt(echo, receive_id);
        WebhookRequest::new("GET", Vec::new()).with_query(Self::query(
            TOKEN,
            &encrypted,
            &[("echostr", &encrypted)],
        ))
    }

    /// An app callback carrying the XML message `xml`, encrypted for the corp and signed.
    pub fn app_callback(&self, xml: &str) -> WebhookRequest {
        let encrypted = Self::encrypt(xml, &self.inner.corp_id);
        Self::signed_xml(TOKEN, &encrypted, &self.inner.corp_id)
    }

    /// [`FakeWecom::app_callback`] signed with the `timestamp` given (Unix seconds).
    pub fn app_callback_at(&self, xml: &str, timestamp: &str) -> WebhookRequest {
        let encrypted = Self::encrypt(xml, &self.inner.corp_id);
        let mut request = Self::signed_xml(TOKEN, &encrypted, &self.inner.corp_id);
        request.query = Self::query_at(TOKEN, &encrypted, timestamp, &[]);
        request
    }

    /// A POST with the XML envelope of `encrypted`, signed with `token`.
    pub fn signed_xml(token: &str, encrypted: &str, to: &str) -> WebhookRequest {
        let body = format!(
            "<xml><ToUserName><![CDATA[{to}]]></ToUserName><AgentID><![CDATA[1000002]]></AgentID>\
             <Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        );
        WebhookRequest::new("POST", body).with_query(Self::query(token, encrypted, &[]))
    }

    /// An app text message from `user` (its XML), with a fresh `MsgId`.
    pub fn app_text(&self, user: &str, text: &str) -> String {
        let n = self.next();
        format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[{text}]]></Content><MsgId>{}</MsgId><AgentID>1000002</AgentID></xml>",
            self.inner.corp_id,
            1_700_000_000 + n,
            7_000_000_000u64 + n
        )
    }

    /// An app image (`kind` "image") or voice (`kind` "voice") message from `user`, its file
    /// `bytes` served by `media/get` as `mime`.
    pub fn app_media(&self, user: &str, kind: &str, mime: &str, bytes: &[u8]) -> String {
        let n = self.next();
        let media_id = format!("MEDIA{n}");
        self.inner
            .media
            .lock()
            .unwrap()
            .insert(media_id.clone(), (mime.to_owned(), bytes.to_vec()));
        let extra = if kind == "image" {
            format!("<PicUrl><![CDATA[http://{}/pic/{n}]]></PicUrl>", self.addr)
        } else {
            "<Format><![CDATA[amr]]></Format>".to_owned()
        };
        format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType><![CDATA[{kind}]]></MsgType>{extra}\
             <MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{}</MsgId><AgentID>1000002</AgentID></xml>",
            self.inner.corp_id,
            8_000_000_000u64 + n
        )
    }

    /// A group bot message (JSON) from `user`: a DM (`group` None) or in group `group`;
    /// `text` as typed (in groups it starts with the bot's @mention).
    pub fn bot_text(&self, user: &str, group: Option<&str>, text: &str) -> Value {
        let n = self.next();
        let mut v = json!({"msgid": format!("bm{n}"), "aibotid": BOT_ID,
            "chattype": if group.is_some() { "group" } else { "single" },
            "from": {"userid": user}, "response_url": format!("http://{}/respond/{n}", self.addr),
            "msgtype": "text", "text": {"content": text}});
        if let Some(g) = group {
            v["chatid"] = json!(g);
        }
        v
    }

    /// A group bot image message from `user`: its URL serves `bytes` encrypted with the key.
    pub fn bot_image(&self, user: &str, bytes: &[u8]) -> Value {
        let n = self.next();
        let id = format!("img{n}");
        self.inner
            .images
            .lock()
            .unwrap()
            .insert(id.clone(), seal(bytes.to_vec()));
        json!({"msgid": format!("bm{n}"), "aibotid": BOT_ID, "chattype": "single",
               "from": {"userid": user}, "msgtype": "image",
               "image": {"url": format!("http://{}/image/{id}", self.addr)}})
    }

    /// A group bot callback carrying `message`: the JSON envelope, encrypted (receive id
    /// empty, as for bots) and signed.
    pub fn bot_callback(&self, message: &Value) -> WebhookRequest {
        let encrypted = Self::encrypt(&message.to_string(), "");
        let body = json!({"encrypt": encrypted}).to_string();
        WebhookRequest::new("POST", body).with_query(Self::query(TOKEN, &encrypted, &[]))
    }

    /// Sends `request` to a listener at `addr` + `path` over HTTP; the status and body.
    pub fn deliver_http(addr: SocketAddr, path: &str, request: &WebhookRequest) -> (u16, String) {
        crate::line::request_raw(
            addr,
            &request.method,
            &format!("{path}?{}", request.query),
            &[],
            &request.body,
        )
    }

    /// Waits up to 30 s for `done` to hold.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        crate::serve::wait_until(what, || done(self));
    }

    /// `message/send` bodies so far.
    pub fn sends(&self) -> Vec<Value> {
        self.inner.sends.lock().unwrap().clone()
    }

    /// Group bot `webhook/send` bodies so far.
    pub fn bot_posts(&self) -> Vec<Value> {
        self.inner.bot_posts.lock().unwrap().clone()
    }

    /// How many times `gettoken` was called.
    pub fn token_calls(&self) -> u64 {
        self.inner.token_calls.load(Ordering::SeqCst)
    }

    /// Media ids and image ids downloaded.
    pub fn downloads(&self) -> Vec<String> {
        self.inner.downloads.lock().unwrap().clone()
    }

    /// While `on`, every API call (`gettoken`, `message/send`, `media/get`, the bot's
    /// `webhook/send`) has its connection closed without an answer.
    pub fn reset_connections(&self, on: bool) {
        self.inner.reset.store(on, Ordering::SeqCst);
    }

    /// While `on`, `media/get` holds its answer back (a slow download).
    pub fn stall_downloads(&self, on: bool) {
        self.inner.stall.store(on, Ordering::SeqCst);
    }

    /// Makes every token issued so far stale (WeCom answers 42001 until a new one is taken).
    pub fn expire_tokens(&self) {
        self.inner.tokens.lock().unwrap().clear();
    }
}
