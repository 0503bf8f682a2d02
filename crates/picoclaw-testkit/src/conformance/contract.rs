//! The transport-agnostic contract: checks that hold for every correct [`LlmProvider`] and that
//! a wrong one can fail. The provider must be deterministic while the suite runs (the same
//! request gets the same answer), as a test's provider is: an in-process one, or one talking
//! to a scripted endpoint.

use futures::StreamExt;
use picoclaw_api::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmProvider, ProviderError, Role,
    StreamEvent, ToolCall, ToolSpec,
};
use serde_json::json;
use std::collections::HashSet;
use std::fmt;

/// The model id the suite asks for unless told otherwise.
const MODEL: &str = "conformance-model";

type Expect = Box<dyn Fn(&ChatRequest) -> String + Send + Sync>;

/// The contract suite with what the caller knows about the provider's answers. Without any
/// expectation, [`Contract::run`] checks only what holds for every provider.
pub struct Contract {
    model: String,
    expect: Option<Expect>,
    min_deltas: usize,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("model", &self.model)
            .field("expect", &self.expect.is_some())
            .field("min_deltas", &self.min_deltas)
            .finish()
    }
}

impl Default for Contract {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the contract's universal checks on `provider` (see [`Contract::run`]).
pub async fn contract_suite(provider: &dyn LlmProvider) {
    Contract::new().run(provider).await;
}

/// A stream read to its end: the deltas, and the answer or what went wrong.
struct Streamed {
    deltas: Vec<String>,
    result: Result<ChatResponse, String>,
}

impl Contract {
    /// No expectations; requests name the model `conformance-model`.
    pub fn new() -> Self {
        Self {
            model: MODEL.to_owned(),
            expect: None,
            min_deltas: 0,
        }
    }

    /// The model id the suite's requests name.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The exact text the provider answers to a request (the suite's requests end with a user
    /// message: `hello`, then `and now?` after a tool-calling history). Checked for `chat` and
    /// for the stream's deltas and final answer.
    pub fn expect_answer(
        mut self,
        expect: impl Fn(&ChatRequest) -> String + Send + Sync + 'static,
    ) -> Self {
        self.expect = Some(Box::new(expect));
        self
    }

    /// The provider streams: a text answer of at least `n` characters arrives in at least `n`
    /// text deltas.
    pub fn min_deltas(mut self, n: usize) -> Self {
        self.min_deltas = n;
        self
    }

    /// A short conversation, no tools offered.
    pub fn plain_request(&self) -> ChatRequest {
        ChatRequest::new(
            self.model.clone(),
            vec![
                ChatMessage::system("You are a test."),
                ChatMessage::user("hello"),
            ],
        )
    }

    /// A history with a tool call and its result, tools offered, ending with a user message.
    pub fn history_request(&self) -> ChatRequest {
        ChatRequest::new(
            self.model.clone(),
            vec![
                ChatMessage::system("You are a test."),
                ChatMessage::user("list the files"),
                ChatMessage::assistant_with_tools(
                    "",
                    vec![ToolCall::new("call_0", "list_dir", r#"{"path":"."}"#)],
                ),
                ChatMessage::tool_result("call_0", "list_dir", "FILE: a.txt"),
                ChatMessage::user("and now?"),
            ],
        )
        .with_tools(vec![ToolSpec::new(
            "list_dir",
            "List a directory.",
            json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        )])
        .with_max_tokens(Some(256))
    }

    /// Runs every check; panics with `contract:` and what broke.
    ///
    /// - `name()` is non-empty, has no surrounding spaces, and does not change.
    /// - `chat` answers an assistant message; without tools offered it calls none; the finish
    ///   reason is `ToolCalls` exactly when there are tool calls; tool calls have distinct,
    ///   non-empty ids; reported usage adds up; a reported model is non-empty.
    /// - `stream` yields text deltas, then exactly one `Completed`, then nothing (no error, no
    ///   event after it); the deltas joined are the final answer's text; a non-empty answer
    ///   comes with at least one delta (and [`Contract::min_deltas`]).
    /// - `chat` and `stream` give the same answer, for a short request and for a tool-calling
    ///   history.
    /// - A stream dropped after its first event leaves the provider working.
    /// - Two calls at once both succeed with the same answer.
    /// - With [`Contract::expect_answer`], every answer has exactly the expected text.
    pub async fn run(&self, provider: &dyn LlmProvider) {
        let name = provider.name().to_owned();
        assert!(!name.is_empty(), "contract: name() is empty");
        assert_eq!(
            name.trim(),
            name,
            "contract: name() has surrounding whitespace"
        );

        for (what, req, tools) in [
            ("a short request", self.plain_request(), false),
            ("a tool-calling history", self.history_request(), true),
        ] {
            let chat = provider
                .chat(req.clone())
                .await
                .unwrap_or_else(|e| panic!("contract: chat on {what} failed: {e}"));
            self.check_answer(&chat, &req, tools, &format!("chat on {what}"));
            let streamed = read_stream(provider, req.clone()).await;
            let streamed_answer = match streamed.result {
                Ok(r) => r,
                Err(e) => panic!("contract: stream on {what}: {e}"),
            };
            self.check_answer(&streamed_answer, &req, tools, &format!("stream on {what}"));
            let text = streamed_answer.message.text();
            assert_eq!(
                streamed.deltas.concat(),
                text,
                "contract: stream on {what}: the text deltas joined differ from the Completed \
                 answer's text"
            );
            if !text.is_empty() {
                assert!(
                    !streamed.deltas.is_empty(),
                    "contract: stream on {what}: a text answer came without any text delta"
                );
            }
            if self.min_deltas > 0 && text.chars().count() >= self.min_deltas {
                assert!(
                    streamed.deltas.len() >= self.min_deltas,
                    "contract: stream on {what}: {} delta(s) for {text:?}, expected at least {}",
                    streamed.deltas.len(),
                    self.min_deltas
                );
            }
            assert_same(
                &chat,
                &streamed_answer,
                &format!("chat and stream on {what}"),
            );
        }
        assert_eq!(
            provider.name(),
            name,
            "contract: name() changed between calls"
        );

        // A stream dropped after its first event leaves the provider usable.
        let first = provider
            .chat(self.plain_request())
            .await
            .unwrap_or_else(|e| panic!("contract: chat failed: {e}"));
        {
            let mut s = provider
                .stream(self.plain_request())
                .await
                .unwrap_or_else(|e| panic!("contract: stream failed: {e}"));
            let _ = s.next().await;
        }
        let after = provider
            .chat(self.plain_request())
            .await
            .unwrap_or_else(|e| panic!("contract: chat after a dropped stream failed: {e}"));
        assert_same(&first, &after, "chat before and after a dropped stream");

        // Two calls at once.
        let (a, b) = futures::join!(
            provider.chat(self.plain_request()),
            provider.chat(self.plain_request())
        );
        let a = a.unwrap_or_else(|e| panic!("contract: concurrent chat failed: {e}"));
        let b = b.unwrap_or_else(|e| panic!("contract: concurrent chat failed: {e}"));
        assert_same(&first, &a, "concurrent chats");
        assert_same(&first, &b, "concurrent chats");
    }

    fn check_answer(&self, r: &ChatResponse, req: &ChatRequest, tools: bool, what: &str) {
        assert_eq!(
            r.message.role,
            Role::Assistant,
            "contract: {what}: the answer is not an assistant message"
        );
        let calls = &r.message.tool_calls;
        if !tools {
            assert!(
                calls.is_empty(),
                "contract: {what}: tool calls although no tool was offered: {calls:?}"
            );
        }
        assert_eq!(
            r.finish_reason == FinishReason::ToolCalls,
            !calls.is_empty(),
            "contract: {what}: finish reason {:?} with {} tool call(s)",
            r.finish_reason,
            calls.len()
        );
        let mut ids = HashSet::new();
        for call in calls {
            assert!(
                !call.id.is_empty(),
                "contract: {what}: a tool call without an id"
            );
            assert!(
                ids.insert(call.id.as_str()),
                "contract: {what}: two tool calls share the id {}",
                call.id
            );
            assert!(
                !call.name.is_empty(),
                "contract: {what}: a tool call without a name"
            );
        }
        if let Some(u) = &r.usage {
            assert!(
                u.total_tokens >= u.prompt_tokens && u.total_tokens >= u.completion_tokens,
                "contract: {what}: usage total {} is less than a part of it ({u:?})",
                u.total_tokens
            );
        }
        if let Some(model) = &r.model {
            assert!(
                !model.trim().is_empty(),
                "contract: {what}: the answer names an empty model"
            );
        }
        if let Some(expect) = &self.expect {
            assert_eq!(
                r.message.text(),
                expect(req),
                "contract: {what}: not the expected answer"
            );
        }
    }
}

/// The same answer: text, tool calls (names and arguments) and finish reason.
fn assert_same(a: &ChatResponse, b: &ChatResponse, what: &str) {
    assert_eq!(
        a.message.text(),
        b.message.text(),
        "contract: {what} answer different texts"
    );
    let calls = |r: &ChatResponse| -> Vec<(String, String)> {
        r.message
            .tool_calls
            .iter()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect()
    };
    assert_eq!(
        calls(a),
        calls(b),
        "contract: {what} answer different tool calls"
    );
    assert_eq!(
        a.finish_reason, b.finish_reason,
        "contract: {what} give different finish reasons"
    );
}

/// Reads a stream to its end, checking its shape: text deltas, one `Completed`, nothing after.
async fn read_stream(provider: &dyn LlmProvider, req: ChatRequest) -> Streamed {
    let mut deltas = Vec::new();
    let mut s = match provider.stream(req).await {
        Ok(s) => s,
        Err(e) => {
            return Streamed {
                deltas,
                result: Err(format!("stream() failed: {e}")),
            };
        }
    };
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::TextDelta(d)) => deltas.push(d),
            Ok(StreamEvent::Completed(r)) => {
                let result = match s.next().await {
                    None => Ok(r),
                    Some(after) => Err(format!("an item followed Completed: {after:?}")),
                };
                return Streamed { deltas, result };
            }
            Ok(other) => {
                return Streamed {
                    deltas,
                    result: Err(format!("an event the contract does not know: {other:?}")),
                };
            }
            Err(e) => {
                return Streamed {
                    deltas,
                    result: Err(format!("the stream failed: {e}")),
                };
            }
        }
    }
    Streamed {
        deltas,
        result: Err("the stream ended without Completed".to_owned()),
    }
}

/// A stream read for the wire suite: the text, and the answer or the provider's error.
pub(crate) async fn stream_text(
    provider: &dyn LlmProvider,
    req: ChatRequest,
) -> (String, Result<ChatResponse, ProviderError>) {
    let mut s = match provider.stream(req).await {
        Ok(s) => s,
        Err(e) => return (String::new(), Err(e)),
    };
    let mut text = String::new();
    while let Some(item) = s.next().await {
        match item {
            Ok(StreamEvent::TextDelta(d)) => text.push_str(&d),
            Ok(StreamEvent::Completed(r)) => {
                assert!(s.next().await.is_none(), "nothing may follow Completed");
                return (text, Ok(r));
            }
            Ok(_) => {}
            Err(e) => return (text, Err(e)),
        }
    }
    (
        text,
        Err(ProviderError::response(
            "suite",
            "stream ended without Completed",
        )),
    )
}
