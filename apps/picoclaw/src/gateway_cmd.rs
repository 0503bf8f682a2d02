//! `picoclaw gateway`: runs the gateway in the foreground until Ctrl-C or SIGTERM (the same as
//! the `picoclaw-gateway` binary).

use crate::foreground::{Foreground, LogFormat, run_foreground};
use crate::wiring;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    /// Log lines as text or JSON.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log to stderr only, not to the daily files in ~/.picoclaw/logs.
    #[arg(long)]
    no_log_file: bool,
}

pub(crate) fn run(
    config: Option<PathBuf>,
    verbose: u8,
    extensions: picoclaw_gateway::Extensions,
    args: GatewayArgs,
) -> anyhow::Result<ExitCode> {
    // (Config warnings were printed while loading.)
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    Ok(run_foreground(
        loaded.config,
        paths,
        &[],
        Foreground {
            verbose,
            json_logs: matches!(args.log_format, LogFormat::Json),
            log_files: !args.no_log_file,
            extensions,
        },
    ))
}
