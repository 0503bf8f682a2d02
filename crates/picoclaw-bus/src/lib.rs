//! The message bus between channels and the agent: [`InboundMessage`]s from users flow to the
//! agent loop, [`OutboundMessage`]s flow back to the channels. Both queues are bounded tokio
//! channels: when the agent falls behind, producers wait (`publish_*`) or are told the queue is
//! full (`try_publish_*`); a message that cannot be published is always handed back. No IO beyond the channels.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod message;

pub use message::{Button, InboundMessage, MediaKind, MediaRef, OutboundMessage, buttons_as_text};

use tokio::sync::mpsc;

/// Which queue an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Inbound,
    Outbound,
}

impl std::fmt::Display for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Inbound => "inbound",
            Queue::Outbound => "outbound",
        })
    }
}

/// A message that could not be published (the queue was full, for `try_publish_*`, or its
/// consumer has stopped). The message is handed back, never lost.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PublishError<T> {
    #[error("the {queue} queue is full ({capacity} messages waiting); try again later")]
    Full {
        queue: Queue,
        capacity: usize,
        message: Box<T>,
    },
    #[error("the {queue} queue is closed: its consumer has stopped")]
    Closed { queue: Queue, message: Box<T> },
}

impl<T> PublishError<T> {
    /// The message that was not published.
    pub fn into_message(self) -> T {
        match self {
            PublishError::Full { message, .. } | PublishError::Closed { message, .. } => *message,
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, PublishError::Full { .. })
    }
}

/// The producer side of the bus: cheap to clone, one per channel or task.
#[derive(Clone, Debug)]
pub struct MessageBus {
    inbound: mpsc::Sender<InboundMessage>,
    outbound: mpsc::Sender<OutboundMessage>,
    capacity: usize,
}

/// The consumer sides: the agent loop takes `inbound`, the channel dispatcher `outbound`.
#[derive(Debug)]
#[non_exhaustive]
pub struct BusReceivers {
    pub inbound: Receiver<InboundMessage>,
    pub outbound: Receiver<OutboundMessage>,
}

impl MessageBus {
    /// A bus whose two queues each hold up to `capacity` messages (at least 1).
    pub fn new(capacity: usize) -> (MessageBus, BusReceivers) {
        let capacity = capacity.max(1);
        let (in_tx, in_rx) = mpsc::channel(capacity);
        let (out_tx, out_rx) = mpsc::channel(capacity);
        (
            MessageBus {
                inbound: in_tx,
                outbound: out_tx,
                capacity,
            },
            BusReceivers {
                inbound: Receiver(in_rx),
                outbound: Receiver(out_rx),
            },
        )
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Queues a user's message, waiting while the queue is full (backpressure).
    pub async fn publish_inbound(
        &self,
        msg: InboundMessage,
    ) -> Result<(), PublishError<InboundMessage>> {
        self.inbound
            .send(msg)
            .await
            .map_err(|e| PublishError::Closed {
                queue: Queue::Inbound,
                message: Box::new(e.0),
            })
    }

    /// Queues a user's message if there is room right now.
    pub fn try_publish_inbound(
        &self,
        msg: InboundMessage,
    ) -> Result<(), PublishError<InboundMessage>> {
        try_send(&self.inbound, msg, Queue::Inbound, self.capacity)
    }

    /// Queues a reply, waiting while the queue is full.
    pub async fn publish_outbound(
        &self,
        msg: OutboundMessage,
    ) -> Result<(), PublishError<OutboundMessage>> {
        self.outbound
            .send(msg)
            .await
            .map_err(|e| PublishError::Closed {
                queue: Queue::Outbound,
                message: Box::new(e.0),
            })
    }

    /// Queues a reply if there is room right now.
    pub fn try_publish_outbound(
        &self,
        msg: OutboundMessage,
    ) -> Result<(), PublishError<OutboundMessage>> {
        try_send(&self.outbound, msg, Queue::Outbound, self.capacity)
    }

    /// Messages waiting in the inbound queue.
    pub fn inbound_len(&self) -> usize {
        self.capacity - self.inbound.capacity()
    }

    /// Messages waiting in the outbound queue.
    pub fn outbound_len(&self) -> usize {
        self.capacity - self.outbound.capacity()
    }
}

fn try_send<T>(
    tx: &mpsc::Sender<T>,
    msg: T,
    queue: Queue,
    capacity: usize,
) -> Result<(), PublishError<T>> {
    tx.try_send(msg).map_err(|e| match e {
        mpsc::error::TrySendError::Full(message) => PublishError::Full {
            queue,
            capacity,
            message: Box::new(message),
        },
        mpsc::error::TrySendError::Closed(message) => PublishError::Closed {
            queue,
            message: Box::new(message),
        },
    })
}

/// The consuming end of one queue.
#[derive(Debug)]
pub struct Receiver<T>(mpsc::Receiver<T>);

impl<T> Receiver<T> {
    /// The next message; `None` once every producer is gone and the queue is drained.
    pub async fn recv(&mut self) -> Option<T> {
        self.0.recv().await
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        self.0.try_recv().ok()
    }

    /// Takes up to `limit` waiting messages at once (waits for at least one); returns how many.
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        self.0.recv_many(buf, limit).await
    }

    /// Stops accepting new messages; those already queued can still be received.
    pub fn close(&mut self) {
        self.0.close();
    }
}
