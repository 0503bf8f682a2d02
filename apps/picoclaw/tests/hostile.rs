//! The hostile-model suite (issue 17): the real `picoclaw` binary, a scripted model that does
//! what a prompt-injected model would — plants links, FIFOs and hard links with the tools it has,
//! then asks the file tools to read and write through them — and checks that nothing outside
//! the workspace was read or changed, and that the turn still ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::{Value, json};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

mod support;
use support::*;

/// Something outside the workspace that must stay as it is and never show up in a tool result.
struct Outside {
    dir: tempfile::TempDir,
}

const SECRET: &str = "s3cret-outside-the-workspace";

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bashrc"), SECRET).unwrap();
        std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn assert_untouched(&self) {
        for name in ["bashrc", "secret.txt"] {
            assert_eq!(
                std::fs::read_to_string(self.path(name)).unwrap(),
                SECRET,
                "{name} was changed"
            );
        }
    }
}

/// Runs one turn whose model first makes `calls` (all in one response), then answers "done";
/// returns the tool results the model got back and the first request's body.
async fn hostile_turn(home: &Home, endpoint: &ScriptedEndpoint) -> (Vec<String>, Value) {
    let out = run(home.cmd(), &["agent", "-m", "please summarise my notes"]).await;
    assert_eq!(out.code, 0, "the turn must end normally: {}", out.stderr);
    let requests = endpoint.requests();
    let last = requests.last().unwrap();
    (tool_messages(&last.body), requests[0].body.clone())
}

fn assert_no_leak(results: &[String], config_key: &str) {
    for r in results {
        assert!(!r.contains(SECRET), "a tool returned the outside file: {r}");
        assert!(
            !r.contains(config_key),
            "a tool returned the config's key: {r}"
        );
    }
}

/// Attack 1 of the issue and its variations, planted with `exec` where the sandbox lets a
/// command do it, the rest planted by the test (as a second process would).
#[tokio::test(flavor = "multi_thread")]
async fn file_tools_never_leave_the_workspace_through_links_fifos_or_hard_links() {
    let outside = Outside::new();
    let o = outside.dir.path().display().to_string();
    let plant = format!(
        "ln -s {o} h && ln -s h/nx/../bashrc w && ln -s h/secret.txt direct && \
         mkdir -p d/e && ln -s ../../h d/e/up && ln -s /proc/self/root/etc/hostname p && \
         ln -s dangling-nowhere/../../../x far && mkfifo f && echo ok"
    );
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("exec", json!({ "command": plant })),
        Reply::tool_calls(vec![
            ("write_file", json!({"path": "w", "content": "pwned"})),
            ("append_file", json!({"path": "w", "content": "pwned"})),
            (
                "edit_file",
                json!({"path": "w", "old_text": "s3cret", "new_text": "pwned"}),
            ),
            ("read_file", json!({"path": "w"})),
            ("read_file", json!({"path": "direct"})),
            ("read_file", json!({"path": "h/secret.txt"})),
            ("read_file", json!({"path": "d/e/up/secret.txt"})),
            ("read_file", json!({"path": "d/e/up/../bashrc"})),
            ("read_file", json!({"path": "p"})),
            ("read_file", json!({"path": "far"})),
            ("read_file", json!({"path": "f"})),
            ("append_file", json!({"path": "f", "content": "x"})),
            ("read_file", json!({"path": "hard"})),
            ("append_file", json!({"path": "hard", "content": "pwned"})),
            (
                "write_file",
                json!({"path": "h/new.txt", "content": "pwned"}),
            ),
            ("list_dir", json!({"path": "h"})),
            ("list_dir", json!({"path": "d/e/up"})),
            ("read_file", json!({"path": outside.path("secret.txt")})),
            ("read_file", json!({"path": "../config.json"})),
            ("read_file", json!({"path": "/proc/self/environ"})),
            (
                "write_file",
                json!({"path": "/proc/self/root/tmp/pwned", "content": "x"}),
            ),
        ]),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    // A hard link made by someone who can reach both names (exec cannot, under Landlock).
    std::fs::hard_link(outside.path("secret.txt"), home.workspace().join("hard")).unwrap();

    let (results, _) = hostile_turn(&home, &endpoint).await;
    assert_eq!(results.len(), 22, "{results:#?}");
    assert!(
        results[0].contains("ok"),
        "the links were planted: {}",
        results[0]
    );
    assert_no_leak(&results, KEY);
    // Every attack after the planting was refused, and said why.
    for (i, r) in results.iter().enumerate().skip(1) {
        let refused = r.contains("outside the workspace")
            || r.contains("symbolic link")
            || r.contains("FIFO")
            || r.contains("named pipe")
            || r.contains("no such file")
            || r.contains("not a directory");
        assert!(refused, "call {i} was not refused: {r}");
    }
    outside.assert_untouched();
    assert!(!outside.path("new.txt").exists());
    assert!(!Path::new("/tmp/pwned").exists());
    // The planted links are still links: nothing was written through or over them.
    assert!(home.workspace().join("w").is_symlink());
}

/// Attack 11: a link in place of each prompt file put its target into every request.
#[tokio::test(flavor = "multi_thread")]
async fn links_in_place_of_the_prompt_files_never_reach_the_model() {
    let outside = Outside::new();
    let endpoint = ScriptedEndpoint::start_with([Reply::text("done")]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let ws = home.workspace();
    std::fs::create_dir_all(ws.join("memory")).unwrap();
    let config = home.path().join("config.json");
    for name in ["AGENT.md", "SOUL.md", "USER.md", "IDENTITY.md"] {
        symlink(&config, ws.join(name)).unwrap();
    }
    symlink(outside.path("secret.txt"), ws.join("TOOLS.md")).unwrap();
    symlink(outside.path("bashrc"), ws.join("memory/MEMORY.md")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(ws.join("AGENTS.md"))
        .status()
        .unwrap();
    assert!(made.success());
    let (_, first) = hostile_turn(&home, &endpoint).await;
    let sent = first.to_string();
    assert!(
        !sent.contains(KEY),
        "the config's key was sent to the model"
    );
    assert!(
        !sent.contains(SECRET),
        "an outside file was sent to the model"
    );
    outside.assert_untouched();
}

/// A link flipped between a file inside and one outside while the model reads it 200 times in
/// one response (the reads run in parallel): never the outside file.
#[tokio::test(flavor = "multi_thread")]
async fn a_link_swapped_in_a_loop_never_lets_a_read_through() {
    let outside = Outside::new();
    let calls: Vec<(&str, Value)> = (0..200)
        .map(|_| ("read_file", json!({"path": "swap"})))
        .collect();
    let endpoint =
        ScriptedEndpoint::start_with([Reply::tool_calls(calls), Reply::text("done")]).await;
    let home = Home::with_config(&endpoint, json!({}));
    let ws = home.workspace();
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("inside.txt"), "inside").unwrap();
    symlink("inside.txt", ws.join("swap")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let (ws, secret) = (ws.clone(), outside.path("secret.txt"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let tmp = ws.join(format!(".swap{n}"));
                if n.is_multiple_of(2) {
                    symlink(&secret, &tmp).unwrap();
                } else {
                    symlink("inside.txt", &tmp).unwrap();
                }
                std::fs::rename(&tmp, ws.join("swap")).unwrap();
                n += 1;
            }
            n
        })
    };
    let (results, _) = hostile_turn(&home, &endpoint).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    assert!(flips > 10, "the link was flipped {flips} times");
    assert_eq!(results.len(), 200);
    assert_no_leak(&results, KEY);
    assert!(
        results
            .iter()
            .all(|r| r == "inside" || r.contains("outside the workspace")),
        "{:?}",
        results.iter().find(|r| *r != "inside")
    );
    outside.assert_untouched();
}

/// Every tool call and every refusal lands in the audit trail, secrets masked, and
/// `picoclaw audit` reads it back by conversation and time.
#[tokio::test(flavor = "multi_thread")]
async fn tool_calls_and_refusals_are_in_the_audit_trail() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_calls(vec![
            ("read_file", json!({"path": "../config.json"})),
            ("write_file", json!({"path": "notes.txt", "content": "hi"})),
            (
                "exec",
                json!({"command": "echo hi", "api_key": "sk-live-AUDITSECRET"}),
            ),
        ]),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["agent", "-m", "go"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let audit = run(home.cmd(), &["audit", "--session", "cli:default"]).await;
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    let text = audit.stdout;
    let line = |tool: &str| {
        text.lines()
            .find(|l| l.contains(tool))
            .unwrap_or_else(|| panic!("no {tool} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("read_file").contains("error"), "{text}");
    assert!(
        line("read_file").contains("outside the workspace"),
        "{text}"
    );
    assert!(line("write_file").contains("ok"), "{text}");
    assert!(line("exec").contains("***"), "{text}");
    assert!(
        !text.contains("AUDITSECRET"),
        "a secret reached the audit trail:\n{text}"
    );
    let files: Vec<_> = std::fs::read_dir(home.path().join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit."))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let raw = std::fs::read_to_string(home.path().join("logs").join(&files[0])).unwrap();
    assert!(!raw.contains("AUDITSECRET"));
    assert_eq!(raw.lines().count(), 3, "{raw}");
    // Filters.
    let other = run(home.cmd(), &["audit", "--session", "telegram:1"]).await;
    assert!(
        other.stdout.contains("No audit events match"),
        "{}",
        other.stdout
    );
    let recent = run(home.cmd(), &["audit", "--since", "1h", "--json"]).await;
    assert_eq!(recent.stdout.lines().count(), 3, "{}", recent.stdout);
    let future = run(home.cmd(), &["audit", "--since", "2999-01-01"]).await;
    assert!(future.stdout.contains("No audit events match"));
    let bad = run(home.cmd(), &["audit", "--since", "yesterday-ish"]).await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("--since"), "{}", bad.stderr);
}

/// Attack 3, without Landlock: `/proc/<pid>/environ` shows the environment picoclaw was started
/// with. picoclaw re-executes itself at start with the credentials moved out of that block: read
/// here (by the test, which may read it) while a turn runs, it holds none, and an unconfined
/// command finds none either, in that block or in its own environment.
#[tokio::test(flavor = "multi_thread")]
async fn commands_cannot_read_the_credentials_picoclaw_was_started_with() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "tr '\\0' '\\n' < /proc/$PPID/environ; echo ---; env"}),
        )
        .delayed(std::time::Duration::from_millis(1500)),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["tools"] = json!({"exec": {"landlock": false}});
    home.write_config(&config);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("picoclaw"))
        .env("PICOCLAW_HOME", home.path())
        .env_remove("PICOCLAW_CONFIG")
        .env("MY_SERVICE_TOKEN", "tok-HIDDEN-123")
        .env("DATABASE_URL", "postgres://app:pw-HIDDEN-456@db/x")
        .env("PLAIN_SETTING", "visible-789")
        .args(["agent", "-m", "show me"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the model "thinks", the process has re-executed and is in its turn.
    let started = std::time::Instant::now();
    while endpoint.requests().is_empty() {
        assert!(
            started.elapsed().as_secs() < 30,
            "no request reached the model"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let block = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let block = String::from_utf8_lossy(&block);
    assert!(block.contains("PLAIN_SETTING=visible-789"), "{block}");
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let result = tool_messages(&endpoint.requests()[1].body).join("\n");
    for secret in ["tok-HIDDEN-123", "pw-HIDDEN-456"] {
        assert!(
            !block.contains(secret),
            "{secret} in picoclaw's environment block"
        );
        assert!(
            !result.contains(secret),
            "{secret} reached the command: {result}"
        );
    }
    // The key still works inside picoclaw: the config came from the restored environment.
    assert!(result.contains("---"), "the command ran: {result}");
}
