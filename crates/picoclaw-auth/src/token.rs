//! [`CachedToken`]: another source's token, refreshed before it expires. The
//! [`TokenSource`] trait and [`StaticToken`] are picoclaw-api's.

use async_trait::async_trait;
use picoclaw_api::auth::{AccessToken, AuthError, TokenSource};
use std::sync::Arc;
use std::time::Duration;

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
    use std::time::SystemTime;

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
