//! The built-in tools end to end on a real temporary workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::SessionKey;
use picoclaw_tools::{
    ExecConfig, ExecTool, Sandbox, ToolContext, ToolOutput, ToolRegistry, builtin_tools,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A workspace inside a picoclaw home, as in real life (`<home>/workspace`); the home is under
/// the temporary folder, so the Landlock policy must carve it out of `/tmp`.
struct Ws {
    home: tempfile::TempDir,
    dir: WsDir,
    tools: ToolRegistry,
}

struct WsDir(std::path::PathBuf);

impl WsDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Ws {
    fn new() -> Self {
        Self::with_exec(ExecConfig::default())
    }

    fn with_exec(mut exec: ExecConfig) -> Self {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("workspace");
        let sandbox = Arc::new(Sandbox::new(&dir).unwrap());
        // What the gateway passes: picoclaw's home is closed to commands.
        exec.closed_paths.push(home.path().to_path_buf());
        Self {
            tools: builtin_tools(sandbox, exec),
            dir: WsDir(dir.canonicalize().unwrap()),
            home,
        }
    }

    /// A folder beside the workspace in picoclaw's home (config, keys, state live there): the
    /// place a hostile command must not reach, wherever the target dir or the home is.
    fn outside(&self, name: &str) -> std::path::PathBuf {
        let dir = self.home.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn call(&self, name: &str, args: Value) -> ToolOutput {
        let ctx = ToolContext::new(SessionKey::new("test"));
        self.tools.call(&ctx, name, args).await
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
}

#[tokio::test]
async fn write_read_append_edit_list() {
    let ws = Ws::new();
    let out = ws
        .call(
            "write_file",
            json!({"path": "notes/a.txt", "content": "hello\nworld\n"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert!(out.content.contains("12 bytes"), "{}", out.content);
    assert_eq!(
        ws.call("read_file", json!({"path": "notes/a.txt"}))
            .await
            .content,
        "hello\nworld\n"
    );

    let out = ws
        .call(
            "append_file",
            json!({"path": "notes/a.txt", "content": "again\n"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    let out = ws
        .call(
            "edit_file",
            json!({"path": "notes/a.txt", "old_text": "world", "new_text": "crab"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert_eq!(
        std::fs::read_to_string(ws.path("notes/a.txt")).unwrap(),
        "hello\ncrab\nagain\n"
    );

    let out = ws
        .call(
            "append_file",
            json!({"path": "new/dir/log.md", "content": "x"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);

    let out = ws.call("list_dir", json!({})).await;
    assert_eq!(out.content, "DIR:  new\nDIR:  notes\n");
    let out = ws.call("list_dir", json!({"path": "notes"})).await;
    assert_eq!(out.content, "FILE: a.txt\n");
    // No temp files left behind by atomic writes.
    assert_eq!(std::fs::read_dir(ws.path("notes")).unwrap().count(), 1);
}

#[tokio::test]
async fn edit_file_is_exact_and_unambiguous() {
    let ws = Ws::new();
    std::fs::write(ws.path("f.txt"), "a = 1\nb = 1\n").unwrap();
    let out = ws
        .call(
            "edit_file",
            json!({"path": "f.txt", "old_text": "= 1", "new_text": "= 2"}),
        )
        .await;
    assert!(out.is_error);
    assert!(out.content.contains("appears 2 times"), "{}", out.content);
    let out = ws
        .call(
            "edit_file",
            json!({"path": "f.txt", "old_text": "c = 1", "new_text": "x"}),
        )
        .await;
    assert!(out.is_error);
    assert!(
        out.content.contains("not found") && out.content.contains("read_file"),
        "{}",
        out.content
    );
    assert_eq!(
        std::fs::read_to_string(ws.path("f.txt")).unwrap(),
        "a = 1\nb = 1\n",
        "unchanged"
    );
    let out = ws
        .call(
            "edit_file",
            json!({"path": "missing.txt", "old_text": "a", "new_text": "b"}),
        )
        .await;
    assert!(
        out.is_error && out.content.contains("no such file"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn read_file_pages_large_files_and_refuses_binary() {
    let ws = Ws::new();
    let big = "0123456789".repeat(10_000); // 100 000 bytes
    std::fs::write(ws.path("big.txt"), &big).unwrap();
    let out = ws.call("read_file", json!({"path": "big.txt"})).await;
    assert!(!out.is_error);
    assert!(
        out.content.contains("showing bytes 0-65535"),
        "{}",
        &out.content[..100]
    );
    assert!(out.content.contains("offset=65536 to continue"));
    let out = ws
        .call(
            "read_file",
            json!({"path": "big.txt", "offset": 99_990, "length": 100}),
        )
        .await;
    assert!(out.content.ends_with("0123456789"), "{}", out.content);
    assert!(!out.content.contains("to continue"));
    let out = ws
        .call("read_file", json!({"path": "big.txt", "offset": 200_000}))
        .await;
    assert!(out.is_error && out.content.contains("past the end"));

    // A multi-byte character cut by length is not split.
    std::fs::write(ws.path("u.txt"), "héllo").unwrap();
    let out = ws
        .call("read_file", json!({"path": "u.txt", "length": 2}))
        .await;
    assert!(
        out.content.contains('h') && !out.content.contains('\u{FFFD}'),
        "{}",
        out.content
    );

    std::fs::write(ws.path("bin.dat"), [0u8, 159, 146, 150]).unwrap();
    let out = ws.call("read_file", json!({"path": "bin.dat"})).await;
    assert!(
        out.is_error && out.content.contains("binary"),
        "{}",
        out.content
    );
    let out = ws.call("read_file", json!({"path": "."})).await;
    assert!(out.is_error && out.content.contains("list_dir"));
}

#[tokio::test]
async fn bad_arguments_name_the_problem() {
    let ws = Ws::new();
    let out = ws.call("write_file", json!({"path": "x.txt"})).await;
    assert!(out.is_error);
    assert!(
        out.content.contains("write_file") && out.content.contains("content"),
        "{}",
        out.content
    );
    let out = ws.call("read_file", json!({"path": 42})).await;
    assert!(
        out.is_error && out.content.contains("read_file"),
        "{}",
        out.content
    );
    let out = ws.call("exec", json!({})).await;
    assert!(
        out.is_error && out.content.contains("command"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn hostile_paths_are_refused_by_every_file_tool() {
    let ws = Ws::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "s3cret").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path("escape")).unwrap();
    // A hard link: the same file under a name inside the workspace (both temp folders are on one
    // file system, as a hard link needs).
    std::fs::hard_link(outside.path().join("secret.txt"), ws.path("linked.txt")).unwrap();
    // A symlinked parent folder, reached through a real folder of the workspace.
    std::fs::create_dir(ws.path("docs")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path("docs/shared")).unwrap();
    let target = outside.path().join("secret.txt").display().to_string();
    for path in [
        "../secret.txt",
        "docs/../../secret.txt",
        target.as_str(),
        "escape/secret.txt",
        "docs/shared/secret.txt",
        "./docs/shared/../shared/secret.txt",
        "linked.txt",
        "/etc/passwd",
    ] {
        for (tool, args) in [
            ("read_file", json!({"path": path})),
            ("write_file", json!({"path": path, "content": "pwned"})),
            ("append_file", json!({"path": path, "content": "pwned"})),
            (
                "edit_file",
                json!({"path": path, "old_text": "s3cret", "new_text": "pwned"}),
            ),
            ("list_dir", json!({"path": path})),
        ] {
            let out = ws.call(tool, args).await;
            assert!(out.is_error, "{tool} {path}: {}", out.content);
            // A hard-linked file is a file: listing it fails for that reason.
            let why = if tool == "list_dir" && path == "linked.txt" {
                "not a directory"
            } else {
                "outside the workspace"
            };
            assert!(out.content.contains(why), "{tool} {path}: {}", out.content);
        }
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "s3cret"
    );
}

#[tokio::test]
async fn nul_bytes_and_overlong_paths_are_refused_with_a_reason() {
    let ws = Ws::new();
    let long = "a/".repeat(2100);
    for (path, reason) in [
        ("notes\0.txt", "NUL byte"),
        ("\0", "NUL byte"),
        (long.as_str(), "the limit is 4096 bytes"),
    ] {
        for (tool, args) in [
            ("read_file", json!({"path": path})),
            ("write_file", json!({"path": path, "content": "x"})),
            ("list_dir", json!({"path": path})),
        ] {
            let out = ws.call(tool, args).await;
            assert!(out.is_error, "{tool}: {}", out.content);
            assert!(out.content.contains(reason), "{tool}: {}", out.content);
        }
    }
    // One over-long name inside an acceptable path is the file system's error, named as such.
    let out = ws
        .call(
            "write_file",
            json!({"path": "x".repeat(300), "content": "x"}),
        )
        .await;
    assert!(out.is_error, "{}", out.content);
    assert!(std::fs::read_dir(ws.dir.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn hard_links_made_inside_the_workspace_are_refused_too() {
    // Even a hard link whose other name is inside: the tool cannot tell where the names are.
    let ws = Ws::new();
    std::fs::write(ws.path("a.txt"), "one").unwrap();
    std::fs::hard_link(ws.path("a.txt"), ws.path("b.txt")).unwrap();
    let out = ws.call("read_file", json!({"path": "b.txt"})).await;
    assert!(
        out.is_error && out.content.contains("hard link"),
        "{}",
        out.content
    );
    // Once the second name is gone, the file is an ordinary file again.
    std::fs::remove_file(ws.path("b.txt")).unwrap();
    let out = ws.call("read_file", json!({"path": "a.txt"})).await;
    assert!(!out.is_error, "{}", out.content);
}

#[tokio::test]
async fn exec_runs_in_the_workspace() {
    let ws = Ws::new();
    std::fs::create_dir(ws.path("sub")).unwrap();
    let out = ws
        .call("exec", json!({"command": "pwd; echo err >&2"}))
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert!(
        out.content.starts_with(
            &std::fs::canonicalize(ws.dir.path())
                .unwrap()
                .display()
                .to_string()
        )
    );
    assert!(out.content.contains("[stderr]\nerr"), "{}", out.content);
    let out = ws
        .call("exec", json!({"command": "pwd", "working_dir": "sub"}))
        .await;
    assert!(out.content.trim_end().ends_with("/sub"), "{}", out.content);
    let out = ws.call("exec", json!({"command": "exit 3"})).await;
    assert!(
        out.is_error && out.content.contains("exit code 3"),
        "{}",
        out.content
    );
    let out = ws
        .call("exec", json!({"command": "pwd", "working_dir": "../"}))
        .await;
    assert!(
        out.is_error && out.content.contains("outside the workspace"),
        "{}",
        out.content
    );
}

#[tokio::test]
async fn exec_refuses_denied_commands_without_running_them() {
    let ws = Ws::new();
    let out = ws
        .call("exec", json!({"command": "touch ran.txt; rm -rf /"}))
        .await;
    assert!(out.is_error);
    assert!(
        out.content.contains("refused") && out.content.contains("recursive delete"),
        "{}",
        out.content
    );
    assert!(
        !ws.path("ran.txt").exists(),
        "nothing of a refused command runs"
    );
}

#[tokio::test]
async fn exec_caps_output() {
    let ws = Ws::with_exec({
        let mut c = ExecConfig::default();
        c.max_output_bytes = 1000;
        c
    });
    let out = ws
        .call(
            "exec",
            json!({"command": "head -c 50000 /dev/zero | tr '\\0' a"}),
        )
        .await;
    assert!(!out.is_error);
    assert!(
        out.content.contains("49000 more bytes cut"),
        "{}",
        &out.content[out.content.len() - 60..]
    );
    assert!(out.content.len() < 1100);
}

/// Waits (up to 1 s) for the process whose pid the command wrote to `pid_file` to be gone.
async fn assert_dies(pid_file: &std::path::Path, what: &str) {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for _ in 0..50 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {pid} survived");
}

fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split(' ').nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_process_group() {
    let ws = Ws::new();
    let started = std::time::Instant::now();
    let out = ws
        .call(
            "exec",
            json!({"command": "sleep 30 & echo $! > child.pid; sleep 30", "timeout": 1}),
        )
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out.is_error && out.content.contains("timed out after 1s"),
        "{}",
        out.content
    );
    assert_dies(
        &ws.path("child.pid"),
        "background child (after the timeout)",
    )
    .await;
}

/// A grandchild that left the process group with `setsid` dies with a cancelled call too.
#[tokio::test]
async fn a_cancelled_exec_kills_a_grandchild_that_left_the_group() {
    let ws = Ws::new();
    let tools = &ws.tools;
    let ctx = ToolContext::new(SessionKey::new("t"));
    let fut = tools.call(
        &ctx,
        "exec",
        json!({"command": "setsid sh -c 'echo $$ > gc.pid; exec sleep 30' & sleep 30"}),
    );
    let _ = tokio::time::timeout(Duration::from_millis(700), fut).await;
    assert_dies(
        &ws.path("gc.pid"),
        "the setsid grandchild (after the cancel)",
    )
    .await;
}

#[tokio::test]
async fn a_cancelled_exec_kills_its_processes() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Arc::new(Sandbox::new(dir.path()).unwrap());
    let tool = ExecTool::new(sandbox, ExecConfig::default());
    let ctx = ToolContext::new(SessionKey::new("t"));
    let fut = picoclaw_tools::Tool::call(
        &tool,
        &ctx,
        json!({"command": "echo $$ > sh.pid; sleep 30"}),
    );
    // Drop the call mid-way, as a cancelled turn does.
    let _ = tokio::time::timeout(Duration::from_millis(500), fut).await;
    assert_dies(&dir.path().join("sh.pid"), "the shell (after the cancel)").await;
}

#[test]
fn default_tool_specs_are_small() {
    let dir = tempfile::tempdir().unwrap();
    let tools = builtin_tools(
        Arc::new(Sandbox::new(dir.path()).unwrap()),
        ExecConfig::default(),
    );
    let names: Vec<&str> = tools.names().collect();
    assert_eq!(
        names,
        [
            "append_file",
            "edit_file",
            "exec",
            "list_dir",
            "read_file",
            "write_file"
        ]
    );
    let size = serde_json::to_string(&tools.specs()).unwrap().len();
    assert!(size < 3 * 1024, "tool specs are {size} bytes");
    let mut off = ExecConfig::default();
    off.enabled = false;
    let tools = builtin_tools(Arc::new(Sandbox::new(dir.path()).unwrap()), off);
    assert!(tools.get("exec").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_to_one_file_never_corrupt_it() {
    let ws = Arc::new(Ws::new());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let ws = Arc::clone(&ws);
        tasks.push(tokio::spawn(async move {
            let content = format!("writer {i}\n").repeat(1000);
            ws.call(
                "write_file",
                json!({"path": "same.txt", "content": content}),
            )
            .await
        }));
    }
    for t in tasks {
        let out = t.await.unwrap();
        assert!(!out.is_error, "{}", out.content);
    }
    let text = std::fs::read_to_string(ws.path("same.txt")).unwrap();
    let first = text.lines().next().unwrap().to_owned();
    assert!(
        text.lines().all(|l| l == first),
        "one writer's whole content, not a mix"
    );
    assert_eq!(
        std::fs::read_dir(ws.dir.path()).unwrap().count(),
        1,
        "no temp files left"
    );
}

/// The kernel's Landlock ABI. With `CI=true` a missing Landlock fails the test instead of
/// quietly testing the unconfined fallback.
#[cfg(target_os = "linux")]
fn landlock_required() -> Result<i32, String> {
    let abi = picoclaw_tools::landlock_abi();
    if let Err(why) = &abi
        && std::env::var("CI").as_deref() == Ok("true")
    {
        panic!("CI=true and Landlock is unavailable ({why}): the enforcing branch must run in CI");
    }
    abi
}

/// Issue 17, attack 3: Landlock limited only writes, so `cat ~/.picoclaw/config.json` printed
/// the keys, and as root `/proc/$PPID/environ` printed picoclaw's environment.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn exec_cannot_read_picoclaws_home_its_environment_or_signal_it() {
    let abi = landlock_required();
    let ws = Ws::new();
    let config = ws.home.path().join("config.json");
    std::fs::write(&config, "sk-live-SECRET").unwrap();
    let state = ws.outside("logs").join("audit.jsonl");
    std::fs::write(&state, "sk-live-SECRET").unwrap();
    let mut refused = vec![
        format!("cat {}", config.display()),
        "cat ../config.json".to_owned(),
        format!("cat {}", state.display()),
        format!("ls {}", ws.home.path().display()),
        "tr '\\0' '\\n' < /proc/$PPID/environ".to_owned(),
        "head -c 16 /proc/$PPID/mem".to_owned(),
        "ls /proc/$PPID/root/".to_owned(),
    ];
    if let Ok(home) = std::env::var("HOME") {
        refused.push(format!("ls -a {home}"));
    }
    if abi.as_ref().is_ok_and(|v| *v >= 6) {
        // Scopes: no signal to a process outside the sandbox.
        refused.push("kill -0 $PPID".to_owned());
    }
    for command in &refused {
        let out = ws.call("exec", json!({ "command": command })).await;
        match &abi {
            Ok(_) => {
                assert!(out.is_error, "{command}: {}", out.content);
                assert!(
                    !out.content.contains("SECRET"),
                    "{command}: {}",
                    out.content
                );
            }
            Err(why) => eprintln!("no Landlock here ({why}); {command} not checked"),
        }
    }
    // The workspace and the system stay readable.
    std::fs::write(ws.path("mine.txt"), "mine").unwrap();
    let out = ws
        .call(
            "exec",
            json!({"command": "cat mine.txt && head -c 4 /etc/passwd"}),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    // No capabilities, even as root.
    let out = ws
        .call(
            "exec",
            json!({"command": "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status"}),
        )
        .await;
    for line in out.content.lines() {
        assert!(line.ends_with("0000000000000000"), "{}", out.content);
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn exec_under_landlock_writes_only_in_the_workspace_and_temp() {
    let abi = landlock_required();
    let ws = Ws::new();
    let outside = ws.outside("landlock");
    let escape = outside.join("pwned.txt");
    // Everything the deny-list cannot see: a cd, a variable, a script written first.
    std::fs::write(
        ws.path("run.sh"),
        format!("echo pwned > {}\n", escape.display()),
    )
    .unwrap();
    for command in [
        format!("echo pwned > {}", escape.display()),
        format!("cd {} && touch pwned.txt", outside.display()),
        format!("D={}; cp run.sh \"$D/pwned.txt\"", outside.display()),
        "sh run.sh".to_owned(),
    ] {
        let out = ws.call("exec", json!({ "command": command })).await;
        match &abi {
            Ok(_) => {
                assert!(out.is_error, "{command}: {}", out.content);
                assert!(
                    out.content.contains("Permission denied"),
                    "{command}: {}",
                    out.content
                );
                assert!(!escape.exists(), "{command} wrote outside the workspace");
            }
            Err(why) => eprintln!("no Landlock here ({why}); checked only that {command} runs"),
        }
    }
    // Harmless commands still work: reading anywhere, listing, writing in the workspace and in
    // the temporary folder, /dev/null.
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let allowed = format!(
        "ls -la /usr > /dev/null && cat /etc/hostname > copy.txt && mkdir -p a/b && echo ok > a/b/c \
         && echo t > {} && cat a/b/c",
        tmp.path().display()
    );
    let out = ws.call("exec", json!({ "command": allowed })).await;
    assert!(!out.is_error, "{}", out.content);
    assert_eq!(out.content.trim(), "ok");
    assert_eq!(std::fs::read_to_string(tmp.path()).unwrap(), "t\n");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn landlock_can_be_loosened_by_the_operator() {
    let extra = tempfile::tempdir().unwrap();
    let outside = extra.path().to_path_buf();
    // An extra writable folder.
    let mut exec = ExecConfig::default();
    exec.writable_paths = vec![outside.clone()];
    let ws = Ws::with_exec(exec);
    let target = outside.join("ok.txt");
    let out = ws
        .call(
            "exec",
            json!({ "command": format!("echo ok > {}", target.display()) }),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert!(target.exists());
    // Landlock off: the same write elsewhere goes through (which also shows the refusal above is
    // Landlock's doing, not the file system's).
    let mut exec = ExecConfig::default();
    exec.landlock = false;
    let ws = Ws::with_exec(exec);
    let other = ws.outside("landlock-off");
    let target = other.join("ok.txt");
    let out = ws
        .call(
            "exec",
            json!({ "command": format!("echo ok > {}", target.display()) }),
        )
        .await;
    assert!(!out.is_error, "{}", out.content);
    assert!(target.exists());
}
