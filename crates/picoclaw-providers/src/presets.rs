//! The built-in vendors: where each one lives, which wire format it speaks and which
//! environment variable holds its key. A model named `deepseek/deepseek-chat` in config picks the
//! `deepseek` entry. [`crate::ProviderRegistry::builtin`] registers them.

use crate::registry::ProviderInfo;

/// The built-in vendors, in a stable order (for error messages and docs).
pub fn builtin() -> Vec<ProviderInfo> {
    vec![
        ProviderInfo::new("anthropic", "anthropic")
            .with_api_base("https://api.anthropic.com")
            .with_required_key("ANTHROPIC_API_KEY")
            .with_base_env("ANTHROPIC_BASE_URL"),
        ProviderInfo::new("openai", "openai")
            .with_api_base("https://api.openai.com/v1")
            .with_required_key("OPENAI_API_KEY")
            .with_base_env("OPENAI_BASE_URL"),
        // No public default base: every Azure OpenAI resource has its own endpoint. Without a
        // key, Entra ID tokens (managed identity...) authenticate.
        ProviderInfo::new("azure", "azure")
            .with_optional_key("AZURE_OPENAI_API_KEY")
            .with_base_env("AZURE_OPENAI_ENDPOINT"),
        ProviderInfo::new("codex", "responses")
            .with_api_base("https://api.openai.com/v1")
            .with_required_key("OPENAI_API_KEY")
            .with_base_env("OPENAI_BASE_URL"),
        // Signed in with `picoclaw auth login --provider github-copilot`, not a key.
        ProviderInfo::new("github-copilot", "openai")
            .with_api_base("https://api.githubcopilot.com")
            .with_login_only()
            .with_header("Copilot-Integration-Id", "vscode-chat")
            .with_header(
                "Editor-Version",
                concat!("picoclaw/", env!("CARGO_PKG_VERSION")),
            ),
        ProviderInfo::new("openrouter", "openai")
            .with_api_base("https://openrouter.ai/api/v1")
            .with_required_key("OPENROUTER_API_KEY")
            .with_header("HTTP-Referer", "https://github.com/picoclaw/picoclaw")
            .with_header("X-Title", "picoclaw"),
        ProviderInfo::new("deepseek", "openai")
            .with_api_base("https://api.deepseek.com/v1")
            .with_required_key("DEEPSEEK_API_KEY"),
        ProviderInfo::new("groq", "openai")
            .with_api_base("https://api.groq.com/openai/v1")
            .with_required_key("GROQ_API_KEY"),
        ProviderInfo::new("zhipu", "openai")
            .with_api_base("https://open.bigmodel.cn/api/paas/v4")
            .with_required_key("ZHIPU_API_KEY"),
        ProviderInfo::new("moonshot", "openai")
            .with_api_base("https://api.moonshot.cn/v1")
            .with_required_key("MOONSHOT_API_KEY"),
        ProviderInfo::new("gemini", "openai")
            .with_api_base("https://generativelanguage.googleapis.com/v1beta/openai")
            .with_required_key("GEMINI_API_KEY"),
        ProviderInfo::new("google", "gemini")
            .with_api_base("https://generativelanguage.googleapis.com/v1beta")
            .with_required_key("GEMINI_API_KEY"),
        ProviderInfo::new("vllm", "openai")
            .with_api_base("http://localhost:8000/v1")
            .with_optional_key("VLLM_API_KEY"),
        ProviderInfo::new("ollama", "openai").with_api_base("http://localhost:11434/v1"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendor_is_there_once_with_a_clean_base() {
        let all = builtin();
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
            "github-copilot",
        ] {
            let found: Vec<_> = all.iter().filter(|p| p.name == name).collect();
            assert_eq!(found.len(), 1, "{name}");
            assert!(
                !found[0].api_base.ends_with('/'),
                "{name}: base must not end with /"
            );
        }
        let openai = all.iter().find(|p| p.name == "openai");
        assert_eq!(
            openai.and_then(|p| p.base_env.as_deref()),
            Some("OPENAI_BASE_URL")
        );
        assert!(all.iter().any(|p| p.name == "ollama" && !p.needs_key));
    }
}
