//! A property target for picoclaw-fs: whatever path strings and operations the model chooses,
//! nothing outside the workspace, and nothing in a closed folder inside it, is read, written,
//! created or removed.
//!
//! The tree (made once per process in a temp folder):
//!
//! ```text
//! base/outside/secret            "OUTSIDE-SECRET"      (outside the workspace)
//! base/ws/                       the WorkspaceDir
//! base/ws/a/b/file.txt           inside
//! base/ws/closed/secret          "CLOSED-SECRET"       (a closed folder, as picoclaw's home)
//! base/ws/closed/open/file.txt   inside again (reopened, as the workspace inside the home)
//! base/ws/out     -> ../outside  links leaving the workspace, relative and absolute
//! base/ws/abs     -> base/outside
//! base/ws/sec     -> ../outside/secret
//! base/ws/newout  -> ../outside/new  (dangling: a write through it would create outside)
//! base/ws/cl      -> closed      a link into the closed folder
//! base/ws/a/up    -> ..          links that stay inside
//! base/ws/a/in    -> b
//! base/ws/loop    -> loop
//! ```
//!
//! The input is a list of operations separated by NUL bytes: a byte choosing the operation,
//! then the path. In the path, `@OUT@` stands for the outside folder's absolute path, `@WS@` for
//! the workspace's and `@CL@` for the closed folder's. After every operation the outside folder
//! and the closed folder hold exactly what they held at the start, and no read returned
//! their secrets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_fs::WorkspaceDir;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const OUTSIDE_SECRET: &[u8] = b"OUTSIDE-SECRET";
const CLOSED_SECRET: &[u8] = b"CLOSED-SECRET";

struct Tree {
    _base: tempfile::TempDir,
    outside: PathBuf,
    ws_path: PathBuf,
    closed: PathBuf,
    ws: WorkspaceDir,
}

fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let base = must(tempfile::tempdir(), "a temp folder");
        let root = must(base.path().canonicalize(), "the temp folder's real path");
        let outside = root.join("outside");
        let ws_path = root.join("ws");
        let closed = ws_path.join("closed");
        must(std::fs::create_dir_all(&outside), "outside");
        must(
            std::fs::write(outside.join("secret"), OUTSIDE_SECRET),
            "secret",
        );
        must(std::fs::create_dir_all(ws_path.join("a/b")), "ws/a/b");
        must(
            std::fs::write(ws_path.join("a/b/file.txt"), b"inside"),
            "file",
        );
        must(std::fs::create_dir_all(closed.join("open")), "closed/open");
        must(
            std::fs::write(closed.join("secret"), CLOSED_SECRET),
            "closed secret",
        );
        must(
            std::fs::write(closed.join("open/file.txt"), b"reopened"),
            "reopened",
        );
        let ws = must(WorkspaceDir::open(&ws_path), "the workspace")
            .with_closed([closed.clone()], [closed.join("open")]);
        let tree = Tree {
            _base: base,
            outside,
            ws_path,
            closed,
            ws,
        };
        restore_links(&tree);
        tree
    })
}

/// The links, made again when an operation removed or replaced one.
fn restore_links(t: &Tree) {
    let links: [(&str, PathBuf); 9] = [
        ("out", PathBuf::from("../outside")),
        ("abs", t.outside.clone()),
        ("sec", PathBuf::from("../outside/secret")),
        ("newout", PathBuf::from("../outside/new")),
        ("cl", PathBuf::from("closed")),
        ("a/up", PathBuf::from("..")),
        ("a/in", PathBuf::from("b")),
        ("loop", PathBuf::from("loop")),
        ("closed/open/back", PathBuf::from("../secret")),
    ];
    for (name, target) in links {
        let at = t.ws_path.join(name);
        if std::fs::symlink_metadata(&at).is_err() {
            let _ = symlink(&target, &at);
        }
    }
}

/// Names and contents beneath `dir` (links not followed).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let meta = must(std::fs::symlink_metadata(&p), "metadata");
            if meta.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((p, bytes));
            } else {
                out.push((p, b"(link or special)".to_vec()));
            }
        }
    }
    out.sort();
    out
}

/// What the closed folder must keep: everything but its reopened part.
fn closed_snapshot(t: &Tree) -> Vec<(PathBuf, Vec<u8>)> {
    let open = t.closed.join("open");
    snapshot(&t.closed)
        .into_iter()
        .filter(|(p, _)| !p.starts_with(&open))
        .collect()
}

fn holds_secret(bytes: &[u8]) -> bool {
    bytes
        .windows(OUTSIDE_SECRET.len())
        .any(|w| w == OUTSIDE_SECRET)
        || bytes
            .windows(CLOSED_SECRET.len())
            .any(|w| w == CLOSED_SECRET)
}

fuzz_target!(|data: &[u8]| {
    let t = tree();
    restore_links(t);
    let outside_before = snapshot(&t.outside);
    let closed_before = closed_snapshot(t);
    for op in data.split(|&b| b == 0).take(16) {
        let Some((&which, path)) = op.split_first() else {
            continue;
        };
        let path = String::from_utf8_lossy(path)
            .replace("@OUT@", &t.outside.to_string_lossy())
            .replace("@WS@", &t.ws_path.to_string_lossy())
            .replace("@CL@", &t.closed.to_string_lossy());
        let ws = &t.ws;
        // Written data never holds a secret, so a read that does found one.
        let data = b"written by the fuzzer";
        match which % 14 {
            0 => {
                if let Ok(bytes) = ws.read(&path, 1 << 16) {
                    assert!(!holds_secret(&bytes), "read a secret through {path:?}");
                }
            }
            1 => {
                if let Ok(Some(text)) = ws.read_text_if_exists(&path, 1 << 16) {
                    assert!(
                        !holds_secret(text.as_bytes()),
                        "read a secret through {path:?}"
                    );
                }
            }
            2 => {
                if let Ok(mut opened) = ws.open_file(&path) {
                    let mut bytes = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut opened.file, &mut bytes);
                    assert!(!holds_secret(&bytes), "opened a secret through {path:?}");
                }
            }
            3 => {
                if let Ok(mut opened) = ws.open_file_no_follow(&path) {
                    let mut bytes = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut opened.file, &mut bytes);
                    assert!(!holds_secret(&bytes), "opened a secret through {path:?}");
                }
            }
            4 => {
                let _ = ws.metadata(&path);
            }
            5 => {
                let _ = ws.write_atomic(&path, data);
            }
            6 => {
                let _ = ws.append(&path, data);
            }
            7 => {
                let _ = ws.create_new(&path);
            }
            8 => {
                let _ = ws.remove_file(&path);
            }
            9 => {
                let _ = ws.list(&path);
            }
            10 => {
                let _ = ws.create_dir_all(&path);
            }
            11 => {
                // A handle on a subfolder confines as the workspace does.
                if let Ok(sub) = ws.subdir(&path) {
                    assert!(
                        sub.root().starts_with(&t.ws_path),
                        "a subfolder outside: {}",
                        sub.root().display()
                    );
                    if let Ok(bytes) = sub.read("secret", 1 << 16) {
                        assert!(!holds_secret(&bytes), "read a secret beneath {path:?}");
                    }
                    let _ = sub.write_atomic("new", data);
                }
            }
            12 => {
                if let Ok(rel) = ws.relative(&path) {
                    assert!(!rel.is_absolute(), "relative() gave {}", rel.display());
                }
            }
            _ => {
                if let Ok(bytes) = picoclaw_fs::read_beneath(&t.ws_path, Path::new(&path), 1 << 16)
                {
                    assert!(
                        !bytes
                            .windows(OUTSIDE_SECRET.len())
                            .any(|w| w == OUTSIDE_SECRET),
                        "read_beneath read the outside secret through {path:?}"
                    );
                }
            }
        }
        assert_eq!(
            snapshot(&t.outside),
            outside_before,
            "the outside folder changed after {which} {path:?}"
        );
        assert_eq!(
            closed_snapshot(t),
            closed_before,
            "the closed folder changed after {which} {path:?}"
        );
    }
});
