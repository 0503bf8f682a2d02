//! The workspace sandbox: where every path a tool is given gets its folder handle.
//!
//! With `restrict` on (the default, `agents.defaults.restrict_to_workspace`), a path is opened
//! beneath the workspace's directory handle ([`picoclaw_fs::WorkspaceDir`]): the kernel resolves
//! it and refuses `..`, absolute links and links that lead out, at the moment of opening, so a
//! link swapped in between a check and the open cannot help. Installed skills' folders are read
//! roots: readable the same way, never writable.
//!
//! With `restrict` off, tools reach the whole file system, except picoclaw's own home (the
//! config with its keys, the auth store, the state database, the gateway key), which stays closed
//! — there by a check of the resolved path, as the operator chose to open everything else.

use picoclaw_fs::{FsError, WorkspaceDir};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Whether a path is about to be read or written (reads may also use the read roots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a path was refused or the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(
        "'{path}' is in picoclaw's own folder {}, which file tools never open (it holds the \
         config, keys and conversations)",
        home.display()
    )]
    Protected { path: String, home: PathBuf },
    #[error("cannot use the workspace {}: {source}", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    /// Whether the path was refused for leaving the workspace.
    pub fn is_escape(&self) -> bool {
        match self {
            SandboxError::Fs(e) => e.is_escape(),
            SandboxError::Protected { .. } => true,
            SandboxError::Root { .. } => false,
        }
    }

    /// The message for the model: the reason, and for refusals, the rule behind it.
    pub fn for_model(&self) -> String {
        let refused = matches!(
            self,
            SandboxError::Fs(FsError::HardLink { .. } | FsError::Outside { .. })
                | SandboxError::Fs(FsError::Escapes { .. })
        );
        if refused {
            format!(
                "{self}. File tools are confined to the workspace and refuse what leads outside \
                 the workspace (agents.defaults.restrict_to_workspace)"
            )
        } else {
            self.to_string()
        }
    }
}

/// The longest a file tool waits for the disk before giving up (the tool loop's own timeout is
/// usually shorter; this one keeps a stuck mount from holding a tool call forever elsewhere).
const IO_LIMIT: Duration = Duration::from_secs(120);

/// A path placed beneath a folder handle: open `path` relative to `dir`.
#[derive(Clone, Debug)]
pub struct Located {
    pub dir: Arc<WorkspaceDir>,
    pub path: String,
}

impl Located {
    /// The full path, for messages and for handing to programs that take paths.
    pub fn full(&self) -> PathBuf {
        picoclaw_fs::normalize(&self.dir.root().join(&self.path))
    }
}

/// The workspace root and whether tools are confined to it.
#[derive(Debug)]
pub struct Sandbox {
    workspace: Arc<WorkspaceDir>,
    restrict: bool,
    /// Folders outside the workspace that may be read, never written (installed skills).
    read_roots: Vec<Arc<WorkspaceDir>>,
    /// Closed even when unrestricted: picoclaw's home, real paths.
    protected: Vec<PathBuf>,
}

impl Sandbox {
    /// Creates the root folder if needed and opens it: file tools are confined to it
    /// (`tools.restrict_to_workspace: true`, the default).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, SandboxError> {
        Self::open(root.into(), true)
    }

    /// Like [`new`](Self::new), but file tools may also reach absolute paths outside the
    /// workspace (`tools.restrict_to_workspace: false`); the protected folders stay closed.
    pub fn unrestricted(root: impl Into<PathBuf>) -> Result<Self, SandboxError> {
        Self::open(root.into(), false)
    }

    fn open(root: PathBuf, restrict: bool) -> Result<Self, SandboxError> {
        let workspace =
            WorkspaceDir::create(&root).map_err(|source| SandboxError::Root { root, source })?;
        Ok(Self {
            workspace: Arc::new(workspace),
            restrict,
            read_roots: Vec::new(),
            protected: Vec::new(),
        })
    }

    /// Also lets tools read (never write) beneath `dir`: the folders of installed skills, whose
    /// SKILL.md the agent reads when it needs one. A folder that does not exist is skipped.
    pub fn with_read_root(mut self, dir: impl AsRef<Path>) -> Self {
        if let Ok(root) = WorkspaceDir::open(dir) {
            self.read_roots.push(Arc::new(root));
        }
        self
    }

    /// Keeps file tools out of `dir` even when unrestricted (picoclaw's home). The workspace
    /// stays usable when it lies inside.
    pub fn with_protected(mut self, dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        // A workspace that contains picoclaw's home (`workspace: "~"`): the home stays closed
        // beneath the handle too, judged on what each open reaches.
        if dir.starts_with(self.workspace.root()) && dir != self.workspace.root() {
            let root = self.workspace.root().to_path_buf();
            if let Ok(reopened) = WorkspaceDir::open(&root) {
                let closed: Vec<PathBuf> = self
                    .protected
                    .iter()
                    .cloned()
                    .chain([dir.clone()])
                    .filter(|p| p.starts_with(&root))
                    .collect();
                self.workspace = Arc::new(reopened.with_closed(closed, []));
            }
        }
        self.protected.push(dir);
        self
    }

    /// The workspace's real path.
    pub fn root(&self) -> &Path {
        self.workspace.root()
    }

    /// The workspace's folder handle.
    pub fn workspace(&self) -> &Arc<WorkspaceDir> {
        &self.workspace
    }

    /// Whether paths are confined to the workspace.
    pub fn restricted(&self) -> bool {
        self.restrict
    }

    /// Where to open `path` (relative to the workspace, or absolute) for `access`. Nothing is
    /// opened here; with `restrict` on, the returned handle confines the open itself.
    pub fn locate(&self, path: &str, access: Access) -> Result<Located, SandboxError> {
        if self.restrict {
            return match self.workspace.relative(path) {
                Ok(rel) => Ok(Located {
                    dir: self.workspace.clone(),
                    path: rel.to_string_lossy().into_owned(),
                }),
                Err(outside @ FsError::Outside { .. }) => {
                    if access == Access::Read {
                        for root in &self.read_roots {
                            if let Ok(rel) = root.relative(path) {
                                return Ok(Located {
                                    dir: root.clone(),
                                    path: rel.to_string_lossy().into_owned(),
                                });
                            }
                        }
                    }
                    Err(outside.into())
                }
                Err(e) => Err(e.into()),
            };
        }
        self.locate_anywhere(path, access)
    }

    /// Unrestricted: the real path (links resolved; for a new file, its folder's), checked
    /// against picoclaw's home, opened through a handle on its parent folder.
    fn locate_anywhere(&self, path: &str, access: Access) -> Result<Located, SandboxError> {
        // Validates the text (empty, NUL, length) the same way as the confined case.
        let _ = match self.workspace.relative(path) {
            Err(e @ (FsError::Empty | FsError::Nul { .. } | FsError::TooLong { .. })) => {
                return Err(e.into());
            }
            other => other,
        };
        let full = picoclaw_fs::normalize(&self.workspace.root().join(path));
        let io = |source: std::io::Error| {
            SandboxError::Fs(FsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let real = match full.canonicalize() {
            Ok(real) if access == Access::Read => real,
            // A write never follows the final name: resolve its folder only.
            _ => {
                let name = full.file_name().map(|n| n.to_os_string());
                let parent = full.parent().unwrap_or(Path::new("/"));
                if access == Access::Write {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let parent = parent.canonicalize().map_err(|e| {
                    SandboxError::Fs(if e.kind() == std::io::ErrorKind::NotFound {
                        FsError::NotFound {
                            path: path.to_owned(),
                        }
                    } else {
                        FsError::Io {
                            path: path.to_owned(),
                            source: e,
                        }
                    })
                })?;
                match name {
                    Some(name) => parent.join(name),
                    None => parent,
                }
            }
        };
        // Said plainly when the resolved path is already in picoclaw's home; the handle below
        // checks again on what is really opened (a link may be swapped in meanwhile).
        let inside_workspace = |p: &Path| p.starts_with(self.workspace.root());
        if let Some(home) = self
            .protected
            .iter()
            .find(|home| real.starts_with(home) && !inside_workspace(&real))
        {
            return Err(SandboxError::Protected {
                path: path.to_owned(),
                home: home.clone(),
            });
        }
        let (folder, name) = match (real.parent(), real.file_name()) {
            (Some(parent), Some(name)) => (parent, name.to_string_lossy().into_owned()),
            _ => (Path::new("/"), ".".to_owned()),
        };
        let dir = WorkspaceDir::open(folder).map_err(io)?.with_closed(
            self.protected.iter().cloned(),
            [self.workspace.root().to_path_buf()],
        );
        Ok(Located {
            dir: Arc::new(dir),
            path: name,
        })
    }

    /// `path` relative to the workspace for display, or as given when outside.
    pub fn display(&self, path: &Path) -> String {
        self.workspace.display(path)
    }

    /// Runs blocking file work off the async workers.
    pub async fn io<T, F>(work: F) -> Result<T, SandboxError>
    where
        F: FnOnce() -> Result<T, FsError> + Send + 'static,
        T: Send + 'static,
    {
        picoclaw_fs::off_thread(IO_LIMIT, work)
            .await
            .map_err(SandboxError::Fs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Sandbox) {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "s3cret").unwrap();
        let sb = Sandbox::new(ws.path()).unwrap();
        (ws, outside, sb)
    }

    fn read(sb: &Sandbox, path: &str) -> Result<Vec<u8>, SandboxError> {
        let at = sb.locate(path, Access::Read)?;
        Ok(at.dir.read(&at.path, 1 << 20)?)
    }

    #[test]
    fn relative_and_absolute_paths_inside_are_placed_beneath_the_workspace() {
        let (ws, _out, sb) = setup();
        std::fs::write(ws.path().join("a.txt"), "a").unwrap();
        let at = sb.locate("notes/new.txt", Access::Write).unwrap();
        assert_eq!(at.path, "notes/new.txt");
        assert_eq!(at.full(), sb.root().join("notes/new.txt"));
        let abs = sb.root().join("a.txt");
        assert_eq!(read(&sb, abs.to_str().unwrap()).unwrap(), b"a");
        // The configured (unresolved) spelling of the workspace works too.
        assert_eq!(
            read(&sb, ws.path().join("a.txt").to_str().unwrap()).unwrap(),
            b"a"
        );
    }

    #[test]
    fn escapes_are_refused_with_the_rule_named() {
        let (ws, out, sb) = setup();
        symlink(out.path(), ws.path().join("dir-link")).unwrap();
        for path in ["../x", "/etc/passwd", "dir-link/secret.txt"] {
            let e = read(&sb, path).unwrap_err();
            assert!(e.is_escape(), "{path}: {e}");
            assert!(e.for_model().contains("restrict_to_workspace"), "{e}");
        }
        let secret = out.path().join("secret.txt");
        assert!(read(&sb, secret.to_str().unwrap()).is_err());
    }

    #[test]
    fn read_roots_are_readable_never_writable() {
        let (_ws, _out, sb) = setup();
        let skills = tempfile::tempdir().unwrap();
        std::fs::write(skills.path().join("SKILL.md"), "skill").unwrap();
        let sb = sb.with_read_root(skills.path());
        let p = skills.path().join("SKILL.md");
        assert_eq!(read(&sb, p.to_str().unwrap()).unwrap(), b"skill");
        let e = sb.locate(p.to_str().unwrap(), Access::Write).unwrap_err();
        assert!(e.is_escape(), "{e}");
    }

    #[test]
    fn unrestricted_reaches_everything_but_picoclaws_home() {
        let home = tempfile::tempdir().unwrap();
        let ws = home.path().join("workspace");
        std::fs::write(home.path().join("config.json"), "{\"key\":1}").unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("x.txt"), "x").unwrap();
        let sb = Sandbox::unrestricted(&ws)
            .unwrap()
            .with_protected(home.path());
        assert!(!sb.restricted());
        let x = other.path().join("x.txt");
        assert_eq!(read(&sb, x.to_str().unwrap()).unwrap(), b"x");
        let cfg = home.path().join("config.json");
        let e = read(&sb, cfg.to_str().unwrap()).unwrap_err();
        assert!(matches!(e, SandboxError::Protected { .. }), "{e}");
        // Through a link, and through `..` from the workspace.
        symlink(&cfg, other.path().join("cfg-link")).unwrap();
        let link = other.path().join("cfg-link");
        assert!(read(&sb, link.to_str().unwrap()).is_err());
        assert!(read(&sb, "../config.json").is_err());
        // The workspace inside the home stays usable.
        let at = sb.locate("w.txt", Access::Write).unwrap();
        at.dir.write_atomic(&at.path, b"w").unwrap();
        assert_eq!(std::fs::read(ws.join("w.txt")).unwrap(), b"w");
    }

    /// Unrestricted: the check is made on what is really opened, so a name swapped for a link
    /// into picoclaw's home after it was located is refused at the open.
    #[test]
    fn unrestricted_a_link_swapped_in_after_locating_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        std::fs::create_dir_all(home.join("workspace")).unwrap();
        std::fs::write(home.join("config.json"), "sk-SECRET").unwrap();
        std::fs::write(base.path().join("x"), "plain").unwrap();
        let sb = Sandbox::unrestricted(home.join("workspace"))
            .unwrap()
            .with_protected(&home);
        let x = base.path().join("x");
        let at = sb.locate(x.to_str().unwrap(), Access::Read).unwrap();
        std::fs::remove_file(&x).unwrap();
        symlink("home/config.json", &x).unwrap();
        let e = at.dir.read(&at.path, 1024).unwrap_err();
        assert!(e.is_escape(), "{e}");
        // Writes: the folder is checked as opened too.
        let w = base.path().join("h2");
        symlink(&home, &w).unwrap();
        let e = sb
            .locate(w.join("config.json").to_str().unwrap(), Access::Write)
            .unwrap_err();
        assert!(e.is_escape(), "{e}");
        assert_eq!(
            std::fs::read_to_string(home.join("config.json")).unwrap(),
            "sk-SECRET"
        );
    }

    /// A workspace that contains picoclaw's home (`workspace: "~"`): the home stays closed.
    #[test]
    fn a_home_inside_the_workspace_stays_closed() {
        let ws = tempfile::tempdir().unwrap();
        let home = ws.path().join(".picoclaw");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("config.json"), "sk-SECRET").unwrap();
        std::fs::write(ws.path().join("notes.txt"), "mine").unwrap();
        symlink(".picoclaw/config.json", ws.path().join("k")).unwrap();
        let sb = Sandbox::new(ws.path()).unwrap().with_protected(&home);
        assert_eq!(read(&sb, "notes.txt").unwrap(), b"mine");
        for path in [
            ".picoclaw/config.json",
            "k",
            "./.picoclaw/../.picoclaw/config.json",
        ] {
            let e = read(&sb, path).unwrap_err();
            assert!(e.is_escape(), "{path}: {e}");
        }
        let at = sb.locate(".picoclaw/evil.json", Access::Write).unwrap();
        assert!(at.dir.write_atomic(&at.path, b"x").is_err());
        assert!(!home.join("evil.json").exists());
    }

    #[test]
    fn empty_path_is_an_error() {
        let (_ws, _out, sb) = setup();
        assert!(matches!(
            sb.locate("  ", Access::Read),
            Err(SandboxError::Fs(FsError::Empty))
        ));
        let unrestricted = Sandbox::unrestricted(sb.root()).unwrap();
        assert!(matches!(
            unrestricted.locate("", Access::Read),
            Err(SandboxError::Fs(FsError::Empty))
        ));
    }
}
