//! `UsageStore` for [`PgStore`]: recording token usage and summing it by session, model or day.

use super::{PgStore, db_err};
use crate::StateError;
use crate::{GroupBy, ModelUsage, UsageRecord, UsageRow, UsageStore};
use async_trait::async_trait;
use sqlx::Row;

const USAGE_BY_SESSION: &str = "SELECT session_key, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT, SUM(reasoning_tokens)::BIGINT \
    FROM usage WHERE day >= $1 GROUP BY 1, 2";
const USAGE_BY_MODEL: &str = "SELECT model, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT, SUM(reasoning_tokens)::BIGINT \
    FROM usage WHERE day >= $1 GROUP BY 1, 2";
const USAGE_BY_DAY: &str = "SELECT day, model, COUNT(*), SUM(prompt_tokens)::BIGINT, \
    SUM(completion_tokens)::BIGINT, SUM(cached_tokens)::BIGINT, SUM(reasoning_tokens)::BIGINT \
    FROM usage WHERE day >= $1 GROUP BY 1, 2";

#[async_trait]
impl UsageStore for PgStore {
    async fn record(&self, r: &UsageRecord) -> Result<(), StateError> {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO usage (session_key, model, day, prompt_tokens, completion_tokens, \
             cached_tokens, reasoning_tokens) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
