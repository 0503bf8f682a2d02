//! Timed work: the cron runner and the heartbeat, both driven by a [`Clock`] so tests control
//! time instead of sleeping.
//!
//! **Cron** runs the `CronStore`'s jobs when they are due: a job with `deliver` sends its
//! message as it is (a reminder); otherwise the message is an agent turn (in the job's own
//! session `cron-<id>`, as the original PicoClaw does) whose answer is sent to the job's chat. Answers go
//! through the outbox like every reply. Missed runs (the gateway was down): a job runs **once**
//! when the gateway is back, then keeps its rhythm — ten missed hourly runs are one run, not ten;
//! a one-shot reminder that was missed is sent late rather than never. Every run is claimed in
//! the store first, so several gateway instances never run it twice.
//!
//! **Heartbeat**: every `heartbeat.interval` minutes the agent reads HEARTBEAT.md and acts on the
//! tasks in it. A file without tasks costs no model call. The turn runs in its own session
//! (`heartbeat`), and an answer of `HEARTBEAT_OK` (nothing to report) is never sent; anything
//! else goes to the chat the user last wrote from.
//!
//! Both start their turns as [`TurnOrigin::Cron`] / [`TurnOrigin::Heartbeat`], which the `cron`
//! tool reads: a scheduled turn, or a sub-agent it starts, cannot add jobs (no job breeds jobs).

use picoclaw_api::OutboundMessage;
use picoclaw_core::{Agent, ChatMessage, SessionKey, TurnOptions, TurnOrigin};
use picoclaw_state::{CronJob, StateBackend, StateError};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Milliseconds since the epoch, from the system or from a test.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real time.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        picoclaw_state::now_ms()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
            Ordering::SeqCst,
        );
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub use crate::agents::LAST_CHAT;

/// What the answer of a heartbeat with nothing to report is.
pub const HEARTBEAT_OK: &str = "HEARTBEAT_OK";

async fn send(
    store: &dyn StateBackend,
    ready: &Notify,
    channel: &str,
    chat_id: &str,
    text: &str,
    now: i64,
) -> Result<(), StateError> {
    let msg = OutboundMessage::new(channel, chat_id, text);
    let payload = serde_json::to_string(&msg).map_err(|e| StateError::Invalid(e.to_string()))?;
    store
        .enqueue_outbound(channel, chat_id, &payload, now)
        .await?;
    ready.notify_one();
    Ok(())
}

/// Runs due cron jobs.
pub struct CronRunner {
    store: Arc<dyn StateBackend>,
    agents: Arc<crate::AgentSet>,
    clock: Arc<dyn Clock>,
    outbox_ready: Arc<Notify>,
}

impl std::fmt::Debug for CronRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CronRunner").finish_non_exhaustive()
    }
}

impl CronRunner {
    pub fn new(
        store: Arc<dyn StateBackend>,
        agent: Agent,
        clock: Arc<dyn Clock>,
        outbox_ready: Arc<Notify>,
    ) -> Self {
        let agents = Arc::new(crate::AgentSet::one(agent, store.clone()));
        Self::with_agents(agents, clock, outbox_ready)
    }

    /// Runs each job on the agent whose conversation made it (`agent:<id>:...` keys).
    pub fn with_agents(
        agents: Arc<crate::AgentSet>,
        clock: Arc<dyn Clock>,
        outbox_ready: Arc<Notify>,
    ) -> Self {
        Self {
            store: agents.store().clone(),
            agents,
            clock,
            outbox_ready,
        }
    }

    /// Runs every job due now (each claimed first, so it runs once across instances). Returns
    /// the jobs this call ran.
    pub async fn tick(&self) -> Result<Vec<String>, StateError> {
        let now = self.clock.now_ms();
        let mut ran = Vec::new();
        for job in self.store.due_jobs(now, 32).await? {
            let Some(at) = job.state.next_run_at_ms else {
                continue;
            };
            let next = job.schedule.following(at, now);
            if !self.store.claim_run(&job.id, at, next).await? {
                continue; // another instance took it
            }
            let result = self.execute(&job, now).await;
            if let Err(e) = &result {
                tracing::warn!(job = %job.name, error = %e, "cron job failed");
            }
            self.store.record_result(&job.id, now, result).await?;
            ran.push(job.id.clone());
        }
        Ok(ran)
    }

    async fn execute(&self, job: &CronJob, now: i64) -> Result<(), String> {
        let target = match (&job.payload.channel, &job.payload.to) {
            (Some(c), Some(t)) if !c.is_empty() && !t.is_empty() => Some((c.clone(), t.clone())),
            _ => None,
        };
        let text = if job.payload.deliver {
            job.payload.message.clone()
        } else {
            // Its own session, as the original PicoClaw does: the user's history stays clean.
            // (Another agent's job: in that agent's key space, run by it.)
            let own = format!("cron-{}", job.id);
            let session = match &job.payload.agent {
                Some(agent) => self.agents.session_key(agent, &own),
                None => SessionKey::new(own),
            };
            let prompt = format!(
                "[Scheduled task \"{}\", {}] {}",
                job.name,
                job.schedule.describe(),
                job.payload.message
            );
            // Marked as a cron turn: it (and its sub-agents) cannot schedule more jobs.
            let mut options = TurnOptions::new().origin(TurnOrigin::Cron);
            if let Some((c, t)) = &target {
                options = options.chat(c.clone(), t.clone());
            }
            let outcome = self
                .agents
                .for_session(session.as_str())
                .agent
                .turn(&session, ChatMessage::user(prompt), options, &())
                .await
                .map_err(|e| e.to_string())?;
            outcome.text
        };
        match target {
            Some((channel, chat)) if !text.trim().is_empty() => send(
                &*self.store,
                &self.outbox_ready,
                &channel,
                &chat,
                &text,
                now,
            )
            .await
            .map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// Ticks until `stop`: at least every second, sooner when a job is due sooner.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "cron tick failed");
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stop.cancelled() => break,
            }
        }
    }
}

/// Whether HEARTBEAT.md holds any task: a line that is not blank, a heading, an HTML comment,
/// or an empty list item.
pub fn has_tasks(text: &str) -> bool {
    // Drop comments first (an unclosed one runs to the end).
    let mut rest = text;
    let mut visible = String::with_capacity(text.len());
    while let Some(start) = rest.find("<!--") {
        visible.push_str(&rest[..start]);
        match rest[start..].find("-->") {
            Some(end) => rest = &rest[start + end + 3..],
            None => {
                rest = "";
                break;
            }
        }
    }
    visible.push_str(rest);
    visible.lines().any(|line| {
        let l = line.trim().trim_start_matches(['-', '*', '+']).trim();
        let l = l
            .strip_prefix("[ ]")
            .or_else(|| l.strip_prefix("[x]"))
            .unwrap_or(l)
            .trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

/// What one heartbeat did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Beat {
    /// HEARTBEAT.md has no tasks (or no file): no model call.
    NoTasks,
    /// The agent had nothing to report: nothing sent.
    NothingToReport,
    /// The agent's report was sent to this chat.
    Sent { channel: String, chat_id: String },
    /// The agent reported, but no chat is known to send it to (logged).
    NoChat,
}

/// The periodic heartbeat.
pub struct Heartbeat {
    agent: Agent,
    store: Arc<dyn StateBackend>,
    workspace: PathBuf,
    /// Its conversation (`heartbeat`; `agent:<id>:heartbeat` for another agent).
    session: SessionKey,
    /// Where the chat it reports to is noted (see [`LAST_CHAT`]).
    last_chat: String,
    clock: Arc<dyn Clock>,
    outbox_ready: Arc<Notify>,
    /// Who claims the beats (this process, see [`crate::instance_id`]).
    owner: String,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl Heartbeat {
    pub fn new(
        agent: Agent,
        store: Arc<dyn StateBackend>,
        workspace: PathBuf,
        clock: Arc<dyn Clock>,
        outbox_ready: Arc<Notify>,
    ) -> Self {
        Self {
            agent,
            store,
            workspace,
            session: SessionKey::new("heartbeat"),
            last_chat: LAST_CHAT.1.to_owned(),
            clock,
            outbox_ready,
            owner: crate::assemble::instance_id().to_owned(),
        }
    }

    /// Claims beats as `owner` instead of this process's [`crate::instance_id`].
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// The heartbeat of agent `id` of `agents` (its conversation and the chat it last heard
    /// from).
    pub fn for_agent(mut self, agents: &crate::AgentSet, id: &str) -> Self {
        self.session = agents.session_key(id, "heartbeat");
        self.last_chat = agents.last_chat_key(id);
        self
    }

    /// One heartbeat.
    pub async fn beat(&self) -> Result<Beat, String> {
        let file = self.workspace.join("HEARTBEAT.md");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if !has_tasks(&text) {
            return Ok(Beat::NoTasks);
        }
        let prompt = format!(
            "Heartbeat: it is time to check the tasks in HEARTBEAT.md (below). Do what they ask. \
             If nothing needs the user's attention, reply with exactly {HEARTBEAT_OK} and \
             nothing else.\n\n{}",
            text.trim()
        );
        let outcome = self
            .agent
            .turn(
                &self.session,
                ChatMessage::user(prompt),
                TurnOptions::new().origin(TurnOrigin::Heartbeat),
                &(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let answer = outcome.text.trim();
        let quiet = answer.is_empty()
            || answer.trim_matches(|c: char| !c.is_alphanumeric() && c != '_') == HEARTBEAT_OK;
        if quiet {
            return Ok(Beat::NothingToReport);
        }
        let last = self
            .store
            .kv_get(LAST_CHAT.0, &self.last_chat)
            .await
            .map_err(|e| e.to_string())?;
        let Some((channel, chat_id)) = last.as_deref().and_then(|v| v.split_once('\n')) else {
            tracing::info!(report = %answer, "heartbeat report, but no chat to send it to yet");
            return Ok(Beat::NoChat);
        };
        // The marker never reaches a chat, even inside a longer answer.
        let report = answer.replace(HEARTBEAT_OK, "").trim().to_owned();
        send(
            &*self.store,
            &self.outbox_ready,
            channel,
            chat_id,
            &report,
            self.clock.now_ms(),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Beat::Sent {
            channel: channel.to_owned(),
            chat_id: chat_id.to_owned(),
        })
    }

    /// Whether this instance beats now: the lease `heartbeat:<session>` is taken for nine
    /// tenths of `interval` and not given back, so instances sharing the state database beat
    /// once per interval between them (and another takes over when one stops).
    pub async fn claim(&self, interval: Duration) -> bool {
        let ttl = i64::try_from(interval.as_millis() / 10 * 9).unwrap_or(i64::MAX);
        let name = format!("heartbeat:{}", self.session);
        match self
            .store
            .try_lease(&name, &self.owner, self.clock.now_ms(), ttl.max(1))
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat skipped: the state database did not answer");
                false
            }
        }
    }

    /// Beats every `interval` until `stop` (when [`claim`](Self::claim) says so).
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => break,
            }
            if !self.claim(interval).await {
                tracing::debug!("heartbeat: another instance beat this interval");
                continue;
            }
            match self.beat().await {
                Ok(beat) => tracing::debug!(?beat, "heartbeat"),
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_lines_are_tasks() {
        assert!(!has_tasks(""));
        assert!(!has_tasks(
            "# Heartbeat\n\n<!-- Tasks to check periodically, one per line. Empty means nothing to \ndo. -->\n"
        ));
        assert!(!has_tasks("# Heartbeat\n\n- \n- [ ]\n<!-- x -->\n"));
        assert!(has_tasks("# Heartbeat\n\n- Check the weather in Lisbon\n"));
        assert!(has_tasks("<!-- note --> water the plants"));
        assert!(has_tasks("# H\n<!--\nmulti\nline\n-->\nremind me of X\n"));
    }
}
