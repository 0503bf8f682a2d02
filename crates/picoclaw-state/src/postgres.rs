//! `PgStore`: every store on PostgreSQL (feature `postgres`), for several gateway instances
//! sharing one database. Same behaviour as [`crate::SqliteStore`] (both pass the same
//! conformance suites); claims are single conditional statements (`FOR UPDATE SKIP LOCKED` for
//! the outbox), so concurrent instances never take the same run, message or lease.
//!
//! The URL is a libpq-style `postgres://user:password@host:port/database`; a schema of its own
//! can be chosen with `?options=-c%20search_path%3Dname` (the schema must exist).

use crate::cron::{CronJob, CronJobState, CronStore};
use crate::{GroupBy, UsageRecord, UsageRow, UsageStore};
use crate::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
use crate::{IndexedSource, MemoryHit, MemoryNote, MemoryStore, query_terms};
use crate::{Session, SessionInfo, SessionStore, StateError};
use async_trait::async_trait;
use picoclaw_api::{ChatMessage, SessionKey};
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations_pg");

fn db_err(err: sqlx::Error) -> StateError {
    StateError::Database(Box::new(err))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Every store in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The URL without its password, for messages.
    shown: String,
}

impl PgStore {
    /// Connects (up to `max_connections`, default 8) and brings the schema up to date; a
    /// database written by a newer picoclaw is refused.
    pub async fn open(url: &str) -> Result<Self, StateError> {
        Self::open_with(url, 8).await
    }

    pub async fn open_with(url: &str, max_connections: u32) -> Result<Self, StateError> {
        let shown = crate::redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| StateError::Open {
            message: format!("state.url {shown} is not a PostgreSQL URL: {e}"),
            source: Some(Box::new(e)),
        })?;
        // One direct connection first: a refused connection or a wrong password fails at once
        // instead of after the pool's acquire timeout.
        use sqlx::{ConnectOptions, Connection};
        let probe = options.connect().await.map_err(|e| StateError::Open {
            message: format!("cannot connect to PostgreSQL at {shown}: {e}"),
            source: Some(Box::new(e)),
        })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_lazy_with(options);
        let store = Self { pool, shown };
        store.migrate().await?;
        Ok(store)
    }

    /// The URL, password hidden.
    pub fn location(&self) -> &str {
        &self.shown
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let has_table: Option<bool> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        if has_table == Some(true) {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
            if let Some(applied) = applied.filter(|v| *v > known) {
                return Err(StateError::Open {
                    message: format!(
                        "the PostgreSQL database at {} was written by a newer picoclaw (schema \
                         version {applied}, this build knows up to {known}); upgrade picoclaw \
                         or point state.url at another database",
                        self.shown
                    ),
                    source: None,
                });
            }
        }
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StateError::Open {
                message: format!("cannot update the schema at {}: {e}", self.shown),
                source: Some(Box::new(e)),
            })
    }
}

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

const USAGE_BY_SESSION: &str = "SELECT session_key, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT FROM usage WHERE day >= $1 \
    GROUP BY 1, 2";
const USAGE_BY_MODEL: &str = "SELECT model, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT FROM usage WHERE day >= $1 \
    GROUP BY 1, 2";
const USAGE_BY_DAY: &str = "SELECT day, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT FROM usage WHERE day >= $1 \
    GROUP BY 1, 2";

#[async_trait]
impl UsageStore for PgStore {
    async fn record(&self, r: &UsageRecord) -> Result<(), StateError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO usage (session_key, model, day, prompt_tokens, completion_tokens, \
             cached_tokens) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.session.as_str())
        .bind(&r.model)
        .bind(&r.day)
        .bind(n(r.usage.prompt_tokens))
        .bind(n(r.usage.completion_tokens))
        .bind(n(r.usage.cached_tokens))
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn summary(&self, since: Option<&str>, by: GroupBy) -> Result<Vec<UsageRow>, StateError> {
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
            parts.push((group, model, u(calls), u(p), u(c), u(k)));
        }
        Ok(crate::usage::assemble(parts, by))
    }
}

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

fn json_err(id: &str, what: &str, e: serde_json::Error) -> StateError {
    StateError::Corrupt {
        session: format!("cron job {id}"),
        message: format!("{what} does not decode: {e}"),
    }
}

fn job_from_row(row: &PgRow) -> Result<CronJob, StateError> {
    let id: String = row.try_get(0).map_err(db_err)?;
    let schedule: String = row.try_get(3).map_err(db_err)?;
    let payload: String = row.try_get(4).map_err(db_err)?;
    Ok(CronJob {
        name: row.try_get(1).map_err(db_err)?,
        enabled: row.try_get(2).map_err(db_err)?,
        schedule: serde_json::from_str(&schedule).map_err(|e| json_err(&id, "schedule", e))?,
        payload: serde_json::from_str(&payload).map_err(|e| json_err(&id, "payload", e))?,
        state: CronJobState {
            next_run_at_ms: row.try_get(5).map_err(db_err)?,
            last_run_at_ms: row.try_get(6).map_err(db_err)?,
            last_status: row.try_get(7).map_err(db_err)?,
            last_error: row.try_get(8).map_err(db_err)?,
        },
        created_at_ms: row.try_get(9).map_err(db_err)?,
        updated_at_ms: row.try_get(10).map_err(db_err)?,
        delete_after_run: row.try_get(11).map_err(db_err)?,
        id,
    })
}

const SELECT_JOB: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, last_run_at, \
    last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs WHERE id = $1";
const SELECT_JOBS: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, \
    last_run_at, last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs \
    ORDER BY created_at, id";
const SELECT_DUE: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, last_run_at, \
    last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs \
    WHERE enabled AND next_run_at IS NOT NULL AND next_run_at <= $1 \
    ORDER BY next_run_at, id LIMIT $2";

#[async_trait]
impl CronStore for PgStore {
    async fn put_job(&self, job: &CronJob) -> Result<(), StateError> {
        let (schedule, payload) = crate::sqlite_runtime::job_json(job)?;
        sqlx::query(
            "INSERT INTO cron_jobs (id, name, enabled, schedule, payload, next_run_at, \
             last_run_at, last_status, last_error, created_at, updated_at, delete_after_run) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, \
             schedule = excluded.schedule, payload = excluded.payload, \
             next_run_at = excluded.next_run_at, last_run_at = excluded.last_run_at, \
             last_status = excluded.last_status, last_error = excluded.last_error, \
             updated_at = excluded.updated_at, delete_after_run = excluded.delete_after_run",
        )
        .bind(&job.id)
        .bind(&job.name)
        .bind(job.enabled)
        .bind(schedule)
        .bind(payload)
        .bind(job.state.next_run_at_ms)
        .bind(job.state.last_run_at_ms)
        .bind(&job.state.last_status)
        .bind(&job.state.last_error)
        .bind(job.created_at_ms)
        .bind(job.updated_at_ms)
        .bind(job.delete_after_run)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_job(&self, id: &str) -> Result<Option<CronJob>, StateError> {
        let row = sqlx::query(SELECT_JOB)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn list_jobs(&self) -> Result<Vec<CronJob>, StateError> {
        let rows = sqlx::query(SELECT_JOBS)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn remove_job(&self, id: &str) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM cron_jobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn due_jobs(&self, now_ms: i64, n: usize) -> Result<Vec<CronJob>, StateError> {
        let rows = sqlx::query(SELECT_DUE)
            .bind(now_ms)
            .bind(limit(n))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(job_from_row).collect()
    }

    async fn claim_run(
        &self,
        id: &str,
        scheduled_ms: i64,
        next_ms: Option<i64>,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "UPDATE cron_jobs SET next_run_at = $3, enabled = ($3::BIGINT IS NOT NULL) \
             WHERE id = $1 AND enabled AND next_run_at = $2",
        )
        .bind(id)
        .bind(scheduled_ms)
        .bind(next_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_result(
        &self,
        id: &str,
        ran_at_ms: i64,
        result: Result<(), String>,
    ) -> Result<(), StateError> {
        let (status, error) = match result {
            Ok(()) => ("ok", None),
            Err(e) => ("error", Some(e)),
        };
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "UPDATE cron_jobs SET last_run_at = $2, last_status = $3, last_error = $4, \
             updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(ran_at_ms)
        .bind(status)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "DELETE FROM cron_jobs WHERE id = $1 AND delete_after_run AND next_run_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

#[async_trait]
impl KvStore for PgStore {
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT value FROM kv WHERE namespace = $1 AND key = $2")
            .bind(namespace)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO kv (namespace, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
        )
        .bind(namespace)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM kv WHERE namespace = $1 AND key = $2")
            .bind(namespace)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, StateError> {
        let rows = sqlx::query(
            "SELECT key, value FROM kv WHERE namespace = $1 ORDER BY key COLLATE \"C\"",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
            .collect()
    }
}

#[async_trait]
impl InboundJournal for PgStore {
    async fn journal_inbound(
        &self,
        channel: &str,
        external_id: &str,
        session_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StateError> {
        sqlx::query_scalar(
            "INSERT INTO inbound_journal (channel, external_id, session_key, payload, \
             received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel, external_id) DO NOTHING RETURNING id",
        )
        .bind(channel)
        .bind(external_id)
        .bind(session_key)
        .bind(payload)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn mark_processed(&self, id: i64) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE inbound_journal SET processed_at = \
             (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT WHERE id = $1",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn finish_inbound(
        &self,
        id: i64,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE inbound_journal SET processed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let out: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (channel, chat_id, payload, created_at, due_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(channel)
        .bind(chat_id)
        .bind(payload)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn unprocessed(&self, n: usize) -> Result<Vec<InboundRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT id, channel, external_id, session_key, payload, received_at \
             FROM inbound_journal WHERE processed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(InboundRecord::new(
                    r.try_get(0).map_err(db_err)?,
                    r.try_get::<String, _>(1).map_err(db_err)?,
                    r.try_get::<String, _>(2).map_err(db_err)?,
                    r.try_get::<String, _>(3).map_err(db_err)?,
                    r.try_get::<String, _>(4).map_err(db_err)?,
                    r.try_get(5).map_err(db_err)?,
                ))
            })
            .collect()
    }

    async fn prune_inbound(&self, before_ms: i64) -> Result<u64, StateError> {
        let done = sqlx::query(
            "DELETE FROM inbound_journal WHERE processed_at IS NOT NULL AND received_at < $1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

fn outbound_from_row(r: &PgRow) -> Result<OutboundRecord, StateError> {
    let attempts: i64 = r.try_get(4).map_err(db_err)?;
    Ok(OutboundRecord::new(
        r.try_get(0).map_err(db_err)?,
        r.try_get::<String, _>(1).map_err(db_err)?,
        r.try_get::<String, _>(2).map_err(db_err)?,
        r.try_get::<String, _>(3).map_err(db_err)?,
        u32::try_from(attempts).unwrap_or(u32::MAX),
        r.try_get(5).map_err(db_err)?,
    ))
}

#[async_trait]
impl Outbox for PgStore {
    async fn enqueue_outbound(
        &self,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        sqlx::query_scalar(
            "INSERT INTO outbox (channel, chat_id, payload, created_at, due_at) \
             VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(channel)
        .bind(chat_id)
        .bind(payload)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn claim_outbound(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: usize,
    ) -> Result<Vec<OutboundRecord>, StateError> {
        // SKIP LOCKED: a row another instance is claiming right now is left to it.
        let rows = sqlx::query(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 + $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox o WHERE NOT dead AND due_at <= $2 \
             AND (lease_until IS NULL OR lease_until <= $2) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel \
             AND p.chat_id = o.chat_id AND p.id < o.id AND NOT p.dead) \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, channel, chat_id, payload, attempts, last_error",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(outbound_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    async fn ack_outbound(&self, id: i64, owner: &str) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM outbox WHERE id = $1 AND lease_owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn fail_outbound(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, last_error = $3, \
             due_at = COALESCE($4, due_at), dead = ($4::BIGINT IS NULL) \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(error)
        .bind(retry_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn dead_outbound(&self, n: usize) -> Result<Vec<OutboundRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT id, channel, chat_id, payload, attempts, last_error FROM outbox \
             WHERE dead ORDER BY id LIMIT $1",
        )
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(outbound_from_row).collect()
    }
}

#[async_trait]
impl LeaseStore for PgStore {
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at <= $3",
        )
        .bind(name)
        .bind(owner)
        .bind(now_ms)
        .bind(ttl_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conformance::{drop_schema, fresh_schema, server_url};
    use picoclaw_api::ChatMessage;

    async fn fresh() -> (PgStore, String) {
        let (schema, url) = fresh_schema().await;
        (PgStore::open_with(&url, 4).await.unwrap(), schema)
    }

    #[tokio::test]
    async fn session_store_conformance() {
        let schemas = std::sync::Mutex::new(Vec::new());
        crate::conformance::session_store_suite_async(|| async {
            let (store, schema) = fresh().await;
            schemas.lock().unwrap().push(schema);
            store
        })
        .await;
        for schema in schemas.into_inner().unwrap() {
            drop_schema(&schema).await;
        }
    }

    #[tokio::test]
    async fn usage_memory_and_runtime_conformance() {
        let (store, schema) = fresh().await;
        crate::conformance::usage_store_suite(&store).await;
        crate::conformance::memory_store_suite(&store).await;
        crate::conformance::runtime_suite(&store).await;
        store.close().await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn two_instances_on_one_database() {
        let (schema, url) = fresh_schema().await;
        let a = PgStore::open_with(&url, 4).await.unwrap();
        let b = PgStore::open_with(&url, 4).await.unwrap();
        crate::conformance::claims_are_exclusive(&a, &b).await;
        crate::conformance::scheduler_fires_once(&a, &b).await;
        crate::conformance::session_leases_serialize(&a, &b).await;
        a.close().await;
        b.close().await;
        drop_schema(&schema).await;
    }

    /// Two OS processes (this test binary, run twice as `pg_worker_process`) share one
    /// database: both process the same session's messages from the journal under its lease, and
    /// both run the same scheduler over the same simulated two minutes.
    #[tokio::test]
    async fn two_processes_share_a_session_and_a_schedule() {
        use crate::{CronJob, CronPayload, CronStore, InboundJournal, Schedule, SessionStore};
        let (schema, url) = fresh_schema().await;
        let store = PgStore::open(&url).await.unwrap();
        for i in 0..40 {
            store
                .journal_inbound(
                    "telegram",
                    &format!("u{i}"),
                    "telegram:1",
                    &format!("msg {i}"),
                    i,
                )
                .await
                .unwrap();
        }
        let t0 = 2_100_000_000_000i64;
        let job = CronJob::new(
            "tick",
            Schedule::Every { every_ms: 10_000 },
            CronPayload::new("t"),
            t0,
        )
        .unwrap();
        store.put_job(&job).await.unwrap();
        store.close().await;

        let exe = std::env::current_exe().unwrap();
        let spawn = |name: &str| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "postgres::tests::pg_worker_process",
                    "--ignored",
                    "--nocapture",
                ])
                .env("PICOCLAW_PG_WORKER", name)
                .env("PICOCLAW_PG_WORKER_URL", &url)
                .env("PICOCLAW_PG_WORKER_T0", t0.to_string())
                .spawn()
                .unwrap()
        };
        let (mut a, mut b) = (spawn("gw-a"), spawn("gw-b"));
        assert!(a.wait().unwrap().success(), "worker gw-a failed");
        assert!(b.wait().unwrap().success(), "worker gw-b failed");

        let store = PgStore::open(&url).await.unwrap();
        let session = store
            .load(&SessionKey::new("telegram:1"), None)
            .await
            .unwrap();
        let texts: Vec<String> = session.messages.iter().map(ChatMessage::text).collect();
        // Lease periods never overlap: every "begin X" is followed by X's work and "end X".
        let head = &texts[..texts.len().min(40)];
        let mut holder: Option<&str> = None;
        let mut processed = Vec::new();
        let mut by = std::collections::HashSet::new();
        for t in &texts {
            if let Some(who) = t.strip_prefix("begin ") {
                assert_eq!(
                    holder, None,
                    "{who} began while {holder:?} held the session: {texts:?}"
                );
                holder = Some(who);
                by.insert(who.to_owned());
            } else if let Some(who) = t.strip_prefix("end ") {
                assert_eq!(holder, Some(who), "{head:?}");
                holder = None;
            } else if t.starts_with("msg ") {
                processed.push(t.clone());
            } else {
                let who = t.strip_prefix("done by ").unwrap();
                assert_eq!(holder, Some(who), "work outside the lease: {head:?}");
            }
        }
        let expected: Vec<String> = (0..40).map(|i| format!("msg {i}")).collect();
        assert_eq!(processed, expected, "each message once, in order");
        let left = store.unprocessed(100).await.unwrap();
        assert!(left.iter().all(|r| r.channel != "telegram"), "{left:?}");
        // The schedule: every 10 s for two minutes, each run once (the journal's unique key
        // would have refused a second record of the same run, failing that worker).
        let runs = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM inbound_journal WHERE channel = 'cron-run'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(runs, 12);
        eprintln!("lease holders seen: {by:?}");
        store.close().await;
        drop_schema(&schema).await;
    }

    /// One gateway-like process for `two_processes_share_a_session_and_a_schedule`.
    #[tokio::test]
    #[ignore = "a child process of two_processes_share_a_session_and_a_schedule"]
    async fn pg_worker_process() {
        use crate::{CronStore, InboundJournal, LeaseStore, SessionStore};
        let me = std::env::var("PICOCLAW_PG_WORKER")
            .expect("run only as a child of two_processes_share_a_session_and_a_schedule");
        let url = std::env::var("PICOCLAW_PG_WORKER_URL").unwrap();
        let t0: i64 = std::env::var("PICOCLAW_PG_WORKER_T0")
            .unwrap()
            .parse()
            .unwrap();
        let store = PgStore::open_with(&url, 2).await.unwrap();
        let key = SessionKey::new("telegram:1");
        let mut step = 0i64;
        let mut idle = 0;
        while idle < 50 {
            // Scheduler: the same simulated second for both processes, each at its own pace.
            if step <= 120 {
                let now = t0 + step * 1000;
                for job in store.due_jobs(now, 10).await.unwrap() {
                    let at = job.state.next_run_at_ms.unwrap();
                    if store
                        .claim_run(&job.id, at, job.schedule.following(at, now))
                        .await
                        .unwrap()
                    {
                        let first = store
                            .journal_inbound("cron-run", &format!("{}@{at}", job.id), &me, "", now)
                            .await
                            .unwrap();
                        assert!(first.is_some(), "the run at {at} happened twice");
                        store.record_result(&job.id, now, Ok(())).await.unwrap();
                    }
                }
                step += 1;
            }
            // The session: only under its lease.
            let now = chrono::Utc::now().timestamp_millis();
            if store
                .try_lease("session:telegram:1", &me, now, 30_000)
                .await
                .unwrap()
            {
                store
                    .append(&key, &[ChatMessage::user(format!("begin {me}"))])
                    .await
                    .unwrap();
                let pending: Vec<_> = store
                    .unprocessed(50)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.channel == "telegram")
                    .take(3)
                    .collect();
                for r in &pending {
                    store
                        .append(
                            &key,
                            &[
                                ChatMessage::user(r.payload.clone()),
                                ChatMessage::assistant(format!("done by {me}")),
                            ],
                        )
                        .await
                        .unwrap();
                    store.mark_processed(r.id).await.unwrap();
                }
                store
                    .append(&key, &[ChatMessage::assistant(format!("end {me}"))])
                    .await
                    .unwrap();
                store
                    .release_lease("session:telegram:1", &me)
                    .await
                    .unwrap();
                idle = if pending.is_empty() && step > 120 {
                    idle + 1
                } else {
                    0
                };
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_database_from_a_newer_picoclaw_is_refused() {
        let (schema, url) = fresh_schema().await;
        let store = PgStore::open(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from the future', TRUE, '\\x00', 0)",
        )
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
        let err = PgStore::open(&url).await.unwrap_err().to_string();
        assert!(
            err.contains("newer picoclaw") && err.contains("9999"),
            "{err}"
        );
        assert!(
            !err.contains("picoclaw:picoclaw@"),
            "the password is hidden: {err}"
        );
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_clear_error_without_the_password() {
        let url = server_url().replace("picoclaw:picoclaw@", "picoclaw:wrong-secret@");
        let err = PgStore::open(&url).await.unwrap_err().to_string();
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
        assert!(!err.contains("wrong-secret"), "{err}");
    }

    #[test]
    fn ts_queries_quote_every_word() {
        assert_eq!(
            ts_query("tea & !coffee | x:*").as_deref(),
            Some("'tea' | 'coffee' | 'x'")
        );
        assert_eq!(ts_query("&|!"), None);
    }
}
