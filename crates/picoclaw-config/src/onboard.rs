//! The workspace starter files `picoclaw onboard` writes. They go into every system prompt, so
//! they are short.

use crate::ConfigError;
use std::path::{Path, PathBuf};

/// What happened to one starter file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    Created,
    /// It existed and was left alone.
    Kept,
    Overwritten,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "AGENT.md",
        "# Agent\n\nYou are a personal assistant running on your owner's machine. Work in the \
workspace with your tools, check results instead of guessing, and report briefly what you did. \
Ask before doing anything destructive or irreversible.\n",
    ),
    (
        "SOUL.md",
        "# Soul\n\nCalm, precise and friendly. Plain words, short answers, no filler. Admit when \
you do not know.\n",
    ),
    (
        "USER.md",
        "# User\n\n<!-- Facts about your owner that help: name, language, time zone, \
preferences. -->\n",
    ),
    (
        "IDENTITY.md",
        "# Identity\n\nName: picoclaw. A lightweight agent that lives in a small binary and \
remembers conversations across restarts.\n",
    ),
    (
        "TOOLS.md",
        "# Tools\n\nFile tools (read_file, write_file, edit_file, append_file, list_dir) work \
inside the workspace. exec runs shell commands in the workspace with a timeout. Prefer \
edit_file for small changes to existing files.\n",
    ),
    (
        "HEARTBEAT.md",
        "# Heartbeat\n\n<!-- Tasks to check periodically, one per line. Empty means nothing to \
do. -->\n",
    ),
    (
        "memory/MEMORY.md",
        "# Memory\n\n<!-- Long-term notes worth keeping across conversations. -->\n",
    ),
];

/// The starter files: (path relative to the workspace, content).
pub fn workspace_templates() -> &'static [(&'static str, &'static str)] {
    TEMPLATES
}

/// Writes the starter files into `workspace` (creating it, `memory/` and `skills/`); existing
/// files are kept unless `overwrite`.
pub fn write_workspace_templates(
    workspace: &Path,
    overwrite: bool,
) -> Result<Vec<(PathBuf, WriteOutcome)>, ConfigError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConfigError::Write { path, source }
    };
    for dir in ["", "memory", "skills"] {
        let d = workspace.join(dir);
        std::fs::create_dir_all(&d).map_err(err(&d))?;
    }
    let mut outcomes = Vec::new();
    for (rel, content) in TEMPLATES {
        let path = workspace.join(rel);
        let existed = path.exists();
        if existed && !overwrite {
            outcomes.push((path, WriteOutcome::Kept));
            continue;
        }
        std::fs::write(&path, content).map_err(err(&path))?;
        let outcome = if existed {
            WriteOutcome::Overwritten
        } else {
            WriteOutcome::Created
        };
        outcomes.push((path, outcome));
    }
    Ok(outcomes)
}
