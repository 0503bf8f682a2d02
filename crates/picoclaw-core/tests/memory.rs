//! Long-term memory in the agent loop: the model remembers through `memory_write`, later turns
//! (in other sessions, after a restart) carry what is relevant, and a huge MEMORY.md does not
//! grow every request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_core::*;
use picoclaw_state::SqliteStore;
use picoclaw_testkit::{Reply, ScriptedProvider};
use serde_json::json;
use std::sync::Arc;

async fn memory_agent(
    provider: Arc<ScriptedProvider>,
    ws: &std::path::Path,
    db: &std::path::Path,
    budget: usize,
) -> Agent {
    let store = Arc::new(SqliteStore::open(db).await.unwrap());
    let memory = Arc::new(WorkspaceMemory::new(ws, store.clone()));
    let mut config = AgentConfig::default();
    config.model = "m".into();
    config.memory_budget_tokens = budget;
    Agent::builder(provider)
        .config(config)
        .session_store(store)
        .memory(memory)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_fact_written_in_one_session_is_known_in_another_after_restart() {
    let ws = tempfile::tempdir().unwrap();
    let db = ws.path().join("state.db");
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call(
            "memory_write",
            json!({"content": "The user's sister is called Ana"}),
        ),
        Reply::text("Noted."),
    ]));
    let agent = memory_agent(provider.clone(), ws.path(), &db, 2000).await;
    let specs: Vec<String> = provider_tools(&agent);
    assert!(
        specs.contains(&"memory_search".to_owned()) && specs.contains(&"memory_write".to_owned())
    );
    agent
        .chat(
            &SessionKey::new("telegram:1"),
            "My sister is Ana, remember that",
        )
        .await
        .unwrap();
    let tool_result = provider.requests()[1]
        .messages
        .iter()
        .find(|m| m.role == Role::Tool)
        .unwrap()
        .text();
    assert!(
        tool_result.contains("Remembered in memory/MEMORY.md"),
        "{tool_result}"
    );
    drop(agent);

    // A new process: another session on another channel sees the fact in its system prompt.
    let provider = Arc::new(ScriptedProvider::new([Reply::text("Ana")]));
    let agent = memory_agent(provider.clone(), ws.path(), &db, 2000).await;
    agent
        .chat(&SessionKey::new("discord:9"), "What is my sister's name?")
        .await
        .unwrap();
    let sys = provider.requests()[0].messages[0].text();
    assert!(sys.contains("## Memory"), "{sys}");
    assert!(sys.contains("- The user's sister is called Ana"), "{sys}");
}

fn provider_tools(agent: &Agent) -> Vec<String> {
    agent.tools().names().map(str::to_owned).collect()
}

#[tokio::test]
async fn a_huge_memory_file_does_not_grow_the_request() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("memory")).unwrap();
    let mut text = String::from("# Long-term Memory\n\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "- Fact {i}: the user once mentioned item{i} in passing\n"
        ));
    }
    text.push_str("- The user's bike is a blue Brompton\n");
    std::fs::write(ws.path().join("memory/MEMORY.md"), &text).unwrap();
    let provider = Arc::new(ScriptedProvider::new([Reply::text("a"), Reply::text("b")]));
    let agent = memory_agent(provider.clone(), ws.path(), &ws.path().join("s.db"), 800).await;
    agent
        .chat(&SessionKey::new("cli:a"), "What colour is my bike?")
        .await
        .unwrap();
    agent
        .chat(&SessionKey::new("cli:b"), "hello")
        .await
        .unwrap();
    let requests = provider.requests();
    let first = requests[0].messages[0].text();
    assert!(
        first.contains("- The user's bike is a blue Brompton"),
        "{first}"
    );
    assert!(first.contains("3001 notes"), "{first}");
    // The whole file is ~180 KB; the prompt stays near the budget (800 tokens ≈ 3.2 KB) plus
    // the fixed parts.
    for r in &requests {
        let sys = r.messages[0].text();
        assert!(sys.len() < 6_000, "system prompt of {} bytes", sys.len());
    }
}

#[tokio::test]
async fn without_a_memory_index_memory_md_is_read_whole_and_no_tools_appear() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("memory")).unwrap();
    std::fs::write(ws.path().join("memory/MEMORY.md"), "- likes tea\n").unwrap();
    let provider = Arc::new(ScriptedProvider::new([Reply::text("ok")]));
    let agent = Agent::builder(provider.clone())
        .model("m")
        .workspace(ws.path())
        .build()
        .unwrap();
    agent.chat(&SessionKey::new("s"), "hi").await.unwrap();
    let sys = provider.requests()[0].messages[0].text();
    assert!(
        sys.contains("## Long-term memory (memory/MEMORY.md)\n- likes tea"),
        "{sys}"
    );
    assert!(agent.tools().get("memory_write").is_none());
}

#[tokio::test]
async fn a_memory_budget_of_zero_keeps_memory_out_of_the_prompt() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("memory")).unwrap();
    std::fs::write(ws.path().join("memory/MEMORY.md"), "- likes tea\n").unwrap();
    let provider = Arc::new(ScriptedProvider::new([Reply::text("ok")]));
    let agent = memory_agent(provider.clone(), ws.path(), &ws.path().join("s.db"), 0).await;
    agent.chat(&SessionKey::new("s"), "tea?").await.unwrap();
    let sys = provider.requests()[0].messages[0].text();
    assert!(!sys.contains("likes tea"), "{sys}");
    assert!(agent.tools().get("memory_search").is_some());
}
