//! [`TokenSource`]: where bearer tokens come from (an API key, Azure Entra ID, OAuth), and
//! [`StaticToken`], the source of a fixed key.

use crate::Secret;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A bearer token and when it stops working.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AccessToken {
    /// The token itself; formatting it shows `[redacted]`.
    pub token: Secret<String>,
    /// `None` for tokens that do not expire (API keys).
    pub expires_at: Option<SystemTime>,
}

impl AccessToken {
    /// A token that expires at `expires_at` (`None`: never).
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
        /// The scope the token was asked for (`https://cognitiveservices.azure.com/.default`).
        scope: String,
        /// Each credential tried, in order: its name and why it gave no token.
        tried: Vec<(String, String)>,
    },
    /// The source could not produce a token: not logged in, an unreadable credential store, a
    /// failed renewal. The message says what to do; most causes need the user to act (log in,
    /// fix the config), though a failed renewal may succeed later.
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
    /// Wraps a key; [`TokenSource::token`] returns it, never expiring.
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
