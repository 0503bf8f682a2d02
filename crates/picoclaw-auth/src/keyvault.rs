//! Azure Key Vault secret references (`keyvault://vault/secret[/version]` and App Service's
//! `@Microsoft.KeyVault(...)`) and reading them with an Entra ID token.

use picoclaw_api::Secret;
use picoclaw_api::auth::{AuthError, TokenSource};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The scope Key Vault tokens are issued for.
pub const KEYVAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// The Key Vault REST API version asked for.
const API_VERSION: &str = "7.4";

const FORMS: &str = "expected `keyvault://<vault-name>/<secret-name>[/<version>]`, \
     `@Microsoft.KeyVault(SecretUri=https://<vault-name>.vault.azure.net/secrets/<secret-name>[/<version>])` \
     or `@Microsoft.KeyVault(VaultName=<vault-name>;SecretName=<secret-name>[;SecretVersion=<version>])`";

/// A reference to one secret in a Key Vault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyVaultReference {
    /// The vault's name, or for the `SecretUri` form the vault's `https://` base URL.
    pub vault: String,
    /// The secret's name.
    pub secret: String,
    /// A version; `None`: the current one.
    pub version: Option<String>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn is_vault_name(s: &str) -> bool {
    (3..=24).contains(&s.len()) && is_name(s)
}

fn is_version(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())
}

impl KeyVaultReference {
    /// Reads a configuration value: `None` when it is not a Key Vault reference at all;
    /// `Some(Err)` when it looks like one but is malformed (the message gives the forms).
    pub fn parse(value: &str) -> Option<Result<KeyVaultReference, String>> {
        let value = value.trim();
        if let Some(rest) = strip_prefix_ci(value, "keyvault://") {
            return Some(Self::parse_scheme(rest).ok_or_else(|| malformed(value)));
        }
        let inner = strip_prefix_ci(value, "@Microsoft.KeyVault(")?;
        Some(
            inner
                .strip_suffix(')')
                .and_then(Self::parse_app_service)
                .ok_or_else(|| malformed(value)),
        )
    }

    fn parse_scheme(rest: &str) -> Option<Self> {
        let mut parts = rest.split('/');
        let vault = parts.next().filter(|v| is_vault_name(v))?;
        let secret = parts.next().filter(|s| is_name(s))?;
        let version = match parts.next() {
            None | Some("") => None,
            Some(v) if is_version(v) => Some(v.to_owned()),
            Some(_) => return None,
        };
        if parts.any(|p| !p.is_empty()) {
            return None;
        }
        Some(Self {
            vault: vault.to_owned(),
            secret: secret.to_owned(),
            version,
        })
    }

    fn parse_app_service(inner: &str) -> Option<Self> {
        let mut fields = std::collections::HashMap::new();
        for pair in inner.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=')?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim());
        }
        if let Some(uri) = fields.get("secreturi") {
            if fields.len() != 1 {
                return None;
            }
            return Self::parse_secret_uri(uri);
        }
        let vault = fields.get("vaultname").filter(|v| is_vault_name(v))?;
        let secret = fields.get("secretname").filter(|s| is_name(s))?;
        let version = match fields.get("secretversion") {
            None | Some(&"") => None,
            Some(v) if is_version(v) => Some((*v).to_owned()),
            Some(_) => return None,
        };
        let known = 2 + usize::from(fields.contains_key("secretversion"));
        if fields.len() != known {
            return None;
        }
        Some(Self {
            vault: (*vault).to_owned(),
            secret: (*secret).to_owned(),
            version,
        })
    }

    /// `https://<vault>.vault.azure.net/secrets/<name>[/<version>][/]`.
    fn parse_secret_uri(uri: &str) -> Option<Self> {
        let rest = strip_prefix_ci(uri, "https://")?;
        let (host, path) = rest.split_once('/')?;
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
        {
            return None;
        }
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut parts = path.split('/');
        if parts.next() != Some("secrets") {
            return None;
        }
        let secret = parts.next().filter(|s| is_name(s))?;
        let version = match parts.next() {
            None => None,
            Some(v) if is_version(v) => Some(v.to_owned()),
            Some(_) => return None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            vault: format!("https://{host}"),
            secret: secret.to_owned(),
            version,
        })
    }

    /// The vault's base URL: the `SecretUri` form's own, else `https://<vault>.vault.azure.net`.
    fn base(&self) -> String {
        if self.vault.starts_with("https://") {
            self.vault.clone()
        } else {
            format!("https://{}.vault.azure.net", self.vault)
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn malformed(value: &str) -> String {
    format!("malformed Key Vault reference `{value}`: {FORMS}")
}

impl fmt::Display for KeyVaultReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.vault.starts_with("https://") {
            write!(
                f,
                "@Microsoft.KeyVault(SecretUri={}/secrets/{}",
                self.vault, self.secret
            )?;
            if let Some(v) = &self.version {
                write!(f, "/{v}")?;
            }
            f.write_str(")")
        } else {
            write!(f, "keyvault://{}/{}", self.vault, self.secret)?;
            if let Some(v) = &self.version {
                write!(f, "/{v}")?;
            }
            Ok(())
        }
    }
}

/// Why a Key Vault secret could not be read; every message names the reference.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyVaultError {
    /// No token for Key Vault (the error lists each credential tried).
    #[error("Key Vault reference {reference}: no token for Key Vault: {source}")]
    NoToken {
        /// The reference, as written.
        reference: String,
        /// Why no token could be had.
        #[source]
        source: AuthError,
    },
    /// The vault could not be reached.
    #[error("Key Vault reference {reference}: cannot reach {url}: {cause}")]
    Unreachable {
        /// The reference, as written.
        reference: String,
        /// The URL asked.
        url: String,
        /// The transport's error.
        cause: String,
    },
    /// 401/403: the identity may not read the secret.
    #[error(
        "Key Vault reference {reference}: access denied ({status}: {message}); the identity \
         lacks access: assign it the \"Key Vault Secrets User\" role on the vault (or, for a \
         vault using access policies, a policy allowing get on secrets)"
    )]
    Denied {
        /// The reference, as written.
        reference: String,
        /// 401 or 403.
        status: u16,
        /// Key Vault's `error.message`.
        message: String,
    },
    /// 404: no such secret (or version) in the vault.
    #[error("Key Vault reference {reference}: secret not found in that vault ({message})")]
    NotFound {
        /// The reference, as written.
        reference: String,
        /// Key Vault's `error.message`.
        message: String,
    },
    /// Another error status.
    #[error("Key Vault reference {reference}: Key Vault answered {status}: {message}")]
    Status {
        /// The reference, as written.
        reference: String,
        /// The HTTP status.
        status: u16,
        /// Key Vault's `error.message` (or the start of the body).
        message: String,
    },
    /// A success without a readable `value`.
    #[error("Key Vault reference {reference}: malformed answer from {url}: {cause}")]
    Malformed {
        /// The reference, as written.
        reference: String,
        /// The URL asked.
        url: String,
        /// What was wrong.
        cause: String,
    },
}

/// Reads secrets from Key Vault with tokens from a [`TokenSource`] (one for
/// [`KEYVAULT_SCOPE`]; the caller caches and refreshes it).
pub struct KeyVault {
    tokens: Arc<dyn TokenSource>,
    endpoint: Option<String>,
    /// The caller's client, else the default one, built on first use.
    http: std::sync::OnceLock<reqwest::Client>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault")
            .field("tokens", &self.tokens.describe())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl KeyVault {
    /// A reader taking its bearer tokens from `tokens`.
    pub fn new(tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            tokens,
            endpoint: None,
            http: std::sync::OnceLock::new(),
        }
    }

    /// A base URL replacing `https://<vault-name>.vault.azure.net` for every reference (a
    /// private endpoint, a sovereign cloud, a test); plain HTTP is allowed, the operator sets it.
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .filter(|e| !e.is_empty());
        self
    }

    /// The HTTP client to use (default: picoclaw's TLS, 10 s to connect, 30 s in all).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = std::sync::OnceLock::from(client);
        self
    }

    /// Reads the secret `r` refers to.
    pub async fn secret(&self, r: &KeyVaultReference) -> Result<Secret<String>, KeyVaultError> {
        let reference = r.to_string();
        let token = self
            .tokens
            .token()
            .await
            .map_err(|source| KeyVaultError::NoToken {
                reference: reference.clone(),
                source,
            })?;
        let base = self.endpoint.clone().unwrap_or_else(|| r.base());
        let mut url = format!("{base}/secrets/{}", r.secret);
        if let Some(v) = &r.version {
            url.push('/');
            url.push_str(v);
        }
        url.push_str("?api-version=");
        url.push_str(API_VERSION);
        let http = self.http.get_or_init(|| {
            crate::azure::http_client(
                "key vault",
                Duration::from_secs(10),
                Duration::from_secs(30),
            )
        });
        let unreachable = |e: reqwest::Error| KeyVaultError::Unreachable {
            reference: reference.clone(),
            url: url.clone(),
            cause: error_chain(&e),
        };
        let response = http
            .get(&url)
            .bearer_auth(token.token.expose())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
        if status.is_success() {
            return match json
                .as_ref()
                .and_then(|j| j.get("value"))
                .and_then(|v| v.as_str())
            {
                Some(v) => Ok(Secret::new(v.to_owned())),
                None => Err(KeyVaultError::Malformed {
                    reference,
                    url,
                    cause: "no string `value` in the JSON answer".into(),
                }),
            };
        }
        let message = json
            .as_ref()
            .and_then(|j| j.pointer("/error/message"))
            .and_then(|m| m.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.chars().take(200).collect());
        Err(match status.as_u16() {
            401 | 403 => KeyVaultError::Denied {
                reference,
                status: status.as_u16(),
                message,
            },
            404 => KeyVaultError::NotFound { reference, message },
            s => KeyVaultError::Status {
                reference,
                status: s,
                message,
            },
        })
    }
}

/// An error and its causes on one line (reqwest's own message omits them).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
