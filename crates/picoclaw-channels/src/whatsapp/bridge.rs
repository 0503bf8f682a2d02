//! The original PicoClaw's WhatsApp bridge: picoclaw dials `bridge_url` and keeps the WebSocket
//! open (reconnecting with backoff). The bridge sends
//! `{"type":"message","from","chat","content","id","from_name","media":[...]}` for each message
//! (other types, such as `status` or `qr`, are ignored) and takes `{"type":"message","to",
//! "content"}` to send. The protocol has no acknowledgements and no mention information: groups
//! (`...@g.us` chats) are answered on a configured prefix only; direct chats are
//! `...@s.whatsapp.net` and `...@lid`; anything else (`status@broadcast`, broadcast lists,
//! `...@newsletter` channels) is ignored, so that no answer is ever posted as a Status.
//!
//! `send` returns once its frames were written to the connection (not merely queued). The
//! channel pings the bridge every 30 s and dials again after 90 s without hearing anything (a
//! connection that died without a FIN); every write is bounded by 10 s.

use super::{Gate, Shared, render};
use crate::lock;
use crate::wsclient::{self, CloseFrame, Message};
use crate::{ChannelError, Inbox};
use futures::{SinkExt, StreamExt};
use picoclaw_api::{InboundMessage, MediaRef, OutboundMessage};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause before dialling the bridge again.
const RECONNECT_BASE: Duration = Duration::from_secs(1);

/// Files a message may carry.
const MAX_FILES: usize = 10;

/// How often the bridge is pinged.
pub(super) const PING_EVERY: Duration = Duration::from_secs(30);

/// How long the bridge may stay silent (no frame, no pong) before the channel dials again.
pub(super) const SILENCE_LIMIT: Duration = Duration::from_secs(90);

/// The longest one write (or the close frame) may take; a peer that stops reading ends the
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Frames from the bridge read but not yet handled; frames beyond it are dropped (the reader
/// never waits, so answers keep being written and pings sent while a message is handled).
const FRAME_QUEUE: usize = 256;

/// A frame for the connection's writer; `written` hears when it went out.
struct Outgoing {
    frame: Message,
    written: Option<oneshot::Sender<()>>,
}

pub(crate) struct Bridge {
    url: String,
    pub(super) shared: Shared,
    /// Frames for the live connection's writer; `None` while the bridge is not connected.
    out: Mutex<Option<mpsc::UnboundedSender<Outgoing>>>,
    /// How often to ping, and how long a silence ends the connection.
    pub(super) keepalive: (Duration, Duration),
}

/// The chats the bridge reports, by their JID's server.
#[derive(Debug, PartialEq, Eq)]
enum ChatKind {
    Direct,
    Group,
    /// Status updates, broadcast lists, newsletters: never answered.
    Other,
}

fn chat_kind(jid: &str) -> ChatKind {
    match jid.rsplit_once('@').map(|(_, server)| server) {
        Some("g.us") => ChatKind::Group,
        // `c.us` is how whatsapp-web.js based bridges name people.
        Some("s.whatsapp.net" | "lid" | "c.us") => ChatKind::Direct,
        // A bare number, from bridges that send no JID.
        None if !jid.is_empty()
            && jid
                .trim_start_matches('+')
                .chars()
                .all(|c| c.is_ascii_digit()) =>
        {
            ChatKind::Direct
        }
        _ => ChatKind::Other,
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
            ChannelError::Rejected(format!("channels.whatsapp.bridge_url is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "ws" | "wss") {
            return Err(ChannelError::Rejected(format!(
                "channels.whatsapp.bridge_url '{}' must be a ws:// or wss:// URL",
                wsclient::shown(&url)
            )));
        }
        Ok(Self {
            url,
            shared,
            out: Mutex::new(None),
            keepalive: (PING_EVERY, SILENCE_LIMIT),
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
                    tracing::info!(url = %wsclient::shown(&self.url), "whatsapp: bridge connected");
                    attempt = 0;
                    Arc::clone(&self).session(ws, &inbox, &stop).await;
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

    /// The longest one write may take (shorter when a test shortened the keepalive).
    fn write_timeout(&self) -> Duration {
        WRITE_TIMEOUT.min(self.keepalive.1)
    }

    /// One connection. Frames from the bridge are handled in order by a task of their own, so
    /// that answers keep being written while a message is downloaded or kept; that task ends
    /// with the connection (its queue finished first, or cut short when the channel stops).
    async fn session(
        self: Arc<Self>,
        ws: wsclient::WsStream,
        inbox: &Arc<dyn Inbox>,
        stop: &CancellationToken,
    ) {
        let (frames, mut queue) = mpsc::channel::<String>(FRAME_QUEUE);
        let mut handler = {
            let (this, inbox) = (Arc::clone(&self), Arc::clone(inbox));
            tokio::spawn(async move {
                while let Some(text) = queue.recv().await {
                    this.on_frame(&text, inbox.as_ref()).await;
                }
            })
        };
        self.connection(ws, frames, stop).await;
        *lock(&self.out) = None;
        tokio::select! {
            _ = &mut handler => {}
            () = stop.cancelled() => {
                handler.abort();
                let _ = handler.await;
            }
        }
    }

    /// Reads and writes one connection: answers are written as `send` queues them, each write
    /// bounded; the bridge is pinged, and a connection that stays silent too long is given up.
    async fn connection(
        &self,
        ws: wsclient::WsStream,
        frames: mpsc::Sender<String>,
        stop: &CancellationToken,
    ) {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        *lock(&self.out) = Some(tx.clone());
        let (ping_every, silence) = self.keepalive;
        let write_timeout = self.write_timeout();
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let bye = CloseFrame {
                        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                        reason: "picoclaw stops".into(),
                    };
                    let _ = tokio::time::timeout(write_timeout, sink.send(Message::Close(Some(bye)))).await;
                    return;
                }
                Some(out) = rx.recv() => {
                    // The sender gave up waiting: the answer counts as not sent, so it is not
                    // written late either.
                    if out.written.as_ref().is_some_and(oneshot::Sender::is_closed) {
                        continue;
                    }
                    match tokio::time::timeout(write_timeout, sink.send(out.frame)).await {
                        Ok(Ok(())) => {
                            if let Some(written) = out.written {
                                let _ = written.send(());
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "whatsapp: writing to the bridge failed");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(
                                "whatsapp: the bridge took no frame within {}s; reconnecting",
                                write_timeout.as_secs_f32()
                            );
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= silence {
                        tracing::warn!(
                            "whatsapp: nothing heard from the bridge for {}s; reconnecting",
                            silence.as_secs_f32()
                        );
                        return;
                    }
                    let sent = tokio::time::timeout(
                        write_timeout,
                        sink.send(Message::Ping(Vec::new().into())),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::warn!("whatsapp: pinging the bridge failed; reconnecting");
                        return;
                    }
                }
                incoming = stream.next() => {
                    heard = Instant::now();
                    match incoming {
                        Some(Ok(Message::Text(text))) => {
                            match frames.try_send(text.as_str().to_owned()) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(_)) => tracing::warn!(
                                    "whatsapp: {FRAME_QUEUE} frames from the bridge are waiting; \
                                     this one was dropped"
                                ),
                                Err(mpsc::error::TrySendError::Closed(_)) => return,
                            }
                        }
                        Some(Ok(Message::Ping(data))) => {
                            let _ = tx.send(Outgoing { frame: Message::Pong(data), written: None });
                        }
                        Some(Ok(Message::Close(_))) | None => return,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "whatsapp: bridge connection failed");
                            return;
                        }
                    }
                }
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
        let group = match chat_kind(&chat) {
            ChatKind::Group => true,
            ChatKind::Direct => false,
            ChatKind::Other => {
                tracing::debug!("whatsapp: a status, broadcast or newsletter message; ignored");
                return Ok(());
            }
        };
        let id = s(frame, "id").map(str::to_owned);
        let key = id.as_ref().map(|id| format!("{chat}/{id}"));
        let content = s(frame, "content").unwrap_or_default();
        let (text, claim) = match self
            .shared
            .gate(from, content, group, false, key.as_deref())
        {
            Gate::Take(text, claim) => (text, claim),
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
            // The bridge does not redeliver; the sender is told to try again (the claim,
            // dropped unkept, lets the same message through then).
            self.notice(
                &chat,
                "I could not take that message just now; please send it again.",
            );
            return Err(e.into());
        }
        if let Some(claim) = claim {
            claim.keep();
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

    /// A short text to `chat`, best effort and not waited for (the session's own reader
    /// queues it).
    fn notice(&self, chat: &str, text: &str) {
        let _ = self.queue(chat, text, None);
    }

    fn queue(
        &self,
        to: &str,
        content: &str,
        written: Option<oneshot::Sender<()>>,
    ) -> Result<(), ChannelError> {
        let frame = json!({"type": "message", "to": to, "content": content}).to_string();
        let out = lock(&self.out);
        let sent = out.as_ref().is_some_and(|tx| {
            tx.send(Outgoing {
                frame: Message::text(frame),
                written,
            })
            .is_ok()
        });
        if sent {
            Ok(())
        } else {
            Err(ChannelError::Platform(
                "the WhatsApp bridge is not connected; the answer was not sent".into(),
            ))
        }
    }

    /// Sends each part and waits until it was written to the bridge's connection.
    pub(super) async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        // A reply to status@broadcast would be posted as a Status; broadcast lists and
        // newsletters are not conversations either. (A bare number is left to the bridge.)
        if matches!(
            msg.chat_id.rsplit_once('@').map(|(_, server)| server),
            Some("broadcast" | "newsletter")
        ) {
            return Err(ChannelError::Rejected(format!(
                "whatsapp: '{}' is a status, broadcast or newsletter chat; nothing is posted there",
                msg.chat_id
            )));
        }
        // Frames ahead of ours may each take the write bound.
        let wait = self.write_timeout().saturating_mul(3);
        for part in render(&msg.content) {
            let (written, done) = oneshot::channel();
            self.queue(&msg.chat_id, &part, Some(written))?;
            match tokio::time::timeout(wait, done).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ChannelError::Platform(
                        "whatsapp: the bridge connection ended before the answer was written; \
                         it was not sent"
                            .into(),
                    ));
                }
                Err(_) => {
                    return Err(ChannelError::Platform(format!(
                        "whatsapp: the answer was not written to the bridge within {}s; it was \
                         not sent",
                        wait.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_people_and_groups_are_chats() {
        assert_eq!(chat_kind("491701234567@s.whatsapp.net"), ChatKind::Direct);
        assert_eq!(chat_kind("123456789012345@lid"), ChatKind::Direct);
        assert_eq!(chat_kind("120363041234567890@g.us"), ChatKind::Group);
        assert_eq!(chat_kind("status@broadcast"), ChatKind::Other);
        assert_eq!(chat_kind("1234567@broadcast"), ChatKind::Other);
        assert_eq!(chat_kind("120363000000000000@newsletter"), ChatKind::Other);
        assert_eq!(chat_kind("491701234567@c.us"), ChatKind::Direct);
        assert_eq!(chat_kind("491701234567"), ChatKind::Direct);
        assert_eq!(chat_kind("+491701234567"), ChatKind::Direct);
        assert_eq!(chat_kind("status"), ChatKind::Other);
        assert_eq!(chat_kind(""), ChatKind::Other);
    }
}
