//! The OpenAI-compatible API, its key and access rules, metrics, shutdown and logs.

use super::*;

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
    for _ in 0..1500 {
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
