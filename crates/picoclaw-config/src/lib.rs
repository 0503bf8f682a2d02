//! The picoclaw config file: `~/.picoclaw/config.json` in the original PicoClaw's snake_case
//! layout (existing files load unchanged), `PICOCLAW_<SECTION>_<KEY>` environment overrides,
//! validation that names the key and the fix, model resolution, and the files `onboard` writes.

pub mod agents;
mod envfile;
mod error;
mod factory;
mod keys;
mod keyvault;
mod load;
mod model;
pub mod onboard;
mod paths;
mod resolve;
mod write;

pub use agents::{
    AgentEntry, AgentInfo, AgentModel, AgentTools, Binding, BindingMatch, MAIN_AGENT, PeerMatch,
    Route, RouteInput, SubagentsEntry,
};
pub use envfile::{Environment, VarOrigin};
pub use error::ConfigError;
pub use factory::{BuiltProvider, build_agent_provider, build_provider};
pub use keys::closest as did_you_mean;
pub use keyvault::KeyVaultSecrets;
pub use load::{
    Loaded, VENDOR_VARIABLES, load, load_from, load_value, load_with_env, load_without_key_vault,
    parse_config_json, read_config_json, validate,
};
pub use model::{
    AgentDefaults, AgentsConfig, AzureSection, Config, DEFAULT_WORKSPACE, ExecSection,
    GatewayConfig, HeartbeatConfig, ModelEntry, Price, ProviderConfig, RateLimits, StateConfig,
    ToolsConfig, home_path,
};
pub use paths::{Paths, shell_quote};
pub use resolve::{
    AzureSettings, CHATGPT_CODEX_BASE, DEFAULT_AZURE_API_VERSION, FALLBACK_OPENAI_MODEL,
    ResolvedModel, login_name,
};
pub use write::{default_config_json, merge_preserving, write_config_atomically};
