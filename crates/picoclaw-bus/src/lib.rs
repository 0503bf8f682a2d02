//! The message bus between channels and the agent: [`InboundMessage`]s from users flow to the
//! agent loop, [`OutboundMessage`]s flow back to the channels. Both queues are bounded tokio
//! channels: when the agent falls behind, producers wait (`publish_*`) or are told the queue is
//! full (`try_publish_*`) and get their message back. No IO beyond the channels.

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod message;

pub use message::{InboundMessage, MediaKind, MediaRef, OutboundMessage};

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

/// Publishing failed because the receiving side is gone (the agent loop or dispatcher stopped).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusError {
    #[error("the {0} queue is closed: its consumer has stopped")]
    Closed(Queue),
}

/// A `try_publish_*` that did not go through; the message is handed back, never lost.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TryPublishError<T> {
    #[error("the {queue} queue is full ({capacity} messages waiting); try again later")]
    Full {
        queue: Queue,
        capacity: usize,
        message: Box<T>,
    },
    #[error("the {queue} queue is closed: its consumer has stopped")]
    Closed { queue: Queue, message: Box<T> },
}

impl<T> TryPublishError<T> {
    /// The message that was not published.
    pub fn into_message(self) -> T {
        match self {
            TryPublishError::Full { message, .. } | TryPublishError::Closed { message, .. } => {
                *message
            }
        }
    }

    pub fn is_full(&self) -> bool {
        matches!(self, TryPublishError::Full { .. })
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
    pub async fn publish_inbound(&self, msg: InboundMessage) -> Result<(), BusError> {
        self.inbound
            .send(msg)
            .await
            .map_err(|_| BusError::Closed(Queue::Inbound))
    }

    /// Queues a user's message if there is room right now.
    pub fn try_publish_inbound(
        &self,
        msg: InboundMessage,
    ) -> Result<(), TryPublishError<InboundMessage>> {
        try_send(&self.inbound, msg, Queue::Inbound, self.capacity)
    }

    /// Queues a reply, waiting while the queue is full.
    pub async fn publish_outbound(&self, msg: OutboundMessage) -> Result<(), BusError> {
        self.outbound
            .send(msg)
            .await
            .map_err(|_| BusError::Closed(Queue::Outbound))
    }

    /// Queues a reply if there is room right now.
    pub fn try_publish_outbound(
        &self,
        msg: OutboundMessage,
    ) -> Result<(), TryPublishError<OutboundMessage>> {
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
) -> Result<(), TryPublishError<T>> {
    tx.try_send(msg).map_err(|e| match e {
        mpsc::error::TrySendError::Full(message) => TryPublishError::Full {
            queue,
            capacity,
            message: Box::new(message),
        },
        mpsc::error::TrySendError::Closed(message) => TryPublishError::Closed {
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
