//! `picoclaw onboard`: writes the config file and the workspace starter files. Never overwrites a
//! user's file without asking; keeps every config key it does not understand.

use crate::wiring::{self, SetupError};
use anyhow::Context;
use picoclaw_config::onboard::WriteOutcome;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct OnboardArgs {
    /// Do not ask anything: keep existing files, fill in what is missing.
    #[arg(long)]
    non_interactive: bool,

    /// Overwrite the workspace starter files (asks first unless --non-interactive).
    #[arg(long)]
    force: bool,

    /// Model to put in the config (`provider/model`, e.g. openai/gpt-4o-mini, ollama/qwen3).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,

    /// Encrypt auth.json (logins and stored keys) at rest: with a key in the OS keychain when
    /// this build has one that works, else with a passphrase (PICOCLAW_AUTH_PASSPHRASE, or
    /// asked for), which every later command then needs.
    #[arg(long)]
    enc: bool,
}

/// Encrypts the credential store: the keychain first (nothing to type later), else a
/// passphrase.
fn encrypt_store(paths: &picoclaw_config::Paths, interactive: bool) -> anyhow::Result<()> {
    use picoclaw_auth::{AuthStore, KeySource, PASSPHRASE_ENV};
    let store = AuthStore::new(paths.auth_file());
    if cfg!(feature = "keychain") {
        match store.encrypt(KeySource::Keychain) {
            Ok(()) => {
                eprintln!(
                    "auth.json: encrypted; its key is in the OS keychain ({})",
                    store.path().display()
                );
                return Ok(());
            }
            Err(e) => eprintln!("the OS keychain cannot hold the key ({e}); using a passphrase"),
        }
    }
    let passphrase = match std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()) {
        Some(p) => p,
        None if interactive => {
            let first = ask(
                "Passphrase for auth.json (it is needed by every command)",
                "",
            )?;
            let again = ask("The same passphrase again", "")?;
            if first != again {
                anyhow::bail!("the passphrases differ; nothing was encrypted");
            }
            first
        }
        None => anyhow::bail!(
            "--enc needs a passphrase: set {PASSPHRASE_ENV} (and keep it set for later commands)"
        ),
    };
    if passphrase.chars().count() < 8 {
        anyhow::bail!("the passphrase is too short: use at least 8 characters");
    }
    store
        .clone()
        .with_passphrase(passphrase.clone())
        .encrypt(KeySource::Passphrase(picoclaw_api::Secret::new(passphrase)))?;
    eprintln!(
        "auth.json: encrypted with your passphrase ({}); set {PASSPHRASE_ENV} for picoclaw to \
         read it",
        store.path().display()
    );
    Ok(())
}

fn ask(question: &str, default: &str) -> anyhow::Result<String> {
    eprint!("{question} [{default}]: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_owned()
    } else {
        line.to_owned()
    })
}

pub(crate) fn run(config: Option<PathBuf>, args: OnboardArgs) -> anyhow::Result<ExitCode> {
    let paths = match wiring::paths(config) {
        Ok(p) => p,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let interactive = !args.non_interactive;
    let config_file = paths.config_file().to_path_buf();

    // The config: defaults merged under whatever the user already has.
    let existing: Option<serde_json::Value> = if config_file.exists() {
        let text = std::fs::read_to_string(&config_file)
            .with_context(|| format!("cannot read {}", config_file.display()))?;
        match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(err) => {
                eprintln!(
                    "error: {}:{}:{}: {err} — fix or move the file, then run onboard again \
                     (it was left untouched)",
                    config_file.display(),
                    err.line(),
                    err.column()
                );
                return Ok(ExitCode::from(2));
            }
        }
    } else {
        None
    };
    let mut ours = picoclaw_config::default_config_json();
    let model = match (&args.model, interactive && existing.is_none()) {
        (Some(m), _) => Some(m.clone()),
        (None, true) => Some(ask(
            "Model (provider/model, e.g. openai/gpt-4o-mini, deepseek/deepseek-chat, ollama/qwen3)",
            "openai/gpt-4o-mini",
        )?),
        (None, false) => None,
    };
    if let Some(model) = &model {
        ours["agents"]["defaults"]["model"] = serde_json::Value::String(model.clone());
    }
    let merged = match existing {
        Some(user) => {
            let mut merged = picoclaw_config::merge_preserving(user, ours);
            if let Some(model) = &args.model {
                merged["agents"]["defaults"]["model"] = serde_json::Value::String(model.clone());
            }
            merged
        }
        None => ours,
    };
    picoclaw_config::write_config_atomically(&config_file, &merged)
        .with_context(|| format!("cannot write {}", config_file.display()))?;
    eprintln!("config:    {}", config_file.display());

    // The workspace.
    let loaded = match wiring::load(&paths) {
        Ok(l) => l,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let workspace = loaded.config.workspace_path(&paths);
    let mut overwrite = args.force;
    if overwrite && interactive {
        let answer = ask(
            &format!(
                "Overwrite the starter files in {} with fresh ones?",
                workspace.display()
            ),
            "no",
        )?;
        overwrite = matches!(answer.to_lowercase().as_str(), "y" | "yes");
    }
    let outcomes = picoclaw_config::onboard::write_workspace_templates(&workspace, overwrite)
        .with_context(|| format!("cannot write the workspace {}", workspace.display()))?;
    eprintln!("workspace: {}", workspace.display());
    for (path, outcome) in outcomes {
        let what = match outcome {
            WriteOutcome::Created => "created",
            WriteOutcome::Kept => "kept (already there)",
            WriteOutcome::Overwritten => "overwritten",
            _ => "handled",
        };
        eprintln!("  {what}: {}", path.display());
    }
    if args.enc {
        encrypt_store(&paths, interactive)?;
    }
    eprintln!(
        "\nNext: put your API key in {} (providers.<name>.api_key), export it \
         (e.g. OPENAI_API_KEY), or sign in with `picoclaw auth login`, then run: picoclaw agent \
         -m \"Hello\"",
        config_file.display()
    );
    Ok(ExitCode::SUCCESS)
}
