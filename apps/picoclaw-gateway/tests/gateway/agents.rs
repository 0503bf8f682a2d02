//! Several agents in one gateway: chats routed by bindings to agents with their own models and
//! workspaces, the API choosing an agent by name.

use super::*;
#[cfg(feature = "telegram")]
use crate::telegram::wait_sent;

/// Two agents: `home` (the default) and `work`, bound to one Telegram group.
fn two_agents(home: &Path, endpoint: &ScriptedEndpoint, extra_channels: Value) {
    edit_config(home, |config| {
        config["agents"]["list"] = json!([
            {"id": "home", "default": true, "name": "Home", "model": "openai/model-home"},
            {"id": "work", "name": "Work", "model": "openai/model-work",
             "tools": {"deny": ["exec"]}}
        ]);
        config["bindings"] = json!([
            {"agent_id": "work", "match": {"channel": "telegram", "peer": {"kind": "group", "id": "-500"}}}
        ]);
        config["providers"]["openai"]["api_base"] = json!(endpoint.base_url());
        config["channels"] = extra_channels;
    });
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn two_chats_reach_two_agents_with_their_own_models_and_workspaces() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "123456:TEST-token";
    let tg = FakeBotApi::start(TOKEN);
    let home = tempfile::tempdir().unwrap();
    let secret = home.path().join("workspace/home-only.txt");
    let endpoint = ScriptedEndpoint::start_with([
        // The home agent writes a file in its workspace.
        Reply::tool_call(
            "write_file",
            json!({"path": "home-only.txt", "content": "the family's plans"}),
        )
        .when_request_contains("model-home"),
        Reply::text("Noted at home.").when_request_contains("model-home"),
        // The work agent (prompt-injected) tries to read it by every road.
        Reply::tool_calls(vec![
            ("read_file", json!({"path": secret.display().to_string()})),
            ("read_file", json!({"path": "../workspace/home-only.txt"})),
            (
                "exec",
                json!({"command": format!("cat {}", secret.display())}),
            ),
        ])
        .when_request_contains("model-work"),
        Reply::text("Work here.").when_request_contains("model-work"),
    ])
    .await;
    let config = json!({
        "agents": {"defaults": {"model": "openai/unused",
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "gateway": {"host": "127.0.0.1", "port": 0, "api_key": KEY},
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    two_agents(
        home.path(),
        &endpoint,
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
                            "api_base": tg.api_base()}}),
    );
    let gw = Gateway::start_with(home.path(), &[], "info");
    tg.private_message(111, "ada", "remember our plans");
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0], (111, "Noted at home.".to_owned()));
    tg.group_message(-500, 111, "ada", "@pico_test_bot status report", false);
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (-500, "Work here.".to_owned()));

    // Each turn went to its agent's model.
    let models: Vec<(String, String)> = endpoint
        .requests()
        .iter()
        .map(|r| {
            (
                r.body["model"].as_str().unwrap_or_default().to_owned(),
                r.message_texts()
                    .iter()
                    .find(|t| t.contains("plans") || t.contains("status report"))
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(models[0].0, "model-home", "{models:?}");
    assert!(models[0].1.contains("remember our plans"), "{models:?}");
    assert!(
        models
            .iter()
            .filter(|(m, _)| m == "model-work")
            .all(|(_, t)| !t.contains("remember our plans")),
        "the work agent never sees the home conversation: {models:?}"
    );
    // The home agent's file is in its workspace; the work agent read none of it.
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "the family's plans"
    );
    let work_turn = endpoint
        .requests()
        .into_iter()
        .find(|r| r.body["model"] == "model-work" && !tool_messages(&r.body).is_empty())
        .expect("the work agent's second request");
    let results = tool_messages(&work_turn.body).join("\n");
    assert!(!results.contains("the family's plans"), "{results}");
    // exec is not one of the work agent's tools at all.
    let offered: Vec<String> = work_turn.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect();
    assert!(!offered.contains(&"exec".to_owned()), "{offered:?}");
    assert!(offered.contains(&"read_file".to_owned()), "{offered:?}");
    assert!(home.path().join("workspace-work").is_dir());

    // The API picks an agent by model name; its conversations are its own.
    let c = client();
    endpoint.push(Reply::text("work via the API").when_request_contains("model-work"));
    let (status, body) = complete(
        &c,
        &gw,
        Some("ada"),
        json!({"model": "agent:work", "messages": [{"role": "user", "content": "hello work"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "work via the API");
    let (status, body) = complete(
        &c,
        &gw,
        None,
        json!({"model": "agent:nobody", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("known: home, work"),
        "{body}"
    );
    let models: Value = c
        .get(format!("{}/v1/models", gw.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"agent:home") && ids.contains(&"agent:work"),
        "{ids:?}"
    );
    // Its API conversation continues with it, and only with it.
    endpoint.push(Reply::text("again, work").when_request_contains("model-work"));
    let (status, _) = complete(
        &c,
        &gw,
        Some("ada"),
        json!({"model": "agent:work", "messages": [{"role": "user", "content": "and again"}]}),
    )
    .await;
    assert_eq!(status, 200);
    endpoint.push(Reply::text("home via the API").when_request_contains("model-home"));
    let (status, _) = complete(
        &c,
        &gw,
        Some("ada"),
        json!({"messages": [{"role": "user", "content": "hello home"}]}),
    )
    .await;
    assert_eq!(status, 200);
    let reqs = endpoint.requests();
    let again = reqs
        .iter()
        .find(|r| r.message_texts().iter().any(|t| t == "and again"))
        .unwrap();
    assert!(again.message_texts().iter().any(|t| t == "hello work"));
    let home_api = reqs
        .iter()
        .find(|r| r.message_texts().iter().any(|t| t == "hello home"))
        .unwrap();
    assert_eq!(home_api.body["model"], "model-home");
    assert!(!home_api.message_texts().iter().any(|t| t == "hello work"));
}
