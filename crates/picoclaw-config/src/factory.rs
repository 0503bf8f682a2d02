//! Building the provider a config describes: each model a client for its wire format with the
//! configured timeout, wrapped in retries, and the fallback models behind it in a chain.

use crate::ConfigError;
use crate::model::Config;
use crate::resolve::ResolvedModel;
use picoclaw_auth::{AzureIdentityConfig, AzureTokenSource, CachedToken, LoginTokens, TokenSource};
use picoclaw_providers::presets::Wire;
use picoclaw_providers::{
    Anthropic, AnthropicConfig, FallbackChain, Gemini, GeminiConfig, LlmProvider, LoadBalancer,
    OpenAiCompatConfig, OpenAiCompatible, OpenAiResponses, RequestLimit, RetryPolicy, Retrying,
    Route,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The provider for one resolved model.
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

pub fn build_provider(resolved: &ResolvedModel) -> Result<Arc<dyn LlmProvider>, ConfigError> {
    build_one(resolved, Duration::from_secs(120))
}

fn build_one(
    resolved: &ResolvedModel,
    timeout: Duration,
) -> Result<Arc<dyn LlmProvider>, ConfigError> {
    if resolved.wire == Wire::Anthropic {
        let mut cfg = AnthropicConfig::new(resolved.api_base.clone())
            .with_key_hint(resolved.key_hint.clone())
            .with_proxy(resolved.proxy.clone())
            .with_request_timeout(timeout);
        if let Some(key) = resolved
            .api_key
            .as_ref()
            .map(|k| k.expose().clone())
            .or_else(|| stored_key(resolved))
        {
            cfg = cfg.with_api_key(key);
            return Ok(Arc::new(Anthropic::new(cfg)?));
        }
        // A Claude sign-in: its OAuth tokens, renewed as they expire.
        let p = Anthropic::new(cfg)?;
        return Ok(Arc::new(match &resolved.login {
            Some((store, name)) => p.with_tokens(LoginTokens::new(store.clone(), name.clone())),
            None => p,
        }));
    }
    if resolved.wire == Wire::Gemini {
        let mut cfg = GeminiConfig::new(resolved.api_base.clone())
            .with_key_hint(resolved.key_hint.clone())
            .with_proxy(resolved.proxy.clone())
            .with_request_timeout(timeout);
        if let Some(key) = resolved
            .api_key
            .as_ref()
            .map(|k| k.expose().clone())
            .or_else(|| stored_key(resolved))
        {
            cfg = cfg.with_api_key(key);
        }
        return Ok(Arc::new(Gemini::new(cfg)?));
    }
    let mut cfg = OpenAiCompatConfig::new(resolved.provider.clone(), resolved.api_base.clone())
        .with_key_hint(resolved.key_hint.clone())
        .with_proxy(resolved.proxy.clone())
        .with_request_timeout(timeout);
    if let Some(key) = &resolved.api_key {
        cfg = cfg.with_api_key(key.expose().clone());
    }
    if let Some(az) = resolved
        .azure
        .as_ref()
        .filter(|_| resolved.wire == Wire::Azure)
    {
        let tokens: Option<Arc<dyn TokenSource>> = if resolved.api_key.is_some() {
            None
        } else {
            let identity = AzureIdentityConfig::default()
                .with_scope(az.scope.clone())
                .with_managed_identity_client_id(az.managed_identity_client_id.clone());
            let source: Arc<dyn TokenSource> = Arc::new(AzureTokenSource::new(identity));
            Some(Arc::new(CachedToken::new(source)))
        };
        return Ok(Arc::new(OpenAiCompatible::azure(
            cfg,
            &az.deployment,
            &az.api_version,
            tokens,
        )?));
    }
    // A stored login (OAuth) when there is no key.
    let login: Option<Arc<dyn TokenSource>> = match (&resolved.api_key, &resolved.login) {
        (None, Some((store, name))) => Some(LoginTokens::new(store.clone(), name.clone())),
        _ => None,
    };
    if resolved.wire == Wire::Responses {
        // A ChatGPT login: the backend wants the account and the Responses beta named.
        if let (Some(_), Some((store, name))) = (&login, &resolved.login)
            && let Ok(Some(picoclaw_auth::Credential::Oauth(c))) = store.get(name)
            && let Some(account) = c.account_id
        {
            cfg = cfg
                .with_header("chatgpt-account-id", &account)
                .with_header("OpenAI-Beta", "responses=experimental")
                .with_header("originator", "picoclaw");
        }
        let p = OpenAiResponses::new(cfg)?;
        return Ok(Arc::new(match login {
            Some(tokens) => p.with_tokens(tokens),
            None => p,
        }));
    }
    if resolved.provider == "github-copilot" {
        cfg = cfg
            .with_header("Copilot-Integration-Id", "vscode-chat")
            .with_header(
                "Editor-Version",
                concat!("picoclaw/", env!("CARGO_PKG_VERSION")),
            );
    }
    if resolved.provider == "openrouter" {
        cfg = cfg
            .with_header("HTTP-Referer", "https://github.com/picoclaw/picoclaw")
            .with_header("X-Title", "picoclaw");
    }
    let p = OpenAiCompatible::new(cfg)?;
    Ok(Arc::new(match login {
        Some(tokens) => p.with_tokens(tokens),
        None => p,
    }))
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
        let mut p = build_one(r, timeout)?;
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
