//! Runtime state for the gateway: small key/value state ([`KvStore`]), the inbound journal
//! ([`InboundJournal`]: every received message is written down before it is processed, so a
//! crash loses nothing and a platform's redelivery is recognised), the outbound outbox
//! ([`Outbox`]: replies wait there until a channel confirms delivery; a claim is a lease, so
//! one instance sends each message), and named leases ([`LeaseStore`]: one instance at a time
//! processes a session, and a dead instance's lease expires).
//!
//! Times are milliseconds since the Unix epoch.

use super::StateError;
use async_trait::async_trait;

/// Small named values, grouped in namespaces (`telegram` → `offset`, say).
#[async_trait]
pub trait KvStore: Send + Sync {
    /// The value of `key` in `namespace`; `None` when it is not set.
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>, StateError>;
    /// Sets `key` in `namespace` to `value`, replacing any earlier value.
    async fn kv_put(&self, namespace: &str, key: &str, value: &str) -> Result<(), StateError>;
    /// Returns whether the key existed.
    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StateError>;
    /// Every key and value of a namespace, sorted by key.
    async fn kv_list(&self, namespace: &str) -> Result<Vec<(String, String)>, StateError>;
}

/// A received message, as journaled.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundRecord {
    /// The journal's id for it, as [`InboundJournal::journal_inbound`] returned it.
    pub id: i64,
    /// The channel it arrived on.
    pub channel: String,
    /// The platform's id of the message (update id, event id): how redeliveries are known.
    pub external_id: String,
    /// The conversation it belongs to.
    pub session_key: String,
    /// The message as JSON.
    pub payload: String,
    /// When it was journaled, in ms since the Unix epoch.
    pub received_at_ms: i64,
}

impl InboundRecord {
    /// A journaled message, as a backend reads it back.
    pub fn new(
        id: i64,
        channel: impl Into<String>,
        external_id: impl Into<String>,
        session_key: impl Into<String>,
        payload: impl Into<String>,
        received_at_ms: i64,
    ) -> Self {
        Self {
            id,
            channel: channel.into(),
            external_id: external_id.into(),
            session_key: session_key.into(),
            payload: payload.into(),
            received_at_ms,
        }
    }
}

/// Received messages, written down before processing.
#[async_trait]
pub trait InboundJournal: Send + Sync {
    /// Journals a message; `None` when `(channel, external_id)` was journaled before (a
    /// redelivery: do not process it again).
    async fn journal_inbound(
        &self,
        channel: &str,
        external_id: &str,
        session_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StateError>;

    /// The message has been processed (its turn is stored).
    async fn mark_processed(&self, id: i64) -> Result<(), StateError>;

    /// The message has been processed and this is its answer: marks it processed and puts the
    /// answer in the outbox in one transaction, so a crash can neither lose the answer nor
    /// produce it twice. Returns the outbox id.
    async fn finish_inbound(
        &self,
        id: i64,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError>;

    /// Journaled messages not yet processed, oldest first (after a crash: what to redo).
    async fn unprocessed(&self, limit: usize) -> Result<Vec<InboundRecord>, StateError>;

    /// Whether message `id` is journaled and not yet processed: checked under the session's
    /// lease before its turn, since another instance sharing the journal may have answered it
    /// meanwhile. The default reads [`unprocessed`](Self::unprocessed); backends answer it with
    /// one lookup.
    async fn is_unprocessed(&self, id: i64) -> Result<bool, StateError> {
        Ok(self
            .unprocessed(usize::MAX)
            .await?
            .iter()
            .any(|r| r.id == id))
    }

    /// Forgets processed messages received before `before_ms` (redeliveries older than that
    /// are no longer recognised). Returns how many went.
    async fn prune_inbound(&self, before_ms: i64) -> Result<u64, StateError>;
}

/// A reply waiting to be delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboundRecord {
    /// The outbox id, as [`Outbox::enqueue_outbound`] or [`InboundJournal::finish_inbound`]
    /// returned it.
    pub id: i64,
    /// The channel to send on.
    pub channel: String,
    /// The chat to send to, as the platform identifies it.
    pub chat_id: String,
    /// The message as JSON.
    pub payload: String,
    /// Delivery attempts so far, this one included once claimed.
    pub attempts: u32,
    /// Why the last delivery attempt failed; `None` before any attempt failed.
    pub last_error: Option<String>,
}

impl OutboundRecord {
    /// A queued reply, as a backend reads it back.
    pub fn new(
        id: i64,
        channel: impl Into<String>,
        chat_id: impl Into<String>,
        payload: impl Into<String>,
        attempts: u32,
        last_error: Option<String>,
    ) -> Self {
        Self {
            id,
            channel: channel.into(),
            chat_id: chat_id.into(),
            payload: payload.into(),
            attempts,
            last_error,
        }
    }
}

/// Replies waiting for delivery.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Queues a reply, due at once (`now_ms`). Returns its outbox id.
    async fn enqueue_outbound(
        &self,
        channel: &str,
        chat_id: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, StateError>;

    /// Hands up to `limit` messages that are due to `owner` for `lease_ms`, oldest first. A
    /// message is held by one claimer at a time; one not acknowledged before its lease ends is
    /// handed out again.
    async fn claim_outbound(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboundRecord>, StateError>;

    /// [`claim_outbound`](Self::claim_outbound) of messages for `channels` only: an instance
    /// claims what it can deliver, and leaves messages for channels it does not run to the
    /// instances that do. The default ignores `channels` (a backend that cannot filter hands
    /// out every message, as `claim_outbound` does).
    async fn claim_outbound_on(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
        channels: &[String],
    ) -> Result<Vec<OutboundRecord>, StateError> {
        let _ = channels;
        self.claim_outbound(owner, now_ms, lease_ms, limit).await
    }

    /// Ends every delivery lease at once, whoever holds it; returns how many there were. For
    /// a gateway starting on a database no other live instance delivers from (SQLite): what
    /// the previous process claimed and did not acknowledge (it died mid-delivery) is due
    /// again now instead of after its lease, and a chat's later replies do not wait behind it.
    /// The default does nothing (leases then run out by themselves).
    async fn release_outbound_leases(&self) -> Result<u64, StateError> {
        Ok(0)
    }

    /// Delivered: the message leaves the outbox. Returns false when `owner` no longer held it
    /// (its lease ran out and another instance took it).
    async fn ack_outbound(&self, id: i64, owner: &str) -> Result<bool, StateError>;

    /// Delivery failed: retry at `retry_at_ms`, or with `None` give up (the message stays,
    /// marked dead, for inspection).
    async fn fail_outbound(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StateError>;

    /// Messages given up on, oldest first.
    async fn dead_outbound(&self, limit: usize) -> Result<Vec<OutboundRecord>, StateError>;
}

/// Named, expiring leases.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes (or renews) the lease `name` for `owner` until `now_ms + ttl_ms`. `false` when
    /// another owner holds it and it has not expired.
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StateError>;

    /// Gives the lease up, if `owner` holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError>;
}
