//! `ProviderError`: what can go wrong talking to a model, phrased as what the caller can do.

use std::time::Duration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from a model call. Messages never contain the API key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// No usable configuration (missing key, unknown preset...). Not retryable.
    #[error("{0}")]
    NotConfigured(String),

    /// The vendor rejected the credentials (401/403). `key_hint` names the setting to fix.
    #[error("{provider} rejected the API key ({status}): {message}. Check {key_hint}")]
    Auth {
        provider: String,
        status: u16,
        message: String,
        key_hint: String,
    },

    /// 429: slow down. `retry_after` is the vendor's hint when it gave one.
    #[error("{provider} rate limit hit: {message}")]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
        message: String,
    },

    /// The conversation no longer fits the model's context window.
    #[error("{provider}: the conversation is too long for the model's context window: {message}")]
    ContextLength { provider: String, message: String },

    /// The vendor's content filter refused the prompt or the answer.
    #[error("{provider} refused the request by its content filter: {message}")]
    ContentFiltered { provider: String, message: String },

    /// The vendor refused the request as malformed (400/404/422): model name, parameters...
    #[error("{provider} rejected the request ({status}): {message}")]
    InvalidRequest {
        provider: String,
        status: u16,
        message: String,
    },

    /// 5xx from the vendor. Retryable.
    #[error("{provider} server error ({status}): {message}")]
    Server {
        provider: String,
        status: u16,
        message: String,
    },

    /// The request did not complete in time.
    #[error("{provider} did not answer within {after:?}")]
    Timeout { provider: String, after: Duration },

    /// Connection refused, reset, DNS, TLS... Retryable.
    #[error("could not reach {provider} at {url}: {source}")]
    Transport {
        provider: String,
        url: String,
        #[source]
        source: BoxError,
    },

    /// The vendor answered something we could not understand (garbage, truncated stream).
    #[error("{provider} sent a response picoclaw could not read: {message}")]
    Response { provider: String, message: String },
}

impl ProviderError {
    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout { .. }
                | ProviderError::Transport { .. }
        )
    }

    /// How long the vendor asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Builds a [`ProviderError::Response`].
    pub fn response(provider: impl Into<String>, message: impl Into<String>) -> Self {
        ProviderError::Response {
            provider: provider.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability() {
        let rl = ProviderError::RateLimited {
            provider: "openai".into(),
            retry_after: Some(Duration::from_secs(3)),
            message: "slow down".into(),
        };
        assert!(rl.is_retryable());
        assert_eq!(rl.retry_after(), Some(Duration::from_secs(3)));
        let auth = ProviderError::Auth {
            provider: "openai".into(),
            status: 401,
            message: "bad key".into(),
            key_hint: "providers.openai.api_key or OPENAI_API_KEY".into(),
        };
        assert!(!auth.is_retryable());
        assert!(auth.to_string().contains("OPENAI_API_KEY"));
    }
}
