//! Conformance checks for [`UsageStore`]: the usage ledger's sums and groupings.

use crate::{GroupBy, ModelUsage, UsageRecord, UsageStore};
use picoclaw_api::SessionKey;

/// The usage ledger's behaviour: records are summed per session, model and day, `since` filters
/// by day, rows come largest first (days newest first), each row lists its models, and
/// reasoning tokens are kept and summed like the others.
pub async fn usage_store_suite(store: &impl UsageStore) {
    let u = |p, c, k| picoclaw_api::Usage::new(p, c).with_cached(k);
    let rec =
        |s: &str, m: &str, d: &str, usage| UsageRecord::now(SessionKey::new(s), m, usage).on_day(d);
    store
        .record(&rec("cli:a", "openai/gpt-4o", "2026-11-01", u(100, 10, 50)))
        .await
        .unwrap();
    store
        .record(&rec(
            "cli:a",
            "openai/gpt-4o",
            "2026-11-02",
            u(200, 20, 0).with_reasoning(12),
        ))
        .await
        .unwrap();
    store
        .record(&rec(
            "cli:b",
            "anthropic/claude",
            "2026-11-02",
            u(1000, 5, 0),
        ))
        .await
        .unwrap();
    store
        .record(&rec("cli:a", "anthropic/claude", "2026-11-03", u(1, 1, 0)))
        .await
        .unwrap();
    store
        .record(&rec(
            "cli:a",
            "openai/gpt-4o",
            "2026-11-03",
            u(0, 7, 0).with_reasoning(5),
        ))
        .await
        .unwrap();

    let by_session = store.summary(None, GroupBy::Session).await.unwrap();
    assert_eq!(by_session[0].group, "cli:b", "largest first");
    let a = &by_session[1];
    assert_eq!(
        (
            a.calls,
            a.prompt_tokens,
            a.completion_tokens,
            a.cached_tokens,
            a.reasoning_tokens
        ),
        (4, 301, 38, 50, 17)
    );
    assert_eq!(
        a.models,
        vec![
            ModelUsage::new("anthropic/claude", 1, 1),
            ModelUsage::new("openai/gpt-4o", 300, 37)
                .with_cached(50)
                .with_reasoning(17)
        ]
    );
    assert_eq!(by_session[0].reasoning_tokens, 0, "none recorded for cli:b");

    let by_model = store
        .summary(Some("2026-11-02"), GroupBy::Model)
        .await
        .unwrap();
    let names: Vec<&str> = by_model.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(names, ["anthropic/claude", "openai/gpt-4o"]);
    assert_eq!(by_model[1].prompt_tokens, 200, "2026-11-01 is before since");
    assert_eq!(
        (by_model[1].completion_tokens, by_model[1].reasoning_tokens),
        (27, 17)
    );
    assert_eq!(by_model[0].reasoning_tokens, 0);

    let by_day = store.summary(None, GroupBy::Day).await.unwrap();
    let days: Vec<&str> = by_day.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(days, ["2026-11-03", "2026-11-02", "2026-11-01"]);
    let reasoning: Vec<u64> = by_day.iter().map(|r| r.reasoning_tokens).collect();
    assert_eq!(reasoning, [5, 12, 0]);
    assert_eq!(
        by_day[0].models,
        vec![
            ModelUsage::new("anthropic/claude", 1, 1),
            ModelUsage::new("openai/gpt-4o", 0, 7).with_reasoning(5)
        ]
    );
    assert!(
        store
            .summary(Some("2030-01-01"), GroupBy::Day)
            .await
            .unwrap()
            .is_empty()
    );
}
