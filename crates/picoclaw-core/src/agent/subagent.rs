//! Sub-agents: the [`SubagentRunner`] that runs a task on a child agent, each task in a session
//! of its own (`subagent:<parent session>:<n>`).

use super::{Agent, AgentError, TurnEnd, TurnOptions};
use picoclaw_api::{ChatMessage, SessionKey};
use picoclaw_tools::{SubagentError, SubagentRunner, ToolContext};
use std::sync::Arc;

pub(super) const SUBAGENT_INSTRUCTIONS: &str = "You are a sub-agent: another agent gave you one task. Do \
it with your tools, then answer with the result only — it goes back to the agent that asked, not \
to a person.";

/// The other agents of a gateway a turn may hand a task to (see [`Agent::delegate`]).
pub trait PeerAgents: Send + Sync {
    /// Agent `id`, if there is one.
    fn agent(&self, id: &str) -> Option<Agent>;

    /// The key of conversation `key` in agent `id`'s key space.
    fn session_key(&self, id: &str, key: &str) -> SessionKey;
}

/// Who this agent may hand tasks to: the other agents, the ids it may use (`*` for any), and
/// its own id.
#[derive(Clone)]
pub(super) struct Peers {
    pub(super) agents: Arc<dyn PeerAgents>,
    pub(super) allowed: Vec<String>,
    pub(super) me: String,
}

/// Runs sub-agent tasks on a child agent, each in a session of its own.
pub(super) struct ChildRunner {
    pub(super) child: Agent,
    pub(super) next: std::sync::atomic::AtomicU64,
    pub(super) peers: Option<Peers>,
}

#[async_trait::async_trait]
impl SubagentRunner for ChildRunner {
    async fn run(
        &self,
        task: &str,
        label: &str,
        parent: &ToolContext,
    ) -> Result<String, SubagentError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = SessionKey::new(format!("subagent:{}:{n}", parent.session_key));
        tracing::info!(%session, label, "sub-agent started");
        // The parent's chat, and its origin: a scheduled turn stays scheduled in its sub-agents.
        let mut options = TurnOptions::new().origin(parent.origin);
        if let (Some(c), Some(t)) = (&parent.channel, &parent.chat_id) {
            options = options.chat(c.clone(), t.clone());
        }
        let outcome = self
            .child
            .turn(&session, ChatMessage::user(task), options, &())
            .await
            .map_err(subagent_error)?;
        if outcome.end == TurnEnd::MaxIterations {
            return Err(SubagentError::IterationLimit {
                rounds: self.child.inner.config.max_tool_iterations,
            });
        }
        Ok(outcome.text)
    }

    async fn run_on(
        &self,
        agent: &str,
        task: &str,
        label: &str,
        parent: &ToolContext,
    ) -> Result<String, SubagentError> {
        let target = agent.trim().to_ascii_lowercase();
        let Some(peers) = &self.peers else {
            return Err(SubagentError::Other(format!(
                "there is no agent '{agent}' to hand the task to here (several agents run only \
                 in the gateway, with agents.list)"
            )));
        };
        if target == peers.me {
            return self.run(task, label, parent).await;
        }
        let allowed = peers
            .allowed
            .iter()
            .any(|a| a.trim() == "*" || a.trim().eq_ignore_ascii_case(&target));
        if !allowed {
            let list = if peers.allowed.is_empty() {
                "it may hand tasks to no other agent".to_owned()
            } else {
                format!("it may hand tasks to: {}", peers.allowed.join(", "))
            };
            return Err(SubagentError::Other(format!(
                "agent '{target}' is not in this agent's subagents.allow_agents ({list})"
            )));
        }
        let Some(peer) = peers.agents.agent(&target) else {
            return Err(SubagentError::Other(format!(
                "there is no agent '{target}'"
            )));
        };
        // In the other agent's key space, on its own sub-agent: its model, workspace and tools.
        let mut ctx = parent.clone();
        ctx.session_key = peers
            .agents
            .session_key(&target, parent.session_key.as_str());
        tracing::info!(from = %peers.me, to = %target, label, "task handed to another agent");
        peer.delegate(task, label, &ctx).await
    }
}

/// The child turn's error as the sub-agent's: the provider's error kept whole.
fn subagent_error(e: AgentError) -> SubagentError {
    match e {
        AgentError::Provider(e) => SubagentError::Model(e),
        AgentError::State(e) => SubagentError::State(e),
        AgentError::Cancelled => SubagentError::Cancelled,
        e @ AgentError::TooLarge { .. } => SubagentError::TooLarge(e.to_string()),
        e @ AgentError::Setup(_) => SubagentError::Other(e.to_string()),
    }
}
