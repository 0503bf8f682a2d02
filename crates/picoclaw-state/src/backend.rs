//! `StateBackend`: every store in one object, and [`open_state`], which picks the backend from
//! `state.url`.

#[cfg(feature = "sqlite")]
use crate::SqliteStore;
use crate::{
    CronStore, InMemoryStore, InboundJournal, KvStore, LeaseStore, MemoryStore, Outbox,
    SessionStore, StateError, UsageStore,
};
use async_trait::async_trait;
use std::path::Path;
use std::sync::Arc;

/// A database holding every store. `Arc<dyn StateBackend>` coerces to `Arc<dyn SessionStore>`,
/// `Arc<dyn MemoryStore>` and so on.
#[async_trait]
pub trait StateBackend:
    SessionStore + UsageStore + MemoryStore + CronStore + KvStore + InboundJournal + Outbox + LeaseStore
{
    /// Where the data lives (a file path, or a URL without its password).
    fn location(&self) -> String;

    /// Waits for pending writes and closes the connections.
    async fn close(&self);
}

#[cfg(feature = "sqlite")]
#[async_trait]
impl StateBackend for SqliteStore {
    fn location(&self) -> String {
        self.path().map_or_else(
            || "in-memory SQLite".to_owned(),
            |p| p.display().to_string(),
        )
    }
    async fn close(&self) {
        SqliteStore::close(self).await;
    }
}

#[async_trait]
impl StateBackend for InMemoryStore {
    fn location(&self) -> String {
        "memory (lost at exit)".to_owned()
    }
    async fn close(&self) {}
}

#[cfg(feature = "postgres")]
#[async_trait]
impl StateBackend for crate::PgStore {
    fn location(&self) -> String {
        crate::PgStore::location(self).to_owned()
    }
    async fn close(&self) {
        crate::PgStore::close(self).await;
    }
}

impl std::fmt::Debug for dyn StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateBackend({})", self.location())
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &Path) -> Result<Arc<dyn StateBackend>, StateError> {
    Ok(Arc::new(SqliteStore::open(path).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(path: &Path) -> Result<Arc<dyn StateBackend>, StateError> {
    Err(StateError::Open {
        message: format!(
            "state in SQLite ({}) needs picoclaw-state's `sqlite` feature, which this build \
             lacks; set state.url to \"memory:\" or build with the feature",
            path.display()
        ),
        source: None,
    })
}

/// Opens the state database named by `url` (the config's `state.url`):
///
/// - empty or absent: SQLite at `default_sqlite` (`~/.picoclaw/state.db`);
/// - `sqlite:PATH` or `sqlite://PATH`: SQLite at PATH;
/// - `postgres://...` or `postgresql://...`: PostgreSQL (builds with the `postgres` feature);
/// - `memory:`: nothing kept (tests, throwaway runs).
pub async fn open_state(
    url: Option<&str>,
    default_sqlite: &Path,
) -> Result<Arc<dyn StateBackend>, StateError> {
    let url = url.map(str::trim).unwrap_or_default();
    if url.is_empty() {
        return open_sqlite(default_sqlite).await;
    }
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(StateError::Open {
                message: "state.url \"sqlite:\" names no file; write sqlite:/path/to/state.db"
                    .into(),
                source: None,
            });
        }
        return open_sqlite(Path::new(path)).await;
    }
    if url == "memory:" {
        return Ok(Arc::new(InMemoryStore::new()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(crate::PgStore::open(url).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(StateError::Open {
            message: "state.url points at PostgreSQL, but this picoclaw was built without \
                      PostgreSQL support; build it with `--features postgres` or use SQLite"
                .into(),
            source: None,
        });
    }
    let scheme = url.split(':').next().unwrap_or(url);
    Err(StateError::Open {
        message: format!(
            "state.url \"{scheme}:...\" is not supported; use sqlite:PATH or \
             postgres://user:password@host/database (or leave it empty for ~/.picoclaw/state.db)"
        ),
        source: None,
    })
}

/// A state URL fit for messages and logs: `postgres://user:***@host/db`, never the password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://pico:s3cret@db.example:5432/pico"),
            "postgres://pico:***@db.example:5432/pico"
        );
        assert_eq!(
            redact_url("postgres://pico@db/pico"),
            "postgres://pico@db/pico"
        );
        assert_eq!(redact_url("postgres://db/pico"), "postgres://db/pico");
    }

    #[tokio::test]
    async fn urls_pick_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("state.db");
        let s = open_state(None, &default).await.unwrap();
        assert_eq!(s.location(), default.display().to_string());
        let other = dir.path().join("other.db");
        let s = open_state(Some(&format!("sqlite:{}", other.display())), &default)
            .await
            .unwrap();
        assert_eq!(s.location(), other.display().to_string());
        assert!(other.exists());
        let s = open_state(Some("memory:"), &default).await.unwrap();
        // Usable through every trait.
        let sessions: Arc<dyn SessionStore> = s.clone();
        sessions
            .append(
                &picoclaw_api::SessionKey::new("k"),
                &[picoclaw_api::ChatMessage::user("x")],
            )
            .await
            .unwrap();
        let err = open_state(Some("mysql://x"), &default)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not supported") && err.contains("sqlite:PATH"),
            "{err}"
        );
        let err = open_state(Some("sqlite:"), &default)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("names no file"), "{err}");
        #[cfg(not(feature = "postgres"))]
        {
            let err = open_state(Some("postgres://u:p@127.0.0.1/x"), &default)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("--features postgres"), "{err}");
        }
    }
}
