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
    let level = match args.verbose {
        0 => picoclaw_gateway::logging::level_from_config(&loaded.config)
            .unwrap_or_else(|| "info".to_owned()),
        1 => "debug".to_owned(),
        _ => "trace".to_owned(),
    };
    let log = picoclaw_gateway::logging::LogOptions::new(
        level,
        matches!(args.log_format, LogFormat::Json),
        (!args.no_log_file).then(|| paths.logs_dir()),
    );
    let _log_guard = match picoclaw_gateway::logging::init(&log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
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
    let result = runtime.block_on(async {
        // Inside the runtime: the signal handlers are installed before anything listens.
        let shutdown = picoclaw_gateway::shutdown_signal();
        picoclaw_gateway::run(loaded.config, paths, shutdown, |addr| {
            eprintln!("picoclaw gateway listening on http://{addr}")
        })
        .await
    });
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
