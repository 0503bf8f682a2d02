//! `echo-upper`: a picoclaw provider that answers the last user message in upper case,
//! streamed in two or more pieces. Copy this crate to start a provider of your own: replace
//! [`EchoUpper`]'s `chat` and `stream` with calls to your model, [`Settings`] with the settings
//! it needs, and keep [`factory`] and `src/main.rs` as they are.

use async_trait::async_trait;
use futures::StreamExt;
use picoclaw_api::{
    Capabilities, ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, LlmProvider,
    ProviderError, Role, StreamEvent, Usage,
};
use picoclaw_providers::ProviderSpec;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The provider. It is stateless about sessions, as every provider is: each request carries
/// the whole conversation.
#[derive(Clone, Debug, Default)]
pub struct EchoUpper {
    /// A pause between two pieces of a streamed answer.
    delay: Duration,
}

impl EchoUpper {
    /// An echo-upper that streams without pausing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pauses `delay` between the pieces of a streamed answer (to watch it stream).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The last user message in upper case (empty when there is none).
fn answer_to(req: &ChatRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.text().to_uppercase())
        .unwrap_or_default()
}

/// `text` in pieces: two or more when it has two characters or more, at most eight characters
/// each.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(2).clamp(1, 8);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

#[async_trait]
impl LlmProvider for EchoUpper {
    fn name(&self) -> &str {
        "echo-upper"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default().with_streaming()
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let text = answer_to(&req);
        // Words stand in for tokens.
        let prompt: usize = req
            .messages
            .iter()
            .map(|m| m.text().split_whitespace().count())
            .sum();
        let usage = Usage::new(prompt as u64, text.split_whitespace().count() as u64);
        Ok(
            ChatResponse::new(ChatMessage::assistant(text), FinishReason::Stop)
                .with_usage(Some(usage))
                .with_model(Some(req.model)),
        )
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        let answer = self.chat(req).await?;
        // Text deltas first, then exactly one Completed with the whole answer.
        let mut events: Vec<StreamEvent> = pieces(&answer.message.text())
            .into_iter()
            .map(StreamEvent::TextDelta)
            .collect();
        events.push(StreamEvent::Completed(answer));
        let delay = self.delay;
        let stream = futures::stream::iter(events.into_iter().enumerate()).then(
            move |(i, event)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok(event)
            },
        );
        Ok(Box::pin(stream))
    }
}

/// The `providers.echo-upper` section of config.json. Keys it does not name are picoclaw's
/// (`api_key`, `api_base`...) and are ignored here.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Milliseconds between the pieces of a streamed answer.
    pub delay_ms: u64,
}

/// Builds an echo-upper for a model: registered with
/// `Extensions::new().with_provider("echo-upper", factory)`, called for every
/// `"model": "echo-upper/<anything>"`, with the `providers.echo-upper` section as its settings.
pub fn factory(spec: &ProviderSpec) -> Result<Arc<dyn LlmProvider>, ProviderError> {
    let settings: Settings = spec.settings()?;
    Ok(Arc::new(
        EchoUpper::new().with_delay(Duration::from_millis(settings.delay_ms)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_two_or_more_and_keep_every_char() {
        assert_eq!(pieces("HELLO"), ["HEL", "LO"]);
        assert_eq!(pieces("ÄÖ"), ["Ä", "Ö"]);
        assert_eq!(pieces("X"), ["X"]);
        assert!(pieces("").is_empty());
        let long = "A MUCH LONGER ANSWER THAN EIGHT CHARACTERS";
        assert!(pieces(long).iter().all(|p| p.chars().count() <= 8));
        assert_eq!(pieces(long).concat(), long);
    }
}
