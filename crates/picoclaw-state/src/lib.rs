//! Durable state: the [`SessionStore`] trait, a SQLite implementation (sqlx, WAL, embedded
//! migrations) and an in-memory one for tests and embedders.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod session;

pub use session::{Session, SessionInfo, SessionStore, StateError};
