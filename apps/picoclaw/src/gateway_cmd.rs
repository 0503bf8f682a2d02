//! `picoclaw gateway`: runs the gateway in the foreground until Ctrl-C or SIGTERM (the same as
//! the `picoclaw-gateway` binary).

use crate::wiring::{self, SetupError};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let paths = match wiring::paths(config) {
        Ok(p) => p,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(SetupError::Other(e)) => return Err(e),
    };
    let loaded = match wiring::load(&paths) {
        Ok(l) => l,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(SetupError::Other(e)) => return Err(e),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(picoclaw_gateway::run(
        loaded.config,
        paths,
        picoclaw_gateway::shutdown_signal(),
        |addr| eprintln!("picoclaw gateway listening on http://{addr} (Ctrl-C stops it)"),
    ));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(picoclaw_gateway::SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(picoclaw_gateway::SetupError::Other(e)) => Err(e),
    }
}
