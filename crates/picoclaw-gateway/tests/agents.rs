//! The dispatcher with several agents: routing by bindings, session keys, attachments handed
//! to the agent's own workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_api::{InboundMessage, MediaKind, MediaRef};
use picoclaw_config::{Paths, load_with_env};
use picoclaw_gateway::{AssembleOptions, Dispatcher, DispatcherConfig, assemble_agents};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Writes `config` as the config of the home `home`, loads it and assembles its agents.
async fn agents_of(
    home: &std::path::Path,
    config: serde_json::Value,
) -> Arc<picoclaw_gateway::AgentSet> {
    std::fs::write(home.join("config.json"), config.to_string()).unwrap();
    let paths = Paths::new(home, home.join("config.json"));
    let config = load_with_env(&paths, &HashMap::new()).unwrap().config;
    assemble_agents(&config, &paths, AssembleOptions::streaming(false))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_for_another_agent_is_handed_to_its_workspace_and_its_conversation() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("home saw it").when_request_contains("model-home"),
        Reply::text("work saw it").when_request_contains("model-work"),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let main_ws = home.path().join("workspace");
    let agents = agents_of(
        home.path(),
        json!({
        "agents": {
            "defaults": {"workspace": main_ws.display().to_string(), "model": "openai/x"},
            "list": [{"id": "home", "model": "openai/model-home"},
                     {"id": "work", "model": "openai/model-work"}]
        },
        "bindings": [{"agent_id": "work",
                      "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-500"}}}],
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
    }),
    )
    .await;
    assert_eq!(agents.default_agent().id, "home");
    let store = agents.store().clone();
    let dispatcher = Dispatcher::with_agents(
        agents.clone(),
        store.clone(),
        DispatcherConfig::default().media_root(main_ws.clone()),
    );
    // A channel saved the photo in the default workspace, as channels do.
    std::fs::create_dir_all(main_ws.join("media/telegram")).unwrap();
    let photo = main_ws.join("media/telegram/p.jpg");
    std::fs::write(&photo, b"\xff\xd8\xffjpeg").unwrap();
    let to_work = InboundMessage::new("telegram", "-500", "111", "look")
        .with_metadata("message_id", "1")
        .with_metadata("peer_kind", "group")
        .with_media(MediaRef::new(MediaKind::Image, photo.display().to_string()));
    dispatcher.accept(to_work).await.unwrap();
    let to_home = InboundMessage::new("telegram", "111", "111", "hello")
        .with_metadata("message_id", "2")
        .with_metadata("peer_kind", "user");
    dispatcher.accept(to_home).await.unwrap();
    for _ in 0..1200 {
        if endpoint.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 2, "both turns ran");
    let work = reqs
        .iter()
        .find(|r| r.body["model"] == "model-work")
        .unwrap();
    let handed = home.path().join("workspace-work/media/telegram/p.jpg");
    assert_eq!(std::fs::read(&handed).unwrap(), b"\xff\xd8\xffjpeg");
    let said = work.message_texts().join("\n");
    assert!(
        said.contains(&format!("[photo saved at {}]", handed.display())),
        "{said}"
    );
    // The conversations are under each agent's keys.
    let history = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .load(&picoclaw_core::SessionKey::new(key), None)
                .await
                .unwrap()
                .messages
        }
    };
    for _ in 0..400 {
        if history("agent:work:telegram:-500").await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let work_history = history("agent:work:telegram:-500").await;
    assert!(work_history.len() >= 2, "{work_history:?}");
    let home_history = history("telegram:111").await;
    assert!(!home_history.is_empty());
    assert!(home_history.iter().all(|m| !m.text().contains("look")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_made_by_an_agent_runs_on_that_agent_in_its_key_space() {
    use picoclaw_gateway::scheduler::{Clock, CronRunner, ManualClock};
    use picoclaw_state::{CronJob, CronPayload, Schedule};
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("work's job done").when_request_contains("model-work")
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let agents = agents_of(
        home.path(),
        json!({
            "agents": {
                "defaults": {"workspace": home.path().join("workspace").display().to_string()},
                "list": [{"id": "home", "model": "openai/model-home"},
                         {"id": "work", "model": "openai/model-work"}]
            },
            "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        }),
    )
    .await;
    let store = agents.store().clone();
    let t0 = 1_800_000_000_000;
    let clock = Arc::new(ManualClock::at(t0));
    let runner = CronRunner::with_agents(
        agents.clone(),
        clock.clone() as Arc<dyn Clock>,
        Arc::new(tokio::sync::Notify::new()),
    );
    let job = CronJob::new(
        "check the build",
        Schedule::Every { every_ms: 60_000 },
        CronPayload::new("check the build")
            .to("telegram", "-500")
            .for_agent("work"),
        t0,
    )
    .unwrap();
    store.put_job(&job).await.unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(runner.tick().await.unwrap(), std::slice::from_ref(&job.id));
    let reqs = endpoint.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body["model"], "model-work");
    let key = format!("agent:work:cron-{}", job.id);
    let kept = store
        .load(&picoclaw_core::SessionKey::new(key.as_str()), None)
        .await
        .unwrap();
    assert!(!kept.messages.is_empty(), "the run is kept under {key}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_agent_is_built_with_its_own_rate_limits() {
    let home = tempfile::tempdir().unwrap();
    let agents = agents_of(
        home.path(),
        json!({
            "agents": {
                "defaults": {"workspace": home.path().join("workspace").display().to_string(),
                             "model": "openai/x"},
                "list": [{"id": "open"},
                         {"id": "strict", "rate_limits": {"max_tool_calls_per_minute": 3}}]
            },
            "rate_limits": {"max_requests_per_minute": 20, "max_tool_calls_per_minute": 40},
            "providers": {"openai": {"api_key": "sk-test", "api_base": "http://127.0.0.1:9"}},
        }),
    )
    .await;
    let limits = |id: &str| agents.get(id).unwrap().agent.rate_limiter().limits();
    assert_eq!(limits("open"), picoclaw_core::RateLimits::new(20, 40));
    assert_eq!(limits("strict"), picoclaw_core::RateLimits::new(0, 3));
    assert_eq!(
        agents
            .get("strict")
            .unwrap()
            .ephemeral
            .rate_limiter()
            .limits(),
        picoclaw_core::RateLimits::new(0, 3)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_agent_remembers_and_finds_only_its_own_notes() {
    use picoclaw_core::{ChatMessage, TurnOptions};
    // Each agent searches its memory for its own fact and for the other's.
    let search = |q: &str| json!({"query": q});
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_calls(vec![
            ("memory_search", search("spare key blue pot")),
            ("memory_search", search("deploy password Fridays")),
        ])
        .when_request_contains("model-home"),
        Reply::text("home done").when_request_contains("model-home"),
        Reply::tool_calls(vec![
            ("memory_search", search("deploy password Fridays")),
            ("memory_search", search("spare key blue pot")),
        ])
        .when_request_contains("model-work"),
        Reply::text("work done").when_request_contains("model-work"),
        // Home again, after work indexed its own MEMORY.md at the same relative path.
        Reply::tool_calls(vec![("memory_search", search("deploy password Fridays"))])
            .when_request_contains("model-home"),
        Reply::text("home again").when_request_contains("model-home"),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let agents = agents_of(
        home.path(),
        json!({
            "agents": {
                "defaults": {"workspace": home.path().join("workspace").display().to_string(),
                             "memory_budget_tokens": 0},
                "list": [{"id": "home", "model": "openai/model-home"},
                         {"id": "work", "model": "openai/model-work"}]
            },
            "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        }),
    )
    .await;
    // Both keep MEMORY.md at the same place in their own workspaces.
    for (agent, fact) in [
        ("home", "the spare key is under the blue pot"),
        ("work", "the deploy password rotates on Fridays"),
    ] {
        let ws = &agents.get(agent).unwrap().workspace;
        std::fs::create_dir_all(ws.join("memory")).unwrap();
        std::fs::write(ws.join("memory/MEMORY.md"), format!("- {fact}\n")).unwrap();
    }
    for agent in ["home", "work", "home"] {
        let a = agents.get(agent).unwrap();
        let key = agents.session_key(agent, "telegram:1");
        a.agent
            .turn(
                &key,
                ChatMessage::user("what do you remember?"),
                TurnOptions::new(),
                &(),
            )
            .await
            .unwrap();
    }
    let results = |model: &str| {
        endpoint
            .requests()
            .into_iter()
            .filter(|r| r.body["model"] == model)
            .flat_map(|r| {
                r.body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    let home_results = results("model-home").join("\n");
    let work_results = results("model-work").join("\n");
    // Each finds its own fact, never the other's, even asked for its exact words.
    assert!(
        home_results.contains("spare key is under the blue pot"),
        "{home_results}"
    );
    // (The queries are echoed in "no match" answers: look for the facts' other words.)
    assert!(!home_results.contains("rotates on"), "{home_results}");
    assert!(
        home_results.contains("No notes in memory match"),
        "{home_results}"
    );
    assert!(
        work_results.contains("deploy password rotates"),
        "{work_results}"
    );
    assert!(!work_results.contains("is under the"), "{work_results}");
    assert!(
        work_results.contains("No notes in memory match"),
        "{work_results}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_hands_a_task_to_another_only_where_its_allow_list_says() {
    use picoclaw_core::{ChatMessage, TurnOptions};
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "subagent",
            json!({"task": "summarize the build log", "agent_id": "work", "label": "build"}),
        )
        .when_request_contains("ask work"),
        Reply::text("build is green").when_request_contains("summarize the build log"),
        Reply::text("work says green").when_request_contains("build is green"),
        Reply::tool_call(
            "subagent",
            json!({"task": "read the diary", "agent_id": "home"}),
        )
        .when_request_contains("try home"),
        Reply::text("refused, as it should be").when_request_contains("is not in this agent's"),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let agents = agents_of(
        home.path(),
        json!({
            "agents": {
                "defaults": {"workspace": home.path().join("workspace").display().to_string()},
                "list": [{"id": "home", "model": "openai/model-home",
                          "subagents": {"allow_agents": ["work"]}},
                         {"id": "work", "model": "openai/model-work"}]
            },
            "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        }),
    )
    .await;
    let turn = |agent: &'static str, text: &'static str| {
        let agents = agents.clone();
        async move {
            let a = agents.get(agent).unwrap();
            let key = agents.session_key(agent, "telegram:1");
            a.agent
                .turn(&key, ChatMessage::user(text), TurnOptions::new(), &())
                .await
                .unwrap()
                .text
        }
    };
    assert_eq!(
        turn("home", "ask work about the build").await,
        "work says green"
    );
    let reqs = endpoint.requests();
    let handed = reqs
        .iter()
        .find(|r| {
            r.message_texts()
                .iter()
                .any(|t| t == "summarize the build log")
        })
        .expect("the task reached the work agent");
    // On the work agent's model, without the home conversation.
    assert_eq!(handed.body["model"], "model-work");
    assert!(
        !handed
            .message_texts()
            .iter()
            .any(|t| t.contains("ask work about the build")),
        "{:?}",
        handed.message_texts()
    );
    // The work agent may hand nothing to the home agent.
    assert_eq!(turn("work", "try home").await, "refused, as it should be");
    let refused = endpoint
        .requests()
        .into_iter()
        .find(|r| r.body.to_string().contains("is not in this agent's"))
        .unwrap();
    let results = refused.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        results.contains("agent 'home' is not in this agent's subagents.allow_agents"),
        "{results}"
    );
    assert!(
        !endpoint
            .requests()
            .iter()
            .any(|r| r.message_texts().iter().any(|t| t == "read the diary"))
    );
}
