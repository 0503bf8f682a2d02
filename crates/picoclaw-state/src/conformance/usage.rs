//! Conformance checks for [`UsageStore`]: the usage ledger's sums and groupings.

use crate::{GroupBy, UsageRecord, UsageStore};
use picoclaw_api::SessionKey;

/// The usage ledger's behaviour: records are summed per session, model and day, `since` filters
/// by day, rows come largest first (days newest first), and each row lists its models.
pub async fn usage_store_suite(store: &impl UsageStore) {
    let u = |p, c, k| picoclaw_api::Usage::new(p, c).with_cached(k);
    let rec =
        |s: &str, m: &str, d: &str, usage| UsageRecord::now(SessionKey::new(s), m, usage).on_day(d);
    store
        .record(&rec("cli:a", "openai/gpt-4o", "2026-11-01", u(100, 10, 50)))
        .await
        .unwrap();
    store
        .record(&rec("cli:a", "openai/gpt-4o", "2026-11-02", u(200, 20, 0)))
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

    let by_session = store.summary(None, GroupBy::Session).await.unwrap();
    assert_eq!(by_session[0].group, "cli:b", "largest first");
    let a = &by_session[1];
    assert_eq!(
        (
            a.calls,
            a.prompt_tokens,
            a.completion_tokens,
            a.cached_tokens
        ),
        (3, 301, 31, 50)
    );
    assert_eq!(
        a.models,
        vec![
            ("anthropic/claude".into(), 1, 1, 0),
            ("openai/gpt-4o".into(), 300, 30, 50)
        ]
    );

    let by_model = store
        .summary(Some("2026-11-02"), GroupBy::Model)
        .await
        .unwrap();
    let names: Vec<&str> = by_model.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(names, ["anthropic/claude", "openai/gpt-4o"]);
    assert_eq!(by_model[1].prompt_tokens, 200, "2026-11-01 is before since");

    let by_day = store.summary(None, GroupBy::Day).await.unwrap();
    let days: Vec<&str> = by_day.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(days, ["2026-11-03", "2026-11-02", "2026-11-01"]);
    assert!(
        store
            .summary(Some("2030-01-01"), GroupBy::Day)
            .await
            .unwrap()
            .is_empty()
    );
}
