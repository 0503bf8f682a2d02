//! Conformance checks for [`crate::MemoryStore`]: indexing sources, replacing and removing
//! them, and searching the notes.

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
