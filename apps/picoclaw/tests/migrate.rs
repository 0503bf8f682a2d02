//! `picoclaw migrate` on a home laid out by the original PicoClaw: legacy `.json` sessions,
//! `.jsonl` sessions with `.meta.json` (truncated history and a summary), a broken file, memory
//! files, bootstrap files and `cron/jobs.json`. Every turn is kept, nothing is imported twice,
//! and the imported conversation carries on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use assert_cmd::Command;
use picoclaw_core::SessionKey;
use picoclaw_state::{CronStore, SessionStore, SqliteStore};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::path::Path;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// An original PicoClaw home, in its own formats.
fn original_home(dir: &Path) {
    write(
        &dir.join("config.json"),
        &json!({
            "agents": {"defaults": {"workspace": "~/.picoclaw/workspace", "model": "gpt-4o-mini",
                                    "max_tokens": 8192, "temperature": 0.7}},
            "providers": {"openai": {"api_key": "", "api_base": ""}},
            "channels": {"telegram": {"enabled": true, "token": "x", "allow_from": ["123456"]}}
        })
        .to_string(),
    );
    let ws = dir.join("workspace");
    // The first format: one JSON file per session, OpenAI-shaped messages.
    write(
        &ws.join("sessions/telegram_123456.json"),
        &json!({
            "key": "telegram:123456",
            "messages": [
                {"role": "user", "content": "What's in notes.txt?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\":\"notes.txt\"}"}}]},
                {"role": "tool", "content": "buy oat milk", "tool_call_id": "call_1"},
                {"role": "assistant", "content": "It says: buy oat milk."},
                {"role": "user", "content": "Thanks! Remind me tomorrow."},
                {"role": "assistant", "content": "Will do."}
            ],
            "created": "2026-10-01T09:00:00Z",
            "updated": "2026-10-01T09:05:00Z"
        })
        .to_string(),
    );
    // The JSONL format: the first two lines were truncated after summarising.
    let lines = [
        json!({"role": "user", "content": "Plan a trip to Porto"}),
        json!({"role": "assistant", "content": "Sure: three days?"}),
        json!({"role": "user", "content": "Yes, and check the weather"}),
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "t9", "type": "function", "name": "web_search", "arguments": {"query": "Porto weather"}}]}),
        json!({"role": "tool", "content": "Sunny, 21C", "tool_call_id": "t9"}),
        json!({"role": "assistant", "content": "Sunny and 21C all week."}),
    ];
    let mut jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
    jsonl.push_str("{\"role\": \"user\", \"content\": \"torn li"); // a crash mid-write
    write(&ws.join("sessions/discord_42.jsonl"), &jsonl);
    write(
        &ws.join("sessions/discord_42.meta.json"),
        &json!({"key": "discord:42", "summary": "The user is planning three days in Porto.",
                "skip": 2, "count": 6, "created_at": "2026-11-01T10:00:00Z",
                "updated_at": "2026-11-02T10:00:00Z"})
        .to_string(),
    );
    write(
        &ws.join("sessions/broken.json"),
        "{\"key\": \"x\", \"messages\": [",
    );
    write(
        &ws.join("memory/MEMORY.md"),
        "# Long-term Memory\n\n- The user is vegetarian\n",
    );
    write(
        &ws.join("memory/202611/20261102.md"),
        "# 2026-11-02\n\nBooked the Porto hotel\n",
    );
    write(&ws.join("USER.md"), "Name: Rui\n");
    write(
        &ws.join("cron/jobs.json"),
        &json!({"version": 1, "jobs": [{
            "id": "0123456789abcdef", "name": "oat milk", "enabled": true,
            "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Lisbon"},
            "payload": {"kind": "agent_turn", "message": "Remind me to buy oat milk",
                        "deliver": true, "channel": "telegram", "to": "123456"},
            "state": {"nextRunAtMs": 1764579600000u64},
            "createdAtMs": 1764000000000u64, "updatedAtMs": 1764000000000u64,
            "deleteAfterRun": false}]})
        .to_string(),
    );
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(home: &Path, args: &[&str]) -> Run {
    let out = Command::cargo_bin("picoclaw")
        .unwrap()
        .env("PICOCLAW_HOME", home)
        .env_remove("PICOCLAW_CONFIG")
        .env_remove("PICOCLAW_STATE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .timeout(std::time::Duration::from_secs(60))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_original_home_comes_over_whole_and_only_once() {
    let original = tempfile::tempdir().unwrap();
    original_home(original.path());
    let before = snapshot(original.path());
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Still sunny.")]).await;
    let home = tempfile::tempdir().unwrap();
    write(
        &home.path().join("config.json"),
        &json!({
            "agents": {"defaults": {"model": "openai/test-model",
                "workspace": home.path().join("workspace").display().to_string()}},
            "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}}
        })
        .to_string(),
    );
    let from = original.path().display().to_string();
    let h = home.path().to_owned();

    // The broken file is reported by name and makes the exit code 1; the rest comes over.
    let out = tokio::task::spawn_blocking({
        let (h, from) = (h.clone(), from.clone());
        move || run(&h, &["migrate", "--from", &from])
    })
    .await
    .unwrap();
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("sessions: 2 imported (12 messages), 0 already here"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("NOT imported:") && out.stdout.contains("broken.json"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("cron jobs: 1 imported"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("workspace: 3 file(s) copied"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("could not be imported"),
        "{}",
        out.stderr
    );

    // Every turn is there, in order, tool calls and results included.
    let store = SqliteStore::open(&home.path().join("state.db"))
        .await
        .unwrap();
    let telegram = store
        .load(&SessionKey::new("telegram:123456"), None)
        .await
        .unwrap();
    let texts: Vec<String> = telegram.messages.iter().map(|m| m.text()).collect();
    assert_eq!(
        texts,
        [
            "What's in notes.txt?",
            "",
            "buy oat milk",
            "It says: buy oat milk.",
            "Thanks! Remind me tomorrow.",
            "Will do."
        ]
    );
    assert_eq!(telegram.messages[1].tool_calls[0].name, "read_file");
    assert_eq!(telegram.messages[2].tool_call_id.as_deref(), Some("call_1"));
    assert_eq!(telegram.messages[2].name.as_deref(), Some("read_file"));
    // The JSONL session: the summary stands for the truncated lines, which stay stored.
    let discord = store
        .load(&SessionKey::new("discord:42"), None)
        .await
        .unwrap();
    assert_eq!(
        discord.summary.as_deref(),
        Some("The user is planning three days in Porto.")
    );
    assert_eq!(discord.messages.len(), 4);
    assert_eq!(discord.messages[0].text(), "Yes, and check the weather");
    assert_eq!(discord.messages[1].tool_calls[0].name, "web_search");
    let listed = store.list().await.unwrap();
    let counts: Vec<(String, u64)> = listed
        .iter()
        .map(|s| (s.key.to_string(), s.message_count))
        .collect();
    assert!(counts.contains(&("discord:42".into(), 6)), "{counts:?}");
    let jobs = store.list_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, "0123456789abcdef");
    assert_eq!(jobs[0].payload.to.as_deref(), Some("123456"));
    store.close().await;

    // Workspace files came along; memory is searchable.
    let ws = home.path().join("workspace");
    assert_eq!(
        std::fs::read_to_string(ws.join("USER.md")).unwrap(),
        "Name: Rui\n"
    );
    let out = run(&h, &["memory", "search", "Porto", "hotel"]);
    assert!(
        out.stdout
            .contains("memory/202611/20261102.md:3: Booked the Porto hotel"),
        "{}",
        out.stdout
    );

    // Again, with the broken file gone: nothing is imported twice.
    std::fs::remove_file(original.path().join("workspace/sessions/broken.json")).unwrap();
    let out = run(&h, &["migrate", "--from", &from]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("sessions: 0 imported (0 messages), 2 already here"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("cron jobs: 0 imported, 1 already here"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("workspace: 0 file(s) copied"),
        "{}",
        out.stdout
    );
    let out = run(&h, &["sessions", "list"]);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);

    // The source was not touched (the broken file was removed by the test itself).
    let mut after = snapshot(original.path());
    after.insert(
        "workspace/sessions/broken.json".into(),
        before["workspace/sessions/broken.json"].clone(),
    );
    assert_eq!(after, before, "migrate changed the original home");

    // The conversation carries on with its history and summary.
    let out = tokio::task::spawn_blocking({
        let h = h.clone();
        move || run(&h, &["agent", "-s", "discord:42", "-m", "And tomorrow?"])
    })
    .await
    .unwrap();
    assert_eq!(out.stdout.trim(), "Still sunny.", "{}", out.stderr);
    let request = &endpoint.requests()[0];
    let texts = request.message_texts();
    assert!(
        texts[0].contains("The user is planning three days in Porto."),
        "{}",
        texts[0]
    );
    assert!(
        texts.iter().any(|t| t == "Sunny and 21C all week."),
        "{texts:?}"
    );
    let roles: Vec<&str> = request.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
}

#[test]
fn a_folder_without_a_picoclaw_workspace_is_refused_clearly() {
    let empty = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        &["migrate", "--from", &empty.path().display().to_string()],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no PicoClaw workspace found"),
        "{}",
        out.stderr
    );
    let out = run(home.path(), &["migrate", "--from", "/nonexistent/picoclaw"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is not a folder"), "{}", out.stderr);
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
