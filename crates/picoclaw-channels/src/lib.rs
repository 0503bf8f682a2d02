//! Chat channels: the [`Channel`] trait every platform implements, the [`Inbox`] a channel hands
//! received messages to, and the [`ChannelManager`] that runs the channels, restarts a failed one
//! with backoff, reports their state, and routes replies to the right one.
//!
//! A channel acknowledges a platform's message only after [`Inbox::deliver`] returned: the
//! gateway's inbox writes the message to its journal first, so a crash loses nothing.
//! Channels never call providers, tools or state (docs/ARCHITECTURE.md).

pub mod access;
#[cfg(feature = "dingtalk")]
pub mod dingtalk;
#[cfg(feature = "discord")]
pub mod discord;
#[cfg(feature = "feishu")]
pub mod feishu;
pub mod format;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
#[cfg(feature = "line")]
pub mod line;
#[cfg(feature = "webhook-listener")]
pub(crate) mod listener;
#[cfg(feature = "maixcam")]
pub mod maixcam;
#[cfg(feature = "onebot")]
pub mod onebot;
#[cfg(feature = "pico")]
pub mod pico;
#[cfg(feature = "qq")]
pub mod qq;
pub mod registry;
pub mod sections;
pub mod settings;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "telegram")]
pub mod telegram;
#[cfg(feature = "wecom")]
pub mod wecom;
#[cfg(feature = "whatsapp")]
pub mod whatsapp;
#[cfg(feature = "ws-client")]
pub(crate) mod wsclient;

pub use sections::{
    ChannelsSection, DingtalkSection, DiscordSection, FeishuSection, LineSection, MaixcamSection,
    OnebotSection, PicoSection, QqSection, SlackSection, TelegramSection, WecomAppSection,
    WecomSection, WhatsappSection,
};

use async_trait::async_trait;
pub use picoclaw_api::channel::{
    Channel, ChannelError, Inbox, InboxError, SocketSession, SocketStream, WebhookRequest,
    WebhookResponse,
};
use picoclaw_api::{InboundMessage, OutboundMessage};
pub use registry::{ChannelFactory, ChannelRegistry, ChannelSetup};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Which messages of a channel share one conversation (`session_scope` in the channel's
/// settings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionScope {
    /// One conversation per chat: a DM, a group, a Slack thread (`session_scope: "chat"`, the
    /// default).
    #[default]
    Chat,
    /// One conversation per user, wherever they write (`"user"`): a DM and a mention in a
    /// group continue the same conversation. Answers still go where the message came from.
    User,
}

impl SessionScope {
    /// Reads `session_scope` from a channel's settings.
    pub fn from_json(channel: &str, value: &serde_json::Value) -> Result<Self, ChannelError> {
        Self::parse(
            channel,
            value
                .get("session_scope")
                .and_then(serde_json::Value::as_str),
        )
    }

    /// A `session_scope` setting of channel `channel` (absent: `chat`).
    pub fn parse(channel: &str, raw: Option<&str>) -> Result<Self, ChannelError> {
        match raw {
            None | Some("chat") => Ok(Self::Chat),
            Some("user") => Ok(Self::User),
            Some(other) => Err(ChannelError::Rejected(format!(
                "channels.{channel}.session_scope is '{other}'; use \"chat\" (one conversation \
                 per chat or thread) or \"user\" (one per user)"
            ))),
        }
    }
}

/// Puts each message of a per-user channel in its sender's conversation.
struct PerUser(Arc<dyn Inbox>);

#[async_trait]
impl Inbox for PerUser {
    async fn deliver(&self, mut msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
        msg.session_key = picoclaw_api::SessionKey::new(format!(
            "{}:user:{}",
            msg.channel.as_str(),
            msg.sender_id
        ));
        self.0.deliver(msg).await
    }
}

/// What a channel is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelState {
    Starting,
    Running,
    /// Failed; starting again after a pause.
    Restarting {
        attempt: u32,
        last_error: String,
    },
    /// Failed in a way retrying cannot fix (a rejected token, bad settings): not restarted.
    Failed {
        error: String,
    },
    Stopped,
}

/// Splits `text` into parts of at most `max` characters for a platform's message limit: at a
/// paragraph break if there is one in the last quarter of the window, else a line break, else a
/// space, else anywhere on a character boundary. A code block cut in two is closed at the end of
/// one part and opened again at the start of the next.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut parts = Vec::new();
    let mut rest: String = text.trim_end().to_owned();
    let mut reopen = String::new();
    while !rest.is_empty() {
        let body = format!("{reopen}{rest}");
        if body.chars().count() <= max {
            parts.push(body);
            break;
        }
        // Room for a closing fence.
        let window = max - 4;
        let cut_byte = body
            .char_indices()
            .nth(window)
            .map_or(body.len(), |(i, _)| i);
        let head = &body[..cut_byte];
        let floor = head.len() * 3 / 4;
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| head.rfind(sep).filter(|i| *i >= floor && *i > 0))
            .unwrap_or(head.len());
        let (mut part, tail) = (body[..cut].trim_end().to_owned(), body[cut..].trim_start());
        // An odd number of fences: the part ends inside a code block.
        let fences = part.matches("```").count();
        if fences % 2 == 1 {
            let lang = part
                .rfind("```")
                .map(|i| {
                    part[i + 3..]
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                })
                .unwrap_or_default();
            part.push_str("\n```");
            reopen = format!("```{lang}\n");
            // A long info string would fill the next part with the reopening fence alone, and
            // the text would never get shorter: the language is kept only while it is short.
            if reopen.len() * 2 > window {
                reopen = "```\n".to_owned();
            }
        } else {
            reopen.clear();
        }
        parts.push(part);
        rest = tail.to_owned();
    }
    parts
}

/// Backoff before restart number `attempt` (1-based): 1 s, 2 s, 4 s ... at most 60 s.
pub fn restart_backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// A message a channel received or sent, as the dashboard shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LastMessage {
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    pub chat_id: String,
    /// The first [`PREVIEW_CHARS`] characters of the text.
    pub preview: String,
}

/// Characters of a message kept in [`LastMessage::preview`].
pub const PREVIEW_CHARS: usize = 80;

impl LastMessage {
    /// Overwrites this record in place (its buffers are reused: no allocation once they are
    /// big enough).
    fn set(&mut self, chat_id: &str, text: &str) {
        self.at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.chat_id.clear();
        self.chat_id.push_str(chat_id);
        self.preview.clear();
        self.preview.extend(text.chars().take(PREVIEW_CHARS));
    }
}

/// The last message a channel received (handed to the inbox) and the last it sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Activity {
    pub received: Option<LastMessage>,
    pub sent: Option<LastMessage>,
}

type ActivityLog = Arc<Mutex<BTreeMap<String, Activity>>>;

fn note(log: &ActivityLog, channel: &str, sent: bool, chat_id: &str, text: &str) {
    let mut log = lock(log);
    // A name is allocated only for a channel's first message.
    if log.get(channel).is_none() {
        log.insert(channel.to_owned(), Activity::default());
    }
    let Some(activity) = log.get_mut(channel) else {
        return;
    };
    let slot = if sent {
        &mut activity.sent
    } else {
        &mut activity.received
    };
    slot.get_or_insert_with(LastMessage::default)
        .set(chat_id, text);
}

/// Notes each message a channel hands on in the manager's activity log.
struct Recorded {
    channel: String,
    log: ActivityLog,
    inner: Arc<dyn Inbox>,
}

#[async_trait]
impl Inbox for Recorded {
    async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
        note(&self.log, &self.channel, false, &msg.chat_id, &msg.content);
        self.inner.deliver(msg).await
    }
}

/// Runs channels and routes replies to them.
#[derive(Default)]
pub struct ChannelManager {
    channels: BTreeMap<String, Arc<dyn Channel>>,
    /// Channels whose conversations are per user rather than per chat.
    per_user: std::collections::BTreeSet<String>,
    states: Arc<Mutex<BTreeMap<String, ChannelState>>>,
    /// Pause before a restart; `restart_backoff` unless a test shortens it.
    backoff: Option<fn(u32) -> Duration>,
    /// Where each channel's webhook requests' messages go, once the channels are started.
    inboxes: Mutex<Option<BTreeMap<String, Arc<dyn Inbox>>>>,
    /// The last message each channel received and sent.
    activity: ActivityLog,
    /// Channels the config enables that are not here, and why (not in this build, bad
    /// settings).
    not_started: Vec<(String, String)>,
}

impl std::fmt::Debug for ChannelManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelManager")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Locks `m`, taking the data of a poisoned lock as it is (a panic elsewhere must not stop a
/// channel).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The string at `key` of a JSON object, when it is there and not empty.
#[cfg_attr(
    not(any(
        feature = "slack",
        feature = "line",
        feature = "feishu",
        feature = "dingtalk",
        feature = "qq"
    )),
    allow(dead_code)
)]
pub(crate) fn json_str<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

impl ChannelManager {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a channel (replacing one of the same name).
    pub fn add(&mut self, channel: Arc<dyn Channel>) {
        let name = channel.name().to_owned();
        lock(&self.states).insert(name.clone(), ChannelState::Stopped);
        self.channels.insert(name, channel);
    }

    /// Adds a channel whose messages share conversations as `scope` says.
    pub fn add_scoped(&mut self, channel: Arc<dyn Channel>, scope: SessionScope) {
        let name = channel.name().to_owned();
        self.add(channel);
        if scope == SessionScope::User {
            self.per_user.insert(name);
        } else {
            self.per_user.remove(&name);
        }
    }

    /// The inbox channel `name` hands its messages to (made once, when the channels start).
    fn inbox_for(&self, name: &str, inbox: Arc<dyn Inbox>) -> Arc<dyn Inbox> {
        let inbox: Arc<dyn Inbox> = if self.per_user.contains(name) {
            Arc::new(PerUser(inbox))
        } else {
            inbox
        };
        Arc::new(Recorded {
            channel: name.to_owned(),
            log: self.activity.clone(),
            inner: inbox,
        })
    }

    /// The started inbox of channel `name`.
    fn started_inbox(&self, name: &str) -> Option<Arc<dyn Inbox>> {
        lock(&self.inboxes).as_ref()?.get(name).cloned()
    }

    /// Notes a channel the config enables that could not be added (not in this build, bad
    /// settings), for the dashboard.
    pub fn note_not_started(&mut self, name: &str, why: impl Into<String>) {
        self.not_started.retain(|(n, _)| n != name);
        self.not_started.push((name.to_owned(), why.into()));
    }

    /// The channels the config enables that are not running from the start, and why.
    pub fn not_started(&self) -> &[(String, String)] {
        &self.not_started
    }

    /// The last message each channel received and sent (channels without any are absent).
    pub fn activity(&self) -> BTreeMap<String, Activity> {
        lock(&self.activity).clone()
    }

    /// Uses another restart backoff (tests).
    pub fn with_backoff(mut self, backoff: fn(u32) -> Duration) -> Self {
        self.backoff = Some(backoff);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Each channel and its state.
    pub fn states(&self) -> Vec<(String, ChannelState)> {
        lock(&self.states)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Starts every channel under a supervisor that restarts it with backoff until `stop`.
    pub fn start(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> tokio::task::JoinSet<()> {
        let inboxes: BTreeMap<String, Arc<dyn Inbox>> = self
            .channels
            .keys()
            .map(|name| (name.clone(), self.inbox_for(name, inbox.clone())))
            .collect();
        *lock(&self.inboxes) = Some(inboxes.clone());
        let mut set = tokio::task::JoinSet::new();
        let backoff = self.backoff.unwrap_or(restart_backoff);
        for (name, channel) in &self.channels {
            let (name, channel) = (name.clone(), Arc::clone(channel));
            let Some(inbox) = inboxes.get(&name).cloned() else {
                continue;
            };
            let (stop, states) = (stop.clone(), self.states.clone());
            set.spawn(async move {
                let mut attempt = 0u32;
                loop {
                    lock(&states).insert(name.clone(), ChannelState::Running);
                    let result = channel.run(inbox.clone(), stop.clone()).await;
                    if stop.is_cancelled() {
                        break;
                    }
                    if let Err(ChannelError::Rejected(error)) = &result {
                        tracing::error!(channel = %name, %error, "channel cannot start; not retrying");
                        lock(&states).insert(name.clone(), ChannelState::Failed { error: error.clone() });
                        return;
                    }
                    attempt += 1;
                    let last_error = match result {
                        Ok(()) => "the channel stopped on its own".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    let pause = backoff(attempt);
                    tracing::warn!(channel = %name, attempt, error = %last_error, ?pause, "channel failed; restarting");
                    lock(&states).insert(
                        name.clone(),
                        ChannelState::Restarting {
                            attempt,
                            last_error,
                        },
                    );
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => break,
                    }
                }
                lock(&states).insert(name, ChannelState::Stopped);
            });
        }
        set
    }

    /// Passes a request to `/webhook/<name>` to that channel: 404 when no channel of that name
    /// takes webhooks, 503 before the channels are started.
    pub async fn webhook(&self, name: &str, request: WebhookRequest) -> WebhookResponse {
        let Some(channel) = self.channels.get(name).filter(|c| c.takes_webhooks()) else {
            return WebhookResponse::text(
                404,
                format!("no channel named '{name}' takes webhooks here"),
            );
        };
        let Some(inbox) = self.started_inbox(name) else {
            return WebhookResponse::text(503, "the channels are not started yet; retry later");
        };
        // The handler runs to its end even when the platform hangs up or the route's time
        // limit fires: cut off between taking a message id and handing the message to the
        // inbox, it would lose the message, since the platform's retry meanwhile was answered
        // "already taken".
        let channel = Arc::clone(channel);
        match tokio::spawn(async move { channel.webhook(request, inbox).await }).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!(channel = %name, error = %e, "a webhook handler failed");
                WebhookResponse::text(500, "the channel failed; retry later")
            }
        }
    }

    /// Passes a WebSocket upgrade request to `/<name>/ws` to that channel: `Err` is the HTTP
    /// answer refusing it (404 when no channel of that name takes sockets, 503 before the
    /// channels are started), `Ok` the session to run over the upgraded connection.
    pub async fn socket(
        &self,
        name: &str,
        request: WebhookRequest,
    ) -> Result<Box<dyn SocketSession>, WebhookResponse> {
        let Some(channel) = self.channels.get(name).filter(|c| c.takes_sockets()) else {
            return Err(WebhookResponse::text(
                404,
                format!("no channel named '{name}' takes WebSocket connections here"),
            ));
        };
        let Some(inbox) = self.started_inbox(name) else {
            return Err(WebhookResponse::text(
                503,
                "the channels are not started yet; retry later",
            ));
        };
        channel.socket(request, inbox).await
    }

    /// Answer text as the agent writes it, for the channel that shows it as it grows.
    pub fn stream_text(&self, channel: &str, chat_id: &str, delta: &str) {
        if let Some(c) = self.channels.get(channel) {
            c.stream_text(chat_id, delta);
        }
    }

    /// The typing indicator of `chat_id` on `channel` (nothing when no such channel runs).
    pub async fn typing(&self, channel: &str, chat_id: &str) {
        if let Some(c) = self.channels.get(channel) {
            c.typing(chat_id).await;
        }
    }

    /// Sends `msg` through the channel it names.
    pub async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        match self.channels.get(msg.channel.as_str()) {
            Some(channel) => {
                channel.send(msg).await?;
                note(
                    &self.activity,
                    msg.channel.as_str(),
                    true,
                    &msg.chat_id,
                    &msg.content,
                );
                Ok(())
            }
            None => Err(ChannelError::Unknown(msg.channel.as_str().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Flaky {
        runs: AtomicU32,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Channel for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn run(
            &self,
            inbox: Arc<dyn Inbox>,
            stop: CancellationToken,
        ) -> Result<(), ChannelError> {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                return Err(ChannelError::Platform(format!("connection reset #{n}")));
            }
            inbox
                .deliver(InboundMessage::new("flaky", "c", "u", "hello"))
                .await
                .map_err(|e| ChannelError::Platform(e.to_string()))?;
            stop.cancelled().await;
            Ok(())
        }
        async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
            lock(&self.sent).push(msg.content.clone());
            Ok(())
        }
    }

    struct Collect(Mutex<Vec<String>>);

    #[async_trait]
    impl Inbox for Collect {
        async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
            lock(&self.0).push(msg.content);
            Ok(())
        }
    }

    #[test]
    fn long_answers_split_at_natural_places() {
        let para = "word ".repeat(30);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let parts = split_message(&text, 200);
        assert!(parts.iter().all(|p| p.chars().count() <= 200), "{parts:?}");
        assert_eq!(parts.join(" ").split_whitespace().count(), 90);
        assert!(
            parts
                .iter()
                .all(|p| !p.starts_with(' ') && !p.ends_with(' '))
        );
        // Multi-byte text is never cut inside a character.
        let cjk = "你好世界".repeat(100);
        let parts = split_message(&cjk, 50);
        assert!(parts.iter().all(|p| p.chars().count() <= 50));
        assert_eq!(parts.concat(), cjk);
        // Short text is one part.
        assert_eq!(split_message("hi", 4096), ["hi"]);
    }

    #[test]
    fn a_code_block_cut_in_two_stays_a_code_block() {
        let code: String = (0..40).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.");
        let parts = split_message(&text, 300);
        assert!(parts.len() > 1);
        for p in &parts {
            assert_eq!(
                p.matches("```").count() % 2,
                0,
                "unbalanced fences in {p:?}"
            );
            assert!(p.chars().count() <= 300);
        }
        assert!(parts[1].starts_with("```rust\n"), "{:?}", parts[1]);
    }

    /// Found by the `markdown` fuzz target (docs/fuzzing.md): a fence whose info string is
    /// longer than half a part was reopened in every part, filling it, and the split never
    /// ended.
    #[test]
    fn a_long_code_block_language_does_not_stop_the_split() {
        // The split looped for ever: it runs on a thread of its own, so that the test fails.
        let split = |text: String, max: usize| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || tx.send(split_message(&text, max)));
            rx.recv_timeout(Duration::from_secs(10))
                .expect("split_message did not end")
        };
        // The fuzzer's input (its invalid UTF-8 replaced, as the target reads it): a fence
        // with 15 NUL characters for a language, and a limit of 2 (16, the smallest kept).
        let crash = format!("\u{2}\u{fffd}rt\u{fffd}f(a{{\n```{}b>", "\0".repeat(15));
        let parts = split(crash, 2);
        assert!(parts.iter().all(|p| p.chars().count() <= 16), "{parts:?}");
        let lang = "x".repeat(3000);
        let code = "let y = 1;\n".repeat(600);
        let text = format!("```{lang}\n{code}```");
        let parts = split(text, 4096);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.chars().count() <= 4096);
            assert_eq!(p.matches("```").count() % 2, 0, "unbalanced fences");
        }
        // A short language is still carried over.
        let text = format!("```rust\n{code}```");
        assert!(split(text, 500)[1].starts_with("```rust\n"));
    }

    /// Hands over two messages of one user from two chats.
    struct TwoChats;

    #[async_trait]
    impl Channel for TwoChats {
        fn name(&self) -> &str {
            "two"
        }
        async fn run(
            &self,
            inbox: Arc<dyn Inbox>,
            stop: CancellationToken,
        ) -> Result<(), ChannelError> {
            for chat in ["dm", "group"] {
                inbox
                    .deliver(InboundMessage::new("two", chat, "u7", chat))
                    .await
                    .map_err(|e| ChannelError::Platform(e.to_string()))?;
            }
            stop.cancelled().await;
            Ok(())
        }
        async fn send(&self, _msg: &OutboundMessage) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    /// Takes webhooks slowly: the message reaches the inbox 300 ms after the request.
    struct SlowHook;

    #[async_trait]
    impl Channel for SlowHook {
        fn name(&self) -> &str {
            "slow"
        }
        async fn run(
            &self,
            _inbox: Arc<dyn Inbox>,
            stop: CancellationToken,
        ) -> Result<(), ChannelError> {
            stop.cancelled().await;
            Ok(())
        }
        async fn send(&self, _msg: &OutboundMessage) -> Result<(), ChannelError> {
            Ok(())
        }
        fn takes_webhooks(&self) -> bool {
            true
        }
        async fn webhook(
            &self,
            _request: WebhookRequest,
            inbox: Arc<dyn Inbox>,
        ) -> WebhookResponse {
            tokio::time::sleep(Duration::from_millis(300)).await;
            match inbox
                .deliver(InboundMessage::new("slow", "c", "u", "late"))
                .await
            {
                Ok(()) => WebhookResponse::text(200, "ok"),
                Err(_) => WebhookResponse::text(503, "retry"),
            }
        }
    }

    #[tokio::test]
    async fn a_webhook_the_platform_gave_up_on_still_reaches_the_inbox() {
        let mut manager = ChannelManager::new();
        manager.add(Arc::new(SlowHook));
        let inbox = Arc::new(Collect(Mutex::new(Vec::new())));
        let stop = CancellationToken::new();
        let mut tasks = manager.start(inbox.clone(), stop.clone());
        // The platform (or the route's time limit) stops waiting long before the handler ends.
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            manager.webhook("slow", WebhookRequest::new("POST", "{}")),
        )
        .await;
        assert!(cut.is_err());
        for _ in 0..200 {
            if !lock(&inbox.0).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*lock(&inbox.0), ["late"]);
        stop.cancel();
        while tasks.join_next().await.is_some() {}
    }

    struct Keys(Mutex<Vec<(String, String)>>);

    #[async_trait]
    impl Inbox for Keys {
        async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
            lock(&self.0).push((msg.session_key.as_str().to_owned(), msg.chat_id));
            Ok(())
        }
    }

    #[tokio::test]
    async fn session_scope_user_puts_a_users_chats_in_one_conversation() {
        for (scope, expected) in [
            (SessionScope::Chat, ["two:dm", "two:group"]),
            (SessionScope::User, ["two:user:u7", "two:user:u7"]),
        ] {
            let mut manager = ChannelManager::new();
            manager.add_scoped(Arc::new(TwoChats), scope);
            let inbox = Arc::new(Keys(Mutex::new(Vec::new())));
            let stop = CancellationToken::new();
            let mut tasks = manager.start(inbox.clone(), stop.clone());
            for _ in 0..400 {
                if lock(&inbox.0).len() == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let got = lock(&inbox.0).clone();
            let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, expected);
            // Answers still go to the chat the message came from.
            assert_eq!(got[1].1, "group");
            // The last message received is noted (the one after the last one sent).
            let seen = manager.activity()["two"].clone();
            let received = seen.received.unwrap();
            assert_eq!(
                (received.chat_id.as_str(), received.preview.as_str()),
                ("group", "group")
            );
            assert!(received.at_ms > 0 && seen.sent.is_none());
            let long = "x".repeat(200);
            manager
                .send(&OutboundMessage::new("two", "dm", long.as_str()))
                .await
                .unwrap();
            let sent = manager.activity()["two"].sent.clone().unwrap();
            assert_eq!(sent.chat_id, "dm");
            assert_eq!(sent.preview, "x".repeat(PREVIEW_CHARS));
            stop.cancel();
            while tasks.join_next().await.is_some() {}
        }
        let v = serde_json::json!({"session_scope": "user"});
        assert_eq!(
            SessionScope::from_json("x", &v).unwrap(),
            SessionScope::User
        );
        let bad = serde_json::json!({"session_scope": "thread"});
        assert!(
            SessionScope::from_json("slack", &bad)
                .unwrap_err()
                .to_string()
                .contains("channels.slack.session_scope is 'thread'")
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(restart_backoff(1), Duration::from_secs(1));
        assert_eq!(restart_backoff(2), Duration::from_secs(2));
        assert_eq!(restart_backoff(4), Duration::from_secs(8));
        assert_eq!(restart_backoff(30), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_failing_channel_is_restarted_and_replies_are_routed() {
        let flaky = Arc::new(Flaky {
            runs: AtomicU32::new(0),
            sent: Mutex::new(Vec::new()),
        });
        let mut manager = ChannelManager::new().with_backoff(|_| Duration::from_millis(5));
        manager.add(flaky.clone());
        let inbox = Arc::new(Collect(Mutex::new(Vec::new())));
        let stop = CancellationToken::new();
        let mut tasks = manager.start(inbox.clone(), stop.clone());
        for _ in 0..400 {
            if !lock(&inbox.0).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*lock(&inbox.0), ["hello"]);
        assert_eq!(
            flaky.runs.load(Ordering::SeqCst),
            3,
            "two failures, then it ran"
        );
        assert_eq!(
            manager.states(),
            [("flaky".to_owned(), ChannelState::Running)]
        );
        manager
            .send(&OutboundMessage::new("flaky", "c", "hi back"))
            .await
            .unwrap();
        assert_eq!(*lock(&flaky.sent), ["hi back"]);
        let err = manager
            .send(&OutboundMessage::new("nowhere", "c", "x"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nowhere"));
        stop.cancel();
        while tasks.join_next().await.is_some() {}
        assert_eq!(
            manager.states(),
            [("flaky".to_owned(), ChannelState::Stopped)]
        );
    }
}
