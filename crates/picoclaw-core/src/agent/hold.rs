//! Holding a session for a turn: one turn of a conversation at a time in this process (a local
//! lock), across processes sharing the state database (the `session:<key>` lease of
//! [`SessionLeases`]), and a bounded number of turns at once in all (the agent's turn permits).
//!
//! [`Agent::turn`] holds the session for the turn's length. A caller that must do more under
//! the same hold (the gateway's dispatcher checks the message was not answered by another
//! instance, runs the turn and marks the message answered) takes it with
//! [`Agent::hold_session`] and runs the turn with [`Agent::turn_held`].

use super::{Agent, AgentError};
use picoclaw_api::SessionKey;
use picoclaw_state::LeaseStore;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a session lease lasts unless renewed (it is renewed every third of it while the
/// turn runs): how long the conversations of an instance that died wait for another.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The first wait between two tries for a lease another instance holds; it doubles up to
/// [`MAX_LEASE_POLL`].
const FIRST_LEASE_POLL: Duration = Duration::from_millis(25);
const MAX_LEASE_POLL: Duration = Duration::from_millis(500);

/// Cross-instance exclusion of a conversation's turns: before a turn, the instance takes the
/// lease `session:<key>` in a [`LeaseStore`] shared with the other instances (the state
/// database), renews it while the turn runs, and gives it up at the end. An instance that dies
/// holding one stops renewing it, and it expires after its time to live.
#[derive(Clone)]
pub struct SessionLeases {
    store: Arc<dyn LeaseStore>,
    owner: Arc<str>,
    ttl: Duration,
}

impl std::fmt::Debug for SessionLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLeases")
            .field("owner", &self.owner)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionLeases {
    /// Leases in `store` held as `owner` (unique to this process: two instances with one owner
    /// name would share their leases), for [`DEFAULT_LEASE_TTL`].
    pub fn new(store: Arc<dyn LeaseStore>, owner: impl Into<String>) -> Self {
        Self {
            store,
            owner: owner.into().into(),
            ttl: DEFAULT_LEASE_TTL,
        }
    }

    /// How long a lease lasts without renewal (at least one second).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_secs(1));
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease's name for a conversation.
    pub fn name(session: &SessionKey) -> String {
        format!("session:{session}")
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    async fn try_take(&self, name: &str) -> Result<bool, AgentError> {
        Ok(self
            .store
            .try_lease(name, &self.owner, picoclaw_state::now_ms(), self.ttl_ms())
            .await?)
    }

    /// Takes the lease of `session`, waiting while another instance holds it, and keeps it
    /// renewed until the returned lease is released or dropped.
    async fn acquire(&self, session: &SessionKey) -> Result<HeldLease, AgentError> {
        let name = Self::name(session);
        let mut wait = FIRST_LEASE_POLL;
        let mut waited = Duration::ZERO;
        let mut told = false;
        while !self.try_take(&name).await? {
            if !told && waited >= self.ttl {
                // Longer than a lease lives: the holder is alive and busy (a long turn).
                tracing::info!(session = %session, waited_s = waited.as_secs(), "waiting for another instance to finish this conversation's turn");
                told = true;
            }
            tokio::time::sleep(wait).await;
            waited += wait;
            wait = (wait * 2).min(MAX_LEASE_POLL);
        }
        let stop = CancellationToken::new();
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = tokio::spawn(renew(
            self.clone(),
            name.clone(),
            stop.clone(),
            lost.clone(),
        ));
        Ok(HeldLease {
            leases: self.clone(),
            name,
            stop,
            lost,
            renewing: Some(renewing),
        })
    }
}

/// Renews the lease every third of its time to live until `stop`.
async fn renew(
    leases: SessionLeases,
    name: String,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
) {
    let every = leases.ttl / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match leases.try_take(&name).await {
            Ok(true) => {}
            Ok(false) => {
                // Not renewed in time (this process stalled longer than the lease lives) and
                // another instance took it: say so, the turn goes on.
                if !lost.swap(true, Ordering::Relaxed) {
                    tracing::error!(lease = %name, "the session lease was lost to another instance while a turn ran; raise state.session_lease_seconds if turns stall this long");
                }
            }
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "could not renew the session lease; trying again")
            }
        }
    }
}

/// A lease this instance holds, renewed in the background.
struct HeldLease {
    leases: SessionLeases,
    name: String,
    stop: CancellationToken,
    lost: Arc<AtomicBool>,
    /// The renewing task: waited for before the release, so that a renewal already on its way
    /// to the database cannot take the lease again after it was given back.
    renewing: Option<tokio::task::JoinHandle<()>>,
}

impl HeldLease {
    async fn release(mut self) {
        self.stop.cancel();
        if let Some(renewing) = self.renewing.take() {
            let _ = renewing.await;
        }
        if let Err(e) = self
            .leases
            .store
            .release_lease(&self.name, &self.leases.owner)
            .await
        {
            tracing::warn!(lease = %self.name, error = %e, "could not release the session lease; it expires by itself");
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A conversation held for turns by this instance (see [`Agent::hold_session`]): its local
/// lock, its lease when the agent has [`SessionLeases`], and a turn permit when the agent's
/// turns are bounded. Released by [`SessionGuard::release`], or when dropped.
pub struct SessionGuard {
    agent: Agent,
    session: SessionKey,
    local: Option<OwnedMutexGuard<()>>,
    lease: Option<HeldLease>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for SessionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionGuard")
            .field("session", &self.session)
            .field("leased", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionGuard {
    pub fn session(&self) -> &SessionKey {
        &self.session
    }

    /// Whether the lease was taken over by another instance while held (this process stalled
    /// longer than the lease's time to live).
    pub fn lease_lost(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.lost.load(Ordering::Relaxed))
    }

    /// Whether `agent` took this guard.
    pub(super) fn is_of(&self, agent: &Agent) -> bool {
        Arc::ptr_eq(&self.agent.inner, &agent.inner)
    }

    /// Gives the lease up now (waiting for the store), then the local lock. The release runs
    /// to its end even when the caller stops waiting for it (a request's timeout), and the
    /// local lock is let go only after it, so that the next turn here never has its lease
    /// given back from under it.
    pub async fn release(mut self) {
        let (Some(lease), Ok(rt)) = (self.lease.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let local = self.local.take();
        let (agent, session) = (self.agent.clone(), self.session.clone());
        let _ = rt
            .spawn(async move {
                lease.release().await;
                drop(local);
                forget_idle_lock(&agent, &session);
            })
            .await;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let (local, lease) = (self.local.take(), self.lease.take());
        match (lease, tokio::runtime::Handle::try_current()) {
            // Dropped without `release` (the turn's future was dropped: a timeout, a closed
            // connection): give the lease up in the background, and only then the local lock
            // — the next local turn takes the lease under the same owner, and a release after
            // that would take it from under it.
            (Some(lease), Ok(rt)) => {
                let (agent, session) = (self.agent.clone(), self.session.clone());
                rt.spawn(async move {
                    lease.release().await;
                    drop(local);
                    forget_idle_lock(&agent, &session);
                });
            }
            _ => {
                drop(local);
                forget_idle_lock(&self.agent, &self.session);
            }
        }
    }
}

/// Removes the session's lock from the map when only the map holds it: nobody waits for it, so
/// the entry can go (idle sessions cost no memory), also when a turn's future was dropped.
fn forget_idle_lock(agent: &Agent, session: &SessionKey) {
    let mut locks = match agent.inner.session_locks.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if locks
        .get(session)
        .is_some_and(|l| Arc::strong_count(l) == 1)
    {
        locks.remove(session);
    }
}

impl Agent {
    /// Holds `session` for turns: waits for this process's turn of it, then for its lease
    /// (when the agent shares its state with other instances, [`AgentBuilder::session_leases`]),
    /// then for a turn permit (when turns are bounded, [`AgentBuilder::turn_permits`]).
    /// Run turns under it with [`Agent::turn_held`].
    ///
    /// [`AgentBuilder::session_leases`]: super::AgentBuilder::session_leases
    /// [`AgentBuilder::turn_permits`]: super::AgentBuilder::turn_permits
    pub async fn hold_session(&self, session: &SessionKey) -> Result<SessionGuard, AgentError> {
        let lock = {
            let mut locks = match self.inner.session_locks.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            locks.entry(session.clone()).or_default().clone()
        };
        let mut guard = SessionGuard {
            agent: self.clone(),
            session: session.clone(),
            local: None,
            lease: None,
            _permit: None,
        };
        guard.local = Some(lock.lock_owned().await);
        if let Some(leases) = &self.inner.leases {
            guard.lease = Some(leases.acquire(session).await?);
        }
        if let Some(permits) = &self.inner.permits {
            guard._permit = Some(acquire(permits).await?);
        }
        Ok(guard)
    }
}

async fn acquire(permits: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, AgentError> {
    Arc::clone(permits)
        .acquire_owned()
        .await
        .map_err(|_| AgentError::Setup("the turn permits were closed".into()))
}
