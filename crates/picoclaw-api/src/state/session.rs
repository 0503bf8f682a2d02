//! The `SessionStore` trait: conversation history that survives restarts.

use crate::{ChatMessage, SessionKey};
use async_trait::async_trait;
use std::sync::Arc;

/// Errors from a state backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The database could not be opened or migrated; the message says where and what to do.
    #[error("{message}")]
    Open {
        /// What failed, where, and what to do about it.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A query failed.
    #[error("state database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot do this (an older or minimal store).
    #[error("the session store does not support {0}")]
    Unsupported(&'static str),
    /// A file of the workspace (memory notes) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read or written.
        path: std::path::PathBuf,
        /// The underlying IO error.
        #[source]
        source: std::io::Error,
    },
    /// The caller asked for something that cannot be stored (an empty note, say).
    #[error("{0}")]
    Invalid(String),
    /// A stored row could not be decoded.
    #[error("corrupt stored data in session '{session}': {message}")]
    Corrupt {
        /// The session the row belongs to (or another record, such as `cron job <id>`).
        session: String,
        /// What does not decode, and why.
        message: String,
    },
}

/// A conversation: its messages in order (oldest first) and the summary of older, compacted turns.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Session {
    /// The conversation's key; `None` only in a `Session::default()`.
    pub key: Option<SessionKey>,
    /// The messages, oldest first (after compaction, only those the summary does not stand for).
    pub messages: Vec<ChatMessage>,
    /// The summary of older, compacted messages; `None` when there is none.
    pub summary: Option<String>,
}

impl Session {
    /// A session with its key, messages and summary, as a backend loads it.
    pub fn new(key: SessionKey, messages: Vec<ChatMessage>, summary: Option<String>) -> Self {
        Self {
            key: Some(key),
            messages,
            summary,
        }
    }
}

/// One line of a session listing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The conversation's key.
    pub key: SessionKey,
    /// How many messages it holds (compacted ones included).
    pub message_count: u64,
    /// When the session was created, RFC 3339.
    pub created_at: String,
    /// When the session last changed (messages appended, summary set), RFC 3339.
    pub updated_at: String,
}

impl SessionInfo {
    /// A listing line, as a backend reads it.
    pub fn new(
        key: SessionKey,
        message_count: u64,
        created_at: String,
        updated_at: String,
    ) -> Self {
        Self {
            key,
            message_count,
            created_at,
            updated_at,
        }
    }
}

/// Where conversations are kept.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The session's messages, oldest first; with `limit`, only the newest `limit` of them. A key
    /// never seen before loads as an empty session.
    async fn load(&self, key: &SessionKey, limit: Option<usize>) -> Result<Session, StateError>;

    /// Appends one turn's messages atomically: all of them are stored, or none.
    async fn append(&self, key: &SessionKey, msgs: &[ChatMessage]) -> Result<(), StateError>;

    /// Sets (or clears) the summary of compacted history.
    async fn set_summary(&self, key: &SessionKey, summary: Option<&str>) -> Result<(), StateError>;

    /// All sessions, most recently updated first.
    async fn list(&self) -> Result<Vec<SessionInfo>, StateError>;

    /// Deletes a session; returns whether it existed.
    async fn delete(&self, key: &SessionKey) -> Result<bool, StateError>;

    /// Compaction: `summary` now stands for every message of the session except the newest
    /// `keep_last`; later loads return the summary and those messages only. The compacted
    /// messages stay stored.
    async fn compact(
        &self,
        key: &SessionKey,
        summary: &str,
        keep_last: usize,
    ) -> Result<(), StateError> {
        let _ = (key, summary, keep_last);
        Err(StateError::Unsupported("compaction"))
    }
}

#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for Arc<T> {
    async fn load(&self, key: &SessionKey, limit: Option<usize>) -> Result<Session, StateError> {
        (**self).load(key, limit).await
    }
    async fn append(&self, key: &SessionKey, msgs: &[ChatMessage]) -> Result<(), StateError> {
        (**self).append(key, msgs).await
    }
    async fn set_summary(&self, key: &SessionKey, summary: Option<&str>) -> Result<(), StateError> {
        (**self).set_summary(key, summary).await
    }
    async fn list(&self) -> Result<Vec<SessionInfo>, StateError> {
        (**self).list().await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StateError> {
        (**self).delete(key).await
    }
    async fn compact(
        &self,
        key: &SessionKey,
        summary: &str,
        keep_last: usize,
    ) -> Result<(), StateError> {
        (**self).compact(key, summary, keep_last).await
    }
}
