//! The full picoclaw CLI (`onboard`, `agent`, `gateway`, ...) with the echo-upper provider
//! added: `"model": "echo-upper/x"` in config.json selects it.

use picoclaw_cli::Extensions;
use std::process::ExitCode;

fn main() -> ExitCode {
    picoclaw_cli::run(Extensions::new().with_provider("echo-upper", picoclaw_echo_upper::factory))
}
