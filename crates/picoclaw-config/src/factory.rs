//! Building the provider a config describes: each model a client for its wire format with the
//! configured timeout, wrapped in retries, and the fallback models behind it in a chain.

use crate::ConfigError;
use crate::model::Config;
use crate::resolve::ResolvedModel;
use picoclaw_api::Secret;
use picoclaw_auth::{AzureIdentityConfig, AzureTokenSource, CachedToken, LoginTokens, TokenSource};
use picoclaw_providers::{
    FallbackChain, LlmProvider, LoadBalancer, ProviderSpec, RequestLimit, RetryPolicy, Retrying,
    Route,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A key stored with `picoclaw auth login --api-key` for a provider whose requests carry a key
/// header rather than a bearer token (Anthropic, Gemini).
fn stored_key(resolved: &ResolvedModel) -> Option<String> {
    let (store, name) = resolved.login.as_ref()?;
    match store.get(name) {
        Ok(Some(picoclaw_auth::Credential::ApiKey { key })) => Some(key.expose().clone()),
        Ok(Some(_)) if name == "anthropic" => None,
        Ok(Some(_)) => {
            tracing::warn!(provider = %name, "this provider's OAuth login cannot be used here yet; store an API key instead");
            None
        }
        _ => None,
    }
}

/// The provider for one resolved model, built by the registry of `config`.
pub fn build_provider(
    config: &Config,
    resolved: &ResolvedModel,
) -> Result<Arc<dyn LlmProvider>, ConfigError> {
    build_one(config, resolved, Duration::from_secs(120))
}

/// What the registry's factory gets for `resolved`: the credentials config knows about (a key,
/// a stored login, an Azure identity) turned into a key or a token source.
fn spec_for(config: &Config, resolved: &ResolvedModel, timeout: Duration) -> ProviderSpec {
    let section = config
        .providers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&resolved.provider))
        .and_then(|(_, p)| serde_json::to_value(p).ok())
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    let mut spec = ProviderSpec::new(
        resolved.provider.clone(),
        resolved.wire.clone(),
        resolved.model.clone(),
        resolved.api_base.clone(),
    )
    .with_key_hint(resolved.key_hint.clone())
    .with_proxy(resolved.proxy.clone())
    .with_timeout(timeout)
    .with_section(section)
    .with_reasoning(resolved.reasoning)
    .with_reasoning_effort(resolved.reasoning_effort.clone())
    .with_temperature(resolved.temperature);
    if let Some(info) = config.provider_info(&resolved.provider) {
        for (name, value) in info.headers {
            spec = spec.with_header(name, value);
        }
    }
    let mut api_key = resolved.api_key.clone();
    // Anthropic and Gemini send a stored API key in their own header.
    if api_key.is_none() && matches!(resolved.wire.as_str(), "anthropic" | "gemini") {
        api_key = stored_key(resolved).map(Secret::new);
    }
    let login: Option<Arc<dyn TokenSource>> = match (&api_key, &resolved.login) {
        (None, Some((store, name))) => Some(LoginTokens::new(store.clone(), name.clone())),
        _ => None,
    };
    let tokens = match (&resolved.azure, &api_key) {
        (Some(az), None) if resolved.wire == "azure" => {
            // The chain (or the credential azure.credential pins), with the variables read
            // with the config (.env files included).
            let identity = match crate::keyvault::identity(&config.azure, &config.environment()) {
                Ok(identity) => identity,
                Err(e) => {
                    tracing::warn!(error = %e, "azure: using the default credential chain");
                    AzureIdentityConfig::default().with_env(config.env_vars())
                }
            }
            .with_scope(az.scope.clone())
            .with_managed_identity_client_id(az.managed_identity_client_id.clone());
            let source: Arc<dyn TokenSource> = Arc::new(AzureTokenSource::new(identity));
            Some(Arc::new(CachedToken::new(source)) as Arc<dyn TokenSource>)
        }
        _ => login,
    };
    if let Some(az) = resolved.azure.as_ref().filter(|_| resolved.wire == "azure")
        && let serde_json::Value::Object(section) = &mut spec.section
    {
        section.insert("deployment".into(), az.deployment.clone().into());
        section.insert("api_version".into(), az.api_version.clone().into());
    }
    if resolved.wire == "responses"
        && tokens.is_some()
        && let Some((store, name)) = &resolved.login
        && let Ok(Some(picoclaw_auth::Credential::Oauth(c))) = store.get(name)
        && let Some(account) = c.account_id
    {
        // A ChatGPT login: the backend wants the account and the Responses beta named.
        spec = spec
            .with_header("chatgpt-account-id", account)
            .with_header("OpenAI-Beta", "responses=experimental")
            .with_header("originator", "picoclaw");
    }
    spec.with_api_key(api_key).with_tokens(tokens)
}

fn build_one(
    config: &Config,
    resolved: &ResolvedModel,
    timeout: Duration,
) -> Result<Arc<dyn LlmProvider>, ConfigError> {
    let spec = spec_for(config, resolved, timeout);
    let registry = config.registry();
    let provider = registry.build(&spec)?;
    // A key read from Key Vault is read again when the vendor refuses it (rotated).
    if let (Some(vault), Some(path), Some(key)) =
        (&config.key_vault, &resolved.key_path, &resolved.api_key)
        && let Some(reference) = vault.reference(path)
    {
        let rebuild = Box::new(move |key: Secret<String>| {
            registry.build(&spec.clone().with_api_key(Some(key)))
        });
        return Ok(Arc::new(crate::keyvault::RefreshingKey::new(
            key.clone(),
            provider,
            rebuild,
            vault.clone(),
            reference.clone(),
        )));
    }
    Ok(provider)
}

/// What [`build_agent_provider`] made.
#[derive(Clone)]
#[non_exhaustive]
pub struct BuiltProvider {
    pub provider: Arc<dyn LlmProvider>,
    /// The configured model.
    pub primary: ResolvedModel,
    /// The fallbacks, in order.
    pub fallbacks: Vec<ResolvedModel>,
}

impl std::fmt::Debug for BuiltProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltProvider")
            .field("provider", &self.provider.name())
            .field("primary", &self.primary)
            .field("fallbacks", &self.fallbacks)
            .finish()
    }
}

/// The agent's provider: the configured model with retries (`agents.defaults.max_retries`,
/// `request_timeout`), followed by `agents.defaults.model_fallbacks` when there are any.
pub fn build_agent_provider(
    config: &Config,
    env: &HashMap<String, String>,
) -> Result<BuiltProvider, ConfigError> {
    let d = &config.agents.defaults;
    let primary = config.resolve_model(env)?;
    // The primary entry's own fallbacks come first, then agents.defaults.model_fallbacks.
    let mut fallbacks = Vec::new();
    for (i, name) in primary.fallbacks.iter().enumerate() {
        let key = format!("model_list '{}' fallbacks[{i}]", primary.model);
        fallbacks.push(config.resolve_named(name, &key, env)?);
    }
    fallbacks.extend(config.resolve_fallbacks(env)?);
    let timeout = Duration::from_secs(d.request_timeout.max(1));
    let policy = RetryPolicy::new(d.max_retries as usize);
    let route = |r: &ResolvedModel| -> Result<Route, ConfigError> {
        let mut p = build_one(config, r, timeout)?;
        if let Some(rpm) = r.rpm {
            p = Arc::new(RequestLimit::new(p, rpm));
        }
        let retrying: Arc<dyn LlmProvider> = Arc::new(Retrying::new(p, policy.clone()));
        Ok(Route::new(
            retrying,
            r.model.clone(),
            format!("{}/{}", r.provider, r.model),
        ))
    };
    // A model and the alternates sharing its model_list alias, balanced.
    let group = |r: &ResolvedModel| -> Result<Route, ConfigError> {
        let first = route(r)?;
        if r.alternates.is_empty() {
            return Ok(first);
        }
        let mut routes = vec![first];
        for alt in &r.alternates {
            routes.push(route(alt)?);
        }
        let label = routes[0].label.clone();
        let model = routes[0].model.clone();
        Ok(Route::new(
            Arc::new(LoadBalancer::new(routes)?),
            model,
            label,
        ))
    };
    let mut routes = vec![group(&primary)?];
    for f in &fallbacks {
        routes.push(group(f)?);
    }
    let provider: Arc<dyn LlmProvider> = if routes.len() == 1 {
        routes.remove(0).provider
    } else {
        Arc::new(FallbackChain::new(routes)?)
    };
    Ok(BuiltProvider {
        provider,
        primary,
        fallbacks,
    })
}
