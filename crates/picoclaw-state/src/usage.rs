//! The usage ledger: tokens of every model call, recorded per session, model and day, and
//! summed for `picoclaw usage`.

use picoclaw_api::state::{GroupBy, UsageRecord, UsageRow};

/// Builds summary rows from (group, model, calls, prompt, completion, cached) sums.
pub(crate) fn assemble(
    parts: Vec<(String, String, u64, u64, u64, u64)>,
    by: GroupBy,
) -> Vec<UsageRow> {
    use std::collections::BTreeMap;
    let mut groups: BTreeMap<String, UsageRow> = BTreeMap::new();
    for (group, model, calls, p, c, k) in parts {
        let row = groups
            .entry(group.clone())
            .or_insert_with(|| UsageRow::new(group));
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
