//! Finding skills: the workspace's `skills/`, the global `~/.picoclaw/skills/`, and the built-in
//! ones, in that order of precedence; and the summary the system prompt carries.

use crate::skill::{Skill, Source};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where skills are looked for.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct SkillRoots {
    /// `<workspace>/skills`
    pub workspace: Option<PathBuf>,
    /// `~/.picoclaw/skills`
    pub global: Option<PathBuf>,
    /// Where the built-in skills were written out (see [`crate::builtin::materialize`]).
    pub builtin: Option<PathBuf>,
}

impl SkillRoots {
    pub fn new(
        workspace: Option<PathBuf>,
        global: Option<PathBuf>,
        builtin: Option<PathBuf>,
    ) -> Self {
        Self {
            workspace,
            global,
            builtin,
        }
    }

    fn in_order(&self) -> Vec<(Source, &Path)> {
        [
            (Source::Workspace, self.workspace.as_deref()),
            (Source::Global, self.global.as_deref()),
            (Source::Builtin, self.builtin.as_deref()),
        ]
        .into_iter()
        .filter_map(|(s, p)| p.map(|p| (s, p)))
        .collect()
    }
}

/// A folder that looks like a skill but could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    pub dir: PathBuf,
    pub source: Source,
    pub reason: String,
}

/// Every skill found.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Catalog {
    /// The skill each name resolves to, sorted by name.
    pub skills: Vec<Skill>,
    /// Skills hidden by one of the same name from an earlier source.
    pub shadowed: Vec<Skill>,
    /// Folders that failed validation, and duplicate names within one source.
    pub problems: Vec<Problem>,
}

impl Catalog {
    /// Reads every skill under `roots`. `env` looks up environment variables for the
    /// requirement checks (`std::env::var(..).ok()` in real use).
    pub fn discover(roots: &SkillRoots, env: &dyn Fn(&str) -> Option<String>) -> Catalog {
        let mut catalog = Catalog::default();
        let mut chosen: BTreeMap<String, Skill> = BTreeMap::new();
        for (source, root) in roots.in_order() {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                })
                .collect();
            dirs.sort();
            let mut here: BTreeMap<String, PathBuf> = BTreeMap::new();
            for dir in dirs {
                if !dir.join("SKILL.md").exists() && !dir.join("manifest.json").exists() {
                    continue;
                }
                let skill = match Skill::load(&dir, source, env) {
                    Ok(s) => s,
                    Err(reason) => {
                        tracing::warn!(dir = %dir.display(), %reason, "skipping an invalid skill");
                        catalog.problems.push(Problem {
                            dir,
                            source,
                            reason: reason.to_string(),
                        });
                        continue;
                    }
                };
                if let Some(first) = here.get(&skill.name) {
                    catalog.problems.push(Problem {
                        reason: format!(
                            "the name '{}' is also used by {}; rename one of them",
                            skill.name,
                            first.display()
                        ),
                        dir,
                        source,
                    });
                    continue;
                }
                here.insert(skill.name.clone(), dir);
                if chosen.contains_key(&skill.name) {
                    catalog.shadowed.push(skill);
                } else {
                    chosen.insert(skill.name.clone(), skill);
                }
            }
        }
        catalog.skills = chosen.into_values().collect();
        catalog
    }

    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.iter().find(|s| s.name == name)
    }

    /// The skills section of the system prompt: each usable skill's name, description and the
    /// path of its SKILL.md, which the agent reads with `read_file` when a task calls for it.
    /// Skills with missing requirements are left out. `None` when there is nothing to list.
    pub fn prompt_section(&self) -> Option<String> {
        let usable: Vec<&Skill> = self
            .skills
            .iter()
            .filter(|s| s.available() && s.file.file_name().is_some_and(|n| n == "SKILL.md"))
            .collect();
        if usable.is_empty() {
            return None;
        }
        let mut out = String::from("Before using a skill, read its SKILL.md (read_file).\n");
        for s in usable {
            out.push_str(&format!(
                "- {}: {} ({})\n",
                s.name,
                one_line(&s.description),
                s.file.display()
            ));
        }
        Some(out)
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A catalog that follows the skill folders: [`LiveCatalog::prompt_section`] rescans only when
/// a skill folder or SKILL.md changed (checked with a few `stat` calls per turn), so a skill
/// installed while the gateway runs is offered from the next turn on.
#[derive(Debug)]
pub struct LiveCatalog {
    roots: SkillRoots,
    /// Only these skills (by name), when set (an agent's `skills` list).
    only: Option<Vec<String>>,
    cache: std::sync::Mutex<Option<(Vec<Stamp>, Option<String>)>>,
}

type Stamp = (PathBuf, Option<std::time::SystemTime>, u64);

impl LiveCatalog {
    pub fn new(roots: SkillRoots) -> Self {
        Self {
            roots,
            only: None,
            cache: std::sync::Mutex::new(None),
        }
    }

    /// Offers only the skills named in `names` (the others are neither listed to the model nor
    /// their tools registered).
    pub fn only(mut self, names: Vec<String>) -> Self {
        self.only = Some(names);
        self
    }

    pub fn roots(&self) -> &SkillRoots {
        &self.roots
    }

    /// Reads every skill now (for listings), those [`LiveCatalog::only`] allows.
    pub fn catalog(&self) -> Catalog {
        let mut catalog = Catalog::discover(&self.roots, &|k| std::env::var(k).ok());
        if let Some(only) = &self.only {
            catalog
                .skills
                .retain(|s| only.iter().any(|n| n.trim() == s.name));
        }
        catalog
    }

    fn fingerprint(&self) -> Vec<Stamp> {
        let stamp = |p: &Path| -> Stamp {
            let meta = std::fs::metadata(p).ok();
            (
                p.to_path_buf(),
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            )
        };
        let mut stamps = Vec::new();
        for (_, root) in self.roots.in_order() {
            stamps.push(stamp(root));
            if let Ok(entries) = std::fs::read_dir(root) {
                for entry in entries.flatten() {
                    let dir = entry.path();
                    stamps.push(stamp(&dir.join("SKILL.md")));
                    stamps.push(stamp(&dir.join("manifest.json")));
                }
            }
        }
        stamps
    }

    /// [`Catalog::prompt_section`] of the current skills.
    pub fn prompt_section(&self) -> Option<String> {
        let now = self.fingerprint();
        let mut cache = match self.cache.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((stamps, section)) = cache.as_ref()
            && *stamps == now
        {
            return section.clone();
        }
        let section = self.catalog().prompt_section();
        *cache = Some((now, section.clone()));
        section
    }
}
