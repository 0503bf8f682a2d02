//! The web dashboard in a real browser: Debian's headless Chromium, driven over WebDriver
//! (picoclaw_testkit::browser), against the real `picoclaw gateway` and a scripted model on
//! 127.0.0.1. What an operator does: log in (a wrong key refused), chat and watch the answer
//! stream in, find the conversation, add a job and see it in `picoclaw cron list`, change the
//! model and see config.json changed with its unknown keys kept, log out. And what an attacker
//! tries: a forged cross-site POST, a request without the CSRF token, a model answer with
//! `<script>`.
//!
//! Screenshots of every page at desktop and phone widths go to `$PICOCLAW_SCREENSHOTS` (else a
//! temporary folder); `scripts/screenshots.sh` runs this test and copies them into docs/images/.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_testkit::browser::{Browser, Viewport};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "dashboard-test-key-0123456789";

/// `picoclaw gateway` on a free port.
struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(home: &Path) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_picoclaw"))
            .args(["gateway", "--no-log-file"])
            .env("PICOCLAW_HOME", home)
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[gateway] {line}");
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway did not start listening");
        Gateway {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the screenshots go.
fn screenshot_dir() -> PathBuf {
    match std::env::var_os("PICOCLAW_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("picoclaw-dashboard-screenshots"),
    }
}

/// A page at this width, saved as `dashboard-<name>-<width>.png`.
async fn shoot(browser: &Browser, name: &str, width: &str) {
    browser
        .screenshot(&screenshot_dir().join(format!("dashboard-{name}-{width}.png")))
        .await;
}

/// Logs in through the form.
async fn log_in(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/")).await;
    let field = browser.find("#key").await;
    browser.type_text(&field, key).await;
    browser
        .click(&browser.find("form button[type=submit]").await)
        .await;
}

/// A page served from another origin that posts a form to the gateway as soon as it loads.
async fn attacker_page(target: String) -> std::net::SocketAddr {
    let page = format!(
        "<!doctype html><html><body><form id=f method=post action=\"{target}\">\
         <input name=message value=forged><input name=kind value=every>\
         <input name=when value=1m></form>\
         <script>document.getElementById('f').submit()</script></body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn cron_list(home: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_picoclaw"))
        .args(["cron", "list"])
        .env("PICOCLAW_HOME", home)
        .env_remove("PICOCLAW_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_uses_the_dashboard_in_a_real_browser() {
    // The model's answer streams in three parts, a second apart, and carries HTML that must
    // stay text.
    let answer = "Here is **bold** advice. <script>window.pwned = 1</script> \
                  <img src=x onerror=\"window.pwned = 2\"> Water them weekly.";
    // The second answer is Markdown that once sent the renderer into an endless loop (an
    // indented first list item, a heading after spaces) or past the stack (deep quotes).
    let tricky = format!(
        "Intro\n  - indented\n # Spaced heading\n{} deep\n\nthe end",
        ">".repeat(3000)
    );
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text(answer)
            .paced(Duration::from_millis(1200))
            .with_usage(1_250, 180),
        Reply::text(tricky).with_usage(1_460, 95),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.path().join("workspace").display().to_string(),
            "x_note": "kept"}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "gateway": {"host": "127.0.0.1", "port": 0, "api_key": KEY},
        "heartbeat": {"enabled": false, "interval": 30},
        "model_list": [{"model_name": "test", "model": "openai/test-model",
            "price": {"input": 2.5, "output": 10.0}}],
        "x_custom": {"keep": [1, 2, 3]},
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    let gw = Gateway::start(home.path());
    let base = gw.base.clone();
    let browser = Browser::start(Viewport::Desktop).await;

    // Log in: a wrong key is refused, the right one opens the chat.
    browser.goto(&format!("{base}/ui/jobs")).await;
    assert!(
        browser.url().await.contains("/ui/login"),
        "sent to the login page"
    );
    shoot(&browser, "login", "desktop").await;
    log_in(&browser, &base, "not-the-key").await;
    let alert = browser.find("[role=alert]").await;
    assert!(browser.text(&alert).await.contains("not the gateway"));
    assert!(browser.url().await.contains("/ui/login"));
    log_in(&browser, &base, KEY).await;
    browser.find("#chat-input").await;
    assert!(browser.url().await.ends_with("/ui/chat"));
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "picoclaw_session")
        .expect("the session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    let visible = browser.execute("return document.cookie;", json!([])).await;
    assert!(
        !visible.as_str().unwrap().contains("picoclaw_session"),
        "HttpOnly"
    );

    // Chat: the answer appears part by part while the turn runs, then whole; the model's HTML
    // is text.
    let input = browser.find("#chat-input").await;
    browser
        .type_text(&input, "How often should I water my plants?")
        .await;
    browser.click(&browser.find("#chat-send").await).await;
    browser
        .wait_until(
            "the first part of the answer",
            "const b = document.querySelector('#chat-log .msg.assistant:last-child'); \
             return !!b && b.textContent.includes('Here is') && !b.textContent.includes('weekly');",
        )
        .await;
    browser
        .wait_until(
            "the whole answer, and the turn's end",
            "const b = document.querySelector('#chat-log .msg.assistant:last-child'); \
             return !!b && b.textContent.includes('weekly') && \
                document.getElementById('chat-form').getAttribute('aria-busy') === 'false';",
        )
        .await;
    let bubble = browser.find("#chat-log .msg.assistant:last-child").await;
    let text = browser.text(&bubble).await;
    assert!(text.contains("<script>window.pwned = 1</script>"), "{text}");
    assert!(text.contains("<img src=x"), "{text}");
    let strong = browser
        .execute(
            "const b = document.querySelector('#chat-log .msg.assistant:last-child'); \
             return [b.querySelectorAll('script, img, iframe').length, \
                     (b.querySelector('strong') || {}).textContent, window.pwned === undefined];",
            json!([]),
        )
        .await;
    assert_eq!(
        strong,
        json!([0, "bold", true]),
        "Markdown rendered, HTML not"
    );
    shoot(&browser, "chat", "desktop").await;
    let input = browser.find("#chat-input").await;
    browser
        .type_text(&input, "Show me some tricky Markdown\u{e007}")
        .await;
    browser
        .wait_until(
            "the tricky answer, rendered, and the page still responding",
            "const b = document.querySelectorAll('#chat-log .msg.assistant'); \
             return b.length === 2 && b[1].textContent.includes('the end') && \
                document.getElementById('chat-form').getAttribute('aria-busy') === 'false';",
        )
        .await;

    // The conversation is listed.
    browser.goto(&format!("{base}/ui/conversations")).await;
    let list = browser.find("#conversation-list").await;
    assert!(browser.text(&list).await.contains("web:"));
    shoot(&browser, "conversations", "desktop").await;

    // A job added in the browser is one `picoclaw cron list` shows.
    browser.goto(&format!("{base}/ui/jobs")).await;
    browser
        .type_text(&browser.find("#job-message").await, "Water the basil")
        .await;
    browser
        .execute(
            "document.getElementById('job-kind').value = 'every';",
            json!([]),
        )
        .await;
    browser
        .type_text(&browser.find("#job-when").await, "1d")
        .await;
    browser
        .type_text(&browser.find("#job-name").await, "basil")
        .await;
    browser
        .click(&browser.find("#job-add button[type=submit]").await)
        .await;
    let list = browser.find("#job-list").await;
    assert!(browser.text(&list).await.contains("basil"));
    let listed = cron_list(home.path());
    assert!(listed.contains("basil"), "{listed}");
    shoot(&browser, "jobs", "desktop").await;

    // A page on another site posts a form to the gateway: refused (its Origin, and the cookie
    // is not sent cross-site), and no job is added.
    let action = browser
        .execute(
            "return document.getElementById('job-add').action;",
            json!([]),
        )
        .await;
    let action = action.as_str().unwrap().to_owned();
    assert!(action.starts_with(&base), "{action}");
    let evil = attacker_page(action.clone()).await;
    browser
        .goto(&format!("http://localhost:{}/", evil.port()))
        .await;
    browser
        .wait_until(
            "the forged request's answer",
            "return location.href.includes('/ui/');",
        )
        .await;
    let body = browser
        .execute("return document.body.innerText;", json!([]))
        .await;
    assert!(body.as_str().unwrap().contains("refused"), "{body}");
    assert!(!cron_list(home.path()).contains("forged"));
    // Same origin but without the CSRF token (a script that found a way to post): refused.
    browser.goto(&format!("{base}/ui/jobs")).await;
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(arguments[0], {method: 'POST', \
                headers: {'Content-Type': 'application/x-www-form-urlencoded'}, \
                body: 'message=no-token&kind=every&when=1m'}) \
             .then(r => done(r.status), e => done(String(e)));",
            json!([action]),
        )
        .await;
    assert_eq!(status, json!(403));
    assert!(!cron_list(home.path()).contains("no-token"));

    // Settings: a new model is written to config.json; unknown keys stay.
    browser.goto(&format!("{base}/ui/settings")).await;
    let model = browser.find("#settings-model").await;
    browser.clear(&model).await;
    browser.type_text(&model, "openai/other-model").await;
    browser.click(&browser.find("#settings-save").await).await;
    browser.find("#settings-restart-notice").await;
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(written["agents"]["defaults"]["model"], "openai/other-model");
    assert_eq!(written["x_custom"], json!({"keep": [1, 2, 3]}));
    assert_eq!(written["agents"]["defaults"]["x_note"], "kept");
    assert_eq!(written["providers"]["openai"]["api_key"], "sk-test");
    shoot(&browser, "settings", "desktop").await;

    // The other pages, for the screenshots (each must render for a logged-in browser).
    for page in ["usage", "channels", "extensions", "memory", "logs"] {
        browser.goto(&format!("{base}/ui/{page}")).await;
        browser.find("main h1").await;
        shoot(&browser, page, "desktop").await;
    }

    // Logout ends the session: the next page is the login page.
    browser
        .click(&browser.find("form.logout button").await)
        .await;
    browser.find("#key").await;
    browser.goto(&format!("{base}/ui/chat")).await;
    assert!(browser.url().await.contains("/ui/login"));
    drop(browser);

    // The same pages on a phone.
    let phone = Browser::start(Viewport::Phone).await;
    log_in(&phone, &base, KEY).await;
    phone.find("#chat-input").await;
    for page in [
        "chat",
        "conversations",
        "usage",
        "jobs",
        "channels",
        "extensions",
        "memory",
        "settings",
        "logs",
    ] {
        phone.goto(&format!("{base}/ui/{page}")).await;
        phone.find("main h1").await;
        let overflow = phone
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                json!([]),
            )
            .await;
        assert!(
            overflow.as_i64().unwrap_or(0) <= 1,
            "{page} is wider than the phone's screen by {overflow} px"
        );
        shoot(&phone, page, "phone").await;
    }
}
