//! The `minimal` build (`--no-default-features --features minimal`: the CLI, the
//! OpenAI-compatible provider, the file tools and SQLite) used as a small board's owner would:
//! a turn with a file tool, the session still there for the next process, and a clear word for
//! each part it leaves out. scripts/test.sh builds it before the tests and names it in
//! `PICOCLAW_MINIMAL_BIN`.

use super::*;
use std::path::PathBuf;

/// The minimal binary scripts/test.sh built; without it the test says how to build one.
fn minimal_bin() -> PathBuf {
    let bin = std::env::var_os("PICOCLAW_MINIMAL_BIN")
        .map(PathBuf::from)
        .expect(
            "PICOCLAW_MINIMAL_BIN is not set: these tests run the minimal build of picoclaw. Build \
         it and name it (scripts/test.sh does both): `cargo build -p picoclaw-cli \
         --no-default-features --features minimal && cp \"$CARGO_TARGET_DIR/debug/picoclaw\" \
         /tmp/picoclaw-minimal && export PICOCLAW_MINIMAL_BIN=/tmp/picoclaw-minimal`",
        );
    assert!(
        bin.is_file(),
        "PICOCLAW_MINIMAL_BIN={} is not a file: build it again (see scripts/test.sh)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn the_minimal_build_runs_a_turn_with_file_tools_and_keeps_the_session() {
    let bin = minimal_bin();
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "write_file",
            json!({"path": "notes.txt", "content": "water the basil"}),
        ),
        Reply::text("Noted."),
        Reply::text("You asked me to water the basil."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));

    let out = run(
        home.cmd_with(&bin),
        &["agent", "-s", "garden", "-m", "note: water the basil"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Noted.");
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("notes.txt")).unwrap(),
        "water the basil"
    );
    let offered = offered_tools(&endpoint.requests()[0].body);
    for tool in [
        "read_file",
        "write_file",
        "edit_file",
        "append_file",
        "list_dir",
    ] {
        assert!(
            offered.iter().any(|t| t == tool),
            "{tool} missing: {offered:?}"
        );
    }
    for tool in ["web_search", "web_fetch"] {
        assert!(
            !offered.iter().any(|t| t == tool),
            "{tool} offered: {offered:?}"
        );
    }

    // A new process: the conversation comes back from SQLite.
    let out = run(
        home.cmd_with(&bin),
        &["agent", "-s", "garden", "-m", "what did I ask?"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let history = endpoint.requests()[2].body["messages"].to_string();
    assert!(history.contains("note: water the basil"), "{history}");
    let out = run(home.cmd_with(&bin), &["sessions", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("garden") && l.contains("6 messages")),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_minimal_build_names_each_part_it_leaves_out() {
    let bin = minimal_bin();
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = Home::with_config(&endpoint, json!({}));

    let out = run(home.cmd_with(&bin), &["status"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("gateway:    not in this build"),
        "{}",
        out.stdout
    );

    let out = run(home.cmd_with(&bin), &["gateway"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unrecognized subcommand 'gateway'"),
        "{}",
        out.stderr
    );

    // A job can be added; that only a gateway runs it is said.
    let out = run(
        home.cmd_with(&bin),
        &["cron", "add", "-m", "water the basil", "--in", "1h"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("this build has no gateway"),
        "{}",
        out.stderr
    );

    // An Anthropic model: the feature to build with is named, nothing is sent.
    let mut config = home.config();
    config["agents"]["defaults"]["model"] = json!("anthropic/claude-test");
    config["providers"]["anthropic"] = json!({"api_key": KEY, "api_base": endpoint.base_url()});
    home.write_config(&config);
    let out = run(home.cmd_with(&bin), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("build with the cargo feature `anthropic` (of picoclaw-cli"),
        "{}",
        out.stderr
    );

    // Azure OpenAI without a key (Entra ID tokens): not in this build, and it says so.
    let mut config = home.config();
    config["agents"]["defaults"]["model"] = json!("azure/gpt-test");
    config["agents"]["defaults"]["max_retries"] = json!(0);
    config["providers"]["azure"] = json!({"api_base": endpoint.base_url().trim_end_matches("/v1")});
    home.write_config(&config);
    let out = run(home.cmd_with(&bin), &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("no Azure Entra ID sign-in (built without the `azure` feature)"),
        "{}",
        out.stderr
    );
    assert!(endpoint.requests().is_empty(), "a request was sent");
}
