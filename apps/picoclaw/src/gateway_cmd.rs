//! `picoclaw gateway`: runs the gateway in the foreground until Ctrl-C or SIGTERM (the same as
//! the `picoclaw-gateway` binary).

use crate::wiring;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
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

pub fn run(config: Option<PathBuf>, verbose: u8, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let level = match verbose {
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
    let _log_guard = picoclaw_gateway::logging::init(&log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        // Inside the runtime: the signal handlers are installed before anything listens.
        let shutdown = picoclaw_gateway::shutdown_signal();
        picoclaw_gateway::run(loaded.config, paths, shutdown, |addr| {
            eprintln!("picoclaw gateway listening on http://{addr} (Ctrl-C stops it)")
        })
        .await
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(picoclaw_gateway::SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(picoclaw_gateway::SetupError::Other(e)) => Err(e),
    }
}
