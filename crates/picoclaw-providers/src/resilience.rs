//! Resilience around any provider: [`Retrying`] retries retryable failures with exponential
//! backoff and jitter (honouring the vendor's `Retry-After`), and [`FallbackChain`] hands a
//! request to the next model when one keeps failing.
//!
//! Only the start of a stream is retried or handed over: once text has reached the user, a
//! failure is reported rather than replayed.

use crate::{Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::time::Duration;

/// How failed requests are retried.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: usize,
    /// The first wait; each next one doubles, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A vendor's `Retry-After` longer than this is capped to it.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    pub fn new(max_retries: usize) -> Self {
        Self {
            max_retries,
            ..Self::default()
        }
    }

    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries)
    }

    /// Runs `op` under this policy.
    async fn run<T, F, Fut>(&self, provider: &str, op: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let cap = self.max_retry_after;
        op.retry(self.backoff())
            .when(ProviderError::is_retryable)
            .adjust(move |err: &ProviderError, next: Option<Duration>| {
                // `None` means the attempts are used up; a Retry-After never extends them.
                next.map(|d| err.retry_after().map_or(d, |ra| ra.min(cap)))
            })
            .notify(|err: &ProviderError, wait: Duration| {
                tracing::warn!(provider, error = %err, wait_ms = wait.as_millis() as u64,
                    "model call failed; retrying");
            })
            .await
    }
}

/// A provider that retries retryable failures (rate limits, 5xx, timeouts, connection errors)
/// and fails fast on everything else (bad key, invalid request).
pub struct Retrying {
    inner: Arc<dyn LlmProvider>,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Retrying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying")
            .field("inner", &self.inner.name())
            .field("policy", &self.policy)
            .finish()
    }
}

impl Retrying {
    pub fn new(inner: Arc<dyn LlmProvider>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

#[async_trait]
impl LlmProvider for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.policy
            .run(self.inner.name(), || self.inner.chat(req.clone()))
            .await
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        self.policy
            .run(self.inner.name(), || self.inner.stream(req.clone()))
            .await
    }
}

/// One model a [`FallbackChain`] may use.
#[derive(Clone)]
pub struct Route {
    pub provider: Arc<dyn LlmProvider>,
    /// The model id sent to this provider.
    pub model: String,
    /// How it is shown to the user (`deepseek/deepseek-chat`).
    pub label: String,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("provider", &self.provider.name())
            .field("model", &self.model)
            .field("label", &self.label)
            .finish()
    }
}

impl Route {
    pub fn new(
        provider: Arc<dyn LlmProvider>,
        model: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Self {
            provider,
            model: model.into(),
            label: label.into(),
        }
    }
}

/// Tries each route in order; a route that fails with a retryable error or an unreadable
/// response (after its own retries) hands the request to the next one. The answer's
/// `served_by` names the route that answered when it was not the first.
#[derive(Debug)]
pub struct FallbackChain {
    routes: Vec<Route>,
}

impl FallbackChain {
    /// A chain over `routes` (the first is the primary). Fails on an empty list.
    pub fn new(routes: Vec<Route>) -> Result<Self, ProviderError> {
        if routes.is_empty() {
            return Err(ProviderError::NotConfigured(
                "a fallback chain needs at least one model".into(),
            ));
        }
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    fn worth_falling_back(err: &ProviderError) -> bool {
        err.is_retryable() || matches!(err, ProviderError::Response { .. })
    }

    async fn attempt<T, F, Fut>(
        &self,
        req: &ChatRequest,
        call: F,
    ) -> Result<(T, usize), ProviderError>
    where
        F: Fn(Arc<dyn LlmProvider>, ChatRequest) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut last_err = None;
        for (i, route) in self.routes.iter().enumerate() {
            let mut r = req.clone();
            r.model = route.model.clone();
            match call(Arc::clone(&route.provider), r).await {
                Ok(v) => return Ok((v, i)),
                Err(e) if Self::worth_falling_back(&e) && i + 1 < self.routes.len() => {
                    tracing::warn!(model = %route.label, error = %e,
                        next = %self.routes[i + 1].label, "model failed; falling back");
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| {
            ProviderError::NotConfigured("a fallback chain needs at least one model".into())
        }))
    }
}

#[async_trait]
impl LlmProvider for FallbackChain {
    fn name(&self) -> &str {
        self.routes
            .first()
            .map_or("fallback", |r| r.provider.name())
    }

    fn capabilities(&self) -> Capabilities {
        self.routes
            .first()
            .map(|r| r.provider.capabilities())
            .unwrap_or_default()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let (mut resp, i) = self
            .attempt(&req, |p, r| async move { p.chat(r).await })
            .await?;
        if i > 0 {
            resp.served_by = Some(self.routes[i].label.clone());
        }
        Ok(resp)
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let (stream, i) = self
            .attempt(&req, |p, r| async move { p.stream(r).await })
            .await?;
        if i == 0 {
            return Ok(stream);
        }
        let label = self.routes[i].label.clone();
        Ok(Box::pin(futures::StreamExt::map(stream, move |item| {
            item.map(|event| match event {
                crate::StreamEvent::Completed(mut resp) => {
                    resp.served_by = Some(label.clone());
                    crate::StreamEvent::Completed(resp)
                }
                other => other,
            })
        })))
    }
}

/// Holds a provider to `rpm` requests per minute: a request over the limit waits (in arrival
/// order) until the oldest one in the last minute ages out.
pub struct RequestLimit {
    inner: Arc<dyn LlmProvider>,
    rpm: usize,
    sent: tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl std::fmt::Debug for RequestLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestLimit")
            .field("inner", &self.inner.name())
            .field("rpm", &self.rpm)
            .finish()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl RequestLimit {
    /// `rpm` of 0 is treated as 1.
    pub fn new(inner: Arc<dyn LlmProvider>, rpm: u32) -> Self {
        Self {
            inner,
            rpm: (rpm as usize).max(1),
            sent: tokio::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    async fn acquire(&self) {
        // The lock is held while waiting, so waiting requests go out in arrival order.
        let mut sent = self.sent.lock().await;
        loop {
            let now = tokio::time::Instant::now();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= MINUTE)
            {
                sent.pop_front();
            }
            if sent.len() < self.rpm {
                sent.push_back(now);
                return;
            }
            let Some(oldest) = sent.front().copied() else {
                continue;
            };
            let wait = MINUTE.saturating_sub(now.duration_since(oldest));
            tracing::debug!(
                provider = self.inner.name(),
                wait_ms = wait.as_millis() as u64,
                "rpm limit reached; waiting"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait]
impl LlmProvider for RequestLimit {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.acquire().await;
        self.inner.chat(req).await
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        self.acquire().await;
        self.inner.stream(req).await
    }
}

/// Spreads requests round-robin over routes serving the same model alias; a route that fails
/// with a retryable error passes the request to the next one.
#[derive(Debug)]
pub struct LoadBalancer {
    routes: Vec<Route>,
    next: std::sync::atomic::AtomicUsize,
}

impl LoadBalancer {
    pub fn new(routes: Vec<Route>) -> Result<Self, ProviderError> {
        if routes.is_empty() {
            return Err(ProviderError::NotConfigured(
                "a load balancer needs at least one model".into(),
            ));
        }
        Ok(Self {
            routes,
            next: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    async fn attempt<T, F, Fut>(&self, req: &ChatRequest, call: F) -> Result<T, ProviderError>
    where
        F: Fn(Arc<dyn LlmProvider>, ChatRequest) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let n = self.routes.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let route = &self.routes[(start + k) % n];
            let mut r = req.clone();
            r.model = route.model.clone();
            match call(Arc::clone(&route.provider), r).await {
                Ok(v) => return Ok(v),
                Err(e) if FallbackChain::worth_falling_back(&e) && k + 1 < n => {
                    tracing::warn!(model = %route.label, error = %e, "balanced model failed; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::NotConfigured("no model to balance over".into())))
    }
}

#[async_trait]
impl LlmProvider for LoadBalancer {
    fn name(&self) -> &str {
        self.routes
            .first()
            .map_or("balanced", |r| r.provider.name())
    }

    fn capabilities(&self) -> Capabilities {
        self.routes
            .first()
            .map(|r| r.provider.capabilities())
            .unwrap_or_default()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.attempt(&req, |p, r| async move { p.chat(r).await })
            .await
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        self.attempt(&req, |p, r| async move { p.stream(r).await })
            .await
    }
}
