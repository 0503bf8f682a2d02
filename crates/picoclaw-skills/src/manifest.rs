//! Executable skills: `manifest.json` declares an entry program, the tools it provides (with
//! JSON-schema parameters) and the permissions it needs. Calling one of its tools runs the entry
//! as a subprocess in the workspace with a JSON request on stdin and reads a JSON result from
//! stdout, under time and output caps, with a scrubbed environment, and on Linux under Landlock:
//! no writes outside the temporary folder (and the workspace, with `workspace_write`), no TCP
//! connections (unless `network`). A permission applies only when the manifest declares it and
//! the operator granted it to this very skill ([`crate::Grant`]).

use crate::error::{GrantError, SkillError};
use crate::grant::{Fingerprint, Grant, GrantCheck, fingerprint};
use crate::skill::Skill;
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_tools::{GroupGuard, Tool, ToolContext, ToolOutput, finish_capped, spawn_capped};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Longest a tool call may run when the manifest does not say (and the most it may ask for).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// stdout read at most (the result); stderr is cut shorter.
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 * 1024;
const MAX_STDERR_BYTES: usize = 8 * 1024;

/// Variables an executable skill gets besides the ones its manifest names and the operator
/// granted.
const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
];

/// Permissions a manifest asks for, or the operator grants (`skills.permissions.<name>`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Permissions {
    /// Open TCP connections.
    pub network: bool,
    /// Write in the workspace (the temporary folder is always writable).
    pub workspace_write: bool,
    /// Environment variables passed through.
    pub env: Vec<String>,
}

impl Permissions {
    /// Nothing beyond the base: no network, a read-only workspace, no extra variables.
    pub fn none() -> Self {
        Self::default()
    }

    /// With TCP connections allowed or not.
    pub fn with_network(mut self, allowed: bool) -> Self {
        self.network = allowed;
        self
    }

    /// With writing in the workspace allowed or not.
    pub fn with_workspace_write(mut self, allowed: bool) -> Self {
        self.workspace_write = allowed;
        self
    }

    /// With these environment variables passed through.
    pub fn with_env(mut self, vars: Vec<String>) -> Self {
        self.env = vars;
        self
    }

    /// What both `self` (declared) and `granted` allow.
    pub fn intersect(&self, granted: &Permissions) -> Permissions {
        Permissions {
            network: self.network && granted.network,
            workspace_write: self.workspace_write && granted.workspace_write,
            env: self
                .env
                .iter()
                .filter(|v| granted.env.contains(v))
                .cloned()
                .collect(),
        }
    }

    /// Declared but not granted, worded for `picoclaw skills list`.
    pub fn not_granted(&self, granted: &Permissions) -> Vec<String> {
        let mut out = Vec::new();
        if self.network && !granted.network {
            out.push("network".to_owned());
        }
        if self.workspace_write && !granted.workspace_write {
            out.push("workspace_write".to_owned());
        }
        for v in &self.env {
            if !granted.env.contains(v) {
                out.push(format!("env {v}"));
            }
        }
        out
    }
}

/// One tool of an executable skill.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct ManifestTool {
    pub name: String,
    pub description: String,
    #[serde(default = "empty_object_schema")]
    pub parameters: Value,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// `manifest.json`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The program run for every call, relative to the skill folder: `main.py` (run with
    /// python3), `main.js` (node), `run.sh` (sh), or any executable.
    pub entry: String,
    #[serde(default)]
    pub tools: Vec<ManifestTool>,
    #[serde(default)]
    pub permissions: Permissions,
    /// Per-call limit in seconds (default 30, at most 300).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

impl Manifest {
    /// Reads and validates `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, SkillError> {
        Self::load_checked(dir).map_err(SkillError::Manifest)
    }

    fn load_checked(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| format!("manifest.json is not valid: {e}"))?;
        crate::skill::validate_name(&manifest.name).map_err(|e| format!("manifest.json: {e}"))?;
        if manifest.description.trim().is_empty() {
            return Err("manifest.json has no description".into());
        }
        let entry = Path::new(manifest.entry.trim());
        if manifest.entry.trim().is_empty()
            || entry.is_absolute()
            || entry
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "manifest.json: entry '{}' must be a path inside the skill folder",
                manifest.entry
            ));
        }
        if !dir.join(entry).is_file() {
            return Err(format!(
                "manifest.json: the entry '{}' does not exist in {}",
                manifest.entry,
                dir.display()
            ));
        }
        if manifest.tools.is_empty() {
            return Err("manifest.json declares no tools".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for tool in &manifest.tools {
            check_tool(tool)?;
            if !seen.insert(tool.name.as_str()) {
                return Err(format!(
                    "manifest.json declares the tool '{}' twice",
                    tool.name
                ));
            }
        }
        if let Some(t) = manifest.timeout_seconds
            && (t == 0 || t > MAX_TIMEOUT.as_secs())
        {
            return Err(format!(
                "manifest.json: timeout_seconds must be 1 to {}",
                MAX_TIMEOUT.as_secs()
            ));
        }
        Ok(manifest)
    }

    /// The interpreter the entry needs, if it is missing here.
    pub fn missing(&self, env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let path = env("PATH").unwrap_or_default();
        match interpreter(&self.entry) {
            Some(bin) if !crate::skill::on_path(bin, &path) => {
                vec![format!("needs `{bin}` on PATH to run {}", self.entry)]
            }
            _ => Vec::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT)
            .min(MAX_TIMEOUT)
    }
}

/// A tool name a provider accepts, a description, and a parameter schema that is a JSON-schema
/// object (`"type": "object"` with `properties` of known types). Full meta-schema validation
/// would take the `jsonschema` crate, several hundred KiB of binary; these are the mistakes that
/// make providers reject a request.
fn check_tool(tool: &ManifestTool) -> Result<(), String> {
    let name_ok = !tool.name.is_empty()
        && tool.name.len() <= 64
        && tool
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(format!(
            "manifest.json: the tool name '{}' must be 1-64 characters of a-z, A-Z, 0-9, _ and -",
            tool.name
        ));
    }
    if tool.description.trim().is_empty() {
        return Err(format!(
            "manifest.json: the tool '{}' has no description",
            tool.name
        ));
    }
    let bad = |why: &str| {
        Err(format!(
            "manifest.json: the parameters of '{}' are not a valid JSON schema: {why}",
            tool.name
        ))
    };
    let Some(schema) = tool.parameters.as_object() else {
        return bad("it must be an object");
    };
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return bad("its \"type\" must be \"object\"");
    }
    let properties = match schema.get("properties") {
        None => return Ok(()),
        Some(Value::Object(p)) => p,
        Some(_) => return bad("\"properties\" must be an object"),
    };
    const TYPES: &[&str] = &[
        "string", "number", "integer", "boolean", "array", "object", "null",
    ];
    for (name, prop) in properties {
        let Some(prop) = prop.as_object() else {
            return bad(&format!("the property '{name}' must be an object"));
        };
        match prop.get("type") {
            None => {}
            Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
            Some(Value::Array(ts))
                if ts
                    .iter()
                    .all(|t| t.as_str().is_some_and(|t| TYPES.contains(&t))) => {}
            Some(other) => {
                return bad(&format!(
                    "the property '{name}' has an unknown type {other}"
                ));
            }
        }
        if prop.get("type").and_then(Value::as_str) == Some("array")
            && !prop.get("items").is_some_and(Value::is_object)
        {
            return bad(&format!(
                "the array property '{name}' needs \"items\" (providers reject it otherwise)"
            ));
        }
    }
    if let Some(required) = schema.get("required") {
        let Some(list) = required.as_array() else {
            return bad("\"required\" must be a list of property names");
        };
        for r in list {
            match r.as_str() {
                Some(r) if properties.contains_key(r) => {}
                _ => return bad(&format!("\"required\" names {r}, which is not a property")),
            }
        }
    }
    Ok(())
}

/// The interpreter for an entry, by its extension; `None` runs the entry itself.
fn interpreter(entry: &str) -> Option<&'static str> {
    match Path::new(entry).extension().and_then(|e| e.to_str()) {
        Some("py") => Some("python3"),
        Some("js" | "mjs" | "cjs") => Some("node"),
        Some("sh") => Some("sh"),
        _ => None,
    }
}

/// A tool of an executable skill, registered like a built-in one.
#[derive(Clone, Debug)]
pub struct SkillTool {
    skill: String,
    dir: PathBuf,
    entry: String,
    tool: ManifestTool,
    timeout: Duration,
    /// What the call may do: declared ∩ granted, when the grant applies to this skill.
    allowed: Permissions,
    /// The fingerprint the grant was checked against: before each call with permissions the
    /// files are hashed again, and a skill changed since then runs without them.
    bound: Option<Fingerprint>,
    workspace: PathBuf,
}

impl SkillTool {
    /// The tools of the executable skill `skill`, running in `workspace`. They get what the
    /// manifest declares and `grant` allows only when the grant applies to this skill (a
    /// global skill, in the folder it was granted in, with the manifest and entry it had then:
    /// [`Grant::check`]); otherwise they get no permissions at all. Empty for a skill without
    /// a manifest.
    pub fn all(skill: &Skill, workspace: &Path, grant: Option<&Grant>) -> Vec<SkillTool> {
        let Some(manifest) = &skill.manifest else {
            return Vec::new();
        };
        let (allowed, bound) = match grant {
            Some(grant) => match grant.check_files(skill.source, &skill.dir, manifest) {
                (GrantCheck::Applies, Some(fp)) => {
                    (manifest.permissions.intersect(&grant.permissions), Some(fp))
                }
                (check, _) => {
                    tracing::warn!(
                        skill = %skill.name,
                        reason = %check.reason(),
                        "the skill's grant does not apply; it runs without permissions \
                         (see `picoclaw skills check`)"
                    );
                    (Permissions::default(), None)
                }
            },
            None => (Permissions::default(), None),
        };
        manifest
            .tools
            .iter()
            .map(|tool| SkillTool {
                skill: manifest.name.clone(),
                dir: skill.dir.clone(),
                entry: manifest.entry.clone(),
                tool: tool.clone(),
                timeout: manifest.timeout(),
                allowed: allowed.clone(),
                bound: bound.clone(),
                workspace: workspace.to_path_buf(),
            })
            .collect()
    }

    pub fn skill(&self) -> &str {
        &self.skill
    }

    /// What this call may do: the permissions, unless the skill's files changed since its
    /// grant was checked (the operator must grant the new version). Hashing runs off the async
    /// workers.
    async fn permissions_now(&self) -> Permissions {
        let Some(bound) = self.bound.clone() else {
            return self.allowed.clone();
        };
        if self.allowed == Permissions::default() {
            return self.allowed.clone();
        }
        let (dir, entry) = (self.dir.clone(), self.entry.clone());
        let now = tokio::task::spawn_blocking(move || fingerprint(&dir, &entry))
            .await
            .unwrap_or_else(|e| Err(GrantError::Files(format!("the check stopped: {e}"))));
        match now {
            Ok(now) if now.dir == bound.dir && now.sha256 == bound.sha256 => self.allowed.clone(),
            Ok(_) => {
                tracing::warn!(skill = %self.skill, "the skill changed since it was granted; it runs without its permissions until granted again");
                Permissions::default()
            }
            Err(e) => {
                tracing::warn!(skill = %self.skill, error = %e, "cannot check the skill against its grant; it runs without its permissions");
                Permissions::default()
            }
        }
    }
}

#[async_trait]
impl Tool for SkillTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            self.tool.name.clone(),
            self.tool.description.clone(),
            self.tool.parameters.clone(),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let label = format!("{} (skill {})", self.tool.name, self.skill);
        let entry = self.dir.join(&self.entry);
        let mut cmd = match interpreter(&self.entry) {
            Some(bin) => {
                let mut c = tokio::process::Command::new(bin);
                c.arg(&entry);
                c
            }
            None => tokio::process::Command::new(&entry),
        };
        cmd.current_dir(&self.workspace)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let allowed = self.permissions_now().await;
        for name in BASE_ENV
            .iter()
            .copied()
            .map(str::to_owned)
            .chain(allowed.env.iter().cloned())
        {
            if let Ok(value) = std::env::var(&name) {
                cmd.env(name, value);
            }
        }
        cmd.env("PICOCLAW_SKILL_DIR", &self.dir);
        let mut writable = vec![std::env::temp_dir()];
        if allowed.workspace_write {
            writable.push(self.workspace.clone());
        }
        // Its own folder (the entry and what it ships) and the workspace are readable; picoclaw's
        // home and the owner's home are not.
        let policy = picoclaw_tools::Policy::new()
            .readable([self.dir.clone(), self.workspace.clone()])
            .writable(writable)
            .network(allowed.network);
        if let Err(e) = picoclaw_tools::confine_with(&mut cmd, &policy) {
            return ToolOutput::error(format!(
                "{label}: could not set up the sandbox ({e}); not run"
            ));
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return ToolOutput::error(format!("{label}: could not start {}: {e}", self.entry));
            }
        };
        let guard = GroupGuard::new(child.id());
        let request = json!({"tool": self.tool.name, "arguments": args}).to_string();
        if let Some(mut stdin) = child.stdin.take() {
            // A program that never reads its input must not block the call: write in the
            // background, and stop caring once it exits.
            tokio::spawn(async move {
                let _ = stdin.write_all(request.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let stdout = spawn_capped(child.stdout.take(), MAX_OUTPUT_BYTES);
        let stderr = spawn_capped(child.stderr.take(), MAX_STDERR_BYTES);
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        drop(guard);
        let (out, out_cut) = finish_capped(stdout).await;
        let (err, _) = finish_capped(stderr).await;
        let err = String::from_utf8_lossy(&err);
        let err = err.trim();
        let status = match status {
            Err(_) => {
                return ToolOutput::error(format!(
                    "{label}: did not answer within {} s and was stopped",
                    self.timeout.as_secs()
                ));
            }
            Ok(Err(e)) => return ToolOutput::error(format!("{label}: {e}")),
            Ok(Ok(status)) => status,
        };
        if !status.success() {
            let code = status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "killed by a signal".into());
            return ToolOutput::error(format!(
                "{label}: failed ({code}){}{}",
                if err.is_empty() { "" } else { ": " },
                tail(err, 2000)
            ));
        }
        if out_cut > 0 {
            return ToolOutput::error(format!(
                "{label}: printed more than {} KiB; a skill's result must be smaller",
                MAX_OUTPUT_BYTES / 1024
            ));
        }
        let text = String::from_utf8_lossy(&out);
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(Value::Object(obj)) if obj.contains_key("error") => ToolOutput::error(format!(
                "{label}: {}",
                as_text(obj.get("error").unwrap_or(&Value::Null))
            )),
            Ok(Value::Object(obj)) if obj.contains_key("result") || obj.contains_key("content") => {
                let v = obj.get("result").or_else(|| obj.get("content"));
                ToolOutput::ok(as_text(v.unwrap_or(&Value::Null)))
            }
            Ok(other) => ToolOutput::ok(as_text(&other)),
            Err(_) => ToolOutput::error(format!(
                "{label}: did not print a JSON result (it printed: {})",
                if text.trim().is_empty() {
                    "nothing".to_owned()
                } else {
                    format!("{:?}", tail(text.trim(), 300))
                }
            )),
        }
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
