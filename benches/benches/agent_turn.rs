//! Agent overhead per turn, excluding model time: an in-process scripted provider answers at
//! once, so what is measured is context building, the tool loop, and session persistence.
//!
//! Run with: cargo bench -p picoclaw-benches --bench agent_turn
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_core::{Agent, SessionKey};
use picoclaw_state::{InMemoryStore, SqliteStore, WorkspaceMemory};
use picoclaw_testkit::{Reply, ScriptedProvider, TempWorkspace};
use picoclaw_tools::{ExecConfig, Sandbox, builtin_tools};
use serde_json::json;
use std::sync::Arc;

fn main() {
    divan::main();
}

fn chrono_today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn agent_with(
    provider: Arc<ScriptedProvider>,
    ws: &TempWorkspace,
    sqlite: bool,
    rt: &tokio::runtime::Runtime,
) -> Agent {
    ws.write("AGENTS.md", "Be brief. Prefer tools over guessing.");
    ws.write("USER.md", "Name: Ada. Timezone: UTC.");
    let sandbox = Arc::new(Sandbox::new(ws.path()).expect("sandbox"));
    let mut builder = Agent::builder(provider)
        .model("bench-model")
        .workspace(ws.path())
        .tools(builtin_tools(sandbox, ExecConfig::default()))
        .streaming(false);
    if sqlite {
        // As the CLI wires it: SQLite for sessions and the memory index, with a small
        // MEMORY.md and today's daily note.
        ws.write(
            "memory/MEMORY.md",
            "# Long-term Memory\n\n- Ada likes green tea\n- Ada's sister is Ana\n",
        );
        let store = Arc::new(
            rt.block_on(SqliteStore::open(&ws.path().join("state.db")))
                .expect("sqlite"),
        );
        let memory = WorkspaceMemory::new(ws.path(), store.clone());
        rt.block_on(memory.add_daily_note("Ada asked about the weather", chrono_today()))
            .expect("daily note");
        builder = builder.session_store(store).memory(Arc::new(memory));
    } else {
        builder = builder.session_store(Arc::new(InMemoryStore::new()));
    }
    builder.build().expect("agent")
}

/// A plain turn: one model call, no tools, history kept in memory.
#[divan::bench]
fn plain_turn_memory_store(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    let agent = agent_with(
        Arc::new(ScriptedProvider::repeating(Reply::text("Hello!")).without_recording()),
        &ws,
        false,
        &rt,
    );
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        // A fresh session each time so history does not grow across iterations.
        let key = SessionKey::new(format!("bench:{n}"));
        rt.block_on(agent.chat(&key, "hi")).expect("turn")
    });
}

/// A plain turn persisted to SQLite (WAL), with long-term memory: the real CLI's path.
#[divan::bench]
fn plain_turn_sqlite_store(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    let agent = agent_with(
        Arc::new(ScriptedProvider::repeating(Reply::text("Hello!")).without_recording()),
        &ws,
        true,
        &rt,
    );
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        let key = SessionKey::new(format!("bench:{n}"));
        rt.block_on(agent.chat(&key, "hi")).expect("turn")
    });
}

/// A turn with one tool call (list_dir), i.e. two model calls, persisted to SQLite.
#[divan::bench]
fn tool_turn_sqlite_store(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    let provider = Arc::new(ScriptedProvider::new([]).without_recording());
    let agent = agent_with(provider.clone(), &ws, true, &rt);
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        provider.push(Reply::tool_call("list_dir", json!({"path": "."})));
        provider.push(Reply::text("There are two files."));
        let key = SessionKey::new(format!("bench:{n}"));
        rt.block_on(agent.chat(&key, "what is here?"))
            .expect("turn")
    });
}
