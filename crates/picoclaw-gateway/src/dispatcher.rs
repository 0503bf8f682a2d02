//! The dispatcher: channel messages in, agent turns, answers out — in order per session,
//! sessions in parallel, and crash-safe.
//!
//! - [`Dispatcher::accept`] writes the message to the inbound journal before it returns (the
//!   channel may acknowledge it to the platform then); a redelivered message is recognised and
//!   dropped.
//! - Each session has its own bounded queue and worker; messages of one session are processed one
//!   at a time in arrival order, different sessions in parallel up to `max_concurrent_turns`. A
//!   full session queue makes `accept` wait (backpressure), other sessions are unaffected.
//! - When a turn ends, its answer goes into the outbox and the message is marked processed in one
//!   transaction; the [`Deliverer`] hands outbox messages to the channels and retries failures.
//!   After a crash, [`Dispatcher::recover`] queues again what was journaled but not processed.
//! - `/new` (start over), `/stop` (cancel the running turn) and `/help` work from any channel.

use picoclaw_api::{InboundMessage, OutboundMessage};
use picoclaw_core::{Agent, ChatMessage, SessionKey, TurnOptions};
use picoclaw_state::{StateBackend, StateError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Tunables of the dispatcher.
#[derive(Clone)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// Turns running at once, across sessions.
    pub max_concurrent_turns: usize,
    /// Messages waiting per session before `accept` waits.
    pub session_queue: usize,
    /// A session's worker stops after this long without messages (idle sessions cost nothing).
    pub idle_timeout: Duration,
    /// Turns voice notes into text before the turn (stt config); without one the agent is told
    /// where the recording was saved.
    pub transcriber: Option<picoclaw_tools::Transcriber>,
    /// Where "typing…" goes while a turn runs (every [`TYPING_EVERY`]), and the answer's text as
    /// it is written ([`OutboundSink::stream_text`]); none: neither.
    pub typing: Option<Arc<dyn OutboundSink>>,
    /// The workspace: attachments the channels saved in it are read beneath its handle (a link
    /// planted there by a command cannot turn a photo into the config file).
    pub media_root: Option<std::path::PathBuf>,
    /// Where turns and deliveries are counted (shared with the HTTP API's `/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// How often the typing indicator is renewed while a turn runs (Telegram shows it for 5 s,
/// Discord for 10 s).
pub const TYPING_EVERY: Duration = Duration::from_secs(4);

impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherConfig")
            .field("max_concurrent_turns", &self.max_concurrent_turns)
            .field("session_queue", &self.session_queue)
            .field("idle_timeout", &self.idle_timeout)
            .field("transcriber", &self.transcriber.is_some())
            .field("typing", &self.typing.is_some())
            .finish()
    }
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_concurrent_turns: 8,
            session_queue: 64,
            idle_timeout: Duration::from_secs(60),
            transcriber: None,
            typing: None,
            media_root: None,
            metrics: Arc::default(),
        }
    }
}

impl DispatcherConfig {
    /// Counts turns and deliveries in `metrics`.
    pub fn metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Shows "typing…" through `sink` while turns run.
    pub fn typing_to(mut self, sink: Arc<dyn OutboundSink>) -> Self {
        self.typing = Some(sink);
        self
    }

    /// Reads saved attachments beneath `root` (the workspace).
    pub fn media_root(mut self, root: impl Into<std::path::PathBuf>) -> Self {
        let root = root.into();
        // Channels report where they saved files by the real path.
        self.media_root = Some(root.canonicalize().unwrap_or(root));
        self
    }

    pub fn transcriber(mut self, transcriber: Option<picoclaw_tools::Transcriber>) -> Self {
        self.transcriber = transcriber;
        self
    }

    pub fn max_concurrent_turns(mut self, n: usize) -> Self {
        self.max_concurrent_turns = n;
        self
    }

    pub fn session_queue(mut self, n: usize) -> Self {
        self.session_queue = n;
        self
    }

    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
}

/// What [`Dispatcher::accept`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Journaled (with this id) and queued.
    Queued(i64),
    /// A redelivery of a message already journaled: dropped.
    Duplicate,
    /// A command handled at once (`/stop`).
    Handled,
}

const HELP: &str = "Commands: /new starts a new conversation (the old one is cleared), /stop \
cancels the answer in progress, /help shows this. Anything else goes to the agent.";

type Job = (i64, InboundMessage);

/// The largest photo shown to the model (vendors take about 5 MB per image).
const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;

/// Routes inbound messages to per-session workers.
pub struct Dispatcher {
    agents: Arc<crate::AgentSet>,
    store: Arc<dyn StateBackend>,
    config: DispatcherConfig,
    queues: Mutex<HashMap<SessionKey, mpsc::Sender<Job>>>,
    running: Mutex<HashMap<SessionKey, CancellationToken>>,
    /// Journal ids queued or being processed here (a sweep does not queue them twice).
    queued: Mutex<std::collections::HashSet<i64>>,
    permits: Arc<Semaphore>,
    /// Woken when the outbox has something new.
    pub outbox_ready: Arc<Notify>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The platform's id of a message, for recognising redeliveries: the channel's `message_id`
/// metadata, else the message's own content and time.
fn external_id(msg: &InboundMessage) -> String {
    match msg.metadata.get("message_id") {
        Some(id) => format!("{}:{id}", msg.chat_id),
        None => format!(
            "{}:{}:{}",
            msg.chat_id,
            msg.timestamp.timestamp_nanos_opt().unwrap_or_default(),
            msg.content.len()
        ),
    }
}

impl Dispatcher {
    /// A dispatcher for one agent.
    pub fn new(agent: Agent, store: Arc<dyn StateBackend>, config: DispatcherConfig) -> Arc<Self> {
        let agents = Arc::new(crate::AgentSet::one(agent, store.clone()));
        Self::with_agents(agents, store, config)
    }

    /// A dispatcher routing each message to one of `agents` (see [`crate::AgentSet::route`]).
    pub fn with_agents(
        agents: Arc<crate::AgentSet>,
        store: Arc<dyn StateBackend>,
        config: DispatcherConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            agents,
            store,
            permits: Arc::new(Semaphore::new(config.max_concurrent_turns.max(1))),
            config,
            queues: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            queued: Mutex::new(std::collections::HashSet::new()),
            outbox_ready: Arc::new(Notify::new()),
        })
    }

    /// Sessions with a live worker (for metrics and tests).
    pub fn active_sessions(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Journals `msg` and queues it behind its session (waiting while the session's queue is
    /// full). Returns once the message is durable.
    pub async fn accept(self: &Arc<Self>, mut msg: InboundMessage) -> Result<Accepted, StateError> {
        // The agent the bindings name, and the conversation with it (journaled as routed, so a
        // restart answers with the same agent).
        let routed = self.agents.route(&msg);
        msg.session_key = routed.session_key;
        let payload =
            serde_json::to_string(&msg).map_err(|e| StateError::Invalid(e.to_string()))?;
        let now = picoclaw_state::now_ms();
        let Some(id) = self
            .store
            .journal_inbound(
                msg.channel.as_str(),
                &external_id(&msg),
                msg.session_key.as_str(),
                &payload,
                now,
            )
            .await?
        else {
            return Ok(Accepted::Duplicate);
        };
        // Where the user last wrote from: the heartbeat reports there.
        let last = format!("{}\n{}", msg.channel.as_str(), msg.chat_id);
        if let Err(e) = self
            .store
            .kv_put(
                crate::scheduler::LAST_CHAT.0,
                &self.agents.last_chat_key(&routed.agent_id),
                &last,
            )
            .await
        {
            tracing::debug!(error = %e, "could not note the last chat");
        }
        if msg.content.trim() == "/stop" {
            let stopped = lock(&self.running)
                .get(&msg.session_key)
                .map(|t| t.cancel())
                .is_some();
            let text = if stopped {
                "Stopped."
            } else {
                "Nothing is running."
            };
            self.finish(id, &msg, text).await?;
            return Ok(Accepted::Handled);
        }
        self.enqueue(id, msg).await;
        Ok(Accepted::Queued(id))
    }

    /// Queues what the journal holds unprocessed (after a crash or restart). Returns how many.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StateError> {
        self.recover_before(i64::MAX).await
    }

    /// Queues what the journal holds unprocessed, received before `before_ms` and not queued
    /// here already. Returns how many.
    async fn recover_before(self: &Arc<Self>, before_ms: i64) -> Result<usize, StateError> {
        let pending = self.store.unprocessed(100_000).await?;
        let mut n = 0;
        for record in pending {
            if record.received_at_ms >= before_ms || lock(&self.queued).contains(&record.id) {
                continue;
            }
            match serde_json::from_str::<InboundMessage>(&record.payload) {
                Ok(msg) => {
                    self.enqueue(record.id, msg).await;
                    n += 1;
                }
                Err(e) => {
                    // Not one of ours (another journal user): leave it.
                    tracing::debug!(id = record.id, error = %e, "journal entry is not a message");
                }
            }
        }
        Ok(n)
    }

    /// Every `every`, queues the messages that have waited unprocessed longer than that and
    /// are not queued here (until `stop`): what another instance sharing the journal left
    /// when it died, and what this one could not hold (the database was away).
    pub async fn sweep(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let age = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            match self
                .recover_before(picoclaw_state::now_ms().saturating_sub(age))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    messages = n,
                    "queued messages left unanswered (by an instance that stopped, or after an error)"
                ),
                Err(e) => tracing::warn!(error = %e, "could not read the inbound journal"),
            }
        }
    }

    async fn enqueue(self: &Arc<Self>, id: i64, msg: InboundMessage) {
        lock(&self.queued).insert(id);
        let mut job = (id, msg);
        loop {
            let sender = {
                let mut queues = lock(&self.queues);
                let key = job.1.session_key.clone();
                match queues.get(&key) {
                    Some(s) if !s.is_closed() => s.clone(),
                    _ => {
                        let (tx, rx) = mpsc::channel(self.config.session_queue.max(1));
                        queues.insert(key.clone(), tx.clone());
                        tokio::spawn(Arc::clone(self).worker(key, rx));
                        tx
                    }
                }
            };
            match sender.send(job).await {
                Ok(()) => return,
                // The worker went idle and stopped between our lookup and the send: start a
                // new one.
                Err(mpsc::error::SendError(back)) => job = back,
            }
        }
    }

    async fn worker(self: Arc<Self>, key: SessionKey, mut rx: mpsc::Receiver<Job>) {
        loop {
            let job = match tokio::time::timeout(self.config.idle_timeout, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    // Idle. Leave only when nothing is queued and nobody holds a sender but the
                    // map (enqueue keeps its clone until its send is done), so no message can
                    // arrive after we go and none is left behind.
                    let mut queues = lock(&self.queues);
                    let idle =
                        rx.is_empty() && queues.get(&key).is_some_and(|s| s.strong_count() == 1);
                    if idle {
                        queues.remove(&key);
                        break;
                    }
                    continue;
                }
            };
            self.process(job).await;
        }
    }

    /// The message's text with what its attachments say: voice notes transcribed (when speech
    /// to text is configured), other files named by where the channel saved them.
    async fn content_with_media(&self, msg: &InboundMessage) -> String {
        use picoclaw_api::MediaKind;
        let mut parts: Vec<String> = Vec::new();
        if !msg.content.trim().is_empty() {
            parts.push(msg.content.clone());
        }
        for media in &msg.media {
            let path = std::path::Path::new(&media.location);
            let line = match (media.kind, &self.config.transcriber) {
                (MediaKind::Audio, Some(stt)) => {
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("audio");
                    let text = match self.read_media(path, picoclaw_tools::MAX_AUDIO_BYTES).await {
                        Ok(bytes) => stt.transcribe(name, bytes).await,
                        Err(e) => Err(e),
                    };
                    match text {
                        Ok(text) => format!("[voice note] {}", text.trim()),
                        Err(e) => format!(
                            "[voice note saved at {}; it could not be transcribed: {e}]",
                            media.location
                        ),
                    }
                }
                (MediaKind::Audio, None) => format!(
                    "[voice note saved at {}; speech to text is not configured (stt.api_key)]",
                    media.location
                ),
                // Shown to the model with this turn too (images_of); the history keeps this line.
                (MediaKind::Image, _) => format!("[photo saved at {}]", media.location),
                _ => format!(
                    "[file {} saved at {}]",
                    media.name.as_deref().unwrap_or("(unnamed)"),
                    media.location
                ),
            };
            parts.push(line);
        }
        parts.join("\n")
    }

    /// A message going to an agent whose workspace is not where the channels save files: each
    /// saved attachment is copied into that agent's workspace (same place under it, read beneath
    /// the channels' folder, written beneath the agent's) and the message points there, so the
    /// agent can open it and no agent reads another's workspace.
    async fn media_for_agent(&self, mut msg: InboundMessage) -> InboundMessage {
        let (Some(root), false) = (&self.config.media_root, msg.media.is_empty()) else {
            return msg;
        };
        let target = self
            .agents
            .for_session(msg.session_key.as_str())
            .workspace
            .clone();
        if target.as_os_str().is_empty() || target.starts_with(root) {
            return msg;
        }
        for media in &mut msg.media {
            let from = std::path::PathBuf::from(&media.location);
            let Ok(relative) = from.strip_prefix(root).map(std::path::Path::to_path_buf) else {
                continue;
            };
            let (root, target) = (root.clone(), target.clone());
            let copied = picoclaw_fs::off_thread(Duration::from_secs(60), move || {
                let bytes = picoclaw_fs::read_beneath(&root, &from, 50 * 1024 * 1024)?;
                let dir = picoclaw_fs::WorkspaceDir::create(&target).map_err(|e| {
                    picoclaw_fs::FsError::Io {
                        path: target.display().to_string(),
                        source: e,
                    }
                })?;
                let rel = relative.to_string_lossy().into_owned();
                if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
                    dir.create_dir_all(&parent.to_string_lossy())?;
                }
                dir.write_atomic(&rel, &bytes)?;
                Ok::<_, picoclaw_fs::FsError>(target.join(relative))
            })
            .await;
            match copied {
                Ok(path) => media.location = path.display().to_string(),
                Err(e) => {
                    tracing::warn!(error = %e, "an attachment could not be handed to its agent");
                }
            }
        }
        msg
    }

    /// The photos of a message as images for the model (data URLs), up to `MAX_IMAGE_BYTES`
    /// each; larger or unreadable ones stay a mention of where they were saved.
    /// A saved attachment's bytes, read beneath the workspace handle when it lies in the
    /// workspace (else beneath its own folder), never through a final link, off the async
    /// workers.
    async fn read_media(&self, path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
        let path = path.to_path_buf();
        let root = match &self.config.media_root {
            Some(root) if path.starts_with(root) => root.clone(),
            _ => path
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| "/".into()),
        };
        picoclaw_fs::off_thread(Duration::from_secs(60), move || {
            picoclaw_fs::read_beneath(&root, &path, max)
        })
        .await
        .map_err(|e| e.to_string())
    }

    async fn images_of(&self, msg: &InboundMessage) -> Vec<picoclaw_api::ContentPart> {
        use base64::Engine;
        let mut images = Vec::new();
        for media in &msg.media {
            if media.kind != picoclaw_api::MediaKind::Image {
                continue;
            }
            let path = std::path::Path::new(&media.location);
            let bytes = match self.read_media(path, MAX_IMAGE_BYTES).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::info!(error = %e, "photo not shown to the model");
                    continue;
                }
            };
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_ascii_lowercase();
            let mime = match ext.as_str() {
                "png" => "image/png",
                "gif" => "image/gif",
                "webp" => "image/webp",
                _ => "image/jpeg",
            };
            let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            images.push(picoclaw_api::ContentPart::image(format!(
                "data:{mime};base64,{data}"
            )));
        }
        images
    }

    async fn process(&self, (id, msg): Job) {
        // The conversation, held by this instance (its lease, when the state is shared) from
        // the check below until the answer is stored: another instance sharing the journal
        // may have answered the message meanwhile (it recovers what an instance that died
        // left), and must not start on it while we do.
        let agent = self
            .agents
            .for_session(msg.session_key.as_str())
            .agent
            .clone();
        let guard = match agent.hold_session(&msg.session_key).await {
            Ok(guard) => guard,
            Err(e) => {
                tracing::warn!(id, session = %msg.session_key, error = %e, "could not hold the conversation; the message is redone later");
                self.forget(id);
                return;
            }
        };
        // A turn slot only once the conversation is ours: a message waiting for another
        // instance's turn of its conversation takes none.
        let _permit = match Arc::clone(&self.permits).acquire_owned().await {
            Ok(p) => p,
            Err(_) => {
                self.forget(id);
                return;
            }
        };
        match self.store.is_unprocessed(id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(id, "already answered (by another instance)");
                self.forget(id);
                return;
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "could not read the inbound journal; the message is redone later");
                self.forget(id);
                return;
            }
        }
        let text = match msg.content.trim() {
            "/help" => HELP.to_owned(),
            "/new" => match agent.session_store().delete(&msg.session_key).await {
                Ok(_) => "Started a new conversation.".to_owned(),
                Err(e) => format!("Could not clear the conversation: {e}"),
            },
            _ => {
                let cancel = CancellationToken::new();
                lock(&self.running).insert(msg.session_key.clone(), cancel.clone());
                let options = TurnOptions::new()
                    .cancel_with(cancel)
                    .chat(msg.channel.as_str(), msg.chat_id.clone())
                    .with_images(self.images_of(&msg).await);
                let started = std::time::Instant::now();
                // "typing…" renewed while the turn runs; stops when `_typing` drops.
                let typing = CancellationToken::new();
                let _typing = typing.clone().drop_guard();
                if let Some(sink) = self.config.typing.clone() {
                    let (channel, chat) = (msg.channel.as_str().to_owned(), msg.chat_id.clone());
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                () = tokio::time::sleep(TYPING_EVERY) => {
                                    sink.typing(&channel, &chat).await;
                                }
                                () = typing.cancelled() => return,
                            }
                        }
                    });
                }
                let handed = self.media_for_agent(msg.clone()).await;
                let content = self.content_with_media(&handed).await;
                // The answer's text as it is written, for channels that show it growing.
                let deltas = StreamTo {
                    sink: self.config.typing.clone(),
                    channel: msg.channel.as_str(),
                    chat: &msg.chat_id,
                };
                let result = agent
                    .turn_held(&guard, ChatMessage::user(content), options, &deltas)
                    .await;
                let m = &self.config.metrics;
                match &result {
                    Ok(o) => {
                        m.turn(
                            crate::metrics::Source::Channel,
                            true,
                            started.elapsed(),
                            o.tool_calls,
                            o.usage.prompt_tokens,
                            o.usage.completion_tokens,
                        );
                        m.reasoning(o.usage.reasoning_tokens);
                    }
                    Err(_) => m.turn(
                        crate::metrics::Source::Channel,
                        false,
                        started.elapsed(),
                        0,
                        0,
                        0,
                    ),
                }
                lock(&self.running).remove(&msg.session_key);
                match result {
                    Ok(outcome) => outcome.text,
                    Err(picoclaw_core::AgentError::Cancelled) => String::new(),
                    Err(e) => {
                        tracing::warn!(session = %msg.session_key, error = %e, "turn failed");
                        format!("Sorry, that failed: {e}")
                    }
                }
            }
        };
        // This process stalled past the lease and another instance took the conversation: it
        // may have answered the message meanwhile, and a second answer must not go out.
        if guard.lease_lost() && matches!(self.store.is_unprocessed(id).await, Ok(false)) {
            tracing::warn!(
                id,
                "another instance answered this message while this one stalled; this answer is dropped"
            );
        } else if let Err(e) = self.finish(id, &msg, &text).await {
            tracing::error!(id, error = %e, "could not store the answer; the message will be redone after a restart");
        }
        guard.release().await;
        self.forget(id);
    }

    /// The message left this instance's queues.
    fn forget(&self, id: i64) {
        lock(&self.queued).remove(&id);
    }

    /// Marks the message processed and puts its answer (if any) in the outbox, atomically.
    async fn finish(&self, id: i64, msg: &InboundMessage, text: &str) -> Result<(), StateError> {
        let now = picoclaw_state::now_ms();
        if text.trim().is_empty() {
            return self.store.mark_processed(id).await;
        }
        let reply = OutboundMessage::reply(msg, text);
        let payload =
            serde_json::to_string(&reply).map_err(|e| StateError::Invalid(e.to_string()))?;
        self.store
            .finish_inbound(id, msg.channel.as_str(), &msg.chat_id, &payload, now)
            .await?;
        self.outbox_ready.notify_one();
        Ok(())
    }
}

/// Passes a turn's text deltas to the sink's [`OutboundSink::stream_text`].
struct StreamTo<'a> {
    sink: Option<Arc<dyn OutboundSink>>,
    channel: &'a str,
    chat: &'a str,
}

impl picoclaw_core::EventSink for StreamTo<'_> {
    fn event(&self, event: picoclaw_core::AgentEvent) {
        use picoclaw_core::AgentEvent;
        let Some(sink) = &self.sink else { return };
        match event {
            // An empty delta: a new answer begins (a cancelled one's text is dropped).
            AgentEvent::ModelCall { iteration: 1 } => sink.stream_text(self.channel, self.chat, ""),
            AgentEvent::TextDelta(text) if !text.is_empty() => {
                sink.stream_text(self.channel, self.chat, &text);
            }
            _ => {}
        }
    }
}

/// Where delivered messages go: the channels (through the channel manager), or a test double.
#[async_trait::async_trait]
pub trait OutboundSink: Send + Sync {
    /// Sends one message. A [`DeliveryError::Failed`] is retried later; a
    /// [`DeliveryError::Rejected`] never is.
    async fn send(&self, msg: &OutboundMessage) -> Result<(), DeliveryError>;

    /// Shows "typing…" in a chat while its turn runs (best effort; nothing by default).
    async fn typing(&self, channel: &str, chat_id: &str) {
        let _ = (channel, chat_id);
    }

    /// Answer text of a running turn as it is written; an empty `delta` when a turn's answer
    /// begins. Must not block; nothing by default.
    fn stream_text(&self, channel: &str, chat_id: &str, delta: &str) {
        let _ = (channel, chat_id, delta);
    }
}

/// Why a message was not delivered, as the deliverer must react to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The platform refused the message for good (a wrong chat id, the bot removed from the
    /// chat, a message it will never take): retrying will not help, so it is not retried.
    #[error("{0}")]
    Rejected(String),
    /// Worth another try later (the network, a rate limit, the channel not connected yet).
    #[error("{0}")]
    Failed(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Failed(_))
    }
}

/// The wait before delivery attempt `attempts + 1`: 1 s, 2 s, 4 s ... doubling up to 5 minutes.
fn retry_delay_ms(attempts: u32) -> i64 {
    (1_000i64 << attempts.saturating_sub(1).min(20)).min(300_000)
}

/// Delivery attempts before a reply is given up: with the waits between them (1 s doubling up
/// to 5 minutes), a platform that fails (5xx, 429, the network) for an hour loses nothing.
pub const MAX_DELIVERY_ATTEMPTS: u32 = 21;

/// Delivers the outbox: claims messages under a lease, sends them, acknowledges or schedules a
/// retry (1 s, 2 s, 4 s ... up to 5 minutes apart, [`MAX_DELIVERY_ATTEMPTS`] in all, a little over an
/// hour; then the message is kept as dead). A message the platform refused for good is not
/// retried.
pub struct Deliverer {
    store: Arc<dyn StateBackend>,
    sink: Arc<dyn OutboundSink>,
    owner: String,
    ready: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Attempts before a message is given up.
    pub max_attempts: u32,
    /// The channels whose messages this instance claims; all when `None`.
    only: Option<Vec<String>>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(
        dispatcher: &Dispatcher,
        sink: Arc<dyn OutboundSink>,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            store: dispatcher.store.clone(),
            sink,
            owner: owner.into(),
            ready: dispatcher.outbox_ready.clone(),
            metrics: dispatcher.config.metrics.clone(),
            max_attempts: MAX_DELIVERY_ATTEMPTS,
            only: None,
        }
    }

    /// Claims messages for these channels only, leaving the others to the instances sharing
    /// the state database that run them (without it, a message for a channel this instance
    /// does not run fails here until it is given up).
    pub fn only_channels(mut self, names: Vec<String>) -> Self {
        self.only = Some(names);
        self
    }

    /// Delivers until `stop` is cancelled, then once more (flushing what is ready).
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let delivered = self.deliver_due().await;
            if stop.is_cancelled() {
                break;
            }
            if delivered == 0 {
                tokio::select! {
                    () = self.ready.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        self.deliver_due().await;
    }

    /// One pass: what is due now. Returns how many were handed out.
    pub async fn deliver_due(&self) -> usize {
        let now = picoclaw_state::now_ms();
        let claimed = match &self.only {
            Some(channels) => {
                self.store
                    .claim_outbound_on(&self.owner, now, 30_000, 64, channels)
                    .await
            }
            None => {
                self.store
                    .claim_outbound(&self.owner, now, 30_000, 64)
                    .await
            }
        };
        let batch = match claimed {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return 0;
            }
        };
        let n = batch.len();
        for record in batch {
            let msg: OutboundMessage = match serde_json::from_str(&record.payload) {
                Ok(m) => m,
                Err(e) => {
                    let _ = self
                        .store
                        .fail_outbound(record.id, &self.owner, &format!("undecodable: {e}"), None)
                        .await;
                    continue;
                }
            };
            let sent = self.sink.send(&msg).await;
            if sent.is_ok() {
                self.metrics.delivered();
            } else {
                self.metrics.delivery_failed();
            }
            match sent {
                Ok(()) => {
                    if let Err(e) = self.store.ack_outbound(record.id, &self.owner).await {
                        tracing::warn!(id = record.id, error = %e, "delivered but not acknowledged");
                    }
                }
                Err(error) => {
                    let retryable = error.is_retryable();
                    let error = error.to_string();
                    let retry = (retryable && record.attempts < self.max_attempts)
                        .then(|| picoclaw_state::now_ms() + retry_delay_ms(record.attempts));
                    tracing::warn!(id = record.id, attempts = record.attempts, %error, "delivery failed");
                    let _ = self
                        .store
                        .fail_outbound(record.id, &self.owner, &error, retry)
                        .await;
                }
            }
        }
        n
    }
}

/// The dispatcher as the channels' inbox: a message is journaled before `deliver` returns.
#[derive(Debug)]
pub struct DispatcherInbox(pub Arc<Dispatcher>);

#[async_trait::async_trait]
impl picoclaw_channels::Inbox for DispatcherInbox {
    async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
        self.0
            .accept(msg)
            .await
            .map(|_| ())
            .map_err(picoclaw_api::InboxError::from)
    }
}

/// The channel manager as the deliverer's sink.
#[derive(Debug)]
pub struct ChannelSink(pub Arc<picoclaw_channels::ChannelManager>);

#[async_trait::async_trait]
impl OutboundSink for ChannelSink {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), DeliveryError> {
        self.0.send(msg).await.map_err(|e| match e {
            picoclaw_channels::ChannelError::Rejected(why) => DeliveryError::Rejected(why),
            other => DeliveryError::Failed(other.to_string()),
        })
    }

    async fn typing(&self, channel: &str, chat_id: &str) {
        self.0.typing(channel, chat_id).await;
    }

    fn stream_text(&self, channel: &str, chat_id: &str, delta: &str) {
        self.0.stream_text(channel, chat_id, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_state::InMemoryStore;

    /// Records what it was handed.
    #[derive(Default)]
    struct Sent(Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl OutboundSink for Sent {
        async fn send(&self, msg: &OutboundMessage) -> Result<(), DeliveryError> {
            lock(&self.0).push(format!("{}:{}", msg.channel.as_str(), msg.content));
            Ok(())
        }
    }

    #[test]
    fn replies_are_retried_for_about_an_hour_before_they_are_given_up() {
        let waits: Vec<i64> = (1..MAX_DELIVERY_ATTEMPTS).map(retry_delay_ms).collect();
        assert_eq!(&waits[..4], [1_000, 2_000, 4_000, 8_000]);
        assert!(waits.iter().all(|w| *w <= 300_000));
        let total: i64 = waits.iter().sum();
        assert!(
            (3_600_000..5_400_000).contains(&total),
            "a platform down for an hour must not lose replies; the retries span {total} ms"
        );
    }

    #[tokio::test]
    async fn a_deliverer_for_some_channels_leaves_the_others_replies_to_other_instances() {
        let store: Arc<dyn StateBackend> = Arc::new(InMemoryStore::new());
        let agent = Agent::builder(Arc::new(picoclaw_testkit::ScriptedProvider::new([])))
            .model("m")
            .build()
            .unwrap();
        let dispatcher = Dispatcher::new(agent, store.clone(), DispatcherConfig::default());
        let now = picoclaw_state::now_ms();
        for (channel, text) in [("telegram", "to telegram"), ("slack", "to slack")] {
            let payload = serde_json::to_string(&OutboundMessage::new(channel, "1", text)).unwrap();
            store
                .enqueue_outbound(channel, "1", &payload, now)
                .await
                .unwrap();
        }
        // This instance runs Slack only: the Telegram reply stays for the instance with it.
        let slack = Arc::new(Sent::default());
        let d = Deliverer::new(&dispatcher, slack.clone(), "b").only_channels(vec!["slack".into()]);
        assert_eq!(d.deliver_due().await, 1);
        assert_eq!(*lock(&slack.0), ["slack:to slack"]);
        let waiting = store.claim_outbound("a", now, 30_000, 10).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].channel, "telegram");
        assert_eq!(waiting[0].attempts, 1, "not counted as a failed attempt");
    }
}
