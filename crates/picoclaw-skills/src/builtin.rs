//! The skills compiled into picoclaw. They are written out to a folder (`~/.picoclaw/builtin-skills`
//! by default) so the agent reads them with `read_file` like any other skill; the files there
//! are rewritten when this build's text differs and are not meant to be edited (copy one into
//! the workspace's `skills/` to change it: the workspace wins).

use std::path::Path;

/// (name, SKILL.md) of every built-in skill.
pub const BUILTIN: &[(&str, &str)] = &[
    ("github", include_str!("../builtin/github/SKILL.md")),
    ("hardware", include_str!("../builtin/hardware/SKILL.md")),
    (
        "skill-creator",
        include_str!("../builtin/skill-creator/SKILL.md"),
    ),
    ("summarize", include_str!("../builtin/summarize/SKILL.md")),
    ("tmux", include_str!("../builtin/tmux/SKILL.md")),
    ("weather", include_str!("../builtin/weather/SKILL.md")),
];

/// Writes the built-in skills under `dir` (one folder each), leaving files that already have
/// this build's text untouched, and removes folders of built-ins this build no longer has.
pub fn materialize(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in BUILTIN {
        let folder = dir.join(name);
        let file = folder.join("SKILL.md");
        if std::fs::read_to_string(&file).is_ok_and(|t| t == *text) {
            continue;
        }
        std::fs::create_dir_all(&folder)?;
        let tmp = folder.join(".SKILL.md.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &file)?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let known = BUILTIN.iter().any(|(n, _)| name.to_str() == Some(n));
        if !known && entry.path().join("SKILL.md").is_file() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
