//! The behaviour every [`SessionStore`] backend must show. Backends call
//! [`session_store_suite`] (or the async-factory form) from their tests with a factory that
//! makes a fresh, empty store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::SessionStore;
use crate::{GroupBy, UsageRecord, UsageStore};
use picoclaw_api::{ChatMessage, SessionKey, ToolCall};
use std::future::Future;

/// Runs every check, each on a fresh store from `make`.
pub async fn session_store_suite<S: SessionStore>(make: impl Fn() -> S) {
    session_store_suite_async(|| std::future::ready(make())).await;
}

/// Like [`session_store_suite`] for stores whose constructor is async.
pub async fn session_store_suite_async<S, F>(make: impl Fn() -> F)
where
    S: SessionStore,
    F: Future<Output = S>,
{
    empty_load(&make().await).await;
    append_and_load_in_order(&make().await).await;
    limit_keeps_newest(&make().await).await;
    summary_set_and_clear(&make().await).await;
    list_order_and_counts(&make().await).await;
    delete(&make().await).await;
    round_trips_rich_messages(&make().await).await;
    keys_are_independent(&make().await).await;
    compaction_hides_the_summarised_messages(&make().await).await;
}

async fn compaction_hides_the_summarised_messages(store: &impl SessionStore) {
    let k = key("cli:long");
    let msgs: Vec<ChatMessage> = (0..10)
        .map(|i| ChatMessage::user(format!("m{i}")))
        .collect();
    store.append(&k, &msgs).await.unwrap();
    store.compact(&k, "m0..m6 were about tea", 3).await.unwrap();
    let s = store.load(&k, None).await.unwrap();
    assert_eq!(s.summary.as_deref(), Some("m0..m6 were about tea"));
    let texts: Vec<String> = s.messages.iter().map(ChatMessage::text).collect();
    assert_eq!(texts, ["m7", "m8", "m9"]);
    // New turns come after; a limit counts only visible messages.
    store.append(&k, &[ChatMessage::user("m10")]).await.unwrap();
    assert_eq!(store.load(&k, Some(2)).await.unwrap().messages.len(), 2);
    assert_eq!(store.load(&k, None).await.unwrap().messages.len(), 4);
    // Compacting again with more to keep never un-hides anything.
    store.compact(&k, "still tea", 100).await.unwrap();
    assert_eq!(store.load(&k, None).await.unwrap().messages.len(), 4);
    store.compact(&k, "all of it", 0).await.unwrap();
    let s = store.load(&k, None).await.unwrap();
    assert!(s.messages.is_empty());
    assert_eq!(s.summary.as_deref(), Some("all of it"));
}

fn key(s: &str) -> SessionKey {
    SessionKey::new(s)
}

async fn empty_load(store: &impl SessionStore) {
    let s = store.load(&key("never-seen"), None).await.unwrap();
    assert_eq!(s.key, Some(key("never-seen")));
    assert!(s.messages.is_empty());
    assert_eq!(s.summary, None);
    assert!(
        store.list().await.unwrap().is_empty(),
        "loading must not create a session"
    );
}

async fn append_and_load_in_order(store: &impl SessionStore) {
    let k = key("cli:order");
    store
        .append(
            &k,
            &[ChatMessage::user("one"), ChatMessage::assistant("two")],
        )
        .await
        .unwrap();
    store
        .append(&k, &[ChatMessage::user("three")])
        .await
        .unwrap();
    let texts: Vec<String> = store
        .load(&k, None)
        .await
        .unwrap()
        .messages
        .iter()
        .map(ChatMessage::text)
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
}

async fn limit_keeps_newest(store: &impl SessionStore) {
    let k = key("cli:limit");
    let msgs: Vec<ChatMessage> = (0..10)
        .map(|i| ChatMessage::user(format!("m{i}")))
        .collect();
    store.append(&k, &msgs).await.unwrap();
    let texts: Vec<String> = store
        .load(&k, Some(3))
        .await
        .unwrap()
        .messages
        .iter()
        .map(ChatMessage::text)
        .collect();
    assert_eq!(texts, ["m7", "m8", "m9"]);
    assert_eq!(store.load(&k, Some(0)).await.unwrap().messages.len(), 0);
    assert_eq!(store.load(&k, Some(100)).await.unwrap().messages.len(), 10);
}

async fn summary_set_and_clear(store: &impl SessionStore) {
    let k = key("cli:summary");
    store
        .set_summary(&k, Some("we talked about crabs"))
        .await
        .unwrap();
    store.append(&k, &[ChatMessage::user("hi")]).await.unwrap();
    let s = store.load(&k, None).await.unwrap();
    assert_eq!(s.summary.as_deref(), Some("we talked about crabs"));
    assert_eq!(s.messages.len(), 1);
    store.set_summary(&k, None).await.unwrap();
    assert_eq!(store.load(&k, None).await.unwrap().summary, None);
}

async fn list_order_and_counts(store: &impl SessionStore) {
    store
        .append(&key("a"), &[ChatMessage::user("1")])
        .await
        .unwrap();
    store
        .append(&key("b"), &[ChatMessage::user("1"), ChatMessage::user("2")])
        .await
        .unwrap();
    store
        .append(&key("a"), &[ChatMessage::user("3")])
        .await
        .unwrap();
    let list = store.list().await.unwrap();
    let keys: Vec<&str> = list.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "most recently updated first");
    assert_eq!(list[0].message_count, 2);
    assert_eq!(list[1].message_count, 2);
    assert!(!list[0].created_at.is_empty() && list[0].updated_at >= list[0].created_at);
}

async fn delete(store: &impl SessionStore) {
    let k = key("cli:gone");
    store.append(&k, &[ChatMessage::user("bye")]).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert!(!store.delete(&k).await.unwrap());
    assert!(store.load(&k, None).await.unwrap().messages.is_empty());
    assert!(store.list().await.unwrap().is_empty());
    // A deleted key starts over cleanly.
    store
        .append(&k, &[ChatMessage::user("again")])
        .await
        .unwrap();
    assert_eq!(store.load(&k, None).await.unwrap().messages.len(), 1);
}

async fn round_trips_rich_messages(store: &impl SessionStore) {
    let k = key("telegram:12345");
    let big = "🦀 héllo wörld — ".repeat(20_000);
    let msgs = vec![
        ChatMessage::user(big.clone()),
        ChatMessage::assistant_with_tools(
            "",
            vec![ToolCall::new("call_1", "read_file", r#"{"path":"a.txt"}"#)],
        ),
        ChatMessage::tool_result("call_1", "read_file", "contents\nwith\nlines"),
        ChatMessage::assistant("done"),
    ];
    store.append(&k, &msgs).await.unwrap();
    let loaded = store.load(&k, None).await.unwrap();
    assert_eq!(loaded.messages, msgs);
    assert_eq!(loaded.messages[0].text().len(), big.len());
}

async fn keys_are_independent(store: &impl SessionStore) {
    store
        .append(&key("x"), &[ChatMessage::user("for x")])
        .await
        .unwrap();
    store
        .append(&key("y"), &[ChatMessage::user("for y")])
        .await
        .unwrap();
    assert_eq!(
        store.load(&key("x"), None).await.unwrap().messages[0].text(),
        "for x"
    );
    assert_eq!(
        store.load(&key("y"), None).await.unwrap().messages[0].text(),
        "for y"
    );
    store.delete(&key("x")).await.unwrap();
    assert_eq!(store.load(&key("y"), None).await.unwrap().messages.len(), 1);
}

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

/// The behaviour every [`crate::MemoryStore`] must show; `store` must start empty.
pub async fn memory_store_suite(store: &impl crate::MemoryStore) {
    use crate::MemoryNote;
    let long = "memory/MEMORY.md";
    let day = "memory/202611/20261129.md";
    assert!(store.sources().await.unwrap().is_empty());
    assert!(store.search("tea", 10).await.unwrap().is_empty());

    store
        .index_source(
            long,
            "100:1",
            &[
                MemoryNote::new(long, 3, "The user drinks green tea every morning"),
                MemoryNote::new(long, 4, "The user's sister is called Ana"),
                MemoryNote::new(long, 5, "Tea kettle is broken"),
            ],
        )
        .await
        .unwrap();
    store
        .index_source(
            day,
            "50:2",
            &[MemoryNote::new(
                day,
                3,
                "Bought coffee beans for Ana's visit",
            )],
        )
        .await
        .unwrap();

    // Sources are listed by name with their fingerprints and note counts.
    let sources = store.sources().await.unwrap();
    let listed: Vec<(&str, &str, u64)> = sources
        .iter()
        .map(|s| (s.source.as_str(), s.fingerprint.as_str(), s.notes))
        .collect();
    assert_eq!(listed, [(day, "50:2", 1), (long, "100:1", 3)]);

    // Any word matches, case does not matter, and more matching words rank higher.
    let hits = store.search("GREEN tea", 10).await.unwrap();
    let lines: Vec<u32> = hits.iter().map(|h| h.note.line).collect();
    assert_eq!(lines.len(), 2, "{hits:?}");
    assert_eq!(lines[0], 3, "the note with both words first: {hits:?}");
    assert!(hits[0].score > hits[1].score);
    assert_eq!(hits[0].note.source, long);
    assert_eq!(hits[0].note.text, "The user drinks green tea every morning");
    // Across sources.
    let hits = store.search("ana", 10).await.unwrap();
    let mut found: Vec<&str> = hits.iter().map(|h| h.note.source.as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, [day, long]);
    // The limit holds.
    assert_eq!(store.search("ana", 1).await.unwrap().len(), 1);
    assert!(store.search("ana", 0).await.unwrap().is_empty());
    // Search syntax in the query is taken as words, never as operators or errors.
    for hostile in [
        "\"",
        "tea\" OR \"x",
        "tea AND NOT kettle",
        "NEAR(tea kettle)",
        "te*",
        "-tea",
        "tea:",
        "{tea}",
        "^tea",
        "'; DROP TABLE memory_notes; --",
        "",
        "   ",
        "🙂",
    ] {
        let hits = store.search(hostile, 10).await;
        assert!(hits.is_ok(), "query {hostile:?} failed: {hits:?}");
    }
    assert!(store.search("", 10).await.unwrap().is_empty());
    assert!(
        store
            .search("nothing-here-zzz", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Re-indexing a source replaces its notes completely.
    store
        .index_source(
            long,
            "120:7",
            &[MemoryNote::new(long, 1, "The user switched to oolong")],
        )
        .await
        .unwrap();
    assert!(store.search("green", 10).await.unwrap().is_empty());
    assert_eq!(store.search("oolong", 10).await.unwrap().len(), 1);
    let sources = store.sources().await.unwrap();
    let entry = sources.iter().find(|s| s.source == long).unwrap();
    assert_eq!((entry.fingerprint.as_str(), entry.notes), ("120:7", 1));

    // A source indexed with no notes is still known (an empty file is not re-read).
    store
        .index_source("memory/empty.md", "0:0", &[])
        .await
        .unwrap();
    assert_eq!(store.sources().await.unwrap().len(), 3);

    // Removing a source removes its notes from search.
    assert!(store.remove_source(day).await.unwrap());
    assert!(!store.remove_source(day).await.unwrap());
    assert!(store.search("coffee", 10).await.unwrap().is_empty());
    let names: Vec<String> = store
        .sources()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.source)
        .collect();
    assert_eq!(names, ["memory/MEMORY.md", "memory/empty.md"]);

    // Many notes: all searchable.
    let many: Vec<MemoryNote> = (0..500)
        .map(|i| {
            MemoryNote::new(
                "memory/bulk.md",
                i + 1,
                format!("note number n{i} about topic{}", i % 7),
            )
        })
        .collect();
    store
        .index_source("memory/bulk.md", "x", &many)
        .await
        .unwrap();
    let hits = store.search("n123", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].note.line, 124);
    assert_eq!(store.search("topic3", 1000).await.unwrap().len(), 71);
}

/// The behaviour of the runtime stores (cron, key/value, journal, outbox, leases); `store` must
/// start empty.
pub async fn runtime_suite<S>(store: &S)
where
    S: crate::CronStore
        + crate::KvStore
        + crate::InboundJournal
        + crate::Outbox
        + crate::LeaseStore,
{
    cron_jobs(store).await;
    key_values(store).await;
    journal(store).await;
    outbox(store).await;
    leases(store).await;
    finishing(store).await;
}

async fn finishing<S: crate::InboundJournal + crate::Outbox>(store: &S) {
    let t = 9_000_000i64;
    // Drain what earlier checks left so the outbox holds only this check's answer.
    while !store
        .claim_outbound("drain", t, 1, 100)
        .await
        .unwrap()
        .is_empty()
    {}
    let id = store
        .journal_inbound("telegram", "fin-1", "telegram:5", "{\"text\":\"ping\"}", t)
        .await
        .unwrap()
        .unwrap();
    let out = store
        .finish_inbound(id, "telegram", "5", "{\"text\":\"pong\"}", t)
        .await
        .unwrap();
    assert!(
        store
            .unprocessed(100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != id)
    );
    let claimed = store.claim_outbound("gw", t, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, out);
    assert_eq!(
        (claimed[0].channel.as_str(), claimed[0].chat_id.as_str()),
        ("telegram", "5")
    );
    assert_eq!(claimed[0].payload, "{\"text\":\"pong\"}");
}

async fn cron_jobs(store: &impl crate::CronStore) {
    use crate::{CronJob, CronPayload, Schedule};
    let t0 = 1_800_000_000_000i64;
    assert!(store.list_jobs().await.unwrap().is_empty());
    let every = CronJob::new(
        "water plants",
        Schedule::Every { every_ms: 60_000 },
        CronPayload::new("Remind me to water the plants").to("telegram", "42"),
        t0,
    )
    .unwrap();
    let once = CronJob::new(
        "call mum",
        Schedule::At { at_ms: t0 + 30_000 },
        CronPayload::new("Call mum").delivered(),
        t0 + 1,
    )
    .unwrap();
    let daily = CronJob::new(
        "standup",
        Schedule::Cron {
            expr: "0 9 * * 1-5".into(),
            tz: Some("Europe/Lisbon".into()),
        },
        CronPayload::new("standup notes"),
        t0 + 2,
    )
    .unwrap();
    for job in [&every, &once, &daily] {
        store.put_job(job).await.unwrap();
    }
    // Round trip, listing oldest first.
    assert_eq!(store.get_job(&once.id).await.unwrap().as_ref(), Some(&once));
    assert_eq!(store.get_job("nope").await.unwrap(), None);
    let names: Vec<String> = store
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["water plants", "call mum", "standup"]);

    // Due: only what has come, earliest first.
    assert!(store.due_jobs(t0, 10).await.unwrap().is_empty());
    let due = store.due_jobs(t0 + 60_000, 10).await.unwrap();
    let due_names: Vec<&str> = due.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(due_names, ["call mum", "water plants"]);
    assert_eq!(store.due_jobs(t0 + 60_000, 1).await.unwrap().len(), 1);

    // A claim moves the job on once; a second claim of the same run fails.
    let scheduled = every.state.next_run_at_ms.unwrap();
    let next = every.schedule.following(scheduled, t0 + 60_000);
    assert!(store.claim_run(&every.id, scheduled, next).await.unwrap());
    assert!(!store.claim_run(&every.id, scheduled, next).await.unwrap());
    store
        .record_result(&every.id, t0 + 60_001, Err("telegram is down".into()))
        .await
        .unwrap();
    let after = store.get_job(&every.id).await.unwrap().unwrap();
    assert_eq!(after.state.next_run_at_ms, Some(t0 + 120_000));
    assert_eq!(after.state.last_run_at_ms, Some(t0 + 60_001));
    assert_eq!(after.state.last_status.as_deref(), Some("error"));
    assert_eq!(after.state.last_error.as_deref(), Some("telegram is down"));
    assert!(after.enabled);
    store
        .record_result(&every.id, t0 + 120_001, Ok(()))
        .await
        .unwrap();
    let after = store.get_job(&every.id).await.unwrap().unwrap();
    assert_eq!(after.state.last_status.as_deref(), Some("ok"));
    assert_eq!(after.state.last_error, None);

    // A one-shot job finishes and goes away.
    let at = once.state.next_run_at_ms.unwrap();
    assert!(store.claim_run(&once.id, at, None).await.unwrap());
    assert!(
        store
            .due_jobs(t0 + 60_000, 10)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != once.id)
    );
    store.record_result(&once.id, at, Ok(())).await.unwrap();
    assert_eq!(store.get_job(&once.id).await.unwrap(), None);

    // Disabled jobs are never due, nor claimable; enabling computes the next run.
    let disabled = store
        .set_enabled(&daily.id, false, t0)
        .await
        .unwrap()
        .unwrap();
    assert!(!disabled.enabled && disabled.state.next_run_at_ms.is_none());
    let far = t0 + 10 * 86_400_000;
    assert!(
        store
            .due_jobs(far, 10)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != daily.id)
    );
    let enabled = store
        .set_enabled(&daily.id, true, t0)
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.state.next_run_at_ms.unwrap() > t0);
    assert_eq!(store.set_enabled("nope", true, t0).await.unwrap(), None);

    // Replacing and removing.
    let mut renamed = enabled.clone();
    renamed.name = "daily standup".into();
    store.put_job(&renamed).await.unwrap();
    assert_eq!(
        store.get_job(&daily.id).await.unwrap().unwrap().name,
        "daily standup"
    );
    assert!(store.remove_job(&daily.id).await.unwrap());
    assert!(!store.remove_job(&daily.id).await.unwrap());
    assert_eq!(store.list_jobs().await.unwrap().len(), 1);
    store.remove_job(&every.id).await.unwrap();
}

async fn key_values(store: &impl crate::KvStore) {
    assert_eq!(store.kv_get("telegram", "offset").await.unwrap(), None);
    store.kv_put("telegram", "offset", "100").await.unwrap();
    store.kv_put("telegram", "offset", "101").await.unwrap();
    store.kv_put("telegram", "bot", "pico").await.unwrap();
    store.kv_put("slack", "offset", "x").await.unwrap();
    assert_eq!(
        store.kv_get("telegram", "offset").await.unwrap().as_deref(),
        Some("101")
    );
    assert_eq!(
        store.kv_list("telegram").await.unwrap(),
        [
            ("bot".to_owned(), "pico".to_owned()),
            ("offset".to_owned(), "101".to_owned())
        ]
    );
    assert!(store.kv_delete("telegram", "bot").await.unwrap());
    assert!(!store.kv_delete("telegram", "bot").await.unwrap());
    assert_eq!(store.kv_list("telegram").await.unwrap().len(), 1);
    assert_eq!(
        store.kv_get("slack", "offset").await.unwrap().as_deref(),
        Some("x")
    );
}

async fn journal(store: &impl crate::InboundJournal) {
    let a = store
        .journal_inbound(
            "telegram",
            "update-1",
            "telegram:42",
            "{\"text\":\"hi\"}",
            1000,
        )
        .await
        .unwrap()
        .expect("first delivery is journaled");
    // A redelivery of the same update is recognised; another channel's same id is not.
    assert_eq!(
        store
            .journal_inbound("telegram", "update-1", "telegram:42", "{}", 1001)
            .await
            .unwrap(),
        None
    );
    let b = store
        .journal_inbound("slack", "update-1", "slack:C1", "{}", 1002)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a, b);
    let pending = store.unprocessed(10).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(pending[0].payload, "{\"text\":\"hi\"}");
    assert_eq!(pending[0].session_key, "telegram:42");
    assert_eq!(pending[0].received_at_ms, 1000);
    store.mark_processed(a).await.unwrap();
    let pending = store.unprocessed(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, b);
    // Pruning forgets processed messages only.
    assert_eq!(store.prune_inbound(5000).await.unwrap(), 1);
    assert_eq!(store.unprocessed(10).await.unwrap().len(), 1);
    store.mark_processed(b).await.unwrap();
}

async fn outbox(store: &impl crate::Outbox) {
    let t = 2_000_000i64;
    let first = store
        .enqueue_outbound("telegram", "42", "{\"text\":\"one\"}", t)
        .await
        .unwrap();
    let second = store
        .enqueue_outbound("telegram", "43", "{\"text\":\"two\"}", t)
        .await
        .unwrap();
    // One claimer gets them, in order; while leased nobody else does.
    let got = store.claim_outbound("gw-a", t, 30_000, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(got[0].attempts, 1);
    assert_eq!(got[0].payload, "{\"text\":\"one\"}");
    assert!(
        store
            .claim_outbound("gw-b", t + 1, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Delivered: gone. Acknowledging what one no longer holds says so.
    assert!(store.ack_outbound(first, "gw-a").await.unwrap());
    assert!(!store.ack_outbound(first, "gw-a").await.unwrap());
    // A lease that runs out is handed to someone else, and the late owner cannot ack it.
    let retaken = store
        .claim_outbound("gw-b", t + 30_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].id, second);
    assert_eq!(retaken[0].attempts, 2);
    assert!(!store.ack_outbound(second, "gw-a").await.unwrap());
    // Failure with a retry time: due again then, with the error kept.
    store
        .fail_outbound(second, "gw-b", "429 Too Many Requests", Some(t + 90_000))
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-a", t + 60_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_outbound("gw-a", t + 90_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("429 Too Many Requests")
    );
    // Giving up: dead, never handed out again, listed for inspection.
    store
        .fail_outbound(second, "gw-a", "chat not found", None)
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-a", t + 10_000_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let dead = store.dead_outbound(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("chat not found"));
    // The limit holds.
    for i in 0..5 {
        store
            .enqueue_outbound("cli", &format!("x{i}"), &i.to_string(), t)
            .await
            .unwrap();
    }
    let first_three = store.claim_outbound("gw-a", t, 1000, 3).await.unwrap();
    let last_two = store.claim_outbound("gw-b", t, 1000, 3).await.unwrap();
    assert_eq!((first_three.len(), last_two.len()), (3, 2));
    for r in &first_three {
        assert!(store.ack_outbound(r.id, "gw-a").await.unwrap());
    }
    for r in &last_two {
        assert!(store.ack_outbound(r.id, "gw-b").await.unwrap());
    }

    // One chat's messages go out in order: a message waits while an older one to the same chat
    // is undelivered (leased or waiting for a retry), whoever claims.
    let t = t + 100_000_000;
    let a = store.enqueue_outbound("slack", "C9", "a", t).await.unwrap();
    let b = store.enqueue_outbound("slack", "C9", "b", t).await.unwrap();
    let other = store
        .enqueue_outbound("slack", "C10", "c", t)
        .await
        .unwrap();
    let ids = |v: Vec<crate::OutboundRecord>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let got = ids(store.claim_outbound("gw-a", t, 1000, 10).await.unwrap());
    assert_eq!(got, [a, other], "b waits behind a");
    assert!(store.ack_outbound(other, "gw-a").await.unwrap());
    store
        .fail_outbound(a, "gw-a", "503", Some(t + 5_000))
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-b", t + 10, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let got = ids(store
        .claim_outbound("gw-b", t + 5_000, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [a]);
    assert!(store.ack_outbound(a, "gw-b").await.unwrap());
    let got = ids(store
        .claim_outbound("gw-b", t + 5_001, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [b]);
    // A dead message no longer holds its chat up.
    store.fail_outbound(b, "gw-b", "gone", None).await.unwrap();
    let next = store.enqueue_outbound("slack", "C9", "d", t).await.unwrap();
    let got = ids(store
        .claim_outbound("gw-b", t + 6_000, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [next]);
}

async fn leases(store: &impl crate::LeaseStore) {
    let s = "session:telegram:42";
    assert!(store.try_lease(s, "gw-a", 1000, 10_000).await.unwrap());
    // Held: others are refused, the owner renews.
    assert!(!store.try_lease(s, "gw-b", 2000, 10_000).await.unwrap());
    assert!(store.try_lease(s, "gw-a", 5000, 10_000).await.unwrap());
    assert!(!store.try_lease(s, "gw-b", 14_999, 10_000).await.unwrap());
    // Expired (the owner died): taken over.
    assert!(store.try_lease(s, "gw-b", 15_000, 10_000).await.unwrap());
    assert!(!store.try_lease(s, "gw-a", 16_000, 10_000).await.unwrap());
    // Only the owner's release counts.
    store.release_lease(s, "gw-a").await.unwrap();
    assert!(!store.try_lease(s, "gw-a", 17_000, 10_000).await.unwrap());
    store.release_lease(s, "gw-b").await.unwrap();
    assert!(store.try_lease(s, "gw-a", 17_000, 10_000).await.unwrap());
    // Names are independent.
    assert!(
        store
            .try_lease("session:other", "gw-b", 17_000, 10_000)
            .await
            .unwrap()
    );
}

/// Two handles on one store (two pools standing for two processes, or one store twice) race
/// for the same cron run, the same outbound messages and the same lease: each is won once.
pub async fn claims_are_exclusive<A, B>(a: &A, b: &B)
where
    A: crate::CronStore + crate::Outbox + crate::LeaseStore,
    B: crate::CronStore + crate::Outbox + crate::LeaseStore,
{
    use crate::{CronJob, CronPayload, Schedule};
    let t0 = 1_900_000_000_000i64;
    let mut jobs = Vec::new();
    for i in 0..20 {
        let job = CronJob::new(
            format!("job{i}"),
            Schedule::Every { every_ms: 60_000 },
            CronPayload::new("tick"),
            t0,
        )
        .unwrap();
        a.put_job(&job).await.unwrap();
        jobs.push(job);
    }
    let now = t0 + 60_000;
    let mut wins = 0;
    for job in &jobs {
        let at = job.state.next_run_at_ms.unwrap();
        let next = job.schedule.following(at, now);
        let (x, y) = tokio::join!(
            a.claim_run(&job.id, at, next),
            b.claim_run(&job.id, at, next)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x ^ y, "exactly one claim of {} wins ({x}, {y})", job.name);
        wins += 1;
    }
    assert_eq!(wins, 20);

    for i in 0..40 {
        a.enqueue_outbound("telegram", &i.to_string(), &i.to_string(), t0)
            .await
            .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (x, y) = tokio::join!(
            a.claim_outbound("gw-a", t0, 60_000, 3),
            b.claim_outbound("gw-b", t0, 60_000, 3)
        );
        for r in x.unwrap().into_iter().chain(y.unwrap()) {
            assert!(seen.insert(r.id), "message {} handed out twice", r.id);
        }
    }
    assert_eq!(seen.len(), 40);

    let (x, y) = tokio::join!(
        a.try_lease("session:race", "gw-a", t0, 5000),
        b.try_lease("session:race", "gw-b", t0, 5000)
    );
    assert!(x.unwrap() ^ y.unwrap(), "one lease holder");
}

/// Two scheduler instances (`a` and `b`, as two processes would) step through the same minutes
/// of simulated time, each taking due jobs and claiming them: every scheduled run happens
/// exactly once.
pub async fn scheduler_fires_once<A: crate::CronStore, B: crate::CronStore>(a: &A, b: &B) {
    use crate::{CronJob, CronPayload, Schedule};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let t0 = 2_000_000_000_000i64;
    let every = CronJob::new(
        "tick",
        Schedule::Every { every_ms: 10_000 },
        CronPayload::new("t"),
        t0,
    )
    .unwrap();
    let minutely = CronJob::new(
        "minutely",
        Schedule::Cron {
            expr: "* * * * *".into(),
            tz: None,
        },
        CronPayload::new("m"),
        t0,
    )
    .unwrap();
    a.put_job(&every).await.unwrap();
    a.put_job(&minutely).await.unwrap();
    let runs: Mutex<HashMap<(String, i64), u32>> = Mutex::new(HashMap::new());
    async fn instance(
        store: &dyn crate::CronStore,
        t0: i64,
        runs: &Mutex<HashMap<(String, i64), u32>>,
    ) {
        // Five minutes in steps of one second.
        for step in 0..=300 {
            let now = t0 + step * 1000;
            for job in store.due_jobs(now, 10).await.unwrap() {
                let at = job.state.next_run_at_ms.unwrap();
                let next = job.schedule.following(at, now);
                if store.claim_run(&job.id, at, next).await.unwrap() {
                    *runs
                        .lock()
                        .unwrap()
                        .entry((job.name.clone(), at))
                        .or_default() += 1;
                    store.record_result(&job.id, now, Ok(())).await.unwrap();
                }
            }
            if step % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    tokio::join!(instance(a, t0, &runs), instance(b, t0, &runs));
    let runs = runs.into_inner().unwrap();
    assert!(
        runs.values().all(|n| *n == 1),
        "a run happened twice: {runs:?}"
    );
    let ticks = runs.keys().filter(|(name, _)| name == "tick").count();
    let minutes = runs.keys().filter(|(name, _)| name == "minutely").count();
    // Every 10 s for 300 s: at t0+10s .. t0+300s. Whole minutes within five minutes: 5 (or 4
    // when t0 sits exactly on a minute boundary past the last step).
    assert_eq!(ticks, 30, "{runs:?}");
    assert!((4..=5).contains(&minutes), "{runs:?}");
}

/// Two gateway instances take messages of one session from the journal, each processing only
/// while it holds the session's lease: the session never runs in both at once, every message is
/// processed once, and the turns are stored in order.
pub async fn session_leases_serialize<A, B>(a: &A, b: &B)
where
    A: crate::SessionStore + crate::InboundJournal + crate::LeaseStore,
    B: crate::SessionStore + crate::InboundJournal + crate::LeaseStore,
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let key = SessionKey::new("telegram:777");
    for i in 0..30 {
        a.journal_inbound(
            "telegram",
            &format!("u{i}"),
            key.as_str(),
            &format!("msg {i}"),
            i,
        )
        .await
        .unwrap();
    }
    let busy = AtomicBool::new(false);
    let overlaps = AtomicUsize::new(0);
    async fn worker<S: crate::SessionStore + crate::InboundJournal + crate::LeaseStore>(
        store: &S,
        me: &str,
        key: &SessionKey,
        busy: &AtomicBool,
        overlaps: &AtomicUsize,
    ) -> usize {
        let lease = format!("session:{key}");
        let mut done = 0;
        for _ in 0..400 {
            let now = chrono::Utc::now().timestamp_millis();
            if !store.try_lease(&lease, me, now, 30_000).await.unwrap() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
            if busy.swap(true, Ordering::SeqCst) {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // Process at most two messages per lease, then let the other instance have a go.
            let pending = store.unprocessed(2).await.unwrap();
            for record in &pending {
                store
                    .append(
                        key,
                        &[
                            ChatMessage::user(record.payload.clone()),
                            ChatMessage::assistant("ok"),
                        ],
                    )
                    .await
                    .unwrap();
                store.mark_processed(record.id).await.unwrap();
                done += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            busy.store(false, Ordering::SeqCst);
            store.release_lease(&lease, me).await.unwrap();
            if pending.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        done
    }
    let (x, y) = tokio::join!(
        worker(a, "gw-a", &key, &busy, &overlaps),
        worker(b, "gw-b", &key, &busy, &overlaps)
    );
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "the session ran in both instances at once"
    );
    assert_eq!(x + y, 30, "every message processed once ({x} + {y})");
    let session = a.load(&key, None).await.unwrap();
    let users: Vec<String> = session
        .messages
        .iter()
        .filter(|m| m.role == picoclaw_api::Role::User)
        .map(ChatMessage::text)
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("msg {i}")).collect();
    assert_eq!(users, expected, "turns stored once each, in order");
}

/// PostgreSQL test servers: the URL comes from `PICOCLAW_TEST_POSTGRES_URL` (default: what
/// `scripts/postgres.sh` sets up); every test works in a schema of its own.
#[cfg(feature = "postgres")]
mod pg {
    use sqlx::postgres::{PgPool, PgPoolOptions};
    use std::time::Duration;

    pub const DEFAULT_URL: &str = "postgres://picoclaw:picoclaw@127.0.0.1:5432/picoclaw_test";

    pub fn server_url() -> String {
        std::env::var("PICOCLAW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    /// A connection to the test server, or a failure that says how to start one.
    async fn admin() -> PgPool {
        let url = server_url();
        match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {} ({e}). Start it with `bash scripts/postgres.sh` \
                 (installs Debian's postgresql if needed and starts it on 127.0.0.1:5432 as the \
                 postgres user), or point PICOCLAW_TEST_POSTGRES_URL at a database where the \
                 role may create schemas.",
                crate::redact_url(&url)
            ),
        }
    }

    /// A fresh, empty schema on the test server and the URL that uses it.
    pub async fn fresh_schema() -> (String, String) {
        let schema = format!("picoclaw_t_{}", crate::new_job_id());
        let pool = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let url = server_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        (
            schema.clone(),
            format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        )
    }

    pub async fn drop_schema(schema: &str) {
        let pool = admin().await;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}
#[cfg(feature = "postgres")]
pub use pg::{DEFAULT_URL as POSTGRES_DEFAULT_URL, drop_schema, fresh_schema, server_url};
