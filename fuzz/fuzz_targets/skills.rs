//! Skills from outside: SKILL.md (its YAML front matter), manifest.json, and the archives the
//! installer downloads (.tar.gz, .zip). The first byte picks the parser, the rest is the file.
//! An archive is unpacked into an empty folder, then loaded as a skill the way the installer
//! checks it; the folder beside it must stay as it was (nothing unpacked outside).
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_skills::{Skill, Source};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Base {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a temp folder: {e}"));
        let path = dir.path().to_path_buf();
        std::fs::create_dir_all(path.join("beside"))
            .and_then(|()| std::fs::write(path.join("beside/keep"), b"keep"))
            .unwrap_or_else(|e| panic!("the folder beside: {e}"));
        Base { _dir: dir, path }
    })
}

/// Every name beneath `dir`, links not followed.
fn names(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn env(name: &str) -> Option<String> {
    (name == "PATH").then(|| "/usr/bin:/bin".to_owned())
}

/// A fresh, empty folder for one input (removed before the next).
fn fresh(base: &Path) -> PathBuf {
    let dir = base.join("skill");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("the skill folder: {e}"));
    dir
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    let base = &base().path;
    match which % 5 {
        0 => {
            let _ = picoclaw_skills::fuzzing::front_matter(&String::from_utf8_lossy(file));
        }
        1 => {
            let dir = fresh(base);
            let _ = std::fs::write(dir.join("SKILL.md"), file);
            let _ = Skill::load(&dir, Source::Workspace, &env);
        }
        2 => {
            let dir = fresh(base);
            let _ = std::fs::write(dir.join("manifest.json"), file);
            let _ = std::fs::write(dir.join("main.py"), b"print('hi')\n");
            let _ = Skill::load(&dir, Source::Global, &env);
        }
        archive => {
            let beside = base.join("beside");
            let before = names(&beside);
            let dir = fresh(base);
            if picoclaw_skills::fuzzing::extract(file, archive == 3, &dir).is_ok() {
                let _ = Skill::load(&dir, Source::Global, &env);
            }
            assert_eq!(
                names(&beside),
                before,
                "unpacking changed the folder beside"
            );
            let outside: Vec<PathBuf> = names(base)
                .into_iter()
                .filter(|p| !p.starts_with(&dir) && !p.starts_with(&beside))
                .collect();
            assert_eq!(outside, Vec::<PathBuf>::new(), "unpacked outside");
        }
    }
});
