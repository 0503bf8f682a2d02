//! The WhatsApp Business Cloud API: Meta posts webhooks to the gateway's `/webhook/whatsapp`
//! (a GET subscription check echoing `hub.challenge` when `hub.verify_token` matches; POSTs
//! signed with `X-Hub-Signature-256`, HMAC-SHA256 of the raw body under the app secret), and
//! answers go out through `POST /{version}/{phone_number_id}/messages` with the access token.
//! Media users send is fetched in two steps: `GET /{version}/{media_id}` gives a short-lived
//! URL, fetched with the same token.

use super::{Gate, Shared, render};
use crate::{ChannelError, Inbox, WebhookRequest, WebhookResponse};
use picoclaw_api::{InboundMessage, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const DEFAULT_API_BASE: &str = "https://graph.facebook.com";
const DEFAULT_API_VERSION: &str = "v21.0";

/// The largest webhook body taken (Meta batches at most a few messages per request).
const MAX_BODY: usize = 1 << 20;

/// Messages taken from one webhook request.
const MAX_MESSAGES: usize = 100;

pub(crate) struct Cloud {
    phone_number_id: String,
    access_token: String,
    app_secret: ring::hmac::Key,
    verify_token: String,
    /// `{api_base}/{version}`.
    graph: String,
    pub(super) shared: Shared,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn required(value: &Option<String>, key: &str, why: &str) -> Result<String, ChannelError> {
    crate::sections::trimmed(value.as_ref()).ok_or_else(|| {
        ChannelError::Rejected(format!(
            "channels.whatsapp.{key} is empty: the Cloud API (phone_number_id) needs it {why} \
             (docs/channels/whatsapp.md)"
        ))
    })
}

impl Cloud {
    pub(super) fn new(
        phone_number_id: String,
        section: &crate::WhatsappSection,
        shared: Shared,
    ) -> Result<Self, ChannelError> {
        let access_token = required(&section.access_token, "access_token", "to send answers")?;
        let app_secret = required(
            &section.app_secret,
            "app_secret",
            "to check the X-Hub-Signature-256 of webhooks",
        )?;
        let verify_token = required(
            &section.verify_token,
            "verify_token",
            "for Meta's webhook verification",
        )?;
        let base = crate::settings::checked_api_base(section.api_base.as_deref(), "whatsapp")?
            .unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let version = crate::sections::trimmed(section.api_version.as_ref())
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        if !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return Err(ChannelError::Rejected(format!(
                "channels.whatsapp.api_version '{version}' must look like v21.0"
            )));
        }
        if !phone_number_id.chars().all(|c| c.is_ascii_digit()) {
            return Err(ChannelError::Rejected(
                "channels.whatsapp.phone_number_id must be the numeric Phone number ID from the \
                 app's WhatsApp → API Setup page (not the phone number itself)"
                    .into(),
            ));
        }
        Ok(Self {
            phone_number_id,
            access_token,
            app_secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, app_secret.as_bytes()),
            verify_token,
            graph: format!("{base}/{version}"),
            shared,
        })
    }

    /// Checks the token and the phone number id once, then waits: messages come as webhooks.
    pub(super) async fn run(&self, stop: CancellationToken) -> Result<(), ChannelError> {
        let url = format!("{}/{}", self.graph, self.phone_number_id);
        let response = self
            .shared
            .http
            .get(&url)
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(|e| {
                ChannelError::Platform(format!("whatsapp: Graph API: {}", e.without_url()))
            })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            return Err(start_error(status, &body));
        }
        tracing::info!(
            number = s(&body, "display_phone_number").unwrap_or("?"),
            "whatsapp: Cloud API ready; waiting for webhooks on /webhook/whatsapp"
        );
        stop.cancelled().await;
        Ok(())
    }

    pub(super) async fn webhook(
        self: Arc<Self>,
        request: WebhookRequest,
        inbox: Arc<dyn Inbox>,
    ) -> WebhookResponse {
        match request.method.as_str() {
            "GET" => self.verify_subscription(&request.query),
            "POST" => self.notification(&request, inbox.as_ref()).await,
            _ => WebhookResponse::text(405, "GET or POST only"),
        }
    }

    /// Meta's subscription check: `hub.challenge` back when `hub.verify_token` matches.
    fn verify_subscription(&self, query: &str) -> WebhookResponse {
        let mut mode = None;
        let mut token = None;
        let mut challenge = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "hub.mode" => mode = Some(v.into_owned()),
                "hub.verify_token" => token = Some(v.into_owned()),
                "hub.challenge" => challenge = Some(v.into_owned()),
                _ => {}
            }
        }
        let token_ok = token.is_some_and(|t| {
            subtle::ConstantTimeEq::ct_eq(t.as_bytes(), self.verify_token.as_bytes()).into()
        });
        match (mode.as_deref(), challenge) {
            (Some("subscribe"), Some(challenge)) if token_ok => {
                tracing::info!("whatsapp: webhook subscription verified");
                WebhookResponse::text(200, challenge)
            }
            _ => {
                tracing::warn!("whatsapp: webhook verification refused (wrong verify_token?)");
                WebhookResponse::text(403, "verification failed")
            }
        }
    }

    async fn notification(&self, request: &WebhookRequest, inbox: &dyn Inbox) -> WebhookResponse {
        if request.body.len() > MAX_BODY {
            return WebhookResponse::text(413, "body too large");
        }
        let signature = request.header("x-hub-signature-256").unwrap_or_default();
        if !verify_signature(&self.app_secret, signature, &request.body) {
            tracing::warn!("whatsapp webhook: missing or wrong X-Hub-Signature-256; refused");
            return WebhookResponse::text(401, "bad signature");
        }
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return WebhookResponse::text(400, "not JSON");
        };
        if s(&body, "object") != Some("whatsapp_business_account") {
            return WebhookResponse::text(200, "ignored");
        }
        let mut failed = false;
        let values = items(&body, "entry")
            .flat_map(|e| items(e, "changes"))
            .filter(|c| s(c, "field") == Some("messages"))
            .filter_map(|c| c.get("value"));
        for value in values {
            // One app may serve several numbers: only ours is answered here (a value that
            // does not say which number it is for is not ours either).
            let metadata = value.get("metadata");
            let number_id = metadata.and_then(|m| s(m, "phone_number_id"));
            if number_id != Some(self.phone_number_id.as_str()) {
                tracing::debug!("whatsapp webhook: a change for another phone_number_id; ignored");
                continue;
            }
            let own = metadata
                .and_then(|m| s(m, "display_phone_number"))
                .map(super::bare_number);
            for message in items(value, "messages").take(MAX_MESSAGES) {
                if let Err(e) = self.take(value, message, own.as_deref(), inbox).await {
                    tracing::warn!(error = %e, "whatsapp: a message was not kept");
                    failed = true;
                }
            }
        }
        if failed {
            // Meta delivers the request again; what was kept is dropped then by id.
            WebhookResponse::text(503, "not all messages could be kept")
        } else {
            WebhookResponse::text(200, "ok")
        }
    }

    async fn take(
        &self,
        value: &Value,
        message: &Value,
        own: Option<&str>,
        inbox: &dyn Inbox,
    ) -> Result<(), ChannelError> {
        let (Some(id), Some(from)) = (s(message, "id"), s(message, "from")) else {
            return Ok(());
        };
        if own.is_some_and(|n| n == super::bare_number(from)) {
            return Ok(());
        }
        let kind = s(message, "type").unwrap_or_default();
        let part = message.get(kind);
        let text = match kind {
            "text" => part.and_then(|t| s(t, "body")),
            "button" => part.and_then(|b| s(b, "text")),
            "interactive" => part.and_then(|i| {
                ["button_reply", "list_reply"]
                    .iter()
                    .find_map(|k| i.get(*k).and_then(|r| s(r, "title")))
            }),
            _ => part.and_then(|p| s(p, "caption")),
        }
        .unwrap_or_default();
        // The id is claimed once the sender passed the access checks; the claim is kept only
        // when the inbox took the message, so a handler that ends early (Meta gave up on the
        // request, the inbox refused) lets Meta's redelivery through.
        let (content, claim) = match self.shared.gate(from, text, false, false, Some(id)) {
            Gate::Take(text, claim) => (text, claim),
            Gate::Notice(notice) => {
                self.notice(from, notice);
                return Ok(());
            }
            Gate::Drop => return Ok(()),
        };
        let mut msg = InboundMessage::new("whatsapp", from, from, content)
            .with_metadata("message_id", id)
            .with_metadata("peer_kind", "user")
            .with_metadata("message_type", kind);
        let name = items(value, "contacts")
            .find(|c| s(c, "wa_id") == Some(from))
            .and_then(|c| c.get("profile"))
            .and_then(|p| s(p, "name"));
        if let Some(name) = name {
            msg = msg.with_metadata("user_name", name);
        }
        if let Some(at) = s(message, "timestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .and_then(|t| picoclaw_api::reexports::chrono::DateTime::from_timestamp(t, 0))
        {
            msg = msg.with_timestamp(at);
        }
        if matches!(
            kind,
            "image" | "audio" | "voice" | "video" | "document" | "sticker"
        ) && let Some(part) = part
        {
            match self.download(kind, part, from, id).await {
                Ok(media) => msg.media.push(media),
                Err(e) => {
                    tracing::warn!(error = %e, "whatsapp: a file was not downloaded");
                    msg.content = format!("{}\n[a {kind} could not be downloaded]", msg.content)
                        .trim()
                        .to_owned();
                }
            }
        }
        if msg.content.is_empty() && msg.media.is_empty() {
            return Ok(());
        }
        inbox.deliver(msg).await?;
        if let Some(claim) = claim {
            claim.keep();
        }
        self.mark_read(id);
        Ok(())
    }

    /// The two-step media download: the media object's URL, then its bytes.
    async fn download(
        &self,
        kind: &str,
        part: &Value,
        from: &str,
        id: &str,
    ) -> Result<MediaRef, String> {
        let media_id = s(part, "id").ok_or("the message names no media id")?;
        if !media_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err("the media id is malformed".into());
        }
        let info: Value = self
            .shared
            .http
            .get(format!("{}/{media_id}", self.graph))
            .bearer_auth(&self.access_token)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?
            .error_for_status()
            .map_err(|e| e.without_url().to_string())?
            .json()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let url = s(&info, "url").ok_or("the media object has no url")?;
        let (bytes, fetched_mime) = self.shared.fetch(url, Some(&self.access_token)).await?;
        let mime = s(part, "mime_type")
            .or_else(|| s(&info, "mime_type"))
            .map(str::to_owned)
            .or(fetched_mime);
        let name = match s(part, "filename") {
            Some(f) => format!("{id}-{f}"),
            None => format!("{id}{}", super::extension(mime.as_deref())),
        };
        let path = crate::settings::save_download(&self.shared.common, from, &name, bytes).await?;
        let mut media = MediaRef::new(
            super::media_kind(kind, mime.as_deref()),
            path.display().to_string(),
        );
        if let Some(m) = mime {
            media = media.with_mime(m);
        }
        if let Some(f) = s(part, "filename") {
            media = media.with_name(f);
        }
        Ok(media)
    }

    /// Blue ticks on a message once it is kept (best effort, off the webhook's path).
    fn mark_read(&self, id: &str) {
        let request = self
            .shared
            .http
            .post(self.messages_url())
            .bearer_auth(&self.access_token)
            .json(&json!({"messaging_product": "whatsapp", "status": "read", "message_id": id}));
        tokio::spawn(async move {
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e.without_url(), "whatsapp: read receipt not sent");
            }
        });
    }

    /// A short text to `to`, best effort and off the webhook's path: the pairing code it may
    /// answer is used up already, so a failed notice must not make Meta deliver it again.
    fn notice(&self, to: &str, text: &str) {
        let request = self
            .shared
            .http
            .post(self.messages_url())
            .bearer_auth(&self.access_token)
            .json(&text_payload(to, text, None));
        tokio::spawn(async move {
            if let Err(e) = request.send().await {
                tracing::warn!(error = %e.without_url(), "whatsapp: a notice was not sent");
            }
        });
    }

    fn messages_url(&self) -> String {
        format!("{}/{}/messages", self.graph, self.phone_number_id)
    }

    async fn post_text(
        &self,
        to: &str,
        body: &str,
        reply_to: Option<&str>,
    ) -> Result<(), ChannelError> {
        let payload = text_payload(to, body, reply_to);
        let response = self
            .shared
            .http
            .post(self.messages_url())
            .bearer_auth(&self.access_token)
            .json(&payload)
            .send()
            .await
            .map_err(|e| {
                ChannelError::Platform(format!("whatsapp: sending failed: {}", e.without_url()))
            })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(send_error(status, &body))
    }

    pub(super) async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let to = super::bare_number(&msg.chat_id);
        if to.is_empty() || !to.chars().all(|c| c.is_ascii_digit()) {
            return Err(ChannelError::Rejected(format!(
                "whatsapp: '{}' is not a WhatsApp number (wa_id)",
                msg.chat_id
            )));
        }
        for (n, part) in render(&msg.content).iter().enumerate() {
            let reply_to = if n == 0 {
                msg.reply_to.as_deref()
            } else {
                None
            };
            self.post_text(&to, part, reply_to).await?;
        }
        Ok(())
    }
}

/// A text message's body for `POST /{phone_number_id}/messages`, quoting `reply_to` if given.
fn text_payload(to: &str, body: &str, reply_to: Option<&str>) -> Value {
    let mut payload = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
        "to": to, "type": "text", "text": {"preview_url": false, "body": body}});
    if let Some(id) = reply_to {
        payload["context"] = json!({"message_id": id});
    }
    payload
}

/// Checks `sha256=<hex>` against the HMAC-SHA256 of `body` (ring compares in constant time).
pub(crate) fn verify_signature(key: &ring::hmac::Key, header: &str, body: &[u8]) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    ring::hmac::verify(key, body, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// The Graph API's error object: (code, message).
fn graph_error(body: &Value) -> (i64, String) {
    let error = body.get("error");
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or_default();
    let message = error
        .and_then(|e| s(e, "message"))
        .unwrap_or("no error message")
        .chars()
        .take(300)
        .collect();
    (code, message)
}

/// The start check's failure: a refused token or an unknown number id is a setting to fix.
fn start_error(status: u16, body: &Value) -> ChannelError {
    let (code, message) = graph_error(body);
    if status == 401 || code == 190 {
        ChannelError::Rejected(format!(
            "channels.whatsapp.access_token was refused by the Graph API ({status}, code {code}): \
             {message}"
        ))
    } else if matches!(status, 400 | 403 | 404) {
        ChannelError::Rejected(format!(
            "channels.whatsapp.phone_number_id was not accepted by the Graph API ({status}, code \
             {code}): {message}"
        ))
    } else {
        ChannelError::Platform(format!("whatsapp: Graph API answered {status}: {message}"))
    }
}

/// A failed send: retryable (rate limits, Meta's errors) or not (token, recipient, window).
fn send_error(status: u16, body: &Value) -> ChannelError {
    let (code, message) = graph_error(body);
    if status == 401 || code == 190 {
        ChannelError::Rejected(format!(
            "channels.whatsapp.access_token was refused by the Graph API ({status}): {message}"
        ))
    } else if status == 429 || status >= 500 || matches!(code, 4 | 80007 | 130429 | 131016) {
        ChannelError::Platform(format!(
            "whatsapp: the Graph API answered {status}: {message}"
        ))
    } else {
        ChannelError::Rejected(format!(
            "whatsapp: the message was refused ({status}, code {code}): {message}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_raw_body() {
        // HMAC-SHA256 test case 2 of RFC 4231 (key "Jefe").
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let body = b"what do ya want for nothing?";
        let good = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert!(verify_signature(&key, good, body));
        assert!(!verify_signature(&key, &good.to_uppercase(), body));
        assert!(!verify_signature(
            &key,
            good.trim_start_matches("sha256="),
            body
        ));
        assert!(!verify_signature(
            &key,
            good,
            b"what do ya want for something?"
        ));
        assert!(!verify_signature(&key, "sha256=zz", body));
        assert!(!verify_signature(&key, "", body));
    }

    #[test]
    fn graph_errors_name_the_setting_to_fix() {
        let token = json!({"error": {"message": "Invalid OAuth access token.",
                                     "type": "OAuthException", "code": 190}});
        let e = start_error(401, &token);
        assert!(
            matches!(e, ChannelError::Rejected(ref m) if m.contains("channels.whatsapp.access_token")),
            "{e}"
        );
        let id = json!({"error": {"message": "Unsupported get request.", "code": 100}});
        assert!(
            matches!(start_error(400, &id), ChannelError::Rejected(ref m) if m.contains("phone_number_id"))
        );
        assert!(matches!(
            start_error(503, &Value::Null),
            ChannelError::Platform(_)
        ));
        let limited = json!({"error": {"message": "rate", "code": 130429}});
        assert!(matches!(
            send_error(400, &limited),
            ChannelError::Platform(_)
        ));
        let window = json!({"error": {"message": "Re-engagement message", "code": 131047}});
        assert!(matches!(
            send_error(400, &window),
            ChannelError::Rejected(_)
        ));
    }
}
