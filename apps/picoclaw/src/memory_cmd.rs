//! `picoclaw memory`: search long-term memory, add a fact, rebuild the index. The Markdown files
//! in the workspace's `memory/` folder stay the source of truth; the index lives in state.db.

use crate::wiring;
use anyhow::Context;
use picoclaw_core::MemoryStore;
use picoclaw_state::{Remembered, WorkspaceMemory};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct MemoryArgs {
    #[command(subcommand)]
    command: MemoryCommand,
}

#[derive(Debug, clap::Subcommand)]
enum MemoryCommand {
    /// Full-text search of memory/MEMORY.md and the daily notes; best matches first.
    Search {
        /// Words to look for (any of them; more matching words rank higher).
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Most notes to print.
        #[arg(long, short = 'n', default_value_t = 10)]
        limit: usize,
    },
    /// Append a durable fact to memory/MEMORY.md (skipped when it is already there).
    Add {
        #[arg(required = true, num_args = 1..)]
        fact: Vec<String>,
    },
    /// Bring the search index up to date with the files (it also happens before every search).
    Reindex {
        /// Drop the whole index first and index every file again.
        #[arg(long)]
        full: bool,
    },
}

pub(crate) fn run(config: Option<PathBuf>, args: MemoryArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let workspace = loaded.config.workspace_path(&paths);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(store) = wiring::open_store(&loaded.config, &paths).await? else {
            return Ok(ExitCode::from(2));
        };
        let memory = WorkspaceMemory::new(&workspace, store.clone());
        let code = match args.command {
            MemoryCommand::Search { query, limit } => {
                let query = query.join(" ");
                if picoclaw_state::query_terms(&query).is_empty() {
                    eprintln!("error: the query has no words to search for");
                    return Ok(ExitCode::from(2));
                }
                let hits = memory.search(&query, limit.max(1)).await?;
                if hits.is_empty() {
                    eprintln!(
                        "no notes match \"{query}\" (memory folder: {})",
                        workspace.join("memory").display()
                    );
                    ExitCode::from(1)
                } else {
                    for hit in hits {
                        println!("{}:{}: {}", hit.note.source, hit.note.line, hit.note.text);
                    }
                    ExitCode::SUCCESS
                }
            }
            MemoryCommand::Add { fact } => match memory.remember(&fact.join(" ")).await {
                Ok(Remembered::Added { line }) => {
                    eprintln!("added to memory/MEMORY.md line {line}");
                    ExitCode::SUCCESS
                }
                Ok(Remembered::AlreadyKnown { line, existing }) => {
                    eprintln!("already known (memory/MEMORY.md line {line}: {existing})");
                    ExitCode::SUCCESS
                }
                Err(picoclaw_state::StateError::Invalid(msg)) => {
                    eprintln!("error: {msg}");
                    ExitCode::from(2)
                }
                Err(e) => return Err(e.into()),
            },
            MemoryCommand::Reindex { full } => {
                if full {
                    for source in store.sources().await? {
                        store.remove_source(&source.source).await?;
                    }
                }
                let report = memory.sync().await?;
                let notes: u64 = store.sources().await?.iter().map(|s| s.notes).sum();
                eprintln!(
                    "{} file(s) indexed, {} unchanged, {} removed; {notes} notes searchable",
                    report.indexed, report.unchanged, report.removed
                );
                ExitCode::SUCCESS
            }
        };
        store.close().await;
        Ok(code)
    })
}
