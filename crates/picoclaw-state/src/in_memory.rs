//! `InMemoryStore`: sessions in a map, gone at exit. For tests and embedders that keep
//! their own persistence.

use crate::{Session, SessionInfo, SessionStore, StateError};
use async_trait::async_trait;
use picoclaw_api::{ChatMessage, SessionKey};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug)]
struct Entry {
    messages: Vec<ChatMessage>,
    /// The oldest messages the summary stands for (skipped by loads).
    hidden: usize,
    summary: Option<String>,
    created_at: String,
    updated_at: String,
    revision: u64,
}

#[derive(Debug, Default)]
struct Sessions {
    map: HashMap<SessionKey, Entry>,
    revision: u64,
}

impl Sessions {
    fn touch(&mut self, key: &SessionKey) -> &mut Entry {
        self.revision += 1;
        let revision = self.revision;
        let now = crate::now_rfc3339();
        let entry = self.map.entry(key.clone()).or_insert_with(|| Entry {
            messages: Vec::new(),
            hidden: 0,
            summary: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            revision,
        });
        entry.updated_at = now;
        entry.revision = revision;
        entry
    }
}

/// An in-memory [`SessionStore`].
#[derive(Debug, Default)]
pub struct InMemoryStore {
    sessions: Mutex<Sessions>,
    usage: Mutex<Vec<crate::UsageRecord>>,
    /// Memory index: source → (fingerprint, notes).
    notes: Mutex<std::collections::BTreeMap<String, (String, Vec<crate::MemoryNote>)>>,
    /// Cron jobs, key/values, journal, outbox, leases.
    pub(crate) runtime: Mutex<crate::in_memory_runtime::RuntimeState>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock cannot leave a half-written entry behind (every change
        // is a single push/assignment), so a poisoned map is still consistent.
        match self.sessions.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[async_trait]
impl SessionStore for InMemoryStore {
    async fn load(&self, key: &SessionKey, limit: Option<usize>) -> Result<Session, StateError> {
        let sessions = self.lock();
        Ok(match sessions.map.get(key) {
            Some(entry) => {
                let visible = &entry.messages[entry.hidden.min(entry.messages.len())..];
                let skip = limit.map_or(0, |l| visible.len().saturating_sub(l));
                Session::new(key.clone(), visible[skip..].to_vec(), entry.summary.clone())
            }
            None => Session::new(key.clone(), Vec::new(), None),
        })
    }

    async fn append(&self, key: &SessionKey, msgs: &[ChatMessage]) -> Result<(), StateError> {
        let mut sessions = self.lock();
        sessions.touch(key).messages.extend_from_slice(msgs);
        Ok(())
    }

    async fn set_summary(&self, key: &SessionKey, summary: Option<&str>) -> Result<(), StateError> {
        let mut sessions = self.lock();
        sessions.touch(key).summary = summary.map(str::to_owned);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, StateError> {
        let sessions = self.lock();
        let mut entries: Vec<(&SessionKey, &Entry)> = sessions.map.iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1.revision));
        Ok(entries
            .into_iter()
            .map(|(key, e)| {
                SessionInfo::new(
                    key.clone(),
                    e.messages.len() as u64,
                    e.created_at.clone(),
                    e.updated_at.clone(),
                )
            })
            .collect())
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StateError> {
        Ok(self.lock().map.remove(key).is_some())
    }

    async fn compact(
        &self,
        key: &SessionKey,
        summary: &str,
        keep_last: usize,
    ) -> Result<(), StateError> {
        let mut sessions = self.lock();
        let entry = sessions.touch(key);
        entry.hidden = entry
            .messages
            .len()
            .saturating_sub(keep_last)
            .max(entry.hidden);
        entry.summary = Some(summary.to_owned());
        Ok(())
    }
}

#[async_trait]
impl crate::UsageStore for InMemoryStore {
    async fn record(&self, record: &crate::UsageRecord) -> Result<(), StateError> {
        let mut usage = match self.usage.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        usage.push(record.clone());
        Ok(())
    }

    async fn summary(
        &self,
        since: Option<&str>,
        by: crate::GroupBy,
    ) -> Result<Vec<crate::UsageRow>, StateError> {
        let usage = match self.usage.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        Ok(crate::usage::summarize(usage.iter(), since, by))
    }
}

pub(crate) fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[async_trait]
impl crate::MemoryStore for InMemoryStore {
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[crate::MemoryNote],
    ) -> Result<(), StateError> {
        relock(&self.notes).insert(source.to_owned(), (fingerprint.to_owned(), notes.to_vec()));
        Ok(())
    }

    async fn remove_source(&self, source: &str) -> Result<bool, StateError> {
        Ok(relock(&self.notes).remove(source).is_some())
    }

    async fn sources(&self) -> Result<Vec<crate::IndexedSource>, StateError> {
        Ok(relock(&self.notes)
            .iter()
            .map(|(source, (fingerprint, notes))| {
                crate::IndexedSource::new(source.clone(), fingerprint.clone(), notes.len() as u64)
            })
            .collect())
    }

    async fn search(&self, query: &str, limit: usize) -> Result<Vec<crate::MemoryHit>, StateError> {
        let terms = crate::memory::query_terms(query);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let notes = relock(&self.notes);
        let mut hits: Vec<crate::MemoryHit> = notes
            .values()
            .flat_map(|(_, notes)| notes.iter())
            .filter_map(|note| {
                let score = crate::memory::simple_score(&terms, &note.text);
                (score > 0.0).then(|| crate::MemoryHit::new(note.clone(), score))
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(limit);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::session_store_suite(InMemoryStore::new).await;
        crate::conformance::usage_store_suite(&InMemoryStore::new()).await;
        crate::conformance::memory_store_suite(&InMemoryStore::new()).await;
    }
}
