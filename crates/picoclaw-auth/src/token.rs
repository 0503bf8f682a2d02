//! `TokenSource` and the simple sources.

use async_trait::async_trait;
use picoclaw_types::Secret;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A bearer token and when it stops working.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: Secret<String>,
    /// `None` for tokens that do not expire (API keys).
    pub expires_at: Option<SystemTime>,
}

impl AccessToken {
    pub fn new(token: impl Into<String>, expires_at: Option<SystemTime>) -> Self {
        Self {
            token: Secret::new(token.into()),
            expires_at,
        }
    }

    /// Whether the token is still good for at least `margin`.
    pub fn fresh_for(&self, margin: Duration) -> bool {
        match self.expires_at {
            None => true,
            Some(at) => at
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > margin),
        }
    }
}

/// Why no token could be had. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Every credential in a chain failed; each entry says which and why.
    #[error("could not get a token for {scope}; tried: {}", tried.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join("; "))]
    NoCredential {
        scope: String,
        tried: Vec<(String, String)>,
    },
    #[error("{0}")]
    Config(String),
}

/// Where bearer tokens come from.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// What this source is, for logs and errors (`azure managed identity`, `api key`).
    fn describe(&self) -> String;

    /// A token that is valid now.
    async fn token(&self) -> Result<AccessToken, AuthError>;
}

#[async_trait]
impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    async fn token(&self) -> Result<AccessToken, AuthError> {
        (**self).token().await
    }
}

/// A fixed key or token.
#[derive(Debug, Clone)]
pub struct StaticToken(Secret<String>);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Secret::new(token.into()))
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    fn describe(&self) -> String {
        "a static token".into()
    }
    async fn token(&self) -> Result<AccessToken, AuthError> {
        Ok(AccessToken {
            token: self.0.clone(),
            expires_at: None,
        })
    }
}

/// Caches another source's token and refreshes it `margin` before it expires; concurrent
/// callers share one refresh.
pub struct CachedToken {
    inner: Arc<dyn TokenSource>,
    margin: Duration,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("inner", &self.inner.describe())
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    /// Refreshes five minutes before expiry.
    pub fn new(inner: Arc<dyn TokenSource>) -> Self {
        Self::with_margin(inner, Duration::from_secs(300))
    }

    pub fn with_margin(inner: Arc<dyn TokenSource>, margin: Duration) -> Self {
        Self {
            inner,
            margin,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl TokenSource for CachedToken {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| t.fresh_for(self.margin)) {
            return Ok(t.clone());
        }
        let fresh = self.inner.token().await?;
        tracing::debug!(source = %self.inner.describe(), "token refreshed");
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize, Duration);

    #[async_trait]
    impl TokenSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        async fn token(&self) -> Result<AccessToken, AuthError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(AccessToken::new(
                format!("t{n}"),
                Some(SystemTime::now() + self.1),
            ))
        }
    }

    #[tokio::test]
    async fn caches_until_close_to_expiry() {
        let long = Arc::new(Counting(AtomicUsize::new(0), Duration::from_secs(3600)));
        let c = CachedToken::new(long.clone());
        assert_eq!(c.token().await.unwrap().token.expose(), "t0");
        assert_eq!(c.token().await.unwrap().token.expose(), "t0");
        assert_eq!(long.0.load(Ordering::SeqCst), 1);
        // A token inside the refresh margin is replaced on the next call.
        let short = Arc::new(Counting(AtomicUsize::new(0), Duration::from_secs(60)));
        let c = CachedToken::new(short.clone());
        assert_eq!(c.token().await.unwrap().token.expose(), "t0");
        assert_eq!(c.token().await.unwrap().token.expose(), "t1");
    }

    #[test]
    fn errors_list_every_attempt_without_secrets() {
        let e = AuthError::NoCredential {
            scope: "https://cognitiveservices.azure.com/.default".into(),
            tried: vec![
                ("managed identity".into(), "no IDENTITY_ENDPOINT".into()),
                ("Azure CLI".into(), "az not found".into()),
            ],
        };
        let m = e.to_string();
        assert!(
            m.contains("managed identity: no IDENTITY_ENDPOINT; Azure CLI: az not found"),
            "{m}"
        );
    }
}
