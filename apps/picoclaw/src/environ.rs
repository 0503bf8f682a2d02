//! Keeping credentials out of picoclaw's initial environment block.
//!
//! The kernel shows a process's environment *as it was at exec* in `/proc/<pid>/environ`, and
//! `unsetenv` does not change that block. A command the agent runs is kept from reading it by
//! Landlock and by having no capabilities; where a command would run without Landlock (none in
//! the kernel, `tools.exec.landlock: false`, an MCP server with `sandbox: false`), this is what
//! keeps the provider keys out of its reach: the binaries move every credential-looking variable
//! into an anonymous memory file, re-execute themselves with an environment without them, and
//! put them back with `set_var` in the new image, where they live on the heap only. Commands
//! picoclaw starts get its environment minus the same variables. (The re-exec costs a few
//! milliseconds at start, so it happens only where it protects something.)

use std::ffi::OsString;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Carries the memory file's descriptor across the re-exec.
const FD_VAR: &str = "PICOCLAW_HIDDEN_ENV_FD";

/// Whether a variable must not stay in the initial environment block.
fn hidden(name: &std::ffi::OsStr, value: &std::ffi::OsStr) -> bool {
    name.to_str().is_none_or(picoclaw_tools::is_secret_env)
        || value.to_str().is_some_and(picoclaw_tools::is_secret_value)
}

/// Call first thing in `main`, before any thread starts: in the image started by
/// [`hide_credentials`], puts the hidden variables back (on the heap). Does nothing otherwise.
pub(crate) fn restore_hidden() {
    if let Some(fd) = std::env::var_os(FD_VAR) {
        RESTORED.store(true, std::sync::atomic::Ordering::Relaxed);
        restore(&fd);
    }
}

/// This image was started by [`hide_credentials`]: its block is already clean (the restored
/// variables live on the heap), so it never re-executes again.
static RESTORED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the environment holds anything [`hide_credentials`] would move (cheap: no config
/// is read for a process that has no credentials in its environment).
pub(crate) fn has_credentials() -> bool {
    std::env::vars_os().any(|(name, value)| hidden(&name, &value))
}

/// Whether a command the agent starts could read picoclaw's environment block: Landlock is
/// unavailable, switched off for exec, or an MCP stdio server opts out of its sandbox. (Under
/// Landlock, a confined process cannot read a process outside its domain.)
pub(crate) fn exposed(config: &picoclaw_config::Config) -> bool {
    if picoclaw_tools::landlock_abi().is_err() || !config.tools.exec.landlock {
        return true;
    }
    config.tools.mcp.as_ref().is_some_and(|mcp| {
        mcp.servers
            .values()
            .any(|s| s.sandbox == Some(serde_json::Value::Bool(false)))
    })
}

/// Re-executes the process (same pid and arguments) with the credential-looking variables moved
/// out of its environment block, when there are any; the new image restores them with
/// [`restore_hidden`]. Returns only when there is nothing to hide or the re-exec failed (said on
/// stderr). Safe with other threads running: `execve` ends them.
pub(crate) fn hide_credentials() {
    if RESTORED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let (secret, plain): (Vec<_>, Vec<_>) =
        std::env::vars_os().partition(|(name, value)| hidden(name, value));
    if secret.is_empty() {
        return;
    }
    let Err(e) = reexec(&secret, plain) else {
        return;
    };
    eprintln!(
        "warning: picoclaw could not re-execute itself to keep credentials out of its \
         environment block ({e}); commands that are not confined could read them"
    );
}

fn reexec(
    secret: &[(OsString, OsString)],
    plain: Vec<(OsString, OsString)>,
) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    // /proc/self/exe itself, not the path it names: that may be gone after an upgrade in place.
    let exe = std::path::PathBuf::from("/proc/self/exe");
    if !exe.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "/proc is not mounted",
        ));
    }
    let file = memfd()?;
    let mut writer = std::fs::File::from(file.try_clone()?);
    for (name, value) in secret {
        writer.write_all(name.as_bytes())?;
        writer.write_all(b"\0")?;
        writer.write_all(value.as_bytes())?;
        writer.write_all(b"\0")?;
    }
    writer.rewind()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env_clear()
        .envs(plain)
        .env(FD_VAR, file.as_raw_fd().to_string())
        .exec();
    Err(err)
}

/// An anonymous memory file that survives exec (no close-on-exec) and never touches a disk.
fn memfd() -> std::io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a new descriptor,
    // which we own from here on.
    unsafe {
        let fd = libc::memfd_create(c"picoclaw-env".as_ptr(), 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn restore(fd: &std::ffi::OsStr) {
    #[allow(unsafe_code)]
    // SAFETY: still single-threaded (the caller is the first line of main); the variable is
    // ours and names nothing else.
    unsafe {
        std::env::remove_var(FD_VAR);
    }
    let Some(fd) = fd
        .to_str()
        .and_then(|f| f.parse::<i32>().ok())
        .filter(|f| *f > 2)
    else {
        return;
    };
    // The descriptor came from our own pre-exec image; it is not used anywhere else.
    #[allow(unsafe_code)]
    // SAFETY: the fd number was passed by the previous image of this process, which left it
    // open for exactly this; taking ownership closes it after reading.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return;
    }
    let mut parts = bytes.split(|b| *b == 0);
    while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if name.is_empty() {
            break;
        }
        #[allow(unsafe_code)]
        // SAFETY: single-threaded at this point (first line of main, before any runtime).
        unsafe {
            std::env::set_var(
                OsString::from_vec(name.to_vec()),
                OsString::from_vec(value.to_vec()),
            );
        }
    }
}
