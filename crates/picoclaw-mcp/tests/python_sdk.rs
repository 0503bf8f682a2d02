//! Interoperability with an MCP implementation we did not write: a server made with the official
//! MCP Python SDK, over stdio and over streamable HTTP; and the failure cases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::SessionKey;
use picoclaw_mcp::{McpConfig, McpTool, start_all};
use picoclaw_tools::{Tool, ToolContext, ToolOutput};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The python with the `mcp` package (scripts/mcp-venv.sh makes one; scripts/test.sh sets it).
fn python() -> String {
    std::env::var("PICOCLAW_TEST_MCP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PICOCLAW_TEST_MCP_PYTHON is not set: run `export PICOCLAW_TEST_MCP_PYTHON=\"$(bash \
             scripts/mcp-venv.sh)\"` (it installs the MCP Python SDK into a venv), or run \
             scripts/test.sh"
        )
    })
}

fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/py_server.py")
}

/// `tools.mcp` with `servers`, for a picoclaw whose home is `home`.
fn config(servers: Value, call_timeout: u64, home: &Path) -> McpConfig {
    McpConfig::from_json(
        &json!({"call_timeout_seconds": call_timeout, "servers": servers}),
        home,
        &|k| std::env::var(k).ok(),
    )
    .unwrap()
    .unwrap()
}

async fn call(tools: &[McpTool], name: &str, args: Value) -> ToolOutput {
    let tool = tools
        .iter()
        .find(|t| t.spec().name == name)
        .unwrap_or_else(|| panic!("no tool {name}"));
    tool.call(&ToolContext::new(SessionKey::new("t")), args)
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_sdk_server_over_stdio() {
    let home = tempfile::tempdir().unwrap();
    // A secret in picoclaw's environment must not reach the server.
    #[allow(unsafe_code)]
    // SAFETY: this test process sets it before any thread reads the environment for it.
    unsafe {
        std::env::set_var("OPENAI_API_KEY", "sk-must-not-leak");
    }
    let mut cfg = config(
        json!({"py": {"command": python(), "args": [server_script()],
                      "env": {"GIVEN": "from-config", "NAMED_KEY": "${OPENAI_API_KEY}"}}}),
        2,
        home.path(),
    );
    cfg.connect_timeout = Duration::from_secs(30);
    let started = start_all(&cfg).await;
    assert!(started.failed.is_empty(), "{:?}", started.failed);
    let tools = started.tools;
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    for want in [
        "mcp_py__add",
        "mcp_py__echo_env",
        "mcp_py__fail",
        "mcp_py__huge",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    let add = tools
        .iter()
        .find(|t| t.spec().name == "mcp_py__add")
        .unwrap();
    let schema = add.spec().parameters;
    assert_eq!(schema["properties"]["a"]["type"], "integer", "{schema}");

    let out = call(&tools, "mcp_py__add", json!({"a": 2, "b": 3})).await;
    assert_eq!(
        (out.is_error, out.content.as_str()),
        (false, "5"),
        "{out:?}"
    );
    let out = call(&tools, "mcp_py__echo_env", json!({"name": "GIVEN"})).await;
    assert_eq!(out.content, "from-config");
    let out = call(
        &tools,
        "mcp_py__echo_env",
        json!({"name": "OPENAI_API_KEY"}),
    )
    .await;
    assert_eq!(out.content, "(unset)", "provider keys are never passed on");
    // ... unless the server's own `env` names one.
    let out = call(&tools, "mcp_py__echo_env", json!({"name": "NAMED_KEY"})).await;
    assert_eq!(out.content, "sk-must-not-leak");
    let out = call(&tools, "mcp_py__echo_env", json!({"name": "PATH"})).await;
    assert_ne!(out.content, "(unset)");
    // It runs in its own folder under picoclaw's home, with HOME and the caches there too.
    let own = home.path().join("mcp/py");
    let out = call(&tools, "mcp_py__cwd", json!({})).await;
    assert_eq!(
        Path::new(&out.content).canonicalize().unwrap(),
        own.canonicalize().unwrap()
    );
    for (var, want) in [
        ("HOME", own.clone()),
        ("XDG_CACHE_HOME", own.join(".cache")),
        ("XDG_CONFIG_HOME", own.join(".config")),
        ("XDG_DATA_HOME", own.join(".local/share")),
        ("npm_config_cache", own.join(".npm")),
    ] {
        let out = call(&tools, "mcp_py__echo_env", json!({"name": var})).await;
        assert_eq!(Path::new(&out.content), want, "{var}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&own).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // isError results are errors for the model, with the server's text.
    let out = call(
        &tools,
        "mcp_py__fail",
        json!({"reason": "the widget broke"}),
    )
    .await;
    assert!(
        out.is_error && out.content.contains("the widget broke"),
        "{out:?}"
    );
    // A huge result is cut with a marker.
    let out = call(&tools, "mcp_py__huge", json!({"kib": 400})).await;
    assert!(out.content.contains("result cut"), "{}", out.content.len());
    assert!(out.content.len() < 300 * 1024);
    // A call past the timeout is a clear error, and the server is still usable.
    let out = call(&tools, "mcp_py__slow", json!({"seconds": 5})).await;
    assert!(
        out.is_error && out.content.contains("no answer within 2 s"),
        "{out:?}"
    );
    let out = call(&tools, "mcp_py__add", json!({"a": 1, "b": 1})).await;
    assert_eq!(out.content, "2", "{out:?}");
    // The server dying mid-call is an error for the model, not a hang or a crash of ours; calls
    // while it is down say so; it is started again in the background and works afterwards.
    let out = call(&tools, "mcp_py__die", json!({})).await;
    assert!(out.is_error, "{out:?}");
    let out = call(&tools, "mcp_py__add", json!({"a": 1, "b": 1})).await;
    assert!(
        out.is_error && out.content.contains("not available"),
        "{out:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = call(&tools, "mcp_py__add", json!({"a": 2, "b": 2})).await;
        if !out.is_error {
            assert_eq!(out.content, "4");
            break;
        }
        assert!(Instant::now() < deadline, "never restarted: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the Python server in `mode` (`http` or `sse`) on a free port; returns it and the port.
async fn http_server(mode: &str) -> (Child, u16) {
    let port = free_port();
    let child = Child(
        std::process::Command::new(python())
            .arg(server_script())
            .args([mode, &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Python MCP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_sdk_server_over_streamable_http() {
    let home = tempfile::tempdir().unwrap();
    let (_server, port) = http_server("http").await;
    let cfg = config(
        json!({"remote": {"url": format!("http://127.0.0.1:{port}/mcp"),
                          "headers": {"X-Test": "yes"}}}),
        10,
        home.path(),
    );
    let started = start_all(&cfg).await;
    assert!(started.failed.is_empty(), "{:?}", started.failed);
    let out = call(&started.tools, "mcp_remote__add", json!({"a": 20, "b": 22})).await;
    assert_eq!(out.content, "42", "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_sdk_server_over_legacy_sse() {
    let home = tempfile::tempdir().unwrap();
    let (_server, port) = http_server("sse").await;
    let cfg = config(
        json!({"old": {"type": "sse", "url": format!("http://127.0.0.1:{port}/sse")}}),
        10,
        home.path(),
    );
    let started = start_all(&cfg).await;
    assert!(started.failed.is_empty(), "{:?}", started.failed);
    let out = call(&started.tools, "mcp_old__add", json!({"a": 40, "b": 2})).await;
    assert_eq!(out.content, "42", "{out:?}");
    let out = call(
        &started.tools,
        "mcp_old__fail",
        json!({"reason": "over sse"}),
    )
    .await;
    assert!(out.is_error && out.content.contains("over sse"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_servers_are_reported_and_never_hold_up_the_others() {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(
        json!({
            "good": {"command": python(), "args": [server_script()]},
            "missing": {"command": "no-such-mcp-server-xyz"},
            "quits": {"command": "sh", "args": ["-c", "exit 3"]},
            "hangs": {"command": "sleep", "args": ["30"]},
            "garbage": {"command": "sh", "args": ["-c", "echo not json; sleep 30"]},
        }),
        5,
        home.path(),
    );
    cfg.connect_timeout = Duration::from_secs(8);
    let started_at = Instant::now();
    let started = start_all(&cfg).await;
    // Concurrent: about one timeout in all, not one per broken server.
    assert!(
        started_at.elapsed() < Duration::from_secs(20),
        "{:?}",
        started_at.elapsed()
    );
    let reason = |name: &str| {
        started
            .failed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.to_string())
            .unwrap_or_else(|| panic!("{name} not reported: {:?}", started.failed))
    };
    let kind = |name: &str| {
        &started
            .failed
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not reported"))
            .1
    };
    // What the operator can do differs: install the command, or wait and retry.
    assert!(
        matches!(
            kind("missing"),
            picoclaw_mcp::StartError::CommandNotFound { .. }
        ),
        "{:?}",
        kind("missing")
    );
    assert!(!kind("missing").is_retryable());
    assert!(
        matches!(kind("hangs"), picoclaw_mcp::StartError::Timeout(_)),
        "{:?}",
        kind("hangs")
    );
    assert!(kind("hangs").is_retryable());
    assert!(
        reason("missing").contains("was not found"),
        "{}",
        reason("missing")
    );
    assert!(reason("quits").contains("handshake"), "{}", reason("quits"));
    assert!(
        reason("hangs").contains("did not finish starting"),
        "{}",
        reason("hangs")
    );
    let garbage = reason("garbage");
    assert!(!garbage.is_empty());
    // The good one works regardless.
    let out = call(&started.tools, "mcp_good__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(out.content, "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn clashing_names_are_reported_not_shadowed() {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(
        json!({
            "py": {"command": python(), "args": [server_script()]},
            "PY": {"command": python(), "args": [server_script()]},
        }),
        5,
        home.path(),
    );
    cfg.connect_timeout = Duration::from_secs(30);
    let started = start_all(&cfg).await;
    assert!(started.failed.is_empty(), "{:?}", started.failed);
    let adds = started
        .tools
        .iter()
        .filter(|t| t.spec().name == "mcp_py__add")
        .count();
    assert_eq!(adds, 1);
    assert!(
        started.clashes.iter().any(|c| c.contains("mcp_py__add")),
        "{:?}",
        started.clashes
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_tools_are_offered_through_search_and_call() {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(
        json!({"py": {"command": python(), "args": [server_script()]}}),
        5,
        home.path(),
    );
    cfg.connect_timeout = Duration::from_secs(30);
    let started = start_all(&cfg).await;
    assert_eq!(started.tools.len(), 9);
    let tools = picoclaw_mcp::registry_tools(started.tools, 2);
    let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(names, ["mcp_search", "mcp_call"]);
    let ctx = ToolContext::new(SessionKey::new("t"));
    let found = tools[0]
        .call(&ctx, json!({"query": "add two integers"}))
        .await;
    assert!(
        found.content.starts_with("mcp_py__add: Add two integers."),
        "{}",
        found.content
    );
    assert!(
        found.content.contains("\"a\""),
        "schemas are included: {}",
        found.content
    );
    let out = tools[1]
        .call(
            &ctx,
            json!({"name": "mcp_py__add", "arguments": {"a": 40, "b": 2}}),
        )
        .await;
    assert_eq!(out.content, "42", "{out:?}");
    let out = tools[1].call(&ctx, json!({"name": "mcp_py__nope"})).await;
    assert!(
        out.is_error && out.content.contains("mcp_search"),
        "{out:?}"
    );
    // Few tools: sent as they are.
    let started = start_all(&cfg).await;
    assert_eq!(picoclaw_mcp::registry_tools(started.tools, 16).len(), 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_tool_list_is_listed_again_before_the_next_call() {
    let home = tempfile::tempdir().unwrap();
    let mut cfg = config(
        json!({"py": {"command": python(), "args": [server_script()]}}),
        5,
        home.path(),
    );
    cfg.connect_timeout = Duration::from_secs(30);
    let started = start_all(&cfg).await;
    let tools = started.tools;
    let out = call(&tools, "mcp_py__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(out.content, "3");
    let out = call(&tools, "mcp_py__retire", json!({"name": "add"})).await;
    assert_eq!(out.content, "retired add", "{out:?}");
    // The notification arrives asynchronously; the next call after it sees the new list.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = call(&tools, "mcp_py__add", json!({"a": 1, "b": 2})).await;
        if out.is_error && out.content.contains("no longer offers 'add'") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change was never noticed: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The others still work.
    let out = call(&tools, "mcp_py__echo_env", json!({"name": "PATH"})).await;
    assert!(!out.is_error, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_with_malformed_schemas_are_left_out_and_reported() {
    let home = tempfile::tempdir().unwrap();
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/raw_server.py");
    let cfg = config(
        json!({"raw": {"command": "python3", "args": [raw]}}),
        5,
        home.path(),
    );
    let started = start_all(&cfg).await;
    assert!(started.failed.is_empty(), "{:?}", started.failed);
    let names: Vec<String> = started.tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(names, ["mcp_raw__good"]);
    assert_eq!(started.skipped.len(), 2, "{:?}", started.skipped);
    assert!(
        started
            .skipped
            .iter()
            .any(|s| s.contains("bad_type") && s.contains("not \"object\""))
    );
    assert!(started.skipped.iter().any(|s| s.contains("bad_props")));
    let out = call(&started.tools, "mcp_raw__good", json!({"x": "y"})).await;
    assert_eq!(out.content, "called good");
}
