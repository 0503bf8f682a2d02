//! Grants: what the operator lets an executable skill do beyond its default confinement
//! (`tools.skills.permissions.<name>`), bound to one **global** skill: the canonical folder it
//! was granted in, and the SHA-256 of its `manifest.json` and entry as they were then. A
//! workspace skill never gets a grant, even under a granted skill's name (the model can write
//! the workspace; it must not be able to write itself permissions), and a global skill whose
//! manifest or entry changed loses its grant until the operator grants it again.

use crate::error::GrantError;
use crate::manifest::{Manifest, Permissions};
use crate::skill::{Skill, Source};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest file hashed (an entry may be a compiled program).
const MAX_HASHED_BYTES: u64 = crate::install::MAX_SKILL_BYTES;

/// What a skill's files hash to now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fingerprint {
    /// The skill's folder with every link resolved.
    pub dir: PathBuf,
    /// SHA-256 (hex) over `manifest.json` and the entry, each with its name and length.
    pub sha256: String,
    /// SHA-256 (hex) of each of those files alone, by name, to say which one changed.
    pub files: BTreeMap<String, String>,
}

/// Hashes the files that decide what a skill does when it runs: `manifest.json` (its tools,
/// its entry, its declared permissions) and the entry program `entry`, both in `dir`.
pub fn fingerprint(dir: &Path, entry: &str) -> Result<Fingerprint, GrantError> {
    let canonical = dir
        .canonicalize()
        .map_err(|e| GrantError::Files(format!("cannot resolve {}: {e}", dir.display())))?;
    let mut whole = Sha256::new();
    whole.update(b"picoclaw skill grant v1\n");
    let mut files = BTreeMap::new();
    for name in ["manifest.json", entry] {
        let path = canonical.join(name);
        let bytes = read_capped(&path).map_err(GrantError::Files)?;
        for part in [name.as_bytes(), &bytes] {
            whole.update((part.len() as u64).to_le_bytes());
            whole.update(part);
        }
        files.insert(name.to_owned(), hex(&Sha256::digest(&bytes)));
    }
    Ok(Fingerprint {
        dir: canonical,
        sha256: hex(&whole.finalize()),
        files,
    })
}

fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > MAX_HASHED_BYTES {
        return Err(format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_HASHED_BYTES / (1024 * 1024)
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One entry of `tools.skills.permissions`: the permissions, and what they are bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    pub permissions: Permissions,
    /// The global skill's canonical folder when it was granted; `None` for a grant written
    /// before grants were bound (or by hand), which applies to nothing.
    pub dir: Option<PathBuf>,
    /// [`Fingerprint::sha256`] when it was granted.
    pub sha256: Option<String>,
    /// [`Fingerprint::files`] when it was granted (only used to explain a change).
    pub files: BTreeMap<String, String>,
}

/// Whether a grant applies to a skill, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrantCheck {
    /// It applies: the skill runs with what its manifest declares and the grant allows.
    Applies,
    /// The skill is not a global one (a workspace skill under a granted skill's name).
    NotGlobal { source: Source, dir: PathBuf },
    /// The grant names no folder and hash: it was made before grants were bound to a skill.
    Unbound,
    /// The grant is for a skill in another folder.
    Moved { granted: PathBuf, now: PathBuf },
    /// The manifest or the entry changed since the grant (the names of the files that did, or
    /// every hashed file when the grant does not record them one by one).
    Changed { files: Vec<String> },
    /// The skill has no manifest, or its files cannot be read.
    Unusable(String),
}

impl GrantCheck {
    pub fn applies(&self) -> bool {
        matches!(self, GrantCheck::Applies)
    }

    /// Why the grant does not apply, in a sentence that fits after "the grant of NAME does
    /// not apply: ".
    pub fn reason(&self) -> String {
        match self {
            GrantCheck::Applies => "it applies".into(),
            GrantCheck::NotGlobal { source, dir } => format!(
                "{} is a {source} skill; grants apply only to the global skill they were made \
                 for",
                dir.display()
            ),
            GrantCheck::Unbound => "it was written before grants were bound to a skill's folder \
                                    and contents (or by hand), so it applies to nothing"
                .into(),
            GrantCheck::Moved { granted, now } => format!(
                "it was made for {}, and the skill is now at {}",
                granted.display(),
                now.display()
            ),
            GrantCheck::Changed { files } => {
                format!("{} changed since it was granted", files.join(" and "))
            }
            GrantCheck::Unusable(why) => why.clone(),
        }
    }
}

impl Grant {
    /// A grant of `permissions` to the global skill `skill` as its files are now.
    pub fn bind(skill: &Skill, permissions: Permissions) -> Result<Grant, GrantError> {
        if skill.source != Source::Global {
            return Err(GrantError::NotGlobal {
                dir: skill.dir.clone(),
                found_in: skill.source,
            });
        }
        let manifest = skill
            .manifest
            .as_ref()
            .ok_or_else(|| GrantError::NotExecutable {
                skill: skill.name.clone(),
            })?;
        let fp = fingerprint(&skill.dir, &manifest.entry)?;
        Ok(Grant {
            permissions,
            dir: Some(fp.dir),
            sha256: Some(fp.sha256),
            files: fp.files,
        })
    }

    /// Reads a `tools.skills.permissions.<name>` entry.
    pub fn from_json(value: &Value) -> Result<Grant, GrantError> {
        let permissions: Permissions =
            serde_json::from_value(value.clone()).map_err(GrantError::Malformed)?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let files = value
            .get("files")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Grant {
            permissions,
            dir: text("dir").map(PathBuf::from),
            sha256: text("sha256").map(str::to_ascii_lowercase),
            files,
        })
    }

    /// The entry as config.json holds it.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "network": self.permissions.network,
            "workspace_write": self.permissions.workspace_write,
            "env": self.permissions.env,
        });
        if let Some(dir) = &self.dir {
            out["dir"] = json!(dir.display().to_string());
        }
        if let Some(sha) = &self.sha256 {
            out["sha256"] = json!(sha);
        }
        if !self.files.is_empty() {
            out["files"] = json!(self.files);
        }
        out
    }

    /// Whether this grant applies to `skill` as its files are now.
    pub fn check(&self, skill: &Skill) -> GrantCheck {
        match &skill.manifest {
            Some(m) => self.check_files(skill.source, &skill.dir, m).0,
            None => GrantCheck::Unusable(format!("{} has no manifest.json", skill.name)),
        }
    }

    /// [`Grant::check`], with the fingerprint it compared when the grant applies.
    pub(crate) fn check_files(
        &self,
        source: Source,
        dir: &Path,
        manifest: &Manifest,
    ) -> (GrantCheck, Option<Fingerprint>) {
        if source != Source::Global {
            let check = GrantCheck::NotGlobal {
                source,
                dir: dir.to_path_buf(),
            };
            return (check, None);
        }
        let (Some(granted_dir), Some(granted_sha)) = (&self.dir, &self.sha256) else {
            return (GrantCheck::Unbound, None);
        };
        let fp = match fingerprint(dir, &manifest.entry) {
            Ok(fp) => fp,
            Err(e) => return (GrantCheck::Unusable(e.to_string()), None),
        };
        if &fp.dir != granted_dir {
            let check = GrantCheck::Moved {
                granted: granted_dir.clone(),
                now: fp.dir,
            };
            return (check, None);
        }
        if &fp.sha256 != granted_sha {
            let mut files: Vec<String> = fp
                .files
                .iter()
                .filter(|(name, sha)| self.files.get(*name) != Some(*sha))
                .map(|(name, _)| name.clone())
                .collect();
            if files.is_empty() || self.files.is_empty() {
                files = fp.files.keys().cloned().collect();
            }
            return (GrantCheck::Changed { files }, None);
        }
        (GrantCheck::Applies, Some(fp))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_fingerprint_covers_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), "{}").unwrap();
        std::fs::write(dir.path().join("main.py"), "print(1)").unwrap();
        let a = fingerprint(dir.path(), "main.py").unwrap();
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(a.dir, dir.path().canonicalize().unwrap());
        assert_eq!(
            a.files.keys().collect::<Vec<_>>(),
            ["main.py", "manifest.json"]
        );
        // Moving bytes from one file to the other changes the whole hash.
        std::fs::write(dir.path().join("manifest.json"), "{}p").unwrap();
        std::fs::write(dir.path().join("main.py"), "rint(1)").unwrap();
        let b = fingerprint(dir.path(), "main.py").unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert!(fingerprint(dir.path(), "missing.py").is_err());
    }

    #[test]
    fn grants_round_trip_through_json() {
        let grant = Grant {
            permissions: Permissions::none()
                .with_network(true)
                .with_env(vec!["K".into()]),
            dir: Some(PathBuf::from("/h/.picoclaw/skills/x")),
            sha256: Some("ab".repeat(32)),
            files: [("main.py".to_owned(), "cd".repeat(32))].into(),
        };
        assert_eq!(Grant::from_json(&grant.to_json()).unwrap(), grant);
        // The form from before binding: read, but bound to nothing.
        let old = Grant::from_json(&json!({"network": true})).unwrap();
        assert!(old.permissions.network);
        assert_eq!((old.dir, old.sha256), (None, None));
        assert!(Grant::from_json(&json!({"network": "yes"})).is_err());
    }
}
