//! What the containment costs: a file tool call opened beneath the workspace handle (the
//! `read_file` and `write_file` tools end to end, and the bare `openat2` read beside a plain
//! `std::fs::read` of the same file), and an `exec` of `true` with the Landlock policy and the
//! capability drop beside the same command with Landlock off (picoclaw's home in the owner's
//! home, as usual, and under the temporary folder, where the policy grants `/tmp` entry by
//! entry).
//!
//! Run with: cargo bench -p picoclaw-benches --bench containment
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::SessionKey;
use picoclaw_tools::{ExecConfig, Sandbox, ToolContext, ToolRegistry, builtin_tools};
use serde_json::json;
use std::sync::Arc;

fn main() {
    divan::main();
}

struct Fixture {
    _home: tempfile::TempDir,
    workspace: std::path::PathBuf,
    tools: ToolRegistry,
    runtime: tokio::runtime::Runtime,
}

/// picoclaw's home (the closed folder) in the temporary folder, as in tests and some
/// containers (the policy then grants `/tmp` entry by entry), or in the owner's home as usual.
fn fixture_in(landlock: bool, home_in_tmp: bool) -> Fixture {
    let home = if home_in_tmp {
        tempfile::tempdir().expect("home")
    } else {
        let base = std::path::PathBuf::from(std::env::var_os("HOME").expect("HOME"))
            .join(".cache/picoclaw-bench");
        std::fs::create_dir_all(&base).expect("base");
        tempfile::tempdir_in(base).expect("home")
    };
    let workspace = home.path().join("workspace");
    let sandbox = Arc::new(Sandbox::new(&workspace).expect("sandbox"));
    std::fs::create_dir_all(workspace.join("notes")).expect("notes");
    std::fs::write(workspace.join("notes/a.md"), "x".repeat(4096)).expect("file");
    let mut exec = ExecConfig::default();
    exec.landlock = landlock;
    exec.closed_paths = vec![home.path().to_path_buf()];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    Fixture {
        tools: builtin_tools(sandbox, exec),
        workspace,
        _home: home,
        runtime,
    }
}

fn fixture(landlock: bool) -> Fixture {
    fixture_in(landlock, false)
}

fn call(f: &Fixture, tool: &str, args: serde_json::Value) {
    let ctx = ToolContext::new(SessionKey::new("bench"));
    let out = f.runtime.block_on(f.tools.call(&ctx, tool, args));
    assert!(!out.is_error, "{}", out.content);
}

#[divan::bench]
fn read_file_tool(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(true);
    bencher.bench_local(|| call(&f, "read_file", json!({"path": "notes/a.md"})));
}

#[divan::bench]
fn write_file_tool(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(true);
    bencher.bench_local(|| {
        call(
            &f,
            "write_file",
            json!({"path": "notes/b.md", "content": "hello"}),
        )
    });
}

#[divan::bench]
fn open_beneath_the_handle(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(true);
    let dir = picoclaw_fs::WorkspaceDir::open(&f.workspace).expect("dir");
    bencher.bench_local(|| dir.read("notes/a.md", 1 << 20).expect("read"));
}

#[divan::bench]
fn plain_std_fs_read(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(true);
    let path = f.workspace.join("notes/a.md");
    bencher.bench_local(|| std::fs::read(&path).expect("read"));
}

#[divan::bench(sample_count = 30)]
fn exec_true_confined(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(true);
    bencher.bench_local(|| call(&f, "exec", json!({"command": "true"})));
}

#[divan::bench(sample_count = 30)]
fn exec_true_confined_home_under_tmp(bencher: divan::Bencher<'_, '_>) {
    let f = fixture_in(true, true);
    bencher.bench_local(|| call(&f, "exec", json!({"command": "true"})));
}

#[divan::bench(sample_count = 30)]
fn exec_true_landlock_off(bencher: divan::Bencher<'_, '_>) {
    let f = fixture(false);
    bencher.bench_local(|| call(&f, "exec", json!({"command": "true"})));
}
