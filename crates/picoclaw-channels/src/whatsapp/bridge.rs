//! The original PicoClaw's WhatsApp bridge: picoclaw dials `bridge_url` and keeps the WebSocket
//! open (reconnecting with backoff). The bridge sends
//! `{"type":"message","from","chat","content","id","from_name","media":[...]}` for each message
//! (other types, such as `status` or `qr`, are ignored) and takes `{"type":"message","to",
//! "content"}` to send. The protocol has no acknowledgements and no mention information: groups
//! (`...@g.us` chats) are answered on a configured prefix only.

use super::{Gate, Shared, render};
use crate::wsclient::{self, CloseFrame, Message};
use crate::{ChannelError, Inbox};
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The first pause before dialling the bridge again.
const RECONNECT_BASE: Duration = Duration::from_secs(1);

/// Files a message may carry.
const MAX_FILES: usize = 10;

pub(crate) struct Bridge {
    url: String,
    pub(super) shared: Shared,
    /// Frames for the live connection's writer; `None` while the bridge is not connected.
    out: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

impl Bridge {
    pub(super) fn new(url: String, shared: Shared) -> Result<Self, ChannelError> {
        let parsed = url::Url::parse(&url).map_err(|e| {
            ChannelError::Rejected(format!("channels.whatsapp.bridge_url '{url}': {e}"))
        })?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(ChannelError::Rejected(format!(
                "channels.whatsapp.bridge_url '{url}' must be a ws:// or wss:// URL"
            )));
        }
        Ok(Self {
            url,
            shared,
            out: Mutex::new(None),
        })
    }

    /// Dials the bridge until `stop`, reconnecting with backoff after each drop or failure.
    pub(super) async fn run(
        self: Arc<Self>,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let mut attempt = 0u32;
        while !stop.is_cancelled() {
            match wsclient::connect("the WhatsApp bridge", &self.url, &[]).await {
                Ok(ws) => {
                    tracing::info!(url = %self.url, "whatsapp: bridge connected");
                    attempt = 0;
                    self.session(ws, inbox.as_ref(), &stop).await;
                    *lock(&self.out) = None;
                    tracing::warn!("whatsapp: bridge connection closed");
                }
                Err(ChannelError::Rejected(e)) => {
                    return Err(ChannelError::Rejected(format!(
                        "{e} (check channels.whatsapp.bridge_url)"
                    )));
                }
                Err(e) => tracing::warn!(error = %e, "whatsapp: bridge unreachable"),
            }
            attempt = attempt.saturating_add(1);
            let pause = wsclient::reconnect_delay(RECONNECT_BASE, attempt);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        Ok(())
    }

    /// One connection: frames from the bridge are handled in order; answers are written as
    /// `send` queues them.
    async fn session(&self, ws: wsclient::WsStream, inbox: &dyn Inbox, stop: &CancellationToken) {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        *lock(&self.out) = Some(tx.clone());
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let bye = CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                        reason: "picoclaw stops".into(),
                    };
                    let _ = sink.send(Message::Close(Some(bye))).await;
                    return;
                }
                Some(frame) = rx.recv() => {
                    if let Err(e) = sink.send(frame).await {
                        tracing::warn!(error = %e, "whatsapp: writing to the bridge failed");
                        return;
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_frame(text.as_str(), inbox).await,
                    Some(Ok(Message::Ping(data))) => { let _ = tx.send(Message::Pong(data)); }
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "whatsapp: bridge connection failed");
                        return;
                    }
                },
            }
        }
    }

    /// One frame from the bridge; anything but a well-formed `message` is ignored.
    async fn on_frame(&self, text: &str, inbox: &dyn Inbox) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::debug!("whatsapp: a frame from the bridge is not JSON; ignored");
            return;
        };
        if s(&frame, "type") != Some("message") {
            return;
        }
        if let Err(e) = self.take(&frame, inbox).await {
            tracing::warn!(error = %e, "whatsapp: a message was not kept");
        }
    }

    async fn take(&self, frame: &Value, inbox: &dyn Inbox) -> Result<(), ChannelError> {
        let Some(from) = s(frame, "from") else {
            return Ok(());
        };
        // Bridges that report the account's own messages flag them.
        if ["from_me", "fromMe", "is_from_me"]
            .iter()
            .any(|k| frame.get(*k).and_then(Value::as_bool) == Some(true))
        {
            return Ok(());
        }
        let chat = s(frame, "chat").unwrap_or(from).to_owned();
        let group = chat.ends_with("@g.us");
        let id = s(frame, "id").map(str::to_owned);
        if let Some(id) = &id
            && !self.shared.seen.first(&format!("{chat}/{id}"))
        {
            tracing::debug!(id, "whatsapp: redelivered message dropped");
            return Ok(());
        }
        let content = s(frame, "content").unwrap_or_default();
        let text = match self.shared.gate(from, content, group, false) {
            Gate::Take(text) => text,
            Gate::Notice(notice) => {
                self.notice(&chat, notice);
                return Ok(());
            }
            Gate::Drop => return Ok(()),
        };
        let mut msg = InboundMessage::new("whatsapp", chat.clone(), from, text)
            .with_metadata("peer_kind", if group { "group" } else { "user" });
        if let Some(id) = &id {
            msg = msg.with_metadata("message_id", id.clone());
        }
        if let Some(name) = s(frame, "from_name") {
            msg = msg.with_metadata("user_name", name);
        }
        for media in self.media(frame, &chat, id.as_deref()).await {
            msg.media.push(media);
        }
        if msg.content.is_empty() && msg.media.is_empty() {
            return Ok(());
        }
        if let Err(e) = inbox.deliver(msg).await {
            // The bridge does not redeliver; the sender is told to try again.
            if let Some(id) = &id {
                self.shared.seen.forget(&format!("{chat}/{id}"));
            }
            self.notice(
                &chat,
                "I could not take that message just now; please send it again.",
            );
            return Err(e.into());
        }
        Ok(())
    }

    /// The message's files: the bridge lists them in `media` as URLs (downloaded here, capped)
    /// or as paths on the bridge's host (not read: the bridge may run elsewhere, and a path
    /// from outside must not open local files).
    async fn media(&self, frame: &Value, chat: &str, id: Option<&str>) -> Vec<MediaRef> {
        let Some(items) = frame.get("media").and_then(Value::as_array) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (n, item) in items.iter().take(MAX_FILES).enumerate() {
            let (url, kind_hint, mime_hint) = match item {
                Value::String(u) => (u.as_str(), "", None),
                Value::Object(_) => (
                    s(item, "url").unwrap_or_default(),
                    s(item, "type").unwrap_or_default(),
                    s(item, "mimetype").or_else(|| s(item, "mime_type")),
                ),
                _ => continue,
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                tracing::debug!("whatsapp: a media entry that is not a URL was skipped");
                continue;
            }
            match self.shared.fetch(url, None).await {
                Ok((bytes, mime)) => {
                    let mime = mime_hint.map(str::to_owned).or(mime);
                    let name = format!(
                        "{}-{n}{}",
                        id.unwrap_or("media"),
                        super::extension(mime.as_deref())
                    );
                    match crate::settings::save_download(&self.shared.common, chat, &name, bytes)
                        .await
                    {
                        Ok(path) => {
                            let mut media = MediaRef::new(
                                super::media_kind(kind_hint, mime.as_deref()),
                                path.display().to_string(),
                            );
                            if let Some(m) = mime {
                                media = media.with_mime(m);
                            }
                            out.push(media);
                        }
                        Err(e) => tracing::warn!(error = %e, "whatsapp: a file was not saved"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "whatsapp: a file was not downloaded"),
            }
        }
        out
    }

    /// A short text to `chat`, best effort.
    fn notice(&self, chat: &str, text: &str) {
        let _ = self.queue(chat, text);
    }

    fn queue(&self, to: &str, content: &str) -> Result<(), ChannelError> {
        let frame = json!({"type": "message", "to": to, "content": content}).to_string();
        let out = lock(&self.out);
        let sent = out
            .as_ref()
            .is_some_and(|tx| tx.send(Message::text(frame)).is_ok());
        if sent {
            Ok(())
        } else {
            Err(ChannelError::Platform(
                "the WhatsApp bridge is not connected; the answer was not sent".into(),
            ))
        }
    }

    pub(super) async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        for part in render(&msg.content) {
            self.queue(&msg.chat_id, &part)?;
        }
        Ok(())
    }
}
