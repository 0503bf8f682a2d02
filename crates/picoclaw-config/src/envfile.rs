//! The environment picoclaw reads: the process environment, then `.env` files (the working
//! folder's, then picoclaw home's) for names the process does not set.
//!
//! `.env` values are picoclaw's own settings: they are never put into the process environment
//! (no `set_var`), so nothing read from a `.env` file reaches a child process (an `exec`
//! command, an MCP server). A `.env` file inside the workspace is never read (the model can
//! write there), and one holding secrets that the group or others can read is refused with the
//! `chmod` that fixes it.

use crate::ConfigError;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a variable's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VarOrigin {
    /// The process environment.
    Process,
    /// A `.env` file.
    File(PathBuf),
}

/// The variables picoclaw reads, and where each came from. Its `Debug` shows names only.
#[derive(Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
    from_files: HashMap<String, PathBuf>,
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort_unstable();
        f.debug_struct("Environment")
            .field("names", &names)
            .field("files", &self.files)
            .finish()
    }
}

impl Environment {
    /// The process environment alone.
    pub fn process() -> Self {
        Self::from_map(std::env::vars().collect())
    }

    /// `vars` as the process environment (embedders, tests).
    pub fn from_map(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            from_files: HashMap::new(),
            files: Vec::new(),
        }
    }

    /// Every variable, the `.env` files' included.
    pub fn vars(&self) -> &HashMap<String, String> {
        &self.vars
    }

    /// `name`'s value when it is set and not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Where `name` came from, when it is set.
    pub fn origin(&self, name: &str) -> Option<VarOrigin> {
        self.get(name)?;
        Some(match self.from_files.get(name) {
            Some(path) => VarOrigin::File(path.clone()),
            None => VarOrigin::Process,
        })
    }

    /// `name`'s origin in words: `environment NAME` or `.env PATH (NAME)`.
    pub fn describe(&self, name: &str) -> Option<String> {
        Some(match self.origin(name)? {
            VarOrigin::Process => format!("environment {name}"),
            VarOrigin::File(path) => format!(".env {} ({name})", path.display()),
        })
    }

    /// The `.env` files that were read, in the order they count.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Adds the variables of the `.env` file at `path` that are not set yet.
    fn add_file(&mut self, path: &Path, vars: Vec<(String, String)>) {
        for (name, value) in vars {
            if self.vars.contains_key(&name) {
                continue;
            }
            self.from_files.insert(name.clone(), path.to_path_buf());
            self.vars.insert(name, value);
        }
        self.files.push(path.to_path_buf());
    }
}

/// Whether a variable named `name` holds a secret (a `.env` with one must be private).
pub(crate) fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"]
        .iter()
        .any(|w| upper.contains(w))
}

/// The process environment with the `.env` files among `candidates` (earlier ones win) that
/// exist and are not inside `workspace`. Files skipped for being in the workspace are named in
/// the warnings.
pub(crate) fn with_env_files(
    process: &HashMap<String, String>,
    candidates: &[PathBuf],
    workspace: &Path,
    warnings: &mut Vec<String>,
) -> Result<Environment, ConfigError> {
    let mut env = Environment::from_map(process.clone());
    let workspace = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let mut seen: Vec<PathBuf> = Vec::new();
    for path in candidates {
        let Ok(real) = std::fs::canonicalize(path) else {
            continue; // no such file
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real.clone());
        if real.starts_with(&workspace) {
            warnings.push(format!(
                "{} is not read: it is inside the workspace ({}), where the agent can write; \
                 keep .env files in the folder you start picoclaw from or in picoclaw's home",
                path.display(),
                workspace.display()
            ));
            continue;
        }
        let vars = read_env_file(path)?;
        env.add_file(path, vars);
    }
    Ok(env)
}

/// The variables of one `.env` file, refused when it holds a secret others can read.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let fail = |message: String| ConfigError::EnvFile {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    // The checks are made on the opened file, so a swap after them changes nothing.
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > 1024 * 1024 {
        return Err(fail(
            "larger than 1 MiB; is this really a .env file?".into(),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| fail(format!("not readable as UTF-8 text: {e}")))?;
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(dotenvy::Error::LineParse(line, at)) => {
                let number = text
                    .lines()
                    .position(|l| l.trim_end() == line.trim_end())
                    .map(|i| format!("line {}: ", i + 1))
                    .unwrap_or_default();
                return Err(fail(format!(
                    "{number}cannot parse '{}' (at character {at}); write NAME=value, one per \
                     line",
                    clip(&line)
                )));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let secrets: Vec<&str> = vars
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| is_secret_name(k))
            .collect();
        if mode & 0o077 != 0 && !secrets.is_empty() {
            return Err(fail(format!(
                "holds secrets ({}) but others can read it (mode {mode:o}); run: chmod 600 {}",
                secrets.join(", "),
                crate::paths::shell_quote(path)
            )));
        }
    }
    Ok(vars)
}

/// The start of a line that did not parse, never a whole value (it may be a secret).
fn clip(line: &str) -> String {
    let name: String = line
        .chars()
        .take_while(|c| *c != '=' && !c.is_whitespace())
        .take(40)
        .collect();
    if name.len() < line.len() {
        format!("{name}…")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "OPENAI_API_KEY",
            "TELEGRAM_BOT_TOKEN",
            "AZURE_CLIENT_SECRET",
            "PG_PASSWORD",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["AZURE_OPENAI_ENDPOINT", "PICOCLAW_AGENTS_DEFAULTS_MODEL"] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn a_bad_line_is_named_without_its_value() {
        assert_eq!(clip("OPENAI_API_KEY sk-secret"), "OPENAI_API_KEY…");
        assert_eq!(clip("A-B=sk-secret"), "A-B…");
        assert_eq!(clip("NAME"), "NAME");
    }
}
