//! The stores picoclaw keeps its state in: conversations ([`SessionStore`]), the usage ledger
//! ([`UsageStore`]), the memory index ([`MemoryStore`]), and the runtime stores the gateway
//! needs ([`KvStore`], [`InboundJournal`], [`Outbox`], [`LeaseStore`]), with the error they all
//! return ([`StateError`]).
//!
//! picoclaw-state implements every one of them over SQLite, PostgreSQL and memory. The cron
//! store (`picoclaw_state::CronStore`) stays there: its job model carries the schedule
//! arithmetic (cron expressions, time zones), which this crate does not.

mod memory;
mod runtime;
mod session;
mod usage;

pub use memory::{IndexedSource, MemoryHit, MemoryNote, MemoryStore};
pub use runtime::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
pub use session::{Session, SessionInfo, SessionStore, StateError};
pub use usage::{GroupBy, ModelUsage, UsageRecord, UsageRow, UsageStore};
