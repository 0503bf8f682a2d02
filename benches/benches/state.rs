//! Session store (SQLite, WAL) with 10, 1 000 and 100 000 stored turns: appending one turn, and
//! loading the newest 400 messages (what a turn's context reads). Loading must not grow with the
//! number of stored turns.
//!
//! Run with: cargo bench -p picoclaw-benches --bench state
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::{ChatMessage, SessionKey};
use picoclaw_state::{SessionStore, SqliteStore};
use picoclaw_testkit::TempWorkspace;

fn main() {
    divan::main();
}

const SIZES: &[usize] = &[10, 1_000, 100_000];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn turn(i: usize) -> [ChatMessage; 2] {
    [
        ChatMessage::user(format!(
            "question number {i}: what is in the workspace today?"
        )),
        ChatMessage::assistant(format!(
            "answer number {i}: two files, notes.md and todo.md."
        )),
    ]
}

/// A store holding `turns` turns in one session (built once per size).
fn filled(rt: &tokio::runtime::Runtime, ws: &TempWorkspace, turns: usize) -> SqliteStore {
    rt.block_on(async {
        let store = SqliteStore::open(&ws.path().join("state.db"))
            .await
            .expect("open");
        let key = SessionKey::new("bench");
        // Batches of 1 000 turns per transaction keep the setup quick.
        let mut batch = Vec::with_capacity(2_000);
        for i in 0..turns {
            batch.extend(turn(i));
            if batch.len() >= 2_000 {
                store.append(&key, &batch).await.expect("append");
                batch.clear();
            }
        }
        if !batch.is_empty() {
            store.append(&key, &batch).await.expect("append");
        }
        store
    })
}

#[divan::bench(args = SIZES, sample_count = 50)]
fn append_one_turn(bencher: divan::Bencher<'_, '_>, turns: usize) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    let store = filled(&rt, &ws, turns);
    let key = SessionKey::new("bench");
    let mut i = turns;
    bencher.bench_local(|| {
        i += 1;
        rt.block_on(store.append(&key, &turn(i))).expect("append")
    });
}

#[divan::bench(args = SIZES, sample_count = 50)]
fn load_context_window(bencher: divan::Bencher<'_, '_>, turns: usize) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    let store = filled(&rt, &ws, turns);
    let key = SessionKey::new("bench");
    bencher.bench_local(|| {
        let s = rt.block_on(store.load(&key, Some(400))).expect("load");
        assert_eq!(s.messages.len(), (turns * 2).min(400));
        s
    });
}
