//! The gateway's logs: to stderr and to daily files in `~/.picoclaw/logs` (`gateway.log.YYYY-MM-DD`),
//! as text or JSON lines, at the level `RUST_LOG` gives, else `logging.level` from the config,
//! else `info`.

use std::path::PathBuf;
use tracing_subscriber::Layer as _;
#[cfg(feature = "gateway")]
use tracing_subscriber::layer::SubscriberExt;
#[cfg(feature = "gateway")]
use tracing_subscriber::util::SubscriberInitExt;

/// Why logging could not be set up. Each message names the folder or step and carries its cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LogError {
    /// The log folder cannot be made: check its permissions (or log to stderr only).
    #[error("cannot create the log folder {}: {error}", dir.display())]
    Folder { dir: PathBuf, error: std::io::Error },
    /// The audit log file cannot be opened in its folder.
    #[error("cannot open the audit log in {}: {error}", dir.display())]
    AuditLog {
        dir: PathBuf,
        error: tracing_appender::rolling::InitError,
    },
    /// A logger is already installed in this process.
    #[error("cannot install the logger: {0}")]
    #[cfg(feature = "gateway")]
    Install(tracing_subscriber::util::TryInitError),
}

/// How to log.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[cfg(feature = "gateway")]
pub(crate) struct LogOptions {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a full filter (`picoclaw_gateway=debug`).
    pub(crate) level: String,
    /// JSON lines instead of text.
    pub(crate) json: bool,
    /// The folder for daily log files; `None` logs to stderr only.
    pub(crate) dir: Option<PathBuf>,
    /// The folder of the audit trail (`audit.<date>.jsonl`); `None`: no audit file.
    pub(crate) audit_dir: Option<PathBuf>,
    /// Recent lines for the dashboard's Logs page (text, whatever `json` says).
    #[cfg(feature = "web")]
    pub(crate) ring: Option<std::sync::Arc<picoclaw_gateway::web::LogRing>>,
}

#[cfg(feature = "gateway")]
impl LogOptions {
    pub(crate) fn new(level: impl Into<String>, json: bool, dir: Option<PathBuf>) -> Self {
        Self {
            level: level.into(),
            json,
            dir,
            audit_dir: None,
            #[cfg(feature = "web")]
            ring: None,
        }
    }

    /// Writes the audit trail (events with the target `audit`) to `dir`.
    pub(crate) fn with_audit(mut self, dir: PathBuf) -> Self {
        self.audit_dir = Some(dir);
        self
    }
}

/// The layer that writes audit events (target `audit`: tool calls, refused gateway keys,
/// pairings, logins) as JSON lines to `dir/audit.<YYYY-MM-DD>.jsonl`, rotated daily, 90 days
/// kept. Nothing is dropped: when the writer falls behind, the event waits. Keep the guard.
pub(crate) fn audit_layer<S>(
    dir: &std::path::Path,
) -> Result<
    (
        impl tracing_subscriber::Layer<S> + Send + Sync + 'static,
        tracing_appender::non_blocking::WorkerGuard,
    ),
    LogError,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    std::fs::create_dir_all(dir).map_err(|error| LogError::Folder {
        dir: dir.to_path_buf(),
        error,
    })?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("audit")
        .filename_suffix("jsonl")
        .max_log_files(90)
        .build(dir)
        .map_err(|error| LogError::AuditLog {
            dir: dir.to_path_buf(),
            error,
        })?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(false)
        .finish(appender);
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(picoclaw_tools::audit::TARGET, tracing::Level::TRACE),
        );
    Ok((layer, guard))
}

/// The `logging.level` of the original PicoClaw's config section, when set.
#[cfg(feature = "gateway")]
pub(crate) fn level_from_config(config: &picoclaw_config::Config) -> Option<String> {
    config
        .logging
        .as_ref()
        .and_then(|l| l.get("level"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

/// Lines the file writer's queue holds before it drops lines.
const LOG_QUEUE_LINES: usize = 4096;

/// Installs the subscriber. Keep the returned guard alive: it flushes the file writer on drop.
#[cfg(feature = "gateway")]
pub(crate) fn init(
    opts: &LogOptions,
) -> Result<Vec<tracing_appender::non_blocking::WorkerGuard>, LogError> {
    let targets = crate::logging::level_filter(&opts.level);
    let filter = || targets.clone();
    let (file_writer, guard) = match &opts.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|error| LogError::Folder {
                dir: dir.clone(),
                error,
            })?;
            let appender = tracing_appender::rolling::daily(dir, "gateway.log");
            // tracing-appender's default queue holds 128 000 lines and is allocated and touched
            // up front: 4 MiB resident for nothing. 4 096 lines (about 160 KiB) absorb any burst
            // the gateway logs; past that, lines are dropped rather than blocking a turn.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .lossy(true)
                .finish(appender);
            (Some(writer), Some(guard))
        }
        None => (None, None),
    };
    let mut guards: Vec<_> = guard.into_iter().collect();
    let audit = match &opts.audit_dir {
        Some(dir) => {
            let (layer, guard) = audit_layer(dir)?;
            guards.push(guard);
            Some(layer)
        }
        None => None,
    };
    #[cfg(feature = "web")]
    let ring = opts.ring.clone().map(|ring| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(move || ring.writer())
            .with_filter(filter())
    });
    #[cfg(not(feature = "web"))]
    let ring: Option<tracing_subscriber::layer::Identity> = None;
    let registry = tracing_subscriber::registry().with(audit).with(ring);
    let result = if opts.json {
        let stderr = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter());
        let file = file_writer.map(|w| {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(w)
                .with_filter(filter())
        });
        registry.with(stderr).with(file).try_init()
    } else {
        let stderr = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(stderr_colour())
            .with_writer(std::io::stderr)
            .with_filter(filter());
        let file = file_writer.map(|w| {
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(w)
                .with_filter(filter())
        });
        registry.with(stderr).with(file).try_init()
    };
    result.map_err(LogError::Install)?;
    Ok(guards)
}

/// Whether log lines on stderr are coloured: only on a terminal, and not when `NO_COLOR` is set
/// to something (https://no-color.org).
pub(crate) fn stderr_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
