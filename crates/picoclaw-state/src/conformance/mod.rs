//! The behaviour every [`SessionStore`](crate::SessionStore) backend must show. Backends call
//! [`session_store_suite`] (or the async-factory form) from their tests with a factory that
//! makes a fresh, empty store.
//!
//! The checks are grouped by trait: `session` ([`session_store_suite`]), `usage`
//! ([`usage_store_suite`]), `memory` ([`memory_store_suite`]), `cron` (jobs, and
//! [`scheduler_fires_once`] for two schedulers) and `runtime` ([`runtime_suite`], and the
//! two-instance races [`claims_are_exclusive`] and [`session_leases_serialize`]). This module
//! re-exports them all and, with the `postgres` feature, holds the PostgreSQL test-server helpers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cron;
mod memory;
mod runtime;
mod session;
mod usage;

pub use cron::scheduler_fires_once;
pub use memory::memory_store_suite;
pub use runtime::{claims_are_exclusive, runtime_suite, session_leases_serialize};
pub use session::{session_store_suite, session_store_suite_async};
pub use usage::usage_store_suite;

/// PostgreSQL test servers: the URL comes from `PICOCLAW_TEST_POSTGRES_URL` (default: what
/// `scripts/postgres.sh` sets up); every test works in a schema of its own.
#[cfg(feature = "postgres")]
mod pg {
    use sqlx::postgres::{PgPool, PgPoolOptions};
    use std::time::Duration;

    pub const DEFAULT_URL: &str = "postgres://picoclaw:picoclaw@127.0.0.1:5432/picoclaw_test";

    pub fn server_url() -> String {
        std::env::var("PICOCLAW_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
    }

    /// A connection to the test server, or a failure that says how to start one.
    async fn admin() -> PgPool {
        let url = server_url();
        match PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
        {
            Ok(pool) => pool,
            Err(e) => panic!(
                "PostgreSQL is not reachable at {} ({e}). Start it with `bash scripts/postgres.sh` \
                 (installs Debian's postgresql if needed and starts it on 127.0.0.1:5432 as the \
                 postgres user), or point PICOCLAW_TEST_POSTGRES_URL at a database where the \
                 role may create schemas.",
                crate::redact_url(&url)
            ),
        }
    }

    /// A fresh, empty schema on the test server and the URL that uses it.
    pub async fn fresh_schema() -> (String, String) {
        let schema = format!("picoclaw_t_{}", crate::new_job_id());
        let pool = admin().await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let url = server_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        (
            schema.clone(),
            format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        )
    }

    pub async fn drop_schema(schema: &str) {
        let pool = admin().await;
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}
#[cfg(feature = "postgres")]
pub use pg::{DEFAULT_URL as POSTGRES_DEFAULT_URL, drop_schema, fresh_schema, server_url};
