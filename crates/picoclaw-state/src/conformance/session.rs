//! Conformance checks for [`SessionStore`]: loading, appending, limits, summaries, listing,
//! deletion, rich messages, key independence and compaction.

use crate::SessionStore;
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
