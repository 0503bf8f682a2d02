//! Retries and fallbacks over scripted providers and a real loopback endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use futures::StreamExt;
use picoclaw_api::ChatMessage;
use picoclaw_providers::{
    ChatRequest, FallbackChain, LlmProvider, ProviderError, RetryPolicy, Retrying, Route,
    StreamEvent,
};
use picoclaw_testkit::{Reply, ScriptedProvider};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fast(retries: usize) -> RetryPolicy {
    RetryPolicy::new(retries).with_backoff(Duration::from_millis(5), Duration::from_millis(20))
}

fn req() -> ChatRequest {
    ChatRequest::new("primary-model", vec![ChatMessage::user("hi")])
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let inner = Arc::new(ScriptedProvider::new([
        Reply::error(500, "boom"),
        Reply::error(502, "bad gateway"),
        Reply::text("third time lucky"),
    ]));
    let p = Retrying::new(inner.clone(), fast(3));
    assert_eq!(
        p.chat(req()).await.unwrap().message.text(),
        "third time lucky"
    );
    assert_eq!(inner.requests().len(), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let inner = Arc::new(ScriptedProvider::new([
        Reply::rate_limited(1),
        Reply::text("ok"),
    ]));
    let p = Retrying::new(inner.clone(), fast(3));
    let started = Instant::now();
    assert_eq!(p.chat(req()).await.unwrap().message.text(), "ok");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(inner.requests().len(), 2);
}

#[tokio::test]
async fn auth_and_validation_errors_fail_fast() {
    let inner = Arc::new(ScriptedProvider::new([
        Reply::error(401, "bad key"),
        Reply::text("never"),
    ]));
    let p = Retrying::new(inner.clone(), fast(5));
    assert!(matches!(
        p.chat(req()).await,
        Err(ProviderError::Auth { .. })
    ));
    assert_eq!(inner.requests().len(), 1);
    let inner = Arc::new(ScriptedProvider::new([
        Reply::error(400, "bad param"),
        Reply::text("never"),
    ]));
    let p = Retrying::new(inner.clone(), fast(5));
    assert!(matches!(
        p.chat(req()).await,
        Err(ProviderError::InvalidRequest { .. })
    ));
    assert_eq!(inner.requests().len(), 1);
}

#[tokio::test]
async fn retries_run_out() {
    let inner = Arc::new(ScriptedProvider::repeating(Reply::error(503, "down")));
    let p = Retrying::new(inner.clone(), fast(2));
    let err = p.chat(req()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Server { status: 503, .. }));
    assert_eq!(inner.requests().len(), 3, "one attempt and two retries");
}

/// The wrappers over a real client (the OpenAI family's, so with the `openai` feature).
#[cfg(feature = "openai")]
#[tokio::test]
async fn over_http_a_429_then_success_and_a_hung_server_times_out() {
    use picoclaw_providers::{OpenAiCompatConfig, OpenAiCompatible};
    use picoclaw_testkit::ScriptedEndpoint;
    let ep = ScriptedEndpoint::start_with([
        Reply::rate_limited(1),
        Reply::text("after the wait"),
        Reply::text("too slow").delayed(Duration::from_secs(5)),
        Reply::text("too slow").delayed(Duration::from_secs(5)),
    ])
    .await;
    let http = OpenAiCompatible::new(
        OpenAiCompatConfig::new("openai", ep.base_url())
            .with_request_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let p = Retrying::new(Arc::new(http), fast(1));
    assert_eq!(
        p.chat(req()).await.unwrap().message.text(),
        "after the wait"
    );
    let err = p.chat(req()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    assert_eq!(ep.requests().len(), 4);
}

#[tokio::test]
async fn a_failing_model_falls_back_to_the_next_and_says_so() {
    let primary = Arc::new(ScriptedProvider::repeating(Reply::error(503, "overloaded")));
    let backup = Arc::new(ScriptedProvider::repeating(Reply::text("backup here")));
    let chain = FallbackChain::new(vec![
        Route::new(
            Arc::new(Retrying::new(primary.clone(), fast(1))),
            "gpt-x",
            "openai/gpt-x",
        ),
        Route::new(backup.clone(), "deepseek-chat", "deepseek/deepseek-chat"),
    ])
    .unwrap();
    let r = chain.chat(req()).await.unwrap();
    assert_eq!(r.message.text(), "backup here");
    assert_eq!(r.served_by.as_deref(), Some("deepseek/deepseek-chat"));
    assert_eq!(
        primary.requests().len(),
        2,
        "the primary got its retry first"
    );
    assert_eq!(
        backup.requests()[0].model,
        "deepseek-chat",
        "each route sends its own model id"
    );

    // Streams too, and the completed answer names who served it.
    let mut s = chain.stream(req()).await.unwrap();
    let mut served = None;
    while let Some(ev) = s.next().await {
        if let StreamEvent::Completed(r) = ev.unwrap() {
            served = r.served_by;
        }
    }
    assert_eq!(served.as_deref(), Some("deepseek/deepseek-chat"));
}

#[tokio::test]
async fn the_primary_answering_leaves_no_mark_and_auth_errors_do_not_fall_back() {
    let chain = FallbackChain::new(vec![
        Route::new(
            Arc::new(ScriptedProvider::new([Reply::text("primary")])),
            "a",
            "p/a",
        ),
        Route::new(Arc::new(ScriptedProvider::new([])), "b", "p/b"),
    ])
    .unwrap();
    let r = chain.chat(req()).await.unwrap();
    assert_eq!(r.served_by, None);

    let backup = Arc::new(ScriptedProvider::repeating(Reply::text("never")));
    let chain = FallbackChain::new(vec![
        Route::new(
            Arc::new(ScriptedProvider::new([Reply::error(401, "bad key")])),
            "a",
            "p/a",
        ),
        Route::new(backup.clone(), "b", "p/b"),
    ])
    .unwrap();
    assert!(matches!(
        chain.chat(req()).await,
        Err(ProviderError::Auth { .. })
    ));
    assert!(
        backup.requests().is_empty(),
        "a wrong key is the user's to fix, not a fallback's"
    );
    assert!(FallbackChain::new(vec![]).is_err());
}

#[tokio::test(start_paused = true)]
async fn rpm_makes_the_extra_request_wait_for_the_window() {
    use picoclaw_providers::RequestLimit;
    let inner = Arc::new(ScriptedProvider::repeating(Reply::text("ok")));
    let p = Arc::new(RequestLimit::new(inner.clone(), 2));
    let start = tokio::time::Instant::now();
    p.chat(req()).await.unwrap();
    p.chat(req()).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "within the limit: no wait"
    );
    p.chat(req()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(inner.requests().len(), 3);
}

#[tokio::test]
async fn balanced_entries_share_the_load_and_cover_for_each_other() {
    use picoclaw_providers::LoadBalancer;
    let a = Arc::new(ScriptedProvider::repeating(Reply::text("a")));
    let b = Arc::new(ScriptedProvider::new([
        Reply::text("b"),
        Reply::error(503, "down"),
    ]));
    let lb = LoadBalancer::new(vec![
        Route::new(a.clone(), "model-a", "x/model-a"),
        Route::new(b.clone(), "model-b", "y/model-b"),
    ])
    .unwrap();
    let answers: Vec<String> = [
        lb.chat(req()).await.unwrap(),
        lb.chat(req()).await.unwrap(),
        lb.chat(req()).await.unwrap(),
        lb.chat(req()).await.unwrap(),
    ]
    .iter()
    .map(|r| r.message.text())
    .collect();
    // a, b, a, then b fails with 503 and a covers.
    assert_eq!(answers, ["a", "b", "a", "a"]);
    assert_eq!(b.requests()[0].model, "model-b");
    assert_eq!(a.requests().len(), 3);
}
