//! What the channel tests share: an inbox that records (and can refuse) messages, and a
//! running channel with its inbox, stop token, task and (temporary) directory.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use picoclaw_api::InboundMessage;
use picoclaw_channels::{Channel, ChannelError, Inbox};
use serde_json::Value;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Keeps what it is given; refuses the first `fail` messages (a full journal).
#[derive(Default)]
pub(crate) struct Kept {
    pub messages: Mutex<Vec<InboundMessage>>,
    pub fail: AtomicU32,
}

#[async_trait]
impl Inbox for Kept {
    async fn deliver(&self, msg: InboundMessage) -> Result<(), picoclaw_api::InboxError> {
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(picoclaw_api::StateError::Database("journal full".into()).into());
        }
        self.messages.lock().unwrap().push(msg);
        Ok(())
    }
}

impl Kept {
    pub(crate) fn all(&self) -> Vec<InboundMessage> {
        self.messages.lock().unwrap().clone()
    }
}

/// rustls' process default, as the binaries install it at startup: Slack's Socket Mode opens
/// its WebSocket through tokio-tungstenite, which builds its TLS over the process default.
/// picoclaw's own clients need none.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Waits up to 30 s (a loaded 2-core machine) until `inbox` holds `n` messages.
pub(crate) async fn wait_kept(inbox: &Kept, n: usize) {
    for _ in 0..3000 {
        if inbox.all().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} messages, have {:?}", inbox.all());
}

/// What the messages kept so far say.
pub(crate) fn contents(inbox: &Kept) -> Vec<String> {
    inbox.all().iter().map(|m| m.content.clone()).collect()
}

/// `base` with each of `extra`'s keys set over it.
pub(crate) fn merged(mut base: Value, extra: Value) -> Value {
    for (k, val) in extra.as_object().unwrap() {
        base[k] = val.clone();
    }
    base
}

/// Blocks the test's thread (a fake's calls are blocking) while the channel, on the
/// runtime's other threads, works.
pub(crate) async fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A channel running on its own task: what `run` started. `dir` is what must live as long as
/// the channel (its temporary workspace, or `()` for a channel that has none).
pub(crate) struct Running<C, D = tempfile::TempDir> {
    pub channel: Arc<C>,
    pub inbox: Arc<Kept>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), ChannelError>>,
    pub dir: D,
}

/// Spawns `channel.run` with a fresh inbox and stop token.
pub(crate) fn run<C: Channel + 'static, D>(channel: C, dir: D) -> Running<C, D> {
    let channel = Arc::new(channel);
    let inbox = Arc::new(Kept::default());
    let stop = CancellationToken::new();
    let task = {
        let (channel, inbox, stop) = (Arc::clone(&channel), Arc::clone(&inbox), stop.clone());
        tokio::spawn(async move { channel.run(inbox, stop).await })
    };
    Running {
        channel,
        inbox,
        stop,
        task,
        dir,
    }
}
