//! The `MemoryStore` trait: a full-text index over long-term memory notes.
//!
//! The notes themselves live in the workspace as Markdown (see `picoclaw_state::WorkspaceMemory`);
//! the store only indexes them, by source file, so it can always be rebuilt from the files.

use super::StateError;
use async_trait::async_trait;
use std::sync::Arc;

/// One indexed note: a list item or paragraph of a memory file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryNote {
    /// The file it came from, relative to the workspace (`memory/MEMORY.md`).
    pub source: String,
    /// 1-based line where the note starts.
    pub line: u32,
    /// The note's text, without list markers.
    pub text: String,
}

impl MemoryNote {
    /// A note from `source`, starting at 1-based `line`.
    pub fn new(source: impl Into<String>, line: u32, text: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            line,
            text: text.into(),
        }
    }
}

/// A search result; a higher score is a better match.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MemoryHit {
    /// The note found.
    pub note: MemoryNote,
    /// How well it matched; the scale depends on the backend, so compare scores only within one
    /// result list.
    pub score: f64,
}

impl MemoryHit {
    /// A note and how well it matched.
    pub fn new(note: MemoryNote, score: f64) -> Self {
        Self { note, score }
    }
}

/// An indexed source file and the fingerprint it was indexed at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexedSource {
    /// The file, relative to the workspace (`memory/MEMORY.md`).
    pub source: String,
    /// The fingerprint given to [`MemoryStore::index_source`]: opaque to the store, it tells an
    /// edited file from an unchanged one.
    pub fingerprint: String,
    /// How many notes the file gave.
    pub notes: u64,
}

impl IndexedSource {
    /// A source, its fingerprint and how many notes it holds.
    pub fn new(source: impl Into<String>, fingerprint: impl Into<String>, notes: u64) -> Self {
        Self {
            source: source.into(),
            fingerprint: fingerprint.into(),
            notes,
        }
    }
}

/// Where memory notes are indexed for search.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Replaces everything indexed for `source` with `notes`, atomically, remembering the
    /// source's `fingerprint` (so unchanged files are not indexed again).
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[MemoryNote],
    ) -> Result<(), StateError>;

    /// Forgets a source and its notes; returns whether it was indexed.
    async fn remove_source(&self, source: &str) -> Result<bool, StateError>;

    /// Every indexed source, sorted by name.
    async fn sources(&self) -> Result<Vec<IndexedSource>, StateError>;

    /// The best `limit` notes for `query`, best first. The query is plain words (any
    /// punctuation or search syntax in it is taken literally, never as operators); a note
    /// matches when it has any of the words, and notes with more of them rank higher. An empty
    /// query finds nothing.
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError>;
}

#[async_trait]
impl<T: MemoryStore + ?Sized> MemoryStore for Arc<T> {
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[MemoryNote],
    ) -> Result<(), StateError> {
        (**self).index_source(source, fingerprint, notes).await
    }
    async fn remove_source(&self, source: &str) -> Result<bool, StateError> {
        (**self).remove_source(source).await
    }
    async fn sources(&self) -> Result<Vec<IndexedSource>, StateError> {
        (**self).sources().await
    }
    async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError> {
        (**self).search(query, limit).await
    }
}
