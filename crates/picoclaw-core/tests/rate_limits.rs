//! Per-conversation rate limits (`rate_limits`) on a paused clock: calls under a limit pass at
//! once, a call over it waits for the 60-second window (up to 30 s), a longer wait ends the turn
//! with an answer naming the limit and nothing more is called; each session has its own window.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_core::*;
use picoclaw_testkit::{Reply, ScriptedProvider};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Counts its calls.
struct Count(Arc<AtomicUsize>);

#[async_trait]
impl Tool for Count {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new("count", "Counts.", json!({"type":"object"}))
    }
    async fn call(&self, _ctx: &ToolContext, _args: serde_json::Value) -> ToolOutput {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ToolOutput::ok(format!("call {n}"))
    }
}

fn agent(provider: &Arc<ScriptedProvider>, limits: RateLimits) -> (Agent, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let agent = Agent::builder(provider.clone())
        .model("test-model")
        .tool(Count(calls.clone()))
        .rate_limits(limits)
        .build()
        .unwrap();
    (agent, calls)
}

#[tokio::test(start_paused = true)]
async fn calls_under_the_limits_pass_without_waiting() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_calls(vec![("count", json!({})), ("count", json!({}))]),
        Reply::text("done"),
    ]));
    let (agent, calls) = agent(&provider, RateLimits::new(2, 2));
    let start = Instant::now();
    let out = agent.chat(&SessionKey::new("s"), "go").await.unwrap();
    assert_eq!(out.text, "done");
    assert_eq!(out.end, TurnEnd::Answered);
    assert_eq!((out.model_calls, out.tool_calls), (2, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_limit_waits_for_the_window_then_goes_on() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("count", json!({})),
        Reply::text("first"),
        Reply::text("second"),
    ]));
    let (agent, _) = agent(&provider, RateLimits::new(2, 0));
    let key = SessionKey::new("s");
    assert_eq!(agent.chat(&key, "one").await.unwrap().text, "first");
    tokio::time::advance(Duration::from_secs(40)).await;
    let start = Instant::now();
    let out = agent.chat(&key, "two").await.unwrap();
    // The window's oldest request was 40 s old: 20 s more.
    assert_eq!(start.elapsed(), Duration::from_secs(20));
    assert_eq!((out.text.as_str(), out.end), ("second", TurnEnd::Answered));
    assert_eq!(provider.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_wait_over_thirty_seconds_ends_the_turn_with_the_limit_and_calls_nothing() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("count", json!({})),
        Reply::text("first"),
        Reply::text("never"),
    ]));
    let (agent, calls) = agent(&provider, RateLimits::new(2, 0));
    let key = SessionKey::new("s");
    agent.chat(&key, "one").await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    let start = Instant::now();
    let out = agent.chat(&key, "two").await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "answered at once");
    assert_eq!(out.end, TurnEnd::RateLimited);
    assert_eq!(
        out.text,
        "This conversation reached its limit of 2 model requests per minute \
         (rate_limits.max_requests_per_minute); try again in 50 seconds."
    );
    assert_eq!(out.model_calls, 0);
    assert_eq!(provider.requests().len(), 2);
    assert_eq!(provider.remaining(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The answer is in the history, after the user's message.
    let saved = agent.session_store().load(&key, None).await.unwrap();
    let last = saved.messages.last().unwrap();
    assert_eq!(
        (last.role, last.text()),
        (Role::Assistant, out.text.clone())
    );
}

#[tokio::test(start_paused = true)]
async fn each_conversation_has_its_own_window() {
    let provider = Arc::new(ScriptedProvider::new([Reply::text("a"), Reply::text("b")]));
    let (agent, _) = agent(&provider, RateLimits::new(1, 0));
    agent.chat(&SessionKey::new("alice"), "hi").await.unwrap();
    let start = Instant::now();
    let out = agent.chat(&SessionKey::new("bob"), "hi").await.unwrap();
    assert_eq!((out.text.as_str(), start.elapsed()), ("b", Duration::ZERO));
    // Alice's window is full for another minute: refused.
    let again = agent.chat(&SessionKey::new("alice"), "hi").await.unwrap();
    assert_eq!(again.end, TurnEnd::RateLimited);
    assert_eq!(provider.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tool_calls_over_the_limit_wait_or_end_the_turn() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("count", json!({})),
        Reply::text("first"),
        Reply::tool_call("count", json!({})),
        Reply::text("second"),
        Reply::tool_calls(vec![
            ("count", json!({})),
            ("count", json!({})),
            ("count", json!({})),
        ]),
        Reply::text("never"),
    ]));
    let (agent, calls) = agent(&provider, RateLimits::new(0, 2));
    let key = SessionKey::new("s");
    agent.chat(&key, "one").await.unwrap();
    tokio::time::advance(Duration::from_secs(35)).await;
    // One slot left: no wait.
    let start = Instant::now();
    assert_eq!(agent.chat(&key, "two").await.unwrap().text, "second");
    assert_eq!(start.elapsed(), Duration::ZERO);
    tokio::time::advance(Duration::from_secs(10)).await;
    // Three calls: the first waits 15 s for the oldest slot, the second would wait 35 s more.
    let start = Instant::now();
    let out = agent.chat(&key, "three").await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    assert_eq!(out.end, TurnEnd::RateLimited);
    assert_eq!(
        out.text,
        "This conversation reached its limit of 2 tool calls per minute \
         (rate_limits.max_tool_calls_per_minute); try again in 35 seconds."
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(out.tool_calls, 1);
    assert_eq!(
        provider.requests().len(),
        5,
        "no model call after the refusal"
    );
    assert_eq!(provider.remaining(), 1);
    // Every call of the model's message has its result, so the history stays valid.
    let saved = agent.session_store().load(&key, None).await.unwrap();
    let results: Vec<String> = saved
        .messages
        .iter()
        .rev()
        .skip(1)
        .take(3)
        .map(|m| m.text())
        .collect();
    assert!(
        results[0].starts_with("Not run: This conversation reached"),
        "{results:?}"
    );
    assert!(results[1].starts_with("Not run: "), "{results:?}");
    assert_eq!(results[2], "call 3");
}

#[tokio::test(start_paused = true)]
async fn no_limits_means_no_bookkeeping() {
    let provider = Arc::new(ScriptedProvider::repeating(Reply::text("ok")));
    let (agent, _) = agent(&provider, RateLimits::default());
    for i in 0..50 {
        agent
            .chat(&SessionKey::new(format!("s{i}")), "hi")
            .await
            .unwrap();
    }
    assert_eq!(agent.rate_limiter().tracked_sessions(), 0);
}
