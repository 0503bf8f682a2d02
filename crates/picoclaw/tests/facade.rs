//! The facade as an embedder uses it: an agent over the OpenAI-compatible provider, a typed
//! tool, in-memory sessions, against a scripted endpoint on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw::{
    Agent, InMemoryStore, SessionKey, SessionStore, ToolContext, ToolOutput, TypedTool,
};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use std::sync::Arc;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Args {
    /// The first number.
    a: i64,
    /// The second number.
    b: i64,
}

struct Mul;

#[picoclaw::async_trait]
impl TypedTool for Mul {
    type Args = Args;
    fn name(&self) -> &str {
        "mul"
    }
    fn description(&self) -> &str {
        "Multiply two integers."
    }
    async fn run(&self, _ctx: &ToolContext, args: Args) -> ToolOutput {
        ToolOutput::ok((args.a * args.b).to_string())
    }
}

#[tokio::test]
async fn a_typed_tool_runs_and_the_conversation_is_kept() {
    let server = ScriptedEndpoint::start_with([
        Reply::tool_call("mul", serde_json::json!({"a": 6, "b": 7})),
        Reply::text("6 × 7 = 42."),
        // The model sends arguments that do not fit the type: refused before the tool runs.
        Reply::tool_call("mul", serde_json::json!({"a": "six"})),
        Reply::text("I could not."),
    ])
    .await;
    let store = Arc::new(InMemoryStore::new());
    let provider = picoclaw::providers::openai_compatible(&server.base_url(), None).unwrap();
    let agent = Agent::builder(provider)
        .model("scripted")
        .tool(Mul.into_tool())
        .session_store(store.clone())
        .build()
        .unwrap();
    let me = SessionKey::new("test:facade");
    let first = agent.chat(&me, "What is 6 times 7?").await.unwrap();
    assert_eq!(first.text, "6 × 7 = 42.");

    let requests = server.requests();
    // The schema the model saw was generated from `Args`.
    let tools = &requests[0].body["tools"][0]["function"];
    assert_eq!(tools["name"], "mul");
    assert_eq!(tools["parameters"]["properties"]["a"]["type"], "integer");
    assert_eq!(
        tools["parameters"]["properties"]["b"]["description"],
        "The second number."
    );
    // The tool's result went back to the model.
    assert!(
        requests[1].message_texts().iter().any(|t| t == "42"),
        "{:?}",
        requests[1].message_texts()
    );

    let second = agent.chat(&me, "And six times nothing?").await.unwrap();
    assert_eq!(second.text, "I could not.");
    let texts = server.requests()[3].message_texts();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("invalid arguments for mul")),
        "{texts:?}"
    );
    // Both turns are in the store, in order.
    let session = store.load(&me, None).await.unwrap();
    let users: Vec<String> = session
        .messages
        .iter()
        .filter(|m| m.role == picoclaw::Role::User)
        .map(|m| m.text())
        .collect();
    assert_eq!(users, ["What is 6 times 7?", "And six times nothing?"]);
}
