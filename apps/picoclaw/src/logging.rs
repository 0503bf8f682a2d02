//! Installs the tracing subscriber: stderr by default (warnings only), or a file; and, for the
//! commands that run tools or sign in, the audit trail in `~/.picoclaw/logs`.

use anyhow::Context;
use std::path::Path;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keep the returned guard alive until exit: it flushes the audit trail.
pub(crate) fn init(
    verbose: u8,
    log_file: Option<&Path>,
    audit_dir: Option<&Path>,
) -> anyhow::Result<Option<tracing_appender::non_blocking::WorkerGuard>> {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let (audit, guard) = match audit_dir {
        Some(dir) => {
            let (layer, guard) = crate::gateway_logging::audit_layer(dir)?;
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(audit);
    match log_file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create log folder {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_target(false)
                        .with_ansi(false)
                        .with_writer(std::sync::Mutex::new(file))
                        .with_filter(filter),
                )
                .try_init()
        }
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(crate::gateway_logging::stderr_colour())
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
