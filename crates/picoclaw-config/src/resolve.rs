//! Model resolution: which provider, model id, endpoint and key a config means.
//!
//! Order: an explicit `agents.defaults.provider`; else a `provider/model` prefix; else a
//! `model_list` alias; else the original PicoClaw's known-name matching (`gpt-*` → openai,
//! `deepseek*` → deepseek, ...); else an error naming what was tried.

use crate::ConfigError;
use crate::model::{Config, ModelEntry, ProviderConfig};
use picoclaw_api::Secret;
use picoclaw_providers::ProviderInfo;
use std::collections::HashMap;
use std::path::PathBuf;

/// The model used when only `OPENAI_API_KEY` / `OPENAI_BASE_URL` is set.
pub const FALLBACK_OPENAI_MODEL: &str = "gpt-4o-mini";

/// Providers of the original PicoClaw that later issues add.
const NOT_YET: &[&str] = &["bedrock"];

/// The Azure OpenAI API version used when none is configured.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

/// Azure OpenAI specifics of a resolved model.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AzureSettings {
    pub deployment: String,
    pub api_version: String,
    /// The Entra ID scope (`AZURE_OPENAI_SCOPE`).
    pub scope: String,
    /// A user-assigned managed identity (`AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID`).
    pub managed_identity_client_id: Option<String>,
}

/// Everything needed to build a provider.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ResolvedModel {
    /// The preset name (`openai`, `deepseek`, `anthropic`, ...).
    pub provider: String,
    /// The wire format the provider speaks (`openai`, `anthropic`, `azure`...).
    pub wire: String,
    /// The model id the vendor knows (`gpt-4o-mini`).
    pub model: String,
    pub api_base: String,
    pub api_key: Option<Secret<String>>,
    /// Where the key came from, in words (`config.json model_list 'fast'`,
    /// `environment OPENAI_API_KEY`, `.env /home/me/.picoclaw/.env (OPENAI_API_KEY)`,
    /// `Key Vault keyvault://vault/secret`, `auth store (picoclaw auth login)`); `None` without
    /// a key.
    pub key_source: Option<String>,
    /// The config key the API key was read from (`providers.openai.api_key`,
    /// `model_list.0.api_keys.1`), when it came from config.json.
    pub key_path: Option<String>,
    /// Where to set the key, for error messages.
    pub key_hint: String,
    pub proxy: Option<String>,
    /// How the model was found (`agents.defaults.model prefix`, `model_list alias 'fast'`...).
    pub via: String,
    /// Requests per minute allowed to this model (`model_list[].rpm`).
    pub rpm: Option<u32>,
    /// Other `model_list` entries with the same alias: requests are spread across all of them.
    pub alternates: Vec<ResolvedModel>,
    /// `model_list[].fallbacks` of this entry (model names or aliases).
    pub fallbacks: Vec<String>,
    /// `model_list[].reasoning`: a reasoning model whatever its name says (or not).
    pub reasoning: Option<bool>,
    /// `model_list[].reasoning_effort`.
    pub reasoning_effort: Option<String>,
    /// `model_list[].temperature`: this model's own temperature.
    pub temperature: Option<f32>,
    /// Set for Azure OpenAI.
    pub azure: Option<AzureSettings>,
    /// The login (`picoclaw auth login`) whose tokens are sent when there is no API key: the
    /// store and the provider name the login is kept under.
    pub login: Option<(picoclaw_auth::AuthStore, String)>,
}

/// Where the Codex models are served to a ChatGPT (OAuth) login.
pub const CHATGPT_CODEX_BASE: &str = "https://chatgpt.com/backend-api/codex";

/// The name a provider's login is stored under: the Codex models use the OpenAI (ChatGPT) login.
pub fn login_name(provider: &str) -> &str {
    match provider {
        "codex" => "openai",
        "copilot" => "github-copilot",
        other => other,
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn non_empty_secret(s: &Option<Secret<String>>) -> Option<Secret<String>> {
    s.as_ref()
        .filter(|k| !k.expose().trim().is_empty())
        .map(|k| Secret::new(k.expose().trim().to_owned()))
}

impl Config {
    fn config_path(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from("~/.picoclaw/config.json"))
    }

    fn provider_entry(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Resolves the configured model; `env` supplies the vendors' standard key variables.
    pub fn resolve_model(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<ResolvedModel, ConfigError> {
        let d = &self.agents.defaults;
        let model = d.model.trim();
        let alias = d.model_name.trim();

        // 1. An explicit provider.
        if !d.provider.trim().is_empty() {
            let provider = d.provider.trim().to_ascii_lowercase();
            let id = model
                .strip_prefix(&format!("{provider}/"))
                .unwrap_or(model)
                .to_owned();
            let id = if id.is_empty() && provider == "openai" {
                FALLBACK_OPENAI_MODEL.to_owned()
            } else {
                id
            };
            if id.is_empty() {
                return Err(ConfigError::Model(format!(
                    "agents.defaults.provider is '{provider}' but agents.defaults.model is empty; \
                     set the model id in {}",
                    self.config_path().display()
                )));
            }
            return self.build(&provider, &id, None, env, "agents.defaults.provider".into());
        }

        if let Some(resolved) = self.resolve_name(model, alias, "agents.defaults.model", env)? {
            return Ok(resolved);
        }
        if !alias.is_empty() {
            return Err(ConfigError::Model(format!(
                "agents.defaults.model_name is '{alias}' but no model_list entry has that \
                 model_name in {}",
                self.config_path().display()
            )));
        }

        // 5. Nothing configured: the standard OpenAI variables, else a one-line error.
        let set = |k: &str| env.get(k).is_some_and(|v| !v.trim().is_empty());
        if set("AZURE_OPENAI_ENDPOINT") && set("AZURE_OPENAI_DEPLOYMENT") {
            let deployment = env
                .get("AZURE_OPENAI_DEPLOYMENT")
                .cloned()
                .unwrap_or_default();
            return self.build(
                "azure",
                deployment.trim(),
                None,
                env,
                "AZURE_OPENAI_ENDPOINT / AZURE_OPENAI_DEPLOYMENT (no model configured)".into(),
            );
        }
        if set("OPENAI_API_KEY") || set("OPENAI_BASE_URL") {
            return self.build(
                "openai",
                FALLBACK_OPENAI_MODEL,
                None,
                env,
                "OPENAI_API_KEY / OPENAI_BASE_URL (no model configured)".into(),
            );
        }
        Err(ConfigError::NoProvider {
            config: self.config_path(),
        })
    }

    /// Resolves a model name or alias (steps 2–4: prefix, `model_list`, known names); `None`
    /// when both are empty. `key` names the setting in errors.
    fn resolve_name(
        &self,
        model: &str,
        alias: &str,
        key: &str,
        env: &HashMap<String, String>,
    ) -> Result<Option<ResolvedModel>, ConfigError> {
        // 2. A `provider/model` prefix.
        if let Some((prefix, rest)) = model.split_once('/') {
            let prefix_lc = prefix.to_ascii_lowercase();
            if self.provider_info(&prefix_lc).is_some() || NOT_YET.contains(&prefix_lc.as_str()) {
                return self
                    .build(
                        &prefix_lc,
                        rest,
                        None,
                        env,
                        format!("the provider/ prefix of {key}"),
                    )
                    .map(Some);
            }
        }

        // 3. A `model_list` alias; entries sharing it are load-balanced.
        for wanted in [alias, model].into_iter().filter(|s| !s.is_empty()) {
            let entries: Vec<&ModelEntry> = self
                .model_list
                .iter()
                .filter(|e| e.model_name.trim() == wanted)
                .collect();
            if entries.is_empty() {
                continue;
            }
            let mut built = Vec::with_capacity(entries.len());
            for entry in entries {
                let (protocol, id) = entry.model.split_once('/').ok_or_else(|| {
                    ConfigError::Model(format!(
                        "model_list entry '{wanted}' has model '{}'; write it as \
                         \"protocol/model-id\", e.g. \"openai/gpt-4o-mini\"",
                        entry.model
                    ))
                })?;
                let mut r = self.build(
                    &protocol.to_ascii_lowercase(),
                    id,
                    Some(entry),
                    env,
                    format!("model_list alias '{wanted}'"),
                )?;
                r.rpm = entry.rpm.filter(|n| *n > 0);
                r.fallbacks.clone_from(&entry.fallbacks);
                r.reasoning = entry.reasoning;
                r.reasoning_effort.clone_from(&entry.reasoning_effort);
                r.temperature = entry.temperature;
                // Several `api_keys` on one entry take turns like entries sharing the alias.
                let extra_keys: Vec<_> = entry
                    .api_keys
                    .iter()
                    .filter(|k| !k.expose().trim().is_empty())
                    .skip(1)
                    .cloned()
                    .collect();
                let first_of_entry = r.clone();
                built.push(r);
                for key in extra_keys {
                    let mut alt = first_of_entry.clone();
                    alt.api_key = Some(key);
                    built.push(alt);
                }
            }
            let mut first = built.remove(0);
            first.alternates = built;
            return Ok(Some(first));
        }
        if let Some((prefix, _)) = model.split_once('/') {
            return Err(self.unknown_provider(prefix, model));
        }

        // 4. Known names (the original's matching).
        if !model.is_empty() {
            if let Some(provider) = known_name(model) {
                return self
                    .build(
                        provider,
                        model,
                        None,
                        env,
                        format!("the model name '{model}'"),
                    )
                    .map(Some);
            }
            if let Some(only) = self.only_configured_provider() {
                return self
                    .build(
                        &only,
                        model,
                        None,
                        env,
                        format!("the only configured provider ({only})"),
                    )
                    .map(Some);
            }
            let mut tried = vec![
                "no agents.defaults.provider".to_owned(),
                "no provider/ prefix".to_owned(),
            ];
            tried.push(if self.model_list.is_empty() {
                "no model_list".to_owned()
            } else {
                format!("no model_list alias '{model}'")
            });
            tried.push("no known model family".to_owned());
            return Err(ConfigError::Model(format!(
                "cannot tell which provider serves model '{model}' ({}); write it as \
                 provider/model (e.g. openai/{model}, ollama/{model}) in {key} in {}",
                tried.join(", "),
                self.config_path().display()
            )));
        }
        Ok(None)
    }

    /// Resolves one model name or `model_list` alias; `key` names the setting in errors.
    pub fn resolve_named(
        &self,
        name: &str,
        key: &str,
        env: &HashMap<String, String>,
    ) -> Result<ResolvedModel, ConfigError> {
        self.resolve_name(name.trim(), "", key, env)?
            .ok_or_else(|| {
                ConfigError::Model(format!(
                    "{key} is empty; remove it or name a model such as deepseek/deepseek-chat"
                ))
            })
    }

    /// The fallback models of `agents.defaults.model_fallbacks`, resolved in order.
    pub fn resolve_fallbacks(
        &self,
        env: &HashMap<String, String>,
    ) -> Result<Vec<ResolvedModel>, ConfigError> {
        let mut out = Vec::new();
        for (i, name) in self.agents.defaults.model_fallbacks.iter().enumerate() {
            let key = format!("agents.defaults.model_fallbacks[{i}]");
            match self.resolve_name(name.trim(), "", &key, env)? {
                Some(r) => out.push(r),
                None => {
                    return Err(ConfigError::Model(format!(
                        "{key} is empty; remove it or name a model such as deepseek/deepseek-chat"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The one provider entry with a key or base URL, when there is exactly one.
    fn only_configured_provider(&self) -> Option<String> {
        let mut configured = self.providers.iter().filter(|(name, p)| {
            self.provider_info(name).is_some()
                && (non_empty_secret(&p.api_key).is_some() || non_empty(&p.api_base).is_some())
        });
        let first = configured.next()?;
        configured
            .next()
            .is_none()
            .then(|| first.0.to_ascii_lowercase())
    }

    fn build(
        &self,
        provider: &str,
        model: &str,
        entry: Option<&ModelEntry>,
        env: &HashMap<String, String>,
        via: String,
    ) -> Result<ResolvedModel, ConfigError> {
        let Some(preset) = self.provider_info(provider) else {
            let full = if model.is_empty() {
                provider.to_owned()
            } else {
                format!("{provider}/{model}")
            };
            return Err(self.unknown_provider(provider, &full));
        };
        let preset = &preset;
        if model.trim().is_empty() {
            return Err(ConfigError::Model(format!(
                "model '{provider}/' has no model id; write it as {provider}/<model-id>"
            )));
        }
        let section = self.provider_entry(provider);
        let env_get = |k: Option<&str>| {
            k.and_then(|k| env.get(k))
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let file = self.config_path();
        let key_path = std::cell::RefCell::new(None);
        let from_config = |key: String| -> String {
            let origin = self
                .origins
                .get(&key)
                .cloned()
                .unwrap_or_else(|| format!("{} ({key})", file.display()));
            *key_path.borrow_mut() = Some(key);
            origin
        };
        let entry_index = entry.and_then(|e| {
            self.model_list
                .iter()
                .position(|m| std::ptr::eq(m, e))
                .or_else(|| {
                    self.model_list
                        .iter()
                        .position(|m| m.model_name == e.model_name && m.model == e.model)
                })
        });
        let entry_key = |field: &str| match entry_index {
            Some(i) => format!("model_list.{i}.{field}"),
            None => format!(
                "model_list '{}' {field}",
                entry.map(|e| e.model_name.as_str()).unwrap_or("")
            ),
        };
        let mut key_source = None;
        let api_key = entry
            .and_then(|e| {
                e.api_keys
                    .iter()
                    .position(|k| !k.expose().trim().is_empty())
                    .map(|i| {
                        key_source = Some(from_config(entry_key(&format!("api_keys.{i}"))));
                        e.api_keys[i].clone()
                    })
            })
            .or_else(|| {
                let k = entry.and_then(|e| non_empty_secret(&e.api_key))?;
                key_source = Some(from_config(entry_key("api_key")));
                Some(k)
            })
            .or_else(|| {
                let k = section.and_then(|s| non_empty_secret(&s.api_key))?;
                let name = self
                    .providers
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(provider))
                    .cloned()
                    .unwrap_or_else(|| provider.to_owned());
                key_source = Some(from_config(format!("providers.{name}.api_key")));
                Some(k)
            })
            .or_else(|| {
                let var = preset.key_env.as_deref()?;
                let k = env_get(Some(var)).map(Secret::new)?;
                key_source = Some(
                    self.environment()
                        .describe(var)
                        .unwrap_or_else(|| format!("environment {var}")),
                );
                Some(k)
            });
        let api_base = entry
            .and_then(|e| non_empty(&e.api_base))
            .or_else(|| section.and_then(|s| non_empty(&s.api_base)))
            .or_else(|| env_get(preset.base_env.as_deref()))
            .unwrap_or_else(|| preset.api_base.clone());
        let proxy = entry
            .and_then(|e| non_empty(&e.proxy))
            .or_else(|| section.and_then(|s| non_empty(&s.proxy)));
        let mut key_hint = key_hint(preset, entry, &self.config_path());
        let azure = if preset.wire == "azure" {
            if api_base.trim().is_empty() {
                return Err(ConfigError::Model(format!(
                    "azure: no endpoint; set providers.azure.api_base in {} or \
                     AZURE_OPENAI_ENDPOINT (https://<resource>.openai.azure.com)",
                    self.config_path().display()
                )));
            }
            let pick = |cfg: Option<&String>, var: &str, default: &str| {
                cfg.map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .or_else(|| env_get(Some(var)))
                    .unwrap_or_else(|| default.to_owned())
            };
            let deployment = pick(
                section.and_then(|s| s.deployment.as_ref()),
                "AZURE_OPENAI_DEPLOYMENT",
                model.trim(),
            );
            let mi = section
                .and_then(|s| s.managed_identity_client_id.clone())
                .filter(|s| !s.trim().is_empty())
                .or_else(|| {
                    Some(self.azure.managed_identity_client_id.trim().to_owned())
                        .filter(|s| !s.is_empty())
                })
                .or_else(|| env_get(Some("AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID")))
                .or_else(|| env_get(Some("MANAGED_IDENTITY_CLIENT_ID")));
            if api_key.is_none() {
                key_hint = format!(
                    "the Azure identity (managed identity, service principal or az login), or \
                     set {key_hint}"
                );
            }
            Some(AzureSettings {
                deployment,
                api_version: pick(
                    section.and_then(|s| s.api_version.as_ref()),
                    "AZURE_OPENAI_API_VERSION",
                    DEFAULT_AZURE_API_VERSION,
                ),
                scope: pick(
                    section.and_then(|s| s.scope.as_ref()),
                    "AZURE_OPENAI_SCOPE",
                    picoclaw_auth::DEFAULT_AZURE_SCOPE,
                ),
                managed_identity_client_id: mi,
            })
        } else {
            None
        };
        let custom_base = api_base.trim_end_matches('/') != preset.api_base;
        // Without a key, a login stored by `picoclaw auth login` stands in.
        let mut login = None;
        if api_key.is_none()
            && let Some(store) = &self.auth
        {
            let name = login_name(&preset.name);
            match store.get(name) {
                Ok(Some(_)) => login = Some((store.clone(), name.to_owned())),
                Ok(None) => {}
                Err(e) => {
                    // Say why a stored login could not stand in (a locked or exposed auth.json).
                    tracing::warn!(error = %e, "the credential store cannot be read");
                    key_hint = format!("{key_hint} ({e})");
                }
            }
        }
        // The Codex models through a ChatGPT login go to the ChatGPT backend, not the platform
        // API (which only takes API keys).
        let api_base = if preset.name == "codex" && login.is_some() && !custom_base {
            CHATGPT_CODEX_BASE.to_owned()
        } else {
            api_base
        };
        if preset.needs_key && api_key.is_none() && login.is_none() && !custom_base {
            return Err(ConfigError::MissingKey {
                provider: preset.name.clone(),
                hint: key_hint,
            });
        }
        Ok(ResolvedModel {
            provider: preset.name.clone(),
            wire: preset.wire.clone(),
            model: model.trim().to_owned(),
            api_base,
            key_path: if api_key.is_some() {
                key_path.into_inner()
            } else {
                None
            },
            key_source: match (&api_key, &login) {
                (Some(_), _) => key_source,
                (None, Some((_, name))) => Some(format!("auth store ({name} login)")),
                (None, None) if azure.is_some() => Some("Azure Entra ID".to_owned()),
                (None, None) => None,
            },
            api_key,
            key_hint,
            proxy,
            via,
            rpm: None,
            alternates: Vec::new(),
            fallbacks: Vec::new(),
            reasoning: None,
            reasoning_effort: None,
            temperature: None,
            azure,
            login,
        })
    }
}

fn key_hint(preset: &ProviderInfo, entry: Option<&ModelEntry>, config: &std::path::Path) -> String {
    let place = match entry {
        Some(e) => format!("model_list '{}' api_key", e.model_name),
        None => format!("providers.{}.api_key", preset.name),
    };
    match &preset.key_env {
        Some(var) => format!("{place} in {} or {var}", config.display()),
        None => format!("{place} in {}", config.display()),
    }
}

impl Config {
    /// The provider `name` means: a `providers.<name>` entry with a `wire` (defined in config
    /// alone), else a registered prefix.
    pub fn provider_info(&self, name: &str) -> Option<ProviderInfo> {
        let lc = name.to_ascii_lowercase();
        if let Some((key, section)) = self
            .providers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&lc))
            && let Some(wire) = section
                .wire
                .as_deref()
                .map(str::trim)
                .filter(|w| !w.is_empty())
        {
            let mut info = ProviderInfo::new(key.as_str(), wire);
            if let Some(base) = non_empty(&section.api_base) {
                info = info.with_api_base(base);
            }
            return Some(info);
        }
        self.registry().provider(&lc).cloned()
    }

    fn unknown_provider(&self, name: &str, model: &str) -> ConfigError {
        let lc = name.to_ascii_lowercase();
        let note = if NOT_YET.contains(&lc.as_str()) {
            " (not supported yet in this build)".to_owned()
        } else {
            String::new()
        };
        let registry = self.registry();
        let mut known: Vec<String> = registry.providers().map(|p| p.name.clone()).collect();
        known.extend(
            self.providers
                .iter()
                .filter(|(_, p)| p.wire.is_some())
                .map(|(k, _)| k.clone()),
        );
        ConfigError::UnknownProvider {
            name: name.to_owned(),
            model: model.to_owned(),
            known: known.join(", "),
            note,
        }
    }
}

/// The original PicoClaw's model-family matching for bare model names.
fn known_name(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_lowercase();
    let starts = |p: &[&str]| p.iter().any(|p| m.starts_with(p));
    if m.contains("codex") {
        Some("codex")
    } else if starts(&[
        "gpt-",
        "gpt4",
        "o1",
        "o3",
        "o4",
        "chatgpt",
        "text-embedding",
    ]) {
        Some("openai")
    } else if m.contains("deepseek") {
        Some("deepseek")
    } else if starts(&["glm", "chatglm", "zhipu"]) {
        Some("zhipu")
    } else if m.contains("moonshot") || m.contains("kimi") {
        Some("moonshot")
    } else if starts(&["gemini", "gemma"]) {
        Some("gemini")
    } else if m.contains("claude") {
        Some("anthropic")
    } else {
        None
    }
}
