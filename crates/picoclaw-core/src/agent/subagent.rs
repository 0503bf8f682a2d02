//! Sub-agents: the [`SubagentRunner`] that runs a task on a child agent, each task in a session
//! of its own (`subagent:<parent session>:<n>`).

use super::{Agent, AgentError, TurnEnd, TurnOptions};
use picoclaw_api::{ChatMessage, SessionKey};
use picoclaw_tools::{SubagentError, SubagentRunner, ToolContext};

pub(super) const SUBAGENT_INSTRUCTIONS: &str = "You are a sub-agent: another agent gave you one task. Do \
it with your tools, then answer with the result only — it goes back to the agent that asked, not \
to a person.";

/// Runs sub-agent tasks on a child agent, each in a session of its own.
pub(super) struct ChildRunner {
    pub(super) child: Agent,
    pub(super) next: std::sync::atomic::AtomicU64,
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
