//! Durable state: the [`SessionStore`] trait, a SQLite implementation (sqlx, WAL, embedded
//! migrations) and an in-memory one for tests and embedders.
//!
//! With the `test-support` feature, [`conformance`] holds the behaviour every backend must show;
//! both backends here run it in their tests, and future ones (PostgreSQL) run it too.

#![warn(clippy::unwrap_used, clippy::expect_used)]

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod memory;
mod session;
mod sqlite;
mod usage;

pub use memory::MemorySessionStore;
pub use session::{Session, SessionInfo, SessionStore, StateError};
pub use sqlite::SqliteSessionStore;
pub use usage::{GroupBy, UsageRecord, UsageRow, UsageStore};

/// Now, as the RFC 3339 text both backends store (UTC, milliseconds).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
