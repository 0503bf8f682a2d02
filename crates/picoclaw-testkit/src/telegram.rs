//! `FakeBotApi`: a Telegram Bot API server on 127.0.0.1 speaking the documented shapes
//! (`getMe`, long-polling `getUpdates` with offsets, `sendMessage`, `sendChatAction`, and the
//! multipart uploads `sendPhoto`, `sendDocument`, `sendAudio`, `sendVideo`; `setWebhook` /
//! `deleteWebhook`, after which updates are POSTed to the webhook instead), for driving a real
//! Telegram client (teloxide) through its API base URL.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The bot's own identity in the fake.
pub const BOT_ID: i64 = 777_000;
pub const BOT_USERNAME: &str = "pico_test_bot";

#[derive(Debug, Default)]
struct Inner {
    token: String,
    updates: Mutex<Vec<Value>>,
    next_update: Mutex<i64>,
    next_message: Mutex<i64>,
    sent: Mutex<Vec<(i64, String)>>,
    /// When each message of `sent` arrived, in the same order.
    sent_at: Mutex<Vec<std::time::Instant>>,
    files: Mutex<Vec<SentFile>>,
    actions: Mutex<Vec<(i64, String)>>,
    /// getUpdates offsets as the client sent them (what it confirmed).
    offsets: Mutex<Vec<i64>>,
    /// The longest a getUpdates with nothing to return is held (its `timeout`, at most this).
    longest_poll: Mutex<Duration>,
    /// The next N sendMessage calls get a 429 with this retry_after.
    rate_limit: Mutex<Option<(u32, u64)>>,
    /// The next N sendMessage calls get a 502 (the Bot API down).
    outage: Mutex<u32>,
    arrived: Notify,
    /// `setWebhook`: where updates are POSTed instead of waiting for `getUpdates`.
    webhook: Mutex<Option<(String, Option<String>)>>,
    webhook_failures: Mutex<Vec<(u16, String)>>,
    /// `parse_mode` of each sent message, in order (None: plain text).
    parse_modes: Mutex<Vec<Option<String>>>,
    /// `reply_markup` of each sent message, in order (Null: none).
    markups: Mutex<Vec<Value>>,
    /// Callback queries answered (the button spinner stopped).
    answered: Mutex<Vec<String>>,
    /// Reactions the bot set: (chat, message id, emoji).
    reactions: Mutex<Vec<(i64, i64, String)>>,
    /// The next N HTML messages are refused as Telegram refuses bad entities.
    reject_html: Mutex<u32>,
    /// Files users "sent": file_id → bytes (served by getFile and the file download route).
    files_in: Mutex<std::collections::HashMap<String, Vec<u8>>>,
}

/// A file a client uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFile {
    pub chat_id: i64,
    /// The Bot API method, lower-cased (`sendphoto`, `senddocument`...).
    pub method: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// The fields of a `multipart/form-data` body: (name, file name, bytes).
pub(crate) fn multipart_fields(
    content_type: &str,
    body: &[u8],
) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
    else {
        return Vec::new();
    };
    let delimiter = format!("--{}", boundary.trim_matches('"'));
    let delimiter = delimiter.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut fields = Vec::new();
    let mut at = match find(body, delimiter, 0) {
        Some(i) => i + delimiter.len(),
        None => return fields,
    };
    while let Some(next) = find(body, delimiter, at) {
        let part = &body[at..next];
        let part = part.strip_prefix(b"\r\n").unwrap_or(part);
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        if let Some(split) = find(part, b"\r\n\r\n", 0) {
            let headers = String::from_utf8_lossy(&part[..split]).to_string();
            // The Content-Disposition line only (a Content-Type line may follow it).
            let disposition = headers
                .split("\r\n")
                .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
                .unwrap_or_default();
            let value = part[split + 4..].to_vec();
            let attr = |key: &str| {
                disposition.split(';').find_map(|p| {
                    p.trim()
                        .strip_prefix(&format!("{key}="))
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
            };
            if let Some(name) = attr("name") {
                fields.push((name, attr("filename"), value));
            }
        }
        at = next + delimiter.len();
    }
    fields
}

/// A fake Bot API; stops when dropped.
#[derive(Debug)]
pub struct FakeBotApi {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

fn ok(result: Value) -> Response {
    axum::Json(json!({"ok": true, "result": result})).into_response()
}

fn user(id: i64, username: &str, is_bot: bool) -> Value {
    json!({"id": id, "is_bot": is_bot, "first_name": username, "username": username})
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Path((bot, method)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if bot != format!("bot{}", inner.token) {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    // Methods that may carry a file (setWebhook's certificate...) come as multipart forms.
    let args: Value = if content_type.starts_with("multipart/form-data") {
        let mut map = serde_json::Map::new();
        for (name, file, value) in multipart_fields(&content_type, &body) {
            if file.is_none() {
                let text = String::from_utf8_lossy(&value).to_string();
                let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                map.insert(name, value);
            }
        }
        Value::Object(map)
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    // Bot API method names are case-insensitive (teloxide sends `GetMe`).
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(json!({
            "id": BOT_ID, "is_bot": true, "first_name": "Pico", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })),
        "setmessagereaction" => {
            let chat = args["chat_id"].as_i64().unwrap_or_default();
            let message = args["message_id"].as_i64().unwrap_or_default();
            let emoji = args["reaction"][0]["emoji"].as_str().unwrap_or_default().to_owned();
            inner.reactions.lock().unwrap().push((chat, message, emoji));
            ok(json!(true))
        }
        "answercallbackquery" => {
            let id = args["callback_query_id"].as_str().unwrap_or_default().to_owned();
            inner.answered.lock().unwrap().push(id);
            ok(json!(true))
        }
        "getfile" => {
            let id = args["file_id"].as_str().unwrap_or_default().to_owned();
            let size = inner.files_in.lock().unwrap().get(&id).map(Vec::len);
            match size {
                Some(size) => ok(json!({"file_id": id, "file_unique_id": format!("u-{id}"),
                    "file_size": size, "file_path": format!("voice/{id}.oga")})),
                None => (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"ok": false, "error_code": 400,
                        "description": "Bad Request: invalid file_id"})),
                )
                    .into_response(),
            }
        }
        "setwebhook" => {
            let url = args["url"].as_str().unwrap_or_default().to_owned();
            if url.is_empty() {
                *inner.webhook.lock().unwrap() = None;
            } else {
                let secret = args["secret_token"].as_str().map(str::to_owned);
                *inner.webhook.lock().unwrap() = Some((url, secret));
                inner.arrived.notify_waiters();
            }
            ok(json!(true))
        }
        "deletewebhook" => {
            *inner.webhook.lock().unwrap() = None;
            ok(json!(true))
        }
        "getupdates" if inner.webhook.lock().unwrap().is_some() => (
            axum::http::StatusCode::CONFLICT,
            axum::Json(json!({"ok": false, "error_code": 409,
                "description": "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"})),
        )
            .into_response(),
        "getupdates" => {
            let offset = args["offset"].as_i64().unwrap_or(0);
            let longest = *inner.longest_poll.lock().unwrap();
            let timeout = Duration::from_secs(args["timeout"].as_u64().unwrap_or(0)).min(longest);
            inner.offsets.lock().unwrap().push(offset);
            // Confirmed updates are forgotten, as Telegram does.
            inner
                .updates
                .lock()
                .unwrap()
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            let pending = |inner: &Inner| -> Vec<Value> {
                inner.updates.lock().unwrap().clone()
            };
            // Listening before looking: an update pushed between the look and the wait would
            // otherwise hold the poll for its whole timeout.
            let arrived = inner.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let mut found = pending(&inner);
            if found.is_empty() && !timeout.is_zero() {
                let _ = tokio::time::timeout(timeout, arrived).await;
                found = pending(&inner);
            }
            ok(Value::Array(found))
        }
        "sendmessage" => {
            let limited = {
                let mut rl = inner.rate_limit.lock().unwrap();
                match *rl {
                    Some((n, secs)) if n > 0 => {
                        *rl = Some((n - 1, secs));
                        Some(secs)
                    }
                    _ => None,
                }
            };
            let down = {
                let mut outage = inner.outage.lock().unwrap();
                let down = *outage > 0;
                *outage = outage.saturating_sub(1);
                down
            };
            if down {
                return (
                    axum::http::StatusCode::BAD_GATEWAY,
                    axum::Json(json!({"ok": false, "error_code": 502,
                        "description": "Bad Gateway"})),
                )
                    .into_response();
            }
            if let Some(secs) = limited {
                {
                    return (
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(json!({"ok": false, "error_code": 429,
                            "description": format!("Too Many Requests: retry after {secs}"),
                            "parameters": {"retry_after": secs}})),
                    )
                        .into_response();
                }
            }
            let chat = args["chat_id"].as_i64().unwrap_or_default();
            let text = args["text"].as_str().unwrap_or_default().to_owned();
            let mode = args["parse_mode"].as_str().map(str::to_owned);
            if mode.as_deref() == Some("HTML") {
                let mut reject = inner.reject_html.lock().unwrap();
                if *reject > 0 {
                    *reject -= 1;
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        axum::Json(json!({"ok": false, "error_code": 400,
                            "description": "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"})),
                    )
                        .into_response();
                }
            }
            {
                // Both under one lock order (sent, then sent_at), so the two stay aligned.
                let mut sent = inner.sent.lock().unwrap();
                sent.push((chat, text.clone()));
                inner.sent_at.lock().unwrap().push(std::time::Instant::now());
            }
            inner.parse_modes.lock().unwrap().push(mode);
            let markup = match &args["reply_markup"] {
                Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                other => other.clone(),
            };
            inner.markups.lock().unwrap().push(markup);
            let id = {
                let mut n = inner.next_message.lock().unwrap();
                *n += 1;
                *n
            };
            ok(json!({"message_id": id, "date": 1_800_000_000, "text": text,
                      "chat": {"id": chat, "type": "private", "first_name": "x"},
                      "from": user(BOT_ID, BOT_USERNAME, true)}))
        }
        "sendphoto" | "senddocument" | "sendaudio" | "sendvideo" => {
            let fields = multipart_fields(&content_type, &body);
            let text = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _, _)| n == name)
                    .map(|(_, _, v)| String::from_utf8_lossy(v).to_string())
            };
            let chat = text("chat_id")
                .and_then(|c| c.trim().parse::<i64>().ok())
                .unwrap_or_default();
            let kind = method.to_ascii_lowercase();
            let field = kind.trim_start_matches("send").to_owned();
            let Some((_, file_name, bytes)) = fields.iter().find(|(n, _, _)| *n == field) else {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    axum::Json(json!({"ok": false, "error_code": 400,
                        "description": format!("Bad Request: there is no {field} in the request")})),
                )
                    .into_response();
            };
            inner.files.lock().unwrap().push(SentFile {
                chat_id: chat,
                method: kind,
                file_name: file_name.clone().unwrap_or_default(),
                bytes: bytes.clone(),
            });
            let id = {
                let mut n = inner.next_message.lock().unwrap();
                *n += 1;
                *n
            };
            let file = json!({"file_id": format!("file-{id}"), "file_unique_id": format!("u{id}"),
                              "file_size": bytes.len(), "width": 1, "height": 1, "duration": 1});
            let mut message = json!({"message_id": id, "date": 1_800_000_000,
                      "chat": {"id": chat, "type": "private", "first_name": "x"},
                      "from": user(BOT_ID, BOT_USERNAME, true)});
            message[field.as_str()] = if field == "photo" { json!([file]) } else { file };
            ok(message)
        }
        "sendchataction" => {
            let chat = args["chat_id"].as_i64().unwrap_or_default();
            let action = args["action"].as_str().unwrap_or_default().to_owned();
            inner.actions.lock().unwrap().push((chat, action));
            ok(json!(true))
        }
        other => (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error_code": 404, "description": format!("Not Found: method {other}")})),
        )
            .into_response(),
    }
}

/// `GET /file/bot<token>/<file_path>`: the bytes of a file users sent.
async fn download(
    State(inner): State<Arc<Inner>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot != format!("bot{}", inner.token) {
        return axum::http::StatusCode::UNAUTHORIZED.into_response();
    }
    let id = path
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .trim_end_matches(".oga")
        .to_owned();
    match inner.files_in.lock().unwrap().get(&id) {
        Some(bytes) => bytes.clone().into_response(),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

/// While a webhook is set, POSTs pending updates to it in order, as Telegram does: with the
/// `X-Telegram-Bot-Api-Secret-Token` header, each one again until it is answered with 2xx.
async fn push_to_webhook(inner: Arc<Inner>) {
    let client = picoclaw_http::client_builder()
        .expect("TLS for the webhook client")
        .build()
        .expect("an HTTP client");
    loop {
        let target = inner.webhook.lock().unwrap().clone();
        let next = inner.updates.lock().unwrap().first().cloned();
        let (Some((url, secret)), Some(update)) = (target, next) else {
            let _ = tokio::time::timeout(Duration::from_millis(50), inner.arrived.notified()).await;
            continue;
        };
        let mut request = client.post(&url).json(&update);
        if let Some(secret) = &secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                let id = update["update_id"].as_i64();
                inner
                    .updates
                    .lock()
                    .unwrap()
                    .retain(|u| u["update_id"].as_i64() != id);
            }
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                inner.webhook_failures.lock().unwrap().push((status, body));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl FakeBotApi {
    /// Starts a fake for the bot `token`.
    pub fn start(token: &str) -> Self {
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            ..Inner::default()
        });
        *inner.next_update.lock().unwrap() = 1000;
        // Short polls keep tests quick; `hold_polls_up_to` gives Telegram's real behaviour.
        *inner.longest_poll.lock().unwrap() = Duration::from_secs(2);
        let (listener, addr) = crate::serve::listen();
        let app = Router::new()
            .route("/{bot}/{method}", axum::routing::post(handle).get(handle))
            .route("/file/{bot}/{*path}", axum::routing::get(download))
            .with_state(Arc::clone(&inner));
        let pusher = Arc::clone(&inner);
        let tx = crate::serve::spawn(listener, app, move || push_to_webhook(pusher));
        Self {
            addr,
            inner,
            shutdown: Some(tx),
        }
    }

    /// What goes in `channels.telegram.api_base`.
    pub fn api_base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A user writes `text` in a private chat (the chat id is the user id).
    pub fn private_message(&self, user_id: i64, username: &str, text: &str) -> i64 {
        self.message(
            user_id,
            json!({"id": user_id, "type": "private", "first_name": username}),
            user_id,
            username,
            text,
            None,
        )
    }

    /// A user writes in a group; `reply_to_bot` makes it a reply to one of the bot's messages.
    pub fn group_message(
        &self,
        chat_id: i64,
        user_id: i64,
        username: &str,
        text: &str,
        reply_to_bot: bool,
    ) -> i64 {
        let reply = reply_to_bot.then(|| {
            json!({"message_id": 1, "date": 1_800_000_000, "text": "earlier",
                   "chat": {"id": chat_id, "type": "group", "title": "Group"},
                   "from": user(BOT_ID, BOT_USERNAME, true)})
        });
        self.message(
            chat_id,
            json!({"id": chat_id, "type": "group", "title": "Group"}),
            user_id,
            username,
            text,
            reply,
        )
    }

    fn message(
        &self,
        _chat_id: i64,
        chat: Value,
        user_id: i64,
        username: &str,
        text: &str,
        reply: Option<Value>,
    ) -> i64 {
        self.enqueue(|update_id| {
            let mut message = json!({"message_id": update_id, "date": 1_800_000_000,
                "chat": chat, "from": user(user_id, username, false), "text": text});
            if let Some(r) = reply {
                message["reply_to_message"] = r;
            }
            json!({"update_id": update_id, "message": message})
        })
    }

    /// Numbers the update `build` makes and queues it, under one lock: ids reach `getUpdates`
    /// in increasing order, as Telegram's do (with two locks, a message pushed concurrently
    /// could land behind a later id, and the client's next offset dropped it).
    fn enqueue(&self, build: impl FnOnce(i64) -> Value) -> i64 {
        let update_id = {
            let mut updates = self.inner.updates.lock().unwrap();
            let update_id = {
                let mut n = self.inner.next_update.lock().unwrap();
                *n += 1;
                *n
            };
            updates.push(build(update_id));
            update_id
        };
        self.inner.arrived.notify_waiters();
        update_id
    }

    /// The `reply_markup` of every sent message, in the order of [`FakeBotApi::sent`].
    pub fn markups(&self) -> Vec<Value> {
        self.inner.markups.lock().unwrap().clone()
    }

    /// Reactions the bot set: (chat, message id, emoji).
    pub fn reactions(&self) -> Vec<(i64, i64, String)> {
        self.inner.reactions.lock().unwrap().clone()
    }

    /// Callback query ids the bot answered.
    pub fn answered(&self) -> Vec<String> {
        self.inner.answered.lock().unwrap().clone()
    }

    /// A user presses an inline button whose callback data is `data`, under a bot message in
    /// their private chat.
    pub fn press_button(&self, user_id: i64, username: &str, data: &str) -> i64 {
        let message = json!({"message_id": 1, "date": 1_800_000_000,
            "chat": {"id": user_id, "type": "private", "first_name": username},
            "from": user(BOT_ID, BOT_USERNAME, true), "text": "(the bot's message)"});
        self.enqueue(|update_id| {
            json!({"update_id": update_id,
                "callback_query": {"id": format!("cbq-{update_id}"),
                    "from": user(user_id, username, false),
                    "message": message, "chat_instance": "ci", "data": data}})
        })
    }

    /// A user sends a voice note (`bytes`, OGG/Opus in real life) in a private chat.
    pub fn voice_message(&self, user_id: i64, username: &str, bytes: &[u8]) -> i64 {
        self.enqueue(|update_id| {
            let file_id = format!("voice-{update_id}");
            self.inner
                .files_in
                .lock()
                .unwrap()
                .insert(file_id.clone(), bytes.to_vec());
            let message = json!({"message_id": update_id, "date": 1_800_000_000,
                "chat": {"id": user_id, "type": "private", "first_name": username},
                "from": user(user_id, username, false),
                "voice": {"file_id": file_id, "file_unique_id": format!("u-{update_id}"),
                          "duration": 2, "mime_type": "audio/ogg", "file_size": bytes.len()}});
            json!({"update_id": update_id, "message": message})
        })
    }

    /// Every message the bot sent: (chat id, text).
    pub fn sent(&self) -> Vec<(i64, String)> {
        self.inner.sent.lock().unwrap().clone()
    }

    /// The messages the bot sent after the first `skip`: (chat id, text, when it arrived).
    /// A load test follows the answers this way without copying them all again.
    pub fn sent_since(&self, skip: usize) -> Vec<(i64, String, std::time::Instant)> {
        let sent = self.inner.sent.lock().unwrap();
        let at = self.inner.sent_at.lock().unwrap();
        sent.iter()
            .zip(at.iter())
            .skip(skip)
            .map(|((chat, text), at)| (*chat, text.clone(), *at))
            .collect()
    }

    /// The `parse_mode` of every sent message, in the order of [`FakeBotApi::sent`].
    pub fn parse_modes(&self) -> Vec<Option<String>> {
        self.inner.parse_modes.lock().unwrap().clone()
    }

    /// The next `n` messages sent with `parse_mode: HTML` are refused with Telegram's "can't
    /// parse entities".
    pub fn reject_html(&self, n: u32) {
        *self.inner.reject_html.lock().unwrap() = n;
    }

    /// Files uploaded so far, in order.
    pub fn files(&self) -> Vec<SentFile> {
        self.inner.files.lock().unwrap().clone()
    }

    /// The webhook the bot registered (`setWebhook`): URL and secret token.
    pub fn webhook(&self) -> Option<(String, Option<String>)> {
        self.inner.webhook.lock().unwrap().clone()
    }

    /// Webhook deliveries that the bot answered with something other than 2xx: (status, body).
    pub fn webhook_failures(&self) -> Vec<(u16, String)> {
        self.inner.webhook_failures.lock().unwrap().clone()
    }

    /// Chat actions (typing) the bot sent.
    pub fn actions(&self) -> Vec<(i64, String)> {
        self.inner.actions.lock().unwrap().clone()
    }

    /// Offsets the client polled with.
    pub fn offsets(&self) -> Vec<i64> {
        self.inner.offsets.lock().unwrap().clone()
    }

    /// A getUpdates with nothing to return is held for its whole `timeout`, up to `longest`
    /// (2 s unless this is called), as Telegram holds it.
    pub fn hold_polls_up_to(&self, longest: Duration) {
        *self.inner.longest_poll.lock().unwrap() = longest;
    }

    /// The next `times` sendMessage calls answer 429 with `retry_after` seconds.
    pub fn rate_limit_sends(&self, times: u32, retry_after: u64) {
        *self.inner.rate_limit.lock().unwrap() = Some((times, retry_after));
    }

    /// The next `times` sendMessage calls answer 502 Bad Gateway.
    pub fn fail_sends(&self, times: u32) {
        *self.inner.outage.lock().unwrap() = times;
    }

    /// How many of the failing sendMessage answers (502) are still to come.
    pub fn failing_sends_left(&self) -> u32 {
        *self.inner.outage.lock().unwrap()
    }
}

impl Drop for FakeBotApi {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
