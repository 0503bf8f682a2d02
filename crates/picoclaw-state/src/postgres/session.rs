//! `SessionStore` for [`PgStore`]: sessions and their messages, summaries and compaction.

use super::{PgStore, db_err};
use crate::{Session, SessionInfo, SessionStore, StateError};
use async_trait::async_trait;
use picoclaw_api::{ChatMessage, SessionKey};
use sqlx::Row;

const TOUCH: &str = "INSERT INTO sessions (key, revision, created_at, updated_at) \
     VALUES ($1, nextval('session_revision'), $2, $2) \
     ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at, \
     revision = excluded.revision";

const TOUCH_SUMMARY: &str = "INSERT INTO sessions (key, revision, created_at, updated_at, summary) \
     VALUES ($1, nextval('session_revision'), $2, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at, \
     revision = excluded.revision, summary = excluded.summary";

#[async_trait]
impl SessionStore for PgStore {
    async fn load(&self, key: &SessionKey, limit: Option<usize>) -> Result<Session, StateError> {
        let head = sqlx::query("SELECT summary, compacted_through FROM sessions WHERE key = $1")
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(head) = head else {
            return Ok(Session::new(key.clone(), Vec::new(), None));
        };
        let summary: Option<String> = head.try_get(0).map_err(db_err)?;
        let through: i64 = head.try_get(1).map_err(db_err)?;
        let limit: Option<i64> = limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(
            "SELECT id, body FROM messages WHERE session_key = $1 AND id > $3 \
             ORDER BY id DESC LIMIT $2",
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
        let bodies = msgs
            .iter()
            .map(|m| serde_json::to_string(m).map(|b| (m.role.as_str(), b)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StateError::Database(Box::new(e)))?;
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(TOUCH)
            .bind(key.as_str())
            .bind(crate::now_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for (role, body) in &bodies {
            sqlx::query("INSERT INTO messages (session_key, role, body) VALUES ($1, $2, $3)")
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
            .bind(crate::now_rfc3339())
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
        let done = sqlx::query("DELETE FROM sessions WHERE key = $1")
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
            .bind(crate::now_rfc3339())
            .bind(summary)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE sessions SET compacted_through = GREATEST(compacted_through, COALESCE(( \
             SELECT id FROM messages WHERE session_key = $1 ORDER BY id DESC LIMIT 1 OFFSET $2), \
             0)) WHERE key = $1",
        )
        .bind(key.as_str())
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
