//! `picoclaw usage`: tokens used per session, model or day, with an estimated cost where
//! `model_list[].price` is configured. A REASONING column shows when some row has reasoning
//! tokens; they are part of the completion tokens, so they are priced there and not again.

use crate::wiring::{self, SetupError};
use anyhow::Context;
use picoclaw_core::{GroupBy, ModelUsage, UsageStore};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum By {
    Session,
    Model,
    Day,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UsageArgs {
    /// Only usage on or after this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// How to group the totals.
    #[arg(long, value_enum, default_value = "model")]
    by: By,
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn run(config: Option<PathBuf>, args: UsageArgs) -> anyhow::Result<ExitCode> {
    if let Some(since) = &args.since
        && chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d").is_err()
    {
        eprintln!("error: --since '{since}' is not a date; write it as YYYY-MM-DD");
        return Ok(ExitCode::from(2));
    }
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let by = match args.by {
        By::Session => GroupBy::Session,
        By::Model => GroupBy::Model,
        By::Day => GroupBy::Day,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rows = runtime.block_on(async {
        let store = match wiring::open_state(&loaded.config, &paths, false).await {
            Ok(Some(store)) => store,
            Ok(None) => return Ok(None),
            Err(e) => return Err(e),
        };
        let rows = store.summary(args.since.as_deref(), by).await;
        store.close().await;
        rows.map(Some)
            .map_err(|e| SetupError::other("cannot read the usage ledger", e))
    });
    let rows = match rows {
        Ok(Some(rows)) => rows,
        Ok(None) => {
            eprintln!(
                "no usage recorded yet ({} does not exist)",
                paths.state_db().display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if rows.is_empty() {
        eprintln!(
            "no usage recorded{}",
            args.since
                .as_ref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = &loaded.config;
    // The rule the dashboard's Usage page uses too (Config::cost_of).
    let cost = |models: &[ModelUsage]| config.cost_of(models);
    let any_price = rows.iter().any(|r| cost(&r.models).is_some());
    let any_reasoning = rows.iter().any(|r| r.reasoning_tokens > 0);
    let head = match by {
        GroupBy::Session => "SESSION",
        GroupBy::Model => "MODEL",
        GroupBy::Day => "DAY",
    };
    let width = rows
        .iter()
        .map(|r| r.group.len())
        .max()
        .unwrap_or(0)
        .max(head.len())
        .max(5);
    let mut header = format!(
        "{head:<width$}  {:>6}  {:>12}  {:>12}  {:>12}",
        "CALLS", "PROMPT", "CACHED", "COMPLETION"
    );
    if any_reasoning {
        header.push_str(&format!("  {:>12}", "REASONING"));
    }
    if any_price {
        header.push_str(&format!("  {:>10}", "COST"));
    }
    println!("{header}");
    let (mut calls, mut p, mut k, mut c, mut reasoning) = (0, 0, 0, 0, 0);
    let (mut total_cost, mut all_priced) = (0.0, true);
    for r in &rows {
        let mut line = format!(
            "{:<width$}  {:>6}  {:>12}  {:>12}  {:>12}",
            r.group,
            r.calls,
            thousands(r.prompt_tokens),
            thousands(r.cached_tokens),
            thousands(r.completion_tokens)
        );
        if any_reasoning {
            line.push_str(&format!("  {:>12}", thousands(r.reasoning_tokens)));
        }
        if any_price {
            match cost(&r.models) {
                Some(v) => {
                    line.push_str(&format!("  {v:>10.4}"));
                    total_cost += v;
                }
                None => {
                    line.push_str(&format!("  {:>10}", "-"));
                    all_priced = false;
                }
            }
        }
        println!("{line}");
        calls += r.calls;
        p += r.prompt_tokens;
        k += r.cached_tokens;
        c += r.completion_tokens;
        reasoning += r.reasoning_tokens;
    }
    let mut total = format!(
        "{:<width$}  {:>6}  {:>12}  {:>12}  {:>12}",
        "TOTAL",
        calls,
        thousands(p),
        thousands(k),
        thousands(c)
    );
    if any_reasoning {
        total.push_str(&format!("  {:>12}", thousands(reasoning)));
    }
    if any_price {
        let mark = if all_priced { "" } else { "+" };
        total.push_str(&format!("  {total_cost:>9.4}{mark}"));
    }
    println!("{total}");
    if any_price && !all_priced {
        eprintln!("(+ some models have no model_list price; their cost is not included)");
    }
    Ok(ExitCode::SUCCESS)
}
