//! `tools.skills` of config.json, typed (the config loader decodes it, naming a misspelt key).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `tools.skills`: `enabled` (default true), `builtin` (offer the built-in skills, default
/// true), `git_host` (for `owner/repo/path` installs, default `https://github.com`), and
/// `permissions.<skill>`, the grants `picoclaw skills grant` writes (read by
/// [`crate::Grant::from_json`] when the skill's tools are made). The original PicoClaw's
/// registry settings are accepted as they are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SkillsSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_host: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, Value>,
    // The original PicoClaw's keys that picoclaw does not act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registries: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_searches: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_cache: Option<Value>,
}

impl SkillsSection {
    /// Whether skills are on (default true).
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// Whether the built-in skills are offered (default true).
    pub fn builtin(&self) -> bool {
        self.builtin.unwrap_or(true)
    }

    /// The host of `owner/repo/path` installs (default `https://github.com`).
    pub fn git_host(&self) -> String {
        self.git_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("https://github.com")
            .to_owned()
    }
}
