//! Feishu's Open API as the channel uses it: the tenant access token (cached, renewed before it
//! expires and once more when Feishu calls it invalid), the bot's identity, sending and
//! replying, message resources (what users send), and the long connection's endpoint.

use crate::ChannelError;
use crate::settings::read_capped;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Codes Feishu answers for a token it no longer takes (invalid, expired).
const TOKEN_INVALID: [i64; 3] = [99_991_661, 99_991_663, 99_991_668];

/// Codes of the tenant token endpoint for credentials Feishu refuses: 10003 (no such app id),
/// 10014 (wrong app secret). Anything else (10016 throttling, 99991400 rate limits, internal
/// errors) may pass on its own: the channel is restarted.
const BAD_CREDENTIALS: [i64; 2] = [10_003, 10_014];

/// Codes of `/callback/ws/endpoint` for an app Feishu refuses (403 forbidden, 514 the
/// credentials failed). The connection limit (1000040350), busy (1) and internal errors may
/// pass: the connection is retried.
const ENDPOINT_REFUSED: [i64; 2] = [403, 514];

/// The largest file taken from a user (16 MiB).
pub(crate) const MAX_DOWNLOAD_BYTES: usize = 16 << 20;

/// Renew a token this long before Feishu's `expire` (at most half its life).
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// The long connection's URL and the client settings Feishu gives with it.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) config: ClientConfig,
}

/// `ClientConfig` of the endpoint answer and of pong frames (all in seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClientConfig {
    pub(crate) reconnect_interval: u64,
    pub(crate) reconnect_nonce: u64,
    pub(crate) ping_interval: u64,
}

impl Default for ClientConfig {
    /// The official SDKs' defaults until Feishu says otherwise.
    fn default() -> Self {
        Self {
            reconnect_interval: 120,
            reconnect_nonce: 30,
            ping_interval: 120,
        }
    }
}

impl ClientConfig {
    /// `self` updated with the fields `value` has (a pong may carry only some).
    pub(crate) fn merged(mut self, value: &Value) -> Self {
        let field = |k: &str| value.get(k).and_then(Value::as_u64);
        if let Some(v) = field("ReconnectInterval") {
            self.reconnect_interval = v;
        }
        if let Some(v) = field("ReconnectNonce") {
            self.reconnect_nonce = v;
        }
        if let Some(v) = field("PingInterval").filter(|v| *v > 0) {
            self.ping_interval = v;
        }
        self
    }
}

/// A downloaded resource.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) bytes: Vec<u8>,
    pub(crate) mime: Option<String>,
}

/// The Open API client of one app.
pub(crate) struct Api {
    base: String,
    app_id: String,
    app_secret: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

/// `code` of an Open API answer (0 when absent: some endpoints answer only data).
fn code_of(v: &Value) -> i64 {
    v.get("code").and_then(Value::as_i64).unwrap_or(0)
}

fn msg_of(v: &Value) -> &str {
    v.get("msg").and_then(Value::as_str).unwrap_or("no message")
}

impl Api {
    pub(crate) fn new(
        base: String,
        app_id: String,
        app_secret: String,
    ) -> Result<Self, ChannelError> {
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("feishu: HTTP client: {e}")))?
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("feishu: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            base,
            app_id,
            app_secret,
            http,
            token: tokio::sync::Mutex::new(None),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A JSON answer of at most 1 MiB; other bodies become an error naming `what`.
    async fn json(what: &str, response: reqwest::Response) -> Result<(u16, Value), ChannelError> {
        let status = response.status().as_u16();
        let bytes = read_capped(response, 1 << 20)
            .await
            .map_err(|e| ChannelError::Platform(format!("feishu {what}: {e}")))?;
        let value = serde_json::from_slice(&bytes).map_err(|_| {
            ChannelError::Platform(format!(
                "feishu {what}: HTTP {status} with a body that is not JSON"
            ))
        })?;
        Ok((status, value))
    }

    /// The tenant access token, from the cache while it has more than its margin left.
    pub(crate) async fn token(&self) -> Result<String, ChannelError> {
        let mut cached = self.token.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let (token, life) = self.fetch_token().await?;
        let margin = RENEW_MARGIN.min(life / 2);
        *cached = Some((token.clone(), Instant::now() + life - margin));
        Ok(token)
    }

    /// Drops the cached token (Feishu called it invalid).
    async fn forget_token(&self, stale: &str) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|(t, _)| t == stale) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<(String, Duration), ChannelError> {
        let what = "tenant_access_token";
        let response = self
            .http
            .post(self.url("/open-apis/auth/v3/tenant_access_token/internal"))
            .json(&json!({"app_id": self.app_id, "app_secret": self.app_secret}))
            .send()
            .await
            .map_err(|e| ChannelError::Platform(format!("feishu {what}: {}", e.without_url())))?;
        let (status, v) = Self::json(what, response).await?;
        let code = code_of(&v);
        if BAD_CREDENTIALS.contains(&code) || status == 401 || status == 403 {
            return Err(ChannelError::Rejected(format!(
                "channels.feishu.app_id / channels.feishu.app_secret were refused by Feishu \
                 (code {code}: {}): copy both from the app's Credentials & Basic Info page \
                 (docs/channels/feishu.md)",
                msg_of(&v)
            )));
        }
        if code != 0 || status >= 400 {
            return Err(ChannelError::Platform(format!(
                "feishu {what}: HTTP {status} (code {code}: {})",
                msg_of(&v)
            )));
        }
        let token = v
            .get("tenant_access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ChannelError::Platform(format!("feishu {what}: no token in the answer"))
            })?;
        let expire = v
            .get("expire")
            .and_then(Value::as_u64)
            .unwrap_or(7200)
            .max(1);
        Ok((token.to_owned(), Duration::from_secs(expire)))
    }

    /// An authenticated Open API call; a token Feishu calls invalid is renewed and the call
    /// made once more. A code other than 0 is an error with Feishu's code and message.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ChannelError> {
        self.call_with(path, || {
            let request = self.http.request(method.clone(), self.url(path));
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        })
        .await
    }

    /// [`Api::call`] with a request `make` builds afresh for each attempt (a multipart form
    /// cannot be sent twice).
    async fn call_with(
        &self,
        path: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, ChannelError> {
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let response = make().bearer_auth(&token).send().await.map_err(|e| {
                ChannelError::Platform(format!("feishu {path}: {}", e.without_url()))
            })?;
            let (status, v) = Self::json(path, response).await?;
            let code = code_of(&v);
            if TOKEN_INVALID.contains(&code) && !retried {
                retried = true;
                self.forget_token(&token).await;
                continue;
            }
            if code != 0 || status >= 400 {
                return Err(ChannelError::Platform(format!(
                    "feishu {path}: HTTP {status}, code {code}: {}",
                    msg_of(&v)
                )));
            }
            return Ok(v);
        }
    }

    /// Uploads a local file for a message: an image (`/im/v1/images`, up to 10 MiB) or another
    /// file (`/im/v1/files`, up to 30 MiB). Returns the `msg_type` and `content` that send it.
    pub(crate) async fn upload(
        &self,
        path: &std::path::Path,
        name: &str,
        image: bool,
    ) -> Result<(&'static str, String), ChannelError> {
        let cap: u64 = if image { 10 << 20 } else { 30 << 20 };
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| ChannelError::Rejected(format!("cannot read {name}: {e}")))?
            .len();
        if size > cap {
            return Err(ChannelError::Rejected(format!(
                "{name} is {} MiB; Feishu takes images up to 10 MiB and files up to 30 MiB",
                size >> 20
            )));
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| ChannelError::Rejected(format!("cannot read {name}: {e}")))?;
        let part = || reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_owned());
        if image {
            let api = "/open-apis/im/v1/images";
            let v = self
                .call_with(api, || {
                    let form = reqwest::multipart::Form::new()
                        .text("image_type", "message")
                        .part("image", part());
                    self.http.post(self.url(api)).multipart(form)
                })
                .await?;
            let key = data_key(&v, "image_key", api)?;
            return Ok(("image", json!({ "image_key": key }).to_string()));
        }
        let file_type = file_type(name);
        let api = "/open-apis/im/v1/files";
        let v = self
            .call_with(api, || {
                let form = reqwest::multipart::Form::new()
                    .text("file_type", file_type)
                    .text("file_name", name.to_owned())
                    .part("file", part());
                self.http.post(self.url(api)).multipart(form)
            })
            .await?;
        let key = data_key(&v, "file_key", api)?;
        // Opus files show as voice messages.
        let msg_type = if file_type == "opus" { "audio" } else { "file" };
        Ok((msg_type, json!({ "file_key": key }).to_string()))
    }

    /// The bot's open_id (`/open-apis/bot/v3/info`): mentions of it address the bot.
    pub(crate) async fn bot_open_id(&self) -> Result<String, ChannelError> {
        let v = self
            .call(reqwest::Method::GET, "/open-apis/bot/v3/info", None)
            .await?;
        v.get("bot")
            .and_then(|b| b.get("open_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ChannelError::Rejected(
                    "Feishu says this app has no bot: turn on the Bot capability under \
                     Features → Bot for channels.feishu.app_id"
                        .into(),
                )
            })
    }

    /// Sends `msg_type` with `content` (a JSON text) as a reply to message `reply_to`, or to
    /// chat `chat_id`.
    pub(crate) async fn send(
        &self,
        chat_id: &str,
        reply_to: Option<&str>,
        msg_type: &str,
        content: &str,
    ) -> Result<(), ChannelError> {
        match reply_to {
            Some(id) => {
                let body = json!({"msg_type": msg_type, "content": content});
                let path = format!("/open-apis/im/v1/messages/{}/reply", path_part(id));
                self.call(reqwest::Method::POST, &path, Some(&body)).await?;
            }
            None => {
                let body = json!({"receive_id": chat_id, "msg_type": msg_type, "content": content});
                self.call(
                    reqwest::Method::POST,
                    "/open-apis/im/v1/messages?receive_id_type=chat_id",
                    Some(&body),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Downloads resource `key` (`kind`: `image` or `file`) of message `message_id`.
    pub(crate) async fn download(
        &self,
        message_id: &str,
        key: &str,
        kind: &str,
    ) -> Result<Download, String> {
        let path = format!(
            "/open-apis/im/v1/messages/{}/resources/{}?type={kind}",
            path_part(message_id),
            path_part(key)
        );
        let token = self.token().await.map_err(|e| e.to_string())?;
        let response = self
            .http
            .get(self.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| format!("download failed: {}", e.without_url()))?;
        let status = response.status();
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|m| m.split(';').next().unwrap_or_default().trim().to_owned())
            .filter(|m| !m.is_empty());
        if !status.is_success() || mime.as_deref() == Some("application/json") {
            let bytes = read_capped(response, 64 << 10).await.unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(format!(
                "Feishu answered HTTP {status} (code {}: {}); the app needs the im:message scope",
                code_of(&v),
                msg_of(&v)
            ));
        }
        let bytes = read_capped(response, MAX_DOWNLOAD_BYTES).await?;
        Ok(Download { bytes, mime })
    }

    /// The long connection's URL (`/callback/ws/endpoint`, with the app's credentials).
    pub(crate) async fn ws_endpoint(&self) -> Result<Endpoint, ChannelError> {
        let what = "callback/ws/endpoint";
        let response = self
            .http
            .post(self.url("/callback/ws/endpoint"))
            .header("locale", "zh")
            .json(&json!({"AppID": self.app_id, "AppSecret": self.app_secret}))
            .send()
            .await
            .map_err(|e| ChannelError::Platform(format!("feishu {what}: {}", e.without_url())))?;
        let (status, v) = Self::json(what, response).await?;
        let code = code_of(&v);
        if ENDPOINT_REFUSED.contains(&code) || status == 401 || status == 403 {
            return Err(ChannelError::Rejected(format!(
                "Feishu refused the long connection for channels.feishu.app_id (code {code}: \
                 {}): check the app's credentials, that it is a custom app, and that Events & \
                 Callbacks use \"Receive events through persistent connection\"",
                msg_of(&v)
            )));
        }
        if code != 0 || status >= 400 {
            return Err(ChannelError::Platform(format!(
                "feishu {what}: HTTP {status}, code {code}: {}",
                msg_of(&v)
            )));
        }
        let data = v.get("data").cloned().unwrap_or(Value::Null);
        let url = data
            .get("URL")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                ChannelError::Platform(format!("feishu {what}: no URL in the answer"))
            })?;
        let config =
            ClientConfig::default().merged(data.get("ClientConfig").unwrap_or(&Value::Null));
        Ok(Endpoint {
            url: url.to_owned(),
            config,
        })
    }
}

/// `data.<key>` of an upload's answer.
fn data_key(v: &Value, key: &str, api: &str) -> Result<String, ChannelError> {
    v.get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ChannelError::Platform(format!("feishu {api}: no {key} in the answer")))
}

/// The `file_type` Feishu wants for a file name: its own kinds, else `stream`.
fn file_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "opus" => "opus",
        "mp4" => "mp4",
        "pdf" => "pdf",
        "doc" | "docx" => "doc",
        "xls" | "xlsx" => "xls",
        "ppt" | "pptx" => "ppt",
        _ => "stream",
    }
}

/// An id put in a URL path: anything but ASCII letters, digits, `_` and `-` escaped.
fn path_part(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pongs_update_only_what_they_carry() {
        let c = ClientConfig::default().merged(&json!({"PingInterval": 5, "ReconnectNonce": 0}));
        assert_eq!(
            c,
            ClientConfig {
                reconnect_interval: 120,
                reconnect_nonce: 0,
                ping_interval: 5
            }
        );
        assert_eq!(c.merged(&json!({"PingInterval": 0})).ping_interval, 5);
    }

    #[test]
    fn files_get_feishu_s_kinds() {
        assert_eq!(file_type("Report.PDF"), "pdf");
        assert_eq!(file_type("a.docx"), "doc");
        assert_eq!(file_type("voice.opus"), "opus");
        assert_eq!(file_type("archive.tar.gz"), "stream");
        assert_eq!(file_type("README"), "stream");
    }

    #[test]
    fn ids_cannot_leave_their_path_segment() {
        assert_eq!(path_part("om_abc-1"), "om_abc-1");
        assert_eq!(path_part("../x?y"), "..%2Fx%3Fy");
    }
}
