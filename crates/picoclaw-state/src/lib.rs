//! Durable state: the [`SessionStore`], [`UsageStore`] and [`MemoryStore`] traits, a SQLite
//! implementation of all of them ([`SqliteStore`]: sqlx, WAL, embedded migrations, FTS5 for
//! memory search) and an in-memory one ([`InMemoryStore`]) for tests and embedders.
//!
//! [`WorkspaceMemory`] keeps long-term memory the way the original PicoClaw lays it out in the
//! workspace (`memory/MEMORY.md`, `memory/YYYYMM/YYYYMMDD.md`) and indexes it for search.
//!
//! With the `test-support` feature, [`conformance`] holds the behaviour every backend must show;
//! both backends here run it in their tests, and future ones (PostgreSQL) run it too.

#![warn(clippy::unwrap_used, clippy::expect_used)]

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod cron;
mod in_memory;
mod in_memory_runtime;
mod memory;
mod runtime;
mod session;
mod sqlite;
mod sqlite_memory;
mod sqlite_runtime;
mod usage;
mod workspace_memory;

pub use chrono::NaiveDate;
pub use cron::{
    CronJob, CronJobState, CronPayload, CronStore, MIN_EVERY_MS, Schedule, new_job_id, now_ms,
};
pub use in_memory::InMemoryStore;
pub use memory::{IndexedSource, MemoryHit, MemoryNote, MemoryStore, query_terms};
pub use runtime::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
pub use session::{Session, SessionInfo, SessionStore, StateError};
pub use sqlite::SqliteStore;
pub use usage::{GroupBy, UsageRecord, UsageRow, UsageStore};
pub use workspace_memory::{
    LONG_TERM_FILE, MAX_ENTRY_CHARS, MEMORY_DIR, Remembered, SyncReport, WorkspaceMemory,
    daily_source, split_notes,
};

/// Now, as the RFC 3339 text both backends store (UTC, milliseconds).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
