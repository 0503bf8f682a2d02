//! `picoclaw auth`: sign in to a provider (OAuth in a browser or with a device code, or a stored
//! key), see who is signed in, sign out. Logins live in `~/.picoclaw/auth.json` (mode 0600) and
//! stand in for API keys that are not in the config.

use anyhow::Context;
use picoclaw_api::Secret;
use picoclaw_auth::{AuthStore, Credential, OauthProvider};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuthCommand {
    /// Sign in: openai (ChatGPT, for the Codex models), github-copilot, anthropic; or store an
    /// API key for any provider with --api-key.
    Login {
        #[arg(long, short)]
        provider: String,
        /// Use a device code (for machines without a browser): open the link anywhere, enter
        /// the code.
        #[arg(long)]
        device: bool,
        /// Store this API key (or token) instead of signing in; `-` reads it from stdin.
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
        /// Another OAuth server for the provider's endpoints (self-hosted or test servers).
        #[arg(
            long,
            value_name = "URL",
            env = "PICOCLAW_AUTH_ISSUER",
            hide_env_values = true
        )]
        issuer: Option<String>,
    },
    /// Who is signed in where, and until when (tokens masked).
    Status,
    /// Forget a provider's login or stored key.
    Logout {
        #[arg(long, short)]
        provider: String,
    },
}

pub(crate) fn run(config: Option<PathBuf>, args: AuthArgs) -> anyhow::Result<ExitCode> {
    let paths = match crate::wiring::paths(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let store = AuthStore::new(paths.auth_file());
    match args.command {
        AuthCommand::Status => status(&store),
        AuthCommand::Logout { provider } => {
            let name = picoclaw_config::login_name(provider.trim()).to_owned();
            if store.remove(&name)? {
                println!(
                    "signed out of {name} (removed from {})",
                    store.path().display()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("not signed in to {name}");
                Ok(ExitCode::from(1))
            }
        }
        AuthCommand::Login {
            provider,
            device,
            api_key,
            issuer,
        } => {
            let name = picoclaw_config::login_name(provider.trim()).to_owned();
            if let Some(key) = api_key {
                let key = if key == "-" {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the key from stdin")?;
                    line.trim().to_owned()
                } else {
                    key.trim().to_owned()
                };
                if key.is_empty() {
                    eprintln!("error: the key is empty");
                    return Ok(ExitCode::from(2));
                }
                store.put(
                    &name,
                    Credential::ApiKey {
                        key: Secret::new(key),
                    },
                )?;
                tracing::trace!(target: "audit", kind = "login", provider = %name, outcome = "api_key_stored", "login");
                println!(
                    "stored a key for {name} in {} (used when config.json has none)",
                    store.path().display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let Some(oauth) = OauthProvider::known(&name, issuer.as_deref()) else {
                eprintln!(
                    "error: {name} has no sign-in; store its API key with `picoclaw auth login \
                     --provider {name} --api-key KEY` (or put it in config.json)"
                );
                return Ok(ExitCode::from(2));
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let result = runtime.block_on(login(&oauth, device || oauth.authorize_url.is_empty()));
            match result {
                Ok(cred) => {
                    let who = cred
                        .account
                        .clone()
                        .map(|a| format!(" as {a}"))
                        .unwrap_or_default();
                    store.put(&name, Credential::Oauth(cred))?;
                    tracing::trace!(target: "audit", kind = "login", provider = %name, outcome = "signed_in", "login");
                    println!(
                        "signed in to {name}{who}; the login is kept in {}",
                        store.path().display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    tracing::trace!(target: "audit", kind = "login", provider = %name, outcome = "failed", "login");
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn login(
    oauth: &OauthProvider,
    device: bool,
) -> Result<picoclaw_auth::OauthCredential, picoclaw_auth::OauthError> {
    let cred = if device {
        let (prompt, code, interval) = picoclaw_auth::device_start(oauth).await?;
        eprintln!(
            "To sign in to {}, open {} and enter the code {} (valid for {} minutes).",
            oauth.name,
            prompt.verification_uri,
            prompt.user_code,
            prompt.expires_in.as_secs() / 60
        );
        if let Some(direct) = &prompt.verification_uri_complete {
            eprintln!("Or open {direct}");
        }
        eprintln!("Waiting for the approval...");
        picoclaw_auth::device_poll(oauth, &code, interval, prompt.expires_in, 1.0).await?
    } else {
        picoclaw_auth::browser_login(
            oauth,
            |url| {
                eprintln!(
                    "Open this link in a browser on this machine to sign in to {}:\n\n  {url}\n\n\
                     (No browser here? Run again with --device.) Waiting...",
                    oauth.name
                );
            },
            Duration::from_secs(300),
        )
        .await?
    };
    if oauth.exchange_url.is_some() {
        // GitHub Copilot: the GitHub login is exchanged for a Copilot token (and checks the
        // subscription).
        return picoclaw_auth::copilot_from_github(oauth, cred).await;
    }
    Ok(cred)
}

fn status(store: &AuthStore) -> anyhow::Result<ExitCode> {
    let entries = store.providers()?;
    if entries.is_empty() {
        println!(
            "not signed in anywhere ({}); sign in with `picoclaw auth login --provider openai`",
            store.path().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, cred) in entries {
        match cred {
            Credential::ApiKey { key } => {
                println!("{name:<16} api key    {}", key.masked());
            }
            Credential::Oauth(c) => {
                let who = c
                    .account
                    .clone()
                    .unwrap_or_else(|| "(account unknown)".into());
                let when = match c.expires_at {
                    None => "no expiry".to_owned(),
                    Some(at) if at > now => format!("expires in {}", human(at - now)),
                    Some(_) if c.refresh_token.is_some() => {
                        "expired; renewed at the next request".to_owned()
                    }
                    Some(_) => "expired; sign in again".to_owned(),
                };
                println!(
                    "{name:<16} signed in  {who}  {}  ({when})",
                    c.access_token.masked()
                );
            }
            _ => println!("{name:<16} (unknown kind of credential)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}
