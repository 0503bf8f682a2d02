//! Presets for the vendors: where each one lives, which wire format it speaks and which
//! environment variable holds its key. A model named `deepseek/deepseek-chat` in config picks the
//! `deepseek` preset.

/// The wire format a preset speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wire {
    /// OpenAI Chat Completions (`/chat/completions`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// Google Gemini `generateContent`.
    Gemini,
    /// OpenAI Responses (`/responses`): Codex models.
    Responses,
    /// Azure OpenAI (deployment URLs, `api-key` or Entra ID tokens).
    Azure,
}

/// One vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preset {
    /// The name used as the model prefix and as the `providers.<name>` config entry.
    pub name: &'static str,
    /// The default Chat Completions base URL (ending before `/chat/completions`).
    pub api_base: &'static str,
    /// The standard environment variable holding the API key, if the vendor has one.
    pub key_env: Option<&'static str>,
    /// Whether requests without a key are pointless (hosted vendors) or normal (local servers).
    pub needs_key: bool,
    /// An environment variable that overrides the base URL (`OPENAI_BASE_URL`).
    pub base_env: Option<&'static str>,
    pub wire: Wire,
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "anthropic",
        api_base: "https://api.anthropic.com",
        key_env: Some("ANTHROPIC_API_KEY"),
        needs_key: true,
        base_env: Some("ANTHROPIC_BASE_URL"),
        wire: Wire::Anthropic,
    },
    Preset {
        name: "openai",
        api_base: "https://api.openai.com/v1",
        key_env: Some("OPENAI_API_KEY"),
        needs_key: true,
        base_env: Some("OPENAI_BASE_URL"),
        wire: Wire::OpenAi,
    },
    Preset {
        name: "azure",
        // No public default: every Azure OpenAI resource has its own endpoint.
        api_base: "",
        key_env: Some("AZURE_OPENAI_API_KEY"),
        needs_key: false,
        base_env: Some("AZURE_OPENAI_ENDPOINT"),
        wire: Wire::Azure,
    },
    Preset {
        name: "codex",
        api_base: "https://api.openai.com/v1",
        key_env: Some("OPENAI_API_KEY"),
        needs_key: true,
        base_env: Some("OPENAI_BASE_URL"),
        wire: Wire::Responses,
    },
    Preset {
        name: "github-copilot",
        api_base: "https://api.githubcopilot.com",
        // Signed in with `picoclaw auth login --provider github-copilot`, not a key.
        key_env: None,
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "openrouter",
        api_base: "https://openrouter.ai/api/v1",
        key_env: Some("OPENROUTER_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "deepseek",
        api_base: "https://api.deepseek.com/v1",
        key_env: Some("DEEPSEEK_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "groq",
        api_base: "https://api.groq.com/openai/v1",
        key_env: Some("GROQ_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "zhipu",
        api_base: "https://open.bigmodel.cn/api/paas/v4",
        key_env: Some("ZHIPU_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "moonshot",
        api_base: "https://api.moonshot.cn/v1",
        key_env: Some("MOONSHOT_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "gemini",
        api_base: "https://generativelanguage.googleapis.com/v1beta/openai",
        key_env: Some("GEMINI_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "google",
        api_base: "https://generativelanguage.googleapis.com/v1beta",
        key_env: Some("GEMINI_API_KEY"),
        needs_key: true,
        base_env: None,
        wire: Wire::Gemini,
    },
    Preset {
        name: "vllm",
        api_base: "http://localhost:8000/v1",
        key_env: Some("VLLM_API_KEY"),
        needs_key: false,
        base_env: None,
        wire: Wire::OpenAi,
    },
    Preset {
        name: "ollama",
        api_base: "http://localhost:11434/v1",
        key_env: None,
        needs_key: false,
        base_env: None,
        wire: Wire::OpenAi,
    },
];

/// The preset called `name` (case-insensitive; `claude` is `anthropic`), if there is one.
pub fn preset(name: &str) -> Option<&'static Preset> {
    let name = if name.eq_ignore_ascii_case("claude") {
        "anthropic"
    } else {
        name
    };
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

/// Every preset, in a stable order (for error messages and docs).
pub fn presets() -> &'static [Preset] {
    PRESETS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_complete() {
        for name in [
            "azure",
            "anthropic",
            "openai",
            "codex",
            "openrouter",
            "deepseek",
            "groq",
            "zhipu",
            "moonshot",
            "gemini",
            "google",
            "vllm",
            "ollama",
        ] {
            let p = preset(name).unwrap();
            assert_eq!(p.name, name);
            assert!(
                !p.api_base.ends_with('/'),
                "{name}: base must not end with /"
            );
        }
        assert_eq!(preset("OpenAI").map(|p| p.name), Some("openai"));
        assert!(preset("nope").is_none());
        assert_eq!(preset("openai").unwrap().base_env, Some("OPENAI_BASE_URL"));
        assert!(!preset("ollama").unwrap().needs_key);
    }
}
