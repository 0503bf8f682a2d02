//! Progress of a turn as it happens: text deltas for streaming, tool calls starting and ending.

use std::sync::Mutex;

/// Something that happened during a turn.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A request to the model is about to be sent (1 for the first of the turn).
    ModelCall { iteration: usize },
    /// Answer text as it arrives (the whole answer at once when not streaming).
    TextDelta(String),
    /// A tool is about to run.
    ToolStarted {
        id: String,
        name: String,
        arguments: String,
    },
    /// A tool finished; `preview` is the start of its result.
    ToolFinished {
        id: String,
        name: String,
        is_error: bool,
        preview: String,
    },
    /// Older history was summarised: `summarized` messages now live in the session's summary,
    /// `kept` stay verbatim.
    Compacted { summarized: usize, kept: usize },
}

/// Receives a turn's events. Implemented for `()` (ignore everything), for closures, and for
/// [`EventLog`].
pub trait EventSink: Send + Sync {
    fn event(&self, event: AgentEvent);
}

impl EventSink for () {
    fn event(&self, _event: AgentEvent) {}
}

impl<F: Fn(AgentEvent) + Send + Sync> EventSink for F {
    fn event(&self, event: AgentEvent) {
        self(event)
    }
}

/// Collects events in memory (handy in tests and for embedders that poll).
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<AgentEvent>>,
}

impl EventLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn take(&self) -> Vec<AgentEvent> {
        match self.events.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl EventSink for EventLog {
    fn event(&self, event: AgentEvent) {
        match self.events.lock() {
            Ok(mut g) => g.push(event),
            Err(p) => p.into_inner().push(event),
        }
    }
}
