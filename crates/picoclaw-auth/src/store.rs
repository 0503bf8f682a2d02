//! The credential store: `~/.picoclaw/auth.json`, one entry per provider, created readable by
//! its owner only and refused when others can read it. Secrets in it are wrapped in [`Secret`]
//! so they never print.
//!
//! Optionally encrypted at rest (`picoclaw onboard --enc`): the credentials are sealed with
//! XChaCha20-Poly1305 under a key derived from a passphrase with Argon2id (the passphrase from
//! `PICOCLAW_AUTH_PASSPHRASE` or typed at a prompt), or a random key kept in the OS keychain
//! (feature `keychain`: the kernel keyring on Linux).

use base64::Engine;
use picoclaw_api::Secret;
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
    /// The ChatGPT account the login belongs to (sent as `chatgpt-account-id` to the Codex
    /// backend), from the id_token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
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
            account_id: None,
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
    /// Set instead of `credentials` when the file is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    encrypted: Option<Sealed>,
}

/// The sealed form of the credentials.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Sealed {
    cipher: String,
    /// `passphrase` or `keychain`.
    key: String,
    /// Argon2id salt (base64), for `passphrase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    salt: Option<String>,
    nonce: String,
    data: String,
}

const CIPHER: &str = "xchacha20-poly1305";
/// The environment variable holding the passphrase of an encrypted auth.json.
pub const PASSPHRASE_ENV: &str = "PICOCLAW_AUTH_PASSPHRASE";

/// Where the key of an encrypted store comes from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeySource {
    /// Derived with Argon2id from this passphrase.
    Passphrase(Secret<String>),
    /// A random key kept in the OS keychain (feature `keychain`).
    Keychain,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
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
    #[error("{path} is encrypted: {reason}")]
    Locked { path: String, reason: String },
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A derived or fetched key and the salt it belongs to (`None` for a keychain key).
type CachedKey = (Option<String>, Secret<[u8; 32]>);

/// `auth.json`.
#[derive(Debug, Clone)]
pub struct AuthStore {
    path: PathBuf,
    passphrase: Option<Secret<String>>,
    /// The key last derived or fetched, with the salt it is for (Argon2 is slow on purpose).
    key_cache: std::sync::Arc<std::sync::Mutex<Option<CachedKey>>>,
}

impl AuthStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            passphrase: None,
            key_cache: Default::default(),
        }
    }

    /// Unlocks an encrypted store with this passphrase (otherwise `PICOCLAW_AUTH_PASSPHRASE`).
    pub fn with_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Secret::new(passphrase.into()));
        self
    }

    /// Whether the file on disk is encrypted.
    pub fn is_encrypted(&self) -> Result<bool, StoreError> {
        Ok(self.read_raw()?.encrypted.is_some())
    }

    /// How the file is encrypted: `None`, `Some("passphrase")` or `Some("keychain")`.
    pub fn encryption(&self) -> Result<Option<String>, StoreError> {
        Ok(self.read_raw()?.encrypted.map(|s| s.key))
    }

    /// Encrypts the store (now and on every later write) with a key from `source`; an
    /// encrypted store is re-encrypted with the new key.
    pub fn encrypt(&self, source: KeySource) -> Result<(), StoreError> {
        let file = self.read()?;
        let (key, salt, kind) = match source {
            KeySource::Passphrase(pass) => {
                let salt = random::<16>().map_err(|r| self.locked(&r))?;
                let salt = b64().encode(salt);
                let key = derive(pass.expose(), &salt).map_err(|r| self.locked(&r))?;
                (key, Some(salt), "passphrase")
            }
            KeySource::Keychain => (
                keychain_key(&self.path, true).map_err(|r| self.locked(&r))?,
                None,
                "keychain",
            ),
        };
        if let Ok(mut cache) = self.key_cache.lock() {
            *cache = Some((salt.clone(), Secret::new(key)));
        }
        self.write_with(&file, Some((kind, salt)))
    }

    fn locked(&self, reason: &str) -> StoreError {
        StoreError::Locked {
            path: self.path.display().to_string(),
            reason: reason.to_owned(),
        }
    }

    fn key_for(&self, sealed: &Sealed) -> Result<[u8; 32], StoreError> {
        if let Ok(cache) = self.key_cache.lock()
            && let Some((salt, key)) = cache.as_ref()
            && *salt == sealed.salt
        {
            return Ok(*key.expose());
        }
        let key = match sealed.key.as_str() {
            "keychain" => keychain_key(&self.path, false).map_err(|r| self.locked(&r))?,
            "passphrase" => {
                let pass = self
                    .passphrase
                    .as_ref()
                    .map(|p| p.expose().clone())
                    .or_else(|| std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()))
                    .ok_or_else(|| {
                        self.locked(&format!(
                            "set {PASSPHRASE_ENV} to its passphrase (or run the command where it \
                             can ask for it)"
                        ))
                    })?;
                let salt = sealed
                    .salt
                    .as_deref()
                    .ok_or_else(|| self.locked("the file has no salt"))?;
                derive(&pass, salt).map_err(|r| self.locked(&r))?
            }
            other => return Err(self.locked(&format!("unknown key source '{other}'"))),
        };
        if let Ok(mut cache) = self.key_cache.lock() {
            *cache = Some((sealed.salt.clone(), Secret::new(key)));
        }
        Ok(key)
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
        let mut file = self.read_raw()?;
        let Some(sealed) = file.encrypted.take() else {
            return Ok(file);
        };
        if sealed.cipher != CIPHER {
            return Err(self.locked(&format!("unknown cipher '{}'", sealed.cipher)));
        }
        let key = self.key_for(&sealed)?;
        let nonce = b64()
            .decode(&sealed.nonce)
            .map_err(|_| self.locked("the nonce is damaged"))?;
        let data = b64()
            .decode(&sealed.data)
            .map_err(|_| self.locked("the data is damaged"))?;
        if nonce.len() != 24 {
            return Err(self.locked("the nonce is damaged"));
        }
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new((&key).into());
        let plain = cipher
            .decrypt(&nonce_of(&nonce).into(), data.as_ref())
            .map_err(|_| {
                if let Ok(mut cache) = self.key_cache.lock() {
                    *cache = None;
                }
                self.locked(if sealed.key == "passphrase" {
                    "it cannot be decrypted: wrong passphrase (or the file was changed)"
                } else {
                    "it cannot be decrypted with the key in the keychain"
                })
            })?;
        file.credentials = serde_json::from_slice(&plain).map_err(|e| StoreError::Corrupt {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        file.encrypted = Some(sealed);
        Ok(file)
    }

    fn read_raw(&self) -> Result<File, StoreError> {
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

    /// Writes `file`, sealed again when it was read sealed.
    fn write(&self, file: &File) -> Result<(), StoreError> {
        let sealing = file.encrypted.as_ref().map(|s| {
            (
                if s.key == "keychain" {
                    "keychain"
                } else {
                    "passphrase"
                },
                s.salt.clone(),
            )
        });
        self.write_with(file, sealing)
    }

    fn write_with(
        &self,
        file: &File,
        sealing: Option<(&str, Option<String>)>,
    ) -> Result<(), StoreError> {
        let mut out = File {
            version: 1,
            credentials: file.credentials.clone(),
            encrypted: None,
        };
        if let Some((kind, salt)) = sealing {
            let sealed = Sealed {
                cipher: CIPHER.into(),
                key: kind.into(),
                salt,
                nonce: String::new(),
                data: String::new(),
            };
            let key = self.key_for(&sealed)?;
            let plain = serde_json::to_vec(&out.credentials).map_err(|e| StoreError::Corrupt {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })?;
            let nonce = random::<24>().map_err(|r| self.locked(&r))?;
            use chacha20poly1305::aead::{Aead, KeyInit};
            let cipher = chacha20poly1305::XChaCha20Poly1305::new((&key).into());
            let data = cipher
                .encrypt(&nonce.into(), plain.as_ref())
                .map_err(|_| self.locked("encryption failed"))?;
            out.credentials.clear();
            out.encrypted = Some(Sealed {
                nonce: b64().encode(nonce),
                data: b64().encode(data),
                ..sealed
            });
        }
        self.write_plain(&out)
    }

    fn write_plain(&self, file: &File) -> Result<(), StoreError> {
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

fn nonce_of(bytes: &[u8]) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&bytes[..24]);
    nonce
}

fn random<const N: usize>() -> Result<[u8; N], String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness available".to_owned())?;
    Ok(bytes)
}

/// Argon2id (the crate's defaults: 19 MiB, 2 passes) of `passphrase` with the base64 `salt`.
fn derive(passphrase: &str, salt: &str) -> Result<[u8; 32], String> {
    let salt = b64()
        .decode(salt)
        .map_err(|_| "the salt is damaged".to_owned())?;
    let mut key = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .map_err(|e| format!("cannot derive the key: {e}"))?;
    Ok(key)
}

/// The key kept in the OS keychain for the store at `path`; with `create`, a new random one is
/// made when there is none.
#[cfg(feature = "keychain")]
fn keychain_key(path: &Path, create: bool) -> Result<[u8; 32], String> {
    let entry = keyring::Entry::new("picoclaw", &format!("auth.json key {}", path.display()))
        .map_err(|e| format!("the OS keychain is not usable: {e}"))?;
    match entry.get_password() {
        Ok(text) => {
            let bytes = b64()
                .decode(text.trim())
                .map_err(|_| "the key in the keychain is damaged".to_owned())?;
            bytes
                .try_into()
                .map_err(|_| "the key in the keychain is damaged".to_owned())
        }
        Err(keyring::Error::NoEntry) if create => {
            let key = random::<32>()?;
            entry
                .set_password(&b64().encode(key))
                .map_err(|e| format!("cannot store the key in the OS keychain: {e}"))?;
            Ok(key)
        }
        Err(keyring::Error::NoEntry) => Err(
            "its key is not in this machine's keychain (was it made on another machine, or \
                 after a reboot cleared the kernel keyring?)"
                .into(),
        ),
        Err(e) => Err(format!("the OS keychain is not usable: {e}")),
    }
}

#[cfg(not(feature = "keychain"))]
fn keychain_key(_path: &Path, _create: bool) -> Result<[u8; 32], String> {
    Err(
        "its key is in the OS keychain, and this build has no keychain support (build with \
         --features keychain), or use a passphrase"
            .into(),
    )
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

    #[test]
    fn encrypted_at_rest_with_a_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let store = AuthStore::new(&path).with_passphrase("correct horse");
        let key = |k: &str| Credential::ApiKey {
            key: Secret::new(k.to_owned()),
        };
        store.put("openai", key("sk-plain-before")).unwrap();
        store
            .encrypt(KeySource::Passphrase(Secret::new("correct horse".into())))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("sk-plain-before"), "{text}");
        assert!(text.contains("xchacha20-poly1305"), "{text}");
        assert_eq!(store.encryption().unwrap().as_deref(), Some("passphrase"));
        // Readable with the passphrase; later writes stay encrypted.
        let again = AuthStore::new(&path).with_passphrase("correct horse");
        assert!(matches!(
            again.get("openai").unwrap(),
            Some(Credential::ApiKey { .. })
        ));
        again.put("deepseek", key("sk-second-secret")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("sk-second-secret") && !text.contains("sk-plain-before"));
        assert_eq!(again.providers().unwrap().len(), 2);
        // Wrong or missing passphrase: a clear refusal, nothing lost.
        let err = AuthStore::new(&path)
            .with_passphrase("wrong")
            .get("openai")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        if std::env::var(PASSPHRASE_ENV).is_err() {
            let err = AuthStore::new(&path).get("openai").unwrap_err().to_string();
            assert!(err.contains(PASSPHRASE_ENV), "{err}");
        }
        // A tampered file is refused, not misread.
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let data = v["encrypted"]["data"].as_str().unwrap().to_owned();
        let mut bytes = b64().decode(data).unwrap();
        bytes[0] ^= 1;
        v["encrypted"]["data"] = serde_json::Value::String(b64().encode(bytes));
        std::fs::write(&path, v.to_string()).unwrap();
        let err = AuthStore::new(&path)
            .with_passphrase("correct horse")
            .get("openai")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be decrypted"), "{err}");
    }

    #[cfg(feature = "keychain")]
    #[test]
    fn encrypted_with_a_key_in_the_os_keychain_or_a_clear_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let store = AuthStore::new(&path);
        store
            .put(
                "openai",
                Credential::ApiKey {
                    key: Secret::new("sk-keychain-kept".into()),
                },
            )
            .unwrap();
        match store.encrypt(KeySource::Keychain) {
            Ok(()) => {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(!text.contains("sk-keychain-kept") && text.contains("keychain"));
                // A fresh handle finds the key in the keychain, no passphrase needed.
                assert!(matches!(
                    AuthStore::new(&path).get("openai").unwrap(),
                    Some(Credential::ApiKey { .. })
                ));
                // Without the key (the file moved to another place): a clear refusal.
                let moved = dir.path().join("elsewhere.json");
                std::fs::copy(&path, &moved).unwrap();
                let err = AuthStore::new(&moved)
                    .get("openai")
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("keychain"), "{err}");
            }
            Err(e) => {
                // No usable keychain here (no session keyring): the reason names it, and the
                // store is left as it was, readable.
                assert!(e.to_string().contains("keychain"), "{e}");
                assert!(!store.is_encrypted().unwrap());
                assert!(matches!(
                    store.get("openai").unwrap(),
                    Some(Credential::ApiKey { .. })
                ));
            }
        }
    }
}
