//! SQLite-specific behaviour: durability across reopen, concurrent writers, schema versioning,
//! corrupt rows.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::{ChatMessage, SessionKey};
use picoclaw_state::{SessionStore, SqliteStore, StateError};
use std::sync::Arc;

#[tokio::test]
async fn survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.db");
    let key = SessionKey::new("cli:default");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .append(
                &key,
                &[
                    ChatMessage::user("remember me"),
                    ChatMessage::assistant("ok"),
                ],
            )
            .await
            .unwrap();
        store.set_summary(&key, Some("earlier")).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let s = store.load(&key, None).await.unwrap();
    assert_eq!(s.messages.len(), 2);
    assert_eq!(s.messages[0].text(), "remember me");
    assert_eq!(s.summary.as_deref(), Some("earlier"));
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let own = SessionKey::new(format!("s{t}"));
                store
                    .append(
                        &own,
                        &[
                            ChatMessage::user(format!("{t}-{i}")),
                            ChatMessage::assistant("a"),
                        ],
                    )
                    .await
                    .unwrap();
                store
                    .append(
                        &SessionKey::new("shared"),
                        &[ChatMessage::user(format!("{t}-{i}"))],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..16 {
        let s = store
            .load(&SessionKey::new(format!("s{t}")), None)
            .await
            .unwrap();
        assert_eq!(s.messages.len(), 20);
        // A turn's messages stay together and in order.
        for pair in s.messages.chunks(2) {
            assert_eq!(pair[1].text(), "a");
        }
    }
    let shared = store.load(&SessionKey::new("shared"), None).await.unwrap();
    assert_eq!(shared.messages.len(), 160);
    assert_eq!(store.list().await.unwrap().len(), 17);
}

#[tokio::test]
async fn refuses_a_database_from_a_newer_picoclaw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', 1, x'00', 0)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StateError::Open { .. }));
    let msg = err.to_string();
    assert!(msg.contains("newer picoclaw"), "{msg}");
    assert!(msg.contains("999999"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[tokio::test]
async fn a_corrupt_row_is_reported_with_its_session() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let key = SessionKey::new("cli:broken");
    store
        .append(&key, &[ChatMessage::user("fine")])
        .await
        .unwrap();
    sqlx::query("UPDATE messages SET body = '{not json' WHERE session_key = 'cli:broken'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.load(&key, None).await.unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }));
    assert!(err.to_string().contains("cli:broken"), "{err}");
}

#[tokio::test]
async fn an_unopenable_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the database file should be.
    let path = dir.path().join("state.db");
    std::fs::create_dir_all(&path).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("state.db"), "{err}");
}

#[tokio::test]
async fn a_sound_file_passes_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    store
        .append(&SessionKey::new("k"), &[ChatMessage::user("hi")])
        .await
        .unwrap();
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}

/// A state.db made by the migrations before the usage ledger kept reasoning tokens: it
/// upgrades when opened, its old rows count no reasoning, and new rows keep theirs.
#[tokio::test]
async fn a_ledger_from_before_reasoning_tokens_upgrades() {
    use picoclaw_state::{GroupBy, UsageRecord, UsageStore};
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&all).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "0007" {
            std::fs::copy(entry.path(), old.join(&name)).unwrap();
        }
    }
    let path = dir.path().join("state.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO usage (session_key, model, day, prompt_tokens, completion_tokens, \
             cached_tokens) VALUES ('cli:old', 'openai/o3', '2026-11-01', 100, 40, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let usage = picoclaw_api::Usage::new(10, 30).with_reasoning(25);
    store
        .record(
            &UsageRecord::now(SessionKey::new("cli:old"), "openai/o3", usage).on_day("2026-11-02"),
        )
        .await
        .unwrap();
    let rows = store.summary(None, GroupBy::Day).await.unwrap();
    let sums: Vec<(&str, u64, u64)> = rows
        .iter()
        .map(|r| (r.group.as_str(), r.completion_tokens, r.reasoning_tokens))
        .collect();
    assert_eq!(sums, [("2026-11-02", 30, 25), ("2026-11-01", 40, 0)]);
    assert_eq!(store.integrity_check().await.unwrap(), Vec::<String>::new());
}
