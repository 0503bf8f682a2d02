//! Running a command: the Landlock confinement, `sh -c` with stdin closed and credentials
//! removed from its environment, the process group killed when it ends, and its output read
//! with a cap.

use super::ExecTool;
use super::policy::{is_secret_env, is_secret_value};
use crate::ToolOutput;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Kills a whole process group when dropped (normal end, timeout, or a cancelled turn).
pub struct GroupGuard(Option<i32>);

impl GroupGuard {
    /// Guards the process group led by the child with process id `pid` (spawned with
    /// `process_group(0)`).
    pub fn new(pid: Option<u32>) -> Self {
        Self(pid.and_then(|id| i32::try_from(id).ok()))
    }
}

impl std::fmt::Debug for GroupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GroupGuard").field(&self.0).finish()
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // Descendants that left the group (`setsid`, a daemonising program) are found by
            // their parent links while the leader still lives: stopped first so none forks
            // past the walk, then killed with the group.
            let strays = descendants(pgid);
            for pid in &strays {
                signal(*pid, libc::SIGSTOP);
            }
            let strays = {
                let mut all = strays;
                for pid in descendants(pgid) {
                    if !all.contains(&pid) {
                        all.push(pid);
                    }
                }
                all
            };
            for pid in strays {
                signal(pid, libc::SIGKILL);
            }
            kill_group(pgid);
        }
    }
}

/// Every process below `root` in the parent tree (read from /proc; empty without it).
fn descendants(root: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // /proc/<pid>/stat: "pid (comm) state ppid ...", comm may hold spaces and parens.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        parent_of.push((pid, ppid));
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &parent_of {
            if *ppid == parent && !found.contains(pid) && *pid != root {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}

#[allow(unsafe_code)]
fn signal(pid: i32, sig: i32) {
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, sig);
    }
}

#[allow(unsafe_code)]
fn kill_group(pgid: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid names
    // the process group the child leads (it was spawned with process_group(0)).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A pipe being read in the background by [`spawn_capped`].
pub type CappedRead = tokio::task::JoinHandle<(Vec<u8>, usize)>;

/// Starts reading `pipe` (when there is one) in the background, keeping at most `cap` bytes.
pub fn spawn_capped(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    cap: usize,
) -> Option<CappedRead> {
    pipe.map(|p| tokio::spawn(read_capped(p, cap)))
}

/// What a background read got: (bytes kept, bytes dropped). Waits at most 2 s once the process
/// has ended (a program it started may still hold the pipe open).
pub async fn finish_capped(read: Option<CappedRead>) -> (Vec<u8>, usize) {
    match read {
        Some(h) => tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Default::default(),
    }
}

/// Reads a pipe to its end, keeping at most `cap` bytes and counting the rest.
pub async fn read_capped(mut pipe: impl AsyncRead + Unpin, cap: usize) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                let take = room.min(n);
                kept.extend_from_slice(&buf[..take]);
                dropped += n - take;
            }
        }
    }
    (kept, dropped)
}

fn render_stream(label: &str, (bytes, dropped): (Vec<u8>, usize), out: &mut String) {
    if bytes.is_empty() && dropped == 0 {
        return;
    }
    let text = String::from_utf8_lossy(&bytes);
    if !out.is_empty() {
        out.push('\n');
    }
    if !label.is_empty() {
        out.push_str(label);
        out.push('\n');
    }
    out.push_str(text.trim_end_matches('\n'));
    if dropped > 0 {
        out.push_str(&format!("\n[... {dropped} more bytes cut]"));
    }
}

impl ExecTool {
    /// The Landlock policy of a command, when Landlock is on: whether the kernel enforces it.
    #[cfg(target_os = "linux")]
    fn confine(&self, cmd: &mut tokio::process::Command) -> Result<bool, String> {
        if !self.config.landlock {
            // No Landlock, as the operator chose; still no capabilities for the command.
            crate::landlock::drop_privileges(cmd);
            return Ok(false);
        }
        let mut policy = crate::landlock::Policy::new()
            .readable(self.config.readable_paths.iter().cloned())
            .writable(
                [self.sandbox.root().to_path_buf(), std::env::temp_dir()]
                    .into_iter()
                    .chain(self.config.writable_paths.iter().cloned()),
            )
            .closed(self.config.closed_paths.iter().cloned())
            .network(self.config.network);
        if !self.sandbox.restricted() {
            policy = policy.everything();
        }
        #[cfg(test)]
        {
            policy.inject_error = self.config.inject_ruleset_error;
        }
        crate::landlock::confine_with(cmd, &policy)
    }

    #[cfg(not(target_os = "linux"))]
    fn confine(&self, _cmd: &mut tokio::process::Command) -> Result<bool, String> {
        Ok(false)
    }

    pub(super) async fn run(
        &self,
        command: &str,
        dir: &std::path::Path,
        timeout: Duration,
    ) -> ToolOutput {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A session of its own (set up in `confine`): its own process group, no terminal.
            .kill_on_drop(true);
        // The model decides what runs here: it must not be able to read picoclaw's own secrets
        // (`echo $OPENAI_API_KEY`). Variables that look like credentials are not passed on.
        for (name, value) in std::env::vars_os() {
            let secret = name.to_str().is_none_or(is_secret_env)
                || value.to_str().is_some_and(is_secret_value);
            if secret {
                cmd.env_remove(name);
            }
        }
        let confined = match self.confine(&mut cmd) {
            Ok(confined) => confined,
            Err(e) => {
                return ToolOutput::error(format!(
                    "exec: could not set up the Landlock confinement ({e}); the command was not \
                     run. The operator can set tools.exec.landlock to false to run commands \
                     without it."
                ));
            }
        };
        if !confined && self.config.require_sandbox {
            return ToolOutput::error(
                "exec: refused: commands must run under Landlock (tools.exec.require_sandbox), \
                 and it is not available here (see `picoclaw status`); do not retry.",
            );
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return ToolOutput::error(format!("exec: could not start sh: {e}")),
        };
        let guard = GroupGuard::new(child.id());
        let cap = self.config.max_output_bytes;
        let stdout = spawn_capped(child.stdout.take(), cap);
        let stderr = spawn_capped(child.stderr.take(), cap);

        let status = tokio::time::timeout(timeout, child.wait()).await;
        // Whatever happened, nothing the command started outlives it.
        drop(guard);
        let (out, err) = (finish_capped(stdout).await, finish_capped(stderr).await);
        let mut text = String::new();
        render_stream("", out, &mut text);
        render_stream("[stderr]", err, &mut text);
        match status {
            Err(_) => {
                let _ = child.start_kill();
                ToolOutput::error(format!(
                    "exec: timed out after {}s; the command and everything it started were \
                     killed.{}{}",
                    timeout.as_secs(),
                    if text.is_empty() {
                        ""
                    } else {
                        " Output so far:\n"
                    },
                    text
                ))
            }
            Ok(Err(e)) => ToolOutput::error(format!("exec: waiting for the command failed: {e}")),
            Ok(Ok(status)) if status.success() => {
                if text.is_empty() {
                    ToolOutput::ok("(no output, exit code 0)")
                } else {
                    ToolOutput::ok(text)
                }
            }
            Ok(Ok(status)) => {
                let code = status
                    .code()
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_else(|| "killed by a signal".to_owned());
                if text.is_empty() {
                    ToolOutput::error(format!("({code}, no output)"))
                } else {
                    ToolOutput::error(format!("{text}\n({code})"))
                }
            }
        }
    }
}
