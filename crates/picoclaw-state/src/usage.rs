//! The usage ledger: tokens of every model call, recorded per session, model and day, and
//! summed for `picoclaw usage`.

use crate::session::StateError;
use async_trait::async_trait;
use picoclaw_types::{SessionKey, Usage};
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

/// Builds summary rows from (group, model, calls, prompt, completion, cached) sums.
pub(crate) fn assemble(
    parts: Vec<(String, String, u64, u64, u64, u64)>,
    by: GroupBy,
) -> Vec<UsageRow> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, UsageRow> = BTreeMap::new();
    for (group, model, calls, p, c, k) in parts {
        let row = groups.entry(group.clone()).or_insert_with(|| UsageRow {
            group,
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            models: Vec::new(),
        });
        row.calls += calls;
        row.prompt_tokens += p;
        row.completion_tokens += c;
        row.cached_tokens += k;
        row.models.push((model, p, c, k));
    }
    let mut rows: Vec<UsageRow> = groups.into_values().collect();
    for row in &mut rows {
        row.models.sort();
    }
    match by {
        GroupBy::Day => rows.sort_by(|a, b| b.group.cmp(&a.group)),
        _ => rows.sort_by(|a, b| {
            (b.prompt_tokens + b.completion_tokens)
                .cmp(&(a.prompt_tokens + a.completion_tokens))
                .then_with(|| a.group.cmp(&b.group))
        }),
    }
    rows
}

/// Groups raw records into rows (the in-memory backend).
pub(crate) fn summarize<'a>(
    records: impl Iterator<Item = &'a UsageRecord>,
    since: Option<&str>,
    by: GroupBy,
) -> Vec<UsageRow> {
    let mut sums: std::collections::BTreeMap<(String, String), (u64, u64, u64, u64)> =
        std::collections::BTreeMap::new();
    for r in records.filter(|r| since.is_none_or(|s| r.day.as_str() >= s)) {
        let group = match by {
            GroupBy::Session => r.session.as_str().to_owned(),
            GroupBy::Model => r.model.clone(),
            GroupBy::Day => r.day.clone(),
        };
        let e = sums.entry((group, r.model.clone())).or_default();
        e.0 += 1;
        e.1 += r.usage.prompt_tokens;
        e.2 += r.usage.completion_tokens;
        e.3 += r.usage.cached_tokens;
    }
    assemble(
        sums.into_iter()
            .map(|((g, m), (n, p, c, k))| (g, m, n, p, c, k))
            .collect(),
        by,
    )
}
