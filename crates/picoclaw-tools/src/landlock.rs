//! Kernel confinement for `exec` with Landlock (Linux 5.13+): the command and everything it starts
//! may read and run anything, but may create, change or delete files only inside the workspace, the
//! temporary folder and the operator's extra writable paths. A deny-list is matched on text and can
//! be talked around (`cd / && ...`, a script written first, a symlink); Landlock is enforced by the
//! kernel on every path the child opens.
//!
//! The ruleset is built in picoclaw before the child starts; the child only calls
//! `landlock_restrict_self` between fork and exec (no allocation there). Where the kernel has no
//! Landlock, commands run with the deny-list only and `picoclaw status` says so.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, path_beneath_rules,
};
use std::path::{Path, PathBuf};

/// The newest Landlock ABI picoclaw knows; the kernel's may be older (best effort down to V1).
const ABI_WANTED: ABI = ABI::V5;

/// Device files any command may write to (`> /dev/null`, a terminal).
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/pts",
    "/dev/ptmx",
    "/dev/shm",
];

/// The Landlock ABI version the running kernel offers, or why there is none.
pub fn landlock_abi() -> Result<i32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    #[allow(unsafe_code)]
    // SAFETY: landlock_create_ruleset with a NULL attribute, size 0 and the VERSION flag only
    // returns a number; it reads no memory of ours.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi > 0 {
        return Ok(abi as i32);
    }
    let err = std::io::Error::last_os_error();
    Err(match err.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel was built without Landlock".to_owned(),
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built into the kernel but not enabled (boot with lsm=...,landlock)"
                .to_owned()
        }
        _ => format!("Landlock is not usable: {err}"),
    })
}

/// The folders a confined command may write in: the workspace, the temporary folder and `extra`.
pub(crate) fn writable_paths(workspace: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut paths = vec![workspace.to_path_buf(), std::env::temp_dir()];
    paths.extend(extra.iter().cloned());
    paths
}

/// Builds the ruleset for one command: writes allowed beneath `writable` (and to the harmless
/// devices), every other write refused by the kernel; with `network` false, TCP connections and
/// listening refused too (Landlock ABI 4, Linux 6.7; older kernels leave the network open).
pub(crate) fn ruleset(writable: &[PathBuf], network: bool) -> Result<RulesetCreated, RulesetError> {
    let write = AccessFs::from_write(ABI_WANTED);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(write)?;
    if !network {
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4))?;
    }
    ruleset
        .create()?
        .add_rules(path_beneath_rules(writable, write))?
        .add_rules(path_beneath_rules(
            WRITABLE_DEVICES,
            AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev,
        ))
}

/// Confines the command `cmd` will start: it may write only beneath `writable` (and to
/// `/dev/null` and the terminal) and, unless `network`, open no TCP connection. Returns whether
/// the kernel enforces it (`false` where Landlock is unavailable: the command runs unconfined).
/// An error means the kernel has Landlock but the rules could not be built; do not run the
/// command then.
pub fn confine(
    cmd: &mut tokio::process::Command,
    writable: &[PathBuf],
    network: bool,
) -> Result<bool, String> {
    if landlock_abi().is_err() {
        return Ok(false);
    }
    let ruleset = ruleset(writable, network).map_err(|e| e.to_string())?;
    let mut ruleset = Some(ruleset);
    let restrict = move || -> std::io::Result<()> {
        // Between fork and exec: no allocation, so errors are plain OS codes.
        match ruleset.take().map(RulesetCreated::restrict_self) {
            Some(Err(_)) => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
            _ => Ok(()),
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec; it only moves a prepared
    // ruleset and makes the prctl and landlock_restrict_self system calls.
    unsafe {
        cmd.pre_exec(restrict);
    }
    Ok(true)
}
