//! Chat platforms: the messages that travel between a channel and the agent
//! ([`InboundMessage`], [`OutboundMessage`], [`MediaRef`], [`Button`]), the [`Channel`] trait
//! every platform implements, the [`Inbox`] a channel hands what it receives to, and the
//! webhook request/response a platform's HTTP callbacks arrive as.
//!
//! A channel acknowledges a platform's message only after [`Inbox::deliver`] returned `Ok`: the
//! inbox has then written the message down, so a crash loses nothing.

use crate::state::StateError;
use crate::{ChannelId, SessionKey};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What kind of file a [`MediaRef`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaKind {
    /// A picture.
    Image,
    /// A voice note or another audio file.
    Audio,
    /// A video.
    Video,
    /// Any other file.
    Document,
}

/// A file attached to a message: a local path (downloaded by the channel) or a URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MediaRef {
    /// What kind of file it is.
    pub kind: MediaKind,
    /// A local file path or an `https://` URL.
    pub location: String,
    /// The MIME type (`image/jpeg`), when the platform gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    /// The file's name, when the platform gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl MediaRef {
    /// A file of `kind` at `location` (a local path or an `https://` URL), with no MIME type or
    /// name.
    pub fn new(kind: MediaKind, location: impl Into<String>) -> Self {
        Self {
            kind,
            location: location.into(),
            mime: None,
            name: None,
        }
    }

    /// Sets the MIME type.
    pub fn with_mime(mut self, mime: impl Into<String>) -> Self {
        self.mime = Some(mime.into());
        self
    }

    /// Sets the file's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// A message from a user, on its way to the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InboundMessage {
    /// The conversation it belongs to (by default `channel:chat_id`).
    pub session_key: SessionKey,
    /// The channel it arrived on.
    pub channel: ChannelId,
    /// The chat it was written in (a DM, group or channel), as the platform identifies it;
    /// replies go there.
    pub chat_id: String,
    /// Who wrote it, as the platform identifies them.
    pub sender_id: String,
    /// The text; for a pressed [`Button`], its `data`. May be empty when the message carries
    /// media.
    pub content: String,
    /// Attached files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    /// When it was received (UTC): the time [`InboundMessage::new`] ran, unless the channel set
    /// the platform's time with [`InboundMessage::with_timestamp`].
    pub timestamp: DateTime<Utc>,
    /// Channel-specific extras (message id, thread id, user name...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl InboundMessage {
    /// A text message received now; the session key is `channel:chat_id`.
    pub fn new(
        channel: impl Into<ChannelId>,
        chat_id: impl Into<String>,
        sender_id: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        let channel = channel.into();
        let chat_id = chat_id.into();
        Self {
            session_key: SessionKey::for_chat(&channel, &chat_id),
            channel,
            chat_id,
            sender_id: sender_id.into(),
            content: content.into(),
            media: Vec::new(),
            timestamp: Utc::now(),
            metadata: BTreeMap::new(),
        }
    }

    /// Puts the message in another conversation than `channel:chat_id` (one per thread or per
    /// user, say).
    pub fn with_session_key(mut self, key: SessionKey) -> Self {
        self.session_key = key;
        self
    }

    /// Attaches a file.
    pub fn with_media(mut self, media: MediaRef) -> Self {
        self.media.push(media);
        self
    }

    /// Sets a metadata entry, replacing any of the same key.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets when the message was sent (the platform's time instead of now).
    pub fn with_timestamp(mut self, at: DateTime<Utc>) -> Self {
        self.timestamp = at;
        self
    }
}

/// A button under a message. Pressing it comes back as an inbound message whose content is
/// `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Button {
    /// The label shown on the button.
    pub text: String,
    /// What the press sends back, as the content of an [`InboundMessage`].
    pub data: String,
}

impl Button {
    /// A button labelled `text` that sends back `data`.
    pub fn new(text: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            data: data.into(),
        }
    }
}

/// Buttons as text, for channels that cannot show them: `[Yes] [No]`, one row per line.
pub fn buttons_as_text(rows: &[Vec<Button>]) -> String {
    rows.iter()
        .map(|row| {
            row.iter()
                .map(|b| format!("[{}]", b.text))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A message from the agent, on its way to a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboundMessage {
    /// The channel to send on.
    pub channel: ChannelId,
    /// The chat to send to, as the platform identifies it.
    pub chat_id: String,
    /// The conversation it belongs to; `None` for a message that answers none (a cron job's
    /// output, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<SessionKey>,
    /// The text to send.
    pub content: String,
    /// Files to attach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    /// The channel's id of the message this answers, to thread the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Buttons under the message, in rows (rendered natively where the platform has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<Button>>,
    /// Channel-specific extras, free-form.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl OutboundMessage {
    /// A text message to `chat_id` on `channel`, outside any session, with no media, reply target
    /// or buttons.
    pub fn new(
        channel: impl Into<ChannelId>,
        chat_id: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        Self {
            channel: channel.into(),
            chat_id: chat_id.into(),
            session_key: None,
            content: content.into(),
            media: Vec::new(),
            reply_to: None,
            buttons: Vec::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// A reply to `msg`, in the same chat and session, threaded under its `message_id`
    /// metadata when the channel gave one.
    pub fn reply(msg: &InboundMessage, content: impl Into<String>) -> Self {
        Self {
            session_key: Some(msg.session_key.clone()),
            reply_to: msg.metadata.get("message_id").cloned(),
            ..Self::new(msg.channel.clone(), msg.chat_id.clone(), content)
        }
    }

    /// Attaches a file.
    pub fn with_media(mut self, media: MediaRef) -> Self {
        self.media.push(media);
        self
    }

    /// Sets a metadata entry, replacing any of the same key.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// A channel's failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The platform refused or failed; the text says why (shown in logs and `/ready`).
    #[error("{0}")]
    Platform(String),
    /// No channel of that name runs here.
    #[error("no channel named '{0}' is running")]
    Unknown(String),
    /// The message cannot be sent as it is (too long, unsupported media...): retrying will not
    /// help.
    #[error("{0}")]
    Rejected(String),
}

/// Why an [`Inbox`] did not take a message. The channel must then not acknowledge it, so that
/// the platform delivers it again (or, where the platform does not, tell the sender).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The message could not be written down (the journal's database failed).
    #[error("the message could not be kept: {0}")]
    Journal(#[from] StateError),
    /// The receiving side is shutting down or gone.
    #[error("picoclaw is shutting down; the message was not taken")]
    Closed,
}

impl From<InboxError> for ChannelError {
    fn from(e: InboxError) -> Self {
        ChannelError::Platform(e.to_string())
    }
}

/// Where a channel puts what it receives.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Takes a message; when it returns `Ok`, the message is durable and the channel may
    /// acknowledge it to the platform.
    async fn deliver(&self, msg: InboundMessage) -> Result<(), InboxError>;
}

#[async_trait]
impl<T: Inbox + ?Sized> Inbox for Arc<T> {
    async fn deliver(&self, msg: InboundMessage) -> Result<(), InboxError> {
        (**self).deliver(msg).await
    }
}

/// An HTTP request a platform sent to the gateway's `/webhook/<channel>` route.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct WebhookRequest {
    /// `POST`, `GET`...
    pub method: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// The raw body, as received (signatures are checked over these bytes).
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// A request with `method` and `body`, no headers and an empty query.
    pub fn new(method: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: method.into(),
            body: body.into(),
            ..Self::default()
        }
    }

    /// Adds a header (the name is lower-cased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the query string (without `?`).
    pub fn with_query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The answer to a [`WebhookRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl WebhookResponse {
    /// `200` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::with_status(200, "application/json", value.to_string())
    }

    /// A status with a plain-text body (the reason, for the platform's delivery log).
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::with_status(status, "text/plain; charset=utf-8", body.into())
    }

    /// A response with the given status, content type and body.
    pub fn with_status(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }
}

/// The byte stream of an HTTP connection the gateway upgraded to a WebSocket (the handshake
/// is done; frames follow).
pub trait SocketStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> SocketStream for T {}

/// A WebSocket connection a channel agreed to take (see [`Channel::socket`]).
#[async_trait]
pub trait SocketSession: Send {
    /// The subprotocol the gateway names in its `101` answer (`Sec-WebSocket-Protocol`), when
    /// the client offered one the channel chose.
    fn protocol(&self) -> Option<String> {
        None
    }

    /// Speaks WebSocket over `stream` until either side closes it or the channel stops.
    async fn run(self: Box<Self>, stream: Box<dyn SocketStream>);
}

impl std::fmt::Debug for dyn SocketSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketSession")
            .field("protocol", &self.protocol())
            .finish_non_exhaustive()
    }
}

/// A chat platform.
#[async_trait]
pub trait Channel: Send + Sync {
    /// The channel's name as in the config and in session keys (`telegram`, `slack`...).
    fn name(&self) -> &str;

    /// Receives messages until `stop` is cancelled, handing each to `inbox`. Returning early
    /// with an error means the channel failed; the manager starts it again after a backoff.
    async fn run(&self, inbox: Arc<dyn Inbox>, stop: CancellationToken)
    -> Result<(), ChannelError>;

    /// Sends one message to the platform.
    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError>;

    /// Shows that an answer is being prepared in `chat_id` (Telegram's and Discord's "typing…").
    /// The gateway calls it every few seconds while a turn runs; best effort, and nothing on
    /// platforms without such an indicator.
    async fn typing(&self, chat_id: &str) {
        let _ = chat_id;
    }

    /// Whether this channel, as configured, receives through the gateway's `/webhook/<name>`
    /// route (Slack's Events API, LINE, Telegram in webhook mode).
    fn takes_webhooks(&self) -> bool {
        false
    }

    /// Handles one request to `/webhook/<name>`: the channel checks that the platform sent it
    /// (signature, secret token; the route has no other authentication), hands the messages in
    /// it to `inbox`, and answers only after the inbox took them, so that the platform retries a
    /// request whose messages were not kept. Answer quickly: platforms time webhooks out in
    /// seconds.
    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        let _ = (request, inbox);
        WebhookResponse::text(
            404,
            format!("the {} channel takes no webhooks", self.name()),
        )
    }

    /// Whether this channel takes WebSocket connections on the gateway's `/<name>/ws` route
    /// (the Pico protocol).
    fn takes_sockets(&self) -> bool {
        false
    }

    /// Decides on a WebSocket upgrade request to `/<name>/ws` before the gateway answers it:
    /// the channel authenticates the client itself (the gateway's key does not apply there) and
    /// checks its limits. `Err` is the HTTP answer that refuses the upgrade; `Ok` is the session
    /// the gateway then runs over the upgraded connection. Messages go to `inbox`.
    async fn socket(
        &self,
        request: WebhookRequest,
        inbox: Arc<dyn Inbox>,
    ) -> Result<Box<dyn SocketSession>, WebhookResponse> {
        let _ = (request, inbox);
        Err(WebhookResponse::text(
            404,
            format!("the {} channel takes no WebSocket connections", self.name()),
        ))
    }

    /// Answer text of a turn in `chat_id` as the agent writes it (a delta, in order), for
    /// channels that show answers as they grow; an empty `delta` says a turn's answer begins
    /// (what streamed before, say of a cancelled turn, is over). The whole answer still arrives
    /// through [`Channel::send`] when the turn ends. Called from the turn itself: it must not
    /// block (queue the text); nothing by default.
    fn stream_text(&self, chat_id: &str, delta: &str) {
        let _ = (chat_id, delta);
    }
}
