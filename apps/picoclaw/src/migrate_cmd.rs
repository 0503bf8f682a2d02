//! `picoclaw migrate`: brings an original PicoClaw home over: its sessions (legacy `.json` and
//! `.jsonl` files), its scheduled jobs, and its workspace files (memory, bootstrap files,
//! skills) when the workspace is elsewhere. Nothing in the source is changed or deleted, nothing
//! already here is overwritten, and running it again imports nothing twice.

use crate::wiring;
use anyhow::Context;
use picoclaw_state::legacy::{import_cron_jobs, import_sessions};
use picoclaw_state::{MemoryStore, WorkspaceMemory};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// The original PicoClaw home (default: this home, ~/.picoclaw or $PICOCLAW_HOME).
    #[arg(long, value_name = "DIR")]
    from: Option<PathBuf>,
    /// Only report what would be imported.
    #[arg(long)]
    dry_run: bool,
}

/// Workspace files and folders copied when the source workspace is not ours.
const WORKSPACE_ITEMS: &[&str] = &[
    "AGENT.md",
    "AGENTS.md",
    "IDENTITY.md",
    "SOUL.md",
    "USER.md",
    "TOOLS.md",
    "HEARTBEAT.md",
    "memory",
    "skills",
];

/// The source workspace: `<from>/workspace`, else what its config.json names.
fn source_workspace(from: &Path) -> Option<PathBuf> {
    let direct = from.join("workspace");
    if direct.is_dir() {
        return Some(direct);
    }
    let text = std::fs::read_to_string(from.join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ws = value["agents"]["defaults"]["workspace"].as_str()?.trim();
    let path = match ws.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME").map(PathBuf::from)?.join(rest),
        None => PathBuf::from(ws),
    };
    path.is_dir().then_some(path)
}

/// Copies `src` into `dst` recursively, never overwriting and never following symlinks.
fn copy_missing(
    src: &Path,
    dst: &Path,
    dry_run: bool,
    copied: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        if !dry_run {
            std::fs::create_dir_all(dst)?;
        }
        let mut entries: Vec<_> = std::fs::read_dir(src)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            copy_missing(&entry.path(), &dst.join(entry.file_name()), dry_run, copied)?;
        }
    } else if meta.is_file() && !dst.exists() {
        if !dry_run {
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(src, dst)?;
        }
        copied.push(dst.to_owned());
    }
    Ok(())
}

pub(crate) fn run(config: Option<PathBuf>, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let from = args
        .from
        .clone()
        .unwrap_or_else(|| paths.home().to_path_buf());
    if !from.is_dir() {
        eprintln!(
            "error: {} is not a folder; pass the original PicoClaw home with --from",
            from.display()
        );
        return Ok(ExitCode::from(2));
    }
    let Some(source_ws) = source_workspace(&from) else {
        eprintln!(
            "error: no PicoClaw workspace found in {} (looked for workspace/ and the workspace \
             named by config.json)",
            from.display()
        );
        return Ok(ExitCode::from(2));
    };
    let workspace = loaded.config.workspace_path(&paths);
    let dry = if args.dry_run {
        " (dry run: nothing written)"
    } else {
        ""
    };
    eprintln!("migrating from {}{dry}", source_ws.display());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(store) = wiring::open_store(&loaded.config, &paths).await? else {
            return Ok(ExitCode::from(2));
        };

        // Sessions.
        let report = import_sessions(&*store, &source_ws.join("sessions"), args.dry_run).await?;
        let messages: usize = report.imported.iter().map(|(_, n)| n).sum();
        println!(
            "sessions: {} imported ({messages} messages), {} already here",
            report.imported.len(),
            report.already_present.len()
        );
        for (key, n) in &report.imported {
            println!("  {key:<40} {n:>6} messages");
        }
        for (file, why) in &report.unreadable {
            println!("  NOT imported: {}: {why}", file.display());
        }

        // Scheduled jobs.
        let jobs = source_ws.join("cron/jobs.json");
        match import_cron_jobs(&*store, &jobs, args.dry_run).await {
            Ok((0, 0)) => {}
            Ok((imported, present)) => {
                println!("cron jobs: {imported} imported, {present} already here");
            }
            Err(e) => println!("cron jobs NOT imported: {e}"),
        }

        // Workspace files, when the workspace moves.
        let same = std::fs::canonicalize(&source_ws).ok() == std::fs::canonicalize(&workspace).ok();
        if !same {
            let mut copied = Vec::new();
            for item in WORKSPACE_ITEMS {
                let src = source_ws.join(item);
                if src.exists() {
                    copy_missing(&src, &workspace.join(item), args.dry_run, &mut copied)
                        .with_context(|| format!("cannot copy {}", src.display()))?;
                }
            }
            println!(
                "workspace: {} file(s) copied into {} (files already there kept)",
                copied.len(),
                workspace.display()
            );
        }

        // The memory index.
        if !args.dry_run {
            let memory = WorkspaceMemory::new(&workspace, store.clone());
            let sync = memory.sync().await?;
            let notes: u64 = store.sources().await?.iter().map(|s| s.notes).sum();
            println!(
                "memory: {} file(s) indexed, {notes} notes searchable",
                sync.indexed + sync.unchanged
            );
        }
        store.close().await;

        if report.unreadable.is_empty() {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!(
                "error: {} session file(s) could not be imported (listed above); what was \
                 imported stays, and running migrate again after fixing them imports the rest",
                report.unreadable.len()
            );
            Ok(ExitCode::from(1))
        }
    })
}
