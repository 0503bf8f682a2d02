//! `ConfigError`: what is wrong with the configuration, phrased as what to change. Messages never
//! contain a secret.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{0}")]
    Paths(String),

    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}:{line}:{column}: {message} — fix the JSON at that spot", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}: {key}: {message} — fix that value", path.display())]
    Type {
        path: PathBuf,
        key: String,
        message: String,
    },

    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },

    /// A Key Vault reference that is malformed or cannot be read (each names the reference).
    #[error("Key Vault: {0}")]
    KeyVault(String),

    #[error("{}: {message}", path.display())]
    EnvFile { path: PathBuf, message: String },

    #[error("invalid configuration in {}:\n  - {}", path.display(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },

    #[error(
        "no model provider configured — run `picoclaw onboard` and set a model and API key in {}, \
         or export OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server such as \
         Ollama or vLLM)",
        config.display()
    )]
    NoProvider { config: PathBuf },

    #[error("unknown provider '{name}' in model '{model}'{note}; known providers: {known}")]
    UnknownProvider {
        name: String,
        model: String,
        known: String,
        note: String,
    },

    #[error("{0}")]
    Model(String),

    #[error("no API key for {provider}: set {hint}")]
    MissingKey { provider: String, hint: String },

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Provider(#[from] picoclaw_providers::ProviderError),
}
