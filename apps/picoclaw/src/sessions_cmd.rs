//! `picoclaw sessions`: list, show, export and clear the stored conversations.

use crate::wiring::{self, SetupError};
use anyhow::Context;
use picoclaw_core::{SessionKey, SessionStore, transcript};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct SessionsArgs {
    #[command(subcommand)]
    command: SessionsCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Markdown,
}

#[derive(Debug, clap::Subcommand)]
enum SessionsCommand {
    /// Every session, most recently active first.
    List,
    /// Print a session as a readable transcript.
    Show {
        key: String,
        /// Only the last N messages.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// Write a session out as JSON or Markdown.
    Export {
        key: String,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Write to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Delete a session and its history.
    Clear {
        key: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) fn run(config: Option<PathBuf>, args: SessionsArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = match wiring::open_state(&loaded.config, &paths, false).await {
            Ok(Some(store)) => store,
            Ok(None) => {
                eprintln!(
                    "no sessions yet ({} does not exist)",
                    paths.state_db().display()
                );
                return Ok(match args.command {
                    SessionsCommand::List => ExitCode::SUCCESS,
                    _ => ExitCode::from(1),
                });
            }
            Err(SetupError::Config(msg)) => {
                eprintln!("error: {msg}");
                return Ok(ExitCode::from(2));
            }
            Err(e) => return Err(e.into()),
        };
        let code = match args.command {
            SessionsCommand::List => {
                let list = store.list().await?;
                if list.is_empty() {
                    eprintln!("no sessions yet");
                }
                for s in list {
                    println!(
                        "{:<40} {:>6} messages  last active {}",
                        s.key, s.message_count, s.updated_at
                    );
                }
                ExitCode::SUCCESS
            }
            SessionsCommand::Show { key, last } => {
                let session = store.load(&SessionKey::new(&key), last).await?;
                if session.messages.is_empty() && session.summary.is_none() {
                    eprintln!("no session '{key}' (see `picoclaw sessions list`)");
                    return Ok(ExitCode::from(1));
                }
                print!("{}", transcript::to_markdown(&session));
                ExitCode::SUCCESS
            }
            SessionsCommand::Export {
                key,
                format,
                output,
            } => {
                let session = store.load(&SessionKey::new(&key), None).await?;
                if session.messages.is_empty() && session.summary.is_none() {
                    eprintln!("no session '{key}' (see `picoclaw sessions list`)");
                    return Ok(ExitCode::from(1));
                }
                let text = match format {
                    Format::Json => {
                        let mut t = serde_json::to_string_pretty(&transcript::to_json(&session))?;
                        t.push('\n');
                        t
                    }
                    Format::Markdown => transcript::to_markdown(&session),
                };
                match output {
                    Some(file) => {
                        std::fs::write(&file, text)
                            .with_context(|| format!("cannot write {}", file.display()))?;
                        eprintln!(
                            "exported {} messages to {}",
                            session.messages.len(),
                            file.display()
                        );
                    }
                    None => std::io::stdout().write_all(text.as_bytes())?,
                }
                ExitCode::SUCCESS
            }
            SessionsCommand::Clear { key, yes } => {
                if !yes {
                    eprint!("delete session '{key}' and all its messages? [y/N] ");
                    std::io::stderr().flush().ok();
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer).ok();
                    if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
                        eprintln!("kept");
                        return Ok(ExitCode::from(1));
                    }
                }
                if store.delete(&SessionKey::new(&key)).await? {
                    eprintln!("deleted session '{key}'");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("no session '{key}'");
                    ExitCode::from(1)
                }
            }
        };
        store.close().await;
        Ok(code)
    })
}
