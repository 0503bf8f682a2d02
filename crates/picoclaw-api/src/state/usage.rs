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
    /// The conversation the call was made for.
    pub session: SessionKey,
    /// `provider/model` as configured (or as the vendor named it).
    pub model: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The tokens the call used.
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

    /// Dates the record `day` (`YYYY-MM-DD`, UTC) instead of today.
    pub fn on_day(mut self, day: impl Into<String>) -> Self {
        self.day = day.into();
        self
    }
}

/// How to group a usage summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// One row per session key.
    Session,
    /// One row per model (`provider/model`).
    Model,
    /// One row per day (`YYYY-MM-DD`, UTC).
    Day,
}

/// One line of a summary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageRow {
    /// The session key, model or day this row sums.
    pub group: String,
    /// How many model calls.
    pub calls: u64,
    /// Prompt tokens, summed.
    pub prompt_tokens: u64,
    /// Completion tokens, summed.
    pub completion_tokens: u64,
    /// Prompt tokens served from the vendor's cache, summed.
    pub cached_tokens: u64,
    /// Completion tokens the models spent reasoning, summed. They are part of
    /// `completion_tokens` (as OpenAI counts them), not in addition to it.
    pub reasoning_tokens: u64,
    /// The models in the group (for pricing a session or a day), sorted by model name.
    pub models: Vec<ModelUsage>,
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
            reasoning_tokens: 0,
            models: Vec::new(),
        }
    }
}

/// One model's share of a [`UsageRow`]: its tokens within the row's group.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct ModelUsage {
    /// `provider/model` as recorded.
    pub model: String,
    /// Prompt tokens, summed.
    pub prompt_tokens: u64,
    /// Completion tokens, summed (reasoning tokens included).
    pub completion_tokens: u64,
    /// Prompt tokens served from the vendor's cache, summed.
    pub cached_tokens: u64,
    /// Completion tokens spent reasoning, summed; part of `completion_tokens`.
    pub reasoning_tokens: u64,
}

impl ModelUsage {
    /// `model` with `prompt` tokens in and `completion` tokens out, none cached or reasoning.
    pub fn new(model: impl Into<String>, prompt: u64, completion: u64) -> Self {
        Self {
            model: model.into(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: 0,
            reasoning_tokens: 0,
        }
    }

    /// Prompt tokens served from the vendor's cache.
    pub fn with_cached(mut self, cached: u64) -> Self {
        self.cached_tokens = cached;
        self
    }

    /// Completion tokens spent reasoning (part of the completion tokens).
    pub fn with_reasoning(mut self, reasoning: u64) -> Self {
        self.reasoning_tokens = reasoning;
        self
    }
}

/// Where usage is kept.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds one call's usage to the ledger.
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
