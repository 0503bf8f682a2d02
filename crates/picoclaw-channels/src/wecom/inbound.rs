//! What WeCom sends, into inbox messages: the callback envelope (the app's XML `<Encrypt>`, the
//! group bot's JSON `{"encrypt"}`), then the app's XML messages or the bot's JSON ones, with the
//! images and voice notes they carry.

use super::{Inner, Mode};
use crate::access::Admission;
use crate::group::Claim;
use crate::{Inbox, WebhookResponse};
use picoclaw_api::{InboundMessage, MediaKind, MediaRef};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest callback body taken.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest image or voice note downloaded.
const MAX_MEDIA_BYTES: usize = 16 * 1024 * 1024;

/// A file a message carries, and where to get it.
#[derive(Debug, PartialEq, Eq)]
enum Media {
    /// The app's `MediaId`, fetched through `media/get`.
    Stored {
        media_id: String,
        kind: MediaKind,
        ext: &'static str,
    },
    /// The group bot's image: a URL whose content is encrypted with the callback key.
    Encrypted { url: String },
}

/// A user's message, from either layout.
#[derive(Debug, PartialEq, Eq)]
struct Incoming {
    id: String,
    user: String,
    chat_id: String,
    group: bool,
    text: String,
    media: Option<Media>,
    /// Unix seconds.
    at: Option<i64>,
}

/// The direct child elements of an XML document's root and their text (CDATA included).
/// roxmltree refuses DTDs by default, so no entity can expand.
pub(crate) fn xml_fields(text: &str) -> Result<HashMap<String, String>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not XML: {e}"))?;
    Ok(doc
        .root_element()
        .children()
        .filter(roxmltree::Node::is_element)
        .map(|n| {
            let text: String = n.children().filter_map(|c| c.text()).collect();
            (n.tag_name().name().to_owned(), text)
        })
        .collect())
}

/// The encrypted text of a callback body: JSON `{"encrypt": ...}` (the group bot) or XML
/// `<xml><Encrypt>...</Encrypt></xml>` (the app, and the original's bot).
fn envelope(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim_start();
    if text.starts_with('{') {
        let v: Value = serde_json::from_str(text).ok()?;
        return v.get("encrypt").and_then(Value::as_str).map(str::to_owned);
    }
    xml_fields(text)
        .ok()?
        .remove("Encrypt")
        .filter(|e| !e.is_empty())
}

/// An app message (XML); `None` for events and kinds not taken.
fn app_message(plain: &str) -> Result<Option<Incoming>, String> {
    let f = xml_fields(plain)?;
    let get = |k: &str| f.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let kind = get("MsgType").unwrap_or_default();
    let (Some(id), Some(user)) = (get("MsgId"), get("FromUserName")) else {
        tracing::debug!(
            kind,
            event = get("Event"),
            "wecom: callback without a message"
        );
        return Ok(None);
    };
    let media = |kind: MediaKind, ext: &'static str| {
        get("MediaId").map(|m| Media::Stored {
            media_id: m.to_owned(),
            kind,
            ext,
        })
    };
    let (text, media) = match kind {
        "text" => (get("Content").unwrap_or_default().to_owned(), None),
        "image" => (String::new(), media(MediaKind::Image, "jpg")),
        "voice" => (String::new(), media(MediaKind::Audio, "amr")),
        _ => return Ok(None),
    };
    Ok(Some(Incoming {
        id: id.to_owned(),
        user: user.to_owned(),
        chat_id: user.to_owned(),
        group: false,
        text,
        media,
        at: get("CreateTime").and_then(|t| t.parse().ok()),
    }))
}

/// The mention a group message to the bot starts with (`@bot `), taken off.
fn without_leading_mention(text: &str) -> &str {
    let text = text.trim_start();
    match text.strip_prefix('@') {
        Some(rest) => rest
            .split_once(char::is_whitespace)
            .map_or("", |(_, after)| after)
            .trim_start(),
        None => text,
    }
}

/// A group bot message (JSON); `None` for kinds not taken and the bot's own.
fn bot_message(plain: &str) -> Result<Option<Incoming>, String> {
    let v: Value = serde_json::from_str(plain).map_err(|e| format!("not JSON: {e}"))?;
    let s = |v: &Value, path: &[&str]| -> Option<String> {
        path.iter()
            .try_fold(v, |at, key| at.get(key))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(id), Some(user)) = (s(&v, &["msgid"]), s(&v, &["from", "userid"])) else {
        return Ok(None);
    };
    if s(&v, &["aibotid"]).as_deref() == Some(user.as_str()) {
        return Ok(None);
    }
    let group = s(&v, &["chattype"]).as_deref() == Some("group");
    let chat_id = if group {
        match s(&v, &["chatid"]) {
            Some(c) => c,
            None => return Ok(None),
        }
    } else {
        user.clone()
    };
    let image = |item: &Value| s(item, &["image", "url"]).map(|url| Media::Encrypted { url });
    let (text, media) = match s(&v, &["msgtype"]).as_deref() {
        Some("text") => (s(&v, &["text", "content"]).unwrap_or_default(), None),
        // WeCom transcribes voice for bots.
        Some("voice") => (s(&v, &["voice", "content"]).unwrap_or_default(), None),
        Some("image") => (String::new(), image(&v)),
        Some("mixed") => {
            let items = v
                .pointer("/mixed/msg_item")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let text: Vec<String> = items
                .iter()
                .filter_map(|i| s(i, &["text", "content"]))
                .collect();
            (text.join("\n"), items.iter().find_map(image))
        }
        _ => return Ok(None),
    };
    let text = if group {
        without_leading_mention(&text).to_owned()
    } else {
        text
    };
    Ok(Some(Incoming {
        id,
        user,
        chat_id,
        group,
        text,
        media,
        at: None,
    }))
}

/// The MIME type of an image by its first bytes.
fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else {
        None
    }
}

impl Inner {
    /// A POSTed callback: check, decrypt, parse, hand to the inbox, and answer at once.
    pub(super) async fn take_callback(
        self: &Arc<Self>,
        body: &[u8],
        signature: &str,
        timestamp: &str,
        nonce: &str,
        inbox: &dyn Inbox,
    ) -> WebhookResponse {
        let Some(encrypted) = envelope(body) else {
            return WebhookResponse::text(400, "no Encrypt field");
        };
        if !self.crypto.verify(signature, timestamp, nonce, &encrypted) {
            tracing::warn!(channel = %self.name, "callback with a bad signature refused");
            return WebhookResponse::text(401, "bad signature");
        }
        if let Err(response) = self.fresh(timestamp) {
            return response;
        }
        let plain = match self.open(&encrypted) {
            Ok(p) => String::from_utf8_lossy(&p).into_owned(),
            Err(response) => return response,
        };
        let parsed = match &self.mode {
            Mode::App(_) => app_message(&plain),
            Mode::Bot { .. } => bot_message(&plain),
        };
        let ok = || match self.mode {
            Mode::App(_) => WebhookResponse::text(200, "success"),
            Mode::Bot { .. } => WebhookResponse::text(200, ""),
        };
        let incoming = match parsed {
            Ok(Some(m)) => m,
            Ok(None) => return ok(),
            Err(e) => {
                tracing::warn!(channel = %self.name, error = %e, "callback message not understood");
                return WebhookResponse::text(400, "message not understood");
            }
        };
        let Some((message, claim)) = self.admit(incoming).await else {
            return ok();
        };
        // On an error (or when this future is dropped because WeCom gave up on the callback)
        // the claim is dropped unkept: WeCom's retry gets through.
        match inbox.deliver(message).await {
            Ok(()) => {
                claim.keep();
                ok()
            }
            Err(e) => {
                tracing::warn!(channel = %self.name, error = %e, "message not kept; WeCom retries");
                WebhookResponse::text(500, "not kept, retry")
            }
        }
    }

    /// A short answer of the channel's own (pairing, rate limit), sent in the background.
    fn notice(self: &Arc<Self>, chat_id: &str, text: &'static str) {
        let (this, chat_id) = (Arc::clone(self), chat_id.to_owned());
        tokio::spawn(async move {
            if let Err(e) = this.send_part(&chat_id, text).await {
                tracing::debug!(error = %e, "wecom: notice not sent");
            }
        });
    }

    /// The inbox message and the claim on its id, or `None` when it is not for the agent or
    /// was taken before (WeCom's retries keep the id).
    async fn admit(self: &Arc<Self>, m: Incoming) -> Option<(InboundMessage, Claim<'_>)> {
        let content = if m.group {
            // The bot receives group messages only when mentioned.
            self.trigger.admit(&m.text, true)?
        } else {
            m.text.trim().to_owned()
        };
        let claim = match self
            .access()
            .admit(&[&m.user], !m.group, &content, || self.seen.claim(&m.id))
        {
            Admission::Deliver(claim) => claim,
            Admission::Answer(text) => {
                self.notice(&m.chat_id, text);
                return None;
            }
            Admission::Ignore => return None,
        };
        let mut inbound = InboundMessage::new(self.name.as_str(), &m.chat_id, &m.user, content)
            .with_metadata("message_id", &m.id)
            .with_metadata("peer_kind", if m.group { "group" } else { "user" });
        if let Some(at) =
            m.at.and_then(|t| picoclaw_api::reexports::chrono::DateTime::from_timestamp(t, 0))
        {
            inbound = inbound.with_timestamp(at);
        }
        if let Some(media) = &m.media {
            match self.save_media(&m.chat_id, &m.id, media).await {
                Ok(media) => inbound = inbound.with_media(media),
                Err(e) => {
                    tracing::warn!(channel = %self.name, error = %e, "media not saved");
                    // The agent gets a neutral note, never the transport's error text.
                    inbound.content =
                        format!("{}\n[a file could not be downloaded]", inbound.content)
                            .trim()
                            .to_owned();
                }
            }
        }
        if inbound.content.is_empty() && inbound.media.is_empty() {
            return None;
        }
        Some((inbound, claim))
    }

    /// GETs `request`'s answer, at most [`MAX_MEDIA_BYTES`]; its bytes and content type.
    async fn fetch(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(Vec<u8>, Option<String>), String> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("download failed: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("the download answered {}", response.status()));
        }
        let mime = crate::settings::mime_of(&response);
        Ok((
            crate::settings::read_capped(response, MAX_MEDIA_BYTES).await?,
            mime,
        ))
    }

    /// Downloads a message's file and saves it in the media folder.
    async fn save_media(&self, chat_id: &str, id: &str, media: &Media) -> Result<MediaRef, String> {
        if self.common.media_dir.is_none() {
            return Err("no media folder is configured".into());
        }
        let (kind, bytes, mime, ext) = match (media, &self.mode) {
            (
                Media::Stored {
                    media_id,
                    kind,
                    ext,
                },
                Mode::App(app),
            ) => {
                let token = self.token(app, false).await.map_err(|e| e.to_string())?;
                let url = super::with_query(
                    &format!("{}/cgi-bin/media/get", app.api_base),
                    &[("access_token", token.as_str()), ("media_id", media_id)],
                );
                let request = self.http.get(&url);
                let (bytes, mime) = self.fetch(request).await?;
                // WeCom answers errors as JSON with status 200.
                if mime.as_deref() == Some("application/json")
                    || mime.as_deref() == Some("text/plain")
                {
                    return Err(format!(
                        "media/get refused: {}",
                        String::from_utf8_lossy(&bytes)
                    ));
                }
                (*kind, bytes, mime, *ext)
            }
            (Media::Encrypted { url }, _) => {
                let (sealed, _) = self.fetch(self.http.get(url)).await?;
                let bytes = self.crypto.decrypt_raw(&sealed)?;
                let mime = image_mime(&bytes).map(str::to_owned);
                (MediaKind::Image, bytes, mime, "jpg")
            }
            (Media::Stored { .. }, Mode::Bot { .. }) => {
                return Err("no media API for the group bot".into());
            }
        };
        let ext = match mime.as_deref() {
            Some("image/png") => "png",
            Some("image/gif") => "gif",
            _ => ext,
        };
        let name = format!("{id}.{ext}");
        let path = crate::settings::save_download(&self.common, chat_id, &name, bytes).await?;
        let mut media = MediaRef::new(kind, path.to_string_lossy()).with_name(name);
        if let Some(mime) = mime {
            media = media.with_mime(mime);
        }
        Ok(media)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_fields_take_cdata_and_refuse_dtds_and_junk() {
        let f = xml_fields(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName><AgentID>7</AgentID>\
             <Content><![CDATA[a <b> & c]]></Content></xml>",
        )
        .unwrap();
        assert_eq!(f["ToUserName"], "ww1");
        assert_eq!(f["AgentID"], "7");
        assert_eq!(f["Content"], "a <b> & c");
        let bomb =
            "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\">]><xml><C>&a;</C></xml>";
        assert!(xml_fields(bomb).is_err());
        assert!(xml_fields("<xml><open></xml>").is_err());
        assert!(xml_fields("").is_err());
    }

    #[test]
    fn envelopes_come_as_xml_or_json() {
        assert_eq!(
            envelope(b"<xml><ToUserName>ww</ToUserName><Encrypt><![CDATA[abc=]]></Encrypt></xml>")
                .as_deref(),
            Some("abc=")
        );
        assert_eq!(envelope(br#"{"encrypt": "xyz="}"#).as_deref(), Some("xyz="));
        assert_eq!(envelope(b"<xml></xml>"), None);
        assert_eq!(envelope(b"\xff\xfe"), None);
    }

    #[test]
    fn app_messages_and_bot_messages_are_read() {
        let m = app_message(
            "<xml><ToUserName>ww1</ToUserName><FromUserName>ada</FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType>voice</MsgType><MediaId>M1</MediaId>\
             <Format>amr</Format><MsgId>42</MsgId><AgentID>7</AgentID></xml>",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (m.id.as_str(), m.user.as_str(), m.group),
            ("42", "ada", false)
        );
        assert_eq!(
            m.media,
            Some(Media::Stored {
                media_id: "M1".into(),
                kind: MediaKind::Audio,
                ext: "amr"
            })
        );
        let event = "<xml><FromUserName>ada</FromUserName><MsgType>event</MsgType>\
                     <Event>enter_agent</Event></xml>";
        assert_eq!(app_message(event).unwrap(), None);

        let g = bot_message(
            r#"{"msgid":"m1","aibotid":"B1","chatid":"G1","chattype":"group",
                "from":{"userid":"ada"},"msgtype":"text","text":{"content":"@pico  hi there"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (g.chat_id.as_str(), g.text.as_str(), g.group),
            ("G1", "hi there", true)
        );
        let own = r#"{"msgid":"m2","aibotid":"B1","chattype":"single","from":{"userid":"B1"},
                      "msgtype":"text","text":{"content":"me"}}"#;
        assert_eq!(bot_message(own).unwrap(), None);
        assert!(bot_message("{").is_err());
    }

    #[test]
    fn leading_mentions_are_cut() {
        assert_eq!(without_leading_mention("@pico hi"), "hi");
        assert_eq!(without_leading_mention("hi @pico"), "hi @pico");
        assert_eq!(without_leading_mention("@pico"), "");
    }
}
