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
    /// More logging (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
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
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(picoclaw_gateway::run(
        loaded.config,
        paths,
        picoclaw_gateway::shutdown_signal(),
        |addr| eprintln!("picoclaw gateway listening on http://{addr}"),
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(picoclaw_gateway::SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
