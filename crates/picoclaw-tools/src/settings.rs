//! The config sections these tools read, typed: `tools.web`, `tools.i2c`, `tools.spi`,
//! `tools.gpio` and `stt`. The config loader decodes them (naming a misspelt key); the tools build from them
//! ([`crate::WebSearchConfig::from_section`], [`crate::WebFetchConfig::from_section`],
//! [`crate::SttConfig::from_section`]). Keys of the original PicoClaw that picoclaw does not act
//! on are accepted as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `tools.web`: the search backends (the first enabled of brave, tavily, searxng, duckduckgo
/// answers) and `fetch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WebSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brave: Option<SearchBackendSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tavily: Option<SearchBackendSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searxng: Option<SearchBackendSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duckduckgo: Option<SearchBackendSection>,
    /// `web_fetch`'s settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchSection>,
    // The original PicoClaw's keys that picoclaw does not act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub glm_search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baidu_search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefer_native: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_limit_bytes: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_host_whitelist: Option<Value>,
}

impl WebSection {
    /// What applies without a `tools.web` section: DuckDuckGo (no key needed), as the
    /// original's default config has it.
    pub fn default_search() -> Self {
        Self {
            duckduckgo: Some(SearchBackendSection {
                enabled: true,
                max_results: Some(5),
                ..SearchBackendSection::default()
            }),
            ..Self::default()
        }
    }
}

/// `tools.web.<backend>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SearchBackendSection {
    pub enabled: bool,
    /// Brave and Tavily.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The original's list of keys (Brave, Tavily): the first is used when `api_key` is absent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<String>,
    /// Results per search (1 to 20, default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u64>,
    /// The service's base URL (a proxy, a test's fake; the original's `base_url` for Tavily).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// SearXNG: the instance (the original's `base_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The original's `base_url`: the instance for SearXNG, the API base elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
}

/// `tools.web.fetch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FetchSection {
    /// Let the model fetch private and internal addresses (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Characters returned by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
    /// An `http://` or `https://` proxy URL for every fetch (checked by
    /// [`crate::WebFetchConfig::from_section`], whose message shows how to write it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Value>,
}

/// A tool that is only switched on or off (`tools.i2c`, `tools.spi`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ToggleSection {
    pub enabled: bool,
}

/// `tools.gpio`: the `gpio` tool (`GpioTool`, in builds with the `hardware` feature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct GpioSection {
    /// Offer the tool (default false).
    pub enabled: bool,
    /// The GPIO character device (default `/dev/gpiochip0`). Unused by the `rppal` backend.
    pub chip: String,
    /// The line offsets on `chip` the model may use. Empty (the default) allows none.
    pub pins: Vec<u32>,
    /// `cdev` (default: the Linux GPIO character device, any board) or `rppal` (Raspberry Pi,
    /// BCM pin numbers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl Default for GpioSection {
    fn default() -> Self {
        Self {
            enabled: false,
            chip: "/dev/gpiochip0".to_owned(),
            pins: Vec::new(),
            backend: None,
        }
    }
}

/// `stt`: speech to text through an OpenAI-compatible `audio/transcriptions` endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct SttSection {
    /// Falls back to `GROQ_API_KEY`; without either, speech to text is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Default Groq's `https://api.groq.com/openai/v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// Default `whisper-large-v3-turbo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A trimmed, non-empty copy of a text setting.
pub(crate) fn trimmed(value: Option<&String>) -> Option<String> {
    value
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}
