//! Credentials: the [`TokenSource`] trait providers take their bearer tokens from, a
//! [`StaticToken`] for plain API keys, [`CachedToken`] (refreshes shortly before expiry), and
//! [`AzureTokenSource`], which gets Entra ID tokens from `azure_identity` (the `azure` feature,
//! on by default; without it the source refuses every request, saying so) the way Azure hosts
//! expect: a user-assigned managed identity when a client id is configured, else service
//! principal from the environment (client secret, else a PEM certificate) → workload identity →
//! managed identity (App Service / Container Apps identity endpoint, or IMDS on VMs) → Azure CLI
//! → Azure Developer CLI; or one of them, pinned with [`AzureCredentialKind`]. [`KeyVault`]
//! reads the secrets [`KeyVaultReference`]s name.
//!
//! Logins: the [`AuthStore`] (`~/.picoclaw/auth.json`, private to its owner), the OAuth flows
//! (device code, browser with PKCE, refresh, GitHub Copilot's token exchange), and
//! [`LoginTokens`], which serves a stored login to providers and renews it before it expires.

mod azure;
#[cfg(feature = "azure")]
mod azure_cert;
mod keyvault;
mod oauth;
mod store;
mod token;

pub use azure::{AzureCredentialKind, AzureIdentityConfig, AzureTokenSource, DEFAULT_AZURE_SCOPE};
pub use keyvault::{KEYVAULT_SCOPE, KeyVault, KeyVaultError, KeyVaultReference};
pub use oauth::{
    DevicePrompt, LoginTokens, OauthError, OauthProvider, browser_login, copilot_exchange,
    copilot_from_github, device_poll, device_start, renew,
};
pub use picoclaw_api::auth::{AccessToken, AuthError, StaticToken, TokenSource};
pub use store::{AuthStore, Credential, KeySource, OauthCredential, PASSPHRASE_ENV, StoreError};
pub use token::CachedToken;
