//! `picoclaw-gateway`: the always-on daemon, the same as `picoclaw gateway`. Its flags, logging,
//! runtime and signal handling are picoclaw-cli's [`picoclaw_cli::run_gateway`]; a build of
//! your own adds providers, channels or tools to the [`picoclaw_cli::Extensions`] it passes.

use std::process::ExitCode;

fn main() -> ExitCode {
    picoclaw_cli::run_gateway(picoclaw_cli::Extensions::new())
}
