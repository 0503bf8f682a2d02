//! End to end: the real `picoclaw-gateway` binary, a scripted OpenAI-compatible model on
//! 127.0.0.1, and an HTTP client speaking the OpenAI API to the gateway.

use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const KEY: &str = "gw-test-key-0123456789";

struct Gateway {
    child: Child,
    base: String,
    /// Every line the gateway logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Starts the gateway on a free port and waits until it listens.
    fn start(home: &Path) -> Gateway {
        Self::start_with(home, &[], "warn")
    }

    fn start_with(home: &Path, args: &[&str], log: &str) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_picoclaw-gateway"))
            .args(args)
            .env("PICOCLAW_HOME", home)
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Shown when a test fails.
                eprintln!("[gateway] {line}");
                lines.lock().unwrap().push(line.clone());
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
            log,
        }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("the gateway did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn home_with(endpoint: &ScriptedEndpoint, gateway: Value) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "gateway": gateway,
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    home
}

/// Changes the config in `home`.
fn edit_config(home: &std::path::Path, edit: impl FnOnce(&mut Value)) {
    let file = home.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&file, config.to_string()).unwrap();
}

/// Replaces the `channels` section of the config in `home`.
#[cfg(any(feature = "telegram", feature = "slack", feature = "discord"))]
fn set_channels(home: &std::path::Path, channels: Value) {
    edit_config(home, |config| config["channels"] = channels);
}

fn client() -> reqwest::Client {
    picoclaw_http::client_builder()
        .unwrap()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn complete(
    c: &reqwest::Client,
    gw: &Gateway,
    session: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = c
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY)
        .json(&body);
    if let Some(s) = session {
        req = req.header("X-Session-Key", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_api_talks_to_the_agent() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello Ada."),
        Reply::tool_call(
            "write_file",
            json!({"path": "note.txt", "content": "from the API"}),
        ),
        Reply::text("Written."),
        Reply::text("Streaming works fine"),
        Reply::text("Stateless answer"),
        Reply::text("You are Ada, I remember."),
    ])
    .await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY}),
    );
    let gw = Gateway::start(home.path());
    let c = client();

    // Health needs no key; the API does.
    let health = c.get(format!("{}/health", gw.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = c
        .get(format!("{}/ready", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let denied = c
        .get(format!("{}/v1/models", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = c
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key"),
        "{body}"
    );
    let models: Value = c
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "openai/test-model");

    // A plain completion in a server-side session.
    let (status, r) = complete(
        &c,
        &gw,
        Some("api:ada"),
        json!({
        "model": "picoclaw", "messages": [{"role": "user", "content": "Hi, I am Ada"}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["content"], "Hello Ada.");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");

    // Tools run inside: the file lands in the workspace.
    let (status, r) = complete(
        &c,
        &gw,
        Some("api:ada"),
        json!({
        "messages": [{"role": "user", "content": "write a note"}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "Written.");
    assert_eq!(
        std::fs::read_to_string(home.path().join("workspace/note.txt")).unwrap(),
        "from the API"
    );

    // Streaming: OpenAI chunks that add up to the answer, then [DONE].
    let resp = c
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY)
        .header("X-Session-Key", "api:ada")
        .json(&json!({"stream": true, "messages": [{"role": "user", "content": "stream please"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    let mut finish = None;
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(t);
        }
        if let Some(f) = chunk["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(content, "Streaming works fine");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    // Stateless: the request's messages are the whole history, and nothing is kept.
    let (status, r) = complete(
        &c,
        &gw,
        None,
        json!({"messages": [
        {"role": "system", "content": "ignored"},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": "new question"}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["choices"][0]["message"]["content"], "Stateless answer");
    let sent = endpoint.requests().last().unwrap().message_texts();
    assert_eq!(
        &sent[1..],
        ["earlier question", "earlier answer", "new question"]
    );

    // Bad requests get OpenAI-shaped errors.
    let (status, r) = complete(&c, &gw, None, json!({"messages": []})).await;
    assert_eq!(status, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last message"),
        "{r}"
    );
    let (status, _) = complete(&c, &gw, None, json!({"nothing": true})).await;
    assert_eq!(status, 400);
    let big = "x".repeat(3 * 1024 * 1024);
    // Its own connection: the server answers 413 without reading the body and drops the
    // connection, which a pooled client would otherwise try to reuse for the next request.
    let resp = client()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(KEY)
        .json(&json!({"messages": [{"role": "user", "content": big}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // Metrics count what happened (behind the key like the API).
    let denied = c.get(format!("{}/metrics", gw.base)).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let metrics = c
        .get(format!("{}/metrics", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("picoclaw_turns_total{source=\"api\",outcome=\"ok\"} 4\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("picoclaw_tool_calls_total 1\n"),
        "{metrics}"
    );

    // A restart keeps the session: the next turn carries everything said before.
    let status = gw.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    let gw = Gateway::start(home.path());
    let (status, r) = complete(
        &c,
        &gw,
        Some("api:ada"),
        json!({
        "messages": [{"role": "user", "content": "Who am I?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "You are Ada, I remember."
    );
    let sent = endpoint.requests().last().unwrap().message_texts();
    assert!(sent.contains(&"Hi, I am Ada".to_owned()), "{sent:?}");
    assert!(
        sent.contains(&"Streaming works fine".to_owned()),
        "{sent:?}"
    );
    assert!(
        !sent.contains(&"earlier question".to_owned()),
        "stateless turns are not kept"
    );
}

/// The key a gateway without `gateway.api_key` made for itself in `home`.
fn key_file(home: &Path) -> String {
    std::fs::read_to_string(home.join("gateway.key"))
        .expect("the gateway made its key file")
        .trim()
        .to_owned()
}

/// A raw HTTP/1.1 exchange (any `Host`, any headers, exactly as written): the request line and
/// header lines in `head`, then `body`. Returns the status and the response body.
async fn raw(gw: &Gateway, head: &[&str], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut request = head.join("\r\n");
    if !body.is_empty() {
        request.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    request.push_str("\r\n\r\n");
    request.push_str(body);
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        // Read the head, then as much body as Content-Length says (the connection may stay
        // open, as after a refused WebSocket upgrade).
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                    return (status, body.to_owned());
                }
            }
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the connection closed early: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap()
}

/// The attack of issue 17: a web page POSTs `text/plain` (no preflight) to the gateway.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_drive_the_gateway() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("from my own page"),
        Reply::text("from the listed app"),
    ])
    .await;
    // The default config: no gateway.api_key.
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "allowed_origins": ["https://app.example"]}),
    );
    let gw = Gateway::start(home.path());
    let c = client();
    let url = format!("{}/v1/chat/completions", gw.base);
    let body = r#"{"messages": [{"role": "user", "content": "write a file"}]}"#;
    let refused = |r: &Value, what: &str| {
        let message = r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains(what), "{r}");
    };

    // What a browser sends for fetch(url, {method: "POST", body}) from another site.
    let resp = c
        .post(&url)
        .header("Origin", "https://evil.example")
        .header("Content-Type", "text/plain;charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    refused(&resp.json().await.unwrap(), "gateway.allowed_origins");
    assert!(endpoint.requests().is_empty(), "the model was never asked");
    // The key does not make a foreign page welcome.
    let key = key_file(home.path());
    for content_type in ["text/plain", "application/json"] {
        let resp = c
            .post(&url)
            .bearer_auth(&key)
            .header("Origin", "https://evil.example")
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{content_type}");
    }
    // Without an Origin, the key decides; and a body must be JSON.
    let resp = c
        .post(&url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(&url)
        .bearer_auth(&key)
        .header("Content-Type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    refused(
        &resp.json().await.unwrap(),
        "Content-Type: application/json",
    );
    let resp = c
        .post(&url)
        .bearer_auth(&key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415, "no Content-Type at all");

    // Every route refuses a foreign page, WebSocket upgrades and unknown paths included.
    let port = gw.base.rsplit(':').next().unwrap().to_owned();
    let host = format!("Host: 127.0.0.1:{port}");
    let bearer = format!("Authorization: Bearer {key}");
    for path in [
        "/v1/models",
        "/metrics",
        "/health",
        "/ready",
        "/ws",
        "/nowhere",
    ] {
        let line = format!("GET {path} HTTP/1.1");
        let (status, answer) = raw(
            &gw,
            &[
                &line,
                &host,
                &bearer,
                "Origin: https://evil.example",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ],
            "",
        )
        .await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer.contains("gateway.allowed_origins"), "{answer}");
    }
    assert!(
        endpoint.requests().is_empty(),
        "no refused request reached the model"
    );

    // The gateway's own pages and the listed origin are served (with the key).
    let own = format!("http://127.0.0.1:{port}");
    for (origin, answer) in [
        (own.as_str(), "from my own page"),
        ("https://app.example", "from the listed app"),
    ] {
        let resp = c
            .post(&url)
            .bearer_auth(&key)
            .header("Origin", origin)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{origin}");
        let r: Value = resp.json().await.unwrap();
        assert_eq!(r["choices"][0]["message"]["content"], answer);
    }
    assert_eq!(endpoint.requests().len(), 2);
    assert!(
        !home.path().join("workspace/gateway.key").exists(),
        "the key is not in the workspace"
    );
}

/// DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as the Host.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebound_host_name_is_refused() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("through the proxy")]).await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY,
               "allowed_hosts": ["picoclaw.example.com"]}),
    );
    let gw = Gateway::start(home.path());
    let port = gw.base.rsplit(':').next().unwrap().to_owned();
    let bearer = format!("Authorization: Bearer {KEY}");
    let body = r#"{"messages": [{"role": "user", "content": "hello"}]}"#;
    for host in ["evil.example", &format!("evil.example:{port}"), "0.0.0.0"] {
        let host = format!("Host: {host}");
        let (status, answer) = raw(&gw, &["GET /v1/models HTTP/1.1", &host, &bearer], "").await;
        assert_eq!(status, 403, "{host}: {answer}");
        assert!(answer.contains("gateway.allowed_hosts"), "{answer}");
        // Same origin as far as the browser knows, so it would have sent no Origin at all.
        let (status, _) = raw(
            &gw,
            &[
                "POST /v1/chat/completions HTTP/1.1",
                &host,
                &bearer,
                "Content-Type: application/json",
            ],
            body,
        )
        .await;
        assert_eq!(status, 403, "{host}");
    }
    assert!(endpoint.requests().is_empty(), "the model was never asked");

    // Loopback names (with or without the port) and the allowed host are the gateway's own.
    for host in [
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "picoclaw.example.com".to_owned(),
    ] {
        let host = format!("Host: {host}");
        let (status, answer) = raw(&gw, &["GET /v1/models HTTP/1.1", &host, &bearer], "").await;
        assert_eq!(status, 200, "{host}: {answer}");
    }
    // Behind a TLS proxy forwarding its public name, that site's own pages work.
    let (status, answer) = raw(
        &gw,
        &[
            "POST /v1/chat/completions HTTP/1.1",
            "Host: picoclaw.example.com",
            "Origin: https://picoclaw.example.com",
            &bearer,
            "Content-Type: application/json",
        ],
        body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("through the proxy"), "{answer}");
    // The probes answer any host (orchestrators probe the pod's address); they need no key.
    for path in ["/health", "/ready"] {
        let line = format!("GET {path} HTTP/1.1");
        let (status, _) = raw(&gw, &[&line, "Host: 10.1.2.3:18790"], "").await;
        assert_eq!(status, 200, "{path}");
    }
}

/// The key made at the first start: 0600, in picoclaw's home, the same after a restart, and
/// the log names the file but never shows the key.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_configured_key_one_is_made_at_first_start_and_kept() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    let file = home.path().join("gateway.key");
    assert!(!file.exists());
    let gw = Gateway::start_with(home.path(), &[], "info");
    let key = key_file(home.path());
    assert_eq!(key.len(), 64, "32 random bytes in hex: {key}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let c = client();
    let models = |key: String| {
        let c = c.clone();
        let url = format!("{}/v1/models", gw.base);
        async move {
            let mut req = c.get(url);
            if !key.is_empty() {
                req = req.bearer_auth(key);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(models(String::new()).await, 401, "never keyless");
    assert_eq!(models(key.clone()).await, 200);
    let log = |gw: &Gateway| gw.log.lock().unwrap().join("\n");
    let first = log(&gw);
    let named = format!("created the API key in {}", file.display());
    assert!(first.contains(&named), "{first}");
    assert!(
        first.contains(&format!("cat {}", file.display())),
        "{first}"
    );
    assert!(!first.contains(&key), "the key is never logged");
    assert!(gw.terminate().success());
    let files: String = std::fs::read_dir(home.path().join("logs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(files.contains(&named), "{files}");
    assert!(!files.contains(&key), "the key is never logged");

    let gw = Gateway::start_with(home.path(), &[], "info");
    assert_eq!(key_file(home.path()), key, "the same key after a restart");
    let again = log(&gw);
    assert!(
        again.contains(&format!("using the API key in {}", file.display())),
        "{again}"
    );
    assert!(!again.contains(&key));
    let c = client();
    let status = c
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_key_unless_metrics_public() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    let c = client();
    let gw = Gateway::start(home.path());
    let key = key_file(home.path());
    let url = format!("{}/metrics", gw.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    let with_key = c.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(with_key.status(), 200);
    assert!(with_key.text().await.unwrap().contains("picoclaw_"));
    assert!(gw.terminate().success());

    edit_config(home.path(), |config| {
        config["gateway"]["metrics_public"] = json!(true)
    });
    let gw = Gateway::start(home.path());
    let url = format!("{}/metrics", gw.base);
    let open = c.get(&url).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.text().await.unwrap().contains("picoclaw_"));
    // Only the metrics: the API still needs the key, and web pages are still refused.
    let api = c
        .get(format!("{}/v1/models", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
    let page = c
        .get(&url)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_slow_turn_exits_within_the_grace_period() {
    let endpoint =
        ScriptedEndpoint::start_with([Reply::text("too late").delayed(Duration::from_secs(30))])
            .await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "api_key": KEY, "shutdown_grace_seconds": 1}),
    );
    let gw = Gateway::start(home.path());
    let c = client();
    let base = gw.base.clone();
    let request = tokio::spawn(async move {
        c.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"messages": [{"role": "user", "content": "slow one"}]}))
            .send()
            .await
    });
    // Let the turn start, then stop the gateway.
    for _ in 0..100 {
        if !endpoint.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(endpoint.requests().len(), 1, "the turn reached the model");
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(4),
        "exited after {took:?}, grace is 1 s"
    );
    // The client was cut off, not answered.
    let outcome = request.await.unwrap();
    assert!(outcome.is_err() || !outcome.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_go_to_daily_files_as_json_lines() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    let gw = Gateway::start_with(home.path(), &["--log-format", "json"], "info");
    let status = gw.terminate();
    assert!(status.success());
    // The daily log, beside the audit trail (empty here: no tool ran).
    let logs: Vec<_> = std::fs::read_dir(home.path().join("logs"))
        .expect("the logs folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("audit.")
        })
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let name = logs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("gateway.log."), "{name}");
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "gateway listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "gateway stopped"),
        "{text}"
    );
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_end_to_end_through_a_loopback_bot_api() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "123456:TEST-token";
    let tg = FakeBotApi::start(TOKEN);
    let long = "word ".repeat(1200); // 6 000 characters: two Telegram messages
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello Ada!"),
        Reply::text("It is noon."),
        Reply::text(long.trim_end()),
        Reply::text("Rate limits survived."),
        Reply::text("Welcome back, I remember you."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["111", "@carol"], "api_base": tg.api_base()}}),
    );

    let gw = Gateway::start_with(home.path(), &[], "info");
    // An allowed user in a private chat: answered, with a typing indicator first.
    tg.private_message(111, "ada", "hi");
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0], (111, "Hello Ada!".to_owned()));
    // The message was marked as read (👀) once it was kept.
    for _ in 0..100 {
        if !tg.reactions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tg.reactions()[0].0, 111);
    assert_eq!(tg.reactions()[0].2, "👀");
    let ready: Value = client()
        .get(format!("{}/ready", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["telegram"], "running", "{ready}");
    assert!(
        tg.actions().contains(&(111, "typing".to_owned())),
        "{:?}",
        tg.actions()
    );
    // Someone not on the list: ignored, and the model is never asked.
    tg.private_message(222, "eve", "let me in");
    // In a group, only mentions (or replies to the bot) count.
    tg.group_message(-500, 111, "ada", "chatting among ourselves", false);
    tg.group_message(-500, 111, "ada", "@pico_test_bot what time is it?", false);
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (-500, "It is noon.".to_owned()));
    let asked: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| r.message_texts().last().unwrap().clone())
        .collect();
    assert_eq!(
        asked,
        ["hi", "what time is it?"],
        "eve and the unaddressed group line never reach the model"
    );

    // A long answer is split at Telegram's limit.
    tg.private_message(111, "ada", "tell me a lot");
    wait_sent(&tg, 4).await;
    let parts: Vec<(i64, String)> = tg.sent()[2..4].to_vec();
    assert!(
        parts.iter().all(|(_, t)| t.chars().count() <= 4096),
        "{parts:?}"
    );
    assert_eq!(
        parts
            .iter()
            .map(|(_, t)| t.split_whitespace().count())
            .sum::<usize>(),
        1200
    );
    // A 429 is waited out, not lost. Allowed by username too.
    tg.rate_limit_sends(1, 1);
    tg.private_message(333, "carol", "are you there?");
    wait_sent(&tg, 5).await;
    assert_eq!(tg.sent()[4], (333, "Rate limits survived.".to_owned()));

    // A restart answers nothing twice and keeps the conversation.
    let status = gw.terminate();
    assert!(status.success());
    let before = tg.sent().len();
    let gw = Gateway::start(home.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        tg.sent().len(),
        before,
        "nothing answered twice after the restart"
    );
    tg.private_message(111, "ada", "I'm back");
    wait_sent(&tg, before + 1).await;
    assert_eq!(
        tg.sent().last().unwrap(),
        &(111, "Welcome back, I remember you.".to_owned())
    );
    let history = endpoint.requests().last().unwrap().message_texts();
    assert!(history.contains(&"hi".to_owned()), "{history:?}");
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_message_interrupted_by_sigterm_is_answered_once_after_the_restart() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "42:RESTART";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("never seen").delayed(Duration::from_secs(30)),
        Reply::text("Answered after the restart."),
    ])
    .await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "shutdown_grace_seconds": 1}),
    );
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["111"], "api_base": tg.api_base()}}),
    );

    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "a question that takes long");
    for _ in 0..200 {
        if !endpoint.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(endpoint.requests().len(), 1, "the turn is running");
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(tg.sent().is_empty(), "nothing was answered before the stop");

    // After the restart the journaled message is answered — once.
    let gw = Gateway::start(home.path());
    for _ in 0..400 {
        if !tg.sent().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent(), [(111, "Answered after the restart.".to_owned())]);
    assert_eq!(endpoint.requests().len(), 2);
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_telegram_token_fails_the_channel_once_and_ready_says_so() {
    use picoclaw_testkit::telegram::FakeBotApi;
    let tg = FakeBotApi::start("1:RIGHT");
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": "1:WRONG",
        "allow_from": ["1"], "api_base": tg.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = client()
            .get(format!("{}/ready", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready["status"], "degraded", "{ready}");
    let state = ready["channels"]["telegram"].as_str().unwrap();
    assert!(
        state.starts_with("failed:") && state.contains("token"),
        "{state}"
    );
    // Not retried in a loop: it stays failed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tg.offsets().is_empty(),
        "never polled with a rejected token"
    );
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_in_webhook_mode_then_back_to_polling() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "555:WEBHOOK-token";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello over the webhook."),
        Reply::text("Hello by polling."),
    ])
    .await;
    // Telegram needs the public URL before the gateway starts, so the port is chosen first.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": port}));
    let hook = format!("http://127.0.0.1:{port}/webhook/telegram");
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
            "api_base": tg.api_base(), "webhook_url": hook}}),
    );
    let wait = |what: &'static str, done: &dyn Fn() -> bool| {
        for _ in 0..400 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}");
    };

    let gw = Gateway::start(home.path());
    wait("setWebhook", &|| tg.webhook().is_some());
    let (url, secret) = tg.webhook().unwrap();
    assert_eq!(url, hook);
    let secret = secret.expect("a secret token is always set");
    assert!(secret.len() >= 32, "{secret}");

    // Forged requests (no secret, a wrong one) are refused and reach nobody.
    let forged = json!({"update_id": 1, "message": {"message_id": 1, "date": 1_800_000_000,
        "chat": {"id": 111, "type": "private", "first_name": "ada"},
        "from": {"id": 111, "is_bot": false, "first_name": "ada"}, "text": "forged"}});
    for header in [None, Some("guess")] {
        let mut req = client().post(&hook).json(&forged);
        if let Some(h) = header {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
    }

    // A user's message comes in through the webhook and is answered.
    tg.private_message(111, "ada", "hi");
    wait("the webhook answer", &|| !tg.sent().is_empty());
    assert_eq!(tg.sent(), [(111, "Hello over the webhook.".to_owned())]);
    assert!(tg.offsets().is_empty(), "no polling in webhook mode");
    assert!(
        tg.webhook_failures().is_empty(),
        "{:?}",
        tg.webhook_failures()
    );
    let asked: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| r.message_texts().last().unwrap().clone())
        .collect();
    assert_eq!(asked, ["hi"], "the forged messages never reached the model");
    drop(gw);

    // Back to polling: the webhook is removed and messages arrive by getUpdates.
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
            "api_base": tg.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    wait("deleteWebhook", &|| tg.webhook().is_none());
    tg.private_message(111, "ada", "and now?");
    wait("the polled answer", &|| tg.sent().len() == 2);
    assert_eq!(tg.sent()[1], (111, "Hello by polling.".to_owned()));
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_answers_are_formatted_with_a_plain_fallback() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "888:FORMAT";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("**Done**: see `notes.md` & <this>"),
        Reply::text("**Again**"),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "status?");
    wait_sent(&tg, 1).await;
    assert_eq!(
        tg.sent()[0],
        (
            111,
            "<b>Done</b>: see <code>notes.md</code> &amp; &lt;this&gt;".to_owned()
        )
    );
    assert_eq!(tg.parse_modes()[0].as_deref(), Some("HTML"));
    // Telegram refuses the formatting: the same answer goes out as plain text, once.
    tg.reject_html(1);
    tg.private_message(111, "ada", "again?");
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (111, "**Again**".to_owned()));
    assert_eq!(tg.parse_modes()[1], None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(tg.sent().len(), 2, "{:?}", tg.sent());
    drop(gw);
}

/// An OpenAI-compatible `/audio/transcriptions` on loopback that "hears" a fixed sentence in any
/// upload containing `OggS`.
#[cfg(feature = "telegram")]
async fn stt_server() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/audio/transcriptions",
        post(|body: axum::body::Bytes| async move {
            if String::from_utf8_lossy(&body).contains("OggS") {
                axum::Json(json!({"text": "remind me to water the plants"}))
            } else {
                axum::Json(json!({"text": ""}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_telegram_voice_note_is_saved_transcribed_and_answered() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "999:VOICE";
    let tg = FakeBotApi::start(TOKEN);
    let stt = stt_server().await;
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("I will remind you to water the plants."),
        Reply::text("Got your recording."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let file = home.path().join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    config["stt"] = json!({"api_key": "stt-key", "api_base": stt});
    std::fs::write(&file, config.to_string()).unwrap();

    let gw = Gateway::start(home.path());
    tg.voice_message(111, "ada", b"OggS-fake-opus-bytes");
    for _ in 0..400 {
        if !tg.sent().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        tg.sent(),
        [(111, "I will remind you to water the plants.".to_owned())]
    );
    // The model got the transcript; the recording is in the workspace.
    let asked = endpoint.requests()[0]
        .message_texts()
        .last()
        .unwrap()
        .clone();
    assert_eq!(asked, "[voice note] remind me to water the plants");
    let saved = home.path().join("workspace/media/telegram/111");
    let files: Vec<_> = std::fs::read_dir(&saved).unwrap().collect();
    assert_eq!(files.len(), 1);
    let path = files[0].as_ref().unwrap().path();
    assert_eq!(std::fs::read(&path).unwrap(), b"OggS-fake-opus-bytes");
    drop(gw);

    // Without speech to text, the agent is told where the recording is.
    config.as_object_mut().unwrap().remove("stt");
    std::fs::write(&file, config.to_string()).unwrap();
    let gw = Gateway::start(home.path());
    tg.voice_message(111, "ada", b"OggS-second");
    for _ in 0..400 {
        if tg.sent().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(tg.sent().len(), 2, "{:?}", tg.sent());
    let asked = endpoint.requests()[1]
        .message_texts()
        .last()
        .unwrap()
        .clone();
    assert!(
        asked.starts_with("[voice note saved at ") && asked.contains("stt.api_key"),
        "{asked}"
    );
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn with_nobody_allowed_the_owner_pairs_with_the_code_from_the_log() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "444:PAIR";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello, owner.")]).await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!([]));
    let gw = Gateway::start_with(home.path(), &[], "warn");
    let code = pairing_code(&gw).await;
    // Before pairing: ignored. A wrong code: refused. The right one: paired, then answered.
    tg.private_message(555, "zed", "hello?");
    tg.private_message(555, "zed", "/pair 000000x");
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0].1, "That code is wrong or was already used.");
    tg.private_message(555, "zed", &format!("/pair {code}"));
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1].1, "Paired: you can talk to me now.");
    tg.private_message(555, "zed", "hi");
    wait_sent(&tg, 3).await;
    assert_eq!(tg.sent()[2], (555, "Hello, owner.".to_owned()));
    assert_eq!(
        endpoint.requests().len(),
        1,
        "only the paired message reached the model"
    );
    // The pairing outlives a restart, and it is kept outside the workspace.
    drop(gw);
    assert!(home.path().join("channels/telegram-paired.json").is_file());
    let gw = Gateway::start_with(home.path(), &[], "warn");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !gw.log.lock().unwrap().iter().any(|l| l.contains("/pair ")),
        "no new code once someone is paired"
    );
    drop(gw);
}

/// The one-time pairing code the gateway logged (waiting up to 10 s for it).
#[cfg(any(feature = "telegram", feature = "slack"))]
async fn pairing_code(gw: &Gateway) -> String {
    for _ in 0..400 {
        let code = gw
            .log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.split("/pair ").nth(1))
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            });
        if let Some(code) = code {
            assert_eq!(code.len(), 6);
            return code;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the pairing code was not logged");
}

/// Waits until the fake Bot API has received `n` messages from the bot.
#[cfg(feature = "telegram")]
async fn wait_sent(tg: &picoclaw_testkit::telegram::FakeBotApi, n: usize) {
    for _ in 0..400 {
        if tg.sent().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} sent messages, got {:?}", tg.sent());
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn buttons_go_out_as_an_inline_keyboard_and_presses_come_back() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "321:BUTTONS";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "message",
            json!({"content": "Water the plants now?", "buttons": ["Yes", "Later"]}),
        ),
        Reply::text("I asked."),
        Reply::text("Watering now."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "ask me about the plants");
    wait_sent(&tg, 2).await;
    let sent = tg.sent();
    let asked = sent
        .iter()
        .position(|(_, t)| t == "Water the plants now?")
        .expect("the question was sent");
    let keyboard = &tg.markups()[asked]["inline_keyboard"];
    assert_eq!(keyboard[0][0]["text"], "Yes", "{keyboard}");
    assert_eq!(keyboard[0][0]["callback_data"], "Yes");
    assert_eq!(keyboard[0][1]["text"], "Later");
    // Pressing "Yes" is a message from the user; the spinner is stopped.
    tg.press_button(111, "ada", "Yes");
    wait_sent(&tg, 3).await;
    assert_eq!(tg.sent()[2], (111, "Watering now.".to_owned()));
    let last = endpoint.requests().last().unwrap().message_texts();
    assert_eq!(last.last().unwrap(), "Yes");
    for _ in 0..100 {
        if !tg.answered().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tg.answered().len(), 1);
    drop(gw);
}

/// exec (or anything on the machine) holding the key still cannot read or write a channel's
/// conversation through the API: `telegram:<chat>` as a session key lands in `api:telegram:<chat>`.
#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn an_api_session_key_cannot_reach_a_channel_conversation() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "424242:SESSIONS";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Noted, the code is 1234."),
        Reply::text("I know nothing of that."),
        Reply::text("Still nothing."),
        Reply::text("Your code is 1234."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    edit_config(home.path(), |config| {
        config["gateway"]["api_key"] = json!(KEY)
    });
    let gw = Gateway::start(home.path());
    let key = KEY;
    tg.private_message(111, "ada", "remember my door code 1234");
    wait_sent(&tg, 1).await;

    let c = client();
    let ask = |session: Option<&'static str>, user: Option<&'static str>, text: &'static str| {
        let mut body = json!({"messages": [{"role": "user", "content": text}]});
        if let Some(user) = user {
            body["user"] = json!(user);
        }
        let mut req = c
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(key)
            .json(&body);
        if let Some(session) = session {
            req = req.header("X-Session-Key", session);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Reading: the channel's history is not sent to the model for these requests.
    assert_eq!(
        ask(Some("telegram:111"), None, "what is my door code?").await,
        200
    );
    assert_eq!(
        ask(None, Some("telegram:111"), "and now? (user)").await,
        200
    );
    for request in &endpoint.requests()[1..3] {
        let texts = request.message_texts();
        assert!(
            !texts.iter().any(|t| t.contains("1234")),
            "the Telegram conversation leaked into an API turn: {texts:?}"
        );
    }
    // Both landed in the same API session (the second request saw the first).
    let second = endpoint.requests()[2].message_texts();
    assert!(
        second.contains(&"what is my door code?".to_owned()),
        "{second:?}"
    );

    // Writing: the Telegram conversation goes on without anything the API said.
    tg.private_message(111, "ada", "what was my code?");
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (111, "Your code is 1234.".to_owned()));
    let texts = endpoint.requests()[3].message_texts();
    assert!(
        texts.contains(&"remember my door code 1234".to_owned()),
        "{texts:?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("what is my door code?") || t.contains("I know nothing")),
        "an API turn was written into the Telegram conversation: {texts:?}"
    );
    drop(gw);
}

/// A home whose gateway listens on a free loopback port and runs Telegram against `tg`.
#[cfg(feature = "telegram")]
fn telegram_home(
    endpoint: &ScriptedEndpoint,
    tg: &picoclaw_testkit::telegram::FakeBotApi,
    token: &str,
    allow_from: Value,
) -> tempfile::TempDir {
    let home = home_with(endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": token, "allow_from": allow_from,
            "api_base": tg.api_base()}}),
    );
    home
}

/// Waits until the fake Slack has `n` chat.postMessage calls.
#[cfg(feature = "slack")]
async fn wait_posts(fake: &picoclaw_testkit::slack::FakeSlack, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        if fake.posts().len() >= n {
            return fake.posts();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} Slack posts, got {:?}", fake.posts());
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn slack_socket_mode_end_to_end_across_a_restart() {
    use picoclaw_testkit::slack::{BOT_USER_ID, FakeSlack};
    let slack = FakeSlack::start("xoxb-e2e", "xapp-e2e");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello **Ada**!"),
        Reply::text("It is noon."),
        Reply::text("Welcome back, I remember you."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-e2e", "app_token": "xapp-e2e",
            "allow_from": ["UADA"], "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    // An allowed user's DM: answered in mrkdwn; a stranger's DM: never reaches the model.
    let hi = slack.event_callback(slack.dm_event("UADA", "hi"));
    let push = |payload: Value| tokio::task::block_in_place(|| slack.push_socket(payload));
    push(hi.clone());
    push(slack.event_callback(slack.dm_event("UEVE", "let me in")));
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["channel"], "DUADA");
    assert_eq!(posts[0]["text"], "Hello *Ada*!");
    // A mention in a channel: answered in the thread under it.
    let mention = slack.mention_event("UADA", "CGEN", &format!("<@{BOT_USER_ID}> time?"));
    let ts = mention["ts"].as_str().unwrap().to_owned();
    push(slack.event_callback(mention));
    let posts = wait_posts(&slack, 2).await;
    assert_eq!(posts[1]["channel"], "CGEN");
    assert_eq!(posts[1]["thread_ts"], ts.as_str());
    assert_eq!(posts[1]["text"], "It is noon.");
    let ready: Value = client()
        .get(format!("{}/ready", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["slack"], "running", "{ready}");
    drop(gw);

    // After a restart: Slack delivers the first event again (as it does when an ack was lost),
    // and the user writes again. The old message is not answered twice (the journal knows
    // it); the session goes on where it was.
    let gw = Gateway::start(home.path());
    push(hi);
    push(slack.event_callback(slack.dm_event("UADA", "still there?")));
    let posts = wait_posts(&slack, 3).await;
    assert_eq!(posts[2]["text"], "Welcome back, I remember you.");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.posts().len(), 3, "nothing answered twice");
    let requests = endpoint.requests();
    assert_eq!(
        requests.len(),
        3,
        "the stranger and the redelivery never reached the model"
    );
    let history = requests[2].message_texts();
    assert!(
        history.iter().any(|t| t == "hi") && history.iter().any(|t| t == "Hello **Ada**!"),
        "the DM session survived the restart: {history:?}"
    );
    drop(gw);
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_slack_turn_over_the_events_api_is_answered_once() {
    use picoclaw_testkit::slack::FakeSlack;
    const SECRET: &str = "e2e-signing-secret";
    let slack = FakeSlack::start("xoxb-e2e", "xapp-unused");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Thought about it for a while.").delayed(Duration::from_secs(4))
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-e2e", "signing_secret": SECRET,
            "allow_from": ["UADA"], "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    let body = slack
        .event_callback(slack.dm_event("UADA", "think hard"))
        .to_string();
    let post = |retry: Option<u32>| {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut req = client()
            .post(format!("{}/webhook/slack", gw.base))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", at.to_string())
            .header("x-slack-signature", FakeSlack::sign(SECRET, at, &body))
            .body(body.clone());
        if let Some(n) = retry {
            req = req
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        req.send()
    };
    // 503 until the channel signed in; then Slack gets its 200 at once, long before the turn
    // ends (it gives up after 3 s).
    let mut status = 0;
    for _ in 0..200 {
        let started = std::time::Instant::now();
        status = post(None).await.unwrap().status().as_u16();
        if status == 200 {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200);
    // Slack's retries of the same event while the turn runs: accepted, not answered again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(post(Some(1)).await.unwrap().status().as_u16(), 200);
    assert_eq!(post(Some(2)).await.unwrap().status().as_u16(), 200);
    // A forged request: refused.
    let forged = client()
        .post(format!("{}/webhook/slack", gw.base))
        .header("x-slack-request-timestamp", "1")
        .header("x-slack-signature", "v0=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["text"], "Thought about it for a while.");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.posts().len(), 1, "answered once");
    assert_eq!(endpoint.requests().len(), 1);
    drop(gw);
}

/// The acceptance of the channels issue: Telegram, Discord and Slack in one gateway, each
/// pointed at its loopback fake through `api_base`. Each answers a user on its allow-list,
/// ignores one who is not, and after a restart the sessions go on with nothing answered twice.
#[cfg(all(feature = "telegram", feature = "discord", feature = "slack"))]
#[tokio::test(flavor = "multi_thread")]
async fn three_channels_in_one_gateway_across_a_restart() {
    use picoclaw_testkit::discord::FakeDiscord;
    use picoclaw_testkit::slack::FakeSlack;
    use picoclaw_testkit::telegram::FakeBotApi;
    const ADA: &str = "100000000000000001";
    const DM: &str = "200000000000000001";
    let tg = FakeBotApi::start("77:THREE");
    let dc = FakeDiscord::start("discord-three");
    let sl = FakeSlack::start("xoxb-three", "xapp-three");
    // Each channel's conversation is its own session; the model sees which by the history.
    let endpoint = ScriptedEndpoint::start_with(
        [
            ("tg-1", "telegram one"),
            ("dc-1", "discord one"),
            ("sl-1", "slack one"),
            ("tg-2", "telegram two"),
            ("dc-2", "discord two"),
            ("sl-2", "slack two"),
        ]
        .map(|(needle, answer)| Reply::text(answer).when_request_contains(needle)),
    )
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({
            "telegram": {"enabled": true, "token": "77:THREE", "allow_from": ["111"],
                         "api_base": tg.api_base()},
            "discord": {"enabled": true, "token": "discord-three", "allow_from": [ADA],
                        "api_base": dc.api_base()},
            "slack": {"enabled": true, "bot_token": "xoxb-three", "app_token": "xapp-three",
                      "allow_from": ["UADA"], "api_base": sl.api_base()},
        }),
    );
    let blocking = |f: &dyn Fn()| tokio::task::block_in_place(f);
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "tg-1");
    tg.private_message(222, "eve", "tg-stranger");
    blocking(&|| {
        dc.message(DM, None, ADA, "ada", "dc-1", json!({}));
    });
    blocking(&|| {
        dc.message(
            "200000000000000009",
            None,
            "100000000000000009",
            "eve",
            "dc-stranger",
            json!({}),
        );
    });
    blocking(&|| {
        sl.push_socket(sl.event_callback(sl.dm_event("UADA", "sl-1")));
        sl.push_socket(sl.event_callback(sl.dm_event("UEVE", "sl-stranger")));
    });
    wait_sent(&tg, 1).await;
    blocking(&|| dc.wait_for("the discord answer", |f| !f.sent().is_empty()));
    wait_posts(&sl, 1).await;
    assert_eq!(tg.sent()[0].1, "telegram one");
    assert_eq!(dc.sent()[0].body["content"], "discord one");
    assert_eq!(dc.sent()[0].channel, DM);
    assert_eq!(sl.posts()[0]["text"], "slack one");
    drop(gw);

    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "tg-2");
    // The old Gateway connection may look open to the fake for a moment after the kill: send
    // only once the restarted gateway has identified, or the message goes to the dead one.
    blocking(&|| {
        dc.wait_for("the restarted gateway's IDENTIFY", |f| {
            f.identifies().len() >= 2
        });
        dc.message(DM, None, ADA, "ada", "dc-2", json!({}));
    });
    blocking(&|| {
        sl.push_socket(sl.event_callback(sl.dm_event("UADA", "sl-2")));
    });
    wait_sent(&tg, 2).await;
    blocking(&|| dc.wait_for("the second discord answer", |f| f.sent().len() >= 2));
    wait_posts(&sl, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tg.sent().len(), 2, "{:?}", tg.sent());
    assert_eq!(dc.sent().len(), 2);
    assert_eq!(sl.posts().len(), 2);
    assert_eq!(dc.sent()[1].body["content"], "discord two");
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 6, "strangers never reach the model");
    // Each second turn carries its channel's first exchange, and only that one.
    for (second, first, answer, others) in [
        ("tg-2", "tg-1", "telegram one", ["dc-1", "sl-1"]),
        ("dc-2", "dc-1", "discord one", ["tg-1", "sl-1"]),
        ("sl-2", "sl-1", "slack one", ["tg-1", "dc-1"]),
    ] {
        let r = requests
            .iter()
            .find(|r| r.message_texts().last().map(String::as_str) == Some(second))
            .unwrap();
        let texts = r.message_texts();
        assert!(
            texts.iter().any(|t| t == first) && texts.iter().any(|t| t == answer),
            "{second}: {texts:?}"
        );
        assert!(
            !texts.iter().any(|t| others.contains(&t.as_str())),
            "{texts:?}"
        );
    }
    drop(gw);
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn slack_with_nobody_allowed_the_owner_pairs_from_a_dm() {
    use picoclaw_testkit::slack::FakeSlack;
    let slack = FakeSlack::start("xoxb-pair", "xapp-pair");
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello, owner.")]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-pair", "app_token": "xapp-pair",
            "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start_with(home.path(), &[], "warn");
    let code = pairing_code(&gw).await;
    assert!(
        gw.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("/picoclaw pair {code}"))),
        "the log tells Slack users the slash command"
    );
    let push = |text: &str| {
        let payload = slack.event_callback(slack.dm_event("UZED", text));
        tokio::task::block_in_place(|| slack.push_socket(payload));
    };
    push("hello?");
    // Slack users send it with a leading space (Slack takes "/..." for a command).
    push(&format!(" /pair {code}"));
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["text"], "Paired: you can talk to me now.");
    push("hi");
    let posts = wait_posts(&slack, 2).await;
    assert_eq!(posts[1]["text"], "Hello, owner.");
    assert_eq!(
        endpoint.requests().len(),
        1,
        "only the paired message reached the model"
    );
    assert!(home.path().join("channels/slack-paired.json").is_file());
    drop(gw);
}
