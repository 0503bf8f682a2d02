//! The gateway's runtime stores for [`PgStore`]: `KvStore`, `InboundJournal`, `Outbox` (claims
//! with `FOR UPDATE SKIP LOCKED`) and `LeaseStore`.

use super::{PgStore, db_err, limit};
use crate::StateError;
use crate::{InboundJournal, InboundRecord, KvStore, LeaseStore, OutboundRecord, Outbox};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

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

    async fn is_unprocessed(&self, id: i64) -> Result<bool, StateError> {
        let row =
            sqlx::query("SELECT 1 FROM inbound_journal WHERE id = $1 AND processed_at IS NULL")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.is_some())
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

impl PgStore {
    /// Claims due messages, of `channels` only when given (see `Outbox::claim_outbound_on`).
    async fn claim_outbound_filtered(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: usize,
        channels: Option<&[String]>,
    ) -> Result<Vec<OutboundRecord>, StateError> {
        // SKIP LOCKED: a row another instance is claiming right now is left to it.
        let rows = sqlx::query(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 + $3, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM outbox o WHERE NOT dead AND due_at <= $2 \
             AND (lease_until IS NULL OR lease_until <= $2) \
             AND ($5::text[] IS NULL OR o.channel = ANY($5)) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel \
             AND p.chat_id = o.chat_id AND p.id < o.id AND NOT p.dead) \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, channel, chat_id, payload, attempts, last_error",
        )
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .bind(limit(n))
        .bind(channels.map(<[String]>::to_vec))
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
