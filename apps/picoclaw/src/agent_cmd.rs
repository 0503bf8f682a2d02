//! `picoclaw agent`: one-shot (`-m`) or interactive conversation with the agent.

use anyhow::Context;
use picoclaw_core::{
    Agent, AgentError, AgentEvent, BackgroundResult, CancellationToken, ChatMessage, SessionKey,
    TurnOptions,
};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct AgentArgs {
    /// Send one message, print the answer and exit.
    #[arg(short, long, value_name = "TEXT")]
    message: Option<String>,

    /// Conversation to continue (default `cli:default`).
    #[arg(short, long, value_name = "KEY", default_value = "cli:default")]
    session: String,

    /// Talk to this agent of `agents.list` (default: the default agent). Its conversations
    /// are its own (`agent:<id>:<session>`).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,

    /// Wait for the whole answer instead of streaming it.
    #[arg(long)]
    no_stream: bool,

    /// Model to use for this run (overrides agents.defaults.model).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
}

pub(crate) fn run(
    config: Option<PathBuf>,
    extensions: &picoclaw_gateway::Extensions,
    args: AgentArgs,
) -> anyhow::Result<ExitCode> {
    // Where commands could run unconfined, the provider keys leave the environment block they
    // could read (a re-exec; problems with the config are reported by the build below).
    if crate::environ::has_credentials()
        && let Ok(paths) = crate::wiring::paths(config.clone())
        && let Ok(loaded) = picoclaw_config::load_without_key_vault(&paths)
        && crate::environ::exposed(&loaded.config)
    {
        crate::environ::hide_credentials();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Results of tasks the agent spawns in the background come back here to be printed.
        let (results_tx, results_rx) = tokio::sync::mpsc::unbounded_channel();
        let options =
            picoclaw_gateway::AssembleOptions::streaming(!args.no_stream).local_results(results_tx);
        let setup = match crate::wiring::build_for(
            config,
            extensions,
            args.model.as_deref(),
            args.agent.as_deref(),
            options,
        )
        .await
        {
            Ok(setup) => setup,
            Err(crate::wiring::SetupError::Config(msg)) => {
                eprintln!("error: {msg}");
                return Ok(ExitCode::from(2));
            }
            Err(err) => return Err(err.into()),
        };
        let session = SessionKey::new(setup.session_key(&args.session));
        let store = setup.store.clone();
        let result = match args.message {
            Some(message) => one_shot(&setup.agent, &session, message, results_rx).await,
            None => interactive(setup, session, results_rx).await,
        };
        // Every turn is already committed; this lets the database finish cleanly.
        store.close().await;
        result
    })
}

/// Prints answer text to stdout as it arrives and tool progress to stderr.
/// When stdout is closed (`picoclaw agent -m ... | head -1`), the answer's reader is gone: the
/// turn is cancelled (no more tokens spent on an answer nobody reads) and the command ends
/// quietly, like a Unix tool whose pipe closed.
struct Printer {
    cancel: CancellationToken,
}

/// Set once a write to stdout found the pipe closed.
static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Printer {
    fn write(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        if let Err(e) = written
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            STDOUT_GONE.store(true, std::sync::atomic::Ordering::Relaxed);
            self.cancel.cancel();
        }
    }
}

impl picoclaw_core::EventSink for Printer {
    fn event(&self, event: AgentEvent) {
        match event {
            AgentEvent::TextDelta(text) => self.write(&text),
            AgentEvent::ToolStarted {
                name, arguments, ..
            } => {
                eprintln!("[tool] {name} {}", shorten(&arguments, 160));
            }
            AgentEvent::ToolFinished {
                name,
                is_error: true,
                preview,
                ..
            } => {
                eprintln!("[tool] {name} failed: {preview}");
            }
            AgentEvent::Compacted { summarized, kept } => {
                eprintln!(
                    "[history compacted: {summarized} older messages summarised, {kept} kept]"
                );
            }
            _ => {}
        }
    }
}

fn shorten(text: &str, max: usize) -> String {
    let flat = text.replace('\n', " ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut s: String = flat.chars().take(max).collect();
        s.push('…');
        s
    }
}

async fn run_turn(agent: &Agent, session: &SessionKey, text: String) -> Result<(), AgentError> {
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let printer = Printer {
        cancel: cancel.clone(),
    };
    let result = agent
        .turn(
            session,
            ChatMessage::user(text),
            TurnOptions::new()
                .cancel_with(cancel)
                .chat("cli", session.as_str()),
            &printer,
        )
        .await;
    watcher.abort();
    if let Ok(outcome) = &result {
        // A closed stdout is not an error here (see Printer).
        let _ = writeln!(std::io::stdout());
        if let Some(model) = &outcome.served_by {
            eprintln!("(answered by the fallback model {model}: the configured model failed)");
        }
    }
    result.map(|_| ())
}

fn print_background(result: BackgroundResult) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n[background] {}", result.text.trim_end());
    let _ = out.flush();
}

/// Before a one-shot run exits: waits for the tasks the agent spawned and prints their results
/// (Ctrl-C stops waiting; the tasks then end with the program).
async fn wait_for_background(agent: &Agent, results: &mut Results) {
    let pending = agent.background_pending();
    if pending == 0 && results.is_empty() {
        return;
    }
    // (A task may already have finished during the turn: then there is only its result.)
    if pending > 0 {
        eprintln!(
            "[waiting for {pending} background task{} to finish; Ctrl-C stops waiting]",
            if pending == 1 { "" } else { "s" }
        );
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        // A task counts as pending until just after it hands its result over, so poll both.
        while let Ok(result) = results.try_recv() {
            print_background(result);
        }
        if agent.background_pending() == 0 {
            while let Ok(result) = results.try_recv() {
                print_background(result);
            }
            return;
        }
        tokio::select! {
            Some(result) = results.recv() => print_background(result),
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = &mut ctrl_c => {
                eprintln!("stopped waiting; unfinished background tasks were dropped");
                return;
            }
        }
    }
}

type Results = tokio::sync::mpsc::UnboundedReceiver<BackgroundResult>;

async fn one_shot(
    agent: &Agent,
    session: &SessionKey,
    message: String,
    mut results: Results,
) -> anyhow::Result<ExitCode> {
    match run_turn(agent, session, message).await {
        Ok(()) => {
            wait_for_background(agent, &mut results).await;
            Ok(ExitCode::SUCCESS)
        }
        Err(AgentError::Cancelled) if STDOUT_GONE.load(std::sync::atomic::Ordering::Relaxed) => {
            Ok(ExitCode::SUCCESS)
        }
        Err(AgentError::Cancelled) => {
            eprintln!("\ncancelled; the conversation so far is saved");
            Ok(ExitCode::from(130))
        }
        Err(err) => {
            eprintln!("\nerror: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

const HELP: &str = "Commands: /new (start a fresh session), /session (show the session key), \
/help, /exit (or Ctrl-D). Ctrl-C cancels a running answer.";

async fn interactive(
    setup: crate::wiring::Setup,
    mut session: SessionKey,
    mut results: Results,
) -> anyhow::Result<ExitCode> {
    use rustyline::ExternalPrinter;
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().context("cannot open the line editor")?;
    // Background results are printed above the prompt while the editor waits for input.
    let mut printer = editor.create_external_printer().ok();
    let history = setup.paths.home().join("cli_history");
    let _ = editor.load_history(&history);
    eprintln!(
        "picoclaw {} · model {} · session {} · /help for commands",
        env!("CARGO_PKG_VERSION"),
        setup.model_label,
        session
    );
    loop {
        // The editor blocks its thread, so it reads on a blocking thread while this one keeps
        // the agent's background tasks going.
        let read = tokio::task::spawn_blocking(move || {
            let line = editor.readline("you> ");
            (editor, line)
        });
        tokio::pin!(read);
        let line = loop {
            tokio::select! {
                joined = &mut read => {
                    let (back, line) = joined.context("the line editor stopped")?;
                    editor = back;
                    break line;
                }
                Some(result) = results.recv() => {
                    let text = format!("[background] {}", result.text.trim_end());
                    match printer.as_mut() {
                        Some(p) => {
                            if p.print(text.clone()).is_err() {
                                eprintln!("{text}");
                            }
                        }
                        None => eprintln!("{text}"),
                    }
                }
            }
        };
        match line {
            Ok(line) => {
                let line = line.trim().to_owned();
                if line.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line.as_str());
                match line.as_str() {
                    "/exit" | "/quit" => break,
                    "/help" => eprintln!("{HELP}"),
                    "/session" => eprintln!("session: {session}"),
                    "/new" => {
                        session = SessionKey::new(format!("cli:{}", chrono_like_stamp()));
                        eprintln!(
                            "started a fresh session: {session} (the previous one is kept; \
                             continue it with -s)"
                        );
                    }
                    _ => match run_turn(&setup.agent, &session, line).await {
                        Ok(()) => {}
                        Err(AgentError::Cancelled) => {
                            eprintln!("\n(cancelled; what was said so far is saved)");
                        }
                        Err(err) => eprintln!("\nerror: {err}"),
                    },
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(err) => return Err(err).context("cannot read input"),
        }
    }
    wait_for_background(&setup.agent, &mut results).await;
    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.save_history(&history);
    Ok(ExitCode::SUCCESS)
}

fn chrono_like_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    secs.to_string()
}
