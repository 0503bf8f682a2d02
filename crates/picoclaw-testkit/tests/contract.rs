//! The contract suite passes a correct in-process provider and fails each kind of wrong one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use futures::FutureExt;
use picoclaw_api::provider::stream_of;
use picoclaw_api::{
    ChatMessage, ChatRequest, ChatResponse, ChatStream, FinishReason, LlmProvider, ProviderError,
    StreamEvent, ToolCall,
};
use picoclaw_testkit::conformance::{Contract, contract_suite};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    EmptyName,
    DeltasDisagree,
    EventAfterCompleted,
    NoCompleted,
    CallsWithoutTools,
    StreamDiffersFromChat,
    ToolFinishWithoutCalls,
    BrokenAfterDroppedStream,
}

/// Answers "okay" (streamed as "ok", "ay"), with one fault.
#[derive(Debug)]
struct Toy {
    fault: Fault,
    streams: AtomicUsize,
}

impl Toy {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            streams: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl LlmProvider for Toy {
    fn name(&self) -> &str {
        if self.fault == Fault::EmptyName {
            ""
        } else {
            "toy"
        }
    }

    async fn chat(&self, _req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        if self.fault == Fault::BrokenAfterDroppedStream && self.streams.load(Ordering::SeqCst) > 2
        {
            return Err(ProviderError::response(
                "toy",
                "still busy with a dropped stream",
            ));
        }
        Ok(match self.fault {
            Fault::CallsWithoutTools => ChatResponse::new(
                ChatMessage::assistant_with_tools("", vec![ToolCall::new("c1", "exec", "{}")]),
                FinishReason::ToolCalls,
            ),
            Fault::ToolFinishWithoutCalls => {
                ChatResponse::new(ChatMessage::assistant("okay"), FinishReason::ToolCalls)
            }
            _ => ChatResponse::new(ChatMessage::assistant("okay"), FinishReason::Stop),
        })
    }

    async fn stream(&self, req: ChatRequest) -> Result<ChatStream, ProviderError> {
        self.streams.fetch_add(1, Ordering::SeqCst);
        let mut answer = self.chat(req).await?;
        let delta = |s: &str| Ok(StreamEvent::TextDelta(s.to_owned()));
        let mut events = vec![delta("ok"), delta("ay")];
        match self.fault {
            Fault::DeltasDisagree => events.push(delta("!")),
            Fault::StreamDiffersFromChat => {
                events = vec![delta("okay?")];
                answer.message = ChatMessage::assistant("okay?");
            }
            _ => {}
        }
        if self.fault != Fault::NoCompleted {
            events.push(Ok(StreamEvent::Completed(answer)));
        }
        if self.fault == Fault::EventAfterCompleted {
            events.push(delta(" and more"));
        }
        Ok(stream_of(events))
    }
}

async fn fails(fault: Fault) -> String {
    let toy = Toy::new(fault);
    let outcome = AssertUnwindSafe(contract_suite(&toy)).catch_unwind().await;
    let Err(panic) = outcome else {
        panic!("the contract suite passed a provider with {fault:?}");
    };
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_correct_provider_passes() {
    contract_suite(&Toy::new(Fault::None)).await;
    Contract::new()
        .expect_answer(|_| "okay".to_owned())
        .min_deltas(2)
        .run(&Toy::new(Fault::None))
        .await;
}

#[tokio::test]
async fn each_fault_fails_with_a_message_naming_it() {
    for (fault, says) in [
        (Fault::EmptyName, "name() is empty"),
        (Fault::DeltasDisagree, "deltas joined differ"),
        (Fault::EventAfterCompleted, "followed Completed"),
        (Fault::NoCompleted, "without Completed"),
        (Fault::CallsWithoutTools, "no tool was offered"),
        (Fault::StreamDiffersFromChat, "chat and stream"),
        (Fault::ToolFinishWithoutCalls, "finish reason"),
        (Fault::BrokenAfterDroppedStream, "dropped stream"),
    ] {
        let message = fails(fault).await;
        assert!(
            message.contains("contract:") && message.contains(says),
            "{fault:?}: {message}"
        );
    }
}

#[tokio::test]
async fn expectations_are_checked() {
    let message = {
        let toy = Toy::new(Fault::None);
        let outcome = AssertUnwindSafe(
            Contract::new()
                .expect_answer(|_| "OKAY".to_owned())
                .run(&toy),
        )
        .catch_unwind()
        .await;
        let panic = outcome.expect_err("a different answer fails");
        panic.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    assert!(message.contains("not the expected answer"), "{message}");

    let toy = Toy::new(Fault::None);
    let outcome = AssertUnwindSafe(Contract::new().min_deltas(3).run(&toy))
        .catch_unwind()
        .await;
    assert!(outcome.is_err(), "two deltas are fewer than three");
}
