//! `picoclaw`: the command-line agent. Parses arguments, wires config → provider → tools →
//! session store → agent, and prints. Logs go to stderr (or a file), answers alone to stdout.
//!
//! [`run`] is the whole program: the `picoclaw` binary is `picoclaw_cli::run(Extensions::new())`,
//! and a contributor's binary is the same with a provider, a channel or a tool added:
//!
//! ```no_run
//! use picoclaw_cli::Extensions;
//! # fn echo_upper(_: &picoclaw_providers::ProviderSpec)
//! #     -> Result<std::sync::Arc<dyn picoclaw_providers::LlmProvider>, picoclaw_providers::ProviderError> {
//! #     Err(picoclaw_providers::ProviderError::NotConfigured("see examples/provider-crate".into()))
//! # }
//! fn main() -> std::process::ExitCode {
//!     picoclaw_cli::run(Extensions::new().with_provider("echo-upper", echo_upper))
//! }
//! ```
//!
//! [`run_gateway`] is the `picoclaw-gateway` binary the same way. Both set up what belongs to a
//! process and not to a library: the TLS crypto provider, the tracing subscriber, the tokio
//! runtime, the SIGINT/SIGTERM handlers and, where commands could run unconfined, the re-exec
//! that keeps credentials out of the initial environment block.

mod agent_cmd;
mod agents_cmd;
mod audit_cmd;
mod auth_cmd;
mod cron_cmd;
mod environ;
#[cfg(feature = "gateway")]
mod foreground;
#[cfg(feature = "gateway")]
mod gateway_cmd;
mod gateway_logging;
mod logging;
#[cfg(feature = "mcp")]
mod mcp_cmd;
mod memory_cmd;
mod migrate_cmd;
mod onboard_cmd;
mod sessions_cmd;
mod skills_cmd;
mod status_cmd;
mod usage_cmd;
mod wiring;

#[cfg(feature = "gateway")]
pub use foreground::run_gateway;
pub use picoclaw_gateway::Extensions;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Parser)]
#[command(
    name = "picoclaw",
    version = VERSION,
    about = "An ultra-lightweight personal AI agent",
    propagate_version = true
)]
struct Cli {
    /// Config file to use (default: $PICOCLAW_CONFIG or ~/.picoclaw/config.json).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// More logging on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Write logs to this file instead of stderr.
    #[arg(long, global = true, value_name = "PATH")]
    log_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the config file and the workspace with starter files.
    Onboard(onboard_cmd::OnboardArgs),
    /// Read the audit trail: tool calls, refused gateway keys, pairings, logins.
    Audit(audit_cmd::AuditArgs),
    /// Talk to the agent: one message with -m, or an interactive session.
    Agent(agent_cmd::AgentArgs),
    /// Sign in to providers (OAuth, device code) or store keys; status; sign out.
    Auth(auth_cmd::AuthArgs),
    /// Scheduled jobs the gateway runs: list, add, remove, enable, disable.
    Cron(cron_cmd::CronArgs),
    /// Run the always-on gateway (HTTP API, OpenAI-compatible) in the foreground.
    #[cfg(feature = "gateway")]
    Gateway(gateway_cmd::GatewayArgs),
    /// List, show, export or clear stored conversations.
    Sessions(sessions_cmd::SessionsArgs),
    /// MCP servers: list (state, tool count), show, test, add, remove.
    #[cfg(feature = "mcp")]
    Mcp(mcp_cmd::McpArgs),
    /// Search long-term memory, add a fact to it, or rebuild its index.
    Memory(memory_cmd::MemoryArgs),
    /// Import an original PicoClaw home: sessions, scheduled jobs, workspace files.
    Migrate(migrate_cmd::MigrateArgs),
    /// Skills: list, show, install (folder, git, owner/repo/path, archive URL), remove, check.
    Skills(skills_cmd::SkillsArgs),
    /// Show the config, workspace, model and provider in use (keys masked).
    Status,
    /// Tokens used per model, session or day, with costs where prices are configured.
    Usage(usage_cmd::UsageArgs),
    /// The agents of agents.list and the bindings that route chats to them.
    Agents(agents_cmd::AgentsArgs),
    /// Print the version.
    Version,
}

/// Parses the command line and runs the command, with the providers, channels and tools of
/// `extensions` beside the built-in ones. Returns the process's exit code: 0 success, 1 failure,
/// 2 a configuration problem (docs/cli.md).
/// The process's default TLS crypto provider: ring. picoclaw's own clients never need it (they
/// get their provider from picoclaw-http); third-party ones that build a rustls configuration
/// from the process default do (tokio-tungstenite's `connect_async`, under Slack's Socket
/// Mode). An application that already installed one keeps it.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn run(extensions: Extensions) -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    if let Command::Version = cli.command {
        println!("picoclaw {VERSION}");
        return ExitCode::SUCCESS;
    }
    // Before any thread: variables hidden by a re-exec (agent, gateway) come back.
    environ::restore_hidden();
    install_crypto_provider();
    // The gateway sets up its own logs (daily files, JSON).
    #[cfg(feature = "gateway")]
    let own_logs = matches!(cli.command, Command::Gateway(_));
    #[cfg(not(feature = "gateway"))]
    let own_logs = false;
    // Commands that run tools or sign in leave an audit trail in ~/.picoclaw/logs.
    let audit_dir = matches!(cli.command, Command::Agent(_) | Command::Auth(_))
        .then(|| picoclaw_config::Paths::from_env().ok())
        .flatten()
        .map(|paths| paths.logs_dir());
    let _audit_guard = if own_logs {
        None
    } else {
        match logging::init(cli.verbose, cli.log_file.as_deref(), audit_dir.as_deref()) {
            Ok(guard) => guard,
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let result = match cli.command {
        Command::Onboard(args) => onboard_cmd::run(cli.config, args),
        Command::Agent(args) => agent_cmd::run(cli.config, &extensions, args),
        Command::Audit(args) => audit_cmd::run(cli.config, args),
        Command::Auth(args) => auth_cmd::run(cli.config, args),
        Command::Cron(args) => cron_cmd::run(cli.config, args),
        #[cfg(feature = "gateway")]
        Command::Gateway(args) => gateway_cmd::run(cli.config, cli.verbose, extensions, args),
        Command::Sessions(args) => sessions_cmd::run(cli.config, args),
        Command::Memory(args) => memory_cmd::run(cli.config, args),
        #[cfg(feature = "mcp")]
        Command::Mcp(args) => mcp_cmd::run(cli.config, args),
        Command::Migrate(args) => migrate_cmd::run(cli.config, args),
        Command::Skills(args) => skills_cmd::run(cli.config, args),
        Command::Status => status_cmd::run(cli.config, &extensions),
        Command::Usage(args) => usage_cmd::run(cli.config, args),
        Command::Agents(args) => agents_cmd::run(cli.config, args),
        Command::Version => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `picoclaw sessions list | head -1`: a closed stdout ends a command quietly with code 0, as
/// with other Unix tools, instead of a panic message (Rust ignores SIGPIPE, so `println!` to a
/// closed pipe panics). `agent` stops its turn on its own first (agent_cmd's printer).
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
