//! Per-conversation rate limits: model requests and tool calls per minute, each counted in a
//! sliding 60-second window per session key. A call that would go over a limit waits for the
//! window to free a slot, up to [`RateLimiter::MAX_WAIT`]; a longer wait is refused, and the turn
//! ends with an answer saying which limit and when to try again. Time is tokio's, so a test with a
//! paused clock sees the waits without sleeping.

use picoclaw_api::SessionKey;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The window both limits are counted in.
const WINDOW: Duration = Duration::from_secs(60);

/// Sessions kept before idle ones (nothing in their window) are forgotten.
const SWEEP_ABOVE: usize = 64;

/// How many calls one conversation may make per minute; 0 means no limit. It is also the
/// config file's `rate_limits` section (the original PicoClaw's keys), and an agent's own
/// `agents.list[].rate_limits`: a call over a limit waits for the window to free up, up to 30
/// seconds; a longer wait ends the turn with an answer naming the limit and when to try again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RateLimits {
    /// Model requests (each provider call of a turn's tool loop) per minute.
    pub max_requests_per_minute: u32,
    /// Tool calls per minute.
    pub max_tool_calls_per_minute: u32,
}

impl RateLimits {
    /// Limits of `requests` model requests and `tool_calls` tool calls per minute (0: none).
    pub fn new(requests: u32, tool_calls: u32) -> Self {
        Self {
            max_requests_per_minute: requests,
            max_tool_calls_per_minute: tool_calls,
        }
    }

    /// Whether neither limit is set.
    pub fn is_unlimited(&self) -> bool {
        self.max_requests_per_minute == 0 && self.max_tool_calls_per_minute == 0
    }
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RateKind {
    /// Model requests (`rate_limits.max_requests_per_minute`).
    Requests,
    /// Tool calls (`rate_limits.max_tool_calls_per_minute`).
    ToolCalls,
}

impl RateKind {
    /// The config key of this limit.
    pub fn key(self) -> &'static str {
        match self {
            RateKind::Requests => "rate_limits.max_requests_per_minute",
            RateKind::ToolCalls => "rate_limits.max_tool_calls_per_minute",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            RateKind::Requests => "model requests",
            RateKind::ToolCalls => "tool calls",
        }
    }
}

/// A call refused because the window would free up only after [`RateLimiter::MAX_WAIT`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimited {
    pub kind: RateKind,
    /// The limit that was reached.
    pub limit: u32,
    /// When the window has room again.
    pub retry_after: Duration,
}

impl RateLimited {
    /// The answer the user gets.
    pub fn message(&self) -> String {
        let secs = self.retry_after.as_millis().div_ceil(1000).max(1);
        format!(
            "This conversation reached its limit of {} {} per minute ({}); try again in {} \
             seconds.",
            self.limit,
            self.kind.noun(),
            self.kind.key(),
            secs
        )
    }
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

#[derive(Debug, Default)]
struct Windows {
    requests: VecDeque<Instant>,
    tool_calls: VecDeque<Instant>,
}

impl Windows {
    fn prune(&mut self, now: Instant) {
        for q in [&mut self.requests, &mut self.tool_calls] {
            while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                q.pop_front();
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.requests.is_empty() && self.tool_calls.is_empty()
    }
}

/// Counts the calls of each conversation against [`RateLimits`]. Memory stays bounded: a
/// session with nothing in its window is forgotten.
#[derive(Debug, Default)]
pub struct RateLimiter {
    limits: RateLimits,
    sessions: Mutex<HashMap<SessionKey, Windows>>,
}

impl RateLimiter {
    /// The longest a call waits for its window; a longer wait ends the turn instead.
    pub const MAX_WAIT: Duration = Duration::from_secs(30);

    /// A limiter for `limits`.
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Sessions it currently remembers.
    pub fn tracked_sessions(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Windows>> {
        match self.sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Takes one slot of `kind` for `session` now, or says how long until one is free.
    pub fn try_acquire(&self, session: &SessionKey, kind: RateKind) -> Result<(), Duration> {
        let limit = match kind {
            RateKind::Requests => self.limits.max_requests_per_minute,
            RateKind::ToolCalls => self.limits.max_tool_calls_per_minute,
        };
        if limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut sessions = self.lock();
        if sessions.len() > SWEEP_ABOVE {
            sessions.retain(|_, w| {
                w.prune(now);
                !w.is_idle()
            });
        }
        let windows = sessions.entry(session.clone()).or_default();
        windows.prune(now);
        let queue = match kind {
            RateKind::Requests => &mut windows.requests,
            RateKind::ToolCalls => &mut windows.tool_calls,
        };
        if queue.len() < limit as usize {
            queue.push_back(now);
            return Ok(());
        }
        // The window frees a slot when its oldest call is a minute old (with several over the
        // limit, when enough of them are: the limit may have been lowered).
        let over = queue.len() - limit as usize;
        let free_at = queue.get(over).copied().unwrap_or(now) + WINDOW;
        Err(free_at.saturating_duration_since(now))
    }

    /// Takes one slot of `kind` for `session`, waiting up to [`Self::MAX_WAIT`] for the window
    /// to free one.
    pub async fn acquire(&self, session: &SessionKey, kind: RateKind) -> Result<(), RateLimited> {
        loop {
            match self.try_acquire(session, kind) {
                Ok(()) => return Ok(()),
                Err(wait) if wait > Self::MAX_WAIT => {
                    let limit = match kind {
                        RateKind::Requests => self.limits.max_requests_per_minute,
                        RateKind::ToolCalls => self.limits.max_tool_calls_per_minute,
                    };
                    tracing::info!(session = %session, ?kind, limit, wait_ms = wait.as_millis() as u64, "rate limit reached");
                    return Err(RateLimited {
                        kind,
                        limit,
                        retry_after: wait,
                    });
                }
                Err(wait) => {
                    tracing::debug!(session = %session, ?kind, wait_ms = wait.as_millis() as u64, "waiting for the rate limit window");
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_window_waits_then_refuses_past_thirty_seconds() {
        let limiter = RateLimiter::new(RateLimits::new(2, 0));
        let s = SessionKey::new("a");
        let start = Instant::now();
        limiter.acquire(&s, RateKind::Requests).await.unwrap();
        tokio::time::advance(Duration::from_secs(40)).await;
        limiter.acquire(&s, RateKind::Requests).await.unwrap();
        // The first slot frees at 60 s: a 20 s wait.
        limiter.acquire(&s, RateKind::Requests).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        // The next frees at 100 s: 40 s away, refused at once.
        let err = limiter.acquire(&s, RateKind::Requests).await.unwrap_err();
        assert_eq!(err.retry_after, Duration::from_secs(40));
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        assert!(
            err.message()
                .contains("limit of 2 model requests per minute")
        );
        assert!(err.message().contains("try again in 40 seconds"));
        // Tool calls are not limited.
        for _ in 0..100 {
            limiter.acquire(&s, RateKind::ToolCalls).await.unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_are_forgotten() {
        let limiter = RateLimiter::new(RateLimits::new(1, 1));
        for i in 0..(SWEEP_ABOVE + 1) {
            limiter
                .try_acquire(&SessionKey::new(format!("s{i}")), RateKind::ToolCalls)
                .unwrap();
        }
        assert_eq!(limiter.tracked_sessions(), SWEEP_ABOVE + 1);
        tokio::time::advance(WINDOW).await;
        limiter
            .try_acquire(&SessionKey::new("new"), RateKind::Requests)
            .unwrap();
        assert_eq!(limiter.tracked_sessions(), 1);
    }
}
