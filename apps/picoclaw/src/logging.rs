//! Installs the tracing subscriber: stderr by default (warnings only), or a file; and, for the
//! commands that run tools or sign in, the audit trail in `~/.picoclaw/logs`.

use anyhow::Context;
use std::path::Path;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level filter: `RUST_LOG` when set, else `default`. `RUST_LOG` takes a level and/or
/// `target=level` pairs, comma-separated (`warn`, `picoclaw_core=debug,info`); a target is a
/// module path prefix. (tracing-subscriber's `Targets`: span and field filters are not
/// supported; `EnvFilter`'s regex engine cost the binary about 0.3 MiB.) A `RUST_LOG` that does
/// not parse, or asks for a span or field filter, is named on stderr and `default` is used.
pub(crate) fn level_filter(default: &str) -> Targets {
    if let Ok(spec) = std::env::var("RUST_LOG")
        && !spec.trim().is_empty()
    {
        match parse_filter(&spec) {
            Ok(filter) => return filter,
            Err(why) => {
                eprintln!("warning: RUST_LOG={spec:?} is not a log filter ({why}); using {default}")
            }
        }
    }
    parse_filter(default).unwrap_or_else(|_| {
        Targets::new().with_default(tracing_subscriber::filter::LevelFilter::INFO)
    })
}

/// `Targets` from a `RUST_LOG`-style string. Empty directives are skipped (a trailing comma);
/// span and field filters (`[span]`, `{field}`) are refused rather than taken for a target
/// name that matches nothing.
fn parse_filter(spec: &str) -> Result<Targets, String> {
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if let Some(d) = directives
        .iter()
        .find(|d| d.contains(['[', ']', '{', '}']) || d.contains(char::is_whitespace))
    {
        return Err(format!(
            "'{d}': span and field filters are not supported, only levels and target=level"
        ));
    }
    directives
        .join(",")
        .parse::<Targets>()
        .map_err(|e| e.to_string())
}

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
    let filter = level_filter(default);
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
