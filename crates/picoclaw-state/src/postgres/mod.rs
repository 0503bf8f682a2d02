//! `PgStore`: every store on PostgreSQL (feature `postgres`), for several gateway instances
//! sharing one database. Same behaviour as [`crate::SqliteStore`] (both pass the same
//! conformance suites); claims are single conditional statements (`FOR UPDATE SKIP LOCKED` for
//! the outbox), so concurrent instances never take the same run, message or lease.
//!
//! The URL is a libpq-style `postgres://user:password@host:port/database`; a schema of its own
//! can be chosen with `?options=-c%20search_path%3Dname` (the schema must exist).
//!
//! This module holds the store itself (connecting, migrations) and the helpers every part
//! shares; each trait's implementation lives in a submodule: `session`, `usage`,
//! `memory`, `cron` and `runtime` (kv, inbound journal, outbox, leases).

mod cron;
mod memory;
mod runtime;
mod session;
mod usage;

use crate::StateError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conformance::{drop_schema, fresh_schema, server_url};
    use picoclaw_api::{ChatMessage, SessionKey};

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

    /// A database made by the migrations before the usage ledger kept reasoning tokens
    /// upgrades when opened; its old rows count no reasoning.
    #[tokio::test]
    async fn a_ledger_from_before_reasoning_tokens_upgrades() {
        use crate::{GroupBy, UsageRecord, UsageStore};
        let (schema, url) = fresh_schema().await;
        let dir = tempfile::tempdir().unwrap();
        let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations_pg");
        for entry in std::fs::read_dir(&all).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.as_str() < "0003" {
                std::fs::copy(entry.path(), dir.path().join(&name)).unwrap();
            }
        }
        let pool = PgPool::connect(&url).await.unwrap();
        Migrator::new(dir.path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO usage (session_key, model, day, prompt_tokens, completion_tokens, \
             cached_tokens) VALUES ('cli:old', 'openai/o3', '2026-11-01', 100, 40, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let store = PgStore::open(&url).await.unwrap();
        let usage = picoclaw_api::Usage::new(10, 30).with_reasoning(25);
        let record = UsageRecord::now(SessionKey::new("cli:old"), "openai/o3", usage);
        store.record(&record.on_day("2026-11-02")).await.unwrap();
        let rows = store.summary(None, GroupBy::Day).await.unwrap();
        let sums: Vec<(&str, u64, u64)> = rows
            .iter()
            .map(|r| (r.group.as_str(), r.completion_tokens, r.reasoning_tokens))
            .collect();
        assert_eq!(sums, [("2026-11-02", 30, 25), ("2026-11-01", 40, 0)]);
        store.close().await;
        drop_schema(&schema).await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_a_clear_error_without_the_password() {
        let url = server_url().replace("picoclaw:picoclaw@", "picoclaw:wrong-secret@");
        let err = PgStore::open(&url).await.unwrap_err().to_string();
        assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
        assert!(!err.contains("wrong-secret"), "{err}");
    }
}
