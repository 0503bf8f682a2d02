//! Key Vault references in config.json: a secret-bearing value written as
//! `keyvault://<vault>/<secret>` (or App Service's `@Microsoft.KeyVault(SecretUri=...)`) is read
//! from Azure Key Vault at start with the Azure credential chain, held in memory only, read again
//! when a provider refuses it (401), and never written back to the file.

use crate::ConfigError;
use crate::model::AzureSection;
use async_trait::async_trait;
use picoclaw_api::{
    Capabilities, ChatRequest, ChatResponse, ChatStream, LlmProvider, ProviderError, Secret,
    TokenSource,
};
use picoclaw_auth::{
    AzureCredentialKind, AzureIdentityConfig, AzureTokenSource, CachedToken, KEYVAULT_SCOPE,
    KeyVault, KeyVaultReference,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Whether a key of this name holds a secret (`api_key`, `api_keys`, `token`, `bot_token`,
/// `signing_secret`, `password`...): only such values are looked at for references.
fn secret_bearing(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["key", "token", "secret", "password"]
        .iter()
        .any(|w| k.contains(w))
}

/// A reference found in the config: the key path and the reference.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub path: Vec<String>,
    pub reference: KeyVaultReference,
}

/// The references among the secret-bearing string values of `value`; a value that looks like a
/// reference but is malformed is an error naming its key.
pub(crate) fn find_references(value: &Value) -> Result<Vec<Found>, ConfigError> {
    fn walk(
        v: &Value,
        path: &mut Vec<String>,
        bearing: bool,
        out: &mut Vec<Found>,
        bad: &mut Vec<String>,
    ) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    path.push(k.clone());
                    walk(child, path, secret_bearing(k), out, bad);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    // An array's items are as secret as the array (`api_keys`).
                    walk(child, path, bearing, out, bad);
                    path.pop();
                }
            }
            Value::String(s) if bearing => match KeyVaultReference::parse(s.trim()) {
                None => {}
                Some(Ok(reference)) => out.push(Found {
                    path: path.clone(),
                    reference,
                }),
                Some(Err(why)) => bad.push(format!("{}: {why}", path.join("."))),
            },
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    walk(value, &mut Vec::new(), false, &mut out, &mut bad);
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::KeyVault(bad.join("; ")))
    }
}

/// The Key Vault client a config uses, and the references it resolved (for a refresh).
pub struct KeyVaultSecrets {
    vault: KeyVault,
    /// key path (`providers.openai.api_key`) → reference.
    by_key: BTreeMap<String, KeyVaultReference>,
}

impl std::fmt::Debug for KeyVaultSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSecrets")
            .field("references", &self.by_key)
            .finish()
    }
}

impl KeyVaultSecrets {
    /// The reference the value at `key` was read from.
    pub fn reference(&self, key: &str) -> Option<&KeyVaultReference> {
        self.by_key.get(key)
    }

    /// Reads `reference` again (after the value was refused).
    pub async fn read(&self, reference: &KeyVaultReference) -> Result<Secret<String>, String> {
        self.vault
            .secret(reference)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The Azure identity the config describes: the chain (or the pinned credential), the
/// user-assigned identity, the variables read with the config.
pub(crate) fn identity(
    azure: &AzureSection,
    env: &crate::Environment,
) -> Result<AzureIdentityConfig, ConfigError> {
    let kind = parse_credential(&azure.credential).map_err(ConfigError::KeyVault)?;
    let mi = Some(azure.managed_identity_client_id.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            env.get("AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID")
                .map(str::to_owned)
        })
        .or_else(|| env.get("MANAGED_IDENTITY_CLIENT_ID").map(str::to_owned));
    Ok(AzureIdentityConfig::default()
        .with_env(env.vars().clone())
        .with_credential(kind)
        .with_managed_identity_client_id(mi))
}

/// `azure.credential`: empty is the chain.
pub(crate) fn parse_credential(raw: &str) -> Result<AzureCredentialKind, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(AzureCredentialKind::Chain);
    }
    raw.parse()
        .map_err(|e: String| format!("azure.credential: {e}"))
}

/// Reads every reference in `value` from Key Vault and puts the secrets in their place;
/// `origins` gets `Key Vault <reference>` for each key. Blocks (on a thread of its own) until
/// every secret is read or one fails: this runs once, at start.
pub(crate) fn resolve(
    value: &mut Value,
    found: Vec<Found>,
    env: &crate::Environment,
    origins: &mut Vec<(String, String)>,
) -> Result<Option<Arc<KeyVaultSecrets>>, ConfigError> {
    if found.is_empty() {
        return Ok(None);
    }
    let azure: AzureSection = serde_json::from_value(value["azure"].clone()).unwrap_or_default();
    let scope = Some(azure.keyvault_scope.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| KEYVAULT_SCOPE.to_owned());
    let endpoint = Some(azure.keyvault_endpoint.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| env.get("AZURE_KEYVAULT_ENDPOINT").map(str::to_owned));
    let identity = identity(&azure, env)?.with_scope(scope);
    let tokens: Arc<dyn TokenSource> =
        Arc::new(CachedToken::new(Arc::new(AzureTokenSource::new(identity))));
    let vault = KeyVault::new(tokens).with_endpoint(endpoint);
    let refs: Vec<KeyVaultReference> = found.iter().map(|f| f.reference.clone()).collect();
    let fetched = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<Vec<Secret<String>>, String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start the async runtime: {e}"))?;
                rt.block_on(async {
                    // Each distinct reference once.
                    let mut cache: HashMap<String, Secret<String>> = HashMap::new();
                    let mut out = Vec::new();
                    for r in &refs {
                        let text = r.to_string();
                        if let Some(s) = cache.get(&text) {
                            out.push(s.clone());
                            continue;
                        }
                        let secret = vault.secret(r).await.map_err(|e| e.to_string())?;
                        cache.insert(text, secret.clone());
                        out.push(secret);
                    }
                    Ok(out)
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the Key Vault reader stopped unexpectedly".to_owned()))
    })
    .map_err(ConfigError::KeyVault)?;
    let mut by_key = BTreeMap::new();
    for (f, secret) in found.into_iter().zip(fetched) {
        crate::load::set_path(value, &f.path, Value::String(secret.expose().clone()));
        let key = f.path.join(".");
        origins.push((key.clone(), format!("Key Vault {}", f.reference)));
        by_key.insert(key, f.reference);
    }
    Ok(Some(Arc::new(KeyVaultSecrets { vault, by_key })))
}

/// Builds the provider again with another key.
pub(crate) type Rebuild =
    Box<dyn Fn(Secret<String>) -> Result<Arc<dyn LlmProvider>, ProviderError> + Send + Sync>;

/// A provider whose key came from Key Vault: when the vendor refuses the key (401), the secret
/// is read again and, if it changed (rotated), the provider is rebuilt with it and the request
/// sent once more.
pub(crate) struct RefreshingKey {
    name: String,
    current: RwLock<(Secret<String>, Arc<dyn LlmProvider>)>,
    rebuild: Rebuild,
    secrets: Arc<KeyVaultSecrets>,
    reference: KeyVaultReference,
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RefreshingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingKey")
            .field("name", &self.name)
            .field("reference", &self.reference)
            .finish()
    }
}

impl RefreshingKey {
    pub(crate) fn new(
        key: Secret<String>,
        provider: Arc<dyn LlmProvider>,
        rebuild: Rebuild,
        secrets: Arc<KeyVaultSecrets>,
        reference: KeyVaultReference,
    ) -> Self {
        Self {
            name: provider.name().to_owned(),
            current: RwLock::new((key, provider)),
            rebuild,
            secrets,
            reference,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn provider(&self) -> Arc<dyn LlmProvider> {
        match self.current.read() {
            Ok(g) => g.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// After `used` was refused: a provider with the secret as Key Vault has it now, if that
    /// differs from the refused one.
    async fn refreshed(&self, used: &Arc<dyn LlmProvider>) -> Option<Arc<dyn LlmProvider>> {
        let _one_at_a_time = self.refreshing.lock().await;
        let (key, now) = match self.current.read() {
            Ok(g) => (g.0.clone(), g.1.clone()),
            Err(poisoned) => {
                let g = poisoned.into_inner();
                (g.0.clone(), g.1.clone())
            }
        };
        if !Arc::ptr_eq(&now, used) {
            return Some(now); // another request refreshed it meanwhile
        }
        let fresh = match tokio::time::timeout(
            Duration::from_secs(30),
            self.secrets.read(&self.reference),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(reference = %self.reference, error = %e, "cannot read the key from Key Vault again");
                return None;
            }
            Err(_) => {
                tracing::warn!(reference = %self.reference, "Key Vault did not answer within 30 s");
                return None;
            }
        };
        if fresh.expose() == key.expose() {
            return None; // the same key: refusing it again would not help
        }
        match (self.rebuild)(fresh.clone()) {
            Ok(p) => {
                tracing::info!(reference = %self.reference, "the provider refused its key; using the newer one from Key Vault");
                match self.current.write() {
                    Ok(mut g) => *g = (fresh, p.clone()),
                    Err(poisoned) => *poisoned.into_inner() = (fresh, p.clone()),
                }
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot rebuild the provider with the new key");
                None
            }
        }
    }
}

#[async_trait]
impl LlmProvider for RefreshingKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        self.provider().capabilities()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let p = self.provider();
        match p.chat(req.clone()).await {
            Err(e @ ProviderError::Auth { status: 401, .. }) => match self.refreshed(&p).await {
                Some(fresh) => fresh.chat(req).await,
                None => Err(e),
            },
            other => other,
        }
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let p = self.provider();
        match p.stream(req.clone()).await {
            Err(e @ ProviderError::Auth { status: 401, .. }) => match self.refreshed(&p).await {
                Some(fresh) => fresh.stream(req).await,
                None => Err(e),
            },
            other => other,
        }
    }
}
