//! Files opened beneath a directory handle, so that no path a model writes — `..`, an absolute
//! path, a symbolic link, a link swapped in while a tool runs, `/proc/self/root` — can reach a file
//! outside the folder.
//!
//! A [`WorkspaceDir`] holds an open descriptor of its folder. Every file is opened relative to it
//! with cap-std, which uses `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` where the kernel
//! has it (Linux 5.6+) and otherwise walks the path one component at a time with `O_NOFOLLOW`,
//! resolving links itself and refusing any step that would leave the folder. No path string is
//! checked and then opened: the kernel resolves the path and the check is the resolution.
//!
//! On top of that: writes never follow a final symbolic link (a link is refused, not replaced or
//! written through); new files are created exclusively; reads open without blocking and refuse
//! FIFOs, sockets and devices by their type; a regular file with more than one name (a hard link,
//! whose other names may be anywhere) is neither read nor appended to. Everything here blocks:
//! async callers run it through [`off_thread`].

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt, OpenOptionsSyncExt};
use cap_std::fs::{Dir, OpenOptions};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The longest path a caller may name (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a file could not be used. The messages name the path as the caller gave it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("path must not be empty")]
    Empty,
    #[error("path '{path}' contains a NUL byte, which no file name can hold")]
    Nul { path: String },
    #[error("path is {len} bytes long; the limit is {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("'{path}' is outside {}", root.display())]
    Outside { path: String, root: PathBuf },
    #[error("'{path}' leads outside {} (through '..' or a symbolic link)", root.display())]
    Escapes { path: String, root: PathBuf },
    #[error("'{path}' is a directory")]
    IsDir { path: String },
    #[error("'{path}' is not a directory (or a folder on the way is not)")]
    NotDir { path: String },
    #[error("'{path}' is a {kind}, not a regular file; only regular files are read or written")]
    NotRegular { path: String, kind: &'static str },
    #[error(
        "'{path}' is a hard link ({links} names for one file): its other names may be outside {}, \
         so it is not used",
        root.display()
    )]
    HardLink {
        path: String,
        links: u64,
        root: PathBuf,
    },
    #[error(
        "'{path}' is a symbolic link; writes do not follow links: name the file it points to \
         instead"
    )]
    Symlink { path: String },
    #[error("'{path}' is {size} bytes; the limit is {max} bytes")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("'{path}' already exists")]
    Exists { path: String },
    #[error("'{path}': no such file or directory")]
    NotFound { path: String },
    #[error("'{path}': permission denied")]
    PermissionDenied { path: String },
    #[error("the file operation took longer than {0:?} and was abandoned")]
    TimedOut(Duration),
    #[error("'{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// Whether the path was refused for leaving the folder (as opposed to a missing file or an
    /// I/O failure).
    pub fn is_escape(&self) -> bool {
        matches!(self, FsError::Outside { .. } | FsError::Escapes { .. })
    }

    /// Whether the file (or a folder on its way) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::NotFound { .. })
    }
}

/// What the opening call asked for, to word errors (a final-link `ELOOP` means "symlink" only
/// when links were not to be followed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Yes,
    No,
}

/// A folder held open by its descriptor; every path is resolved beneath it.
pub struct WorkspaceDir {
    /// The folder's real path (for messages, and to accept absolute paths that name it).
    root: PathBuf,
    /// Other absolute spellings of the folder (the configured path before symlinks resolved).
    aliases: Vec<PathBuf>,
    dir: Dir,
    /// Folders never opened, judged by the path the kernel reports for what was opened (so a
    /// link swapped in between cannot help): picoclaw's home when it lies beneath this folder.
    closed: Vec<PathBuf>,
    /// Folders inside a closed one that stay open (the workspace inside picoclaw's home).
    reopened: Vec<PathBuf>,
}

impl std::fmt::Debug for WorkspaceDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceDir")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// One entry of a folder listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// A folder, or a link to a folder beneath the same root.
    pub is_dir: bool,
}

/// A regular file opened for reading, with its size at opening.
#[derive(Debug)]
pub struct OpenedFile {
    pub file: std::fs::File,
    pub len: u64,
}

impl WorkspaceDir {
    /// Creates the folder (and its parents) if needed, then opens it.
    pub fn create(root: impl AsRef<Path>) -> io::Result<Self> {
        std::fs::create_dir_all(root.as_ref())?;
        Self::open(root)
    }

    /// Opens an existing folder. The folder itself may be reached through symlinks (the operator
    /// chose it); only what is beneath it is confined. Its [`root`](Self::root) is the path the
    /// kernel reports for the opened folder, not a resolution done before opening.
    pub fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        let given = root.as_ref();
        let dir = Dir::open_ambient_dir(given, cap_std::ambient_authority())?;
        let real = match fd_path(&dir) {
            Some(real) => real,
            None => given.canonicalize()?,
        };
        let mut aliases = Vec::new();
        if given.is_absolute() {
            let lexical = normalize(given);
            if lexical != real {
                aliases.push(lexical);
            }
        }
        Ok(Self {
            root: real,
            aliases,
            dir,
            closed: Vec::new(),
            reopened: Vec::new(),
        })
    }

    /// Never opens anything whose real path lies beneath one of `folders` (checked on the
    /// opened descriptor, so it holds against links swapped in at any moment).
    /// `except` stays usable inside them (the workspace inside picoclaw's home).
    pub fn with_closed(
        mut self,
        folders: impl IntoIterator<Item = PathBuf>,
        except: impl IntoIterator<Item = PathBuf>,
    ) -> Self {
        self.closed.extend(folders);
        self.reopened.extend(except);
        self
    }

    /// Refuses `opened` when its real path is in a closed folder.
    fn check_closed(&self, shown: &str, opened: &impl std::os::fd::AsRawFd) -> Result<(), FsError> {
        if self.closed.is_empty() {
            return Ok(());
        }
        let real = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()));
        match real {
            Ok(real)
                if !self.closed.iter().any(|c| real.starts_with(c))
                    || self.reopened.iter().any(|o| real.starts_with(o)) =>
            {
                Ok(())
            }
            // Closed, or unknowable (no /proc): refused.
            _ => Err(FsError::Escapes {
                path: shown.to_owned(),
                root: self.root.clone(),
            }),
        }
    }

    /// The folder's real path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cap-std handle, for operations this type does not wrap.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// Whether `path` (absolute) names something beneath this folder, by its spelling alone.
    pub fn contains(&self, path: &Path) -> bool {
        std::iter::once(&self.root)
            .chain(&self.aliases)
            .any(|base| path.starts_with(base))
    }

    /// `path` relative to the folder for display, or as given when it is not beneath it.
    pub fn display(&self, path: &Path) -> String {
        for base in std::iter::once(&self.root).chain(&self.aliases) {
            if let Ok(rel) = path.strip_prefix(base) {
                return if rel.as_os_str().is_empty() {
                    ".".to_owned()
                } else {
                    rel.display().to_string()
                };
            }
        }
        path.display().to_string()
    }

    /// The path to open beneath the handle: relative paths as they are (`..` included — the
    /// kernel refuses it where it would leave), absolute paths only when they spell a place
    /// beneath the folder. A literal `~` is just a name.
    pub fn relative(&self, path: &str) -> Result<PathBuf, FsError> {
        check_text(path)?;
        let p = Path::new(path);
        if !p.is_absolute() {
            return Ok(p.to_path_buf());
        }
        for base in std::iter::once(&self.root).chain(&self.aliases) {
            if let Ok(rel) = p.strip_prefix(base) {
                return Ok(if rel.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    rel.to_path_buf()
                });
            }
        }
        Err(FsError::Outside {
            path: path.to_owned(),
            root: self.root.clone(),
        })
    }

    fn error(&self, shown: &Path, err: io::Error, follow: Follow) -> FsError {
        let path = shown.display().to_string();
        // cap-std reports a resolution that would leave the folder (openat2's EXDEV, or its own
        // walk) as a PermissionDenied error without an OS code.
        if err.kind() == io::ErrorKind::PermissionDenied && err.raw_os_error().is_none() {
            return FsError::Escapes {
                path,
                root: self.root.clone(),
            };
        }
        match err.raw_os_error() {
            Some(libc::ENOENT) => FsError::NotFound { path },
            Some(libc::EACCES) | Some(libc::EPERM) => FsError::PermissionDenied { path },
            Some(libc::ENOTDIR) => FsError::NotDir { path },
            Some(libc::EISDIR) => FsError::IsDir { path },
            Some(libc::EEXIST) => FsError::Exists { path },
            Some(libc::ELOOP) if follow == Follow::No => FsError::Symlink { path },
            Some(libc::EXDEV) => FsError::Escapes {
                path,
                root: self.root.clone(),
            },
            // A FIFO with no reader opened for writing without blocking, or a device.
            Some(libc::ENXIO) => FsError::NotRegular {
                path,
                kind: "named pipe or device",
            },
            _ => FsError::Io { path, source: err },
        }
    }

    /// Opens a regular file for reading (following links that stay beneath the folder).
    pub fn open_file(&self, path: &str) -> Result<OpenedFile, FsError> {
        self.open_regular(path, Follow::Yes)
    }

    /// Opens a regular file for reading; a final symbolic link is refused, even one that stays
    /// beneath the folder (for files picoclaw itself created, such as downloads).
    pub fn open_file_no_follow(&self, path: &str) -> Result<OpenedFile, FsError> {
        self.open_regular(path, Follow::No)
    }

    fn open_regular(&self, path: &str, follow: Follow) -> Result<OpenedFile, FsError> {
        let rel = self.relative(path)?;
        let mut options = OpenOptions::new();
        options.read(true).nonblock(true);
        if follow == Follow::No {
            options.follow(FollowSymlinks::No);
        }
        let file = self
            .dir
            .open_with(&rel, &options)
            .map_err(|e| self.error(Path::new(path), e, follow))?
            .into_std();
        self.check_closed(path, &file)?;
        let meta = file
            .metadata()
            .map_err(|e| self.error(Path::new(path), e, follow))?;
        self.check_regular(path, &meta)?;
        Ok(OpenedFile {
            file,
            len: meta.len(),
        })
    }

    fn check_regular(&self, path: &str, meta: &std::fs::Metadata) -> Result<(), FsError> {
        let kind = meta.file_type();
        if kind.is_dir() {
            return Err(FsError::IsDir {
                path: path.to_owned(),
            });
        }
        if !kind.is_file() {
            return Err(FsError::NotRegular {
                path: path.to_owned(),
                kind: kind_name(&kind),
            });
        }
        if meta.nlink() > 1 {
            return Err(FsError::HardLink {
                path: path.to_owned(),
                links: meta.nlink(),
                root: self.root.clone(),
            });
        }
        Ok(())
    }

    /// The whole content of a regular file, refused when larger than `max` bytes.
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, FsError> {
        read_whole(self.open_file(path)?, path, max)
    }

    /// A text file's content (invalid UTF-8 replaced), or `None` when it does not exist. Files
    /// larger than `max` bytes are cut at `max` (on a character boundary).
    pub fn read_text_if_exists(&self, path: &str, max: u64) -> Result<Option<String>, FsError> {
        let OpenedFile { file, .. } = match self.open_file(path) {
            Ok(f) => f,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        file.take(max)
            .read_to_end(&mut buf)
            .map_err(|e| self.error(Path::new(path), e, Follow::Yes))?;
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        // A character cut at `max` became U+FFFD: drop it.
        if buf.len() as u64 == max && text.ends_with('\u{FFFD}') {
            text.pop();
        }
        Ok(Some(text))
    }

    /// Metadata of what `path` names, following links beneath the folder.
    pub fn metadata(&self, path: &str) -> Result<std::fs::Metadata, FsError> {
        let rel = self.relative(path)?;
        // A read-only non-blocking open resolves beneath the folder like every other call, and
        // the metadata comes from the descriptor (no second lookup of the path).
        let mut options = OpenOptions::new();
        options.read(true).nonblock(true);
        let file = self
            .dir
            .open_with(&rel, &options)
            .map_err(|e| self.error(Path::new(path), e, Follow::Yes))?
            .into_std();
        self.check_closed(path, &file)?;
        file.metadata()
            .map_err(|e| self.error(Path::new(path), e, Follow::Yes))
    }

    /// The parent folder of `rel` (created when `create`) and the final name, which must be a
    /// plain name (not `.`, `..` or empty).
    fn parent_and_name(
        &self,
        path: &str,
        rel: &Path,
        create: bool,
    ) -> Result<(Dir, OsString), FsError> {
        let shown = Path::new(path);
        let name = match rel.components().next_back() {
            Some(Component::Normal(name)) => name.to_os_string(),
            _ => {
                return Err(FsError::IsDir {
                    path: path.to_owned(),
                });
            }
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        // Creating may fail because something already has the name (a link, maybe one leading
        // out): opening the folder then says what is wrong, or finds it usable after all. A
        // folder in a closed one is refused before it is made.
        let created = if create && parent != Path::new(".") {
            match self.create_dirs(path, parent) {
                Err(MkdirError::Closed(e)) => return Err(e),
                Err(MkdirError::Io(e)) => Err(e),
                Ok(()) => Ok(()),
            }
        } else {
            Ok(())
        };
        match self.dir.open_dir(parent) {
            Ok(dir) => {
                self.check_closed(path, &dir)?;
                Ok((dir, name))
            }
            // Opening says best what is in the way (a link leading out, a file); creating's error
            // tells more only when there was nothing to open.
            Err(open_err) => {
                let err = match created {
                    Err(create_err) if open_err.kind() == io::ErrorKind::NotFound => create_err,
                    _ => open_err,
                };
                Err(self.error(shown, err, Follow::Yes))
            }
        }
    }

    /// Replaces (or creates) a file through a temporary file in the same folder and a rename, so
    /// it is never seen half-written. Creates missing folders. A final symbolic link is refused,
    /// not followed; an existing file keeps its permissions.
    pub fn write_atomic(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let rel = self.relative(path)?;
        let shown = Path::new(path);
        let (dir, name) = self.parent_and_name(path, &rel, true)?;
        let keep_mode = match dir.symlink_metadata(&name) {
            Ok(meta) => {
                let kind = meta.file_type();
                if kind.is_dir() {
                    return Err(FsError::IsDir {
                        path: path.to_owned(),
                    });
                }
                if kind.is_symlink() {
                    return Err(FsError::Symlink {
                        path: path.to_owned(),
                    });
                }
                if !kind.is_file() {
                    return Err(FsError::NotRegular {
                        path: path.to_owned(),
                        kind: "special file",
                    });
                }
                // Replacing the name would be harmless, but a file with several names is not
                // used at all, for reading or writing alike.
                if cap_fs_ext::MetadataExt::nlink(&meta) > 1 {
                    return Err(FsError::HardLink {
                        path: path.to_owned(),
                        links: cap_fs_ext::MetadataExt::nlink(&meta),
                        root: self.root.clone(),
                    });
                }
                Some(cap_std::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(shown, e, Follow::No)),
        };
        // Unique per call: concurrent tool calls may target one file.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = format!(".{}.{}.{n}.tmp", name.to_string_lossy(), std::process::id());
        let result = (|| -> io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create_new(true);
            let mut file = dir.open_with(&tmp, &options)?.into_std();
            file.write_all(data)?;
            if let Some(mode) = keep_mode {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            file.sync_all()?;
            dir.rename(&tmp, &dir, &name)
        })();
        if let Err(e) = result {
            let _ = dir.remove_file(&tmp);
            return Err(self.error(shown, e, Follow::No));
        }
        Ok(())
    }

    /// Appends to a regular file, creating it (and its folders) if missing. A final symbolic
    /// link, a hard link, a FIFO or a device is refused before anything is written.
    pub fn append(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        self.append_file(path, data).map(drop)
    }

    fn append_file(&self, path: &str, data: &[u8]) -> Result<std::fs::File, FsError> {
        let rel = self.relative(path)?;
        let shown = Path::new(path);
        let (dir, name) = self.parent_and_name(path, &rel, true)?;
        let mut options = OpenOptions::new();
        options
            .append(true)
            .create(true)
            .nonblock(true)
            .follow(FollowSymlinks::No);
        let mut file = dir
            .open_with(&name, &options)
            .map_err(|e| self.error(shown, e, Follow::No))?
            .into_std();
        let meta = file
            .metadata()
            .map_err(|e| self.error(shown, e, Follow::No))?;
        self.check_regular(path, &meta)?;
        file.write_all(data)
            .map_err(|e| self.error(shown, e, Follow::No))?;
        Ok(file)
    }

    /// [`append`](Self::append), then waits until the data is on disk.
    pub fn append_durably(&self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let file = self.append_file(path, data)?;
        file.sync_data()
            .map_err(|e| self.error(Path::new(path), e, Follow::No))
    }

    /// Creates a new file exclusively (never an existing name, never through a link), creating
    /// missing folders; for downloads that must not land on a planted link.
    pub fn create_new(&self, path: &str) -> Result<std::fs::File, FsError> {
        let rel = self.relative(path)?;
        let shown = Path::new(path);
        let (dir, name) = self.parent_and_name(path, &rel, true)?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        dir.open_with(&name, &options)
            .map(cap_std::fs::File::into_std)
            .map_err(|e| self.error(shown, e, Follow::No))
    }

    /// Removes a file (not a folder); a final link is removed itself, never its target.
    pub fn remove_file(&self, path: &str) -> Result<(), FsError> {
        let rel = self.relative(path)?;
        let (dir, name) = self.parent_and_name(path, &rel, false)?;
        dir.remove_file(&name)
            .map_err(|e| self.error(Path::new(path), e, Follow::No))
    }

    /// The entries of a folder (following links beneath the folder), unsorted.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, FsError> {
        let rel = self.relative(path)?;
        let shown = Path::new(path);
        let dir = self
            .dir
            .open_dir(&rel)
            .map_err(|e| self.error(shown, e, Follow::Yes))?;
        self.check_closed(path, &dir)?;
        let entries = dir
            .entries()
            .map_err(|e| self.error(shown, e, Follow::Yes))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.error(shown, e, Follow::Yes))?;
            let name = entry.file_name();
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_dir() => true,
                // A link counts as a folder only when it leads to one beneath the root.
                Ok(t) if t.is_symlink() => dir.metadata(&name).is_ok_and(|m| m.is_dir()),
                _ => false,
            };
            out.push(Entry {
                name: name.to_string_lossy().into_owned(),
                is_dir,
            });
        }
        Ok(out)
    }

    /// Creates a folder and its parents beneath the root; none inside a closed folder.
    pub fn create_dir_all(&self, path: &str) -> Result<(), FsError> {
        let rel = self.relative(path)?;
        self.create_dirs(path, &rel).map_err(|e| match e {
            MkdirError::Closed(e) => e,
            MkdirError::Io(e) => self.error(Path::new(path), e, Follow::Yes),
        })
    }

    /// Creates `rel` and its missing parents one at a time, each checked before it is made: the
    /// path it would have (its parent's real path, from the opened parent) must not be in a
    /// closed folder. Existing folders are only passed through, as when opening.
    fn create_dirs(&self, shown: &str, rel: &Path) -> Result<(), MkdirError> {
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let parent = if prefix.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                prefix.clone()
            };
            prefix.push(component);
            let Component::Normal(name) = component else {
                continue; // `..`, `.` or the root: nothing to create; the kernel resolves it.
            };
            match self.dir.open_dir(&prefix) {
                Ok(_) => continue,
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(MkdirError::Io(e)),
                Err(_) => {}
            }
            let parent_dir = self.dir.open_dir(&parent).map_err(MkdirError::Io)?;
            // Unknowable (no /proc) counts as closed, as in `check_closed`.
            if !self.closed.is_empty()
                && fd_path(&parent_dir).is_none_or(|real| self.is_closed(&real.join(name)))
            {
                return Err(MkdirError::Closed(FsError::Escapes {
                    path: shown.to_owned(),
                    root: self.root.clone(),
                }));
            }
            match parent_dir.create_dir(name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(MkdirError::Io(e)),
            }
        }
        Ok(())
    }

    /// Whether the real path `real` lies in a closed folder (and not in a reopened one).
    fn is_closed(&self, real: &Path) -> bool {
        self.closed.iter().any(|c| real.starts_with(c))
            && !self.reopened.iter().any(|o| real.starts_with(o))
    }

    /// [`subdir`](Self::subdir), creating the folder (and its parents) first.
    pub fn create_subdir(&self, path: &str) -> Result<WorkspaceDir, FsError> {
        self.create_dir_all(path)?;
        self.subdir(path)
    }

    /// A handle on an existing folder beneath this one, itself confining everything beneath
    /// it. Its [`root`](Self::root) is the real path the kernel reports.
    pub fn subdir(&self, path: &str) -> Result<WorkspaceDir, FsError> {
        let rel = self.relative(path)?;
        let shown = Path::new(path);
        let dir = self
            .dir
            .open_dir(&rel)
            .map_err(|e| self.error(shown, e, Follow::Yes))?;
        self.check_closed(path, &dir)?;
        let root = fd_path(&dir).unwrap_or_else(|| normalize(&self.root.join(&rel)));
        let aliases = self
            .aliases
            .iter()
            .map(|a| normalize(&a.join(&rel)))
            .collect();
        Ok(WorkspaceDir {
            root,
            aliases,
            dir,
            closed: self.closed.clone(),
            reopened: self.reopened.clone(),
        })
    }
}

/// Reads a whole regular file (at most `max` bytes) that lies beneath `root`, named by its
/// absolute path or relative to `root`; the final name is not followed. For files picoclaw wrote
/// itself into a folder the model can also write (channel downloads in the workspace).
pub fn read_beneath(root: &Path, path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
    let dir = WorkspaceDir::open(root).map_err(|source| FsError::Io {
        path: root.display().to_string(),
        source,
    })?;
    let shown = path.to_string_lossy();
    read_whole(dir.open_file_no_follow(&shown)?, &shown, max)
}

/// All of an opened file, at most `max` bytes (it may have grown since it was measured).
fn read_whole(opened: OpenedFile, shown: &str, max: u64) -> Result<Vec<u8>, FsError> {
    let OpenedFile { file, len } = opened;
    let too_large = |size: u64| FsError::TooLarge {
        path: shown.to_owned(),
        size,
        max,
    };
    if len > max {
        return Err(too_large(len));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FsError::Io {
            path: shown.to_owned(),
            source,
        })?;
    if buf.len() as u64 > max {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

/// The path the kernel has for an open folder (`/proc/self/fd/N`), where /proc is mounted.
/// Why creating folders failed: a closed folder was in the way, or the system said no.
enum MkdirError {
    Closed(FsError),
    Io(io::Error),
}

fn fd_path(dir: &Dir) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .ok()
        .filter(|p| p.is_absolute())
}

fn check_text(path: &str) -> Result<(), FsError> {
    if path.trim().is_empty() {
        return Err(FsError::Empty);
    }
    if path.contains('\0') {
        return Err(FsError::Nul {
            path: path.replace('\0', "\\0"),
        });
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(FsError::TooLong {
            len: path.len(),
            max: MAX_PATH_BYTES,
        });
    }
    Ok(())
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    if kind.is_fifo() {
        "named pipe (FIFO)"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Resolves `.` and `..` lexically (no filesystem access). `..` at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
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

/// Runs blocking file work on tokio's blocking pool, so a slow disk, a network mount or a
/// surprise in the file system never stalls the async workers; gives up waiting after `limit`.
pub async fn off_thread<T, F>(limit: Duration, work: F) -> Result<T, FsError>
where
    F: FnOnce() -> Result<T, FsError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(work)).await {
        Err(_) => Err(FsError::TimedOut(limit)),
        Ok(Err(join)) => Err(FsError::Io {
            path: String::new(),
            source: io::Error::other(join),
        }),
        Ok(Ok(result)) => result,
    }
}
