//! `picoclaw cron`: the scheduled jobs the gateway runs — list, add, remove, enable, disable.
//! The same jobs the agent manages with its `cron` tool; here the owner sees every chat's jobs
//! (the tool sees only those of the chat it is called from).

use crate::wiring;
use anyhow::Context;
use picoclaw_state::{CronStore, NewJob, now_ms};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct CronArgs {
    #[command(subcommand)]
    command: CronCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CronCommand {
    /// Every job with its schedule and next run.
    List,
    /// Schedule a job: once (--in, --at), repeatedly (--every), or on a calendar (--cron).
    Add {
        /// The reminder text, or (with --agent) the task for the agent.
        #[arg(long, short = 'm')]
        message: String,
        /// Once, after this long: 10m, 2h, 1h 30m.
        #[arg(long = "in", value_name = "DURATION", group = "when")]
        in_: Option<String>,
        /// Once, at this local time: "2026-12-01 09:00".
        #[arg(long, value_name = "TIME", group = "when")]
        at: Option<String>,
        /// Repeatedly, this often: 30m, 1d.
        #[arg(long, value_name = "DURATION", group = "when")]
        every: Option<String>,
        /// On a calendar: a cron expression such as "0 9 * * 1-5".
        #[arg(long, value_name = "EXPR", group = "when")]
        cron: Option<String>,
        /// The time zone of --cron (IANA name; default UTC).
        #[arg(long, requires = "cron")]
        tz: Option<String>,
        /// Give the message to the agent as a task instead of sending it as it is.
        #[arg(long)]
        agent: bool,
        /// Where the result goes: CHANNEL:CHAT (telegram:123456).
        #[arg(long, value_name = "CHANNEL:CHAT")]
        to: Option<String>,
        /// A name for listings (default: the start of the message).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a job.
    Remove { id: String },
    /// Turn a job back on (its next run is computed from now).
    Enable { id: String },
    /// Stop a job from running, keeping it.
    Disable { id: String },
}

/// The one `--in`/`--at`/`--every`/`--cron` given (clap allows at most one), as the shared
/// parser's kind and value.
fn when_of(
    in_: Option<String>,
    at: Option<String>,
    every: Option<String>,
    cron: Option<String>,
) -> (&'static str, String) {
    [("in", in_), ("at", at), ("every", every), ("cron", cron)]
        .into_iter()
        .find_map(|(kind, value)| value.map(|v| (kind, v)))
        .unwrap_or(("", String::new()))
}

pub(crate) fn run(config: Option<PathBuf>, args: CronArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let Some(store) = wiring::open_store(&loaded.config, &paths).await? else {
            return Ok(ExitCode::from(2));
        };
        let code = match args.command {
            CronCommand::List => {
                let jobs = store.list_jobs().await?;
                if jobs.is_empty() {
                    eprintln!("no scheduled jobs (add one with `picoclaw cron add`)");
                }
                for job in &jobs {
                    let to = match (&job.payload.channel, &job.payload.to) {
                        (Some(c), Some(t)) => format!(" → {c}:{t}"),
                        _ => String::new(),
                    };
                    // The chat whose cron tool made it (the only one that sees it there).
                    let made_in = match &job.payload.owner_chat {
                        Some(chat) if to != format!(" → {chat}") => format!(" (made in {chat})"),
                        _ => String::new(),
                    };
                    let last = job
                        .state
                        .last_status
                        .as_deref()
                        .map(|s| format!(", last run: {s}"))
                        .unwrap_or_default();
                    println!("{}{to}{made_in}{last}", picoclaw_tools::describe_job(job));
                }
                ExitCode::SUCCESS
            }
            CronCommand::Add {
                message,
                in_,
                at,
                every,
                cron,
                tz,
                agent,
                to,
                name,
            } => {
                let now = now_ms();
                let (kind, value) = when_of(in_, at, every, cron);
                let job = picoclaw_state::parse_schedule(kind, &value, tz.as_deref(), now)
                    .and_then(|schedule| {
                        NewJob {
                            message,
                            agent,
                            to,
                            name,
                        }
                        .build(schedule, now)
                    });
                match job {
                    Ok(job) => {
                        store.put_job(&job).await?;
                        println!("{}", job.id);
                        eprintln!("scheduled: {}", picoclaw_tools::describe_job(&job));
                        #[cfg(not(feature = "gateway"))]
                        eprintln!(
                            "note: this build has no gateway (the `gateway` feature): the job \
                             runs when a `picoclaw gateway` on this state database does"
                        );
                        ExitCode::SUCCESS
                    }
                    Err(msg) => {
                        eprintln!("error: {msg}");
                        ExitCode::from(2)
                    }
                }
            }
            CronCommand::Remove { id } => {
                if store.remove_job(&id).await? {
                    eprintln!("removed {id}");
                    ExitCode::SUCCESS
                } else {
                    eprintln!("no job {id} (see `picoclaw cron list`)");
                    ExitCode::from(1)
                }
            }
            CronCommand::Enable { id } => toggle(&*store, &id, true).await?,
            CronCommand::Disable { id } => toggle(&*store, &id, false).await?,
        };
        store.close().await;
        Ok(code)
    })
}

async fn toggle(store: &dyn CronStore, id: &str, on: bool) -> anyhow::Result<ExitCode> {
    match store.set_enabled(id, on, now_ms()).await {
        Ok(Some(job)) => {
            eprintln!("{}", picoclaw_tools::describe_job(&job));
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            eprintln!("no job {id} (see `picoclaw cron list`)");
            Ok(ExitCode::from(1))
        }
        Err(picoclaw_state::StateError::Invalid(msg)) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(e.into()),
    }
}
