//! Azure Entra ID tokens through `azure_identity`, in the order Azure hosts expect.

#[cfg(feature = "azure")]
use crate::azure_cert::{CertificateAssertion, CertificateKey};
use async_trait::async_trait;
#[cfg(feature = "azure")]
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
#[cfg(feature = "azure")]
use azure_core::credentials::TokenCredential;
#[cfg(feature = "azure")]
use azure_core::http::{ClientOptions, Transport};
#[cfg(feature = "azure")]
use azure_identity::{
    AzureCliCredential, AzureDeveloperCliCredential, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use picoclaw_api::auth::{AccessToken, AuthError, TokenSource};
use std::collections::HashMap;
#[cfg(feature = "azure")]
use std::path::PathBuf;
#[cfg(feature = "azure")]
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "azure")]
use std::time::SystemTime;

/// The scope Azure OpenAI tokens are issued for.
pub const DEFAULT_AZURE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Which credential [`AzureTokenSource`] uses: the whole chain, or exactly one (config
/// `azure.credential`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureCredentialKind {
    /// Environment → workload identity → managed identity → Azure CLI → Azure Developer CLI.
    #[default]
    Chain,
    /// A service principal from the environment: a client secret, else a certificate.
    Environment,
    /// Workload identity (AKS): `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// Managed identity: the App Service / Container Apps endpoint, else IMDS.
    ManagedIdentity,
    /// The Azure CLI (`az login`).
    Cli,
    /// The Azure Developer CLI (`azd auth login`).
    DeveloperCli,
}

impl AzureCredentialKind {
    /// The accepted spellings, canonical ones first.
    const SPELLINGS: &[(&str, AzureCredentialKind)] = &[
        ("chain", Self::Chain),
        ("environment", Self::Environment),
        ("workload_identity", Self::WorkloadIdentity),
        ("managed_identity", Self::ManagedIdentity),
        ("cli", Self::Cli),
        ("developer_cli", Self::DeveloperCli),
        ("azd", Self::DeveloperCli),
    ];
}

impl std::fmt::Display for AzureCredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::SPELLINGS
            .iter()
            .find(|(_, k)| k == self)
            .map(|(n, _)| *n)
            .unwrap_or("chain");
        f.write_str(name)
    }
}

impl std::str::FromStr for AzureCredentialKind {
    type Err = String;

    /// Case-insensitive; `-` is read as `_` (`developer-cli`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::SPELLINGS
            .iter()
            .find(|(n, _)| *n == wanted)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                format!(
                    "unknown Azure credential `{s}`; expected one of: {}",
                    Self::SPELLINGS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

/// How to get Azure tokens.
#[derive(Clone)]
#[non_exhaustive]
pub struct AzureIdentityConfig {
    /// `AZURE_OPENAI_SCOPE`; default [`DEFAULT_AZURE_SCOPE`].
    pub scope: String,
    /// A user-assigned managed identity's client id (`AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID`,
    /// else `MANAGED_IDENTITY_CLIENT_ID` from the environment): in the chain, only that identity
    /// is used.
    pub managed_identity_client_id: Option<String>,
    /// The HTTP client the credentials use (a proxy, extra root certificates...).
    pub http_client: Option<reqwest::Client>,
    /// The longest one credential may take before the next is tried (IMDS on a machine that is
    /// not in Azure never answers).
    pub attempt_timeout: Duration,
    /// The variables the credentials read; `None`: the process environment.
    pub env: Option<HashMap<String, String>>,
    /// The whole chain (default) or one credential.
    pub credential: AzureCredentialKind,
}

/// The variables' names only: their values include client secrets.
impl std::fmt::Debug for AzureIdentityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Option<Vec<&str>> = self
            .env
            .as_ref()
            .map(|m| m.keys().map(String::as_str).collect());
        if let Some(n) = names.as_mut() {
            n.sort_unstable();
        }
        f.debug_struct("AzureIdentityConfig")
            .field("scope", &self.scope)
            .field(
                "managed_identity_client_id",
                &self.managed_identity_client_id,
            )
            .field("attempt_timeout", &self.attempt_timeout)
            .field("env", &names)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl Default for AzureIdentityConfig {
    fn default() -> Self {
        Self {
            scope: DEFAULT_AZURE_SCOPE.to_owned(),
            managed_identity_client_id: None,
            http_client: None,
            attempt_timeout: Duration::from_secs(15),
            env: None,
            credential: AzureCredentialKind::Chain,
        }
    }
}

impl AzureIdentityConfig {
    /// The scope tokens are asked for.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// A user-assigned managed identity's client id (blank: none).
    pub fn with_managed_identity_client_id(mut self, id: Option<String>) -> Self {
        self.managed_identity_client_id = id.filter(|s| !s.trim().is_empty());
        self
    }

    /// The HTTP client every credential uses.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The variables the chain reads (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`, ...) instead of the process
    /// environment: the caller passes the process environment merged with `.env` files.
    pub fn with_env(mut self, env: HashMap<String, String>) -> Self {
        self.env = Some(env);
        self
    }

    /// The whole chain, or exactly one credential.
    pub fn with_credential(mut self, kind: AzureCredentialKind) -> Self {
        self.credential = kind;
        self
    }

    /// A non-blank variable from [`Self::env`], else from the process environment.
    #[cfg(feature = "azure")]
    fn var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.trim().is_empty())
    }
}

#[cfg(feature = "azure")]
type Credential = Result<Arc<dyn TokenCredential>, String>;
/// A build without the `azure` feature has no credential to offer: each is the reason.
#[cfg(not(feature = "azure"))]
type Credential = Result<std::convert::Infallible, String>;

/// What a build without the `azure` feature says where a token was wanted.
#[cfg(not(feature = "azure"))]
pub(crate) const NOT_BUILT: &str = "this build of picoclaw has no Azure Entra ID sign-in (built \
    without the `azure` feature); use an API key, or a build with the feature (the default)";

/// Entra ID tokens from the first credential that works.
pub struct AzureTokenSource {
    scope: String,
    chain: Vec<(String, Credential)>,
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    attempt_timeout: Duration,
}

impl std::fmt::Debug for AzureTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureTokenSource")
            .field("scope", &self.scope)
            .field(
                "chain",
                &self
                    .chain
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An HTTP client over picoclaw-http's TLS (`what` names its user in the warning). Should TLS
/// not be set up (no certificate authority readable on this system), a client trusting
/// nothing: every request then fails with a certificate error, which the caller reports,
/// rather than the process panicking here.
pub(crate) fn http_client(what: &str, connect: Duration, total: Duration) -> reqwest::Client {
    let build =
        |builder: reqwest::ClientBuilder| builder.connect_timeout(connect).timeout(total).build();
    let err = match picoclaw_http::client_builder().map_err(|e| e.to_string()) {
        Ok(builder) => match build(builder) {
            Ok(client) => return client,
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    tracing::warn!("{what}: cannot set up TLS ({err}); HTTPS requests will fail");
    picoclaw_http::default_crypto_provider()
        .and_then(|p| picoclaw_http::tls_config(p, picoclaw_http::Roots::Only(Vec::new())))
        .map(|tls| build(picoclaw_http::with_tls(reqwest::Client::builder(), tls)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("{what}: cannot build an HTTP client: {err}"))
}

#[cfg(feature = "azure")]
fn erased<T: TokenCredential + 'static>(c: azure_core::Result<Arc<T>>) -> Credential {
    c.map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| e.to_string())
}

/// Entra ID's public-cloud authority, when `AZURE_AUTHORITY_HOST` is not set.
#[cfg(feature = "azure")]
const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Builds each credential from the config and its variables.
#[cfg(feature = "azure")]
struct Builder<'a> {
    cfg: &'a AzureIdentityConfig,
    http: reqwest::Client,
    /// Always set, so azure_identity never reads `AZURE_AUTHORITY_HOST` from the process.
    cloud: Arc<CloudConfiguration>,
    authority: String,
}

#[cfg(feature = "azure")]
impl Builder<'_> {
    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(Transport::new(Arc::new(self.http.clone()))),
            cloud: Some(Arc::clone(&self.cloud)),
            ..Default::default()
        }
    }

    /// The names among `names` whose variable is not set.
    fn missing(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .filter(|n| self.cfg.var(n).is_none())
            .map(|n| (*n).to_owned())
            .collect()
    }

    /// A service principal: a client secret wins over a certificate (as in Azure's
    /// EnvironmentCredential). Outside a pinned credential, nothing when neither is set.
    fn environment(&self, pinned: bool) -> Option<(String, Credential)> {
        let secret = self.cfg.var("AZURE_CLIENT_SECRET");
        let certificate = self.cfg.var("AZURE_CLIENT_CERTIFICATE_PATH");
        let name = if secret.is_some() {
            "service principal (AZURE_CLIENT_SECRET)"
        } else if certificate.is_some() {
            "service principal certificate (AZURE_CLIENT_CERTIFICATE_PATH)"
        } else if pinned {
            "service principal (environment)"
        } else {
            return None;
        };
        let (Some(tenant), Some(client), true) = (
            self.cfg.var("AZURE_TENANT_ID"),
            self.cfg.var("AZURE_CLIENT_ID"),
            secret.is_some() || certificate.is_some(),
        ) else {
            let mut missing = self.missing(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]);
            if secret.is_none() && certificate.is_none() {
                missing.push("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH".into());
            }
            return Some((name.into(), Err(format!("{} not set", missing.join(", ")))));
        };
        let Some(certificate) = certificate.filter(|_| secret.is_none()) else {
            let o = ClientSecretCredentialOptions {
                client_options: self.client_options(),
            };
            return Some((
                name.into(),
                erased(ClientSecretCredential::new(
                    &tenant,
                    client,
                    secret.unwrap_or_default().into(),
                    Some(o),
                )),
            ));
        };
        let path = PathBuf::from(certificate);
        let password = self.cfg.var("AZURE_CLIENT_CERTIFICATE_PASSWORD");
        let send_chain = self
            .cfg
            .var("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"));
        let credential = CertificateKey::load(&path, password.as_deref()).and_then(|_| {
            let assertion = CertificateAssertion {
                path,
                client_id: client.clone(),
                audience: format!(
                    "{}/{tenant}/oauth2/v2.0/token",
                    self.authority.trim_end_matches('/')
                ),
                send_chain,
            };
            let o = ClientAssertionCredentialOptions {
                client_options: self.client_options(),
            };
            erased(ClientAssertionCredential::new(
                tenant,
                client,
                assertion,
                Some(o),
            ))
        });
        Some((name.into(), credential))
    }

    /// Workload identity, given every value explicitly (azure_identity would otherwise read the
    /// process environment). Outside a pinned credential, nothing without
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    fn workload(&self, pinned: bool) -> Option<(String, Credential)> {
        let name = "workload identity (AZURE_FEDERATED_TOKEN_FILE)".to_owned();
        let file = self.cfg.var("AZURE_FEDERATED_TOKEN_FILE");
        if file.is_none() && !pinned {
            return None;
        }
        let (Some(file), Some(tenant), Some(client)) = (
            file,
            self.cfg.var("AZURE_TENANT_ID"),
            self.cfg.var("AZURE_CLIENT_ID"),
        ) else {
            let missing = self.missing(&[
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_TENANT_ID",
                "AZURE_CLIENT_ID",
            ]);
            return Some((name, Err(format!("{} not set", missing.join(", ")))));
        };
        let o = WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: self.client_options(),
            },
            client_id: Some(client),
            tenant_id: Some(tenant),
            token_file_path: Some(PathBuf::from(file)),
        };
        Some((name, erased(WorkloadIdentityCredential::new(Some(o)))))
    }

    /// Managed identity. azure_identity 1.0 reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the
    /// process environment only (its options take no endpoint); our map only names the source.
    fn managed(&self, id: Option<String>, probe: bool) -> (String, Credential) {
        let name = match &id {
            Some(id) => format!("managed identity (client id {id})"),
            None if self.cfg.var("IDENTITY_ENDPOINT").is_some() => {
                "managed identity (IDENTITY_ENDPOINT)".to_owned()
            }
            None => "managed identity (IMDS)".to_owned(),
        };
        let mut client_options = self.client_options();
        if probe {
            // In a chain, managed identity is a probe: on a machine outside Azure its endpoint
            // never answers, and retrying it would delay the next credential.
            client_options.retry = azure_core::http::RetryOptions::none();
        }
        let o = ManagedIdentityCredentialOptions {
            user_assigned_id: id.map(UserAssignedId::ClientId),
            client_options,
        };
        (name, erased(ManagedIdentityCredential::new(Some(o))))
    }

    /// `az account get-access-token` (the `az` on the process's `PATH`).
    fn cli() -> (String, Credential) {
        (
            "Azure CLI (az login)".into(),
            erased(AzureCliCredential::new(None)),
        )
    }

    /// `azd auth token` (the `azd` on the process's `PATH`).
    fn developer_cli() -> (String, Credential) {
        (
            "Azure Developer CLI (azd auth login)".into(),
            erased(AzureDeveloperCliCredential::new(None)),
        )
    }
}

impl AzureTokenSource {
    /// Builds the credentials from `cfg` and the Azure variables (from [`AzureIdentityConfig::env`],
    /// else the process environment): `AZURE_TENANT_ID`/`AZURE_CLIENT_ID` with
    /// `AZURE_CLIENT_SECRET` or `AZURE_CLIENT_CERTIFICATE_PATH`, `AZURE_FEDERATED_TOKEN_FILE`,
    /// `IDENTITY_ENDPOINT`, `MANAGED_IDENTITY_CLIENT_ID`, `AZURE_AUTHORITY_HOST`. A credential that
    /// cannot be built (a missing variable, an unreadable certificate) stays in the chain and is
    /// reported with the others when no token could be had.
    #[cfg(feature = "azure")]
    pub fn new(cfg: AzureIdentityConfig) -> Self {
        // One HTTP client for every credential (ours, so TLS and timeouts are picoclaw's; the
        // TLS provider is picoclaw-http's, never installed process-wide).
        let http = cfg
            .http_client
            .clone()
            .unwrap_or_else(|| http_client("azure", Duration::from_secs(5), cfg.attempt_timeout));
        let authority = cfg.var("AZURE_AUTHORITY_HOST");
        let cloud = Arc::new(match &authority {
            Some(host) => {
                let mut custom = CustomConfiguration::default();
                custom.authority_host = host.trim().to_owned();
                CloudConfiguration::Custom(custom)
            }
            None => CloudConfiguration::AzurePublic,
        });
        let b = Builder {
            cfg: &cfg,
            http,
            cloud,
            authority: authority.unwrap_or_else(|| PUBLIC_AUTHORITY.to_owned()),
        };
        let managed_id = cfg
            .managed_identity_client_id
            .clone()
            .or_else(|| cfg.var("MANAGED_IDENTITY_CLIENT_ID"));
        let mut chain: Vec<(String, Credential)> = Vec::new();
        match cfg.credential {
            AzureCredentialKind::Chain => {
                if let Some(id) = managed_id {
                    chain.push(b.managed(Some(id), false));
                } else {
                    chain.extend(b.environment(false));
                    chain.extend(b.workload(false));
                    chain.push(b.managed(None, true));
                    chain.push(Builder::cli());
                    chain.push(Builder::developer_cli());
                }
            }
            AzureCredentialKind::Environment => chain.extend(b.environment(true)),
            AzureCredentialKind::WorkloadIdentity => chain.extend(b.workload(true)),
            AzureCredentialKind::ManagedIdentity => chain.push(b.managed(managed_id, false)),
            AzureCredentialKind::Cli => chain.push(Builder::cli()),
            AzureCredentialKind::DeveloperCli => chain.push(Builder::developer_cli()),
        }
        Self {
            scope: cfg.scope,
            chain,
            attempt_timeout: cfg.attempt_timeout,
        }
    }

    /// Without the `azure` feature: a source whose every request fails, saying why.
    #[cfg(not(feature = "azure"))]
    pub fn new(cfg: AzureIdentityConfig) -> Self {
        Self {
            scope: cfg.scope,
            chain: vec![(cfg.credential.to_string(), Err(NOT_BUILT.to_owned()))],
            attempt_timeout: cfg.attempt_timeout,
        }
    }

    /// The credentials that will be tried, in order.
    pub fn chain(&self) -> Vec<&str> {
        self.chain.iter().map(|(n, _)| n.as_str()).collect()
    }
}

#[async_trait]
impl TokenSource for AzureTokenSource {
    fn describe(&self) -> String {
        format!("Azure Entra ID ({})", self.chain().join(" → "))
    }

    async fn token(&self) -> Result<AccessToken, AuthError> {
        let mut tried = Vec::new();
        for (name, credential) in &self.chain {
            let credential = match credential {
                Ok(c) => c,
                Err(e) => {
                    tried.push((name.clone(), format!("unavailable: {e}")));
                    continue;
                }
            };
            // Without the `azure` feature no credential exists (every entry is its reason).
            #[cfg(not(feature = "azure"))]
            match *credential {}
            #[cfg(feature = "azure")]
            {
                let scopes = [self.scope.as_str()];
                let attempt = credential.get_token(&scopes, None);
                match tokio::time::timeout(self.attempt_timeout, attempt).await {
                    Ok(Ok(t)) => {
                        tracing::debug!(credential = %name, "azure token acquired");
                        return Ok(AccessToken::new(
                            t.token.secret().to_owned(),
                            Some(SystemTime::from(t.expires_on)),
                        ));
                    }
                    Ok(Err(e)) => tried.push((name.clone(), one_line(&e.to_string()))),
                    Err(_) => tried.push((
                        name.clone(),
                        format!("no answer within {}s", self.attempt_timeout.as_secs()),
                    )),
                }
            }
        }
        Err(AuthError::NoCredential {
            scope: self.scope.clone(),
            tried,
        })
    }
}

#[cfg(feature = "azure")]
fn one_line(s: &str) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 300 {
        let mut t: String = flat.chars().take(300).collect();
        t.push('…');
        t
    } else {
        flat
    }
}
