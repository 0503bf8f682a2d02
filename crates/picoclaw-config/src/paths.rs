//! Where picoclaw keeps its files: `~/.picoclaw` (or `$PICOCLAW_HOME`) and the config file in it
//! (or `$PICOCLAW_CONFIG`).

use crate::ConfigError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The file locations in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    home: PathBuf,
    config: PathBuf,
}

impl Paths {
    /// `home` holds state, workspace, skills and logs; `config` is the config file.
    pub fn new(home: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            config: config.into(),
        }
    }

    /// From `PICOCLAW_HOME` / `PICOCLAW_CONFIG`, else `~/.picoclaw` and `~/.picoclaw/config.json`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_env_map(&env, dirs::home_dir())
    }

    /// [`Paths::from_env`] with the environment and home folder given (for tests).
    pub fn from_env_map(
        env: &HashMap<String, String>,
        user_home: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let non_empty = |k: &str| {
            env.get(k)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        let home = match non_empty("PICOCLAW_HOME") {
            Some(h) => h,
            None => user_home
                .ok_or_else(|| {
                    ConfigError::Paths(
                        "cannot find the home folder; set PICOCLAW_HOME to where picoclaw should \
                         keep its files"
                            .into(),
                    )
                })?
                .join(".picoclaw"),
        };
        let config = non_empty("PICOCLAW_CONFIG").unwrap_or_else(|| home.join("config.json"));
        Ok(Self { home, config })
    }

    /// The same locations with another config file (`--config`).
    pub fn with_config_file(mut self, config: impl Into<PathBuf>) -> Self {
        self.config = config.into();
        self
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn config_file(&self) -> &Path {
        &self.config
    }

    pub fn state_db(&self) -> PathBuf {
        self.home.join("state.db")
    }

    pub fn default_workspace(&self) -> PathBuf {
        self.home.join("workspace")
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.home.join("logs")
    }

    /// `auth.json`: logins and stored keys (`picoclaw auth`).
    pub fn auth_file(&self) -> PathBuf {
        self.home.join("auth.json")
    }

    /// `gateway.key`: the gateway's API key when the config sets none (created at its first
    /// start, mode 0600; outside the workspace, so the agent's tools cannot read it).
    pub fn gateway_key_file(&self) -> PathBuf {
        self.home.join("gateway.key")
    }

    pub fn global_skills_dir(&self) -> PathBuf {
        self.home.join("skills")
    }
}

/// `path` as a shell word, quoted only when it needs to be (for commands printed in messages:
/// `chmod 600 <path>`, `cat <path>`).
pub fn shell_quote(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-~+@%:,".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
