//! The usage ledger: tokens of every model call, recorded per session, model and day, and
//! summed for `picoclaw usage`.

use super::StateError;
use crate::{SessionKey, Usage};
use async_trait::async_trait;
use std::sync::Arc;

/// One model call's usage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRecord {
    pub session: SessionKey,
    /// `provider/model` as configured (or as the vendor named it).
    pub model: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub usage: Usage,
}

impl UsageRecord {
    /// A record dated today (UTC).
    pub fn now(session: SessionKey, model: impl Into<String>, usage: Usage) -> Self {
        Self {
            session,
            model: model.into(),
            day: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            usage,
        }
    }

    pub fn on_day(mut self, day: impl Into<String>) -> Self {
        self.day = day.into();
        self
    }
}

/// How to group a usage summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    Session,
    Model,
    Day,
}

/// One line of a summary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRow {
    /// The session key, model or day this row sums.
    pub group: String,
    pub calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    /// The models in the group (for pricing a session or a day), sorted.
    pub models: Vec<(String, u64, u64, u64)>,
}

impl UsageRow {
    /// An empty row for `group`, to add calls to.
    pub fn new(group: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            models: Vec::new(),
        }
    }
}

/// Where usage is kept.
#[async_trait]
pub trait UsageStore: Send + Sync {
    async fn record(&self, record: &UsageRecord) -> Result<(), StateError>;

    /// Totals since `since` (`YYYY-MM-DD`, inclusive), grouped, largest first (by day: newest
    /// first).
    async fn summary(&self, since: Option<&str>, by: GroupBy) -> Result<Vec<UsageRow>, StateError>;
}

#[async_trait]
impl<T: UsageStore + ?Sized> UsageStore for Arc<T> {
    async fn record(&self, record: &UsageRecord) -> Result<(), StateError> {
        (**self).record(record).await
    }
    async fn summary(&self, since: Option<&str>, by: GroupBy) -> Result<Vec<UsageRow>, StateError> {
        (**self).summary(since, by).await
    }
}
