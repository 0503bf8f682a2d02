//! The config file's schema, in the original PicoClaw's snake_case layout. Every field has a
//! default, so a partial file (or none) works. The channel and tool sections are typed by the
//! crates that use them (picoclaw-channels, picoclaw-tools, picoclaw-mcp, picoclaw-skills), so a
//! misspelt key in them is reported like any other. Sections of the original PicoClaw that
//! picoclaw keeps but does not act on are raw JSON: they round-trip unchanged, and loading says
//! once per section that it is ignored.

use crate::paths::Paths;
use picoclaw_api::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The workspace value written by default; it follows `PICOCLAW_HOME` when that is set.
pub const DEFAULT_WORKSPACE: &str = "~/.picoclaw/workspace";

/// `rate_limits`: typed by the crate that enforces it.
pub use picoclaw_core::RateLimits;

/// The whole config file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Config {
    pub agents: AgentsConfig,
    pub providers: BTreeMap<String, ProviderConfig>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_list: Vec<ModelEntry>,
    /// Channel settings (telegram, discord, slack; the original's other channels kept as they
    /// are).
    pub channels: picoclaw_channels::ChannelsSection,
    pub tools: ToolsConfig,
    pub heartbeat: HeartbeatConfig,
    pub gateway: GatewayConfig,
    /// Where state is kept (sessions, memory index, cron jobs, usage, outbox).
    pub state: StateConfig,
    /// Speech to text (voice messages, the `transcribe` tool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stt: Option<picoclaw_tools::SttSection>,
    /// Model requests and tool calls each conversation may make per minute (0: no limit); an
    /// agent's `agents.list[].rate_limits` replaces it for that agent.
    #[serde(skip_serializing_if = "RateLimits::is_unlimited")]
    pub rate_limits: RateLimits,
    // Sections of the original PicoClaw that this build does not use yet, kept verbatim (loading
    // warns once about each: see `load::ignored_sections`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<Value>,
    /// Which agent a chat goes to (the original's bindings; see [`crate::agents`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<crate::Binding>,
    /// Azure: which credential to use, the user-assigned identity, Key Vault.
    #[serde(skip_serializing_if = "AzureSection::is_empty")]
    pub azure: AzureSection,
    /// The file this config was loaded from (set by `load`, never serialized).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The credential store whose logins stand in for missing API keys (set by `load` to the
    /// home's `auth.json`; never serialized).
    #[serde(skip)]
    pub auth: Option<picoclaw_auth::AuthStore>,
    /// The model prefixes and wire formats this program knows (the built-in ones unless an
    /// embedder or a contributor's binary set its own; never serialized).
    #[serde(skip)]
    pub registry: Option<std::sync::Arc<picoclaw_providers::ProviderRegistry>>,
    /// The variables read with this config: the process environment and the `.env` files (set
    /// by `load`; the process environment alone when `None`; never serialized).
    #[serde(skip)]
    pub environment: Option<std::sync::Arc<crate::Environment>>,
    /// Keys whose value did not come from the file, with where it came from
    /// (`channels.telegram.token` → `environment TELEGRAM_BOT_TOKEN`, a `.env` file, a Key
    /// Vault reference). Set by `load`; never serialized.
    #[serde(skip)]
    pub origins: BTreeMap<String, String>,
    /// The Key Vault the config's references were read from (set by `load` when there were
    /// any; never serialized).
    #[serde(skip)]
    pub key_vault: Option<std::sync::Arc<crate::KeyVaultSecrets>>,
}

/// `azure`: how picoclaw gets Azure Entra ID tokens (Azure OpenAI without a key, Key Vault).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
#[non_exhaustive]
pub struct AzureSection {
    /// `chain` (empty, the default: environment → workload identity → managed identity →
    /// Azure CLI → Azure Developer CLI), or one of `environment`, `workload_identity`,
    /// `managed_identity`, `cli`, `developer_cli` to use that one alone.
    pub credential: String,
    /// A user-assigned managed identity's client id (else `AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID`
    /// or `MANAGED_IDENTITY_CLIENT_ID`).
    pub managed_identity_client_id: String,
    /// Replaces `https://<vault-name>.vault.azure.net` for every Key Vault reference (private
    /// endpoints, sovereign clouds); `AZURE_KEYVAULT_ENDPOINT` when empty.
    pub keyvault_endpoint: String,
    /// The scope Key Vault tokens are asked for (default `https://vault.azure.net/.default`).
    pub keyvault_scope: String,
}

impl AzureSection {
    /// Whether nothing is set (the section is then not written).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl Config {
    /// The provider registry models are resolved against.
    pub fn registry(&self) -> std::sync::Arc<picoclaw_providers::ProviderRegistry> {
        self.registry
            .clone()
            .unwrap_or_else(|| std::sync::Arc::new(picoclaw_providers::ProviderRegistry::builtin()))
    }

    /// Resolves models against `registry` (a build with providers of its own).
    pub fn with_registry(
        mut self,
        registry: std::sync::Arc<picoclaw_providers::ProviderRegistry>,
    ) -> Self {
        self.registry = Some(registry);
        self
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AgentsConfig {
    pub defaults: AgentDefaults,
    /// Several agents in one gateway (the original's multi-agent list; see [`crate::agents`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<crate::AgentEntry>,
}

/// `agents.defaults`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct AgentDefaults {
    pub workspace: String,
    pub restrict_to_workspace: bool,
    /// An explicit provider name; empty means "from the model name".
    pub provider: String,
    /// `provider/model` (`openai/gpt-4o-mini`) or a bare model name.
    pub model: String,
    /// A `model_list` alias.
    pub model_name: String,
    pub max_tokens: u32,
    /// The model's context window in tokens: its own setting, never derived from max_tokens.
    pub context_window: u32,
    pub temperature: f32,
    pub max_tool_iterations: u32,
    /// Models that answer, in order, when the configured one keeps failing (`provider/model` or
    /// `model_list` aliases).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub model_fallbacks: Vec<String>,
    /// Retries of a failed model call (rate limits, 5xx, timeouts) before giving up or falling
    /// back; 0 turns retrying off.
    pub max_retries: u32,
    /// Seconds a model call may take (for a stream: the longest silence between chunks).
    pub request_timeout: u64,
    /// Summarise older history when it outgrows the context (and after a context-length error).
    pub compaction: bool,
    /// History tokens that trigger compaction; 0 = three quarters of the context window minus
    /// max_tokens.
    pub compaction_threshold: u32,
    /// Tokens of long-term memory (memory/MEMORY.md and recent daily notes) each request may
    /// carry; past that only the notes most related to the message go in. 0 = none.
    pub memory_budget_tokens: u32,
    /// The original's data folder setting; unused here (state lives in `state.db`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<String>,
}

impl Default for AgentDefaults {
    fn default() -> Self {
        Self {
            workspace: DEFAULT_WORKSPACE.to_owned(),
            restrict_to_workspace: true,
            provider: String::new(),
            model: String::new(),
            model_name: String::new(),
            max_tokens: 8192,
            context_window: 128_000,
            temperature: 0.7,
            max_tool_iterations: 20,
            model_fallbacks: Vec::new(),
            max_retries: 3,
            request_timeout: 120,
            compaction: true,
            compaction_threshold: 0,
            memory_budget_tokens: 2000,
            data_dir: None,
        }
    }
}

/// `providers.<name>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProviderConfig {
    /// A provider defined in config alone: the wire format it speaks (`openai`, `anthropic`,
    /// `gemini`, `responses`, or one a contributor's build registered), with `api_base`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Azure OpenAI: the deployment name (else the model part of `azure/<name>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Azure OpenAI: the `api-version` query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Azure OpenAI: the Entra ID scope tokens are requested for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Azure OpenAI: a user-assigned managed identity's client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_identity_client_id: Option<String>,
    /// Other keys the original's providers have (auth_method, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `model_list` entry: an alias for a model on a protocol.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ModelEntry {
    pub model_name: String,
    /// `protocol/model-id` (`openai/gpt-4o`, `deepseek/deepseek-chat`).
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret<String>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<Secret<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Requests per minute this entry may receive; further requests wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Models to fall back to when this one keeps failing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Prices for `picoclaw usage` cost estimates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
    /// Whether the model is one of OpenAI's reasoning models (`max_completion_tokens`, no
    /// temperature): for Azure deployments whose names do not say so. Unset: by the model's
    /// name (o1, o3, o4, gpt-5 and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<bool>,
    /// `low`, `medium` or `high`: how hard a reasoning model thinks (OpenAI wires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// A temperature for this model, in place of `agents.defaults.temperature` (OpenAI wires);
    /// a reasoning model gets a temperature only when its entry sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A model's price in currency units per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens; the input price when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl Price {
    /// The cost of these token counts (cached tokens are part of `prompt`).
    pub fn cost(&self, prompt: u64, completion: u64, cached: u64) -> f64 {
        let m = 1_000_000.0;
        let cached = cached.min(prompt);
        let fresh = (prompt - cached) as f64;
        fresh * self.input / m
            + cached as f64 * self.cached_input.unwrap_or(self.input) / m
            + completion as f64 * self.output / m
    }
}

impl Config {
    /// The configured price of `provider/model`, from `model_list`.
    pub fn price_of(&self, model: &str) -> Option<Price> {
        self.model_list
            .iter()
            .find(|e| e.model.trim() == model && e.price.is_some())
            .and_then(|e| e.price)
    }

    /// The cost of a usage row's calls (`picoclaw usage` and the dashboard's Usage page): known
    /// only when every model in it has a `model_list` price, so a total never silently leaves
    /// a model out. Reasoning tokens are part of the completion tokens: they are priced there,
    /// not again.
    pub fn cost_of(&self, models: &[picoclaw_api::state::ModelUsage]) -> Option<f64> {
        models.iter().try_fold(0.0, |acc, m| {
            self.price_of(&m.model).map(|price| {
                acc + price.cost(m.prompt_tokens, m.completion_tokens, m.cached_tokens)
            })
        })
    }
}

/// Declares `ToolsConfig`: the typed tool sections, and the original PicoClaw's tool keys that
/// picoclaw accepts as they are (no struct here checks their keys).
macro_rules! tools_config {
    (typed { $( $(#[$m:meta])* $field:ident : $ty:ty, )* } original { $($other:ident,)* }) => {
        /// `tools`.
        #[derive(Clone, Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct ToolsConfig {
            pub exec: ExecSection,
            $(
                $(#[$m])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
            $(
                /// A key of the original PicoClaw's `tools`, kept as it is.
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $other: Option<Value>,
            )*
        }
    };
}

tools_config! {
    typed {
        /// `web_search` and `web_fetch` (absent: DuckDuckGo search).
        web: picoclaw_tools::WebSection,
        /// Tools from MCP servers.
        mcp: picoclaw_mcp::McpSection,
        /// Skills: built-in ones, installs, grants.
        skills: picoclaw_skills::SkillsSection,
        /// The I2C tool (builds with the `hardware` feature).
        i2c: picoclaw_tools::ToggleSection,
        /// The SPI tool (builds with the `hardware` feature).
        spi: picoclaw_tools::ToggleSection,
        /// The GPIO tool: chip, allowed pins (builds with the `hardware` feature).
        gpio: picoclaw_tools::GpioSection,
        /// `tools.cron.max_jobs`, read by the `cron` tool (the original's other cron keys are
        /// left alone).
        cron: Value,
    }
    original {
        allow_read_paths,
        allow_write_paths,
        filter_sensitive_data,
        filter_min_length,
        media_cleanup,
        append_file,
        edit_file,
        find_skills,
        install_skill,
        list_dir,
        message,
        read_file,
        send_file,
        spawn,
        spawn_status,
        subagent,
        web_fetch,
        write_file,
    }
}

/// `tools.exec`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ExecSection {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Extra deny patterns (regular expressions) on top of the built-in list.
    #[serde(alias = "custom_deny_patterns", skip_serializing_if = "Vec::is_empty")]
    pub deny_patterns: Vec<String>,
    /// Confine commands with Landlock (Linux) while `restrict_to_workspace` is on: writes only in
    /// the workspace, the temporary folder and `writable_paths`. Default true.
    pub landlock: bool,
    /// Extra folders confined commands may write in (`~` is the home folder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writable_paths: Vec<String>,
    /// Extra folders confined commands may read (the owner's home and picoclaw's home are
    /// closed otherwise; `~` is the home folder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub readable_paths: Vec<String>,
    /// Outbound TCP from commands. Default true; false refuses connections (Landlock ABI 4+).
    pub network: bool,
    /// Refuse to run commands where Landlock is unavailable. Default false (they run
    /// unconfined, and `picoclaw status` and the log say so).
    pub require_sandbox: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ExecSection {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout_seconds: None,
            deny_patterns: Vec::new(),
            landlock: true,
            writable_paths: Vec::new(),
            readable_paths: Vec::new(),
            network: true,
            require_sandbox: false,
            extra: Map::new(),
        }
    }
}

/// `heartbeat`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeartbeatConfig {
    pub enabled: bool,
    /// Minutes between heartbeats.
    pub interval: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: 30,
        }
    }
}

/// `state`: the database.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StateConfig {
    /// Empty: SQLite at `~/.picoclaw/state.db`. `sqlite:PATH` for another file;
    /// `postgres://user:password@host/database` for PostgreSQL (several gateway instances; the
    /// build needs the `postgres` feature). `PICOCLAW_STATE_URL` overrides it.
    pub url: String,
    /// A conversation's turn holds the lease `session:<key>` in the database, renewed every
    /// third of this while it runs: instances sharing the database never run two turns of one
    /// conversation at once, and when an instance dies its conversations wait at most this long
    /// for another (at least 1).
    pub session_lease_seconds: u32,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            session_lease_seconds: 30,
        }
    }
}

/// `gateway`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GatewayConfig {
    pub host: String,
    pub port: u16,
    /// Bearer token the HTTP API requires (`Authorization: Bearer <key>`).
    /// `PICOCLAW_GATEWAY_API_KEY` overrides it. Empty: the gateway uses the key in
    /// `~/.picoclaw/gateway.key`, created (mode 0600) at its first start.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_key: String,
    /// On SIGINT/SIGTERM, how long requests and deliveries in flight may still take.
    pub shutdown_grace_seconds: u32,
    /// Web origins (`https://app.example.com`) whose pages may call the gateway besides its
    /// own; a request with any other `Origin` header is refused.
    pub allowed_origins: Vec<String>,
    /// Host names (optionally `name:port`) the gateway answers to besides loopback names and
    /// its bind address, e.g. the public name a reverse proxy forwards (DNS rebinding defence).
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` without the API key (for a Prometheus scraper that cannot send one).
    pub metrics_public: bool,
    /// Serve the web dashboard at `/` (builds with the `web` feature; docs/dashboard.md).
    pub dashboard: bool,
    /// Turns running at once in this instance, whatever started them (API, dashboard,
    /// channels, cron, heartbeat); the others wait their turn in arrival order. A sub-agent
    /// runs within its parent's turn. At least 1.
    pub max_concurrent_turns: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 18790,
            api_key: String::new(),
            shutdown_grace_seconds: 10,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            metrics_public: false,
            dashboard: true,
            max_concurrent_turns: 16,
        }
    }
}

impl Config {
    /// The workspace folder: the default follows `PICOCLAW_HOME`; `~` is the user's home; a
    /// relative path is relative to picoclaw's home.
    /// The variables this config was loaded with ([`crate::load`] adds the `.env` files to the
    /// process environment); the process environment when it was built otherwise.
    pub fn env_vars(&self) -> std::collections::HashMap<String, String> {
        match &self.environment {
            Some(env) => env.vars().clone(),
            None => std::env::vars().collect(),
        }
    }

    /// See [`Config::env_vars`].
    pub fn environment(&self) -> std::sync::Arc<crate::Environment> {
        match &self.environment {
            Some(env) => env.clone(),
            None => std::sync::Arc::new(crate::Environment::process()),
        }
    }

    pub fn workspace_path(&self, paths: &Paths) -> PathBuf {
        let ws = self.agents.defaults.workspace.trim();
        if ws.is_empty() || ws == DEFAULT_WORKSPACE {
            return paths.default_workspace();
        }
        home_path(ws, paths)
    }
}

/// A path from the config: `~` and `~/...` under the user's home folder, absolute as written,
/// anything else relative to picoclaw's home (`~/.picoclaw`).
pub fn home_path(raw: &str, paths: &Paths) -> PathBuf {
    let raw = raw.trim();
    if raw == "~" {
        return dirs::home_dir().unwrap_or_else(|| paths.home().to_path_buf());
    }
    if let Some(rest) = raw.strip_prefix("~/")
        && let Some(home) = dirs::home_dir()
    {
        return home.join(rest);
    }
    let p = PathBuf::from(raw);
    if p.is_absolute() {
        p
    } else {
        paths.home().join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::state::ModelUsage;

    fn priced() -> Config {
        serde_json::from_value(serde_json::json!({"model_list": [
            {"model_name": "big", "model": "openai/big",
             "price": {"input": 2.0, "output": 8.0, "cached_input": 0.5}},
            {"model_name": "small", "model": "openai/small", "price": {"input": 1.0, "output": 1.0}},
            {"model_name": "free", "model": "openai/unpriced"}
        ]}))
        .unwrap()
    }

    #[test]
    fn a_rows_cost_needs_every_models_price_and_prices_reasoning_once() {
        let config = priced();
        // 1M prompt tokens of which 400k cached, 100k completion of which 60k reasoning:
        // 600k × 2 + 400k × 0.5 + 100k × 8 (per million) = 1.2 + 0.2 + 0.8.
        let big = ModelUsage::new("openai/big", 1_000_000, 100_000)
            .with_cached(400_000)
            .with_reasoning(60_000);
        let cost = config.cost_of(std::slice::from_ref(&big)).unwrap();
        assert!((cost - 2.2).abs() < 1e-9, "{cost}");
        // Two priced models add up; no cached price means the input price.
        let small = ModelUsage::new("openai/small", 500_000, 500_000).with_cached(100_000);
        let both = config.cost_of(&[big.clone(), small]).unwrap();
        assert!((both - 3.2).abs() < 1e-9, "{both}");
        // One model without a price: the row's cost is unknown, not the priced part.
        let unpriced = ModelUsage::new("openai/unpriced", 10, 10);
        assert_eq!(config.cost_of(&[big, unpriced]), None);
        // No calls cost nothing.
        assert_eq!(config.cost_of(&[]), Some(0.0));
    }
}
