//! The envelopes that travel on the bus.

use chrono::{DateTime, Utc};
use picoclaw_types::{ChannelId, SessionKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What kind of file a [`MediaRef`] points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MediaKind {
    Image,
    Audio,
    Video,
    Document,
}

/// A file attached to a message: a local path (downloaded by the channel) or a URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MediaRef {
    pub kind: MediaKind,
    /// A local file path or an `https://` URL.
    pub location: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl MediaRef {
    pub fn new(kind: MediaKind, location: impl Into<String>) -> Self {
        Self {
            kind,
            location: location.into(),
            mime: None,
            name: None,
        }
    }

    pub fn with_mime(mut self, mime: impl Into<String>) -> Self {
        self.mime = Some(mime.into());
        self
    }

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
    pub channel: ChannelId,
    pub chat_id: String,
    pub sender_id: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
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

    pub fn with_session_key(mut self, key: SessionKey) -> Self {
        self.session_key = key;
        self
    }

    pub fn with_media(mut self, media: MediaRef) -> Self {
        self.media.push(media);
        self
    }

    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

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
    pub text: String,
    pub data: String,
}

impl Button {
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
    pub channel: ChannelId,
    pub chat_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<SessionKey>,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<MediaRef>,
    /// The channel's id of the message this answers, to thread the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Buttons under the message, in rows (rendered natively where the platform has them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buttons: Vec<Vec<Button>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl OutboundMessage {
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

    pub fn with_media(mut self, media: MediaRef) -> Self {
        self.media.push(media);
        self
    }

    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}
