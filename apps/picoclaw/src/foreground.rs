//! The gateway in the foreground, as `picoclaw gateway` and the `picoclaw-gateway` binary run
//! it: what a process does and a library must not (the credentials re-exec, the tracing
//! subscriber, the tokio runtime, the SIGINT/SIGTERM handlers), then
//! [`picoclaw_gateway::run_with`] until a signal.

use crate::environ;
use crate::gateway_logging as logging;
use picoclaw_config::{Config, Paths};
use picoclaw_gateway::{Extensions, SetupError};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// How the gateway runs in the foreground.
#[derive(Clone, Debug, Default)]
pub(crate) struct Foreground {
    /// `-v` count: 0 takes logging.level from the config (else info), 1 debug, 2+ trace.
    pub(crate) verbose: u8,
    /// Log lines as JSON.
    pub(crate) json_logs: bool,
    /// Also log to daily files in ~/.picoclaw/logs.
    pub(crate) log_files: bool,
    /// The providers, channels and tools beyond the built-in ones.
    pub(crate) extensions: Extensions,
}

/// Sets up logging, logs `warnings` (from loading the config), and runs the gateway until
/// SIGINT or SIGTERM. Exit code 2 for configuration errors, 1 for other failures.
pub(crate) fn run_foreground(
    config: Config,
    paths: Paths,
    warnings: &[String],
    options: Foreground,
) -> ExitCode {
    // Where commands could run unconfined, the provider keys leave the environment block they
    // could read (a re-exec; the new image restores them first thing in main).
    if environ::exposed(&config) {
        environ::hide_credentials();
    }
    let level = match options.verbose {
        0 => logging::level_from_config(&config).unwrap_or_else(|| "info".to_owned()),
        1 => "debug".to_owned(),
        _ => "trace".to_owned(),
    };
    // The audit trail is written whether or not the ordinary logs go to files.
    let log = logging::LogOptions::new(
        level,
        options.json_logs,
        options.log_files.then(|| paths.logs_dir()),
    )
    .with_audit(paths.logs_dir());
    // The dashboard's Logs page shows the last lines.
    #[cfg(feature = "web")]
    let (log, options) = {
        let ring = std::sync::Arc::new(picoclaw_gateway::web::LogRing::default());
        let mut log = log;
        log.ring = Some(ring.clone());
        let mut options = options;
        options.extensions = options.extensions.with_logs(ring);
        (log, options)
    };
    let _log_guard = match logging::init(&log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for warning in warnings {
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
    #[cfg(feature = "web")]
    let dashboard = config.gateway.dashboard;
    #[cfg(not(feature = "web"))]
    let dashboard = false;
    let result = runtime.block_on(async {
        // Inside the runtime: the signal handlers are installed before anything listens.
        let shutdown = shutdown_signal();
        picoclaw_gateway::run_with(config, paths, options.extensions, shutdown, |addr| {
            eprintln!("picoclaw gateway listening on http://{addr} (Ctrl-C stops it)");
            if dashboard {
                eprintln!(
                    "dashboard: http://{addr}/ (log in with the gateway's key; docs/dashboard.md)"
                );
            }
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called (it
/// must be called inside the runtime), so a signal that arrives before the future is first
/// polled is not lost to the default action.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The `picoclaw-gateway` binary's command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "picoclaw-gateway",
    version,
    about = "The picoclaw gateway daemon"
)]
struct GatewayCli {
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// The whole `picoclaw-gateway` binary: its flags, the config, then the gateway in the
/// foreground until SIGINT or SIGTERM. Exit codes as `picoclaw gateway` (docs/cli.md).
pub fn run_gateway(extensions: Extensions) -> ExitCode {
    // Before any thread: variables hidden by a re-exec (see run_foreground) come back.
    environ::restore_hidden();
    crate::install_crypto_provider();
    let args = <GatewayCli as clap::Parser>::parse();
    let paths = match Paths::from_env() {
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
    run_foreground(
        loaded.config,
        paths,
        &loaded.warnings,
        Foreground {
            verbose: args.verbose,
            json_logs: matches!(args.log_format, LogFormat::Json),
            log_files: !args.no_log_file,
            extensions,
        },
    )
}
