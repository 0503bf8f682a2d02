//! MCP servers (stdio, HTTP, Landlock) and `picoclaw mcp serve`.

use super::*;

#[cfg(feature = "mcp")]
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_is_added_tested_and_its_tool_called_in_a_turn() {
    let python = mcp_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/picoclaw-mcp/tests/fixtures/py_server.py")
        .canonicalize()
        .unwrap();
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("mcp_calc__add", json!({"a": 19, "b": 23})),
        Reply::text("19 + 23 = 42"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let script = script.display().to_string();
    let out = run(
        home.cmd(),
        &[
            "mcp",
            "add",
            "calc",
            "--description",
            "test tools",
            "--",
            &python,
            &script,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The rest of the config is untouched.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["agents"]["defaults"]["model"], "openai/test-model");
    assert_eq!(config["tools"]["mcp"]["servers"]["calc"]["command"], python);

    let out = run(home.cmd(), &["mcp", "list"]).await;
    assert!(
        out.stdout.contains("calc") && out.stdout.contains("ok, 9 tools"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["mcp", "test", "calc"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("mcp_calc__add: Add two integers."),
        "{}",
        out.stdout
    );

    let out = run(home.cmd(), &["agent", "-m", "what is 19 + 23?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "19 + 23 = 42");
    let reqs = endpoint.requests();
    let offered = offered_tools(&reqs[0].body);
    assert!(offered.iter().any(|t| t == "mcp_calc__add"), "{offered:?}");
    assert_eq!(tool_messages(&reqs[1].body), ["42"]);

    // A server that cannot start: the agent still answers, the list says why, test fails.
    let out = run(
        home.cmd(),
        &["mcp", "add", "broken", "--", "no-such-mcp-command-xyz"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["mcp", "test", "broken"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("was not found"), "{}", out.stderr);
    endpoint.push(Reply::text("still here"));
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "still here");

    let out = run(home.cmd(), &["mcp", "remove", "broken"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["mcp", "remove", "broken"]).await;
    assert_eq!(out.code, 1);
}

#[cfg(feature = "mcp-server")]
#[tokio::test(flavor = "multi_thread")]
async fn picoclaw_mcp_serve_is_driven_by_the_python_sdk_client() {
    let python = mcp_python();
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(
        home.workspace().join("hello.txt"),
        "hello from the workspace",
    )
    .unwrap();
    std::fs::write(home.path().join("secret.txt"), "do not leak").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_client.py");
    let binary = assert_cmd::cargo::cargo_bin("picoclaw");
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(binary)
            .env("PICOCLAW_HOME", &home_path)
            .env_remove("PICOCLAW_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    // Read-only file tools by default.
    assert_eq!(seen["tools"], json!(["list_dir", "read_file"]));
    assert_eq!(seen["inside"]["error"], false);
    assert!(
        seen["inside"]["text"]
            .as_str()
            .unwrap()
            .contains("hello from the workspace"),
        "{seen}"
    );
    assert_eq!(seen["outside"]["error"], true, "{seen}");
    assert!(
        seen["outside"]["text"]
            .as_str()
            .unwrap()
            .contains("outside the workspace"),
        "{seen}"
    );
    assert!(!seen.to_string().contains("do not leak"));
    assert!(
        seen["listing"].as_str().unwrap().contains("hello.txt"),
        "{seen}"
    );
}

#[cfg(feature = "mcp")]
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_over_http_is_called_in_a_turn() {
    let python = mcp_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/picoclaw-mcp/tests/fixtures/py_server.py");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(python)
        .arg(&script)
        .args(["http", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("mcp_remote__add", json!({"a": 2, "b": 40})),
        Reply::text("The remote tool says 42."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let url = format!("http://127.0.0.1:{port}/mcp");
    let out = run(home.cmd(), &["mcp", "add", "remote", "--url", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["agent", "-m", "add 2 and 40 remotely"]).await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "The remote tool says 42.");
    assert_eq!(tool_messages(&endpoint.requests()[1].body), ["42"]);
}

#[cfg(feature = "mcp")]
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_runs_in_its_own_folder_never_the_workspace() {
    let python = mcp_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/picoclaw-mcp/tests/fixtures/py_server.py")
        .canonicalize()
        .unwrap();
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let ws = home.workspace();
    std::fs::create_dir_all(&ws).unwrap();
    // Attack: `python -m <module>` and `npx` look in the working folder first, and the model
    // can write the workspace. A planted module that would run in place of the server:
    let planted = ws.join("pico_planted_server");
    std::fs::create_dir_all(&planted).unwrap();
    let marker = home.path().join("planted-code-ran");
    std::fs::write(
        planted.join("__main__.py"),
        format!(
            "import os, sys\nopen({:?}, 'w').write('ran')\nos.execv(sys.executable, \
             [sys.executable, {:?}])\n",
            marker.display().to_string(),
            script.display().to_string()
        ),
    )
    .unwrap();
    // And an env_file planted in the workspace under the name the config gives.
    std::fs::write(ws.join("calc.env"), "WHO=the-workspace\n").unwrap();
    std::fs::write(home.path().join("calc.env"), "WHO=the-home\n").unwrap();
    let mut config = home.config();
    config["tools"]["mcp"] = json!({"servers": {
        "planted": {"command": python, "args": ["-m", "pico_planted_server"]},
        "calc": {"command": python, "args": [script], "env_file": "calc.env"},
    }});
    home.write_config(&config);

    let out = run(home.cmd(), &["mcp", "test", "planted"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(!marker.exists(), "the module planted in the workspace ran");
    let out = run(home.cmd(), &["mcp", "list"]).await;
    let own = home.path().join("mcp/calc");
    assert!(
        out.stdout.contains(&format!("folder {}", own.display())),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("sandboxed"), "{}", out.stdout);

    endpoint.push(Reply::tool_call("mcp_calc__cwd", json!({})));
    endpoint.push(Reply::tool_call(
        "mcp_calc__echo_env",
        json!({"name": "HOME"}),
    ));
    endpoint.push(Reply::tool_call(
        "mcp_calc__echo_env",
        json!({"name": "WHO"}),
    ));
    endpoint.push(Reply::text("done"));
    let out = run(home.cmd(), &["agent", "-m", "where are you?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!marker.exists(), "the module planted in the workspace ran");
    let reqs = endpoint.requests();
    let results = tool_messages(&reqs.last().unwrap().body);
    assert_eq!(
        results,
        [
            own.canonicalize().unwrap().display().to_string(),
            own.display().to_string(),
            "the-home".to_owned()
        ],
        "working folder, HOME, and the env_file read from picoclaw's home"
    );
}

/// Whether this test must see Landlock enforce (`CI=true`), or may skip where the kernel has
/// none.
#[cfg(feature = "mcp")]
fn landlock_or_skip(test: &str) -> bool {
    match picoclaw_tools::landlock_abi() {
        Ok(_) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: CI=true but Landlock is not available here ({why})")
        }
        Err(why) => {
            eprintln!("{test}: skipped, Landlock is not available here ({why})");
            false
        }
    }
}

#[cfg(feature = "mcp")]
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_server_under_landlock_writes_only_in_its_folder_and_tmp() {
    if !landlock_or_skip("an_mcp_server_under_landlock_writes_only_in_its_folder_and_tmp") {
        return;
    }
    let python = mcp_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/picoclaw-mcp/tests/fixtures/py_server.py")
        .canonicalize()
        .unwrap();
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let ws = home.workspace();
    std::fs::create_dir_all(&ws).unwrap();
    // The test's folders sit under the system's temporary folder, which confined programs may
    // write; picoclaw gets a TMPDIR of its own so that the rest of the tree is really outside.
    let tmp = home.path().join("tmp");
    let owner = home.path().join("owner");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&owner).unwrap();
    let mut config = home.config();
    config["tools"]["mcp"] = json!({"max_inline_tools": 100, "servers": {
        "calc": {"command": python, "args": [script]},
        "free": {"command": python, "args": [script], "sandbox": false},
    }});
    home.write_config(&config);
    let own = home.path().join("mcp/calc");
    let targets = [
        ("the workspace", ws.join("from-mcp")),
        (
            "the workspace's parent (picoclaw's home)",
            home.path().join("from-mcp"),
        ),
        ("the owner's home", owner.join("from-mcp")),
        ("its own folder", own.join("from-mcp")),
        ("TMPDIR", tmp.join("from-mcp")),
    ];
    for (_, path) in &targets {
        endpoint.push(Reply::tool_call(
            "mcp_calc__write",
            json!({"path": path.display().to_string()}),
        ));
    }
    // The opted-out server writes where it likes.
    let free_target = owner.join("from-free-mcp");
    endpoint.push(Reply::tool_call(
        "mcp_free__write",
        json!({"path": free_target.display().to_string()}),
    ));
    endpoint.push(Reply::text("done"));
    let mut cmd = home.cmd();
    cmd.env("TMPDIR", &tmp).env("HOME", &owner);
    let out = run(cmd, &["agent", "-m", "write everywhere"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = endpoint.requests();
    let results = tool_messages(&reqs.last().unwrap().body);
    assert_eq!(results.len(), targets.len() + 1, "{results:?}");
    for ((what, path), result) in targets.iter().zip(&results) {
        let allowed = what.starts_with("its own") || *what == "TMPDIR";
        if allowed {
            assert_eq!(result, "written", "{what}");
            assert!(path.exists(), "{what}");
        } else {
            assert!(result.starts_with("refused"), "{what}: {result}");
            assert!(!path.exists(), "{what}: {} was written", path.display());
        }
    }
    assert_eq!(results[targets.len()], "written", "sandbox: false");
    assert!(free_target.exists());
    let out = run(home.cmd(), &["mcp", "list"]).await;
    assert!(
        out.stdout.contains("NOT sandboxed (sandbox: false)"),
        "{}",
        out.stdout
    );
}

/// The python with the MCP SDK (scripts/mcp-venv.sh makes one; scripts/test.sh sets this).
#[cfg(feature = "mcp")]
fn mcp_python() -> String {
    std::env::var("PICOCLAW_TEST_MCP_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PICOCLAW_TEST_MCP_PYTHON is not set: run `export PICOCLAW_TEST_MCP_PYTHON=\"$(bash \
             scripts/mcp-venv.sh)\"` (the MCP Python SDK in a venv), or run scripts/test.sh"
        )
    })
}
