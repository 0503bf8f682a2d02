//! The `MemoryStore` trait: a full-text index over long-term memory notes.
//!
//! The notes themselves live in the workspace as Markdown (see [`crate::WorkspaceMemory`]);
//! the store only indexes them, by source file, so it can always be rebuilt from the files.

use crate::session::StateError;
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
    pub text: String,
}

impl MemoryNote {
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
    pub note: MemoryNote,
    pub score: f64,
}

/// An indexed source file and the fingerprint it was indexed at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexedSource {
    pub source: String,
    pub fingerprint: String,
    pub notes: u64,
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

/// At most this many words of a query are searched for.
pub(crate) const MAX_QUERY_TERMS: usize = 24;

/// The words of a query: lower-cased runs of letters and digits, without duplicates, in order.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in query.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word = word.to_lowercase();
        if !terms.contains(&word) {
            terms.push(word);
            if terms.len() == MAX_QUERY_TERMS {
                break;
            }
        }
    }
    terms
}

/// Scores a note against query terms the simple way (the in-memory backend): distinct terms
/// that occur as words, plus a little for repeats, scaled down for long notes.
pub(crate) fn simple_score(terms: &[String], text: &str) -> f64 {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return 0.0;
    }
    let mut distinct = 0.0;
    let mut repeats = 0.0;
    for term in terms {
        let n = words.iter().filter(|w| *w == term).count();
        if n > 0 {
            distinct += 1.0;
            repeats += (n - 1) as f64;
        }
    }
    if distinct == 0.0 {
        return 0.0;
    }
    let length_penalty = 1.0 + (words.len() as f64 / 50.0);
    distinct + (0.1 * repeats) / length_penalty - 0.01 * length_penalty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_terms_are_words_only() {
        assert_eq!(
            query_terms("What's my \"wife's\" BIRTHDAY? -- AND/OR *"),
            ["what", "s", "my", "wife", "birthday", "and", "or"]
        );
        assert!(query_terms("  ?!* ").is_empty());
        assert_eq!(query_terms("tea tea TEA"), ["tea"]);
        assert_eq!(query_terms("生日 café"), ["生日", "café"]);
    }

    #[test]
    fn simple_score_prefers_more_terms() {
        let terms = query_terms("green tea");
        let both = simple_score(&terms, "The user likes green tea");
        let one = simple_score(&terms, "The user likes tea");
        let none = simple_score(&terms, "The user likes coffee");
        assert!(both > one && one > none, "{both} {one} {none}");
        assert_eq!(none, 0.0);
    }
}
