//! [`MemoryStore`] on SQLite: notes in `memory_notes`, searched through the FTS5 table
//! `memory_fts` (porter stemming, BM25 ranking).

use crate::StateError;
use crate::sqlite::{SqliteStore, db_err};
use crate::{IndexedSource, MemoryHit, MemoryNote, MemoryStore, query_terms};
use async_trait::async_trait;
use sqlx::Row;

/// The FTS5 query for plain words: each quoted (so nothing is read as an operator), any of them.
fn fts_query(query: &str) -> Option<String> {
    let terms = query_terms(query);
    if terms.is_empty() {
        return None;
    }
    // Terms hold letters and digits only, so quoting needs no escaping.
    Some(
        terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

#[async_trait]
impl MemoryStore for SqliteStore {
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[MemoryNote],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM memory_notes WHERE source = ?1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO memory_sources (source, fingerprint) VALUES (?1, ?2) \
             ON CONFLICT (source) DO UPDATE SET fingerprint = excluded.fingerprint, \
             indexed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(source)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        for note in notes {
            sqlx::query("INSERT INTO memory_notes (source, line, text) VALUES (?1, ?2, ?3)")
                .bind(source)
                .bind(i64::from(note.line))
                .bind(&note.text)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn remove_source(&self, source: &str) -> Result<bool, StateError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Notes first, row by row, so the FTS delete trigger sees each one.
        sqlx::query("DELETE FROM memory_notes WHERE source = ?1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let done = sqlx::query("DELETE FROM memory_sources WHERE source = ?1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn sources(&self) -> Result<Vec<IndexedSource>, StateError> {
        let rows = sqlx::query(
            "SELECT s.source, s.fingerprint, \
             (SELECT COUNT(*) FROM memory_notes n WHERE n.source = s.source) \
             FROM memory_sources s ORDER BY s.source",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get(2).map_err(db_err)?;
                Ok(IndexedSource::new(
                    row.try_get::<String, _>(0).map_err(db_err)?,
                    row.try_get::<String, _>(1).map_err(db_err)?,
                    u64::try_from(count).unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn search(&self, query: &str, limit: usize) -> Result<Vec<MemoryHit>, StateError> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT n.source, n.line, n.text, bm25(memory_fts) AS rank \
             FROM memory_fts JOIN memory_notes n ON n.id = memory_fts.rowid \
             WHERE memory_fts MATCH ?1 ORDER BY rank, n.id DESC LIMIT ?2",
        )
        .bind(&fts)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let line: i64 = row.try_get(1).map_err(db_err)?;
                let rank: f64 = row.try_get(3).map_err(db_err)?;
                let note = MemoryNote::new(
                    row.try_get::<String, _>(0).map_err(db_err)?,
                    u32::try_from(line).unwrap_or_default(),
                    row.try_get::<String, _>(2).map_err(db_err)?,
                );
                // BM25 is better when lower (more negative); hits report higher-is-better.
                Ok(MemoryHit::new(note, -rank))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_every_word() {
        assert_eq!(
            fts_query("tea AND \"coffee\" NEAR(x)").as_deref(),
            Some("\"tea\" OR \"and\" OR \"coffee\" OR \"near\" OR \"x\"")
        );
        assert_eq!(fts_query("*** -"), None);
    }

    #[tokio::test]
    async fn conformance() {
        crate::conformance::memory_store_suite(&SqliteStore::open_in_memory().await.unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        crate::conformance::memory_store_suite(&store).await;
    }

    #[tokio::test]
    async fn stemming_and_diacritics() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        store
            .index_source(
                "memory/MEMORY.md",
                "1",
                &[
                    MemoryNote::new("memory/MEMORY.md", 1, "The user likes running in the park"),
                    MemoryNote::new("memory/MEMORY.md", 2, "Favourite café: Crème on Main St"),
                ],
            )
            .await
            .unwrap();
        let hits = store.search("like to run", 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].note.line, 1);
        let hits = store.search("cafe creme", 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].note.line, 2);
    }

    #[tokio::test]
    async fn the_index_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            store
                .index_source(
                    "memory/MEMORY.md",
                    "f1",
                    &[MemoryNote::new(
                        "memory/MEMORY.md",
                        3,
                        "allergic to peanuts",
                    )],
                )
                .await
                .unwrap();
            store.close().await;
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let hits = store.search("peanuts", 5).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(store.sources().await.unwrap()[0].fingerprint, "f1");
    }
}
