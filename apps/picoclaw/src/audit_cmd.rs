//! `picoclaw audit [--since 2h|YYYY-MM-DD] [--session KEY] [--json]`: reads the audit trail
//! (`~/.picoclaw/logs/audit.<date>.jsonl`): tool calls with their outcome and masked arguments,
//! refused gateway keys, pairings, logins.

use crate::wiring;
use anyhow::Context;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// Only events since then: a time back from now (30m, 2h, 7d) or a day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only events of this conversation (its session key, e.g. telegram:123456).
    #[arg(long, value_name = "KEY")]
    session: Option<String>,
    /// Print the stored JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// The earliest time to show, from `--since`.
fn since(text: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if let Ok(day) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let back = humantime::parse_duration(text).with_context(|| {
        format!(
            "--since '{text}' is neither a time back from now (30m, 2h, 7d) nor a day (YYYY-MM-DD)"
        )
    })?;
    let back = chrono::Duration::from_std(back).context("--since is too far back")?;
    Ok(chrono::Utc::now() - back)
}

pub(crate) fn run(config: Option<PathBuf>, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let paths = match wiring::paths(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let dir = paths.logs_dir();
    let from = args.since.as_deref().map(since).transpose()?;
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit.") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // audit.YYYY-MM-DD.jsonl: the names sort by day.
    files.sort();
    if files.is_empty() {
        println!(
            "No audit trail yet in {} (it is written by `picoclaw agent` and the gateway).",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut shown = 0usize;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let fields = &event["fields"];
            let time = event["timestamp"].as_str().unwrap_or_default();
            if let Some(from) = from {
                let at = chrono::DateTime::parse_from_rfc3339(time)
                    .map(|t| t.with_timezone(&chrono::Utc));
                if at.is_ok_and(|t| t < from) {
                    continue;
                }
            }
            if let Some(session) = &args.session
                && fields["session"].as_str() != Some(session.as_str())
            {
                continue;
            }
            shown += 1;
            if args.json {
                println!("{line}");
                continue;
            }
            let s = |k: &str| fields[k].as_str().map(str::to_owned).unwrap_or_default();
            let what = match s("kind").as_str() {
                "tool_call" => format!(
                    "{:<8} {:<14} {:<24} {}{}",
                    s("outcome"),
                    s("tool"),
                    s("session"),
                    s("args"),
                    if s("detail").is_empty() {
                        String::new()
                    } else {
                        format!("  -> {}", s("detail"))
                    }
                ),
                "pairing" => format!(
                    "{:<8} pairing on {} by user {}",
                    s("outcome"),
                    s("channel"),
                    s("user")
                ),
                "api_key_refused" => {
                    format!("{:<8} gateway key refused on {}", s("outcome"), s("path"))
                }
                "login" => format!("{:<8} login to {}", s("outcome"), s("provider")),
                other => format!("{other} {fields}"),
            };
            let time = time.get(..19).unwrap_or(time).replace('T', " ");
            println!("{time}  {what}");
        }
    }
    if shown == 0 && !args.json {
        println!("No audit events match.");
    }
    Ok(ExitCode::SUCCESS)
}
