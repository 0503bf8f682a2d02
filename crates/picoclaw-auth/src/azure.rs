//! Azure Entra ID tokens through `azure_identity`, in the order Azure hosts expect.

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use picoclaw_api::auth::{AccessToken, AuthError, TokenSource};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The scope Azure OpenAI tokens are issued for.
pub const DEFAULT_AZURE_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// How to get Azure tokens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AzureIdentityConfig {
    /// `AZURE_OPENAI_SCOPE`; default [`DEFAULT_AZURE_SCOPE`].
    pub scope: String,
    /// A user-assigned managed identity's client id (`AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID`):
    /// when set, only that identity is used.
    pub managed_identity_client_id: Option<String>,
    /// The HTTP client the credentials use (a proxy, extra root certificates...).
    pub http_client: Option<reqwest::Client>,
    /// The longest one credential may take before the next is tried (IMDS on a machine that is
    /// not in Azure never answers).
    pub attempt_timeout: Duration,
}

impl Default for AzureIdentityConfig {
    fn default() -> Self {
        Self {
            scope: DEFAULT_AZURE_SCOPE.to_owned(),
            managed_identity_client_id: None,
            http_client: None,
            attempt_timeout: Duration::from_secs(15),
        }
    }
}

impl AzureIdentityConfig {
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    pub fn with_managed_identity_client_id(mut self, id: Option<String>) -> Self {
        self.managed_identity_client_id = id.filter(|s| !s.trim().is_empty());
        self
    }

    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }
}

type Credential = Result<Arc<dyn TokenCredential>, String>;

/// Entra ID tokens from the first credential that works.
pub struct AzureTokenSource {
    scope: String,
    chain: Vec<(String, Credential)>,
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The credentials' HTTP client. Should TLS not be set up (no certificate authority readable
/// on this system), a client trusting nothing: every credential then fails with a certificate
/// error, which the chain reports, rather than the process panicking here.
fn azure_http_client(attempt_timeout: Duration) -> reqwest::Client {
    let build = |builder: reqwest::ClientBuilder| {
        builder
            .connect_timeout(Duration::from_secs(5))
            .timeout(attempt_timeout)
            .build()
    };
    let err = match picoclaw_http::client_builder().map_err(|e| e.to_string()) {
        Ok(builder) => match build(builder) {
            Ok(client) => return client,
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    tracing::warn!("azure: cannot set up TLS ({err}); HTTPS to Entra ID will fail");
    picoclaw_http::default_crypto_provider()
        .and_then(|p| picoclaw_http::tls_config(p, picoclaw_http::Roots::Only(Vec::new())))
        .map(|tls| build(picoclaw_http::with_tls(reqwest::Client::builder(), tls)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("azure: cannot build an HTTP client: {err}"))
}

fn erased<T: TokenCredential + 'static>(c: azure_core::Result<Arc<T>>) -> Credential {
    c.map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| e.to_string())
}

impl AzureTokenSource {
    /// Builds the chain from `cfg` and the standard Azure environment variables
    /// (`AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`, `AZURE_FEDERATED_TOKEN_FILE`,
    /// `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`, `AZURE_AUTHORITY_HOST`).
    pub fn new(cfg: AzureIdentityConfig) -> Self {
        // One HTTP client for every credential (ours, so TLS and timeouts are picoclaw's; the
        // TLS provider is picoclaw-http's, never installed process-wide).
        let http = cfg
            .http_client
            .clone()
            .unwrap_or_else(|| azure_http_client(cfg.attempt_timeout));
        let client_options = || ClientOptions {
            transport: Some(Transport::new(Arc::new(http.clone()))),
            ..Default::default()
        };
        let managed = |id: Option<String>, probe: bool| {
            let mut client_options = client_options();
            if probe {
                // In a chain, managed identity is a probe: on a machine outside Azure its
                // endpoint never answers, and retrying it would delay the next credential.
                client_options.retry = azure_core::http::RetryOptions::none();
            }
            let o = ManagedIdentityCredentialOptions {
                user_assigned_id: id.map(UserAssignedId::ClientId),
                client_options,
            };
            erased(ManagedIdentityCredential::new(Some(o)))
        };
        let mut chain: Vec<(String, Credential)> = Vec::new();
        if let Some(id) = &cfg.managed_identity_client_id {
            chain.push((
                format!("managed identity (client id {id})"),
                managed(Some(id.clone()), false),
            ));
        } else {
            if let (Some(tenant), Some(client), Some(secret)) = (
                env("AZURE_TENANT_ID"),
                env("AZURE_CLIENT_ID"),
                env("AZURE_CLIENT_SECRET"),
            ) {
                let o = ClientSecretCredentialOptions {
                    client_options: client_options(),
                };
                chain.push((
                    "service principal (AZURE_CLIENT_SECRET)".into(),
                    erased(ClientSecretCredential::new(
                        &tenant,
                        client,
                        secret.into(),
                        Some(o),
                    )),
                ));
            }
            if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                let o = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: client_options(),
                    },
                    ..Default::default()
                };
                chain.push((
                    "workload identity (AZURE_FEDERATED_TOKEN_FILE)".into(),
                    erased(WorkloadIdentityCredential::new(Some(o))),
                ));
            }
            let source = if env("IDENTITY_ENDPOINT").is_some() {
                "managed identity (IDENTITY_ENDPOINT)"
            } else {
                "managed identity (IMDS)"
            };
            chain.push((source.into(), managed(None, true)));
            chain.push((
                "Azure CLI (az login)".into(),
                erased(AzureCliCredential::new(None)),
            ));
        }
        Self {
            scope: cfg.scope,
            chain,
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
        Err(AuthError::NoCredential {
            scope: self.scope.clone(),
            tried,
        })
    }
}

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
