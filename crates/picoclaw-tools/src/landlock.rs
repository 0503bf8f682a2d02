//! Kernel confinement with Landlock (Linux 5.13+) for everything picoclaw starts on the model's
//! behalf: `exec`, executable skills, MCP stdio servers.
//!
//! Landlock only allows, so the [`Policy`] is an allow-list. A confined process may read (and
//! run) the system outside home folders (`/usr`, `/bin`, `/lib*`, `/etc`, `/opt`, `/srv`,
//! `/var`, `/tmp`, `/dev`, `/proc`, `/sys`), the workspace and the operator's
//! `readable_paths`; it may write only in the workspace, the temporary folder and the
//! operator's `writable_paths`. The closed folders — picoclaw's home (config, auth store, state
//! database, logs, gateway key) and the owner's home — are never granted, wherever they are: a
//! rule cannot carve a hole in a granted folder, so when a closed folder lies beneath a granted
//! one (a home under `/tmp`, as in tests and some containers), the siblings along the path to
//! it are granted instead of their parent. The newest ABI the kernel offers is used: TCP rules
//! (ABI 4) when `network` is off, ioctl limits on devices (ABI 5), and scopes (ABI 6) so the
//! process can neither signal picoclaw nor reach abstract unix sockets outside its sandbox.
//!
//! The ruleset is built in picoclaw before the child starts; between fork and exec the child
//! only drops every capability (bounding, ambient, effective, permitted, inheritable: root's
//! `CAP_SYS_PTRACE` would otherwise let it read picoclaw's `/proc/<pid>/environ` past Landlock)
//! and calls `landlock_restrict_self` (which sets no-new-privs). No allocation happens there.

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetError, Scope, path_beneath_rules,
};
use std::path::{Path, PathBuf};

/// The newest Landlock ABI picoclaw knows; the kernel's may be older (best effort down to V1).
const ABI_WANTED: ABI = ABI::V6;

/// The system folders a confined process may read and run from (plus every `/lib*`), where they
/// exist: the FHS folders outside home folders, Nix's store and snaps, and the resolver's files
/// under `/run` (`/etc/resolv.conf` often links there), not the rest of `/run` (secrets,
/// credentials and user sockets live there).
pub const SYSTEM_READABLE: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/srv",
    "/var",
    "/tmp",
    "/dev",
    "/proc",
    "/sys",
    "/nix/store",
    "/snap",
    "/run/systemd/resolve",
    "/run/resolvconf",
];

/// Device files any command may write to (`> /dev/null`, a terminal). No ioctl on them: a
/// command must not push keystrokes into a terminal (`TIOCSTI`).
const WRITABLE_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/tty",
    "/dev/pts",
    "/dev/ptmx",
];

/// Shared memory, where programs (Python's multiprocessing, browsers) create and remove files.
const SHARED_MEMORY: &str = "/dev/shm";

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

/// What a confined process may reach.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Policy {
    /// Readable and runnable beneath, besides [`SYSTEM_READABLE`] (the workspace, skill folders,
    /// `tools.exec.readable_paths`).
    pub readable: Vec<PathBuf>,
    /// Writable (and readable) beneath.
    pub writable: Vec<PathBuf>,
    /// Never granted, even beneath a granted folder: picoclaw's home, the owner's home.
    pub closed: Vec<PathBuf>,
    /// The whole file system is readable and writable except `closed` (exec with
    /// `restrict_to_workspace: false`).
    pub everything: bool,
    /// Outbound TCP allowed (Landlock ABI 4; older kernels leave the network open).
    pub network: bool,
    /// Tests of the fail-closed path: building the rules fails.
    #[cfg(test)]
    pub(crate) inject_error: bool,
}

impl Policy {
    /// Reads of the system, `closed` shut, no writes, network on.
    pub fn new() -> Self {
        Self {
            closed: default_closed(),
            network: true,
            ..Self::default()
        }
    }

    pub fn readable(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.readable.extend(paths);
        self
    }

    pub fn writable(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.writable.extend(paths);
        self
    }

    pub fn closed(mut self, paths: impl IntoIterator<Item = PathBuf>) -> Self {
        self.closed.extend(paths);
        self
    }

    pub fn network(mut self, network: bool) -> Self {
        self.network = network;
        self
    }

    /// Everything but the closed folders (for `restrict_to_workspace: false`).
    pub fn everything(mut self) -> Self {
        self.everything = true;
        self
    }

    /// The real paths of the closed folders (`/` is never closed: nothing would be left).
    fn closed_real(&self) -> Vec<PathBuf> {
        let mut closed: Vec<PathBuf> = self
            .closed
            .iter()
            .map(|p| real(p))
            .filter(|p| p.parent().is_some())
            .collect();
        closed.sort();
        closed.dedup();
        closed
    }

    /// The folders (and files) to grant reading, after carving out the closed ones.
    pub fn read_grants(&self) -> Vec<PathBuf> {
        let roots = if self.everything {
            vec![PathBuf::from("/")]
        } else {
            system_roots()
        };
        self.grants(roots, self.readable.iter().chain(&self.writable))
    }

    /// The folders (and files) to grant writing, after carving out the closed ones.
    pub fn write_grants(&self) -> Vec<PathBuf> {
        let roots = if self.everything {
            vec![PathBuf::from("/")]
        } else {
            Vec::new()
        };
        self.grants(roots, &self.writable)
    }

    /// `roots` (never granted inside a closed folder) and the `explicit` folders (granted even
    /// there: the workspace inside picoclaw's home), each with the closed folders carved out.
    fn grants<'a>(
        &self,
        roots: Vec<PathBuf>,
        explicit: impl IntoIterator<Item = &'a PathBuf>,
    ) -> Vec<PathBuf> {
        let closed = self.closed_real();
        let mut out = Vec::new();
        for root in roots {
            grant(&root, &closed, false, &mut out);
        }
        for path in explicit {
            grant(&real(path), &closed, true, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether a closed folder lies inside the temporary folder, so `/tmp` itself is not
    /// writable (only its other entries): commands then get a private `TMPDIR`.
    pub fn splits_tmp(&self) -> bool {
        let tmp = real(&std::env::temp_dir());
        self.closed_real()
            .iter()
            .any(|c| c.starts_with(&tmp) && *c != tmp)
    }
}

/// picoclaw's home (`PICOCLAW_HOME`, else `~/.picoclaw`) and the owner's home (`HOME`).
pub fn default_closed() -> Vec<PathBuf> {
    let mut closed = Vec::new();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute());
    match std::env::var_os("PICOCLAW_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => closed.push(p),
        _ => {
            if let Some(h) = &home {
                closed.push(h.join(".picoclaw"));
            }
        }
    }
    closed.extend(home);
    // The workload-identity token file would let a command mint the owner's Azure tokens.
    if let Some(file) = std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from)
        && file.is_absolute()
    {
        closed.push(file);
    }
    closed
}

/// The path with links resolved where it exists (Landlock rules bind to inodes; comparisons
/// with the closed folders must see the same spelling).
fn real(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|_| picoclaw_fs::normalize(path))
}

/// [`SYSTEM_READABLE`] and every `/lib*` entry of `/`.
fn system_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = SYSTEM_READABLE.iter().map(PathBuf::from).collect();
    if let Ok(entries) = std::fs::read_dir("/") {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("lib") {
                roots.push(entry.path());
            }
        }
    }
    roots.into_iter().filter(|p| p.exists()).collect()
}

/// Grants `path` unless a closed folder contains it (an `explicit` grant, such as the workspace
/// inside picoclaw's home, stands anyway); when closed folders lie beneath it, grants its
/// entries instead, recursing along the way to each closed folder and leaving that one out.
fn grant(path: &Path, closed: &[PathBuf], explicit: bool, out: &mut Vec<PathBuf>) {
    if !explicit && closed.iter().any(|c| path.starts_with(c)) {
        return;
    }
    let real_path = real(path);
    let inner: Vec<&PathBuf> = closed
        .iter()
        .filter(|c| c.starts_with(&real_path) && **c != real_path)
        .collect();
    if inner.is_empty() {
        out.push(real_path);
        return;
    }
    let Ok(entries) = std::fs::read_dir(&real_path) else {
        return;
    };
    for entry in entries.flatten() {
        let child = real_path.join(entry.file_name());
        // A link is not granted: its rule would land on its target (`/home -> var/home` would
        // open the home again); what it leads to is granted, or not, on its own.
        if inner.contains(&&child) || entry.file_type().is_ok_and(|t| t.is_symlink()) {
            continue;
        }
        if inner.iter().any(|c| c.starts_with(&child)) {
            grant(&child, closed, false, out);
        } else {
            out.push(child);
        }
    }
}

/// Builds the ruleset for `policy`.
pub(crate) fn ruleset(policy: &Policy) -> Result<RulesetCreated, RulesetError> {
    let read = AccessFs::from_read(ABI_WANTED);
    let write = AccessFs::from_write(ABI_WANTED);
    // Device nodes are never made, even where writing is allowed.
    let make_devices = AccessFs::MakeChar | AccessFs::MakeBlock;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(read | write)?
        .scope(Scope::from_all(ABI_WANTED))?;
    if !policy.network {
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4))?;
    }
    ruleset
        .create()?
        .add_rules(path_beneath_rules(policy.read_grants(), read))?
        .add_rules(path_beneath_rules(
            policy.write_grants(),
            read | (write & !make_devices),
        ))?
        .add_rules(path_beneath_rules(
            WRITABLE_DEVICES,
            AccessFs::WriteFile | AccessFs::Truncate,
        ))?
        .add_rules(path_beneath_rules(
            [SHARED_MEMORY],
            AccessFs::ReadFile
                | AccessFs::WriteFile
                | AccessFs::Truncate
                | AccessFs::MakeReg
                | AccessFs::RemoveFile,
        ))
}

/// Confines the command `cmd` will start to `policy`, and drops every capability it would
/// have. Returns whether the kernel enforces Landlock (`false` where it is unavailable: the
/// command runs unconfined, still without capabilities). An error means the kernel has Landlock
/// but the rules could not be built; do not run the command then.
pub fn confine_with(cmd: &mut tokio::process::Command, policy: &Policy) -> Result<bool, String> {
    let enforced = landlock_abi().is_ok();
    let mut policy = policy.clone();
    if enforced && policy.splits_tmp() {
        // `/tmp` itself is not writable here: a private folder inside it is, made (0700, ours)
        // before the rules so that it is one of the entries they grant.
        let private = private_tmp()?;
        cmd.env("TMPDIR", &private);
        policy.writable.push(private);
    }
    #[cfg(test)]
    if policy.inject_error {
        return Err("injected ruleset error".into());
    }
    let mut ruleset = if enforced {
        Some(ruleset(&policy).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let restrict = move || -> std::io::Result<()> {
        // Between fork and exec: no allocation, so errors are plain OS codes.
        detach_and_drop_capabilities()?;
        if !enforced {
            return Ok(());
        }
        // A second spawn of the same command finds no ruleset: refuse rather than run free.
        match ruleset.take().map(RulesetCreated::restrict_self) {
            Some(Ok(_)) => Ok(()),
            _ => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec; it only moves a prepared
    // ruleset and makes the prctl, capset and landlock_restrict_self system calls.
    unsafe {
        cmd.pre_exec(restrict);
    }
    Ok(enforced)
}

/// Drops every capability of the command `cmd` will start, without Landlock (for commands the
/// operator chose to run unconfined).
pub(crate) fn drop_privileges(cmd: &mut tokio::process::Command) {
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and makes prctl and capset
    // system calls only.
    unsafe {
        cmd.pre_exec(detach_and_drop_capabilities);
    }
}

/// A folder of our own in the temporary folder for commands' `TMPDIR`: created 0700, or reused
/// when it is ours and private (never a folder someone else planted under that name).
fn private_tmp() -> Result<PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let dir = std::env::temp_dir().join(format!(
        "picoclaw-tmp-{}-{}",
        // The effective uid, so two users' picoclaws never share it.
        {
            #[allow(unsafe_code)]
            // SAFETY: geteuid takes nothing and cannot fail.
            unsafe {
                libc::geteuid()
            }
        },
        std::process::id()
    ));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(&dir).map_err(|e| e.to_string())?;
            #[allow(unsafe_code)]
            // SAFETY: geteuid takes nothing and cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.is_dir() && meta.uid() == me && meta.permissions().mode() & 0o077 == 0 {
                Ok(dir)
            } else {
                Err(format!(
                    "{} exists and is not a private folder of ours; remove it",
                    dir.display()
                ))
            }
        }
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

/// The compatibility form: `writable` folders, the system and `writable` readable, the default
/// closed folders shut.
pub fn confine(
    cmd: &mut tokio::process::Command,
    writable: &[PathBuf],
    network: bool,
) -> Result<bool, String> {
    confine_with(
        cmd,
        &Policy::new()
            .writable(writable.iter().cloned())
            .network(network),
    )
}

/// Starts a new session (no controlling terminal: a command cannot push keystrokes into the
/// operator's terminal, and it leads its own process group for the kill at the end), then
/// empties the bounding and ambient sets (so a root command gains nothing back at exec) and the
/// effective, permitted and inheritable sets. Async-signal-safe: system calls only.
#[allow(unsafe_code)]
fn detach_and_drop_capabilities() -> std::io::Result<()> {
    const LAST_CAP: libc::c_ulong = 63;
    // SAFETY: setsid, prctl and capset take plain integers and pointers to the local structs
    // below.
    unsafe {
        if libc::setsid() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for cap in 0..=LAST_CAP {
            // EINVAL past the kernel's last capability; EPERM without CAP_SETPCAP (an
            // unprivileged process has nothing to drop there).
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let mut header = Header {
            version: VERSION_3,
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_closed_folder_beneath_a_granted_one_is_carved_out_by_its_siblings() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path().canonicalize().unwrap();
        for dir in ["home/.picoclaw/workspace", "home/docs", "other"] {
            std::fs::create_dir_all(b.join(dir)).unwrap();
        }
        std::fs::write(b.join("home/notes.txt"), "n").unwrap();
        let policy = Policy {
            readable: vec![b.clone()],
            writable: vec![b.join("home/.picoclaw/workspace")],
            closed: vec![b.join("home/.picoclaw")],
            network: true,
            ..Policy::default()
        };
        let reads = policy.read_grants();
        assert!(
            !reads.contains(&b),
            "the parent of a closed folder is not granted"
        );
        for granted in [
            "other",
            "home/docs",
            "home/notes.txt",
            "home/.picoclaw/workspace",
        ] {
            assert!(reads.contains(&b.join(granted)), "{granted}: {reads:?}");
        }
        assert!(!reads.contains(&b.join("home")));
        assert!(!reads.contains(&b.join("home/.picoclaw")));
        assert_eq!(
            policy.write_grants(),
            vec![b.join("home/.picoclaw/workspace")]
        );
    }

    /// A link among the entries granted around a closed folder is not granted: its rule would
    /// land on its target (`/home -> var/home` reopening the home).
    #[test]
    fn links_beside_a_closed_folder_are_not_granted() {
        let base = tempfile::tempdir().unwrap();
        let b = base.path().canonicalize().unwrap();
        std::fs::create_dir_all(b.join("var/home/.picoclaw")).unwrap();
        std::fs::create_dir_all(b.join("etc")).unwrap();
        std::os::unix::fs::symlink("var/home", b.join("home")).unwrap();
        let policy = Policy {
            readable: vec![b.clone()],
            closed: vec![b.join("var/home/.picoclaw")],
            ..Policy::default()
        };
        let reads = policy.read_grants();
        assert!(reads.contains(&b.join("etc")), "{reads:?}");
        assert!(
            !reads
                .iter()
                .any(|r| r == &b.join("home") || r == &b.join("var/home")),
            "{reads:?}"
        );
    }

    #[test]
    fn the_root_is_never_closed() {
        let policy = Policy {
            closed: vec![PathBuf::from("/")],
            ..Policy::default()
        };
        assert!(policy.read_grants().contains(&PathBuf::from("/usr")));
    }
}
