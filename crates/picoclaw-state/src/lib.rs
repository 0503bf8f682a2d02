//! Durable state: the [`SessionStore`], [`UsageStore`] and [`MemoryStore`] traits, a SQLite
//! implementation of all of them ([`SqliteStore`]: sqlx, WAL, embedded migrations, FTS5 for
//! memory search) and an in-memory one ([`InMemoryStore`]) for tests and embedders.
//!
//! [`WorkspaceMemory`] keeps long-term memory the way the original PicoClaw lays it out in the
//! workspace (`memory/MEMORY.md`, `memory/YYYYMM/YYYYMMDD.md`) and indexes it for search.
//!
//! The runtime stores the gateway needs — [`CronStore`], [`KvStore`], [`InboundJournal`],
//! [`Outbox`], [`LeaseStore`] — are implemented by the same backends, and with the `postgres`
//! feature by [`PgStore`] too, for several instances sharing one database. [`open_state`] picks
//! the backend from `state.url`.
//!
//! With the `test-support` feature, `conformance` holds the behaviour every backend must show;
//! every backend here runs it in its tests (PostgreSQL against a real server).

mod backend;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod cron;
mod in_memory;
mod in_memory_runtime;
pub mod legacy;
mod memory;
mod memory_space;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_memory;
#[cfg(feature = "sqlite")]
mod sqlite_runtime;
mod usage;
mod workspace_memory;

pub use backend::{StateBackend, open_state, redact_url};
pub use chrono::NaiveDate;
pub use cron::{
    CronJob, CronJobState, CronPayload, CronStore, MIN_EVERY_MS, NewJob, SCHEDULE_KINDS, Schedule,
    new_job_id, now_ms, parse_schedule, parse_target,
};
pub use in_memory::InMemoryStore;
pub use memory::query_terms;
pub use memory_space::MemorySpace;
pub use picoclaw_api::state::{
    GroupBy, InboundJournal, InboundRecord, IndexedSource, KvStore, LeaseStore, MemoryHit,
    MemoryNote, MemoryStore, ModelUsage, OutboundRecord, Outbox, Session, SessionInfo,
    SessionStore, StateError, UsageRecord, UsageRow, UsageStore,
};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use workspace_memory::{
    LONG_TERM_FILE, MAX_ENTRY_CHARS, MEMORY_DIR, Remembered, SyncReport, WorkspaceMemory,
    daily_source, split_notes,
};

/// Now, as the RFC 3339 text both backends store (UTC, milliseconds).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
