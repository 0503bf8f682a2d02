//! Building the provider a [`ResolvedModel`] describes.

use crate::ConfigError;
use crate::resolve::ResolvedModel;
use picoclaw_providers::{LlmProvider, OpenAiCompatConfig, OpenAiCompatible};
use std::sync::Arc;

/// The provider for a resolved model (every preset is OpenAI-compatible in this build).
pub fn build_provider(resolved: &ResolvedModel) -> Result<Arc<dyn LlmProvider>, ConfigError> {
    let mut cfg = OpenAiCompatConfig::new(resolved.provider.clone(), resolved.api_base.clone())
        .with_key_hint(resolved.key_hint.clone())
        .with_proxy(resolved.proxy.clone());
    if let Some(key) = &resolved.api_key {
        cfg = cfg.with_api_key(key.expose().clone());
    }
    if resolved.provider == "openrouter" {
        cfg = cfg
            .with_header("HTTP-Referer", "https://github.com/picoclaw/picoclaw")
            .with_header("X-Title", "picoclaw");
    }
    Ok(Arc::new(OpenAiCompatible::new(cfg)?))
}
