//! `web_search` against loopback fakes of each backend's documented API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use picoclaw_api::SessionKey;
use picoclaw_tools::{Tool, ToolContext, WebSearchConfig, WebSearchTool};
use serde_json::{Value, json};
use std::collections::HashMap;

fn params(uri: &axum::http::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn fakes() -> String {
    let app = Router::new()
        .route(
            "/res/v1/web/search",
            get(|headers: HeaderMap, uri: axum::http::Uri| async move {
                let q = params(&uri);
                if headers.get("x-subscription-token").and_then(|v| v.to_str().ok()) != Some("brave-key") {
                    return (StatusCode::UNAUTHORIZED, "bad token").into_response();
                }
                let n: usize = q.get("count").and_then(|c| c.parse().ok()).unwrap_or(10);
                let results: Vec<Value> = (0..n)
                    .map(|i| json!({"title": format!("Brave {i}: {}", q["q"]), "url": format!("https://b.example/{i}"), "description": "from brave"}))
                    .collect();
                axum::Json(json!({"type": "search", "web": {"results": results}})).into_response()
            }),
        )
        .route(
            "/search",
            get(|uri: axum::http::Uri| async move {
                let q = params(&uri);
                assert_eq!(q.get("format").map(String::as_str), Some("json"));
                axum::Json(json!({"results": [{"title": "Searx hit", "url": "https://s.example/", "content": format!("about {}", q["q"])}]}))
            })
            .post(|headers: HeaderMap, body: axum::Json<Value>| async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tvly-key") {
                    return (StatusCode::UNAUTHORIZED, "no").into_response();
                }
                axum::Json(json!({"query": body["query"], "results": [
                    {"title": "Tavily hit", "url": "https://t.example/", "content": "from tavily", "score": 0.9}]}))
                .into_response()
            }),
        )
        .route(
            "/html/",
            post(|body: String| async move {
                assert!(body.starts_with("q="), "{body}");
                (
                    [("content-type", "text/html")],
                    r#"<div class="result"><a class="result__a" href="//duckduckgo.com/l/?uddg=https%3A%2F%2Fd.example%2F">Duck hit</a>
                       <a class="result__snippet">quack</a></div>"#,
                )
            }),
        )
        .route("/rate/res/v1/web/search", get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn tool(web: Value) -> WebSearchTool {
    WebSearchTool::new(WebSearchConfig::from_json(&web).unwrap().unwrap())
}

fn ctx() -> ToolContext {
    ToolContext::new(SessionKey::new("t"))
}

#[tokio::test]
async fn every_backend_answers_in_one_shape() {
    let base = fakes().await;
    let brave = tool(
        json!({"brave": {"enabled": true, "api_key": "brave-key", "max_results": 3, "api_base": base}}),
    );
    let out = brave.call(&ctx(), json!({"query": "rust agents"})).await;
    assert!(!out.is_error, "{out:?}");
    assert!(out.content.starts_with("Results for \"rust agents\":\n1. Brave 0: rust agents\n   https://b.example/0\n   from brave"), "{}", out.content);
    assert!(
        out.content.contains("3. Brave 2") && !out.content.contains("4. "),
        "max_results: {}",
        out.content
    );
    let out = brave.call(&ctx(), json!({"query": "x", "count": 1})).await;
    assert!(!out.content.contains("2. "), "{}", out.content);

    let tavily =
        tool(json!({"tavily": {"enabled": true, "api_key": "tvly-key", "api_base": base}}));
    let out = tavily.call(&ctx(), json!({"query": "news"})).await;
    assert!(
        out.content
            .contains("1. Tavily hit\n   https://t.example/\n   from tavily"),
        "{out:?}"
    );

    let searx = tool(json!({"searxng": {"enabled": true, "url": base}}));
    let out = searx.call(&ctx(), json!({"query": "weather"})).await;
    assert!(
        out.content.contains("Searx hit") && out.content.contains("about weather"),
        "{out:?}"
    );

    let ddg = tool(json!({"duckduckgo": {"enabled": true, "api_base": base}}));
    let out = ddg.call(&ctx(), json!({"query": "ducks"})).await;
    assert!(
        out.content
            .contains("1. Duck hit\n   https://d.example/\n   quack"),
        "{out:?}"
    );
}

#[tokio::test]
async fn failures_are_explained() {
    let base = fakes().await;
    let wrong = tool(json!({"brave": {"enabled": true, "api_key": "nope", "api_base": base}}));
    let out = wrong.call(&ctx(), json!({"query": "x"})).await;
    assert!(
        out.is_error && out.content.contains("refused the API key"),
        "{out:?}"
    );
    let limited = tool(
        json!({"brave": {"enabled": true, "api_key": "k", "api_base": format!("{base}/rate")}}),
    );
    let out = limited.call(&ctx(), json!({"query": "x"})).await;
    assert!(
        out.is_error && out.content.contains("rate limit"),
        "{out:?}"
    );
    let down = tool(json!({"searxng": {"enabled": true, "url": "http://127.0.0.1:1"}}));
    let out = down.call(&ctx(), json!({"query": "x"})).await;
    assert!(
        out.is_error && out.content.contains("did not answer"),
        "{out:?}"
    );
    let out = down.call(&ctx(), json!({"query": "   "})).await;
    assert!(out.is_error && out.content.contains("empty"), "{out:?}");
}
