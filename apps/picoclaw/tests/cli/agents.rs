//! Several agents from the terminal: `picoclaw agents`, `picoclaw agent --agent`, `status`.

use super::*;

fn two_agent_home(endpoint: &ScriptedEndpoint) -> Home {
    let home = Home::with_config(endpoint, json!({}));
    let mut config = home.config();
    config["agents"]["list"] = json!([
        {"id": "home", "default": true, "name": "Home"},
        {"id": "coder", "name": "Coding Agent", "model": "openai/coder-model",
         "tools": {"deny": ["web_*"]}, "skills": ["weather"],
         "subagents": {"allow_agents": ["home"]}}
    ]);
    config["bindings"] = json!([
        {"agent_id": "coder", "match": {"channel": "slack", "team_id": "T1"}}
    ]);
    home.write_config(&config);
    home
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_listed_shown_and_talked_to_apart() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "write_file",
            json!({"path": "mine.txt", "content": "coder's"}),
        )
        .when_request_contains("coder-model"),
        Reply::text("written").when_request_contains("coder-model"),
        Reply::text("what file?").when_request_contains("test-model"),
        Reply::text("still here").when_request_contains("coder-model"),
    ])
    .await;
    let home = two_agent_home(&endpoint);

    let list = run(home.cmd(), &["agents", "list"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let coder_ws = home.path().join("workspace-coder");
    assert!(
        list.stdout
            .contains("home \"Home\" (default): model openai/test-model"),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains(&format!(
            "coder \"Coding Agent\": model openai/coder-model, workspace {}, 1 binding",
            coder_ws.display()
        )),
        "{}",
        list.stdout
    );
    let show = run(home.cmd(), &["agents", "show", "coder"]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    for want in [
        "sessions:   agent:coder:<channel>:<chat>",
        "tools:      allow [all], deny [web_*]",
        "skills:     weather",
        "sub-agents: home",
        "bindings[0]: slack team T1",
    ] {
        assert!(show.stdout.contains(want), "{want}: {}", show.stdout);
    }
    let unknown = run(home.cmd(), &["agents", "show", "nobody"]).await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("known: home, coder"),
        "{}",
        unknown.stderr
    );

    // The coder agent: its model, its workspace.
    let out = run(home.cmd(), &["agent", "--agent", "coder", "-m", "write it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("written"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(coder_ws.join("mine.txt")).unwrap(),
        "coder's"
    );
    assert!(!home.workspace().join("mine.txt").exists());
    let first = &endpoint.requests()[0];
    assert_eq!(first.body["model"], "coder-model");
    let offered = offered_tools(&first.body);
    assert!(
        !offered.iter().any(|t| t.starts_with("web_")),
        "{offered:?}"
    );
    assert!(offered.contains(&"read_file".to_owned()), "{offered:?}");

    // Only the skills it lists are offered to it.
    let system = first.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("weather"), "{system}");
    assert!(!system.contains("summarize"), "{system}");

    // The default agent knows nothing of that conversation, and has every skill.
    let out = run(home.cmd(), &["agent", "-m", "what did you write?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let asked = endpoint.requests().last().unwrap().clone();
    let system = asked.body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(system.contains("summarize"), "{system}");
    assert_eq!(asked.body["model"], "test-model");
    assert!(!asked.message_texts().iter().any(|t| t == "write it"));
    // The coder's conversation is still its own after a restart of the CLI.
    let out = run(
        home.cmd(),
        &["agent", "--agent", "CODER", "-m", "still there?"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let asked = endpoint.requests().last().unwrap().clone();
    assert!(asked.message_texts().iter().any(|t| t == "write it"));
    let sessions = run(home.cmd(), &["sessions", "list"]).await;
    assert!(
        sessions.stdout.contains("agent:coder:cli:default"),
        "{}",
        sessions.stdout
    );

    // An agent that does not exist is a configuration error naming the known ones.
    let out = run(home.cmd(), &["agent", "--agent", "ghost", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no agent 'ghost' in agents.list; known: home, coder"),
        "{}",
        out.stderr
    );

    // status names the agents and what routes to each.
    let status = run(home.cmd(), &["status"]).await;
    assert!(
        status
            .stdout
            .contains("agent:      home (default) ← every chat no binding matches"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("agent:      coder ← bindings[0]: slack team T1"),
        "{}",
        status.stdout
    );
}

/// One agent's commands cannot read another agent's workspace, wherever it is (here outside
/// picoclaw's home, which is closed to commands anyway).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn an_agents_commands_cannot_read_another_agents_workspace() {
    let elsewhere = tempfile::tempdir().unwrap();
    let family_ws = elsewhere.path().join("family");
    std::fs::create_dir_all(&family_ws).unwrap();
    std::fs::write(family_ws.join("diary.txt"), "family secrets").unwrap();
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_calls(vec![
            (
                "exec",
                json!({"command": format!("cat {}/diary.txt; echo exit=$?", family_ws.display())}),
            ),
            (
                "read_file",
                json!({"path": family_ws.join("diary.txt").display().to_string()}),
            ),
        ]),
        Reply::text("tried"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["agents"]["list"] = json!([
        {"id": "family", "default": true, "workspace": family_ws},
        {"id": "coder"}
    ]);
    home.write_config(&config);
    let out = run(
        home.cmd(),
        &["agent", "--agent", "coder", "-m", "read their diary"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let results = tool_messages(&endpoint.requests()[1].body).join("\n");
    // The file tools are confined by construction, wherever Landlock is.
    assert!(!results.contains("family secrets"), "{results}");
    match picoclaw_tools::landlock_abi() {
        Ok(_) => assert!(results.contains("Permission denied"), "{results}"),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Landlock is required on CI: {why}")
        }
        Err(why) => eprintln!("Landlock unavailable ({why}): exec's isolation not checked here"),
    }
}
