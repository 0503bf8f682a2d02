//! The workspace sandbox: the one place where tool paths are resolved and checked.
//!
//! With `restrict` on (the default, `agents.defaults.restrict_to_workspace`), a path is accepted
//! only if its real location, after resolving `..` and every symlink along the way, is inside the
//! workspace. Paths that do not exist yet (a file about to be written) are checked through their
//! deepest existing ancestor, and a dangling symlink is checked through its target.

use std::path::{Component, Path, PathBuf};

/// Whether a path is about to be read or written (worded into errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a path was refused or the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    #[error(
        "path '{path}' is outside the workspace {root}; file tools are confined to the workspace \
         (agents.defaults.restrict_to_workspace)"
    )]
    Outside { path: String, root: PathBuf },
    #[error(
        "path '{path}' leads through a symlink to {target}, outside the workspace {root}; file \
         tools are confined to the workspace (agents.defaults.restrict_to_workspace)"
    )]
    SymlinkOutside {
        path: String,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("path must not be empty")]
    Empty,
    #[error("path '{path}' contains a NUL byte, which no file name can hold")]
    Nul { path: String },
    #[error("path is {len} bytes long; the limit is {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error(
        "'{path}' is a hard link ({links} names for one file): its other names may be outside the \
         workspace {root}, so file tools do not use it (agents.defaults.restrict_to_workspace)"
    )]
    HardLink {
        path: String,
        links: u64,
        root: PathBuf,
    },
    #[error("cannot use the workspace {root}: {source}")]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The longest path a tool may name (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// The workspace root and whether tools are confined to it.
#[derive(Clone, Debug)]
pub struct Sandbox {
    root: PathBuf,
    restrict: bool,
    /// Folders outside the workspace that may be read, never written (installed skills).
    read_roots: Vec<PathBuf>,
}

impl Sandbox {
    /// Creates the root folder if needed and resolves its real path.
    pub fn new(root: impl Into<PathBuf>, restrict: bool) -> Result<Self, SandboxError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|source| SandboxError::Root {
            root: root.clone(),
            source,
        })?;
        let root = root
            .canonicalize()
            .map_err(|source| SandboxError::Root { root, source })?;
        Ok(Self {
            root,
            restrict,
            read_roots: Vec::new(),
        })
    }

    /// Also lets tools read (never write) beneath `dir`: the folders of installed skills, whose
    /// SKILL.md the agent reads when it needs one. A folder that does not exist is skipped.
    pub fn with_read_root(mut self, dir: impl AsRef<Path>) -> Self {
        if let Ok(real) = dir.as_ref().canonicalize() {
            self.read_roots.push(real);
        }
        self
    }

    /// The workspace's real path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether paths are confined to the workspace.
    pub fn restricted(&self) -> bool {
        self.restrict
    }

    /// Resolves `path` (relative to the workspace, or absolute) for `access`, refusing anything
    /// outside the workspace when restricted. A literal `~` is just a name.
    pub fn resolve(&self, path: &str, access: Access) -> Result<PathBuf, SandboxError> {
        if path.trim().is_empty() {
            return Err(SandboxError::Empty);
        }
        if path.contains('\0') {
            return Err(SandboxError::Nul {
                path: path.replace('\0', "\\0"),
            });
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(SandboxError::TooLong {
                len: path.len(),
                max: MAX_PATH_BYTES,
            });
        }
        let joined = if Path::new(path).is_absolute() {
            PathBuf::from(path)
        } else {
            self.root.join(path)
        };
        let full = normalize(&joined);
        if !self.restrict {
            return Ok(full);
        }
        // The folder this path must stay in: the workspace, or for reading a read-only root.
        let base = if full.starts_with(&self.root) {
            &self.root
        } else {
            match self
                .read_roots
                .iter()
                .find(|r| access == Access::Read && full.starts_with(r))
            {
                Some(r) => r,
                None => {
                    return Err(SandboxError::Outside {
                        path: path.to_owned(),
                        root: self.root.clone(),
                    });
                }
            }
        };
        // Walk up to the deepest part of the path that exists (a symlink counts, even dangling).
        let mut existing = full.as_path();
        loop {
            match std::fs::symlink_metadata(existing) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match existing.parent() {
                    Some(parent) => existing = parent,
                    None => return Ok(full),
                },
                Err(source) => {
                    return Err(SandboxError::Io {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        let rest = full.strip_prefix(existing).unwrap_or(Path::new(""));
        let real = match existing.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink: judge it by where it points.
                let target = std::fs::read_link(existing).map_err(|source| SandboxError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                let base = existing.parent().unwrap_or(&self.root);
                normalize(&base.join(target))
            }
            Err(source) => {
                return Err(SandboxError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // (`join` of an empty path would add a trailing slash.)
        let resolved = if rest.as_os_str().is_empty() {
            real
        } else {
            real.join(rest)
        };
        if !resolved.starts_with(base) {
            return Err(SandboxError::SymlinkOutside {
                path: path.to_owned(),
                target: resolved,
                root: self.root.clone(),
            });
        }
        // A hard link has no "target" to check: the same file may also be named outside the
        // workspace (`ln /home/me/.ssh/id_rsa key`), so a regular file with more than one name is
        // not read or written.
        if let Ok(meta) = std::fs::metadata(&resolved) {
            use std::os::unix::fs::MetadataExt;
            if meta.is_file() && meta.nlink() > 1 {
                return Err(SandboxError::HardLink {
                    path: path.to_owned(),
                    links: meta.nlink(),
                    root: self.root.clone(),
                });
            }
        }
        Ok(resolved)
    }

    /// `path` relative to the workspace for display, or as given when outside.
    pub fn display(&self, path: &Path) -> String {
        match path.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }
}

/// Resolves `.` and `..` lexically (no filesystem access). `..` at the root stays at the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
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
        let sb = Sandbox::new(ws.path(), true).unwrap();
        (ws, outside, sb)
    }

    fn refused(sb: &Sandbox, path: &str) -> String {
        match sb.resolve(path, Access::Read) {
            Ok(p) => panic!("{path} resolved to {}", p.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn relative_paths_inside_are_fine() {
        let (_ws, _out, sb) = setup();
        let p = sb.resolve("notes/new/file.txt", Access::Write).unwrap();
        assert_eq!(p, sb.root().join("notes/new/file.txt"));
        assert_eq!(
            sb.resolve("a/../b.txt", Access::Read).unwrap(),
            sb.root().join("b.txt")
        );
        assert_eq!(sb.resolve(".", Access::Read).unwrap(), sb.root());
        // `~` is a plain name, not the home folder.
        assert_eq!(
            sb.resolve("~/x", Access::Read).unwrap(),
            sb.root().join("~/x")
        );
        let abs = sb.root().join("inside.txt");
        assert_eq!(
            sb.resolve(abs.to_str().unwrap(), Access::Read).unwrap(),
            abs
        );
    }

    #[test]
    fn dot_dot_escapes_are_refused() {
        let (_ws, _out, sb) = setup();
        let msg = refused(&sb, "../x");
        assert!(msg.contains("outside the workspace"), "{msg}");
        assert!(msg.contains("restrict_to_workspace"), "{msg}");
        refused(&sb, "a/../../x");
        refused(&sb, "a/b/../../../../../../etc/passwd");
    }

    #[test]
    fn absolute_paths_outside_are_refused() {
        let (_ws, out, sb) = setup();
        refused(&sb, "/etc/passwd");
        refused(&sb, out.path().join("secret.txt").to_str().unwrap());
    }

    #[test]
    fn symlinks_pointing_out_are_refused() {
        let (ws, out, sb) = setup();
        symlink(out.path().join("secret.txt"), ws.path().join("file-link")).unwrap();
        symlink(out.path(), ws.path().join("dir-link")).unwrap();
        symlink(out.path().join("not-yet"), ws.path().join("dangling")).unwrap();
        let msg = refused(&sb, "file-link");
        assert!(msg.contains("symlink"), "{msg}");
        refused(&sb, "dir-link/secret.txt");
        refused(&sb, "dir-link/new-file.txt");
        refused(&sb, "dangling");
        assert!(sb.resolve("dangling", Access::Write).is_err());
    }

    #[test]
    fn symlinks_inside_are_followed() {
        let (ws, _out, sb) = setup();
        std::fs::create_dir(ws.path().join("real")).unwrap();
        std::fs::write(ws.path().join("real/a.txt"), "a").unwrap();
        symlink(ws.path().join("real"), ws.path().join("alias")).unwrap();
        let p = sb.resolve("alias/a.txt", Access::Read).unwrap();
        assert_eq!(p, sb.root().join("real/a.txt"));
    }

    #[test]
    fn unrestricted_allows_everything() {
        let ws = tempfile::tempdir().unwrap();
        let sb = Sandbox::new(ws.path(), false).unwrap();
        assert_eq!(
            sb.resolve("/etc/passwd", Access::Read).unwrap(),
            PathBuf::from("/etc/passwd")
        );
        assert_eq!(
            sb.resolve("x.txt", Access::Read).unwrap(),
            sb.root().join("x.txt")
        );
        assert!(!sb.restricted());
    }

    #[test]
    fn empty_path_is_an_error() {
        let (_ws, _out, sb) = setup();
        assert!(matches!(
            sb.resolve("  ", Access::Read),
            Err(SandboxError::Empty)
        ));
    }
}
