//! The conversation vocabulary shared by every picoclaw crate: chat messages and their content
//! parts, tool calls and tool specs, token usage, session and channel keys, and `Secret<T>`.
//!
//! This crate does no IO; serde is its only dependency of note.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod message;
mod secret;

pub use message::{ChatMessage, ContentPart, FinishReason, Role, ToolCall, ToolSpec, Usage};
pub use secret::{Secret, mask};

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one conversation: `channel:chat` (for example `telegram:12345` or `cli:default`).
///
/// Any non-empty string is accepted; channels choose how fine-grained their keys are (per chat,
/// per thread, per user).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionKey(String);

impl SessionKey {
    /// Wraps a key. Surrounding whitespace is trimmed; an empty key becomes `default`.
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        let trimmed = key.trim();
        if trimmed.is_empty() {
            Self("default".to_owned())
        } else if trimmed.len() == key.len() {
            Self(key)
        } else {
            Self(trimmed.to_owned())
        }
    }

    /// Builds the conventional `channel:chat_id` key.
    pub fn for_chat(channel: &ChannelId, chat_id: &str) -> Self {
        Self::new(format!("{}:{chat_id}", channel.as_str()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SessionKey {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for SessionKey {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// The name of a channel (`telegram`, `slack`, `cli`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(String);

impl ChannelId {
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ChannelId {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for ChannelId {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_trims_and_defaults() {
        assert_eq!(SessionKey::new("  cli:x ").as_str(), "cli:x");
        assert_eq!(SessionKey::new("   ").as_str(), "default");
        let ch = ChannelId::new("telegram");
        assert_eq!(SessionKey::for_chat(&ch, "42").as_str(), "telegram:42");
    }
}
