//! Keeping the store's index in step with the Markdown files under `memory/` (new and changed
//! files indexed, removed ones forgotten, by size and modification time) and searching it.

use super::format::split_notes;
use super::{MEMORY_DIR, SyncReport, WorkspaceMemory, io_err, lock, off_thread};
use crate::MemoryHit;
use crate::StateError;
use std::collections::HashMap;
use std::path::Path;

/// Folder depth searched below `memory/` (`YYYYMM/` is depth 1).
const MAX_DEPTH: usize = 3;

impl WorkspaceMemory {
    /// Brings the index up to date with the files: new and changed files are indexed, removed
    /// ones forgotten.
    pub async fn sync(&self) -> Result<SyncReport, StateError> {
        let _guard = self.lock.lock().await;
        self.sync_locked().await
    }

    async fn sync_locked(&self) -> Result<SyncReport, StateError> {
        let workspace = self.workspace.clone();
        let files = off_thread(move || Ok(find_memory_files(&workspace)))
            .await
            .unwrap_or_default();
        if lock(&self.known).is_none() {
            let indexed: HashMap<String, (String, u64)> = self
                .store
                .sources()
                .await?
                .into_iter()
                .map(|s| (s.source, (s.fingerprint, s.notes)))
                .collect();
            *lock(&self.known) = Some(indexed);
        }
        let (changed, gone) = {
            let known = lock(&self.known);
            let known = known.as_ref().map_or_else(HashMap::new, Clone::clone);
            let changed: Vec<(&String, &String)> = files
                .iter()
                .filter(|(source, fp)| known.get(*source).map(|k| &k.0) != Some(*fp))
                .collect();
            let gone: Vec<String> = known
                .keys()
                .filter(|s| !files.contains_key(*s))
                .cloned()
                .collect();
            (changed, gone)
        };
        let report = SyncReport {
            indexed: changed.len(),
            unchanged: files.len() - changed.len(),
            removed: gone.len(),
        };
        for (source, fingerprint) in changed {
            self.index_file(source, fingerprint).await?;
        }
        for source in &gone {
            self.forget(source).await?;
        }
        if report.indexed + report.removed > 0 {
            tracing::debug!(?report, "memory index updated");
        }
        Ok(report)
    }

    /// The Markdown files under `memory/` (relative to the workspace, sorted): MEMORY.md and the
    /// daily notes.
    pub async fn files(&self) -> Vec<String> {
        let workspace = self.workspace.clone();
        let mut files: Vec<String> = off_thread(move || Ok(find_memory_files(&workspace)))
            .await
            .unwrap_or_default()
            .into_keys()
            .collect();
        files.sort();
        files
    }

    async fn forget(&self, source: &str) -> Result<(), StateError> {
        self.store.remove_source(source).await?;
        if let Some(known) = lock(&self.known).as_mut() {
            known.remove(source);
        }
        Ok(())
    }

    async fn index_file(&self, source: &str, fingerprint: &str) -> Result<(), StateError> {
        let path = self.workspace.join(source);
        let text = match self.read_capped(&path).await {
            Ok(text) => text,
            // Gone between the listing and now: forget it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.forget(source).await,
            Err(e) => return Err(io_err(&path)(e)),
        };
        let notes = split_notes(source, &text);
        self.store.index_source(source, fingerprint, &notes).await?;
        if let Some(known) = lock(&self.known).as_mut() {
            known.insert(
                source.to_owned(),
                (fingerprint.to_owned(), notes.len() as u64),
            );
        }
        Ok(())
    }

    /// Notes indexed from `source` (as of the last sync).
    pub(super) fn note_count(&self, source: &str) -> u64 {
        lock(&self.known)
            .as_ref()
            .and_then(|k| k.get(source).map(|e| e.1))
            .unwrap_or(0)
    }

    /// Re-indexes one file right after we wrote it.
    pub(super) async fn reindex(&self, source: &str) -> Result<(), StateError> {
        let path = self.workspace.join(source);
        let meta = self.metadata(&path).await.map_err(io_err(&path))?;
        self.index_file(source, &fingerprint(&meta)).await
    }

    /// The notes best matching `query`, best first (the index is synced first).
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError> {
        self.sync().await?;
        self.store.search(query, limit).await
    }
}

/// Size and modification time: what tells an edited file from an unchanged one.
fn fingerprint(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{}:{mtime}", meta.len())
}

/// Every Markdown file under `memory/` (not following symlinks), with its fingerprint, keyed by
/// its path relative to the workspace with `/` separators.
fn find_memory_files(workspace: &Path) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let mut stack = vec![(workspace.join(MEMORY_DIR), MEMORY_DIR.to_owned(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let child = format!("{rel}/{name}");
            if meta.is_dir() && depth < MAX_DEPTH {
                stack.push((entry.path(), child, depth + 1));
            } else if meta.is_file() && name.to_ascii_lowercase().ends_with(".md") {
                found.insert(child, fingerprint(&meta));
            }
        }
    }
    found
}
