//! `web_fetch` against a real HTTP server on 127.0.0.1 (reachable only with `allow_private`,
//! which is also what these tests check the default refuses).

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use picoclaw_tools::{Tool, ToolContext, WebFetchConfig, WebFetchTool};
use picoclaw_types::SessionKey;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn server(hits: Arc<AtomicUsize>) -> String {
    let counted = move |r: Response| {
        hits.fetch_add(1, Ordering::SeqCst);
        r
    };
    let c = counted.clone();
    let app = Router::new()
        .route(
            "/page",
            get({
                let c = c.clone();
                move || async move {
                    c((
                        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        "<html><head><title>T</title><style>body{}</style></head><body>\
                     <h1>Picoclaw news</h1><p>Small <b>and</b> fast.</p>\
                     <script>alert('no')</script><ul><li>one</li><li>two</li></ul></body></html>",
                    )
                        .into_response())
                }
            }),
        )
        .route("/r1", get(|| async { Redirect::temporary("/r2") }))
        .route("/r2", get(|| async { Redirect::permanent("/page") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/big",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "x".repeat(6 * 1024 * 1024),
                )
            }),
        )
        .route(
            "/long",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "abcdefghij".repeat(1000),
                )
            }),
        )
        .route(
            "/png",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0x89u8, 0x50, 0x4e, 0x47],
                )
            }),
        )
        .route(
            "/latin1",
            get(|| async {
                let mut r = vec![b'c', b'a', b'f', 0xE9].into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=iso-8859-1"),
                );
                r
            }),
        )
        .route("/json", get(|| async { axum::Json(json!({"ok": true})) }))
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "nope") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn ctx() -> ToolContext {
    ToolContext::new(SessionKey::new("t"))
}

#[tokio::test]
async fn pages_come_back_as_markdown_within_the_caps() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = server(Arc::new(AtomicUsize::new(0))).await;
    let tool = WebFetchTool::new(WebFetchConfig::default().allow_private(true));
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/page")}))
        .await;
    assert!(!out.is_error, "{out:?}");
    assert!(out.content.contains("# Picoclaw news"), "{}", out.content);
    assert!(
        out.content.contains("Small **and** fast."),
        "{}",
        out.content
    );
    assert!(out.content.contains("one") && out.content.contains("two"));
    assert!(
        !out.content.contains("alert") && !out.content.contains("body{}"),
        "{}",
        out.content
    );

    // Redirects are followed (each hop checked); loops end.
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/r1")}))
        .await;
    assert!(
        out.content.contains("# Picoclaw news") && out.content.contains("/page"),
        "{out:?}"
    );
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/loop")}))
        .await;
    assert!(
        out.is_error && out.content.contains("more than 5 redirects"),
        "{out:?}"
    );

    // Caps.
    let out = tool
        .call(
            &ctx(),
            json!({"url": format!("{base}/long"), "max_chars": 500}),
        )
        .await;
    assert!(
        out.content.contains("[... cut at 500 of 10000 characters"),
        "{}",
        out.content
    );
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/big")}))
        .await;
    assert!(out.is_error && out.content.contains("allowed"), "{out:?}");
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/png")}))
        .await;
    assert!(out.is_error && out.content.contains("image/png"), "{out:?}");
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/missing")}))
        .await;
    assert!(out.is_error && out.content.contains("404"), "{out:?}");

    // Charsets and plain bodies.
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/latin1")}))
        .await;
    assert!(out.content.ends_with("café"), "{out:?}");
    let out = tool
        .call(&ctx(), json!({"url": format!("{base}/json")}))
        .await;
    assert!(out.content.contains("{\"ok\":true}"), "{out:?}");

    // Time.
    let quick = WebFetchTool::new(
        WebFetchConfig::default()
            .allow_private(true)
            .timeout(Duration::from_secs(1)),
    );
    let started = std::time::Instant::now();
    let out = quick
        .call(&ctx(), json!({"url": format!("{base}/slow")}))
        .await;
    assert!(out.is_error && out.content.contains("too long"), "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn by_default_this_machine_is_off_limits_and_never_contacted() {
    let hits = Arc::new(AtomicUsize::new(0));
    let base = server(hits.clone()).await;
    let tool = WebFetchTool::default();
    let port = base.rsplit(':').next().unwrap();
    for url in [
        format!("{base}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://2130706433:{port}/page"),
        format!("http://0x7f.0.0.1:{port}/page"),
        format!("http://[::ffff:127.0.0.1]:{port}/page"),
    ] {
        let out = tool.call(&ctx(), json!({"url": url})).await;
        assert!(
            out.is_error && out.content.contains("not fetched"),
            "{url}: {out:?}"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request reached the server"
    );
    let out = tool.call(&ctx(), json!({"url": "not a url"})).await;
    assert!(out.is_error && out.content.contains("not a URL"), "{out:?}");
}
