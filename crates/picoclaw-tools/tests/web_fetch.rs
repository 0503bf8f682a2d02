//! `web_fetch` against real HTTP servers on loopback (reachable only with `allow_private` or
//! `allow_address`, which is also what these tests check the default refuses). A "public" site
//! is 127.0.0.2, let through one address at a time; "internal" is 127.0.0.1 on the same port,
//! refused as every internal address is, and it counts every request that reaches it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use picoclaw_api::SessionKey;
use picoclaw_tools::{HostResolver, Tool, ToolContext, WebFetchConfig, WebFetchTool};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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

const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const INTERNAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

/// A "public" site on 127.0.0.2 and an "internal" one on 127.0.0.1, on the same port (so only
/// the address decides which one a connection reaches). Returns the port and the internal
/// site's request count.
async fn public_and_internal() -> (u16, Arc<AtomicUsize>) {
    for _ in 0..50 {
        let public = tokio::net::TcpListener::bind((PUBLIC, 0)).await.unwrap();
        let port = public.local_addr().unwrap().port();
        let Ok(internal) = tokio::net::TcpListener::bind((INTERNAL, port)).await else {
            continue; // that port is taken on 127.0.0.1: another one
        };
        let site = Router::new()
            .route(
                "/page",
                get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "the public page") }),
            )
            .route(
                "/to-internal-ip",
                get(move || async move {
                    Redirect::temporary(&format!("http://127.0.0.1:{port}/secret"))
                }),
            )
            .route(
                "/to-internal-name",
                get(move || async move {
                    Redirect::temporary(&format!("http://intranet.test:{port}/secret"))
                }),
            )
            .route(
                "/to-nat64",
                get(move || async move {
                    Redirect::temporary(&format!("http://[64:ff9b::7f00:1]:{port}/secret"))
                }),
            );
        tokio::spawn(async move { axum::serve(public, site).await.unwrap() });
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let secret = Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                (
                    [(header::CONTENT_TYPE, "text/plain")],
                    "the internal secret",
                )
            }
        });
        tokio::spawn(async move { axum::serve(internal, secret).await.unwrap() });
        return (port, hits);
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

/// A DNS that answers from a table, each name's answers in turn (the last one repeats), and
/// counts the questions.
#[derive(Debug, Default)]
struct ScriptedDns {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    asked: Mutex<HashMap<String, usize>>,
}

impl ScriptedDns {
    fn with(answers: &[(&str, &[&[IpAddr]])]) -> Arc<Self> {
        let dns = Self::default();
        for (name, seq) in answers {
            dns.answers.lock().unwrap().insert(
                (*name).to_owned(),
                seq.iter().map(|ips| ips.to_vec()).collect(),
            );
        }
        Arc::new(dns)
    }

    fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

#[async_trait::async_trait]
impl HostResolver for ScriptedDns {
    async fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let n = {
            let mut asked = self.asked.lock().unwrap();
            let n = asked.entry(host.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let answers = self.answers.lock().unwrap();
        match answers.get(host) {
            Some(seq) => Ok(seq[(n - 1).min(seq.len() - 1)].clone()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host}: no such name"),
            )),
        }
    }
}

/// web_fetch as shipped, except that 127.0.0.2 counts as public and names come from `dns`.
fn tool_with(dns: Arc<ScriptedDns>) -> WebFetchTool {
    WebFetchTool::new(
        WebFetchConfig::default()
            .allow_address(PUBLIC)
            .resolver(dns)
            .timeout(Duration::from_secs(10)),
    )
}

#[tokio::test]
async fn a_redirect_from_an_allowed_address_to_an_internal_one_is_refused() {
    let (port, internal_hits) = public_and_internal().await;
    let dns = ScriptedDns::with(&[
        ("site.test", &[&[PUBLIC]]),
        ("intranet.test", &[&[INTERNAL]]),
    ]);
    let tool = tool_with(dns);
    // The allowed site is fetched (so the refusals below are about the redirect).
    for url in [
        format!("http://127.0.0.2:{port}/page"),
        format!("http://site.test:{port}/page"),
    ] {
        let out = tool.call(&ctx(), json!({"url": url})).await;
        assert!(
            !out.is_error && out.content.contains("the public page"),
            "{url}: {out:?}"
        );
    }
    for (path, refused) in [
        ("/to-internal-ip", "127.0.0.1"),
        ("/to-internal-name", "intranet.test resolves to 127.0.0.1"),
        ("/to-nat64", "64:ff9b::7f00:1"),
    ] {
        for host in ["127.0.0.2", "site.test"] {
            let url = format!("http://{host}:{port}{path}");
            let out = tool.call(&ctx(), json!({"url": url})).await;
            assert!(
                out.is_error && out.content.contains("not fetched"),
                "{url}: {out:?}"
            );
            assert!(out.content.contains(refused), "{url}: {out:?}");
            assert!(!out.content.contains("secret"), "{url}: {out:?}");
        }
    }
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "no request reached the internal address"
    );
}

#[tokio::test]
async fn dns_that_changes_its_answer_cannot_move_the_connection_to_an_internal_address() {
    let (port, internal_hits) = public_and_internal().await;
    // Rebinding: public-looking at the check, this machine at every question after.
    let dns = ScriptedDns::with(&[("rebind.test", &[&[PUBLIC], &[INTERNAL]])]);
    let tool = tool_with(dns.clone());
    let url = format!("http://rebind.test:{port}/page");
    let out = tool.call(&ctx(), json!({"url": url})).await;
    assert!(
        !out.is_error && out.content.contains("the public page"),
        "the connection went to the checked address: {out:?}"
    );
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0);
    assert_eq!(
        dns.asked("rebind.test"),
        1,
        "the client connected without asking DNS again"
    );
    // The next fetch sees the new answer at its check, and refuses it.
    let out = tool.call(&ctx(), json!({"url": url})).await;
    assert!(
        out.is_error && out.content.contains("rebind.test resolves to 127.0.0.1"),
        "{out:?}"
    );
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0);
}

/// A stand-in for an HTTP proxy on 127.0.0.1: answers every request, noting its target.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().fallback(move |uri: Uri| {
        log.lock().unwrap().push(uri.to_string());
        async {
            (
                [(header::CONTENT_TYPE, "text/plain")],
                "answered by the proxy",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_configured_proxy_carries_requests_and_internal_addresses_stay_refused() {
    let (port, internal_hits) = public_and_internal().await;
    let (proxy, seen) = recording_proxy().await;
    let dns = ScriptedDns::with(&[
        ("site.test", &[&[PUBLIC]]),
        ("intranet.test", &[&[INTERNAL]]),
    ]);
    let config = WebFetchConfig::from_json(&json!({"fetch": {"proxy": proxy}}))
        .unwrap()
        .allow_address(PUBLIC)
        .resolver(dns)
        .timeout(Duration::from_secs(10));
    let tool = WebFetchTool::new(config);
    let out = tool
        .call(
            &ctx(),
            json!({"url": format!("http://site.test:{port}/page")}),
        )
        .await;
    assert!(out.content.contains("answered by the proxy"), "{out:?}");
    // A name this machine cannot resolve is the proxy's to resolve (and to check).
    let out = tool
        .call(&ctx(), json!({"url": "http://only-the-proxy-knows.test/x"}))
        .await;
    assert!(out.content.contains("answered by the proxy"), "{out:?}");
    // What this machine can check is still checked before anything is sent.
    for url in [
        format!("http://127.0.0.1:{port}/secret"),
        format!("http://intranet.test:{port}/secret"),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://localhost/".to_owned(),
    ] {
        let out = tool.call(&ctx(), json!({"url": url})).await;
        assert!(
            out.is_error && out.content.contains("not fetched"),
            "{url}: {out:?}"
        );
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("http://site.test:{port}/page"),
            "http://only-the-proxy-knows.test/x".to_owned()
        ]
    );
    assert_eq!(internal_hits.load(Ordering::SeqCst), 0);
}

/// Set (to a file name) in the copy of this test binary that runs with proxy variables.
const PROXY_CHILD: &str = "PICOCLAW_TEST_WEB_FETCH_PROXY_CHILD";

/// The process environment is shared by every test thread (and `set_var` is unsafe), so the
/// proxy variables are set for a copy of this test binary that runs only this test; it fetches
/// and writes what it got to a file. The "proxy" here counts the connections it receives.
#[test]
fn proxy_variables_in_the_environment_are_ignored() {
    if let Some(report) = std::env::var_os(PROXY_CHILD) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let text = runtime.block_on(async {
            let (port, internal_hits) = public_and_internal().await;
            let dns = ScriptedDns::with(&[("site.test", &[&[PUBLIC]])]);
            let tool = tool_with(dns);
            let mut report = String::new();
            for url in [
                format!("http://site.test:{port}/page"),
                format!("http://127.0.0.2:{port}/page"),
                // Not a TLS server: this fails, but it must fail here, not at the proxy.
                format!("https://site.test:{port}/page"),
            ] {
                let out = tool.call(&ctx(), json!({"url": url})).await;
                report.push_str(&format!("{url} -> {}\n", out.content.replace('\n', " ")));
            }
            report.push_str(&format!(
                "internal hits: {}\n",
                internal_hits.load(Ordering::SeqCst)
            ));
            report
        });
        std::fs::write(report, text).unwrap();
        return;
    }

    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in proxy.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream); // no answer: a request sent here fails
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.txt");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "proxy_variables_in_the_environment_are_ignored",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROXY_CHILD, &report)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        child.env(name, &proxy_url);
    }
    let out = child.output().unwrap();
    assert!(
        out.status.success(),
        "the child test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "the child did not run the fetches ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the proxy from the environment received a connection:\n{report}"
    );
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 4, "{report}");
    assert!(lines[0].contains("the public page"), "{report}");
    assert!(lines[1].contains("the public page"), "{report}");
    assert!(!lines[2].contains("the public page"), "{report}");
    assert_eq!(lines[3], "internal hits: 0", "{report}");
}
