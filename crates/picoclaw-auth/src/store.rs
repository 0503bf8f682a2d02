//! The credential store: `~/.picoclaw/auth.json`, one entry per provider, created readable by
//! its owner only and refused when others can read it. Secrets in it are wrapped in [`Secret`]
//! so they never print.

use picoclaw_types::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One provider's credential.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Credential {
    /// A key or long-lived token sent as is.
    ApiKey { key: Secret<String> },
    /// An OAuth login: an access token, the refresh token that renews it, and where to renew.
    Oauth(OauthCredential),
}

/// An OAuth login's tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OauthCredential {
    pub access_token: Secret<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret<String>>,
    /// Unix seconds; `None` when the server did not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Who logged in (an e-mail or account id), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The token endpoint and client the refresh goes to.
    pub token_url: String,
    pub client_id: String,
    /// How the access token is renewed: `refresh_token` (standard) or `copilot` (exchange the
    /// GitHub token kept as `refresh_token` for a Copilot token).
    #[serde(default = "default_renewal")]
    pub renewal: String,
}

fn default_renewal() -> String {
    "refresh_token".into()
}

impl OauthCredential {
    pub fn new(access_token: impl Into<String>, token_url: &str, client_id: &str) -> Self {
        Self {
            access_token: Secret::new(access_token.into()),
            refresh_token: None,
            expires_at: None,
            account: None,
            token_url: token_url.to_owned(),
            client_id: client_id.to_owned(),
            renewal: default_renewal(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    #[serde(default)]
    credentials: BTreeMap<String, Credential>,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "{path} can be read by other users (mode {mode:o}); it holds your logins. Run `chmod 600 \
         {path}` and try again"
    )]
    Exposed { path: String, mode: u32 },
    #[error("{path} is not a valid credential file: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `auth.json`.
#[derive(Debug, Clone)]
pub struct AuthStore {
    path: PathBuf,
}

impl AuthStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn read(&self) -> Result<File, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
            Err(e) => return Err(self.io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::Exposed {
                path: self.path.display().to_string(),
                mode,
            });
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.io(e))?;
        if text.trim().is_empty() {
            return Ok(File::default());
        }
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn write(&self, file: &File) -> Result<(), StoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let tmp = self
            .path
            .with_extension(format!("json.tmp{}", std::process::id()));
        let text = serde_json::to_string_pretty(file).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        f.write_all(text.as_bytes()).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))
    }

    /// The credential of `provider`, if any.
    pub fn get(&self, provider: &str) -> Result<Option<Credential>, StoreError> {
        Ok(self.read()?.credentials.remove(provider))
    }

    /// Every provider with a credential.
    pub fn providers(&self) -> Result<Vec<(String, Credential)>, StoreError> {
        Ok(self.read()?.credentials.into_iter().collect())
    }

    /// Stores (or replaces) `provider`'s credential.
    pub fn put(&self, provider: &str, credential: Credential) -> Result<(), StoreError> {
        let mut file = self.read()?;
        file.version = 1;
        file.credentials.insert(provider.to_owned(), credential);
        self.write(&file)
    }

    /// Forgets `provider`; `false` when there was nothing to forget.
    pub fn remove(&self, provider: &str) -> Result<bool, StoreError> {
        let mut file = self.read()?;
        let had = file.credentials.remove(provider).is_some();
        if had {
            self.write(&file)?;
        }
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_and_refused_when_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let store = AuthStore::new(dir.path().join("auth.json"));
        assert!(store.get("openai").unwrap().is_none());
        store
            .put(
                "openai",
                Credential::ApiKey {
                    key: Secret::new("sk-secret".into()),
                },
            )
            .unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            store.get("openai").unwrap(),
            Some(Credential::ApiKey { .. })
        ));
        // Debug output never shows the secret.
        let shown = format!("{:?}", store.get("openai").unwrap());
        assert!(!shown.contains("sk-secret"), "{shown}");
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.get("openai").unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(store.remove("openai").unwrap());
        assert!(!store.remove("openai").unwrap());
        std::fs::write(store.path(), "{oops").unwrap();
        assert!(
            store
                .get("x")
                .unwrap_err()
                .to_string()
                .contains("not a valid")
        );
    }
}
