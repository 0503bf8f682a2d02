//! What the channel tests share: an inbox that records (and can refuse) messages.
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use picoclaw_api::InboundMessage;
use picoclaw_channels::Inbox;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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

pub(crate) async fn wait_kept(inbox: &Kept, n: usize) {
    for _ in 0..500 {
        if inbox.all().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("expected {n} messages, have {:?}", inbox.all());
}
