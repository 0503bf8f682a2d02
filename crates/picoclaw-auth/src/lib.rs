//! Credentials: the [`TokenSource`] trait providers take their bearer tokens from, a
//! [`StaticToken`] for plain API keys, [`CachedToken`] (refreshes shortly before expiry), and
//! [`AzureTokenSource`], which gets Entra ID tokens from `azure_identity` the way Azure hosts
//! expect: a user-assigned managed identity when a client id is configured, else service
//! principal (environment) → workload identity → managed identity (App Service / Container Apps
//! identity endpoint, or IMDS on VMs) → Azure CLI.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod azure;
mod token;

pub use azure::{AzureIdentityConfig, AzureTokenSource, DEFAULT_AZURE_SCOPE};
pub use token::{AccessToken, AuthError, CachedToken, StaticToken, TokenSource};
