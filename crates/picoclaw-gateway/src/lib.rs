//! The picoclaw gateway: the always-on process. It assembles the agent from the config (shared
//! with the CLI's `agent` command, see [`assemble()`]), and serves the HTTP API on
//! `gateway.host:gateway.port`: `GET /health`, `GET /ready`, and an OpenAI-compatible
//! `/v1/chat/completions` and `/v1/models` (see [`http`]), always behind a key ([`key`]) and
//! the access rules of [`access`].
//!
//! `picoclaw gateway` and the `picoclaw-gateway` binary both call [`run_with`], from
//! picoclaw-cli. This library changes no process-wide state: the tokio runtime, the tracing
//! subscriber, the signal handlers and the TLS crypto provider are the application's.

#[cfg(feature = "server")]
pub mod access;
pub mod agents;
pub mod assemble;
#[cfg(feature = "server")]
pub mod dispatcher;
pub mod extend;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod key;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod scheduler;
#[cfg(feature = "pico")]
pub mod socket;
#[cfg(feature = "web")]
pub mod web;

pub use agents::{AgentSet, GatewayAgent, Routed, assemble_agents, route_input};
pub use assemble::{
    AssembleOptions, Assembled, AssemblyReport, McpServerStatus, SetupError, SkillsSettings,
    assemble, exec_config, instance_id, open_state, state_location,
};
#[cfg(feature = "server")]
pub use dispatcher::{
    Accepted, ChannelSink, Deliverer, DeliveryError, Dispatcher, DispatcherConfig, DispatcherInbox,
    OutboundSink,
};
pub use extend::{Extensions, ToolFactory, ToolSetup};

#[cfg(feature = "server")]
use picoclaw_config::{Config, Paths};
#[cfg(feature = "server")]
use std::future::Future;
#[cfg(feature = "server")]
use std::net::SocketAddr;
#[cfg(feature = "server")]
use std::sync::Arc;
use std::time::Duration;

/// Longest one API turn may take (tool loops included) before the request fails.
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the gateway until `shutdown` completes (an application passes its SIGINT/SIGTERM
/// handler; a test, a channel it closes). `on_listening` gets the bound address (the port may be
/// 0 in the config: any free one).
#[cfg(feature = "server")]
pub async fn run(
    config: Config,
    paths: Paths,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), SetupError> {
    run_with(config, paths, Extensions::new(), shutdown, on_listening).await
}

/// [`run`] with the providers, channels and tools of `extensions`.
#[cfg(feature = "server")]
pub async fn run_with(
    config: Config,
    paths: Paths,
    extensions: Extensions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), SetupError> {
    let config = config.with_registry(extensions.providers());
    #[cfg(feature = "web")]
    let shared_config = Arc::new(config.clone());
    // Never keyless: the configured key, else the key file (made now if this is the first start).
    let key = key::gateway_key(&config, &paths).map_err(|e| SetupError::Config(e.to_string()))?;
    match &key.source {
        key::KeySource::Config => {
            tracing::info!("the API key is gateway.api_key (or PICOCLAW_GATEWAY_API_KEY)")
        }
        key::KeySource::File { path, created } => tracing::info!(
            "{} the API key in {}; clients send it as `Authorization: Bearer <key>`; read it \
             with `{}`",
            if *created { "created" } else { "using" },
            path.display(),
            key::cat_command(path)
        ),
    }
    let grace = Duration::from_secs(u64::from(config.gateway.shutdown_grace_seconds));
    // Turns at once, whatever starts them; the rest wait in arrival order.
    let max_turns = config.gateway.max_concurrent_turns.max(1) as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(max_turns));
    // Whose the conversations' leases are: with several instances, this process's; on a
    // database of its own, the same name from one start to the next, so that what a gateway
    // that died was answering is taken up at once by the next start instead of after the
    // lease's time to live.
    let owner = if shared_state(&config) {
        assemble::instance_id().to_owned()
    } else {
        "the-only-gateway".to_owned()
    };
    let agents = assemble_agents(
        &config,
        &paths,
        AssembleOptions::streaming(true)
            .with_tools(extensions.tools().to_vec())
            .with_turn_permits(permits.clone())
            .with_session_leases(owner.clone()),
    )
    .await?;
    let store = agents.store().clone();
    let main = agents.default_agent();
    if config.tools.exec.enabled
        && let Err(why) = picoclaw_tools::landlock_abi()
    {
        if config.tools.exec.require_sandbox {
            tracing::warn!(reason = %why, "Landlock is not available: exec refuses every command (tools.exec.require_sandbox)");
        } else {
            tracing::warn!(reason = %why, "Landlock is not available: exec runs commands UNCONFINED (they can read picoclaw's config and keys); set tools.exec.require_sandbox to refuse them");
        }
    }
    let addr = format!("{}:{}", config.gateway.host.trim(), config.gateway.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| SetupError::Config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| SetupError::other("cannot read the listening address", e))?;

    // Channel messages: journal → per-session queues → turns → outbox → channels.
    let env_groq = config.environment().get("GROQ_API_KEY").map(str::to_owned);
    let transcriber = picoclaw_tools::SttConfig::from_section(config.stt.as_ref(), env_groq)
        .map(picoclaw_tools::Transcriber::new);
    // Files that come with messages are saved in the default agent's workspace (and copied
    // into another agent's when the message goes to it).
    let channels = Arc::new(channels_from_config(
        &config,
        extensions.channels(),
        &main.workspace,
        paths.home(),
    ));
    // One set of counters for this gateway, shared by the dispatcher and `/metrics`.
    let metrics = Arc::new(metrics::Metrics::default());
    let dispatcher = Dispatcher::with_agents(
        agents.clone(),
        store.clone(),
        DispatcherConfig::default()
            .max_concurrent_turns(max_turns)
            .metrics(metrics.clone())
            .transcriber(transcriber)
            .media_root(main.workspace.clone())
            .typing_to(Arc::new(ChannelSink(channels.clone()))),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mut deliverer = Deliverer::new(
        &dispatcher,
        Arc::new(ChannelSink(channels.clone())),
        assemble::instance_id(),
    );
    if shared_state(&config) {
        // Other instances share the outbox: take only what this one can send.
        deliverer = deliverer.only_channels(
            channels
                .states()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        );
    } else {
        // The only instance: what the previous process was sending when it stopped (sent or
        // not, unacknowledged) goes again now, rather than after its lease, so that chat's
        // later replies do not wait behind it.
        match store.release_outbound_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                replies = n,
                "sending again the replies being delivered when the gateway stopped"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
        }
    }
    let deliverer = tokio::spawn(deliverer.run(stop.clone()));
    match dispatcher.recover().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            messages = n,
            "answering messages received before the restart"
        ),
        Err(e) => tracing::warn!(error = %e, "could not read the inbound journal"),
    }
    let mut channel_tasks =
        channels.start(Arc::new(DispatcherInbox(dispatcher.clone())), stop.clone());
    // What another instance sharing the journal received and left unanswered when it stopped.
    let lease = Duration::from_secs(u64::from(config.state.session_lease_seconds.max(1)));
    channel_tasks.spawn(dispatcher.clone().sweep(lease, stop.clone()));
    channel_tasks.spawn(trim_when_idle(
        permits,
        max_turns,
        metrics.clone(),
        stop.clone(),
    ));
    let clock: Arc<dyn scheduler::Clock> = Arc::new(scheduler::SystemClock);
    let cron = scheduler::CronRunner::with_agents(
        agents.clone(),
        clock.clone(),
        dispatcher.outbox_ready.clone(),
    );
    channel_tasks.spawn(cron.run(stop.clone()));
    if config.heartbeat.enabled && config.heartbeat.interval > 0 {
        // Each agent's own heartbeat: its workspace's HEARTBEAT.md, its last chat.
        for a in agents.agents() {
            let heartbeat = scheduler::Heartbeat::new(
                a.agent.clone(),
                store.clone(),
                a.workspace.clone(),
                clock.clone(),
                dispatcher.outbox_ready.clone(),
            )
            .for_agent(&agents, &a.id)
            .owner(owner.clone());
            let every = Duration::from_secs(u64::from(config.heartbeat.interval) * 60);
            channel_tasks.spawn(heartbeat.run(every, stop.clone()));
        }
    }

    let access = access::Access::new(key.key, &config.gateway, local);
    let mut api = http::ApiState::with_agents(agents.clone(), access, DEFAULT_TURN_TIMEOUT);
    api.metrics = metrics;
    api.dispatcher = Some(dispatcher.clone());
    api.channels = Some(channels.clone());
    #[cfg(feature = "web")]
    if config.gateway.dashboard {
        api.dashboard = Some(Arc::new(web::Dashboard::new(
            shared_config,
            paths.clone(),
            extensions.logs().cloned(),
        )));
    }
    let state = Arc::new(api);
    tracing::info!(%local, model = %main.model_label, agents = agents.agents().len(), "gateway listening");
    on_listening(local);
    // On the signal: stop taking requests and let the ones in flight finish, but only for the
    // grace period; a turn still running then is cut (its client gets the connection closed).
    let signalled = tokio_util::sync::CancellationToken::new();
    // With the client's address: the dashboard limits wrong keys per address.
    let server = axum::serve(
        listener,
        http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signalled.clone().cancelled_owned());
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.map_err(|e| SetupError::other("the HTTP server failed", e))?,
        () = shutdown => {
            tracing::info!("stopping: no new requests; finishing the ones in flight");
            signalled.cancel();
            stop.cancel();
            match tokio::time::timeout(grace, &mut server).await {
                Ok(result) => result.map_err(|e| SetupError::other("the HTTP server failed", e))?,
                Err(_) => tracing::warn!("requests still running after the grace period were cut"),
            }
        }
    }

    // Stop intake, let running work finish within the grace period, flush the outbox.
    stop.cancel();
    let drain = async {
        while channel_tasks.join_next().await.is_some() {}
        let _ = deliverer.await;
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            "shutdown grace period over; unfinished messages are answered after the next start"
        );
    }
    tracing::info!("gateway stopped");
    store.close().await;
    Ok(())
}

/// Gives the memory freed after a burst of turns back to the system: glibc's allocator keeps
/// the heap it grew (fragmented across its arenas) until asked. Once no turn has run for a few
/// seconds after some did, `malloc_trim` returns the free pages (measured: after 200
/// concurrent conversations, 71 MiB of anonymous memory down to 8 MiB), and once more after
/// the state database's pool has closed the connections the burst opened (SQLite's pool drops
/// an idle connection within 40 s, and with it up to 2 MiB of page cache). Other C libraries
/// (musl) give memory back by themselves; there this does nothing.
#[cfg(feature = "server")]
pub(crate) async fn trim_when_idle(
    permits: Arc<tokio::sync::Semaphore>,
    max_turns: usize,
    metrics: Arc<metrics::Metrics>,
    stop: tokio_util::sync::CancellationToken,
) {
    const CHECK: Duration = Duration::from_secs(1);
    /// Seconds of quiet after which to trim: soon, and once the pool has closed idle connections.
    const TRIM_AT: [u32; 2] = [5, 45];
    let mut quiet_for = 0u32;
    let mut dirty = false;
    let mut turns = metrics.turns_total();
    loop {
        tokio::select! {
            () = tokio::time::sleep(CHECK) => {}
            () = stop.cancelled() => return,
        }
        let now = metrics.turns_total();
        if permits.available_permits() < max_turns || now != turns {
            turns = now;
            dirty = true;
            quiet_for = 0;
            continue;
        }
        if !dirty {
            continue;
        }
        quiet_for += 1;
        if TRIM_AT.contains(&quiet_for) {
            // It walks the whole heap under the allocator's locks: off the async workers.
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
        if quiet_for >= TRIM_AT[TRIM_AT.len() - 1] {
            dirty = false;
        }
    }
}

#[cfg(all(feature = "server", target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_memory() {
    // SAFETY: malloc_trim takes a plain integer, touches only the allocator's own free lists
    // under their locks, and is safe to call from any thread at any time.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "gave free memory back to the system"
    );
}

#[cfg(all(feature = "server", not(all(target_os = "linux", target_env = "gnu"))))]
fn release_free_memory() {}

/// Whether the state database is meant for several instances (PostgreSQL).
#[cfg(feature = "server")]
fn shared_state(config: &Config) -> bool {
    let url = config.state.url.trim();
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The channels the config enables and `registry` can make. An enabled channel this build
/// lacks, or one whose settings are wrong, is named in a warning, so nobody waits for messages
/// that cannot arrive.
/// Files that come in with messages are saved under `workspace/media/<channel>/`.
/// Users paired with a one-time code are kept under `home/channels/` (outside the workspace,
/// which the agent can write).
#[cfg(feature = "server")]
pub fn channels_from_config(
    config: &Config,
    registry: &picoclaw_channels::ChannelRegistry,
    workspace: &std::path::Path,
    home: &std::path::Path,
) -> picoclaw_channels::ChannelManager {
    let mut manager = picoclaw_channels::ChannelManager::new();
    for warning in unknown_channel_sections(config, registry) {
        tracing::warn!("{warning}");
    }
    for name in config.channels.enabled() {
        let settings = config.channels.section(name).unwrap_or_default();
        let setup = picoclaw_channels::ChannelSetup::new(name, settings, workspace, home)
            .with_gateway_port(config.gateway.port);
        let Some(made) = registry.build(&setup) else {
            let why = format!(
                "channels.{name} is enabled, but this build has no {name} channel; its messages \
                 are not received"
            );
            tracing::warn!(channel = %name, "{why}");
            manager.note_not_started(name, why);
            continue;
        };
        match (made, config.channels.session_scope(name)) {
            (Ok(channel), Ok(scope)) => manager.add_scoped(channel, scope),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(channel = %name, error = %e, "channel not started");
                manager.note_not_started(name, e.to_string());
            }
        }
    }
    manager
}

/// One warning for each `channels.<name>` section that no channel of this build (`registry`)
/// takes: a misspelling (with the closest name) or a channel of another build. Its settings are
/// ignored.
#[cfg(feature = "server")]
pub fn unknown_channel_sections(
    config: &Config,
    registry: &picoclaw_channels::ChannelRegistry,
) -> Vec<String> {
    let known: Vec<&str> = registry
        .names()
        .chain(picoclaw_channels::ChannelsSection::NAMES.iter().copied())
        .collect();
    config
        .channels
        .others
        .keys()
        .filter(|name| !registry.contains(name))
        .map(|name| match picoclaw_config::did_you_mean(&known, name) {
            Some(near) => format!(
                "channels.{name}: no channel of that name in this build (did you mean \
                 'channels.{near}'?); the section is ignored"
            ),
            None => format!(
                "channels.{name}: no channel of that name in this build; the section is ignored"
            ),
        })
        .collect()
}
