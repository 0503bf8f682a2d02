//! The stable vocabulary and traits of picoclaw, and nothing else: what every other picoclaw
//! crate implements, and what a crate from outside the workspace implements to plug into it.
//!
//! - the conversation: [`ChatMessage`] and its parts, [`ToolCall`], [`ToolSpec`], [`Usage`],
//!   [`SessionKey`], [`ChannelId`], [`Secret`];
//! - [`provider`]: [`LlmProvider`], a model backend, with its request, response and stream types
//!   and [`ProviderError`];
//! - [`tool`]: [`Tool`], something the model can call, and [`TypedTool`], a tool whose
//!   arguments are a Rust type with a generated JSON schema;
//! - [`channel`]: [`Channel`], a chat platform, the [`Inbox`] it hands messages to, and the
//!   messages themselves;
//! - [`state`]: the stores (sessions, usage, memory index, journal, outbox, leases) and
//!   [`StateError`];
//! - [`auth`]: [`TokenSource`], where bearer tokens come from.
//!
//! This crate does no IO. Its dependencies are serde, serde_json, async-trait, futures-core,
//! thiserror, schemars, chrono and tokio-util (for `CancellationToken`); the package count it
//! compiles is in docs/PERFORMANCE.md.

#![warn(missing_docs)]

pub mod auth;
pub mod channel;
mod message;
pub mod provider;
mod secret;
pub mod state;
pub mod tool;

pub use auth::{AccessToken, AuthError, StaticToken, TokenSource};
pub use channel::{
    Button, Channel, ChannelError, InboundMessage, Inbox, InboxError, MediaKind, MediaRef,
    OutboundMessage, SocketSession, SocketStream, WebhookRequest, WebhookResponse, buttons_as_text,
};
pub use message::{ChatMessage, ContentPart, FinishReason, Role, ToolCall, ToolSpec, Usage};
pub use provider::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, StreamEvent,
};
pub use secret::{Secret, mask};
pub use state::StateError;
pub use tool::{Tool, ToolContext, ToolOutput, TurnOrigin, Typed, TypedTool};

/// The crates the traits' signatures name, at the versions this crate was built with.
pub mod reexports {
    pub use async_trait;
    pub use chrono;
    pub use futures_core;
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use tokio_util;
}

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

    /// The key as text (`telegram:12345`).
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
    /// Wraps a channel name as given (no trimming or case folding).
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name as text (`telegram`).
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
