//! The provider registry: which model prefixes exist (`openai/…`, `deepseek/…`, a
//! contributor's `echo-upper/…`), which wire format each speaks, and the factory that builds a
//! client for a wire format.
//!
//! The built-in vendors are registered by [`ProviderRegistry::builtin`] exactly as a crate from
//! outside the workspace registers its own ([`ProviderRegistry::register_wire`] and
//! [`ProviderRegistry::register`]); nothing else knows their names. The wire formats of a
//! family are registered only when its cargo feature (`openai`, `anthropic`, `gemini`) is on;
//! the vendors are always known, so a model of a family compiled out gets an error naming the
//! feature rather than "unknown provider". The config crate resolves a model to a
//! [`ProviderSpec`] (base URL, key, timeout, the `providers.<name>` section) and asks the
//! registry to build it.

#[cfg(feature = "anthropic")]
use crate::{Anthropic, AnthropicConfig};
#[cfg(feature = "gemini")]
use crate::{Gemini, GeminiConfig};
use crate::{LlmProvider, ProviderError};
#[cfg(feature = "openai")]
use crate::{OpenAiCompatConfig, OpenAiCompatible, OpenAiResponses};
use picoclaw_api::{Secret, TokenSource};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One model prefix: where the vendor lives, which wire format it speaks, where its key is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderInfo {
    /// The model prefix and the `providers.<name>` config entry (lower case).
    pub name: String,
    /// The wire format: the name its factory is registered under (`openai`, `anthropic`,
    /// `gemini`, `responses`, `azure`, or a contributor's own).
    pub wire: String,
    /// The default base URL (empty when every user has their own, as with Azure).
    pub api_base: String,
    /// The standard environment variable holding the key, if the vendor has one.
    pub key_env: Option<String>,
    /// Whether requests without a key (or a login) are pointless.
    pub needs_key: bool,
    /// An environment variable that overrides the base URL (`OPENAI_BASE_URL`).
    pub base_env: Option<String>,
    /// Headers every request to this vendor carries (OpenRouter's attribution, Copilot's
    /// integration id).
    pub headers: Vec<(String, String)>,
}

impl ProviderInfo {
    /// A prefix speaking `wire`, with no default base URL, no key variable and no key needed.
    pub fn new(name: impl Into<String>, wire: impl Into<String>) -> Self {
        Self {
            name: name.into().to_ascii_lowercase(),
            wire: wire.into(),
            api_base: String::new(),
            key_env: None,
            needs_key: false,
            base_env: None,
            headers: Vec::new(),
        }
    }

    /// The vendor's base URL (without a trailing `/`).
    pub fn with_api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into().trim_end_matches('/').to_owned();
        self
    }

    /// The environment variable holding the key; requests without a key are refused before
    /// they are sent (unless the base URL was changed, for a proxy or a local server).
    pub fn with_required_key(mut self, env: impl Into<String>) -> Self {
        self.key_env = Some(env.into());
        self.needs_key = true;
        self
    }

    /// The environment variable holding the key, for vendors that also work without one.
    pub fn with_optional_key(mut self, env: impl Into<String>) -> Self {
        self.key_env = Some(env.into());
        self.needs_key = false;
        self
    }

    /// Requests need a credential that has no environment variable (an OAuth login).
    pub fn with_login_only(mut self) -> Self {
        self.key_env = None;
        self.needs_key = true;
        self
    }

    /// The environment variable that overrides the base URL.
    pub fn with_base_env(mut self, env: impl Into<String>) -> Self {
        self.base_env = Some(env.into());
        self
    }

    /// A header every request carries.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Everything config resolved for one model, handed to the factory of its wire format.
#[derive(Clone)]
#[non_exhaustive]
pub struct ProviderSpec {
    /// The prefix (`openai`, `echo-upper`).
    pub provider: String,
    /// The wire format.
    pub wire: String,
    /// The model id the vendor knows (`gpt-4o-mini`, without the prefix).
    pub model: String,
    /// The base URL to send requests to.
    pub api_base: String,
    /// The API key, when one is configured.
    pub api_key: Option<Secret<String>>,
    /// Bearer tokens to send when there is no key (an OAuth login, Azure Entra ID).
    pub tokens: Option<Arc<dyn TokenSource>>,
    /// Where the user sets the key, for error messages.
    pub key_hint: String,
    /// An HTTP(S) proxy URL.
    pub proxy: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Headers to send with every request (the registered ones and any config added).
    pub headers: Vec<(String, String)>,
    /// The `providers.<name>` section of config.json as written (`{}` when there is none),
    /// for the factory to read its own settings from ([`ProviderSpec::settings`]).
    pub section: serde_json::Value,
    /// `model_list[].reasoning`: the model is (or is not) a reasoning model whatever its name
    /// says; `None` lets the client decide by the name.
    pub reasoning: Option<bool>,
    /// `model_list[].reasoning_effort` (`low`, `medium`, `high`).
    pub reasoning_effort: Option<String>,
    /// `model_list[].temperature`: a temperature set for this model in particular, sent in
    /// place of the agent's (and even to a reasoning model).
    pub temperature: Option<f32>,
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSpec")
            .field("provider", &self.provider)
            .field("wire", &self.wire)
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("tokens", &self.tokens.as_ref().map(|t| t.describe()))
            .field("proxy", &self.proxy)
            .field("timeout", &self.timeout)
            .field("reasoning", &self.reasoning)
            .field("reasoning_effort", &self.reasoning_effort)
            .field("temperature", &self.temperature)
            .finish_non_exhaustive()
    }
}

impl ProviderSpec {
    /// A spec for `provider/model` over `wire` at `api_base`, with a two-minute timeout.
    pub fn new(
        provider: impl Into<String>,
        wire: impl Into<String>,
        model: impl Into<String>,
        api_base: impl Into<String>,
    ) -> Self {
        let provider = provider.into();
        Self {
            key_hint: format!("providers.{provider}.api_key"),
            provider,
            wire: wire.into(),
            model: model.into(),
            api_base: api_base.into(),
            api_key: None,
            tokens: None,
            proxy: None,
            timeout: Duration::from_secs(120),
            headers: Vec::new(),
            section: serde_json::Value::Object(serde_json::Map::new()),
            reasoning: None,
            reasoning_effort: None,
            temperature: None,
        }
    }

    /// Marks the model as a reasoning model (or not); `None` decides by its name.
    pub fn with_reasoning(mut self, reasoning: Option<bool>) -> Self {
        self.reasoning = reasoning;
        self
    }

    /// Sets the reasoning effort (`low`, `medium`, `high`).
    pub fn with_reasoning_effort(mut self, effort: Option<String>) -> Self {
        self.reasoning_effort = effort;
        self
    }

    /// Sets a temperature for this model in particular.
    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: Option<Secret<String>>) -> Self {
        self.api_key = key;
        self
    }

    /// Sets the token source used when there is no key.
    pub fn with_tokens(mut self, tokens: Option<Arc<dyn TokenSource>>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Sets where the user fixes the key.
    pub fn with_key_hint(mut self, hint: impl Into<String>) -> Self {
        self.key_hint = hint.into();
        self
    }

    /// Sets the proxy.
    pub fn with_proxy(mut self, proxy: Option<String>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the `providers.<name>` section.
    pub fn with_section(mut self, section: serde_json::Value) -> Self {
        self.section = section;
        self
    }

    /// The `providers.<name>` section as the factory's own settings type. Keys the type does
    /// not name are left for picoclaw (`api_key`, `api_base`, `proxy`, `wire`...).
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_value(self.section.clone())
            .map_err(|e| ProviderError::NotConfigured(format!("providers.{}: {e}", self.provider)))
    }

    /// A text setting of the section (trimmed, non-empty).
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.section
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

/// Builds a client for one wire format.
pub trait ProviderFactory: Send + Sync {
    /// A client for `spec`. Errors are configuration errors (a missing deployment, an
    /// unreadable setting), reported before any request is sent.
    fn build(&self, spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError>;
}

impl<F> ProviderFactory for F
where
    F: Fn(&ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> + Send + Sync,
{
    fn build(&self, spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
        self(spec)
    }
}

/// The model prefixes and wire formats a picoclaw build knows.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, ProviderInfo>,
    aliases: BTreeMap<String, String>,
    wires: BTreeMap<String, Arc<dyn ProviderFactory>>,
}

impl fmt::Debug for ProviderRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderRegistry")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("wires", &self.wires.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ProviderRegistry {
    /// A registry that knows nothing.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in vendors, and the wire formats of the families compiled in (cargo features
    /// `openai`, `anthropic`, `gemini`).
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        #[cfg(feature = "openai")]
        {
            r.register_wire("openai", build_openai);
            r.register_wire("responses", build_responses);
            r.register_wire("azure", build_azure);
        }
        #[cfg(feature = "anthropic")]
        r.register_wire("anthropic", build_anthropic);
        #[cfg(feature = "gemini")]
        r.register_wire("gemini", build_gemini);
        for info in crate::presets::builtin() {
            r.register(info);
        }
        r.alias("claude", "anthropic");
        r.alias("copilot", "github-copilot");
        r.alias("github_copilot", "github-copilot");
        r
    }

    /// Registers (or replaces) the factory of wire format `wire`.
    pub fn register_wire(&mut self, wire: &str, factory: impl ProviderFactory + 'static) {
        self.wires.insert(wire.to_owned(), Arc::new(factory));
    }

    /// Registers (or replaces) a model prefix.
    pub fn register(&mut self, info: ProviderInfo) {
        self.providers.insert(info.name.clone(), info);
    }

    /// A provider with a wire format of its own: `name/<model>` in config builds with
    /// `factory`. No key is required; the factory reads what it needs from its spec.
    pub fn register_provider(&mut self, name: &str, factory: impl ProviderFactory + 'static) {
        self.register_wire(name, factory);
        self.register(ProviderInfo::new(name, name));
    }

    /// `alias/<model>` means `name/<model>`.
    pub fn alias(&mut self, alias: &str, name: &str) {
        self.aliases
            .insert(alias.to_ascii_lowercase(), name.to_ascii_lowercase());
    }

    /// The prefix `name` (any case, aliases followed).
    pub fn provider(&self, name: &str) -> Option<&ProviderInfo> {
        let name = name.to_ascii_lowercase();
        let name = self.aliases.get(&name).unwrap_or(&name);
        self.providers.get(name)
    }

    /// Every registered prefix, sorted by name.
    pub fn providers(&self) -> impl Iterator<Item = &ProviderInfo> {
        self.providers.values()
    }

    /// Whether a factory is registered for `wire`.
    pub fn has_wire(&self, wire: &str) -> bool {
        self.wires.contains_key(wire)
    }

    /// The registered wire formats, sorted.
    pub fn wires(&self) -> impl Iterator<Item = &str> {
        self.wires.keys().map(String::as_str)
    }

    /// Builds the client `spec` describes with its wire format's factory.
    pub fn build(&self, spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
        let factory = self.wires.get(&spec.wire).ok_or_else(|| {
            let known = self.wires.keys().cloned().collect::<Vec<_>>().join(", ");
            ProviderError::NotConfigured(match family_feature(&spec.wire) {
                Some(feature) => format!(
                    "{}: the '{}' wire format is not compiled into this build (known: {known}); \
                     build with the cargo feature `{feature}` (of picoclaw-cli, \
                     picoclaw-providers, or picoclaw, the library)",
                    spec.provider, spec.wire
                ),
                None => format!(
                    "{}: no wire format '{}' in this build (known: {known})",
                    spec.provider, spec.wire
                ),
            })
        })?;
        factory.build(spec)
    }
}

/// The cargo feature of the built-in family that speaks `wire`, if one does.
fn family_feature(wire: &str) -> Option<&'static str> {
    match wire {
        "openai" | "responses" | "azure" => Some("openai"),
        "anthropic" => Some("anthropic"),
        "gemini" => Some("gemini"),
        _ => None,
    }
}

#[cfg(feature = "openai")]
fn openai_config(spec: &ProviderSpec) -> OpenAiCompatConfig {
    let mut cfg = OpenAiCompatConfig::new(spec.provider.clone(), spec.api_base.clone())
        .with_key_hint(spec.key_hint.clone())
        .with_proxy(spec.proxy.clone())
        .with_request_timeout(spec.timeout)
        .with_reasoning(spec.reasoning)
        .with_reasoning_effort(spec.reasoning_effort.clone())
        .with_temperature(spec.temperature);
    if let Some(key) = &spec.api_key {
        cfg = cfg.with_api_key(key.expose().clone());
    }
    for (name, value) in &spec.headers {
        cfg = cfg.with_header(name.clone(), value.clone());
    }
    cfg
}

#[cfg(feature = "openai")]
fn build_openai(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let p = OpenAiCompatible::new(openai_config(spec))?;
    Ok(Arc::new(match (&spec.api_key, &spec.tokens) {
        (None, Some(tokens)) => p.with_tokens(Arc::clone(tokens)),
        _ => p,
    }))
}

#[cfg(feature = "openai")]
fn build_responses(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let p = OpenAiResponses::new(openai_config(spec))?;
    Ok(Arc::new(match (&spec.api_key, &spec.tokens) {
        (None, Some(tokens)) => p.with_tokens(Arc::clone(tokens)),
        _ => p,
    }))
}

#[cfg(feature = "openai")]
/// Azure OpenAI: `deployment` and `api_version` come from the section (config fills them in
/// from the environment and defaults); without a key, the spec's tokens (Entra ID).
fn build_azure(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let deployment = spec.setting("deployment").unwrap_or(spec.model.as_str());
    let api_version = spec.setting("api_version").unwrap_or_default();
    let tokens = if spec.api_key.is_some() {
        None
    } else {
        spec.tokens.clone()
    };
    Ok(Arc::new(OpenAiCompatible::azure(
        openai_config(spec),
        deployment,
        api_version,
        tokens,
    )?))
}

#[cfg(feature = "anthropic")]
fn build_anthropic(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let mut cfg = AnthropicConfig::new(spec.api_base.clone())
        .with_key_hint(spec.key_hint.clone())
        .with_proxy(spec.proxy.clone())
        .with_request_timeout(spec.timeout);
    if let Some(key) = &spec.api_key {
        cfg = cfg.with_api_key(key.expose().clone());
        return Ok(Arc::new(Anthropic::new(cfg)?));
    }
    // A Claude sign-in: its OAuth tokens, renewed as they expire.
    let p = Anthropic::new(cfg)?;
    Ok(Arc::new(match &spec.tokens {
        Some(tokens) => p.with_tokens(Arc::clone(tokens)),
        None => p,
    }))
}

#[cfg(feature = "gemini")]
fn build_gemini(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let mut cfg = GeminiConfig::new(spec.api_base.clone())
        .with_key_hint(spec.key_hint.clone())
        .with_proxy(spec.proxy.clone())
        .with_request_timeout(spec.timeout);
    if let Some(key) = &spec.api_key {
        cfg = cfg.with_api_key(key.expose().clone());
    }
    Ok(Arc::new(Gemini::new(cfg)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::{ChatMessage, ChatRequest, ChatResponse, FinishReason};

    struct Fixed;

    #[async_trait::async_trait]
    impl LlmProvider for Fixed {
        fn name(&self) -> &str {
            "fixed"
        }
        async fn chat(&self, _req: ChatRequest) -> Result<ChatResponse, ProviderError> {
            Ok(ChatResponse::new(
                ChatMessage::assistant("ok"),
                FinishReason::Stop,
            ))
        }
    }

    #[test]
    fn builtin_prefixes_and_aliases_resolve() {
        let r = ProviderRegistry::builtin();
        for name in [
            "openai",
            "anthropic",
            "azure",
            "codex",
            "deepseek",
            "ollama",
            "google",
        ] {
            let info = r.provider(name).unwrap_or_else(|| panic!("{name}"));
            let feature = family_feature(&info.wire).unwrap_or_else(|| panic!("{name}"));
            let compiled = [
                ("openai", cfg!(feature = "openai")),
                ("anthropic", cfg!(feature = "anthropic")),
                ("gemini", cfg!(feature = "gemini")),
            ]
            .contains(&(feature, true));
            assert_eq!(
                r.has_wire(&info.wire),
                compiled,
                "{name}: wire {}",
                info.wire
            );
        }
        assert_eq!(
            r.provider("Claude").map(|p| p.name.as_str()),
            Some("anthropic")
        );
        assert_eq!(
            r.provider("github_copilot").map(|p| p.name.as_str()),
            Some("github-copilot")
        );
        assert!(r.provider("nope").is_none());
    }

    #[test]
    fn an_outside_provider_registers_like_the_builtin_ones() {
        let mut r = ProviderRegistry::builtin();
        r.register_provider("fixed", |_: &ProviderSpec| {
            Ok(Arc::new(Fixed) as Arc<dyn LlmProvider>)
        });
        let info = r.provider("fixed").unwrap_or_else(|| panic!("registered"));
        assert!(!info.needs_key);
        let p = r
            .build(&ProviderSpec::new("fixed", "fixed", "x", ""))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), "fixed");
    }

    #[test]
    fn an_unknown_wire_is_a_clear_error() {
        let mut r = ProviderRegistry::builtin();
        r.register_provider("fixed", |_: &ProviderSpec| {
            Ok(Arc::new(Fixed) as Arc<dyn LlmProvider>)
        });
        let Err(e) = r.build(&ProviderSpec::new("mine", "carrier-pigeon", "x", "")) else {
            panic!("built");
        };
        let text = e.to_string();
        assert!(
            text.contains("carrier-pigeon") && text.contains("fixed") && !text.contains("feature"),
            "{text}"
        );
    }

    /// The registry `builtin` makes when only the openai family is compiled in.
    fn builtin_with_openai_only() -> ProviderRegistry {
        let mut r = ProviderRegistry::empty();
        for wire in ["openai", "responses", "azure"] {
            r.register_wire(wire, |_: &ProviderSpec| {
                Ok(Arc::new(Fixed) as Arc<dyn LlmProvider>)
            });
        }
        for info in crate::presets::builtin() {
            r.register(info);
        }
        r
    }

    fn build_error(r: &ProviderRegistry, provider: &str) -> ProviderError {
        let info = r.provider(provider).unwrap_or_else(|| panic!("{provider}"));
        let spec = ProviderSpec::new(&info.name, &info.wire, "some-model", &info.api_base);
        match r.build(&spec) {
            Ok(_) => panic!("{provider}: built"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_vendor_of_a_family_compiled_out_names_the_feature_to_enable() {
        let r = builtin_with_openai_only();
        assert!(
            r.build(&ProviderSpec::new("deepseek", "openai", "x", ""))
                .is_ok()
        );
        for (provider, feature) in [("google", "gemini"), ("anthropic", "anthropic")] {
            let e = build_error(&r, provider);
            assert!(matches!(e, ProviderError::NotConfigured(_)), "{e:?}");
            let text = e.to_string();
            assert!(
                text.contains(provider)
                    && text.contains(&format!("cargo feature `{feature}`"))
                    && text.contains("not compiled into this build"),
                "{text}"
            );
        }
        let mut presets_only = ProviderRegistry::empty();
        for info in crate::presets::builtin() {
            presets_only.register(info);
        }
        let e = build_error(&presets_only, "azure");
        assert!(e.to_string().contains("cargo feature `openai`"), "{e}");
    }

    #[cfg(not(feature = "gemini"))]
    #[test]
    fn builtin_without_gemini_names_the_gemini_feature() {
        let e = build_error(&ProviderRegistry::builtin(), "google");
        assert!(e.to_string().contains("cargo feature `gemini`"), "{e}");
    }

    #[test]
    fn settings_deserialize_into_the_factorys_type() {
        #[derive(serde::Deserialize)]
        struct Mine {
            shout: bool,
        }
        let spec = ProviderSpec::new("mine", "mine", "x", "")
            .with_section(serde_json::json!({"shout": true, "api_key": "k"}));
        let mine: Mine = spec.settings().unwrap_or_else(|e| panic!("{e}"));
        assert!(mine.shout);
        let bad = ProviderSpec::new("mine", "mine", "x", "")
            .with_section(serde_json::json!({"shout": "loud"}));
        assert!(bad.settings::<Mine>().is_err());
    }
}
