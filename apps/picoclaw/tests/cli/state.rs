//! Sessions, usage, compaction, long-term memory and the state database (SQLite, PostgreSQL).

use super::*;

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
    assert!(
        !out.stdout.contains("REASONING"),
        "no reasoning tokens, no column: {}",
        out.stdout
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn usage_shows_reasoning_tokens_within_the_completion_and_prices_them_once() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Thought it over.")
            .with_usage(1_000, 300)
            .with_reasoning(200),
        Reply::text("Quick.").with_usage(200, 20),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["model_list"] = json!([{"model_name": "priced", "model": "openai/test-model",
                                   "price": {"input": 2.5, "output": 10.0}}]);
    home.write_config(&config);
    for (session, message) in [("a", "think"), ("b", "quick")] {
        let out = run(home.cmd(), &["agent", "-s", session, "-m", message]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
    }

    let out = run(home.cmd(), &["usage", "--by", "session"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cells =
        |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "SESSION",
            "CALLS",
            "PROMPT",
            "CACHED",
            "COMPLETION",
            "REASONING",
            "COST"
        ],
        "{}",
        out.stdout
    );
    // 1 000 prompt and 300 completion tokens (200 of them reasoning) cost
    // 1000 × 2.5/1M + 300 × 10/1M = 0.0055: the reasoning is priced as completion, once.
    assert_eq!(
        cells(lines[1]),
        ["a", "1", "1,000", "0", "300", "200", "0.0055"],
        "{}",
        out.stdout
    );
    assert_eq!(
        cells(lines[2]),
        ["b", "1", "200", "0", "20", "0", "0.0007"],
        "{}",
        out.stdout
    );
    assert_eq!(
        cells(lines[3]),
        ["TOTAL", "2", "1,200", "0", "320", "200", "0.0062"],
        "{}",
        out.stdout
    );
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
