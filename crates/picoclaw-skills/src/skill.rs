//! One skill folder: `SKILL.md` (YAML front matter + Markdown instructions), optionally a
//! `manifest.json` (an executable skill), scripts and resources.

use crate::error::SkillError;
use crate::manifest::Manifest;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Longest name: 64 characters of `a-z`, `0-9` and `-`.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Largest SKILL.md read.
pub const MAX_SKILL_FILE_BYTES: u64 = 256 * 1024;

/// Where a skill was found. Earlier sources win over later ones for the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// `<workspace>/skills/`
    Workspace,
    /// `~/.picoclaw/skills/`
    Global,
    /// Compiled into picoclaw.
    Builtin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Workspace => "workspace",
            Source::Global => "global",
            Source::Builtin => "builtin",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a skill needs from the machine (`metadata.<agent>.requires` and `.os` in the front
/// matter, as the original PicoClaw, nanobot and OpenClaw skills write it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Requirements {
    /// Programs that must all be on PATH.
    pub bins: Vec<String>,
    /// Programs of which at least one must be on PATH.
    pub any_bins: Vec<String>,
    /// Environment variables that must be set.
    pub env: Vec<String>,
    /// Operating systems it runs on (`linux`, `darwin`, `win32`); empty means any.
    pub os: Vec<String>,
}

impl Requirements {
    fn from_metadata(metadata: &Value) -> Self {
        let mut req = Self::default();
        // `{"nanobot": {...}}`, `{"openclaw": {...}}`, `{"picoclaw": {...}}` or the keys directly.
        let mut scopes: Vec<&Value> = ["picoclaw", "nanobot", "openclaw", "clawdbot"]
            .iter()
            .filter_map(|k| metadata.get(*k))
            .collect();
        scopes.push(metadata);
        let list = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        for scope in scopes {
            let requires = scope.get("requires");
            for bin in list(requires.and_then(|r| r.get("bins"))) {
                if !req.bins.contains(&bin) {
                    req.bins.push(bin);
                }
            }
            for bin in list(requires.and_then(|r| r.get("anyBins").or_else(|| r.get("any_bins")))) {
                if !req.any_bins.contains(&bin) {
                    req.any_bins.push(bin);
                }
            }
            for var in list(requires.and_then(|r| r.get("env"))) {
                if !req.env.contains(&var) {
                    req.env.push(var);
                }
            }
            for os in list(scope.get("os")) {
                if !req.os.contains(&os) {
                    req.os.push(os);
                }
            }
        }
        req
    }

    /// Why the skill cannot be used on this machine; empty when it can.
    pub fn missing(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut missing = Vec::new();
        let path = env("PATH").unwrap_or_default();
        for bin in &self.bins {
            if !on_path(bin, &path) {
                missing.push(format!("needs the program `{bin}` on PATH"));
            }
        }
        if !self.any_bins.is_empty() && !self.any_bins.iter().any(|b| on_path(b, &path)) {
            missing.push(format!(
                "needs one of the programs {} on PATH",
                self.any_bins
                    .iter()
                    .map(|b| format!("`{b}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for var in &self.env {
            if env(var).is_none_or(|v| v.trim().is_empty()) {
                missing.push(format!("needs the environment variable {var}"));
            }
        }
        if !self.os.is_empty() {
            let here = match std::env::consts::OS {
                "macos" => "darwin",
                "windows" => "win32",
                other => other,
            };
            if !self.os.iter().any(|o| o == here) {
                missing.push(format!(
                    "runs on {} only (this is {here})",
                    self.os.join(", ")
                ));
            }
        }
        missing
    }
}

/// Whether an executable named `bin` is in one of the `:`-separated folders of `path`.
pub fn on_path(bin: &str, path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if bin.contains('/') {
        return false;
    }
    path.split(':').filter(|d| !d.is_empty()).any(|dir| {
        std::fs::metadata(Path::new(dir).join(bin))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A skill found on disk.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub homepage: Option<String>,
    pub source: Source,
    /// The skill's folder.
    pub dir: PathBuf,
    /// `SKILL.md`, or for an executable skill without one its README.md (or manifest.json).
    pub file: PathBuf,
    pub requires: Requirements,
    /// The `metadata` of the front matter as written.
    pub metadata: Value,
    /// `manifest.json`, for an executable skill.
    pub manifest: Option<Manifest>,
    /// Why it cannot be used here (missing programs, variables, wrong OS); empty when usable.
    pub missing: Vec<String>,
}

impl Skill {
    pub fn available(&self) -> bool {
        self.missing.is_empty()
    }

    /// Reads and validates the skill in `dir`. `env` looks up environment variables (for the
    /// requirement checks).
    pub fn load(
        dir: &Path,
        source: Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Skill, SkillError> {
        let skill_md = dir.join("SKILL.md");
        let manifest_file = dir.join("manifest.json");
        let manifest = if manifest_file.is_file() {
            Some(Manifest::load(dir)?)
        } else {
            None
        };
        let (front, file) = if skill_md.is_file() {
            let text = read_capped(&skill_md).map_err(SkillError::File)?;
            (
                Some(parse_front_matter(&text).map_err(SkillError::FrontMatter)?),
                skill_md,
            )
        } else if let Some(m) = &manifest {
            let readme = dir.join("README.md");
            let file = if readme.is_file() {
                readme
            } else {
                manifest_file
            };
            (
                Some(FrontMatter {
                    name: Some(m.name.clone()),
                    description: Some(m.description.clone()),
                    ..FrontMatter::default()
                }),
                file,
            )
        } else {
            return Err(SkillError::NotASkill);
        };
        let front = front.unwrap_or_default();
        let name = front
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SkillError::FrontMatter("the front matter has no `name`".into()))?;
        validate_name(&name)?;
        let description = front
            .description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                SkillError::FrontMatter("the front matter has no `description`".into())
            })?;
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(SkillError::FrontMatter(format!(
                "the description is {} characters long; at most {MAX_DESCRIPTION_CHARS}",
                description.chars().count()
            )));
        }
        if let Some(m) = &manifest
            && m.name != name
        {
            return Err(SkillError::Manifest(format!(
                "SKILL.md names the skill '{name}' but manifest.json names it '{}'",
                m.name
            )));
        }
        let metadata = front.metadata.unwrap_or(Value::Null);
        let requires = Requirements::from_metadata(&metadata);
        let mut missing = requires.missing(env);
        if let Some(m) = &manifest {
            missing.extend(m.missing(env));
        }
        Ok(Skill {
            name,
            description,
            homepage: front.homepage,
            source,
            dir: dir.to_path_buf(),
            file,
            requires,
            metadata,
            manifest,
            missing,
        })
    }

    /// The instructions: SKILL.md without its front matter.
    pub fn instructions(&self) -> Result<String, SkillError> {
        let text = read_capped(&self.file).map_err(SkillError::File)?;
        Ok(match split_front_matter(&text) {
            Some((_, body)) => body.trim_start().to_owned(),
            None => text,
        })
    }
}

/// Checks a skill name: 1 to 64 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
pub fn validate_name(name: &str) -> Result<(), SkillError> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(SkillError::BadName(format!(
            "the name '{name}' must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        return Err(SkillError::BadName(format!(
            "the name '{name}' may use only a-z, 0-9 and single hyphens inside (like `weather` or \
             `pdf-tools`)"
        )));
    }
    Ok(())
}

fn read_capped(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_SKILL_FILE_BYTES {
        return Err(format!(
            "{} is {} KiB; a skill file may be at most {} KiB",
            path.display(),
            meta.len() / 1024,
            MAX_SKILL_FILE_BYTES / 1024
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// The front matter fields picoclaw reads; others are kept in the file and ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FrontMatter {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// Splits `---\n<yaml>\n---\n<body>`; `None` when the text does not start with front matter.
pub(crate) fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\r\n")
        .or_else(|| text.strip_prefix("---\n"))?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

pub(crate) fn parse_front_matter(text: &str) -> Result<FrontMatter, String> {
    let (yaml, _) = split_front_matter(text).ok_or(
        "SKILL.md has no front matter: it must start with a `---` line, then `name:` and \
         `description:`, then `---`",
    )?;
    let value: Value = serde_norway::from_str(yaml)
        .map_err(|e| format!("the front matter is not valid YAML: {e}"))?;
    // `metadata` is often inline JSON in a string; read it either way.
    let mut value = match value {
        Value::Object(map) => Value::Object(map),
        Value::Null => return Err("the front matter is empty".into()),
        _ => return Err("the front matter must be `key: value` lines".into()),
    };
    if let Some(Value::String(raw)) = value.get("metadata")
        && let Ok(parsed) = serde_json::from_str::<Value>(raw)
    {
        value["metadata"] = parsed;
    }
    for key in ["name", "description", "homepage"] {
        if let Some(v) = value.get(key)
            && !v.is_string()
            && !v.is_null()
        {
            return Err(format!("`{key}` in the front matter must be text"));
        }
    }
    serde_json::from_value(value).map_err(|e| format!("the front matter: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn front_matter_with_inline_json_metadata() {
        let text = "---\nname: weather\ndescription: Get the weather (no key).\nhomepage: https://open-meteo.com\nmetadata: {\"nanobot\":{\"emoji\":\"🌤️\",\"requires\":{\"bins\":[\"curl\"]}}}\n---\n\n# Weather\n";
        let fm = parse_front_matter(text).unwrap();
        assert_eq!(fm.name.as_deref(), Some("weather"));
        let req = Requirements::from_metadata(fm.metadata.as_ref().unwrap());
        assert_eq!(req.bins, ["curl"]);
    }

    #[test]
    fn front_matter_with_nested_yaml_metadata_and_crlf() {
        let text = "---\r\nname: gh\r\ndescription: \"GitHub, through gh\"\r\nmetadata:\r\n  openclaw:\r\n    requires:\r\n      bins: [gh]\r\n      env: [GH_TOKEN]\r\n    os: [linux, darwin]\r\n---\r\nbody";
        let fm = parse_front_matter(text).unwrap();
        let req = Requirements::from_metadata(fm.metadata.as_ref().unwrap());
        assert_eq!(req.bins, ["gh"]);
        assert_eq!(req.env, ["GH_TOKEN"]);
        assert_eq!(req.os, ["linux", "darwin"]);
        let missing = req.missing(&|k| (k == "PATH").then(|| "/nonexistent".to_owned()));
        assert!(missing.iter().any(|m| m.contains("`gh`")), "{missing:?}");
        assert!(
            missing.iter().any(|m| m.contains("GH_TOKEN")),
            "{missing:?}"
        );
    }

    #[test]
    fn bad_front_matter_is_named() {
        for (text, want) in [
            ("# no front matter", "no front matter"),
            ("---\nname: x\n", "no front matter"),
            ("---\nname: [unclosed\n---\n", "not valid YAML"),
            ("---\n---\n", "empty"),
            ("---\n- a\n- b\n---\n", "key: value"),
            ("---\nname: {a: 1}\ndescription: d\n---\n", "`name`"),
        ] {
            let err = parse_front_matter(text).err().unwrap_or_default();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn names_follow_the_rule() {
        for ok in ["weather", "pdf-tools", "a", "x2", &"a".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Weather",
            "pdf_tools",
            "-x",
            "x-",
            "a--b",
            "a b",
            "ü",
            &"a".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
