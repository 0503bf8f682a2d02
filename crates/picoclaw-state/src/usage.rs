//! The usage ledger: tokens of every model call, recorded per session, model and day, and
//! summed for `picoclaw usage`.

use picoclaw_api::state::{GroupBy, ModelUsage, UsageRecord, UsageRow};

/// Builds summary rows from `(group, calls, the model's sums)` parts, one per group and model.
pub(crate) fn assemble(parts: Vec<(String, u64, ModelUsage)>, by: GroupBy) -> Vec<UsageRow> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, UsageRow> = BTreeMap::new();
    for (group, calls, m) in parts {
        let row = groups
            .entry(group.clone())
            .or_insert_with(|| UsageRow::new(group));
        row.calls += calls;
        row.prompt_tokens += m.prompt_tokens;
        row.completion_tokens += m.completion_tokens;
        row.cached_tokens += m.cached_tokens;
        row.reasoning_tokens += m.reasoning_tokens;
        row.models.push(m);
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
    let mut sums: std::collections::BTreeMap<(String, String), (u64, ModelUsage)> =
        std::collections::BTreeMap::new();
    for r in records.filter(|r| since.is_none_or(|s| r.day.as_str() >= s)) {
        let group = match by {
            GroupBy::Session => r.session.as_str().to_owned(),
            GroupBy::Model => r.model.clone(),
            GroupBy::Day => r.day.clone(),
        };
        let (calls, m) = sums
            .entry((group, r.model.clone()))
            .or_insert_with(|| (0, ModelUsage::new(r.model.clone(), 0, 0)));
        *calls += 1;
        m.prompt_tokens += r.usage.prompt_tokens;
        m.completion_tokens += r.usage.completion_tokens;
        m.cached_tokens += r.usage.cached_tokens;
        m.reasoning_tokens += r.usage.reasoning_tokens;
    }
    assemble(
        sums.into_iter()
            .map(|((group, _), (calls, m))| (group, calls, m))
            .collect(),
        by,
    )
}
