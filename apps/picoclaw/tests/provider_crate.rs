//! The provider-crate example, used as a contributor would: examples/provider-crate copied out
//! of the repository with its path dependencies pointed at this checkout builds (offline, with
//! this checkout's Cargo.lock and toolchain, in the target directory these tests use, so the
//! dependencies already compiled are reused); its conformance tests pass; its binary — the full
//! CLI plus echo-upper — runs `onboard`, and with `"model": "echo-upper/x"` `agent -m hello`
//! prints `HELLO`, streamed: the answer reaches stdout in pieces, a pause apart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PACKAGE: &str = "picoclaw-echo-upper";

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the checkout's root")
}

/// Where these tests' dependencies were compiled: `CARGO_TARGET_DIR`, else the workspace's
/// `target`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root.join(p) } else { p })
        .unwrap_or_else(|| root.join("target"))
}

/// The cargo running these tests (`CARGO`), else the one on `PATH`; fails clearly without one.
fn cargo() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    match Command::new(&cargo).arg("--version").output() {
        Ok(out) if out.status.success() => cargo,
        Ok(out) => panic!(
            "this test builds examples/provider-crate with cargo, but `{cargo} --version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "this test builds examples/provider-crate with cargo, and cargo was not found \
             (`{cargo}`: {e}); install Rust with rustup, or set CARGO to cargo's path"
        ),
    }
}

/// Copies `from` into `to` (files and folders; no `target`, no `Cargo.lock`).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The example's binary with a temporary home and nothing from the environment that would
/// change the config or reach a vendor.
fn picoclaw(bin: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env("PICOCLAW_HOME", home).env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        let provider_var = name.ends_with("_API_KEY") || name.ends_with("_BASE_URL");
        if provider_var || name.starts_with("PICOCLAW_") && name != "PICOCLAW_HOME" {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[test]
fn the_provider_crate_example_builds_outside_the_workspace_and_answers_hello_streamed() {
    let started = Instant::now();
    let cargo = cargo();
    let root = checkout();
    let target = target_dir(&root);

    // 1. Copy the folder and point its path dependencies at this checkout.
    let tmp = tempfile::tempdir().unwrap();
    let krate = tmp.path().join("provider-crate");
    copy_tree(&root.join("examples/provider-crate"), &krate);
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let rewritten = manifest
        .replace("\"../../crates/", &format!("\"{}/crates/", root.display()))
        .replace("\"../../apps/", &format!("\"{}/apps/", root.display()));
    assert!(
        !rewritten.contains("\"../"),
        "examples/provider-crate/Cargo.toml has a relative path this test does not rewrite:\n{manifest}"
    );
    std::fs::write(krate.join("Cargo.toml"), rewritten).unwrap();
    // This checkout's versions (no registry needed) and toolchain (so nothing is rebuilt for
    // another compiler).
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    std::fs::copy(
        root.join("rust-toolchain.toml"),
        krate.join("rust-toolchain.toml"),
    )
    .unwrap();

    // 2. Its conformance tests, offline, in the target directory these tests were built in.
    let cargo_in_copy = |args: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(args)
            .arg("--offline")
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", &target);
        // What cargo sets for this test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`...) is
        // not the environment the workspace was built in: build scripts that rerun when such a
        // variable changes (ring's) would rebuild, and the workspace after them.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_BIN_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cmd.env_remove(name.as_ref());
            }
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"))
    };
    let tested = cargo_in_copy(&["test"]);
    assert!(
        tested.status.success(),
        "`cargo test --offline` in the copied provider crate failed\n{}",
        show(&tested)
    );
    let report = String::from_utf8_lossy(&tested.stdout);
    for test in [
        "passes_the_contract_suite",
        "answers_in_upper_case_streamed_in_two_or_more_deltas",
    ] {
        assert!(
            report.contains(&format!("{test} ... ok")),
            "{test} did not run\n{}",
            show(&tested)
        );
    }
    // `cargo test` built the package's binary too (integration tests may run it), with the
    // features the tests use: a separate `cargo build` would compile the CLI a second time.
    let bin = target.join("debug").join(PACKAGE);
    assert!(bin.is_file(), "no binary at {}", bin.display());
    let compiled = String::from_utf8_lossy(&tested.stderr)
        .lines()
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .map(|l| l.trim().to_owned())
        .collect::<Vec<_>>();
    eprintln!(
        "provider crate built and tested in {:?}; compiled {} crate(s): {compiled:?}",
        started.elapsed(),
        compiled.len()
    );

    // 3. onboard, as a new user would (non-interactive, as the other CLI tests run it).
    let home = tempfile::tempdir().unwrap();
    let onboard = picoclaw(&bin, home.path())
        .args(["onboard", "--non-interactive"])
        .output()
        .unwrap();
    assert!(onboard.status.success(), "onboard\n{}", show(&onboard));
    let config_file = home.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    config["agents"]["defaults"]["model"] = "echo-upper/x".into();
    // echo-upper's own setting: a pause between the pieces of its answer, to see them arrive.
    config["providers"]["echo-upper"] = serde_json::json!({"delay_ms": 400});
    std::fs::write(&config_file, serde_json::to_string_pretty(&config).unwrap()).unwrap();

    // 4. `agent -m hello`: reads of stdout as they happen.
    let mut child = picoclaw(&bin, home.path())
        .args(["agent", "-m", "hello"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut reads: Vec<(Instant, String)> = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => reads.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
            }
        }
        reads
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`agent -m hello` did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let reads = reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let printed: String = reads.iter().map(|(_, s)| s.as_str()).collect();
    assert!(
        status.success(),
        "agent -m hello: {status}\n--- stdout\n{printed}\n--- stderr\n{stderr}"
    );
    assert_eq!(printed.trim_end(), "HELLO", "stderr:\n{stderr}");
    // Streamed: the first piece was on stdout before the rest of the answer was written.
    let (first_at, first) = &reads[0];
    assert!(
        !first.is_empty() && "HELLO".starts_with(first.as_str()) && first.len() < "HELLO".len(),
        "the answer came in one piece, not streamed: {reads:?}"
    );
    let (last_at, _) = reads
        .iter()
        .find(|(_, s)| s.contains('O'))
        .expect("the end of the answer");
    assert!(
        last_at.duration_since(*first_at) >= Duration::from_millis(300),
        "the pieces did not arrive a pause apart: {reads:?}"
    );
    eprintln!("provider crate test took {:?}", started.elapsed());
}
