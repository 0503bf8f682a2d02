//! End to end: the real `picoclaw` binary against a scripted OpenAI-compatible endpoint on
//! 127.0.0.1, in a temporary home and workspace.

use assert_cmd::Command;
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::path::Path;

mod support;
use support::*;

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
async fn status_masks_the_key_and_version_prints() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["status"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("test-model"), "{}", out.stdout);
    assert!(out.stdout.contains(&endpoint.base_url()));
    assert!(
        !out.stdout.contains(KEY),
        "key must be masked: {}",
        out.stdout
    );
    assert!(out.stdout.contains("sk-t"), "{}", out.stdout);
    let v = run(home.cmd(), &["version"]).await;
    assert_eq!(
        v.stdout.trim(),
        format!("picoclaw {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_names_a_misspelt_channel_key_with_a_suggestion() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        "channels": {"telegram": {"enabled": false, "tokn": "123:abc"},
                     "line": {"enabled": false, "channel_secret": "", "webhook_port": 18791},
                     "discrod": {"enabled": true}},
        "rate_limits": {"max_requests_per_minute": 30}
    }));
    let out = run(home.cmd(), &["status"]).await;
    // A section of no channel this build has: a misspelling, named with the closest channel.
    assert!(
        out.stderr.contains(
            "channels.discrod: no channel of that name in this build (did you mean \
             'channels.discord'?)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "unknown key 'channels.telegram.tokn' is ignored (did you mean \
             'channels.telegram.token'?)"
        ),
        "{}",
        out.stderr
    );
    // The original's other channels are not checked; a section kept but not used is named once.
    assert!(!out.stderr.contains("channels.line"), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("rate_limits: ").count(),
        1,
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_creates_files_and_never_clobbers_a_users_edits() {
    let home = Home::new();
    let out = run(
        home.cmd(),
        &["onboard", "--non-interactive", "--model", "ollama/qwen3"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["agents"]["defaults"]["model"], "ollama/qwen3");
    // The channels are there to fill in, switched off.
    for channel in ["telegram", "discord", "slack"] {
        assert_eq!(config["channels"][channel]["enabled"], false, "{channel}");
    }
    assert_eq!(config["channels"]["slack"]["app_token"], "");
    let ws = home.path().join("workspace");
    for f in [
        "AGENT.md",
        "SOUL.md",
        "USER.md",
        "IDENTITY.md",
        "TOOLS.md",
        "HEARTBEAT.md",
    ] {
        assert!(ws.join(f).exists(), "{f} created");
    }
    assert!(ws.join("memory/MEMORY.md").exists());

    // The user edits a template and adds a key picoclaw does not know.
    std::fs::write(ws.join("USER.md"), "My name is Ada.").unwrap();
    let mut edited = config.clone();
    edited["my_plugin"] = json!({"keep": true});
    edited["agents"]["defaults"]["temperature"] = json!(0.2);
    home.write_config(&edited);
    let again = run(home.cmd(), &["onboard", "--non-interactive"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.join("USER.md")).unwrap(),
        "My name is Ada."
    );
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(after["my_plugin"]["keep"], true);
    assert_eq!(after["agents"]["defaults"]["temperature"], json!(0.2));
    assert_eq!(after["agents"]["defaults"]["model"], "ollama/qwen3");
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

#[tokio::test(flavor = "multi_thread")]
async fn claude_end_to_end_through_the_messages_api() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "write_file",
            json!({"path": "claude.txt", "content": "from claude"}),
        ),
        Reply::text("I wrote claude.txt."),
    ])
    .await;
    endpoint.require_api_key("sk-ant-e2e");
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"anthropic": {"api_key": "sk-ant-e2e", "api_base": endpoint.base_url()}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "write a file"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("I wrote claude.txt."), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("claude.txt")).unwrap(),
        "from claude"
    );
    let reqs = endpoint.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/messages"));
    let second = &reqs[1].body;
    assert_eq!(second["model"], "claude-sonnet-4-5");
    let last = second["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][0]["type"], "tool_result");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_inside_a_tool_call_runs_nothing() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::truncated_tool_call("write_file", r#"{"path": "half.txt", "cont"#),
        Reply::text("recovered"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "write something"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("truncated"), "{}", out.stderr);
    assert!(
        !home.workspace().join("half.txt").exists(),
        "no half-executed tool"
    );
    let out = run(home.cmd(), &["agent", "-m", "again"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts = endpoint.requests()[1].message_texts().join("\n");
    assert!(
        texts.contains("write something"),
        "the cut turn's message is kept: {texts}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_native_end_to_end() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("list_dir", json!({"path": "."})),
        Reply::text("The workspace is empty."),
    ])
    .await;
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "google/gemini-2.5-flash",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"google": {"api_key": "AIza-e2e",
                                 "api_base": endpoint.base_url().replace("/v1", "/v1beta")}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "what is here?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("The workspace is empty."),
        "{}",
        out.stdout
    );
    let reqs = endpoint.requests();
    assert!(
        reqs[0]
            .path
            .ends_with("/models/gemini-2.5-flash:streamGenerateContent"),
        "{}",
        reqs[0].path
    );
    let contents = reqs[1].body["contents"].as_array().unwrap();
    assert!(
        contents.last().unwrap()["parts"][0]
            .get("functionResponse")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_through_the_responses_api_end_to_end() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("exec", json!({"command": "echo from-codex > out.txt"})),
        Reply::text("Done."),
    ])
    .await;
    endpoint.require_api_key(KEY);
    let home = Home::new();
    home.write_config(&json!({
        "agents": {"defaults": {"model": "codex/gpt-5-codex",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"codex": {"api_key": KEY, "api_base": endpoint.base_url()}},
    }));
    let out = run(home.cmd(), &["agent", "-m", "run it", "--no-stream"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Done."), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("out.txt")).unwrap(),
        "from-codex\n"
    );
    let reqs = endpoint.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/responses"));
    let items = reqs[1].body["input"].as_array().unwrap();
    assert_eq!(items.last().unwrap()["type"], "function_call_output");
}

fn azure_home(endpoint: &ScriptedEndpoint, provider: Value) -> Home {
    let home = Home::new();
    let mut azure = json!({"api_base": endpoint.base_url().trim_end_matches("/v1")});
    for (k, v) in provider.as_object().unwrap() {
        azure[k] = v.clone();
    }
    home.write_config(&json!({
        "agents": {"defaults": {"model": "azure/gpt-5.2-chat", "max_retries": 0,
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"azure": azure},
    }));
    home
}

fn clear_azure_env(cmd: &mut Command) {
    for var in [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_DEPLOYMENT",
    ] {
        cmd.env_remove(var);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_an_api_key() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello from Azure.")]).await;
    endpoint.require_api_key("azure-key-e2e");
    let home = azure_home(
        &endpoint,
        json!({"api_key": "azure-key-e2e", "api_version": "2024-10-21"}),
    );
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Hello from Azure."), "{}", out.stdout);
    let r = &endpoint.requests()[0];
    assert_eq!(r.path, "/openai/deployments/gpt-5.2-chat/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key"), Some("azure-key-e2e"));
    assert!(r.body.get("max_completion_tokens").is_some() && r.body.get("max_tokens").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_a_managed_identity_from_the_app_service_endpoint() {
    let identity =
        picoclaw_testkit::IdentityEndpoint::spawn("eyJ-managed-identity-token", "hdr-secret");
    let endpoint = ScriptedEndpoint::start_with([Reply::text("one"), Reply::text("two")]).await;
    endpoint.require_api_key("eyJ-managed-identity-token");
    let home = azure_home(&endpoint, json!({}));
    for message in ["first", "second"] {
        let mut cmd = home.cmd();
        clear_azure_env(&mut cmd);
        cmd.env("IDENTITY_ENDPOINT", identity.url())
            .env("IDENTITY_HEADER", "hdr-secret");
        let out = run(cmd, &["agent", "-m", message]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let r = &endpoint.requests()[0];
    assert_eq!(
        r.header("authorization"),
        Some("Bearer eyJ-managed-identity-token")
    );
    assert!(r.header("api-key").is_none());
    assert!(r.body.get("max_completion_tokens").is_some());
    let asked = identity.requests();
    assert!(
        asked[0].contains("resource=https%3A%2F%2Fcognitiveservices.azure.com"),
        "{asked:?}"
    );
    assert!(asked[0].contains("api-version=2019-08-01"), "{asked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_falls_through_to_the_azure_cli_and_explains_failures() {
    // A dead identity endpoint (nothing listens), then `az` from PATH.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bin = tempfile::tempdir().unwrap();
    let az = bin.path().join("az");
    std::fs::write(
        &az,
        "#!/bin/sh\necho '{\"accessToken\": \"eyJ-from-az-cli\", \"expiresOn\": \"2099-01-01 00:00:00.000000\", \"expires_on\": 4070908800, \"subscription\": \"s\", \"tenant\": \"t\", \"tokenType\": \"Bearer\"}'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let endpoint = ScriptedEndpoint::start_with([Reply::text("via az")]).await;
    endpoint.require_api_key("eyJ-from-az-cli");
    let home = azure_home(&endpoint, json!({}));
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("IDENTITY_ENDPOINT", format!("http://{dead}/msi/token"))
        .env("IDENTITY_HEADER", "x")
        .env("PATH", &path);
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("via az"), "{}", out.stdout);

    // With no working credential at all, the error names every one that was tried.
    let empty_bin = tempfile::tempdir().unwrap();
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("IDENTITY_ENDPOINT", format!("http://{dead}/msi/token"))
        .env("IDENTITY_HEADER", "x")
        .env("PATH", empty_bin.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("managed identity (IDENTITY_ENDPOINT)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Azure CLI"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_with_a_service_principal_from_the_environment() {
    let entra = picoclaw_testkit::EntraTokenEndpoint::spawn("eyJ-service-principal-token");
    let certs = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca.pem");
    std::fs::write(&ca, entra.ca_pem()).unwrap();
    let endpoint = ScriptedEndpoint::start_with([Reply::text("as the service principal")]).await;
    endpoint.require_api_key("eyJ-service-principal-token");
    let home = azure_home(&endpoint, json!({}));
    let mut cmd = home.cmd();
    clear_azure_env(&mut cmd);
    cmd.env("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47")
        .env("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
        .env("AZURE_CLIENT_SECRET", "sp-secret-value")
        .env("AZURE_AUTHORITY_HOST", entra.authority_host())
        .env("SSL_CERT_FILE", &ca)
        .env("PATH", certs.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("as the service principal"),
        "{}",
        out.stdout
    );
    let (line, form) = &entra.requests()[0];
    assert!(
        line.starts_with("POST /72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"),
        "{line}"
    );
    assert!(
        form.contains("client_id=11111111-2222-3333-4444-555555555555"),
        "{form}"
    );
    assert!(
        form.contains("scope=https%3A%2F%2Fcognitiveservices.azure.com%2F.default"),
        "{form}"
    );
    assert!(!out.stderr.contains("sp-secret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_can_be_listed_shown_exported_and_cleared() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("list_dir", json!({"path": "."})),
        Reply::text("The workspace is empty."),
        Reply::text("Hello again."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    assert_eq!(
        run(home.cmd(), &["agent", "-s", "work", "-m", "what is here?"])
            .await
            .code,
        0
    );
    assert_eq!(
        run(home.cmd(), &["agent", "-s", "chat", "-m", "hi"])
            .await
            .code,
        0
    );

    let out = run(home.cmd(), &["sessions", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("chat") && lines[1].starts_with("work"),
        "{}",
        out.stdout
    );
    assert!(lines[1].contains("4 messages"), "{}", out.stdout);

    let out = run(home.cmd(), &["sessions", "show", "work"]).await;
    assert!(
        out.stdout.contains("**User**\n\nwhat is here?"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("`list_dir`"), "{}", out.stdout);
    assert!(
        out.stdout.contains("The workspace is empty."),
        "{}",
        out.stdout
    );

    let file = home.path().join("work.json");
    let out = run(
        home.cmd(),
        &["sessions", "export", "work", "-o", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["key"], "work");
    assert_eq!(exported["messages"].as_array().unwrap().len(), 4);
    let out = run(
        home.cmd(),
        &["sessions", "export", "chat", "--format", "markdown"],
    )
    .await;
    assert!(out.stdout.starts_with("# Session `chat`"), "{}", out.stdout);

    let out = run(home.cmd(), &["sessions", "clear", "chat", "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["sessions", "list"]).await;
    assert!(!out.stdout.contains("chat"), "{}", out.stdout);
    let out = run(home.cmd(), &["sessions", "show", "nope"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no session 'nope'"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_is_recorded_per_call_and_priced_from_the_model_list() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("list_dir", json!({"path": "."})).with_usage(1_000, 20),
        Reply::text("empty").with_usage(1_200, 30),
        Reply::text("hi").with_usage(500, 10),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["model_list"] = json!([{"model_name": "priced", "model": "openai/test-model",
                                   "price": {"input": 2.5, "output": 10.0}}]);
    home.write_config(&config);
    assert_eq!(
        run(home.cmd(), &["agent", "-s", "a", "-m", "list"])
            .await
            .code,
        0
    );
    assert_eq!(
        run(home.cmd(), &["agent", "-s", "b", "-m", "hi"])
            .await
            .code,
        0
    );

    let out = run(home.cmd(), &["usage"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let model_line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("openai/test-model"))
        .unwrap();
    // 3 calls, 2 700 prompt tokens, 60 completion tokens: 2700 × 2.5/1M + 60 × 10/1M = 0.00735, shown as 0.0073.
    assert!(
        model_line.contains(" 3 ") && model_line.contains("2,700") && model_line.contains("0.0073"),
        "{}",
        out.stdout
    );

    let out = run(home.cmd(), &["usage", "--by", "session"]).await;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[1].starts_with("a ") && lines[1].contains("2,200"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].starts_with("b ") && lines[2].contains("500"),
        "{}",
        out.stdout
    );
    assert!(lines[3].starts_with("TOTAL"), "{}", out.stdout);

    let out = run(home.cmd(), &["usage", "--since", "2999-01-01"]).await;
    assert!(
        out.stderr.contains("no usage recorded since 2999-01-01"),
        "{}",
        out.stderr
    );
    let out = run(home.cmd(), &["usage", "--since", "yesterday"]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("YYYY-MM-DD"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn long_sessions_are_compacted_and_the_summary_is_sent() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("ok1"),
        Reply::text("ok2"),
        Reply::text("ok3"),
        Reply::text("SUMMARY-E2E: the user sent three long notes about birds."),
        Reply::text("ok4"),
    ])
    .await;
    let home = Home::with_config(
        &endpoint,
        json!({"context_window": 1200, "max_tokens": 200}),
    );
    let mut outs = Vec::new();
    for i in 1..=4 {
        let note = format!("note {i} about birds: {}", "tweet ".repeat(200));
        let out = run(home.cmd(), &["agent", "--no-stream", "-m", &note]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        outs.push(out);
    }
    assert!(
        outs[3].stderr.contains("history compacted"),
        "{}",
        outs[3].stderr
    );
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 5);
    assert!(reqs[3].message_texts()[0].starts_with("You compress conversations"));
    let last = reqs[4].message_texts();
    assert!(
        last[0].contains("SUMMARY-E2E"),
        "the summary goes into the system prompt"
    );
    assert!(
        !last.iter().any(|t| t.starts_with("note 1 about birds")),
        "{last:?}"
    );
    assert!(last.last().unwrap().starts_with("note 4 about birds"));
    assert!(outs[3].stdout.contains("ok4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_written_by_the_agent_is_searchable_and_reaches_later_sessions() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "memory_write",
            json!({"content": "The user's dentist is Dr. Okafor on Elm Street"}),
        ),
        Reply::text("I'll remember your dentist."),
        Reply::text("Dr. Okafor."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(
        home.cmd(),
        &[
            "agent",
            "-s",
            "cli:one",
            "-m",
            "My dentist is Dr. Okafor on Elm Street",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let memory_md = std::fs::read_to_string(home.workspace().join("memory/MEMORY.md")).unwrap();
    assert!(
        memory_md.contains("- The user's dentist is Dr. Okafor on Elm Street\n"),
        "{memory_md}"
    );

    // The CLI finds it; a query with no match exits 1 and says so.
    let out = run(home.cmd(), &["memory", "search", "dentist"]).await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert!(
        out.stdout
            .contains("memory/MEMORY.md:3: The user's dentist is Dr. Okafor on Elm Street"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["memory", "search", "zebra"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no notes match"), "{}", out.stderr);
    let out = run(home.cmd(), &["memory", "search", "?!"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);

    // Facts added by hand are deduplicated like the agent's.
    let out = run(
        home.cmd(),
        &["memory", "add", "the user's dentist is dr okafor"],
    )
    .await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("already known"), "{}", out.stderr);
    let out = run(
        home.cmd(),
        &["memory", "add", "Prefers", "morning", "appointments"],
    )
    .await;
    assert!(
        out.stderr.contains("added to memory/MEMORY.md line 4"),
        "{}",
        out.stderr
    );

    // Another session, another process: the fact is in the system prompt.
    let out = run(
        home.cmd(),
        &["agent", "-s", "cli:two", "-m", "Who is my dentist?"],
    )
    .await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let reqs = endpoint.requests();
    let system = reqs[2].message_texts()[0].clone();
    assert!(
        system.contains("- The user's dentist is Dr. Okafor on Elm Street"),
        "{system}"
    );
    assert!(
        system.contains("- Prefers morning appointments"),
        "{system}"
    );

    let out = run(home.cmd(), &["memory", "reindex", "--full"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("1 file(s) indexed"), "{}", out.stderr);
    assert!(out.stderr.contains("2 notes searchable"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_state_url_is_a_configuration_error() {
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut cmd = home.cmd();
    cmd.env("PICOCLAW_STATE_URL", "mysql://root@localhost/pico");
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is not supported"), "{}", out.stderr);
    assert!(endpoint.requests().is_empty(), "nothing was sent");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn sessions_memory_and_usage_live_in_postgresql_when_state_url_says_so() {
    let (schema, url) = picoclaw_state::conformance::fresh_schema().await;
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "memory_write",
            json!({"content": "The user's cat is called Miso"}),
        ),
        Reply::text("Noted, Miso.").with_usage(20, 5),
        Reply::text("Miso.").with_usage(30, 2),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["state"] = json!({"url": url});
    home.write_config(&config);

    let out = run(
        home.cmd(),
        &["agent", "-s", "cli:pg", "-m", "My cat is Miso"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(
        home.cmd(),
        &["agent", "-s", "cli:pg", "-m", "What is my cat called?"],
    )
    .await;
    assert_eq!(out.stdout.trim(), "Miso.", "{}", out.stderr);
    // The second turn carried the first as history and the fact from memory.
    let reqs = endpoint.requests();
    let texts = reqs[2].message_texts();
    assert!(texts.iter().any(|t| t == "My cat is Miso"), "{texts:?}");
    assert!(
        texts[0].contains("The user's cat is called Miso"),
        "{}",
        texts[0]
    );
    // No SQLite file was made: everything went to PostgreSQL.
    assert!(!home.path().join("state.db").exists());

    let out = run(home.cmd(), &["sessions", "list"]).await;
    assert!(out.stdout.contains("cli:pg"), "{}", out.stdout);
    assert!(out.stdout.contains("6 messages"), "{}", out.stdout);
    let out = run(home.cmd(), &["memory", "search", "cat"]).await;
    assert!(out.stdout.contains("Miso"), "{} {}", out.stdout, out.stderr);
    let out = run(home.cmd(), &["usage", "--by", "session"]).await;
    assert!(out.stdout.contains("cli:pg"), "{}", out.stdout);
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout.contains("picoclaw:***@"),
        "password hidden: {}",
        out.stdout
    );

    // A server that is not there: a clear configuration error.
    config["state"] = json!({"url": "postgres://picoclaw:pw@127.0.0.1:1/nothing"});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot connect to PostgreSQL"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(":pw@"), "{}", out.stderr);
    picoclaw_state::conformance::drop_schema(&schema).await;
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn status_tells_whether_the_gateway_runs() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::new();
    let port = free_port();
    let slack = picoclaw_testkit::slack::FakeSlack::start("xoxb-st", "xapp-st");
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        "gateway": {"host": "127.0.0.1", "port": port},
        "channels": {
            "slack": {"enabled": true, "bot_token": "xoxb-st", "app_token": "xapp-st",
                      "allow_from": ["U1"], "api_base": slack.api_base()},
            "line": {"enabled": true},
            "discord": {"enabled": false},
        },
    }));
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout.contains("gateway:    not running"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("channels:   line (not in this build), slack\n"),
        "{}",
        out.stdout
    );

    let gateway = BackgroundGateway::start(&home);
    let mut running = false;
    for _ in 0..200 {
        let out = run(home.cmd(), &["status"]).await;
        if out.stdout.contains("gateway:    running at") && out.stdout.contains("slack (running)") {
            assert!(out.stdout.contains("(ready)"), "{}", out.stdout);
            assert!(
                out.stdout.contains("line (not in this build)"),
                "{}",
                out.stdout
            );
            running = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(gateway);
    assert!(running, "status never saw the gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_where_the_gateway_key_is_and_masks_it() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["gateway"] = json!({"host": "127.0.0.1", "port": free_port()});
    home.write_config(&config);
    let file = home.path().join("gateway.key");
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout
            .contains(&format!("gateway key: {} (not created yet", file.display())),
        "{}",
        out.stdout
    );
    assert!(!file.exists(), "status creates nothing");

    let gateway = BackgroundGateway::start(&home);
    let mut out = run(home.cmd(), &["status"]).await;
    for _ in 0..200 {
        if out.stdout.contains("gateway:    running at") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        out = run(home.cmd(), &["status"]).await;
    }
    assert!(
        out.stdout.contains("gateway:    running at"),
        "{}",
        out.stdout
    );
    drop(gateway);
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("gateway key: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains(&format!("read it with `cat {}`", file.display())),
        "{line}"
    );
    assert!(
        line.contains(&key[..4]) && line.contains(&key[60..]),
        "masked: {line}"
    );
    assert!(!out.stdout.contains(&key), "the key itself is never shown");

    // A configured key is used instead, and masked as well.
    config["gateway"]["api_key"] = json!("configured-gateway-key-0123456789");
    home.write_config(&config);
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout.contains(
            "gateway key: set by gateway.api_key or PICOCLAW_GATEWAY_API_KEY (conf…6789)"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("configured-gateway-key-0123456789"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_jobs_are_managed_from_the_cli_and_by_the_agent() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "cron",
            json!({"action": "add", "message": "Stand up and stretch", "every_seconds": 3600}),
        ),
        Reply::text("Every hour, I'll remind you."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("no scheduled jobs"), "{}", out.stderr);

    let out = run(
        home.cmd(),
        &[
            "cron",
            "add",
            "-m",
            "Standup notes",
            "--cron",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Lisbon",
            "--to",
            "telegram:42",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_owned();
    assert_eq!(id.len(), 16, "the new job's id on stdout: {}", out.stdout);

    // The agent schedules through its tool.
    let out = run(
        home.cmd(),
        &["agent", "-m", "remind me to stretch every hour"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tool_result = tool_messages(&endpoint.requests()[1].body)[0].clone();
    assert!(
        tool_result.starts_with("Scheduled: Stand up and stretch"),
        "{tool_result}"
    );

    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("cron \"0 9 * * 1-5\" (Europe/Lisbon)"),
        "{}",
        out.stdout
    );
    // The owner sees which chat made a job.
    assert!(
        out.stdout.contains("(made in cli:cli:default)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("→ telegram:42"), "{}", out.stdout);
    assert!(out.stdout.contains("every 1h"), "{}", out.stdout);

    let out = run(home.cmd(), &["cron", "disable", &id]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("disabled"), "{}", out.stderr);
    let out = run(home.cmd(), &["cron", "enable", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["cron", "remove", &id]).await;
    assert_eq!(out.code, 0);
    let out = run(home.cmd(), &["cron", "remove", &id]).await;
    assert_eq!(out.code, 1);

    // Bad input: a clear message and exit code 2, nothing stored.
    for args in [
        &["cron", "add", "-m", "x", "--in", "soon"][..],
        &["cron", "add", "-m", "x", "--cron", "61 * * * *"][..],
        &["cron", "add", "-m", "x", "--at", "tomorrow"][..],
        &["cron", "add", "-m", "x", "--in", "10m", "--to", "telegram"][..],
        &["cron", "add", "-m", "x", "--at", "2001-01-01 09:00"][..],
    ] {
        let out = run(home.cmd(), args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_started_turn_cannot_add_cron_jobs_and_the_tool_sees_only_its_chat() {
    let endpoint = ScriptedEndpoint::start_with([
        // The job's turn, run by the gateway: it tries to schedule more work.
        Reply::tool_call(
            "cron",
            json!({"action": "add", "message": "Check the news again", "every_seconds": 60}),
        ),
        Reply::text("Checked the news."),
        // Then a turn in the terminal lists the jobs it can see.
        Reply::tool_call("cron", json!({"action": "list"})),
        Reply::text("Nothing is scheduled here."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = home.config();
    config["gateway"] = json!({"host": "127.0.0.1", "port": port});
    config["heartbeat"] = json!({"enabled": false});
    config["tools"] = json!({"cron": {"max_jobs": 5}});
    home.write_config(&config);
    // The owner's jobs: a task for the agent, due at once, and a reminder for a Telegram chat.
    for args in [
        &[
            "cron",
            "add",
            "-m",
            "Look for news",
            "--agent",
            "--in",
            "1s",
        ][..],
        &[
            "cron",
            "add",
            "-m",
            "Standup",
            "--every",
            "1d",
            "--to",
            "telegram:42",
        ][..],
    ] {
        let out = run(home.cmd(), args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }

    // Stopped when dropped: a failed assertion leaves no gateway behind.
    let gateway = BackgroundGateway::start(&home);
    for _ in 0..600 {
        if endpoint.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let requests = endpoint.requests();
    assert!(requests.len() >= 2, "the job never ran its turn");
    assert!(
        requests[0].body["messages"]
            .to_string()
            .contains("Scheduled task"),
        "the first request is the job's turn"
    );
    let refused = tool_messages(&requests[1].body)[0].clone();
    assert!(
        refused.contains("scheduled turns cannot add jobs"),
        "{refused}"
    );
    // Let the run finish (its result recorded, the one-shot removed) before stopping.
    for _ in 0..100 {
        let out = run(home.cmd(), &["cron", "list"]).await;
        if !out.stdout.contains("Look for news") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(gateway);
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert!(!out.stdout.contains("Check the news"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("Standup"), "{}", out.stdout);

    // The terminal's cron tool does not see the Telegram chat's job; the owner's CLI did.
    let out = run(home.cmd(), &["agent", "-m", "what is scheduled?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed = tool_messages(&endpoint.requests()[3].body)[0].clone();
    assert_eq!(listed, "No scheduled jobs in this chat.");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_never_sees_picoclaws_secrets() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "echo \"token=[$MY_SERVICE_TOKEN] key=[$OPENAI_API_KEY] lang=[$PICO_LANG_PROBE]\""}),
        ),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut cmd = home.cmd();
    cmd.env("MY_SERVICE_TOKEN", "hunter2")
        .env("OPENAI_API_KEY", "sk-should-not-leak")
        .env("PICO_LANG_PROBE", "visible");
    let out = run(cmd, &["agent", "-m", "print the env"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = tool_messages(&endpoint.requests()[1].body)[0].clone();
    assert!(
        result.contains("token=[] key=[] lang=[visible]"),
        "{result}"
    );
    assert!(
        !result.contains("hunter2") && !result.contains("sk-should-not-leak"),
        "{result}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn exec_from_a_real_turn_cannot_write_outside_the_workspace_under_landlock() {
    // The hostile command aims beside the workspace, in picoclaw's home (under /tmp here, as on
    // many CI systems: the policy must hold wherever the home is).
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "echo pwned > ../pwned.txt; cat ../config.json; echo inside > in.txt"}),
        ),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let escape = home.path().join("pwned.txt");
    let out = run(home.cmd(), &["agent", "-m", "try it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = tool_messages(&endpoint.requests()[1].body).join("\n");
    let status = run(home.cmd(), &["status"]).await;
    match picoclaw_tools::landlock_abi() {
        Ok(abi) => {
            assert!(result.contains("Permission denied"), "{result}");
            assert!(!escape.exists(), "exec wrote outside the workspace");
            assert!(!result.contains(KEY), "exec read the config: {result}");
            assert!(
                status
                    .stdout
                    .contains(&format!("Landlock active (kernel ABI {abi})")),
                "{}",
                status.stdout
            );
        }
        Err(why) => assert!(status.stdout.contains(&why), "{}", status.stdout),
    }
    // The rest of the command ran, inside.
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("in.txt")).unwrap(),
        "inside\n"
    );
    // The operator switches it off knowingly, and status says so.
    let mut config = home.config();
    config["tools"] = json!({"exec": {"landlock": false}});
    home.write_config(&config);
    let status = run(home.cmd(), &["status"]).await;
    assert!(
        status
            .stdout
            .contains("deny-list only; Landlock off (tools.exec.landlock = false)"),
        "{}",
        status.stdout
    );
}

/// A SearXNG instance and a web page on loopback; returns the base URL.
async fn search_backend_and_page() -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let page = format!("{base}/articles/otters");
    let app = axum::Router::new()
        .route(
            "/search",
            get(move |uri: axum::http::Uri| {
                let page = page.clone();
                async move {
                    let query = uri.query().unwrap_or_default().to_owned();
                    assert!(query.contains("format=json"), "{query}");
                    axum::Json(json!({"results": [{
                        "title": "Otters hold hands while sleeping",
                        "url": page,
                        "content": "Why sea otters hold hands",
                    }]}))
                }
            }),
        )
        .route(
            "/articles/otters",
            get(|| async {
                (
                    [("content-type", "text/html; charset=utf-8")],
                    "<html><head><title>Otters</title><script>track()</script></head><body>\
                     <h1>Sea otters</h1><p>Sea otters hold hands so they do not <b>drift \
                     apart</b> while they sleep.</p></body></html>",
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn search_then_fetch_answers_from_the_page() {
    let web = search_backend_and_page().await;
    let page = format!("{web}/articles/otters");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "web_search",
            json!({"query": "why do otters hold hands", "count": 3}),
        ),
        Reply::tool_call("web_fetch", json!({"url": page, "max_chars": 2000})),
        Reply::text("So they do not drift apart while they sleep."),
        // The same fetch with the operator's switch off.
        Reply::tool_call("web_fetch", json!({"url": page})),
        Reply::text("I could not read that page."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["tools"] = json!({"web": {
        "searxng": {"enabled": true, "url": web, "max_results": 3},
        "fetch": {"allow_private": true},
    }});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-m", "Why do otters hold hands?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "So they do not drift apart while they sleep."
    );
    let reqs = endpoint.requests();
    let found = tool_messages(&reqs[1].body).join("\n");
    assert!(
        found.contains("Otters hold hands while sleeping"),
        "{found}"
    );
    assert!(found.contains(&page), "{found}");
    let read = tool_messages(&reqs[2].body).join("\n");
    assert!(read.contains("# Sea otters"), "{read}");
    assert!(read.contains("**drift apart**"), "{read}");
    assert!(!read.contains("track()"), "scripts are not text: {read}");

    // By default web_fetch refuses loopback and private addresses, and says why.
    config["tools"]["web"]["fetch"] = json!({});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-s", "cli:other", "-m", "Read it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let refused = tool_messages(&endpoint.requests()[4].body).join("\n");
    assert!(refused.contains("127.0.0.1"), "{refused}");
    assert!(
        refused.contains("allow_private") || refused.contains("loopback"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spawned_sub_agent_reports_back_before_the_cli_exits() {
    const CHILD: &str = "You are a sub-agent";
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "spawn",
            json!({"task": "Count the files in the workspace", "label": "counter"}),
        ),
        // The sub-agent's requests (they arrive alongside the parent's, in no fixed order).
        Reply::tool_call("list_dir", json!({"path": "."})).when_request_contains(CHILD),
        Reply::text("There are 2 files.").when_request_contains(CHILD),
        Reply::text("Counting in the background."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(home.workspace().join("a.txt"), "a").unwrap();
    std::fs::write(home.workspace().join("b.txt"), "b").unwrap();
    let out = run(
        home.cmd(),
        &["agent", "-m", "count my files, in the background"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Counting in the background."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("[background] Background task \"counter\" finished:\nThere are 2 files."),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("[background]").count(),
        1,
        "{}",
        out.stdout
    );
    // It waited for the task, unless the task had already finished during the turn.
    assert!(!out.stderr.contains("waiting for 0"), "{}", out.stderr);
    // The sub-agent really listed the workspace, in its own session.
    let reqs = endpoint.requests();
    let child: Vec<_> = reqs
        .iter()
        .filter(|r| r.body.to_string().contains(CHILD))
        .collect();
    assert_eq!(child.len(), 2);
    let listed = tool_messages(&child[1].body).join("\n");
    assert!(
        listed.contains("a.txt") && listed.contains("b.txt"),
        "{listed}"
    );
    assert_eq!(endpoint.remaining(), 0);
    let sessions = run(home.cmd(), &["sessions", "list"]).await;
    assert!(
        sessions.stdout.contains("subagent:cli:default:1"),
        "{}",
        sessions.stdout
    );
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_from_the_cli_is_delivered_by_the_gateway_once() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "777:CLI-message";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "message",
            json!({"content": "The meeting moved to 3 pm.", "channel": "telegram",
                   "chat_id": "222", "media": ["agenda.pdf", "room.png"]}),
        ),
        Reply::text("I told them."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(home.workspace().join("agenda.pdf"), b"%PDF-1.4 agenda").unwrap();
    std::fs::write(home.workspace().join("room.png"), b"\x89PNG room").unwrap();
    let mut config = home.config();
    config["channels"] = json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["222"], "api_base": tg.api_base()}});
    config["gateway"] = json!({"host": "127.0.0.1", "port": 0});
    home.write_config(&config);

    let out = run(
        home.cmd(),
        &["agent", "-m", "Tell chat 222 the meeting moved to 3 pm"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "I told them.");
    let queued = tool_messages(&endpoint.requests()[1].body).join("\n");
    assert!(!queued.to_lowercase().contains("error"), "{queued}");
    assert!(tg.sent().is_empty(), "the CLI itself sends nothing");

    // The gateway delivers what the CLI queued.
    let gateway = BackgroundGateway::start(&home);
    let mut delivered = false;
    for _ in 0..400 {
        if tg.files().len() == 2 {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Give a second delivery (which must not happen) a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(gateway);
    assert!(delivered, "the gateway never delivered the queued message");
    assert_eq!(tg.sent(), [(222, "The meeting moved to 3 pm.".to_owned())]);
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git is needed for this test");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_skill_installed_from_git_is_offered_read_and_followed() {
    let home_for_skill = tempfile::tempdir().unwrap();
    let repo = home_for_skill.path().join("greeting-skill");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("SKILL.md"),
        "---\nname: formal-greeting\ndescription: How to greet the user formally.\n---\n\n\
         # Formal greeting\n\nAlways greet with exactly: \"Good day, esteemed user.\"\n",
    )
    .unwrap();
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "skill"]);

    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let url = format!("file://{}", repo.display());
    let out = run(home.cmd(), &["skills", "install", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("installed formal-greeting"),
        "{}",
        out.stdout
    );
    let skill_md = home.path().join("skills/formal-greeting/SKILL.md");
    assert!(skill_md.is_file());
    let list = run(home.cmd(), &["skills", "list"]).await;
    assert!(
        list.stdout.contains("formal-greeting") && list.stdout.contains("global"),
        "{}",
        list.stdout
    );

    // The model sees the skill in the prompt, reads it (outside the workspace, read-only), and
    // follows it.
    endpoint.push(Reply::tool_call(
        "read_file",
        json!({"path": skill_md.display().to_string()}),
    ));
    endpoint.push(Reply::text("Good day, esteemed user."));
    let out = run(home.cmd(), &["agent", "-m", "greet me"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Good day, esteemed user.");
    let reqs = endpoint.requests();
    let system = reqs[0].message_texts()[0].clone();
    assert!(
        system.contains("- formal-greeting: How to greet the user formally.")
            && system.contains(&skill_md.display().to_string()),
        "{system}"
    );
    let read = tool_messages(&reqs[1].body).join("\n");
    assert!(read.contains("Always greet with exactly"), "{read}");
    // Reading is all: writing there is still refused.
    endpoint.push(Reply::tool_call(
        "write_file",
        json!({"path": skill_md.display().to_string(), "content": "pwned"}),
    ));
    endpoint.push(Reply::text("I could not."));
    run(home.cmd(), &["agent", "-m", "overwrite the skill"]).await;
    let refused = tool_messages(&endpoint.requests()[3].body).join("\n");
    assert!(refused.contains("outside the workspace"), "{refused}");
    assert!(
        std::fs::read_to_string(&skill_md)
            .unwrap()
            .contains("Formal greeting")
    );

    // Removed: no longer offered.
    let out = run(home.cmd(), &["skills", "remove", "formal-greeting"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!skill_md.exists());
    let out = run(home.cmd(), &["skills", "remove", "weather"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("built-in"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_executable_skill_tool_is_called_in_a_turn() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("word_count", json!({"text": "one two three four"})),
        Reply::text("Four words."),
        Reply::tool_call("word_count", json!({"text": "hang"})),
        Reply::text("It took too long."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let dir = home.workspace().join("skills/counter");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.py"),
        "import json, sys, time\nreq = json.load(sys.stdin)\ntext = req['arguments']['text']\n\
         if text == 'hang':\n    time.sleep(30)\n\
         print(json.dumps({'result': {'words': len(text.split())}}))\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "counter", "version": "0.1.0", "description": "Counts words",
            "entry": "main.py", "timeout_seconds": 1,
            "tools": [{"name": "word_count", "description": "Count the words of a text",
                "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                               "required": ["text"]}}]})
        .to_string(),
    )
    .unwrap();
    let out = run(home.cmd(), &["skills", "show", "counter"]).await;
    assert!(
        out.stdout.contains("tool:        word_count"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["agent", "-m", "count: one two three four"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Four words.");
    let reqs = endpoint.requests();
    let offered = offered_tools(&reqs[0].body);
    assert!(offered.iter().any(|t| t == "word_count"), "{offered:?}");
    assert_eq!(tool_messages(&reqs[1].body), [r#"{"words":4}"#]);
    // A skill that hangs is a clear tool error, not a stuck turn.
    let out = run(home.cmd(), &["agent", "-m", "count: hang"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let err = tool_messages(&endpoint.requests()[3].body).join("\n");
    assert!(err.contains("did not answer within 1 s"), "{err}");
}

/// An executable skill `counter` in `dir` whose tool `reveal` prints the variable
/// PICO_SKILL_SECRET (its manifest declares it), or "(unset)".
fn secret_skill(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("main.py"),
        "import json, os, sys\njson.load(sys.stdin)\n\
         print(json.dumps({'result': os.environ.get('PICO_SKILL_SECRET', '(unset)')}))\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        json!({"name": "counter", "description": "Reveals a variable", "entry": "main.py",
            "tools": [{"name": "reveal", "description": "Reveal the variable",
                "parameters": {"type": "object", "properties": {}}}],
            "permissions": {"env": ["PICO_SKILL_SECRET"]}})
        .to_string(),
    )
    .unwrap();
}

/// picoclaw with PICO_SKILL_SECRET in its environment.
fn with_secret(home: &Home) -> Command {
    let mut cmd = home.cmd();
    cmd.env("PICO_SKILL_SECRET", "s3cret-value");
    cmd
}

/// What the skill tool `reveal` returns when the model calls it in a turn.
async fn revealed(home: &Home, endpoint: &ScriptedEndpoint) -> String {
    endpoint.push(Reply::tool_call("reveal", json!({})));
    endpoint.push(Reply::text("done"));
    let out = run(with_secret(home), &["agent", "-m", "reveal it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let reqs = endpoint.requests();
    tool_messages(&reqs.last().unwrap().body)
        .pop()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn skill_grants_hold_only_for_the_global_skill_and_files_they_were_made_for() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let global = home.path().join("skills/counter");
    secret_skill(&global);
    assert_eq!(
        revealed(&home, &endpoint).await,
        "(unset)",
        "not granted yet"
    );
    let out = run(home.cmd(), &["skills", "grant", "counter"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("say what to grant"), "{}", out.stderr);
    let out = run(home.cmd(), &["skills", "grant", "counter", "--network"]).await;
    assert_eq!(out.code, 1, "undeclared: {}", out.stderr);
    let out = run(
        home.cmd(),
        &["skills", "grant", "counter", "--env", "PICO_SKILL_SECRET"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let grant = &home.config()["tools"]["skills"]["permissions"]["counter"];
    assert_eq!(grant["sha256"].as_str().map(str::len), Some(64), "{grant}");
    assert_eq!(
        grant["dir"],
        global.canonicalize().unwrap().display().to_string()
    );
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains("granted   counter"), "{}", out.stdout);
    assert_eq!(revealed(&home, &endpoint).await, "s3cret-value");

    // Attack: the model writes a skill of the granted name into the workspace (here the very
    // same files). It runs instead of the global one, without the grant.
    let planted = home.workspace().join("skills/counter");
    secret_skill(&planted);
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(&planted.display().to_string())
            && out.stdout.contains("runs without the grant"),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["skills", "grant", "counter", "--declared"]).await;
    assert!(
        out.stdout.contains("gets no grant"),
        "the grant goes to the global skill: {}",
        out.stdout
    );
    std::fs::remove_dir_all(&planted).unwrap();

    // The global skill changes: it loses the grant, and `skills check` says which skill, what
    // changed and how to grant it again.
    let main = global.join("main.py");
    let mut text = std::fs::read_to_string(&main).unwrap();
    text.push_str("# a new version\n");
    std::fs::write(&main, text).unwrap();
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let again = "picoclaw skills grant counter --env PICO_SKILL_SECRET";
    assert!(
        out.stdout.contains("counter (global): main.py changed") && out.stdout.contains(again),
        "{}",
        out.stdout
    );
    let list = run(home.cmd(), &["skills", "list"]).await;
    assert!(
        list.stdout.contains("its grant does not apply"),
        "{}",
        list.stdout
    );
    let args: Vec<&str> = again.split(' ').skip(1).collect();
    let out = run(home.cmd(), &args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(revealed(&home, &endpoint).await, "s3cret-value");

    // A grant written before grants were bound (or by hand): read without a crash, applies to
    // nothing, and `skills check` says how to make it again.
    let mut config = home.config();
    config["tools"]["skills"]["permissions"]["counter"] = json!({"env": ["PICO_SKILL_SECRET"]});
    home.write_config(&config);
    assert_eq!(revealed(&home, &endpoint).await, "(unset)");
    let out = run(home.cmd(), &["skills", "check"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("before grants were bound") && out.stdout.contains(again),
        "{}",
        out.stdout
    );
    let out = run(home.cmd(), &["skills", "revoke", "counter"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(home.config()["tools"]["skills"]["permissions"]["counter"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn device_login_then_the_agent_sends_the_obtained_token() {
    let oauth = picoclaw_testkit::oauth::FakeOauth::start();
    oauth.pending_polls(1);
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Signed-in answer.")]).await;
    let home = Home::new();
    // No API key anywhere: only the login.
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_base": endpoint.base_url()}},
    }));
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "--provider",
            "openai",
            "--device",
            "--issuer",
            &oauth.issuer(),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("enter the code WDJB-MJHT"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("signed in to openai as ada@example.com"),
        "{}",
        out.stdout
    );
    let auth = home.path().join("auth.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let status = run(home.cmd(), &["auth", "status"]).await;
    assert!(
        status.stdout.contains("openai") && status.stdout.contains("ada@example.com"),
        "{}",
        status.stdout
    );
    assert!(
        !status.stdout.contains("at-1"),
        "tokens are masked: {}",
        status.stdout
    );

    let out = run(home.cmd(), &["agent", "-m", "hello"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Signed-in answer.");
    assert_eq!(
        endpoint.requests()[0].header("authorization"),
        Some("Bearer at-1")
    );
    // The Codex models use the same (ChatGPT) login through the Responses API, naming the
    // account the login belongs to.
    home.write_config(&json!({
        "agents": {"defaults": {"model": "codex/gpt-5-codex",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"codex": {"api_base": endpoint.base_url()}},
    }));
    endpoint.push(Reply::text("Codex answer."));
    let out = run(home.cmd(), &["agent", "-m", "hello codex"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Codex answer.");
    let codex = endpoint.requests().last().unwrap().clone();
    assert!(codex.path.ends_with("/responses"), "{}", codex.path);
    assert_eq!(codex.header("authorization"), Some("Bearer at-1"));
    assert_eq!(codex.header("chatgpt-account-id"), Some("acct-42"));

    // A file others can read is refused, with the fix.
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(home.cmd(), &["auth", "status"]).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = run(home.cmd(), &["auth", "logout", "--provider", "openai"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status = run(home.cmd(), &["auth", "status"]).await;
    assert!(status.stdout.contains("not signed in"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_kept_in_the_credential_store_instead_of_the_config() {
    let endpoint = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    endpoint.require_api_key("sk-from-store-0123456789");
    let home = Home::keyless(&endpoint, "deepseek/deepseek-chat", "deepseek");
    let mut cmd = home.cmd();
    cmd.write_stdin("sk-from-store-0123456789\n");
    let out = run(
        cmd,
        &["auth", "login", "--provider", "deepseek", "--api-key", "-"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    assert!(
        !std::fs::read_to_string(home.path().join("config.json"))
            .unwrap()
            .contains("sk-from-store"),
        "the key never went into config.json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_enc_encrypts_the_credential_store_with_a_passphrase() {
    const PASS: &str = "a long passphrase";
    let endpoint = ScriptedEndpoint::start_with([Reply::text("ok")]).await;
    endpoint.require_api_key("sk-sealed-0123456789");
    let home = Home::keyless(&endpoint, "deepseek/deepseek-chat", "deepseek");
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "-p",
            "deepseek",
            "--api-key",
            "sk-sealed-0123456789",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let with_pass = |mut cmd: Command| {
        cmd.env("PICOCLAW_AUTH_PASSPHRASE", PASS);
        cmd
    };
    let out = run(
        with_pass(home.cmd()),
        &["onboard", "--non-interactive", "--enc"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(home.path().join("auth.json")).unwrap();
    assert!(!text.contains("sk-sealed"), "{text}");
    // With the passphrase: works. Without: a clear message, not a crash or a key error.
    let out = run(with_pass(home.cmd()), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ok");
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("PICOCLAW_AUTH_PASSPHRASE"),
        "the failed request says why the stored key was not used: {}",
        out.stderr
    );
    let out = run(home.cmd(), &["auth", "status"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("encrypted") && out.stderr.contains("PICOCLAW_AUTH_PASSPHRASE"),
        "{}",
        out.stderr
    );
    let mut wrong = home.cmd();
    wrong.env("PICOCLAW_AUTH_PASSPHRASE", "not the one");
    let out = run(wrong, &["auth", "status"]).await;
    assert!(out.stderr.contains("wrong passphrase"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_with_a_setup_token_or_a_sign_in_sends_a_bearer() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("From a setup token."),
        Reply::text("From a sign-in."),
    ])
    .await;
    let home = Home::keyless(&endpoint, "anthropic/claude-test", "anthropic");
    let out = run(
        home.cmd(),
        &[
            "auth",
            "login",
            "-p",
            "anthropic",
            "--api-key",
            "sk-ant-oat01-setup-token",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "From a setup token.");
    let req = endpoint.requests()[0].clone();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-ant-oat01-setup-token")
    );
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(req.header("x-api-key"), None);

    // An OAuth sign-in (as `auth login --provider anthropic` stores it).
    let store = picoclaw_auth::AuthStore::new(home.path().join("auth.json"));
    let mut cred = picoclaw_auth::OauthCredential::new(
        "sk-ant-oat01-signed-in",
        "https://console.anthropic.com/v1/oauth/token",
        "client",
    );
    cred.expires_at = Some(4_000_000_000);
    store
        .put("anthropic", picoclaw_auth::Credential::Oauth(cred))
        .unwrap();
    let out = run(home.cmd(), &["agent", "-m", "hi again"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let req = endpoint.requests()[1].clone();
    assert_eq!(
        req.header("authorization"),
        Some("Bearer sk-ant-oat01-signed-in")
    );
    assert_eq!(req.header("anthropic-beta"), Some("oauth-2025-04-20"));
}

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

#[cfg(feature = "mcp")]
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
