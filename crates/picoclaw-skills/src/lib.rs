//! Skills: what the agent learns beyond its built-in tools.
//!
//! - A skill is a folder with `SKILL.md`: YAML front matter (`name`, `description`, optional
//!   `homepage` and `metadata` with requirements, in the form the original PicoClaw, nanobot and
//!   OpenClaw skills use) and Markdown instructions, plus optional scripts and resources.
//! - An executable skill also has `manifest.json`: an entry program and the tools it provides
//!   ([`SkillTool`]), each run as a confined subprocess speaking JSON on stdin and stdout. What
//!   it may do beyond that is granted by the operator to one global skill as its files are
//!   ([`Grant`]): a workspace skill of the same name or a changed skill gets nothing.
//! - [`Catalog::discover`] finds skills in the workspace's `skills/`, the global
//!   `~/.picoclaw/skills/` and the [built-in](builtin) ones, in that order of precedence, and
//!   [`Catalog::prompt_section`] lists the usable ones for the system prompt (progressive
//!   disclosure: the agent reads a SKILL.md with `read_file` when it needs it).
//! - [`install`] installs from a folder, git, `owner/repo/path` or an archive URL.

pub mod builtin;
mod catalog;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod install;
mod manifest;
mod settings;
mod skill;

pub use catalog::{Catalog, LiveCatalog, Problem, SkillRoots};
pub use error::{GrantError, InstallError, SkillError};
pub use grant::{Fingerprint, Grant, GrantCheck, fingerprint};
pub use install::{
    InstallOptions, MAX_ARCHIVE_BYTES, MAX_SKILL_BYTES, SourceKind, classify, install,
};
pub use manifest::{Manifest, ManifestTool, Permissions, SkillTool};
pub use settings::SkillsSection;
pub use skill::{
    MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_SKILL_FILE_BYTES, Requirements, Skill, Source,
    on_path, validate_name,
};
