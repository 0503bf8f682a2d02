//! [`CronStore`], [`KvStore`], [`InboundJournal`], [`Outbox`] and [`LeaseStore`] on SQLite. Every
//! claim is one conditional `UPDATE` (or upsert), so it is atomic across processes sharing the
//! file.

use crate::StateError;
use crate::cron::{CronJob, CronJobState, CronStore};
use crate::sqlite::{SqliteStore, db_err};
use crate::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json_err(id: &str, what: &str, e: serde_json::Error) -> StateError {
    StateError::Corrupt {
        session: format!("cron job {id}"),
        message: format!("{what} does not decode: {e}"),
    }
}

pub(crate) fn job_from_row(row: &SqliteRow) -> Result<CronJob, StateError> {
    let id: String = row.try_get(0).map_err(db_err)?;
    let schedule: String = row.try_get(3).map_err(db_err)?;
    let payload: String = row.try_get(4).map_err(db_err)?;
    Ok(CronJob {
        name: row.try_get(1).map_err(db_err)?,
        enabled: row.try_get::<i64, _>(2).map_err(db_err)? != 0,
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
        delete_after_run: row.try_get::<i64, _>(11).map_err(db_err)? != 0,
        id,
    })
}

pub(crate) fn job_json(job: &CronJob) -> Result<(String, String), StateError> {
    let s = serde_json::to_string(&job.schedule).map_err(|e| StateError::Database(Box::new(e)))?;
    let p = serde_json::to_string(&job.payload).map_err(|e| StateError::Database(Box::new(e)))?;
    Ok((s, p))
}

const SELECT_JOB: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, last_run_at, \
    last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs WHERE id = ?1";
const SELECT_JOBS: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, \
    last_run_at, last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs \
    ORDER BY created_at, id";
const SELECT_DUE: &str = "SELECT id, name, enabled, schedule, payload, next_run_at, last_run_at, \
    last_status, last_error, created_at, updated_at, delete_after_run FROM cron_jobs \
    WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?1 \
    ORDER BY next_run_at, id LIMIT ?2";

#[async_trait]
impl CronStore for SqliteStore {
    async fn put_job(&self, job: &CronJob) -> Result<(), StateError> {
        let (schedule, payload) = job_json(job)?;
        sqlx::query(
            "INSERT INTO cron_jobs (id, name, enabled, schedule, payload, next_run_at, \
             last_run_at, last_status, last_error, created_at, updated_at, delete_after_run) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, enabled = excluded.enabled, \
             schedule = excluded.schedule, payload = excluded.payload, \
             next_run_at = excluded.next_run_at, last_run_at = excluded.last_run_at, \
             last_status = excluded.last_status, last_error = excluded.last_error, \
             updated_at = excluded.updated_at, delete_after_run = excluded.delete_after_run",
        )
        .bind(&job.id)
        .bind(&job.name)
        .bind(i64::from(job.enabled))
        .bind(schedule)
        .bind(payload)
        .bind(job.state.next_run_at_ms)
        .bind(job.state.last_run_at_ms)
        .bind(&job.state.last_status)
        .bind(&job.state.last_error)
        .bind(job.created_at_ms)
        .bind(job.updated_at_ms)
        .bind(i64::from(job.delete_after_run))
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
        let done = sqlx::query("DELETE FROM cron_jobs WHERE id = ?1")
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
            "UPDATE cron_jobs SET next_run_at = ?3, \
             enabled = CASE WHEN ?3 IS NULL THEN 0 ELSE 1 END \
             WHERE id = ?1 AND enabled = 1 AND next_run_at = ?2",
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
            "UPDATE cron_jobs SET last_run_at = ?2, last_status = ?3, last_error = ?4, \
             updated_at = ?2 WHERE id = ?1",
        )
        .bind(id)
        .bind(ran_at_ms)
        .bind(status)
        .bind(error)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "DELETE FROM cron_jobs WHERE id = ?1 AND delete_after_run = 1 AND next_run_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

#[async_trait]
impl KvStore for SqliteStore {
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, StateError> {
        sqlx::query_scalar("SELECT value FROM kv WHERE namespace = ?1 AND key = ?2")
            .bind(namespace)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO kv (namespace, key, value) VALUES (?1, ?2, ?3) \
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
        let done = sqlx::query("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")
            .bind(namespace)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, StateError> {
        let rows = sqlx::query("SELECT key, value FROM kv WHERE namespace = ?1 ORDER BY key")
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
impl InboundJournal for SqliteStore {
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
             received_at) VALUES (?1, ?2, ?3, ?4, ?5) \
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
             CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) WHERE id = ?1",
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
        sqlx::query("UPDATE inbound_journal SET processed_at = ?2 WHERE id = ?1")
            .bind(id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let out: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (channel, chat_id, payload, created_at, due_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
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
             FROM inbound_journal WHERE processed_at IS NULL ORDER BY id LIMIT ?1",
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

    async fn is_unprocessed(&self, id: i64) -> Result<bool, StateError> {
        let row =
            sqlx::query("SELECT 1 FROM inbound_journal WHERE id = ?1 AND processed_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn prune_inbound(&self, before_ms: i64) -> Result<u64, StateError> {
        let done = sqlx::query(
            "DELETE FROM inbound_journal WHERE processed_at IS NOT NULL AND received_at < ?1",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

fn outbound_from_row(r: &SqliteRow) -> Result<OutboundRecord, StateError> {
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
impl Outbox for SqliteStore {
    async fn enqueue_outbound(
        &self,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError> {
        sqlx::query_scalar(
            "INSERT INTO outbox (channel, chat_id, payload, created_at, due_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
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
        self.claim_outbound_filtered(owner, now_ms, lease_ms, n, None)
            .await
    }

    async fn claim_outbound_on(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: usize,
        channels: &[String],
    ) -> Result<Vec<OutboundRecord>, StateError> {
        self.claim_outbound_filtered(owner, now_ms, lease_ms, n, Some(channels))
            .await
    }

    async fn release_outbound_leases(&self) -> Result<u64, StateError> {
        let done = sqlx::query(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn ack_outbound(&self, id: i64, owner: &str) -> Result<bool, StateError> {
        let done = sqlx::query("DELETE FROM outbox WHERE id = ?1 AND lease_owner = ?2")
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
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, last_error = ?3, \
             due_at = COALESCE(?4, due_at), dead = CASE WHEN ?4 IS NULL THEN 1 ELSE 0 END \
             WHERE id = ?1 AND lease_owner = ?2",
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
             WHERE dead = 1 ORDER BY id LIMIT ?1",
        )
        .bind(limit(n))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(outbound_from_row).collect()
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StateError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3 + ?4) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at \
             WHERE leases.owner = excluded.owner OR leases.expires_at <= ?3",
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
        sqlx::query("DELETE FROM leases WHERE name = ?1 AND owner = ?2")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

impl SqliteStore {
    /// Claims due messages, of `channels` only when given (see `Outbox::claim_outbound_on`).
    async fn claim_outbound_filtered(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: usize,
        channels: Option<&[String]>,
    ) -> Result<Vec<OutboundRecord>, StateError> {
        let channels = channels
            .map(|c| serde_json::to_string(c).map_err(|e| StateError::Invalid(e.to_string())))
            .transpose()?;
        let rows = sqlx::query(
            "UPDATE outbox SET lease_owner = ?1, lease_until = ?2 + ?3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox o WHERE dead = 0 AND due_at <= ?2 \
             AND (lease_until IS NULL OR lease_until <= ?2) \
             AND (?5 IS NULL OR o.channel IN (SELECT value FROM json_each(?5))) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel \
             AND p.chat_id = o.chat_id AND p.id < o.id AND p.dead = 0) \
             ORDER BY id LIMIT ?4) \
             RETURNING id, channel, chat_id, payload, attempts, last_error",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(limit(n))
        .bind(channels)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        crate::conformance::runtime_suite(&SqliteStore::open_in_memory().await.unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap();
        crate::conformance::runtime_suite(&store).await;
    }

    #[tokio::test]
    async fn two_processes_worth_of_pools_claim_each_run_once() {
        // Two independent pools on one file stand for two processes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();
        crate::conformance::claims_are_exclusive(&a, &b).await;
        crate::conformance::scheduler_fires_once(&a, &b).await;
        crate::conformance::session_leases_serialize(&a, &b).await;
    }
}
