//! `CronStore` for [`PgStore`]: scheduled jobs, due jobs and single-statement run claims.

use super::{PgStore, db_err, limit};
use crate::StateError;
use crate::cron::{CronJob, CronJobState, CronStore};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

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
