//! MaixCam boards (Sipeed's camera boards running a detection model): picoclaw listens on
//! `channels.maixcam.host:port`, a board connects over TCP and sends JSON events
//! (docs/channels/maixcam.md).
//!
//! From the board: JSON objects `{"type", "tips", "timestamp", "data"}`, one after another
//! (a newline between them is welcome, not required). `person_detected` (with `data.class_name`,
//! `class_id`, `score`, `x`, `y`, `w`, `h`) becomes a message to the agent in the conversation
//! `maixcam:default`; `heartbeat` and `status` are logged; other types are logged and dropped.
//! An object larger than [`MAX_EVENT_BYTES`] is skipped whole, a malformed one is skipped, and
//! the connection goes on.
//!
//! To the boards: each answer as `{"type": "command", "timestamp", "message", "chat_id"}`
//! followed by a newline, written to every connected board (as the original does).
//!
//! Who may connect: `allow_from` lists the boards' IP addresses (`"*"`: any); a connection from
//! another address is closed at once. An empty list is an error at start: a camera cannot pair.

use crate::lock;
use crate::{Channel, ChannelError, Inbox};
use async_trait::async_trait;
use picoclaw_api::{InboundMessage, OutboundMessage};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The largest event a board may send; a larger one is skipped.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Boards connected at once; more are refused.
pub const MAX_BOARDS: usize = 16;

/// A board that sends nothing (not even a heartbeat) for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Longest a write to a board may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The conversation events go to (the original's chat).
pub const CHAT: &str = "default";

/// `channels.maixcam`, read.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MaixcamConfig {
    /// The address to listen on.
    pub host: String,
    /// The port to listen on (0: any free port, for tests).
    pub port: u16,
    /// Board IP addresses allowed; `*` allows any.
    pub allow_from: Vec<String>,
    /// Events per board per minute (default 20; 0: no limit).
    pub rate_limit_per_minute: u32,
}

impl MaixcamConfig {
    /// Reads `channels.maixcam` from JSON ([`crate::MaixcamSection`]'s keys).
    pub fn from_json(value: &Value) -> Result<Self, ChannelError> {
        let section: crate::MaixcamSection = serde_json::from_value(value.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.maixcam: {e}")))?;
        Self::from_section(&section)
    }

    /// Builds from the typed section: `allow_from` and `port` are required.
    pub fn from_section(section: &crate::MaixcamSection) -> Result<Self, ChannelError> {
        if section.allow_from.is_empty() {
            return Err(ChannelError::Rejected(
                "channels.maixcam.allow_from is empty: list the IP addresses of your MaixCam \
                 boards (or \"*\" for any on your network); a camera cannot pair"
                    .into(),
            ));
        }
        for entry in &section.allow_from {
            if entry != "*" && entry.parse::<IpAddr>().is_err() {
                return Err(ChannelError::Rejected(format!(
                    "channels.maixcam.allow_from: '{entry}' is not an IP address (or \"*\")"
                )));
            }
        }
        let port = section.port.ok_or_else(|| {
            ChannelError::Rejected(
                "channels.maixcam.port is not set: the TCP port the boards connect to (not \
                 gateway.port), e.g. 18791"
                    .into(),
            )
        })?;
        Ok(Self {
            host: crate::sections::trimmed(section.host.as_ref())
                .unwrap_or_else(|| "0.0.0.0".to_owned()),
            port,
            allow_from: section.allow_from.clone(),
            rate_limit_per_minute: crate::settings::Common::from_keys(
                Vec::new(),
                section.rate_limit_per_minute,
            )
            .rate_limit_per_minute,
        })
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow_from
            .iter()
            .any(|a| a == "*" || a.parse::<IpAddr>().is_ok_and(|a| a == ip))
    }
}

/// What the board connections share.
struct Shared {
    config: MaixcamConfig,
    access: crate::access::Access,
    /// Connected boards: id → where to queue what is written to it.
    boards: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    next: AtomicU64,
}

/// The MaixCam channel.
pub struct MaixcamChannel {
    shared: Arc<Shared>,
    /// Where the listener is bound, once it is (for tests with port 0).
    local: Mutex<Option<SocketAddr>>,
}

impl std::fmt::Debug for MaixcamChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaixcamChannel")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl MaixcamChannel {
    /// The channel for `config` (the listener opens in `run`).
    pub fn new(config: MaixcamConfig) -> Result<Self, ChannelError> {
        // The list is never empty here, so no pairing opens; only the rate limit is used.
        let access = crate::access::Access::new(
            "maixcam",
            vec!["*".into()],
            None,
            config.rate_limit_per_minute,
        );
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                access,
                boards: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
            }),
            local: Mutex::new(None),
        })
    }

    /// The address the listener is bound to, once `run` opened it.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *lock(&self.local)
    }

    /// Boards connected now.
    pub fn boards(&self) -> usize {
        lock(&self.shared.boards).len()
    }
}

impl Shared {
    async fn serve_board(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        lock(&self.boards).insert(id, tx);
        tracing::info!(board = %peer, "maixcam: a board connected");
        let (mut reader, mut writer) = stream.into_split();
        let mut events = EventSplitter::default();
        let mut buf = vec![0u8; 4096];
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                out = rx.recv() => {
                    let Some(out) = out else { break };
                    let written = tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        tracing::warn!(board = %peer, "maixcam: a write to the board failed; disconnecting it");
                        break;
                    }
                }
                read = tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut buf)) => {
                    let n = match read {
                        Ok(Ok(0)) => break,
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            tracing::info!(board = %peer, error = %e, "maixcam: connection lost");
                            break;
                        }
                        Err(_) => {
                            tracing::info!(board = %peer, "maixcam: the board was silent too long; disconnecting it");
                            break;
                        }
                    };
                    for event in events.push(&buf[..n]) {
                        match event {
                            Ok(bytes) => self.event(&bytes, peer, &inbox).await,
                            Err(why) => tracing::warn!(board = %peer, "maixcam: {why}; skipped"),
                        }
                    }
                }
            }
        }
        lock(&self.boards).remove(&id);
        tracing::info!(board = %peer, "maixcam: a board disconnected");
    }

    async fn event(&self, bytes: &[u8], peer: SocketAddr, inbox: &Arc<dyn Inbox>) {
        let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(bytes) else {
            tracing::warn!(board = %peer, "maixcam: an event that is not a JSON object; skipped");
            return;
        };
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let data = event.get("data").cloned().unwrap_or(Value::Null);
        match kind {
            "person_detected" => {}
            "heartbeat" => {
                tracing::debug!(board = %peer, "maixcam: heartbeat");
                return;
            }
            "status" => {
                tracing::info!(board = %peer, status = %data, "maixcam: status");
                return;
            }
            other => {
                tracing::warn!(board = %peer, kind = %other.chars().take(64).collect::<String>(), "maixcam: unknown event type; skipped");
                return;
            }
        }
        let sender = peer.ip().to_string();
        if self.access.take(&sender).is_err() {
            tracing::info!(board = %peer, "maixcam: more events than rate_limit_per_minute; skipped");
            return;
        }
        let num = |key: &str| data.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        let class = data
            .get("class_name")
            .and_then(Value::as_str)
            .unwrap_or("person");
        let score = num("score");
        let content = format!(
            "[MaixCam {sender}] Person detected: {class}, confidence {:.1}%, at ({:.0}, {:.0}), \
             size {:.0}x{:.0}",
            score * 100.0,
            num("x"),
            num("y"),
            num("w"),
            num("h"),
        );
        let mut msg = InboundMessage::new("maixcam", CHAT, sender, content)
            .with_metadata("event", kind)
            .with_metadata("remote_addr", peer.to_string())
            .with_metadata("score", format!("{score:.2}"));
        for key in ["class_id", "x", "y", "w", "h"] {
            if let Some(v) = data.get(key).and_then(Value::as_f64) {
                msg = msg.with_metadata(key, format!("{v:.0}"));
            }
        }
        if let Some(tips) = event.get("tips").and_then(Value::as_str) {
            msg = msg.with_metadata("tips", tips.chars().take(500).collect::<String>());
        }
        if let Some(ts) = event.get("timestamp").and_then(Value::as_f64) {
            msg = msg.with_metadata("timestamp", format!("{ts:.0}"));
        }
        if let Err(e) = inbox.deliver(msg).await {
            tracing::warn!(board = %peer, error = %e, "maixcam: an event was not taken");
        }
    }
}

/// Cuts a byte stream into JSON objects by their braces (strings and escapes respected):
/// objects may follow one another directly or on separate lines. Bytes outside an object are
/// skipped up to the next `{`; an object over [`MAX_EVENT_BYTES`] is skipped to its end.
#[derive(Debug, Default)]
struct EventSplitter {
    current: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The object being read is too large: its bytes are dropped until it ends.
    oversized: bool,
    /// Stray bytes were skipped since the last object (reported once).
    stray: bool,
}

impl EventSplitter {
    /// The complete objects (or why one was dropped) that `bytes` ends.
    fn push(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, String>> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.depth == 0 {
                if b == b'{' {
                    if std::mem::take(&mut self.stray) {
                        out.push(Err("bytes outside a JSON object".to_owned()));
                    }
                    self.depth = 1;
                    self.current.clear();
                    self.current.push(b);
                    self.oversized = false;
                } else if !b.is_ascii_whitespace() {
                    self.stray = true;
                }
                continue;
            }
            if self.oversized {
                // Still count the braces, to find where the object ends.
            } else if self.current.len() >= MAX_EVENT_BYTES {
                self.oversized = true;
                self.current = Vec::new();
            } else {
                self.current.push(b);
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        if self.oversized {
                            out.push(Err(format!("an event larger than {MAX_EVENT_BYTES} bytes")));
                        } else {
                            out.push(Ok(std::mem::take(&mut self.current)));
                        }
                        self.oversized = false;
                    }
                }
                _ => {}
            }
        }
        out
    }
}

#[async_trait]
impl Channel for MaixcamChannel {
    fn name(&self) -> &str {
        "maixcam"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let config = &self.shared.config;
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr).await.map_err(|e| {
            ChannelError::Platform(format!(
                "maixcam: cannot listen on {addr}: {e} (channels.maixcam.host/port; not the \
                 gateway's own port)"
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| ChannelError::Platform(format!("maixcam: {e}")))?;
        *lock(&self.local) = Some(local);
        tracing::info!(%local, "maixcam: listening for boards");
        let stop = stop.child_token();
        let _closing = stop.clone().drop_guard();
        let mut boards = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = stop.cancelled() => break,
                Some(_) = boards.join_next(), if !boards.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "maixcam: accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            if !self.shared.config.allowed(peer.ip()) {
                tracing::warn!(board = %peer, "maixcam: a connection from an address not on channels.maixcam.allow_from; closed");
                drop(stream);
                continue;
            }
            if lock(&self.shared.boards).len() >= MAX_BOARDS {
                tracing::warn!(board = %peer, "maixcam: too many boards connected; closed");
                drop(stream);
                continue;
            }
            boards.spawn(self.shared.clone().serve_board(
                stream,
                peer,
                inbox.clone(),
                stop.clone(),
            ));
        }
        Ok(())
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut line = json!({
            "type": "command",
            "timestamp": secs,
            "message": msg.content,
            "chat_id": msg.chat_id,
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        let boards: Vec<_> = lock(&self.shared.boards).values().cloned().collect();
        if boards.is_empty() {
            return Err(ChannelError::Platform(
                "no MaixCam board is connected".into(),
            ));
        }
        let mut sent = false;
        for board in boards {
            sent |= board.try_send(line.clone()).is_ok();
        }
        if sent {
            Ok(())
        } else {
            Err(ChannelError::Platform(
                "no MaixCam board took the message (their queues are full)".into(),
            ))
        }
    }
}
