//! `agents.list` and `bindings`: loading the original's layout, the routing table at every
//! level of specificity, session keys, workspaces, and what is refused at load.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_config::{Config, Paths, RouteInput, load_with_env};
use serde_json::{Value, json};
use std::collections::HashMap;

fn load(config: Value) -> Result<(Config, Paths, tempfile::TempDir), String> {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    let paths = Paths::new(home.path(), home.path().join("config.json"));
    let loaded = load_with_env(&paths, &HashMap::new()).map_err(|e| e.to_string())?;
    Ok((loaded.config, paths, home))
}

/// The original's multi-agent example, with bindings at every level.
fn original() -> Value {
    json!({
        "agents": {
            "defaults": {"model": "openai/gpt-4o-mini"},
            "list": [
                {"id": "assistant", "default": true, "name": "General Assistant",
                 "workspace": "~/.picoclaw/workspace/assistant",
                 "model": {"primary": "anthropic/claude-opus-4-5", "fallbacks": ["openai/gpt-4o"]},
                 "subagents": {"allow_agents": ["researcher", "coder"]}},
                {"id": "researcher", "name": "Research Agent", "model": "openai/gpt-4o",
                 "skills": ["web-search"]},
                {"id": "coder", "name": "Coding Agent",
                 "workspace": "~/.picoclaw/workspace/coder", "model": "anthropic/claude-sonnet-4",
                 "tools": {"deny": ["web_*"]}},
                {"id": "family"}
            ]
        },
        "bindings": [
            {"agent_id": "family", "match": {"channel": "telegram", "account_id": "*"}},
            {"agent_id": "coder", "match": {"channel": "telegram"}},
            {"agent_id": "researcher", "match": {"channel": "telegram", "peer": {"kind": "user", "id": "42"}}},
            {"agent_id": "coder", "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-100"}}},
            {"agent_id": "researcher", "match": {"channel": "discord", "guild_id": "G1"}},
            {"agent_id": "coder", "match": {"channel": "slack", "team_id": "T1"}},
            {"agent_id": "family", "match": {"channel": "slack", "account_id": "bot-two"}}
        ]
    })
}

#[test]
fn the_originals_layout_loads_and_routes_by_specificity() {
    let (c, _paths, _home) = load(original()).unwrap();
    let ids: Vec<String> = c.agent_infos().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["assistant", "researcher", "coder", "family"]);
    assert_eq!(c.default_agent_id(), "assistant");
    let route = |input: RouteInput| {
        let r = c.route(&input);
        (r.agent_id, r.matched_by)
    };
    // A peer binding beats every other level.
    assert_eq!(
        route(RouteInput::new("telegram").peer("user", "42")),
        ("researcher".into(), "binding.peer")
    );
    // `direct` is the original's other word for a direct chat.
    assert_eq!(
        route(RouteInput::new("telegram").peer("direct", "42")),
        ("researcher".into(), "binding.peer")
    );
    assert_eq!(
        route(RouteInput::new("telegram").peer("group", "-100")),
        ("coder".into(), "binding.peer")
    );
    // A thread whose parent group is bound.
    assert_eq!(
        route(
            RouteInput::new("telegram")
                .peer("group", "thread-7")
                .parent_peer("group", "-100")
        ),
        ("coder".into(), "binding.peer.parent")
    );
    // The channel's own account (empty account_id) comes before the wildcard.
    assert_eq!(
        route(RouteInput::new("telegram").peer("user", "7")),
        ("coder".into(), "binding.account")
    );
    // Another bot account of the channel falls through to the wildcard.
    assert_eq!(
        route(
            RouteInput::new("telegram")
                .peer("user", "7")
                .account("bot-b")
        ),
        ("family".into(), "binding.channel")
    );
    assert_eq!(
        route(RouteInput::new("discord").peer("channel", "c").guild("G1")),
        ("researcher".into(), "binding.guild")
    );
    assert_eq!(
        route(RouteInput::new("slack").peer("channel", "C9").team("T1")),
        ("coder".into(), "binding.team")
    );
    assert_eq!(
        route(
            RouteInput::new("slack")
                .peer("user", "U1")
                .account("bot-two")
        ),
        ("family".into(), "binding.account")
    );
    // Nothing matches: the default agent.
    assert_eq!(
        route(RouteInput::new("slack").peer("user", "U1").team("T2")),
        ("assistant".into(), "default")
    );
    assert_eq!(
        route(RouteInput::new("discord").peer("user", "u").guild("G2")),
        ("assistant".into(), "default")
    );
}

#[test]
fn ties_go_to_the_first_binding_listed() {
    let (c, _p, _h) = load(json!({
        "agents": {"list": [{"id": "a"}, {"id": "b"}]},
        "bindings": [
            {"agent_id": "b", "match": {"channel": "telegram", "peer": {"kind": "user", "id": "1"}}},
            {"agent_id": "a", "match": {"channel": "telegram", "peer": {"kind": "user", "id": "1"}}}
        ]
    }))
    .unwrap();
    let r = c.route(&RouteInput::new("telegram").peer("user", "1"));
    assert_eq!((r.agent_id.as_str(), r.binding), ("b", Some(0)));
    // Without "default": true, the first listed is the default.
    assert_eq!(c.default_agent_id(), "a");
}

#[test]
fn session_keys_keep_the_default_agents_and_prefix_the_others() {
    let (c, _p, _h) = load(original()).unwrap();
    assert_eq!(c.agent_session_key("assistant", "telegram:1"), "telegram:1");
    assert_eq!(
        c.agent_session_key("Coder", "telegram:-100"),
        "agent:coder:telegram:-100"
    );
    assert_eq!(
        c.agent_session_key("coder", "api:ada"),
        "agent:coder:api:ada"
    );
    assert_eq!(c.agent_of_session("agent:coder:telegram:-100"), "coder");
    assert_eq!(c.agent_of_session("telegram:1"), "assistant");
    // A prefix naming no agent is not an agent's.
    assert_eq!(c.agent_of_session("agent:nobody:x"), "assistant");
    // Without agents.list there is one agent, `main`, and nothing changes.
    let (plain, _p, _h) = load(json!({})).unwrap();
    assert_eq!(plain.default_agent_id(), "main");
    assert_eq!(plain.agent_session_key("main", "telegram:1"), "telegram:1");
    assert_eq!(
        plain
            .route(&RouteInput::new("telegram").peer("user", "1"))
            .agent_id,
        "main"
    );
}

#[test]
fn each_agent_gets_its_own_workspace_and_model() {
    let (c, paths, _h) = load(original()).unwrap();
    let home = paths.home().to_path_buf();
    let user_home = dirs::home_dir().unwrap();
    assert_eq!(
        c.agent_workspace("assistant", &paths),
        user_home.join(".picoclaw/workspace/assistant")
    );
    // No workspace of its own: beside the default workspace, never inside another's.
    assert_eq!(
        c.agent_workspace("researcher", &paths),
        home.join("workspace-researcher")
    );
    let coder = c.for_agent("coder", &paths).unwrap();
    assert_eq!(coder.agents.defaults.model, "anthropic/claude-sonnet-4");
    let assistant = c.for_agent("assistant", &paths).unwrap();
    assert_eq!(assistant.agents.defaults.model, "anthropic/claude-opus-4-5");
    assert_eq!(assistant.agents.defaults.model_fallbacks, ["openai/gpt-4o"]);
    assert!(c.for_agent("nobody", &paths).is_none());
    let tools = c.agent_entry("coder").unwrap().tools.clone().unwrap();
    assert!(tools.allows("exec"));
    assert!(!tools.allows("web_fetch"));
}

#[test]
fn mistakes_are_refused_at_load_naming_the_entry() {
    let refused = |config: Value, want: &str| {
        let err = load(config).unwrap_err();
        assert!(err.contains(want), "wanted '{want}' in: {err}");
    };
    refused(
        json!({"agents": {"list": [{"id": "a"}]},
               "bindings": [{"agent_id": "ghost", "match": {"channel": "telegram"}}]}),
        "bindings[0].agent_id 'ghost' is not an agent in agents.list; known: a",
    );
    refused(
        json!({"bindings": [{"agent_id": "a", "match": {"channel": "telegram"}}]}),
        "bindings[0] routes to agent 'a' but agents.list is empty",
    );
    refused(
        json!({"agents": {"list": [{"id": "a"}, {"id": "A"}]}}),
        "agents.list[1].id 'a' is used twice",
    );
    refused(
        json!({"agents": {"list": [{"id": "no spaces"}]}}),
        "agents.list[0].id 'no spaces' must be letters",
    );
    refused(
        json!({"agents": {"list": [{"id": "a", "default": true}, {"id": "b", "default": true}]}}),
        "more than one agent is marked",
    );
    refused(
        json!({"agents": {"list": [{"id": "a", "subagents": {"allow_agents": ["zed"]}}]}}),
        "agents.list[0].subagents.allow_agents names 'zed'",
    );
    refused(
        json!({"agents": {"list": [{"id": "a"}]},
               "bindings": [{"agent_id": "a", "match": {"channel": "telegram", "peer": {"kind": "robot", "id": "1"}}}]}),
        "bindings[0].match.peer needs a kind",
    );
    // One agent's workspace inside another's: that agent could read and write it.
    let home = tempfile::tempdir().unwrap();
    let outer = home.path().join("ws");
    refused(
        json!({"agents": {"list": [
            {"id": "a", "workspace": outer},
            {"id": "b", "workspace": outer.join("inner")}
        ]}}),
        "agents 'a' and 'b' share a workspace",
    );
}

#[test]
fn a_misspelt_key_in_an_agent_or_binding_is_named() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("config.json"),
        json!({"agents": {"list": [{"id": "a", "modle": "x"}]},
               "bindings": [{"agent_id": "a", "match": {"channel": "telegram", "gulid_id": "1"}}]})
        .to_string(),
    )
    .unwrap();
    let paths = Paths::new(home.path(), home.path().join("config.json"));
    let loaded = load_with_env(&paths, &HashMap::new()).unwrap();
    let all = loaded.warnings.join("\n");
    assert!(all.contains("agents.list.0.modle"), "{all}");
    assert!(all.contains("did you mean 'agents.list.0.model'"), "{all}");
    assert!(all.contains("bindings.0.match.gulid_id"), "{all}");
    assert!(!all.contains("not supported yet"), "{all}");
}

#[test]
fn an_agents_rate_limits_replace_the_top_level_ones() {
    let (c, paths, _h) = load(json!({
        "rate_limits": {"max_requests_per_minute": 30, "max_tool_calls_per_minute": 60},
        "agents": {"list": [
            {"id": "strict", "rate_limits": {"max_tool_calls_per_minute": 5}},
            {"id": "plain", "default": true}
        ]}
    }))
    .unwrap();
    let strict = c.for_agent("strict", &paths).unwrap();
    // The agent's section replaces the top-level one whole: its missing key is 0, no limit.
    assert_eq!(strict.rate_limits, picoclaw_config::RateLimits::new(0, 5));
    let plain = c.for_agent("plain", &paths).unwrap();
    assert_eq!(plain.rate_limits, picoclaw_config::RateLimits::new(30, 60));
    // Round trip keeps the agent's own section.
    let back = serde_json::to_value(&c).unwrap();
    assert_eq!(
        back["agents"]["list"][0]["rate_limits"]["max_tool_calls_per_minute"],
        5
    );
}
