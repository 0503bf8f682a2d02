//! The `picoclaw` command: the CLI with the providers, channels and tools this build carries.

fn main() -> std::process::ExitCode {
    picoclaw_cli::run(picoclaw_cli::Extensions::new())
}
