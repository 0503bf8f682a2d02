//! Compaction over long conversations: history stays within the budget, the summary is what the
//! next request carries, and a ContextLength error triggers compaction and one retry.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_core::*;
use picoclaw_state::InMemoryStore;
use picoclaw_testkit::{Reply, ScriptedProvider};
use std::sync::{Arc, Mutex};

/// Answers summary requests with a numbered summary and everything else with a long answer,
/// recording the size of every request.
#[derive(Default)]
struct Summariser {
    requests: Mutex<Vec<ChatRequest>>,
    summaries: Mutex<usize>,
}

fn is_summary_request(req: &ChatRequest) -> bool {
    req.messages
        .first()
        .is_some_and(|m| m.text().starts_with("You compress conversations"))
}

#[async_trait]
impl LlmProvider for Summariser {
    fn name(&self) -> &str {
        "summariser"
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let summary = is_summary_request(&req);
        self.requests.lock().unwrap().push(req);
        let text = if summary {
            let mut n = self.summaries.lock().unwrap();
            *n += 1;
            format!("SUMMARY-{}: the user asked many numbered questions.", *n)
        } else {
            "Here is a fairly long answer that takes up room in the history. ".repeat(4)
        };
        Ok(ChatResponse::new(
            ChatMessage::assistant(text),
            FinishReason::Stop,
        ))
    }
}

fn tokens(req: &ChatRequest) -> usize {
    req.messages
        .iter()
        .map(picoclaw_core::context::message_tokens)
        .sum()
}

#[tokio::test]
async fn a_long_conversation_stays_within_the_window() {
    let provider = Arc::new(Summariser::default());
    let mut config = AgentConfig::default();
    config.model = "m".into();
    config.context_window = 3_000;
    config.max_tokens = Some(500);
    config.stream = false;
    let agent = Agent::builder(provider.clone())
        .config(config)
        .session_store(Arc::new(InMemoryStore::new()))
        .build()
        .unwrap();
    let key = SessionKey::new("long");
    for i in 0..300 {
        let q = format!("Question {i}: please tell me something interesting about number {i}. ");
        agent.chat(&key, &q.repeat(3)).await.unwrap();
    }
    let requests = provider.requests.lock().unwrap();
    let turns: Vec<&ChatRequest> = requests.iter().filter(|r| !is_summary_request(r)).collect();
    assert_eq!(turns.len(), 300);
    let summaries = requests.len() - turns.len();
    assert!(
        summaries >= 10,
        "compaction ran repeatedly ({summaries} times)"
    );
    for r in &turns {
        assert!(
            tokens(r) <= 2_500,
            "a request of {} tokens exceeds the budget",
            tokens(r)
        );
    }
    // The last request carries the latest summary, not the early questions.
    let last = turns.last().unwrap();
    let system = last.messages[0].text();
    assert!(system.contains(&format!("SUMMARY-{summaries}")), "{system}");
    let all: String = last.messages.iter().map(|m| m.text()).collect();
    assert!(
        !all.contains("Question 5:"),
        "early turns are summarised away"
    );
    assert!(all.contains("Question 299:"));
    // The summary request itself folds in the previous summary.
    let second_summary = requests
        .iter()
        .filter(|r| is_summary_request(r))
        .nth(1)
        .unwrap();
    assert!(second_summary.messages[1].text().contains("SUMMARY-1"));
}

#[tokio::test]
async fn a_context_length_error_compacts_and_retries_once() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::text("first answer"),
        Reply::text("second answer"),
        Reply::error(400, "This model's maximum context length is 8192 tokens"),
        Reply::text("SUMMARY: two questions were answered."),
        Reply::text("third answer, after compaction"),
    ]));
    let mut config = AgentConfig::default();
    config.model = "m".into();
    config.stream = false;
    let agent = Agent::builder(provider.clone())
        .config(config)
        .session_store(Arc::new(InMemoryStore::new()))
        .build()
        .unwrap();
    let key = SessionKey::new("ctx");
    agent.chat(&key, "q1").await.unwrap();
    agent.chat(&key, "q2").await.unwrap();
    let out = agent.chat(&key, "q3").await.unwrap();
    assert_eq!(out.text, "third answer, after compaction");
    let reqs = provider.requests();
    assert!(is_summary_request(&reqs[3]), "the 4th call summarises");
    let retry = &reqs[4];
    assert!(
        retry.messages[0]
            .text()
            .contains("SUMMARY: two questions were answered.")
    );
    let texts: Vec<String> = retry.messages.iter().map(|m| m.text()).collect();
    assert!(!texts.iter().any(|t| t == "q1"), "{texts:?}");
    assert_eq!(texts.last().unwrap(), "q3");

    // A second ContextLength in the same turn is reported, not looped on.
    provider.push(Reply::error(400, "maximum context length exceeded"));
    provider.push(Reply::text("SUMMARY again"));
    provider.push(Reply::error(400, "maximum context length exceeded"));
    let err = agent.chat(&key, "q4").await.unwrap_err();
    assert!(err.to_string().contains("context window"), "{err}");
}
