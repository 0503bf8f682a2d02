//! The agent loop against a scripted in-process provider: tool rounds, history, limits, errors,
//! cancellation and persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_core::*;
use picoclaw_state::InMemoryStore;
use picoclaw_testkit::{Reply, ScriptedProvider};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Echoes its `text` argument; fails when asked to.
struct Echo;

#[async_trait]
impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "echo",
            "Echo text back.",
            json!({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}),
        )
    }
    async fn call(&self, _ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        match args.get("text").and_then(|t| t.as_str()) {
            Some("fail") => ToolOutput::error("Error: asked to fail"),
            Some(t) => ToolOutput::ok(format!("echo: {t}")),
            None => ToolOutput::error("Error: echo needs a string 'text'"),
        }
    }
}

fn agent(provider: Arc<ScriptedProvider>, store: Arc<InMemoryStore>) -> Agent {
    Agent::builder(provider)
        .model("test-model")
        .tool(Echo)
        .session_store(store)
        .build()
        .unwrap()
}

#[tokio::test]
async fn tool_round_then_answer_is_persisted_in_order() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("echo", json!({"text": "hi"})),
        Reply::text("The tool said echo: hi").with_usage(10, 5),
    ]));
    let store = Arc::new(InMemoryStore::new());
    let agent = agent(provider.clone(), store.clone());
    let key = SessionKey::new("s1");
    let log = EventLog::new();
    let out = agent
        .turn(&key, ChatMessage::user("say hi"), TurnOptions::new(), &log)
        .await
        .unwrap();
    assert_eq!(out.text, "The tool said echo: hi");
    assert_eq!(out.end, TurnEnd::Answered);
    assert_eq!((out.model_calls, out.tool_calls), (2, 1));
    assert_eq!(out.usage.prompt_tokens, 10);

    // The second request carried the tool result back to the model.
    let reqs = provider.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].model, "test-model");
    assert_eq!(reqs[0].tools.len(), 1);
    let last = reqs[1].messages.last().unwrap();
    assert_eq!(last.role, Role::Tool);
    assert_eq!(last.text(), "echo: hi");

    let session = store.load(&key, None).await.unwrap();
    let roles: Vec<Role> = session.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );

    let events = log.take();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ToolStarted { name, .. } if name == "echo"))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::ToolFinished {
            is_error: false,
            ..
        }
    )));
}

#[tokio::test]
async fn second_turn_sends_history() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::text("Nice to meet you, Ada."),
        Reply::text("Your name is Ada."),
    ]));
    let store = Arc::new(InMemoryStore::new());
    let agent = agent(provider.clone(), store);
    let key = SessionKey::new("s2");
    agent.chat(&key, "I am Ada").await.unwrap();
    agent.chat(&key, "Who am I?").await.unwrap();
    let reqs = provider.requests();
    let texts: Vec<String> = reqs[1].messages.iter().skip(1).map(|m| m.text()).collect();
    assert_eq!(texts, ["I am Ada", "Nice to meet you, Ada.", "Who am I?"]);
    assert_eq!(reqs[1].messages[0].role, Role::System);
}

#[tokio::test]
async fn tool_errors_and_bad_calls_go_back_to_the_model() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_calls(vec![
            ("echo", json!({"text": "fail"})),
            ("no_such_tool", json!({})),
            ("echo", json!({"wrong": 1})),
        ]),
        Reply::tool_call_raw("echo", "{\"text\": "),
        Reply::text("recovered"),
    ]));
    let agent = agent(provider.clone(), Arc::new(InMemoryStore::new()));
    let out = agent.chat(&SessionKey::new("s3"), "go").await.unwrap();
    assert_eq!(out.text, "recovered");
    let reqs = provider.requests();
    let results: Vec<String> = reqs[1]
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.text())
        .collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].contains("asked to fail"));
    assert!(results[1].contains("no tool named 'no_such_tool'"));
    assert!(results[2].contains("needs a string 'text'"));
    let last = reqs[2].messages.last().unwrap();
    assert!(last.text().contains("not valid JSON"), "{}", last.text());
}

#[tokio::test]
async fn runaway_tool_loop_stops_at_the_limit_with_a_clear_message() {
    let provider = Arc::new(ScriptedProvider::repeating(Reply::tool_call(
        "echo",
        json!({"text": "again"}),
    )));
    let store = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(provider.clone())
        .model("m")
        .tool(Echo)
        .session_store(store.clone())
        .max_tool_iterations(3)
        .build()
        .unwrap();
    let key = SessionKey::new("s4");
    let out = agent.chat(&key, "loop forever").await.unwrap();
    assert_eq!(out.end, TurnEnd::MaxIterations);
    assert_eq!(out.model_calls, 3);
    assert!(out.text.contains("max_tool_iterations = 3"));
    // History stays valid: the last stored message is the assistant's explanation.
    let session = store.load(&key, None).await.unwrap();
    assert_eq!(session.messages.last().unwrap().role, Role::Assistant);
    assert_eq!(session.messages.len(), 1 + 3 * 2 + 1);
}

#[tokio::test]
async fn provider_failure_keeps_the_users_message() {
    let provider = Arc::new(ScriptedProvider::new([Reply::error(
        500,
        "upstream exploded",
    )]));
    let store = Arc::new(InMemoryStore::new());
    let agent = agent(provider, store.clone());
    let key = SessionKey::new("s5");
    let err = agent.chat(&key, "remember this").await.unwrap_err();
    assert!(matches!(err, AgentError::Provider(_)), "{err:?}");
    let session = store.load(&key, None).await.unwrap();
    assert_eq!(session.messages.len(), 1);
    assert_eq!(session.messages[0].text(), "remember this");
}

#[tokio::test]
async fn truncated_stream_is_an_error_not_a_panic() {
    let provider = Arc::new(ScriptedProvider::new([Reply::truncated("partial ans")]));
    let store = Arc::new(InMemoryStore::new());
    let agent = agent(provider, store.clone());
    let key = SessionKey::new("s6");
    let err = agent.chat(&key, "hello").await.unwrap_err();
    assert!(
        matches!(err, AgentError::Provider(ProviderError::Response { .. })),
        "{err:?}"
    );
    assert_eq!(store.load(&key, None).await.unwrap().messages.len(), 1);
}

/// A tool that blocks until cancelled, counting starts.
struct Block(Arc<AtomicUsize>);

#[async_trait]
impl Tool for Block {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new("block", "Blocks.", json!({"type":"object"}))
    }
    async fn call(&self, _ctx: &ToolContext, _args: serde_json::Value) -> ToolOutput {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        ToolOutput::ok("never")
    }
}

#[tokio::test]
async fn cancelling_a_turn_saves_a_valid_history() {
    let started = Arc::new(AtomicUsize::new(0));
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("block", json!({})),
        Reply::text("after cancel"),
    ]));
    let store = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(provider)
        .model("m")
        .tool(Block(started.clone()))
        .session_store(store.clone())
        .build()
        .unwrap();
    let key = SessionKey::new("s7");
    let token = CancellationToken::new();
    let t2 = token.clone();
    let s2 = started.clone();
    tokio::spawn(async move {
        while s2.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        t2.cancel();
    });
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        agent.turn(
            &key,
            ChatMessage::user("block"),
            TurnOptions::new().cancel_with(token),
            &(),
        ),
    )
    .await
    .expect("cancel must stop the turn promptly")
    .unwrap_err();
    assert!(matches!(err, AgentError::Cancelled));
    let msgs = store.load(&key, None).await.unwrap().messages;
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool]);
    assert!(msgs[2].text().contains("Cancelled"));

    // The session keeps working after a cancel.
    let out = agent.chat(&key, "still there?").await.unwrap();
    assert_eq!(out.text, "after cancel");
}

#[tokio::test]
async fn workspace_files_shape_the_system_prompt() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("IDENTITY.md"),
        "You are Pico the helpful crab.",
    )
    .unwrap();
    let provider = Arc::new(ScriptedProvider::new([Reply::text("ok")]));
    let agent = Agent::builder(provider.clone())
        .model("m")
        .workspace(ws.path())
        .build()
        .unwrap();
    agent.chat(&SessionKey::new("s8"), "hi").await.unwrap();
    let sys = provider.requests()[0].messages[0].text();
    assert!(sys.contains("Pico the helpful crab"));
    assert!(sys.contains(&ws.path().display().to_string()));
}

#[tokio::test]
async fn streaming_emits_deltas_that_add_up_to_the_answer() {
    let provider = Arc::new(ScriptedProvider::new([Reply::text(
        "Hello there, streaming world",
    )]));
    let agent = agent(provider, Arc::new(InMemoryStore::new()));
    let log = EventLog::new();
    let out = agent
        .turn(
            &SessionKey::new("s9"),
            ChatMessage::user("hi"),
            TurnOptions::new(),
            &log,
        )
        .await
        .unwrap();
    let streamed: String = log
        .take()
        .into_iter()
        .filter_map(|e| match e {
            AgentEvent::TextDelta(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, out.text);
}

#[test]
fn builder_rejects_missing_model() {
    let provider = Arc::new(ScriptedProvider::new([]));
    let err = Agent::builder(provider).build().unwrap_err();
    assert!(err.to_string().contains("no model set"));
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_anything_is_sent() {
    let provider = Arc::new(ScriptedProvider::new([Reply::text("fine")]));
    let store = Arc::new(InMemoryStore::new());
    let mut config = AgentConfig::default();
    config.model = "test-model".into();
    config.context_window = 2_000;
    config.max_tokens = Some(500);
    let agent = Agent::builder(provider.clone())
        .config(config)
        .session_store(store.clone())
        .build()
        .unwrap();
    let key = SessionKey::new("big");
    let err = agent.chat(&key, &"word ".repeat(10_000)).await.unwrap_err();
    assert!(matches!(err, AgentError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("agents.defaults.context_window"),
        "{err}"
    );
    assert!(provider.requests().is_empty(), "nothing was sent");
    assert!(store.load(&key, None).await.unwrap().messages.is_empty());
    // A normal message still works afterwards.
    assert_eq!(agent.chat(&key, "hi").await.unwrap().text, "fine");
}

#[tokio::test]
async fn a_subagent_works_in_its_own_session_without_the_subagent_tools() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call(
            "subagent",
            json!({"task": "Count the files", "label": "count"}),
        ),
        Reply::text("42 files"),
        Reply::text("The sub-agent found 42 files."),
    ]));
    let store = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(provider.clone())
        .model("m")
        .session_store(store.clone())
        .subagents(2, None)
        .build()
        .unwrap();
    assert!(agent.tools().get("subagent").is_some() && agent.tools().get("spawn").is_some());
    let out = agent
        .chat(&SessionKey::new("cli:main"), "how many files?")
        .await
        .unwrap();
    assert_eq!(out.text, "The sub-agent found 42 files.");
    let requests = provider.requests();
    // The child's request: its own instructions and task, and no sub-agent tools.
    let child = &requests[1];
    assert!(child.messages[0].text().contains("You are a sub-agent"));
    assert_eq!(child.messages.last().unwrap().text(), "Count the files");
    let child_tools: Vec<&str> = child.tools.iter().map(|t| t.name.as_str()).collect();
    assert!(
        !child_tools.contains(&"subagent") && !child_tools.contains(&"spawn"),
        "{child_tools:?}"
    );
    // The parent got the result as the tool's output.
    let result = requests[2]
        .messages
        .iter()
        .find(|m| m.role == Role::Tool)
        .unwrap()
        .text();
    assert!(
        result.contains("Sub-agent \"count\" finished:\n42 files"),
        "{result}"
    );
    // The child's turn is kept in its own session.
    let child_session = store
        .load(&SessionKey::new("subagent:cli:main:1"), None)
        .await
        .unwrap();
    assert_eq!(child_session.messages.len(), 2);
}

#[tokio::test]
async fn a_failed_sub_agent_shows_the_providers_error_to_the_model() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("subagent", json!({"task": "Look it up", "label": "lookup"})),
        // The child's model call fails.
        Reply::error(400, "model gpt-imaginary does not exist"),
        Reply::text("The sub-agent could not run."),
    ]));
    let agent = Agent::builder(provider.clone())
        .model("m")
        .streaming(false)
        .session_store(Arc::new(InMemoryStore::new()))
        .subagents(1, None)
        .build()
        .unwrap();
    let out = agent
        .chat(&SessionKey::new("cli:main"), "look it up")
        .await
        .unwrap();
    assert_eq!(out.text, "The sub-agent could not run.");
    let requests = provider.requests();
    let result = requests[2]
        .messages
        .iter()
        .find(|m| m.role == Role::Tool)
        .unwrap()
        .text();
    assert!(
        result.starts_with("subagent \"lookup\" failed: the model failed: ")
            && result.contains("model gpt-imaginary does not exist"),
        "{result}"
    );
}

#[tokio::test]
async fn a_sub_agent_that_hits_the_iteration_limit_is_a_failure_for_the_parent() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("subagent", json!({"task": "Loop", "label": "loop"})),
        // The child asks for tools twice: its limit (two rounds, like the parent's).
        Reply::tool_call("echo", json!({"text": "again"})),
        Reply::tool_call("echo", json!({"text": "and again"})),
        Reply::text("The sub-agent ran out of rounds."),
    ]));
    let agent = Agent::builder(provider.clone())
        .model("m")
        .streaming(false)
        .tool(Echo)
        .max_tool_iterations(2)
        .session_store(Arc::new(InMemoryStore::new()))
        .subagents(1, None)
        .build()
        .unwrap();
    let out = agent
        .chat(&SessionKey::new("cli:main"), "loop")
        .await
        .unwrap();
    assert_eq!(out.text, "The sub-agent ran out of rounds.");
    let requests = provider.requests();
    let result = requests[3]
        .messages
        .iter()
        .find(|m| m.role == Role::Tool)
        .unwrap()
        .text();
    assert!(
        result.starts_with("subagent \"loop\" failed: it stopped after 2 rounds")
            && result.contains("smaller"),
        "{result}"
    );
}

/// Notes the session and origin of every turn that calls it.
#[derive(Clone, Default)]
struct OriginProbe(Arc<std::sync::Mutex<Vec<(String, TurnOrigin)>>>);

#[async_trait]
impl Tool for OriginProbe {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "probe",
            "Note who calls.",
            json!({"type":"object","properties":{}}),
        )
    }
    async fn call(&self, ctx: &ToolContext, _args: serde_json::Value) -> ToolOutput {
        self.0
            .lock()
            .unwrap()
            .push((ctx.session_key.to_string(), ctx.origin));
        ToolOutput::ok("noted")
    }
}

#[tokio::test]
async fn a_turns_origin_reaches_its_tools_and_its_sub_agents() {
    let provider = Arc::new(ScriptedProvider::new([
        // A cron turn: the probe itself, then a sub-agent that calls the probe.
        Reply::tool_call("probe", json!({})),
        Reply::tool_call("subagent", json!({"task": "probe please"})),
        Reply::tool_call("probe", json!({})),
        Reply::text("probed"),
        Reply::text("done"),
        // A conversation turn afterwards.
        Reply::tool_call("probe", json!({})),
        Reply::text("done"),
    ]));
    let probe = OriginProbe::default();
    let agent = Agent::builder(provider)
        .model("m")
        .streaming(false)
        .tool(probe.clone())
        .subagents(2, None)
        .build()
        .unwrap();
    let cron = SessionKey::new("cron-abc");
    let options = TurnOptions::new()
        .chat("telegram", "42")
        .origin(TurnOrigin::Cron);
    let out = agent
        .turn(&cron, ChatMessage::user("scheduled"), options, &())
        .await
        .unwrap();
    assert_eq!(out.text, "done");
    let user = SessionKey::new("telegram:42");
    let out = agent
        .turn(
            &user,
            ChatMessage::user("hi"),
            TurnOptions::new().chat("telegram", "42"),
            &(),
        )
        .await
        .unwrap();
    assert_eq!(out.text, "done");
    assert_eq!(
        *probe.0.lock().unwrap(),
        [
            ("cron-abc".to_owned(), TurnOrigin::Cron),
            ("subagent:cron-abc:1".to_owned(), TurnOrigin::Cron),
            ("telegram:42".to_owned(), TurnOrigin::Conversation),
        ]
    );
}

#[tokio::test]
async fn the_usage_ledger_keeps_the_reasoning_tokens_the_provider_reported() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("echo", json!({"text": "hi"}))
            .with_usage(100, 40)
            .with_reasoning(30),
        Reply::text("done").with_usage(150, 8),
    ]));
    let store = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(provider)
        .model("test-model")
        .tool(Echo)
        .session_store(store.clone())
        .usage_ledger(store.clone(), "openai/test-model")
        .build()
        .unwrap();
    let out = agent
        .turn(
            &SessionKey::new("s1"),
            ChatMessage::user("think, then echo"),
            TurnOptions::new(),
            &(),
        )
        .await
        .unwrap();
    assert_eq!(out.usage.reasoning_tokens, 30);

    let rows = store.summary(None, GroupBy::Session).await.unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.calls,
            row.prompt_tokens,
            row.completion_tokens,
            row.reasoning_tokens
        ),
        (2, 250, 48, 30)
    );
    assert_eq!(row.models.len(), 1);
    assert_eq!(row.models[0].reasoning_tokens, 30);
}

/// Counts how often its spec is asked for.
struct CountedSpec(Arc<AtomicUsize>);

#[async_trait]
impl Tool for CountedSpec {
    fn spec(&self) -> ToolSpec {
        self.0.fetch_add(1, Ordering::SeqCst);
        ToolSpec::new("counted", "Counts.", json!({"type": "object"}))
    }
    async fn call(&self, _ctx: &ToolContext, _args: serde_json::Value) -> ToolOutput {
        ToolOutput::ok("counted")
    }
}

#[tokio::test]
async fn tool_specs_are_built_once_per_agent_and_shared_by_every_model_call() {
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call("counted", json!({})),
        Reply::text("one"),
        Reply::tool_call("counted", json!({})),
        Reply::text("two"),
    ]));
    let asked = Arc::new(AtomicUsize::new(0));
    let agent = Agent::builder(provider.clone())
        .model("test-model")
        .tool(CountedSpec(asked.clone()))
        .build()
        .unwrap();
    // Read when the tool is registered (its name) and when the agent is built, not after.
    let built = asked.load(Ordering::SeqCst);
    assert_eq!(built, 2);
    for message in ["first", "second"] {
        agent
            .turn(
                &SessionKey::new("s"),
                ChatMessage::user(message),
                TurnOptions::new(),
                &EventLog::new(),
            )
            .await
            .unwrap();
    }
    // Four model calls, no new spec: every request carries the list built with the agent.
    assert_eq!(asked.load(Ordering::SeqCst), built);
    let requests = provider.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests
            .iter()
            .all(|r| r.tools.len() == 1 && r.tools[0].name == "counted")
    );
    assert!(
        requests
            .windows(2)
            .all(|w| Arc::ptr_eq(&w[0].tools, &w[1].tools)),
        "every request shares one list"
    );
}
