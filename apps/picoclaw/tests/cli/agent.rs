//! Turns through the real binary: tool calls, history, errors from the model and the config, hostile calls, interactive use, Ctrl-C, retries and fallbacks, Unix behaviour.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn write_then_read_file_streams_an_answer_quoting_the_tool_result() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "write_file",
            json!({"path": "notes/hello.txt", "content": "picoclaw was here"}),
        ),
        Reply::tool_call("read_file", json!({"path": "notes/hello.txt"})),
        Reply::text("The file says: picoclaw was here"),
    ])
    .await;
    endpoint.require_api_key(KEY);
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "write a note then read it"]).await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout.trim(), "The file says: picoclaw was here");
    assert!(
        out.stderr.contains("[tool] write_file"),
        "progress on stderr: {}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("notes/hello.txt")).unwrap(),
        "picoclaw was here"
    );
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body["stream"], true);
    assert_eq!(reqs[0].body["model"], "test-model");
    assert_eq!(
        reqs[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let tools = tool_messages(&reqs[2].body);
    assert!(
        tools[1].contains("picoclaw was here"),
        "read_file result reached the model: {tools:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_invocation_sends_the_earlier_turns_as_history() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Nice to meet you, Ada."),
        Reply::text("You are Ada."),
        Reply::text("I don't know you yet."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let first = run(
        home.cmd(),
        &["agent", "--no-stream", "-s", "cli:ada", "-m", "I am Ada"],
    )
    .await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stdout.trim(), "Nice to meet you, Ada.");
    let second = run(
        home.cmd(),
        &["agent", "--no-stream", "-s", "cli:ada", "-m", "Who am I?"],
    )
    .await;
    assert_eq!(second.stdout.trim(), "You are Ada.");
    let other = run(home.cmd(), &["agent", "-s", "cli:bob", "-m", "Who am I?"]).await;
    assert_eq!(other.stdout.trim(), "I don't know you yet.");

    let reqs = endpoint.requests();
    assert_eq!(
        reqs[0].body["stream"],
        Value::Null,
        "--no-stream sends a plain request"
    );
    let history: Vec<(String, String)> = reqs[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("user".into(), "I am Ada".into()),
            ("assistant".into(), "Nice to meet you, Ada.".into()),
            ("user".into(), "Who am I?".into()),
        ]
    );
    assert_eq!(
        reqs[2].body["messages"].as_array().unwrap().len(),
        2,
        "other session is fresh"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_provider_configured_says_so_in_one_line() {
    let home = Home::new();
    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_eq!(out.code, 2);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one clear line: {}", out.stderr);
    assert!(
        lines[0].contains("OPENAI_API_KEY") && lines[0].contains("onboard"),
        "{}",
        lines[0]
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_api_key_names_the_key_to_fix_without_showing_it() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("unreachable")]).await;
    endpoint.require_api_key("sk-the-right-key-000000");
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("providers.openai.api_key"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(KEY),
        "the key must never be printed: {}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_config_reports_line_and_column() {
    let home = Home::new();
    std::fs::write(
        home.path().join("config.json"),
        "{\n  \"agents\": {\n    \"defaults\": {,}\n}\n",
    )
    .unwrap();
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("config.json:3:"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_model_prefix_lists_the_known_providers() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({"model": "nosuchvendor/some-model"}));
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nosuchvendor"), "{}", out.stderr);
    assert!(
        out.stderr.contains("openrouter") && out.stderr.contains("ollama"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_truncated_answers_fail_cleanly_and_keep_the_session() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::garbage("<html>proxy error</html>"),
        Reply::truncated("The answer is"),
        Reply::text("third time lucky"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let first = run(home.cmd(), &["agent", "--no-stream", "-m", "first words"]).await;
    assert_eq!(first.code, 1);
    assert!(first.stderr.contains("error:"), "{}", first.stderr);
    assert!(!first.stderr.contains("panicked"));
    let second = run(home.cmd(), &["agent", "-m", "second words"]).await;
    assert_eq!(second.code, 1);
    assert!(
        second.stderr.to_lowercase().contains("truncated") || second.stderr.contains("ended"),
        "{}",
        second.stderr
    );
    let third = run(home.cmd(), &["agent", "-m", "third words"]).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    let texts: Vec<String> = endpoint.requests()[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        ["first words", "second words", "third words"],
        "nothing the user said is lost"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_paths_and_commands_are_refused_and_reported_to_the_model() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    let outside = home.path().join("secret.txt");
    std::fs::write(&outside, "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(&outside, home.workspace().join("link.txt")).unwrap();
    endpoint.push(Reply::tool_calls(vec![
        ("read_file", json!({"path": "../secret.txt"})),
        ("read_file", json!({"path": outside.display().to_string()})),
        ("read_file", json!({"path": "link.txt"})),
        (
            "write_file",
            json!({"path": "../escape.txt", "content": "x"}),
        ),
        ("exec", json!({"command": "rm -rf /"})),
        ("no_such_tool", json!({})),
    ]));
    endpoint.push(Reply::tool_call_raw("read_file", "{\"path\": "));
    endpoint.push(Reply::text("I could not do any of that."));
    let out = run(home.cmd(), &["agent", "-m", "be evil"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "I could not do any of that.");
    let reqs = endpoint.requests();
    let results = tool_messages(&reqs[1].body);
    assert_eq!(results.len(), 6);
    for r in &results[..4] {
        assert!(r.contains("outside the workspace"), "refused: {r}");
        assert!(!r.contains("TOP-SECRET"));
    }
    assert!(
        results[4].to_lowercase().contains("refused"),
        "{}",
        results[4]
    );
    assert!(results[5].contains("no tool named"), "{}", results[5]);
    assert!(!home.path().join("escape.txt").exists());
    let last = tool_messages(&reqs[2].body);
    assert!(last.last().unwrap().contains("not valid JSON"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_tool_calls_end_the_turn_naming_the_key() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_calls(vec![
            ("list_dir", json!({"path": "."})),
            ("list_dir", json!({"path": "."})),
            ("list_dir", json!({"path": "."})),
        ]),
        Reply::text("never sent"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        "rate_limits": {"max_tool_calls_per_minute": 1}
    }));
    let out = run(home.cmd(), &["agent", "-m", "list it three times"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The second call would wait a minute, more than 30 s: the turn ends at once.
    assert!(
        out.stdout.contains(
            "This conversation reached its limit of 1 tool calls per minute \
             (rate_limits.max_tool_calls_per_minute); try again in"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("never sent"), "{}", out.stdout);
    assert_eq!(
        endpoint.requests().len(),
        1,
        "no model call after the limit"
    );
    assert_eq!(endpoint.remaining(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn runaway_tool_loop_ends_at_max_tool_iterations() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("list_dir", json!({"path": "."})),
        Reply::tool_call("list_dir", json!({"path": "."})),
        Reply::tool_call("list_dir", json!({"path": "."})),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({"max_tool_iterations": 2}));
    let out = run(home.cmd(), &["agent", "-m", "loop"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("max_tool_iterations = 2"),
        "{}",
        out.stdout
    );
    assert_eq!(endpoint.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_session_supports_new_and_exit() {
    let endpoint =
        ScriptedEndpoint::start_with([Reply::text("Hi Ada."), Reply::text("Fresh start.")]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut cmd = home.cmd();
    cmd.write_stdin("I am Ada\n/session\n/new\nwho am I?\n/exit\n");
    let out = run(cmd, &["agent"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("Hi Ada.") && out.stdout.contains("Fresh start."),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("session: cli:default"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("started a fresh session"),
        "{}",
        out.stderr
    );
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 2);
    let second = reqs[1].message_texts().join("\n");
    assert!(
        !second.contains("I am Ada"),
        "/new must not carry the old history: {second}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_cancels_the_running_turn_and_keeps_the_program() {
    use std::io::Write;
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("too late").delayed(std::time::Duration::from_secs(20)),
        Reply::text("Still here."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"));
    cmd.env("PICOCLAW_HOME", home.path())
        .env_remove("PICOCLAW_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .arg("agent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "take your time").unwrap();
    stdin.flush().unwrap();
    for _ in 0..200 {
        if !endpoint.requests().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        endpoint.requests().len(),
        1,
        "the first turn reached the model"
    );
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    writeln!(stdin, "are you there?").unwrap();
    writeln!(stdin, "/exit").unwrap();
    drop(stdin);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    assert!(
        stdout.contains("Still here.") && !stdout.contains("too late"),
        "{stdout}"
    );
    // The cancelled message was kept: the next request carries it as history.
    let texts = endpoint.requests()[1].message_texts().join("\n");
    assert!(texts.contains("take your time"), "{texts}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_and_server_errors_are_retried() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::rate_limited(1),
        Reply::text("after the rate limit"),
        Reply::error(500, "boom"),
        Reply::error(503, "busy"),
        Reply::text("after two server errors"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "one"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("after the rate limit"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["agent", "-m", "two"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("after two server errors"),
        "{}",
        out.stdout
    );
    assert_eq!(endpoint.requests().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_model_falls_back_and_the_user_is_told() {
    let primary = ScriptedEndpoint::start().await;
    for _ in 0..4 {
        primary.push(Reply::error(503, "overloaded"));
    }
    let backup = ScriptedEndpoint::start_with([Reply::text("the backup answered")]).await;
    let home = Home::with_config(
        &primary,
        json!({"model_fallbacks": ["vllm/backup-model"], "max_retries": 1}),
    );
    let mut config = home.config();
    config["providers"]["vllm"] = json!({"api_base": backup.base_url()});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("the backup answered"), "{}", out.stdout);
    assert!(
        out.stderr.contains("fallback model vllm/backup-model"),
        "{}",
        out.stderr
    );
    assert_eq!(
        primary.requests().len(),
        2,
        "one attempt and one retry on the primary"
    );
    assert_eq!(backup.requests()[0].body["model"], "backup-model");
}

/// `picoclaw agent -m ... | head -1`: the reader goes away after one line; the command ends
/// quietly and successfully (it used to panic with a backtrace on the closed stdout).
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_the_answer_quietly() {
    use std::io::BufRead;
    let endpoint = ScriptedEndpoint::start_with([Reply::text("first line\n".repeat(20_000))]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
        .env("PICOCLAW_HOME", home.path())
        .env_remove("PICOCLAW_CONFIG")
        .args(["agent", "-m", "talk a lot"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first = tokio::task::spawn_blocking(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line
        // The reader (and the pipe's read end) is dropped here, as `head -1` exits.
    })
    .await
    .unwrap();
    assert_eq!(first, "first line\n");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[tokio::test]
async fn every_command_ends_quietly_when_stdout_is_closed() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    for args in [&["status"][..], &["sessions", "list"], &["cron", "list"]] {
        // The pipe's read end is gone before the command writes: its first line meets EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
            .env("PICOCLAW_HOME", home.path())
            .env_remove("PICOCLAW_CONFIG")
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {:?}: {stderr}", out.status);
    }
}

#[tokio::test]
async fn logs_on_a_piped_stderr_carry_no_colour() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("hi")]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
        .env("PICOCLAW_HOME", home.path())
        .env_remove("PICOCLAW_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .args(["-vv", "agent", "-m", "hello"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "no debug lines to look at: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs: {stderr:?}"
    );
}

#[tokio::test]
async fn a_provider_defined_in_config_alone_answers() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("from my gateway")]).await;
    endpoint.require_api_key("sk-mine-1");
    let home = Home::with_config(&endpoint, json!({}));
    home.write_config(&json!({
        "agents": {"defaults": {"model": "mygw/some-model",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"mygw": {"wire": "openai", "api_base": endpoint.base_url(),
                               "api_key": "sk-mine-1"}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "from my gateway");
    assert_eq!(endpoint.requests()[0].body["model"], "some-model");

    // An unknown wire is one line naming the wires this build has.
    home.write_config(&json!({
        "agents": {"defaults": {"model": "mygw/some-model"}},
        "providers": {"mygw": {"wire": "carrier-pigeon", "api_base": endpoint.base_url()}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("carrier-pigeon") && out.stderr.contains("anthropic"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn rust_log_filters_by_target_and_a_bad_one_is_named() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("one"),
        Reply::text("two"),
        Reply::text("three"),
        Reply::text("four"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let run = |rust_log: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
            .env("PICOCLAW_HOME", home.path())
            .env_remove("PICOCLAW_CONFIG")
            .env("RUST_LOG", rust_log)
            .args(["agent", "-m", "hello"])
            .output()
            .unwrap()
    };
    // One crate's debug lines (sqlx's statements), nobody else's.
    let out = run("sqlx=debug,error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "no debug lines: {stderr}");
    for line in stderr.lines().filter(|l| l.contains("DEBUG")) {
        assert!(
            line.contains("db.statement"),
            "a line of another target: {line}"
        );
    }
    // The control: debug for everyone shows more than sqlx's statements (the turn's own lines).
    let out = run("debug,");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("DEBUG") && !l.contains("db.statement")),
        "no debug line but sqlx's: {stderr}"
    );
    // A filter that does not parse, or a span filter, is named, the default used, the turn
    // still answered.
    for (bad, answer) in [("picoclaw_core=loud", "three"), ("[turn]=debug", "four")] {
        let out = run(bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("RUST_LOG={bad:?} is not a log filter")),
            "{stderr}"
        );
        assert!(!stderr.contains("DEBUG"), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), answer);
    }
}
