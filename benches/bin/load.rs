//! The gateway under load: concurrent API conversations and Telegram chats through one or two
//! real `picoclaw-gateway` processes, a scripted model and the Telegram fake on 127.0.0.1
//! (`picoclaw_testkit::load`). Prints a table: answers lost or doubled, histories, per-turn
//! overhead, memory, descriptors, threads. Exits 1 when anything was lost, doubled or out of
//! order, 2 when the run could not start. docs/PERFORMANCE.md has the commands.
//!
//! Run with: cargo run --release -p picoclaw-benches --bin load -- --gateway target/release/picoclaw-gateway

use clap::Parser;
use picoclaw_testkit::load::{LoadOptions, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "load",
    about = "Drives concurrent conversations through picoclaw-gateway"
)]
struct Args {
    /// The picoclaw-gateway binary.
    #[arg(long)]
    gateway: PathBuf,
    /// Gateway processes: 1, or 2 sharing the state (API conversations alternate turn by turn).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    instances: u8,
    /// state.url of the gateways (postgres://...); SQLite when absent.
    #[arg(long)]
    state_url: Option<String>,
    /// Concurrent API conversations per burst.
    #[arg(long, default_value_t = 1000)]
    conversations: usize,
    /// Turns per conversation and per Telegram chat.
    #[arg(long, default_value_t = 3)]
    turns: usize,
    /// Concurrent Telegram chats per burst (through the fake Bot API, on instance 1).
    #[arg(long, default_value_t = 200)]
    chats: usize,
    /// Bursts, each with fresh conversations and followed by the idle wait.
    #[arg(long, default_value_t = 1)]
    bursts: usize,
    /// The scripted model's delay per answer, in milliseconds.
    #[arg(long, default_value_t = 200)]
    model_delay_ms: u64,
    /// The longest the run may take, in seconds; what is unanswered then counts as lost.
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Seconds to wait after each burst before memory is read again.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// NAME=VALUE added to the gateways' environment (repeatable), e.g. MALLOC_ARENA_MAX=2.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A command the gateway runs under, split on spaces (`heaptrack --record-only -o FILE`).
    #[arg(long)]
    wrapper: Option<String>,
    /// RUST_LOG of the gateways.
    #[arg(long, default_value = "warn")]
    log: String,
    /// Show the gateways' log lines and progress on stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut env = Vec::new();
    for pair in &args.env {
        let Some((name, value)) = pair.split_once('=') else {
            eprintln!("error: --env takes NAME=VALUE, not {pair:?}");
            return ExitCode::from(2);
        };
        env.push((name.to_owned(), value.to_owned()));
    }
    let options = LoadOptions {
        instances: usize::from(args.instances),
        state_url: args.state_url,
        conversations: args.conversations,
        turns: args.turns,
        chats: args.chats,
        bursts: args.bursts.max(1),
        model_delay: Duration::from_millis(args.model_delay_ms),
        duration: Duration::from_secs(args.duration),
        idle: Duration::from_secs(args.idle),
        env,
        wrapper: args
            .wrapper
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        log: args.log,
        verbose: args.verbose,
        ..LoadOptions::new(args.gateway)
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: no tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(options)) {
        Ok(report) => {
            print!("{report}");
            if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
