//! `MemoryStore` for [`PgStore`]: indexed memory notes and their full-text search (`tsvector`).

use super::{PgStore, db_err, limit};
use crate::StateError;
use crate::{IndexedSource, MemoryHit, MemoryNote, MemoryStore, query_terms};
use async_trait::async_trait;
use sqlx::Row;

/// A tsquery matching any of the query's words, each a quoted lexeme.
fn ts_query(query: &str) -> Option<String> {
    let terms = query_terms(query);
    if terms.is_empty() {
        return None;
    }
    Some(
        terms
            .iter()
            .map(|t| format!("'{}'", t.replace('\\', "\\\\").replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(" | "),
    )
}

#[async_trait]
impl MemoryStore for PgStore {
    async fn index_source(
        &self,
        source: &str,
        fingerprint: &str,
        notes: &[MemoryNote],
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM memory_notes WHERE source = $1")
            .bind(source)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO memory_sources (source, fingerprint) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET fingerprint = excluded.fingerprint, \
             indexed_at = now()",
        )
        .bind(source)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if !notes.is_empty() {
            let lines: Vec<i64> = notes.iter().map(|n| i64::from(n.line)).collect();
            let texts: Vec<&str> = notes.iter().map(|n| n.text.as_str()).collect();
            sqlx::query(
                "INSERT INTO memory_notes (source, line, text) \
                 SELECT $1, l, t FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS n (l, t)",
            )
            .bind(source)
            .bind(&lines)
            .bind(&texts)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn remove_source(&self, source: &str) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM memory_sources WHERE source = $1")
            .bind(source)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn sources(&self) -> Result<Vec<IndexedSource>, StateError> {
        let rows = sqlx::query(
            "SELECT s.source, s.fingerprint, \
             (SELECT COUNT(*) FROM memory_notes n WHERE n.source = s.source) \
             FROM memory_sources s ORDER BY s.source COLLATE \"C\"",
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

    async fn search(&self, query: &str, n: usize) -> Result<Vec<MemoryHit>, StateError> {
        let Some(tsq) = ts_query(query) else {
            return Ok(Vec::new());
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT source, line, text, ts_rank(tsv, q)::FLOAT8 AS rank \
             FROM memory_notes, to_tsquery('english', $1) AS q \
             WHERE tsv @@ q ORDER BY rank DESC, id DESC LIMIT $2",
        )
        .bind(&tsq)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let line: i64 = row.try_get(1).map_err(db_err)?;
                Ok(MemoryHit::new(
                    MemoryNote::new(
                        row.try_get::<String, _>(0).map_err(db_err)?,
                        u32::try_from(line).unwrap_or_default(),
                        row.try_get::<String, _>(2).map_err(db_err)?,
                    ),
                    row.try_get(3).map_err(db_err)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_queries_quote_every_word() {
        assert_eq!(
            ts_query("tea & !coffee | x:*").as_deref(),
            Some("'tea' | 'coffee' | 'x'")
        );
        assert_eq!(ts_query("&|!"), None);
    }
}
