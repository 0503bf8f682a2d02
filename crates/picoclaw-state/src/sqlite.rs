//! `SqliteStore`: sessions in one SQLite file (WAL), schema managed by versioned
//! migrations embedded in the binary. One transaction per appended turn.

use crate::{ModelUsage, Session, SessionInfo, SessionStore, StateError};
use async_trait::async_trait;
use picoclaw_api::{ChatMessage, SessionKey};
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

pub(crate) fn db_err(err: sqlx::Error) -> StateError {
    StateError::Database(Box::new(err))
}

/// A [`SessionStore`] in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// A database written by a newer picoclaw (a schema version this build does not know) is
    /// refused rather than guessed at.
    pub async fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Open {
                message: format!(
                    "cannot create the folder {} for state.db: {e}",
                    dir.display()
                ),
                source: Some(Box::new(e)),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Connections a burst opened close after 20 s idle (the pool looks every 20 s, so
        // within 40 s), each with its page cache (up to 2 MiB): the gateway gives that memory
        // back when it trims 45 s after the burst.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(20)))
            .connect_with(options)
            .await
            .map_err(|e| StateError::Open {
                message: format!("cannot open the state database {}: {e}", path.display()),
                source: Some(Box::new(e)),
            })?;
        let store = Self {
            pool,
            path: Some(path.to_owned()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A private in-memory database (tests, throwaway agents).
    pub async fn open_in_memory() -> Result<Self, StateError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true);
        // One connection that never closes: every connection to ":memory:" is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| StateError::Open {
                message: format!("cannot open an in-memory database: {e}"),
                source: Some(Box::new(e)),
            })?;
        let store = Self { pool, path: None };
        store.migrate().await?;
        Ok(store)
    }

    /// The database file, if it is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The connection pool, for other stores sharing this database file.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// SQLite's own consistency checks (`PRAGMA integrity_check`, `PRAGMA foreign_key_check`):
    /// the problems found, none when the file is sound.
    pub async fn integrity_check(&self) -> Result<Vec<String>, StateError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut problems: Vec<String> = rows.into_iter().filter(|r| r != "ok").collect();
        let dangling = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        for row in &dangling {
            let table: String = row.try_get(0).map_err(db_err)?;
            let parent: String = row.try_get(2).map_err(db_err)?;
            problems.push(format!("a row of {table} points at a missing {parent} row"));
        }
        Ok(problems)
    }

    /// Closes the pool, waiting for connections to finish (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn where_(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "an in-memory database".to_owned(),
        }
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let has_table: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if has_table.is_some() {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
            if let Some(applied) = applied.filter(|v| *v > known) {
                return Err(StateError::Open {
                    message: format!(
                        "state.db at {} was written by a newer picoclaw (schema version \
                         {applied}, this build knows up to {known}); upgrade picoclaw or point \
                         it at another state file (PICOCLAW_HOME)",
                        self.where_()
                    ),
                    source: None,
                });
            }
        }
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StateError::Open {
                message: format!("cannot update the schema of {}: {e}", self.where_()),
                source: Some(Box::new(e)),
            })
    }
}

/// Upserts the session row and bumps its revision (the listing order).
const TOUCH: &str = "INSERT INTO sessions (key, revision) \
     VALUES (?1, (SELECT COALESCE(MAX(revision), 0) + 1 FROM sessions)) \
     ON CONFLICT (key) DO UPDATE SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
     revision = excluded.revision";

/// [`TOUCH`] that also sets the summary.
const TOUCH_SUMMARY: &str = "INSERT INTO sessions (key, revision, summary) \
     VALUES (?1, (SELECT COALESCE(MAX(revision), 0) + 1 FROM sessions), ?2) \
     ON CONFLICT (key) DO UPDATE SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
     revision = excluded.revision, summary = excluded.summary";

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(&self, key: &SessionKey, limit: Option<usize>) -> Result<Session, StateError> {
        let head = sqlx::query("SELECT summary, compacted_through FROM sessions WHERE key = ?1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(head) = head else {
            return Ok(Session::new(key.clone(), Vec::new(), None));
        };
        let summary: Option<String> = head.try_get(0).map_err(db_err)?;
        let through: i64 = head.try_get(1).map_err(db_err)?;
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT id, body FROM messages WHERE session_key = ?1 AND id > ?3 \
             ORDER BY id DESC LIMIT ?2",
        )
        .bind(key.as_str())
        .bind(limit)
        .bind(through)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            let id: i64 = row.try_get(0).map_err(db_err)?;
            let body: &str = row.try_get(1).map_err(db_err)?;
            let msg: ChatMessage = serde_json::from_str(body).map_err(|e| StateError::Corrupt {
                session: key.to_string(),
                message: format!("message #{id} does not decode: {e}"),
            })?;
            messages.push(msg);
        }
        Ok(Session::new(key.clone(), messages, summary))
    }

    async fn append(&self, key: &SessionKey, msgs: &[ChatMessage]) -> Result<(), StateError> {
        // Serialize first: nothing touches the database unless every message encodes.
        let bodies = msgs
            .iter()
            .map(|m| serde_json::to_string(m).map(|b| (m.role.as_str(), b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StateError::Database(Box::new(e)))?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(TOUCH)
            .bind(key.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (role, body) in &bodies {
            sqlx::query("INSERT INTO messages (session_key, role, body) VALUES (?1, ?2, ?3)")
                .bind(key.as_str())
                .bind(*role)
                .bind(body)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn set_summary(&self, key: &SessionKey, summary: Option<&str>) -> Result<(), StateError> {
        sqlx::query(TOUCH_SUMMARY)
            .bind(key.as_str())
            .bind(summary)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SessionInfo>, StateError> {
        let rows = sqlx::query(
            "SELECT s.key, (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key), \
             s.created_at, s.updated_at FROM sessions s ORDER BY s.revision DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let key: String = row.try_get(0).map_err(db_err)?;
                let count: i64 = row.try_get(1).map_err(db_err)?;
                Ok(SessionInfo::new(
                    SessionKey::new(key),
                    u64::try_from(count).unwrap_or_default(),
                    row.try_get(2).map_err(db_err)?,
                    row.try_get(3).map_err(db_err)?,
                ))
            })
            .collect()
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM sessions WHERE key = ?1")
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn compact(
        &self,
        key: &SessionKey,
        summary: &str,
        keep_last: usize,
    ) -> Result<(), StateError> {
        let keep = i64::try_from(keep_last).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(TOUCH_SUMMARY)
            .bind(key.as_str())
            .bind(summary)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The newest message that the summary now covers: everything from it back is hidden.
        sqlx::query(
            "UPDATE sessions SET compacted_through = MAX(compacted_through, COALESCE(( \
             SELECT id FROM messages WHERE session_key = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2), \
             0)) WHERE key = ?1",
        )
        .bind(key.as_str())
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

const USAGE_BY_SESSION: &str = "SELECT session_key, model, COUNT(*), SUM(prompt_tokens), \
    SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens) FROM usage \
    WHERE day >= ?1 GROUP BY 1, 2";
const USAGE_BY_MODEL: &str = "SELECT model, model, COUNT(*), SUM(prompt_tokens), \
    SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens) FROM usage \
    WHERE day >= ?1 GROUP BY 1, 2";
const USAGE_BY_DAY: &str = "SELECT day, model, COUNT(*), SUM(prompt_tokens), \
    SUM(completion_tokens), SUM(cached_tokens), SUM(reasoning_tokens) FROM usage \
    WHERE day >= ?1 GROUP BY 1, 2";

#[async_trait]
impl crate::UsageStore for SqliteStore {
    async fn record(&self, r: &crate::UsageRecord) -> Result<(), StateError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO usage (session_key, model, day, prompt_tokens, completion_tokens, \
             cached_tokens, reasoning_tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(r.session.as_str())
        .bind(&r.model)
        .bind(&r.day)
        .bind(n(r.usage.prompt_tokens))
        .bind(n(r.usage.completion_tokens))
        .bind(n(r.usage.cached_tokens))
        .bind(n(r.usage.reasoning_tokens))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn summary(
        &self,
        since: Option<&str>,
        by: crate::GroupBy,
    ) -> Result<Vec<crate::UsageRow>, StateError> {
        use crate::GroupBy;
        let sql = match by {
            GroupBy::Session => USAGE_BY_SESSION,
            GroupBy::Model => USAGE_BY_MODEL,
            GroupBy::Day => USAGE_BY_DAY,
        };
        let rows = sqlx::query(sql)
            .bind(since.unwrap_or(""))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let u = |v: i64| u64::try_from(v).unwrap_or_default();
        let mut parts = Vec::with_capacity(rows.len());
        for row in &rows {
            let group: String = row.try_get(0).map_err(db_err)?;
            let model: String = row.try_get(1).map_err(db_err)?;
            let calls: i64 = row.try_get(2).map_err(db_err)?;
            let p: i64 = row.try_get(3).map_err(db_err)?;
            let c: i64 = row.try_get(4).map_err(db_err)?;
            let k: i64 = row.try_get(5).map_err(db_err)?;
            let r: i64 = row.try_get(6).map_err(db_err)?;
            parts.push((
                group,
                u(calls),
                ModelUsage::new(model, u(p), u(c))
                    .with_cached(u(k))
                    .with_reasoning(u(r)),
            ));
        }
        Ok(crate::usage::assemble(parts, by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_in_memory() {
        crate::conformance::session_store_suite_async(|| async {
            SqliteStore::open_in_memory().await.unwrap()
        })
        .await;
        crate::conformance::usage_store_suite(&SqliteStore::open_in_memory().await.unwrap()).await;
    }

    #[tokio::test]
    async fn conformance_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        crate::conformance::session_store_suite_async(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("s{i}/state.db"));
            async move { SqliteStore::open(&path).await.unwrap() }
        })
        .await;
    }
}
