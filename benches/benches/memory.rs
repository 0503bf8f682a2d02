//! Long-term memory over 10 000 notes (2 000 facts in MEMORY.md, 8 000 daily notes in 100 daily
//! files), indexed in SQLite FTS5: a search, the per-turn sync when nothing changed, the whole
//! per-turn memory section (sync + search + daily notes within a 2 000-token budget), and
//! indexing everything from scratch.
//!
//! Run with: cargo bench -p picoclaw-benches --bench memory
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_state::{MemoryStore, SqliteStore, WorkspaceMemory};
use picoclaw_testkit::TempWorkspace;
use std::sync::Arc;

fn main() {
    divan::main();
}

const FACTS: usize = 2_000;
const DAYS: usize = 100;
const NOTES_PER_DAY: usize = 80;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Deterministic pseudo-random words (a 64-bit LCG over a 3 000-word made-up vocabulary).
struct Words(u64);

impl Words {
    fn next(&mut self) -> String {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let n = (self.0 >> 33) % 3_000;
        const SYL: &[&str] = &["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "vu"];
        let mut w = String::new();
        let mut k = n as usize;
        for _ in 0..3 {
            w.push_str(SYL[k % SYL.len()]);
            k /= SYL.len();
        }
        w
    }

    fn sentence(&mut self, n: usize) -> String {
        (0..n).map(|_| self.next()).collect::<Vec<_>>().join(" ")
    }
}

fn date(day: usize) -> picoclaw_state::NaiveDate {
    picoclaw_state::NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(day as u64)))
        .expect("date")
}

/// Writes the memory files of a well-used workspace.
fn write_workspace(ws: &TempWorkspace) {
    let mut words = Words(42);
    let mut long = String::from("# Long-term Memory\n\n");
    for _ in 0..FACTS {
        long.push_str(&format!("- {}\n", words.sentence(12)));
    }
    std::fs::create_dir_all(ws.path().join("memory")).expect("mkdir");
    std::fs::write(ws.path().join("memory/MEMORY.md"), long).expect("write");
    for day in 0..DAYS {
        let d = date(day);
        let path = ws.path().join(picoclaw_state::daily_source(d));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut text = format!("# {}\n\n", d.format("%Y-%m-%d"));
        for _ in 0..NOTES_PER_DAY {
            text.push_str(&words.sentence(10));
            text.push_str("\n\n");
        }
        std::fs::write(path, text).expect("write");
    }
}

struct Fixture {
    _ws: TempWorkspace,
    store: Arc<SqliteStore>,
    memory: WorkspaceMemory,
    query: String,
}

fn fixture(rt: &tokio::runtime::Runtime) -> Fixture {
    let ws = TempWorkspace::new();
    write_workspace(&ws);
    rt.block_on(async {
        let store = Arc::new(
            SqliteStore::open(&ws.path().join("state.db"))
                .await
                .expect("open"),
        );
        let memory = WorkspaceMemory::new(ws.path(), store.clone());
        memory.sync().await.expect("sync");
        let notes: u64 = store
            .sources()
            .await
            .expect("sources")
            .iter()
            .map(|s| s.notes)
            .sum();
        assert_eq!(notes as usize, FACTS + DAYS * NOTES_PER_DAY);
        // Three words that occur in the corpus.
        let mut words = Words(7);
        let query = format!("what about {} and {}?", words.next(), words.next());
        Fixture {
            _ws: ws,
            store,
            memory,
            query,
        }
    })
}

#[divan::bench(sample_count = 200)]
fn search_10k_notes(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let f = fixture(&rt);
    bencher.bench_local(|| {
        rt.block_on(f.store.search(&f.query, 10))
            .expect("search")
            .len()
    });
}

#[divan::bench(sample_count = 200)]
fn sync_unchanged_101_files(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let f = fixture(&rt);
    bencher.bench_local(|| rt.block_on(f.memory.sync()).expect("sync"));
}

#[divan::bench(sample_count = 100)]
fn turn_memory_section(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let f = fixture(&rt);
    let today = date(DAYS - 1);
    bencher.bench_local(|| {
        let section = rt
            .block_on(f.memory.context(&f.query, 2_000, today))
            .expect("context")
            .expect("some memory");
        assert!(section.len() <= 8_000 + 400);
        section.len()
    });
}

#[divan::bench(sample_count = 5)]
fn index_10k_notes_from_scratch(bencher: divan::Bencher<'_, '_>) {
    let rt = runtime();
    let ws = TempWorkspace::new();
    write_workspace(&ws);
    let mut n = 0;
    bencher.bench_local(|| {
        n += 1;
        rt.block_on(async {
            let store = Arc::new(
                SqliteStore::open(&ws.path().join(format!("state{n}.db")))
                    .await
                    .expect("open"),
            );
            WorkspaceMemory::new(ws.path(), store.clone())
                .sync()
                .await
                .expect("sync")
        })
    });
}
