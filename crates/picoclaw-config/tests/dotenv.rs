//! `.env` files and the vendors' variable names: precedence, where each value came from, the
//! workspace and permission rules, and that nothing is put into the process environment.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_config::{Paths, VarOrigin, load_from};
use serde_json::json;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

struct Setup {
    home: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Setup {
    fn new(config: serde_json::Value) -> Self {
        let s = Self {
            home: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
        };
        std::fs::write(s.home.path().join("config.json"), config.to_string()).unwrap();
        s
    }
    fn paths(&self) -> Paths {
        Paths::new(self.home.path(), self.home.path().join("config.json"))
    }
    fn load(
        &self,
        env: &[(&str, &str)],
    ) -> Result<picoclaw_config::Loaded, picoclaw_config::ConfigError> {
        load_from(&self.paths(), &vars(env), Some(self.cwd.path()))
    }
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn write_env(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(".env");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn the_environment_wins_then_the_working_folder_then_the_home() {
    let s = Setup::new(json!({"agents": {"defaults": {"model": "openai/gpt-4o-mini"}}}));
    let cwd_env = write_env(
        s.cwd.path(),
        "OPENAI_API_KEY=sk-from-cwd\nTELEGRAM_BOT_TOKEN=\"123:from-cwd\"\n# a comment\n",
        0o600,
    );
    let home_env = write_env(
        s.home.path(),
        "OPENAI_API_KEY=sk-from-home\nDISCORD_BOT_TOKEN=from-home\nSLACK_BOT_TOKEN=xoxb-home\n",
        0o600,
    );
    let loaded = s.load(&[("SLACK_BOT_TOKEN", "xoxb-process")]).unwrap();
    let c = &loaded.config;
    let env = c.environment();
    assert_eq!(env.get("OPENAI_API_KEY"), Some("sk-from-cwd"));
    assert_eq!(
        env.origin("OPENAI_API_KEY"),
        Some(VarOrigin::File(cwd_env.clone()))
    );
    assert_eq!(env.origin("SLACK_BOT_TOKEN"), Some(VarOrigin::Process));
    assert_eq!(env.files(), &[cwd_env.clone(), home_env.clone()]);
    // The vendors' names fill the channel keys, and say where they came from.
    assert_eq!(
        c.channels.telegram.as_ref().unwrap().token.as_deref(),
        Some("123:from-cwd")
    );
    assert_eq!(
        c.channels.discord.as_ref().unwrap().token.as_deref(),
        Some("from-home")
    );
    assert_eq!(
        c.channels.slack.as_ref().unwrap().bot_token.as_deref(),
        Some("xoxb-process")
    );
    assert_eq!(
        c.origins["channels.discord.token"],
        format!(".env {} (DISCORD_BOT_TOKEN)", home_env.display())
    );
    assert_eq!(
        c.origins["channels.slack.bot_token"],
        "environment SLACK_BOT_TOKEN"
    );
    // The model's key comes from the working folder's .env, and status can say so.
    let resolved = c.resolve_model(&c.env_vars()).unwrap();
    assert_eq!(resolved.api_key.unwrap().expose(), "sk-from-cwd");
    assert_eq!(
        resolved.key_source.unwrap(),
        format!(".env {} (OPENAI_API_KEY)", cwd_env.display())
    );
    // Nothing was put into the process environment.
    assert!(std::env::var("DISCORD_BOT_TOKEN").is_err());
    assert!(std::env::var("TELEGRAM_BOT_TOKEN").is_err());
}

#[test]
fn a_key_in_the_file_wins_over_the_vendor_variable() {
    let s = Setup::new(json!({
        "channels": {"telegram": {"enabled": true, "token": "123:in-file"}},
        "providers": {"openai": {"api_key": "sk-in-file"}},
        "agents": {"defaults": {"model": "openai/gpt-4o-mini"}},
    }));
    let loaded = s
        .load(&[
            ("TELEGRAM_BOT_TOKEN", "123:from-env"),
            ("OPENAI_API_KEY", "sk-from-env"),
        ])
        .unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.channels.telegram.as_ref().unwrap().token.as_deref(),
        Some("123:in-file")
    );
    assert!(!c.origins.contains_key("channels.telegram.token"));
    let resolved = c.resolve_model(&c.env_vars()).unwrap();
    assert_eq!(resolved.api_key.unwrap().expose(), "sk-in-file");
    assert!(
        resolved
            .key_source
            .unwrap()
            .ends_with("(providers.openai.api_key)")
    );
    // PICOCLAW_* variables still override the file, and say so.
    let loaded = s
        .load(&[("PICOCLAW_CHANNELS_TELEGRAM_TOKEN", "123:picoclaw")])
        .unwrap();
    assert_eq!(
        loaded.config.origins["channels.telegram.token"],
        "environment PICOCLAW_CHANNELS_TELEGRAM_TOKEN"
    );
}

#[test]
fn every_name_of_the_architectures_environment_table_is_read() {
    // Anthropic's key.
    let s = Setup::new(json!({"agents": {"defaults": {"model": "anthropic/claude-sonnet-4"}}}));
    let c = s.load(&[("ANTHROPIC_API_KEY", "sk-ant")]).unwrap().config;
    let r = c.resolve_model(&c.env_vars()).unwrap();
    assert_eq!(r.api_key.unwrap().expose(), "sk-ant");
    assert_eq!(r.key_source.unwrap(), "environment ANTHROPIC_API_KEY");
    // Slack's two tokens and signing secret, Discord's and Telegram's tokens.
    let s = Setup::new(json!({}));
    let c = s
        .load(&[
            ("SLACK_APP_TOKEN", "xapp-1"),
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_SIGNING_SECRET", "sig"),
            ("DISCORD_BOT_TOKEN", "disc"),
            ("TELEGRAM_BOT_TOKEN", "1:tg"),
        ])
        .unwrap()
        .config;
    let slack = c.channels.slack.as_ref().unwrap();
    assert_eq!(slack.app_token.as_deref(), Some("xapp-1"));
    assert_eq!(slack.bot_token.as_deref(), Some("xoxb-1"));
    assert_eq!(slack.signing_secret.as_deref(), Some("sig"));
    // A variable fills a key, it does not switch a channel on.
    assert!(!c.channels.enabled().contains(&"slack"));
    // Azure: the endpoint and deployment, and the user-assigned identity by the
    // architecture's name; the prefixed name wins over it, the config over both.
    let azure_env = [
        ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt-5.2-chat"),
        ("MANAGED_IDENTITY_CLIENT_ID", "mi-plain"),
    ];
    let c = s.load(&azure_env).unwrap().config;
    let r = c.resolve_model(&c.env_vars()).unwrap();
    let az = r.azure.unwrap();
    assert_eq!(az.deployment, "gpt-5.2-chat");
    assert_eq!(az.managed_identity_client_id.as_deref(), Some("mi-plain"));
    let mut both = azure_env.to_vec();
    both.push(("AZURE_OPENAI_MANAGED_IDENTITY_CLIENT_ID", "mi-prefixed"));
    let c = s.load(&both).unwrap().config;
    let r = c.resolve_model(&c.env_vars()).unwrap();
    assert_eq!(
        r.azure.unwrap().managed_identity_client_id.as_deref(),
        Some("mi-prefixed")
    );
    let s = Setup::new(json!({"azure": {"managed_identity_client_id": "mi-config"}}));
    let c = s.load(&both).unwrap().config;
    let r = c.resolve_model(&c.env_vars()).unwrap();
    assert_eq!(
        r.azure.unwrap().managed_identity_client_id.as_deref(),
        Some("mi-config")
    );
    // Key Vault's endpoint.
    let c = s
        .load(&[("AZURE_KEYVAULT_ENDPOINT", "https://kv.private.example")])
        .unwrap()
        .config;
    assert_eq!(c.azure.keyvault_endpoint, "https://kv.private.example");
}

#[test]
fn a_dotenv_inside_the_workspace_is_never_read() {
    let home = tempfile::tempdir().unwrap();
    let workspace = home.path().join("workspace");
    std::fs::create_dir_all(workspace.join("project")).unwrap();
    std::fs::write(
        home.path().join("config.json"),
        json!({"agents": {"defaults": {"workspace": workspace}}}).to_string(),
    )
    .unwrap();
    // The model wrote this one; the owner then started picoclaw from that folder.
    write_env(
        &workspace.join("project"),
        "OPENAI_BASE_URL=https://attacker.example\nOPENAI_API_KEY=sk-planted\n",
        0o600,
    );
    let paths = Paths::new(home.path(), home.path().join("config.json"));
    let loaded = load_from(&paths, &vars(&[]), Some(&workspace.join("project"))).unwrap();
    assert!(loaded.config.environment().get("OPENAI_BASE_URL").is_none());
    assert!(loaded.config.environment().files().is_empty());
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("inside the workspace")),
        "{:?}",
        loaded.warnings
    );
    // Not even when the planted file tries to move the workspace away from itself.
    write_env(
        &workspace.join("project"),
        "PICOCLAW_AGENTS_DEFAULTS_WORKSPACE=/elsewhere\nOPENAI_API_KEY=sk-planted\n",
        0o600,
    );
    let loaded = load_from(&paths, &vars(&[]), Some(&workspace.join("project"))).unwrap();
    assert!(loaded.config.environment().get("OPENAI_API_KEY").is_none());
    assert_ne!(loaded.config.agents.defaults.workspace, "/elsewhere");
}

#[test]
fn a_readable_dotenv_with_secrets_is_refused_with_the_chmod() {
    let s = Setup::new(json!({}));
    let path = write_env(s.cwd.path(), "OPENAI_API_KEY=sk-1\n", 0o644);
    let err = s.load(&[]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    assert!(err.contains("OPENAI_API_KEY"), "{err}");
    assert!(!err.contains("sk-1"), "the secret is never printed: {err}");
    // Private, it is read; without a secret, others may read it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(s.load(&[]).is_ok());
    write_env(
        s.cwd.path(),
        "AZURE_OPENAI_ENDPOINT=https://r.example\n",
        0o644,
    );
    let c = s.load(&[]).unwrap().config;
    assert_eq!(
        c.environment().get("AZURE_OPENAI_ENDPOINT"),
        Some("https://r.example")
    );
}

#[test]
fn a_malformed_dotenv_names_the_file_and_line_never_the_value() {
    let s = Setup::new(json!({}));
    let path = write_env(
        s.home.path(),
        "GOOD=1\nOPENAI_API_KEY sk-secret-value\n",
        0o600,
    );
    let err = s.load(&[]).unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("sk-secret-value"), "{err}");
}

#[test]
fn key_vault_references_are_checked_and_only_in_secret_keys() {
    // Malformed: named by its key, with the forms that work.
    let s = Setup::new(json!({"providers": {"openai": {"api_key": "keyvault://no/"}}}));
    let err = s.load(&[]).unwrap_err().to_string();
    assert!(err.contains("providers.openai.api_key"), "{err}");
    assert!(err.contains("keyvault://"), "{err}");
    // Without any credential to ask Key Vault with: one error naming the reference and what
    // was tried, before anything else happens.
    let s = Setup::new(json!({
        "azure": {"credential": "environment"},
        "channels": {"telegram": {"token": "keyvault://picoclaw-kv/telegram-token"}},
    }));
    let err = s
        .load(&[("AZURE_KEYVAULT_ENDPOINT", "http://127.0.0.1:9")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keyvault://picoclaw-kv/telegram-token"),
        "{err}"
    );
    assert!(err.contains("AZURE_TENANT_ID"), "{err}");
    // A value that is not a secret is never taken for a reference.
    let s = Setup::new(json!({"agents": {"defaults": {"model": "keyvault://a/b"}}}));
    let c = s.load(&[]).unwrap().config;
    assert_eq!(c.agents.defaults.model, "keyvault://a/b");
    assert!(c.key_vault.is_none());
    // An unknown credential is a configuration error naming the accepted ones.
    let s = Setup::new(json!({"azure": {"credential": "browser"}}));
    let err = s.load(&[]).unwrap_err().to_string();
    assert!(err.contains("azure.credential"), "{err}");
    assert!(err.contains("workload_identity"), "{err}");
}
