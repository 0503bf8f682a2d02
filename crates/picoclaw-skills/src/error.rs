//! What can go wrong with skills: loading one, granting it permissions, installing one. Each
//! variant says what the caller (or the operator) can do about it.

use crate::skill::Source;
use std::path::PathBuf;

/// Why a skill folder is not a usable skill. Fix the skill's files (or remove the folder).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SkillError {
    /// A file of the skill cannot be read, is too large, or is not UTF-8 text.
    #[error("{0}")]
    File(String),
    /// The folder has neither SKILL.md nor manifest.json.
    #[error("no SKILL.md (and no manifest.json)")]
    NotASkill,
    /// The name is not 1 to 64 of `a-z`, `0-9` and single inner hyphens.
    #[error("{0}")]
    BadName(String),
    /// SKILL.md's front matter is missing, malformed or lacks a required key.
    #[error("{0}")]
    FrontMatter(String),
    /// manifest.json is unreadable or invalid (its tools, entry, permissions).
    #[error("{0}")]
    Manifest(String),
}

/// Why permissions could not be granted to a skill, or a grant read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// Only a global skill (`~/.picoclaw/skills`) can be granted permissions: install it there.
    #[error(
        "{} is a {found_in} skill; only global skills (~/.picoclaw/skills) can be granted \
         permissions",
        dir.display()
    )]
    NotGlobal { dir: PathBuf, found_in: Source },
    /// The skill runs no program (no manifest.json): there is nothing to grant.
    #[error("{skill} has no manifest.json: it runs no program, so there is nothing to grant")]
    NotExecutable { skill: String },
    /// The skill's files could not be hashed (unreadable, missing entry, too large).
    #[error("{0}")]
    Files(String),
    /// A `tools.skills.permissions.<name>` entry does not have the grant's shape.
    #[error("it is not {{network, workspace_write, env}}: {0}")]
    Malformed(serde_json::Error),
}

/// Why installing a skill failed. Nothing is left behind at the destination.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The SOURCE is not something picoclaw installs from: give a folder, a git URL, an
    /// archive URL (.tar.gz, .zip) or owner/repo/path.
    #[error("{0}")]
    Source(String),
    /// Installing from git needs the `git` program: install it.
    #[error("installing from git needs the `git` program; install it first")]
    GitMissing,
    /// Fetching failed: git or the download failed, timed out, or the repository lacks the
    /// folder. Check the source; trying again may help.
    #[error("{0}")]
    Fetch(String),
    /// What was fetched cannot be taken: a damaged archive, a skill too large, or something
    /// unsafe in it (a link, an entry pointing outside the skill folder).
    #[error("{0}")]
    Contents(String),
    /// What was fetched is not a skill, or not a valid one.
    #[error("{source_name} is not a valid skill: {error}")]
    Invalid {
        /// The source as the user gave it (folder, URL, `url (subdir)`).
        source_name: String,
        error: SkillError,
    },
    /// What was fetched has neither SKILL.md nor manifest.json.
    #[error("{source_name} has no SKILL.md or manifest.json: it is not a skill")]
    NotASkill { source_name: String },
    /// A skill of that name is installed already: remove it first, or install with `force`.
    #[error(
        "a skill named '{name}' is already installed at {}; remove it first or use --force",
        path.display()
    )]
    AlreadyInstalled { name: String, path: PathBuf },
    /// The destination cannot be written (permissions, a full disk).
    #[error("{0}")]
    Destination(String),
}
