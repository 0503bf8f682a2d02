//! Crash safety: a `picoclaw agent` process is killed with SIGKILL at pseudo-random moments of
//! many turns (while waiting for the model, while the answer streams, while a tool runs, around
//! the final write). After every kill the state file opens, passes SQLite's integrity checks,
//! every turn that finished is there exactly once, and no half-turn is visible.
//!
//! The kill points come from a seeded generator; `PICOCLAW_CRASH_SEED=<n>` replays a run and
//! `PICOCLAW_CRASH_TURNS=<n>` runs more turns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.
#![cfg(unix)]

use picoclaw_core::{ChatMessage, Role, SessionKey, SessionStore};
use picoclaw_state::SqliteStore;
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Replies for many turns: a tool call (a slow command or a file write), then a slowly streamed
/// answer. Whatever a killed process consumed, later turns still get well-formed replies.
fn script(turns: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for i in 0..turns * 2 {
        if i % 2 == 0 {
            replies.push(Reply::tool_call(
                "exec",
                json!({"command": "sleep 0.15; echo slept"}),
            ));
        } else {
            replies.push(Reply::tool_call(
                "write_file",
                json!({"path": format!("notes/{i}.txt"), "content": "x".repeat(2000)}),
            ));
        }
        replies.push(
            Reply::text("Done: the command ran and the note is written, all good here.")
                .paced(Duration::from_millis(12))
                .delayed(Duration::from_millis(20)),
        );
    }
    replies
}

/// Every stored turn is whole: a user message, then pairs of an assistant tool-call message and
/// the results of all its calls, then a final assistant answer. Returns the user texts in order.
fn whole_turns(messages: &[ChatMessage]) -> Result<Vec<String>, String> {
    let mut users = Vec::new();
    let mut i = 0;
    while i < messages.len() {
        let m = &messages[i];
        if m.role != Role::User {
            return Err(format!(
                "message {i} should start a turn but is {:?}",
                m.role
            ));
        }
        users.push(m.text());
        i += 1;
        loop {
            let Some(a) = messages.get(i) else {
                return Err(format!("turn '{}' has no answer", users.last().unwrap()));
            };
            if a.role != Role::Assistant {
                return Err(format!(
                    "message {i}: expected the assistant, got {:?}",
                    a.role
                ));
            }
            i += 1;
            if a.tool_calls.is_empty() {
                break;
            }
            for call in &a.tool_calls {
                let Some(r) = messages.get(i) else {
                    return Err(format!("tool call {} has no result", call.id));
                };
                if r.role != Role::Tool || r.tool_call_id.as_deref() != Some(call.id.as_str()) {
                    return Err(format!("message {i} is not the result of call {}", call.id));
                }
                i += 1;
            }
        }
    }
    Ok(users)
}

fn write_config(home: &Path, endpoint: &ScriptedEndpoint) {
    let config = json!({
        "agents": {"defaults": {
            "model": "openai/test-model",
            "workspace": home.join("workspace").display().to_string(),
            "max_tool_iterations": 4,
        }},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "tools": {"exec": {"enabled": true}},
    });
    std::fs::write(home.join("config.json"), config.to_string()).unwrap();
}

#[test]
fn sigkill_at_random_points_never_leaves_a_half_turn() {
    let turns: usize = std::env::var("PICOCLAW_CRASH_TURNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("PICOCLAW_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe);
    eprintln!("crash test: {turns} turns, seed {seed} (PICOCLAW_CRASH_SEED to replay)");
    let mut rng = picoclaw_testkit::SeededRng::new(seed | 1);
    let endpoint = ScriptedEndpoint::spawn(script(turns));
    let home = tempfile::tempdir().unwrap();
    write_config(home.path(), &endpoint);
    let db = home.path().join("state.db");
    let key = SessionKey::new("cli:crash");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut finished, mut killed) = (Vec::new(), Vec::new());
    for turn in 0..turns {
        let text = format!("turn {turn}");
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
            .env("PICOCLAW_HOME", home.path())
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .args(["agent", "-s", key.as_str(), "-m", &text])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Anywhere from before the first request to after the last write.
        let kill_at = Duration::from_millis(rng.next_u64() % 600);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() >= kill_at {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        match status {
            Some(status) => {
                assert!(status.success(), "turn {turn} failed on its own: {status}");
                finished.push(text.clone());
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                killed.push(text.clone());
            }
        }

        // After every run: the file is sound and holds whole turns only.
        let stored = rt.block_on(async {
            let store = SqliteStore::open(&db).await.unwrap();
            let problems = store.integrity_check().await.unwrap();
            assert!(problems.is_empty(), "after turn {turn}: {problems:?}");
            let session = store.load(&key, None).await.unwrap();
            store.close().await;
            session
        });
        let users = whole_turns(&stored.messages).unwrap_or_else(|e| {
            panic!("after turn {turn} (seed {seed}): half a turn is visible: {e}")
        });
        let mut seen = HashSet::new();
        for u in &users {
            assert!(seen.insert(u.clone()), "'{u}' stored twice");
        }
        for f in &finished {
            assert!(
                seen.contains(f),
                "finished '{f}' is missing after turn {turn}"
            );
        }
        // Stored turns are in the order they were sent.
        let order: Vec<usize> = users
            .iter()
            .map(|u| u.trim_start_matches("turn ").parse().unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
    let stored_turns = rt.block_on(async {
        let store = SqliteStore::open(&db).await.unwrap();
        let session = store.load(&key, None).await.unwrap();
        store.close().await;
        session
            .messages
            .iter()
            .filter(|m| m.role == Role::User)
            .count()
    });
    eprintln!(
        "crash test: {} turns finished, {} killed ({} of those after their commit)",
        finished.len(),
        killed.len(),
        stored_turns - finished.len()
    );
    assert!(
        !killed.is_empty(),
        "no run was killed: the kill points missed every turn"
    );
    assert!(
        !finished.is_empty(),
        "no run finished: the kill points were all too early"
    );
}
