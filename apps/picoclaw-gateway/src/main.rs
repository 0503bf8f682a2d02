//! `picoclaw-gateway`: the always-on daemon, the same as `picoclaw gateway`. Flags, logging,
//! then `picoclaw_gateway::run` until SIGINT or SIGTERM.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "picoclaw-gateway",
    version,
    about = "The picoclaw gateway daemon"
)]
struct Args {
    /// Config file to use (default: $PICOCLAW_CONFIG or ~/.picoclaw/config.json).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// More logging (-v debug, -vv trace). RUST_LOG overrides; else logging.level, else info.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log to stderr only, not to the daily files in ~/.picoclaw/logs.
    #[arg(long)]
    no_log_file: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    // Before any thread: variables hidden by a re-exec (see run_foreground) come back.
    picoclaw_gateway::environ::restore_hidden();
    // The process's default TLS crypto provider, for third-party clients that build a rustls
    // configuration from it (Slack's Socket Mode WebSocket); picoclaw's own clients get theirs
    // from picoclaw-http and need none.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let paths = match picoclaw_config::Paths::from_env() {
        Ok(p) => match args.config {
            Some(file) => p.with_config_file(file),
            None => p,
        },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = match picoclaw_config::load(&paths) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    picoclaw_gateway::run_foreground(
        loaded.config,
        paths,
        &loaded.warnings,
        picoclaw_gateway::Foreground::new(
            args.verbose,
            matches!(args.log_format, LogFormat::Json),
            !args.no_log_file,
        ),
    )
}
