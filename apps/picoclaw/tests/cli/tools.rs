//! exec, web search and fetch, sub-agents and the message tool, from real turns.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn exec_never_sees_picoclaws_secrets() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "echo \"token=[$MY_SERVICE_TOKEN] key=[$OPENAI_API_KEY] lang=[$PICO_LANG_PROBE]\""}),
        ),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut cmd = home.cmd();
    cmd.env("MY_SERVICE_TOKEN", "hunter2")
        .env("OPENAI_API_KEY", "sk-should-not-leak")
        .env("PICO_LANG_PROBE", "visible");
    let out = run(cmd, &["agent", "-m", "print the env"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = tool_messages(&endpoint.requests()[1].body)[0].clone();
    assert!(
        result.contains("token=[] key=[] lang=[visible]"),
        "{result}"
    );
    assert!(
        !result.contains("hunter2") && !result.contains("sk-should-not-leak"),
        "{result}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread")]
async fn exec_from_a_real_turn_cannot_write_outside_the_workspace_under_landlock() {
    // The hostile command aims beside the workspace, in picoclaw's home (under /tmp here, as on
    // many CI systems: the policy must hold wherever the home is).
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "echo pwned > ../pwned.txt; cat ../config.json; echo inside > in.txt"}),
        ),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let escape = home.path().join("pwned.txt");
    let out = run(home.cmd(), &["agent", "-m", "try it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let result = tool_messages(&endpoint.requests()[1].body).join("\n");
    let status = run(home.cmd(), &["status"]).await;
    match picoclaw_tools::landlock_abi() {
        Ok(abi) => {
            assert!(result.contains("Permission denied"), "{result}");
            assert!(!escape.exists(), "exec wrote outside the workspace");
            assert!(!result.contains(KEY), "exec read the config: {result}");
            assert!(
                status
                    .stdout
                    .contains(&format!("Landlock active (kernel ABI {abi})")),
                "{}",
                status.stdout
            );
        }
        Err(why) => assert!(status.stdout.contains(&why), "{}", status.stdout),
    }
    // The rest of the command ran, inside.
    assert_eq!(
        std::fs::read_to_string(home.workspace().join("in.txt")).unwrap(),
        "inside\n"
    );
    // The operator switches it off knowingly, and status says so.
    let mut config = home.config();
    config["tools"] = json!({"exec": {"landlock": false}});
    home.write_config(&config);
    let status = run(home.cmd(), &["status"]).await;
    assert!(
        status
            .stdout
            .contains("deny-list only; Landlock off (tools.exec.landlock = false)"),
        "{}",
        status.stdout
    );
}

/// A SearXNG instance and a web page on loopback; returns the base URL.
async fn search_backend_and_page() -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let page = format!("{base}/articles/otters");
    let app = axum::Router::new()
        .route(
            "/search",
            get(move |uri: axum::http::Uri| {
                let page = page.clone();
                async move {
                    let query = uri.query().unwrap_or_default().to_owned();
                    assert!(query.contains("format=json"), "{query}");
                    axum::Json(json!({"results": [{
                        "title": "Otters hold hands while sleeping",
                        "url": page,
                        "content": "Why sea otters hold hands",
                    }]}))
                }
            }),
        )
        .route(
            "/articles/otters",
            get(|| async {
                (
                    [("content-type", "text/html; charset=utf-8")],
                    "<html><head><title>Otters</title><script>track()</script></head><body>\
                     <h1>Sea otters</h1><p>Sea otters hold hands so they do not <b>drift \
                     apart</b> while they sleep.</p></body></html>",
                )
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn search_then_fetch_answers_from_the_page() {
    let web = search_backend_and_page().await;
    let page = format!("{web}/articles/otters");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "web_search",
            json!({"query": "why do otters hold hands", "count": 3}),
        ),
        Reply::tool_call("web_fetch", json!({"url": page, "max_chars": 2000})),
        Reply::text("So they do not drift apart while they sleep."),
        // The same fetch with the operator's switch off.
        Reply::tool_call("web_fetch", json!({"url": page})),
        Reply::text("I could not read that page."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["tools"] = json!({"web": {
        "searxng": {"enabled": true, "url": web, "max_results": 3},
        "fetch": {"allow_private": true},
    }});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-m", "Why do otters hold hands?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "So they do not drift apart while they sleep."
    );
    let reqs = endpoint.requests();
    let found = tool_messages(&reqs[1].body).join("\n");
    assert!(
        found.contains("Otters hold hands while sleeping"),
        "{found}"
    );
    assert!(found.contains(&page), "{found}");
    let read = tool_messages(&reqs[2].body).join("\n");
    assert!(read.contains("# Sea otters"), "{read}");
    assert!(read.contains("**drift apart**"), "{read}");
    assert!(!read.contains("track()"), "scripts are not text: {read}");

    // By default web_fetch refuses loopback and private addresses, and says why.
    config["tools"]["web"]["fetch"] = json!({});
    home.write_config(&config);
    let out = run(home.cmd(), &["agent", "-s", "cli:other", "-m", "Read it"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let refused = tool_messages(&endpoint.requests()[4].body).join("\n");
    assert!(refused.contains("127.0.0.1"), "{refused}");
    assert!(
        refused.contains("allow_private") || refused.contains("loopback"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spawned_sub_agent_reports_back_before_the_cli_exits() {
    const CHILD: &str = "You are a sub-agent";
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "spawn",
            json!({"task": "Count the files in the workspace", "label": "counter"}),
        ),
        // The sub-agent's requests (they arrive alongside the parent's, in no fixed order).
        Reply::tool_call("list_dir", json!({"path": "."})).when_request_contains(CHILD),
        Reply::text("There are 2 files.").when_request_contains(CHILD),
        Reply::text("Counting in the background."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(home.workspace().join("a.txt"), "a").unwrap();
    std::fs::write(home.workspace().join("b.txt"), "b").unwrap();
    let out = run(
        home.cmd(),
        &["agent", "-m", "count my files, in the background"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Counting in the background."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("[background] Background task \"counter\" finished:\nThere are 2 files."),
        "{}",
        out.stdout
    );
    assert_eq!(
        out.stdout.matches("[background]").count(),
        1,
        "{}",
        out.stdout
    );
    // It waited for the task, unless the task had already finished during the turn.
    assert!(!out.stderr.contains("waiting for 0"), "{}", out.stderr);
    // The sub-agent really listed the workspace, in its own session.
    let reqs = endpoint.requests();
    let child: Vec<_> = reqs
        .iter()
        .filter(|r| r.body.to_string().contains(CHILD))
        .collect();
    assert_eq!(child.len(), 2);
    let listed = tool_messages(&child[1].body).join("\n");
    assert!(
        listed.contains("a.txt") && listed.contains("b.txt"),
        "{listed}"
    );
    assert_eq!(endpoint.remaining(), 0);
    let sessions = run(home.cmd(), &["sessions", "list"]).await;
    assert!(
        sessions.stdout.contains("subagent:cli:default:1"),
        "{}",
        sessions.stdout
    );
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_message_sent_from_the_cli_is_delivered_by_the_gateway_once() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "777:CLI-message";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "message",
            json!({"content": "The meeting moved to 3 pm.", "channel": "telegram",
                   "chat_id": "222", "media": ["agenda.pdf", "room.png"]}),
        ),
        Reply::text("I told them."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    std::fs::create_dir_all(home.workspace()).unwrap();
    std::fs::write(home.workspace().join("agenda.pdf"), b"%PDF-1.4 agenda").unwrap();
    std::fs::write(home.workspace().join("room.png"), b"\x89PNG room").unwrap();
    let mut config = home.config();
    config["channels"] = json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["222"], "api_base": tg.api_base()}});
    config["gateway"] = json!({"host": "127.0.0.1", "port": 0});
    home.write_config(&config);

    let out = run(
        home.cmd(),
        &["agent", "-m", "Tell chat 222 the meeting moved to 3 pm"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "I told them.");
    let queued = tool_messages(&endpoint.requests()[1].body).join("\n");
    assert!(!queued.to_lowercase().contains("error"), "{queued}");
    assert!(tg.sent().is_empty(), "the CLI itself sends nothing");

    // The gateway delivers what the CLI queued.
    let gateway = BackgroundGateway::start(&home);
    let mut delivered = false;
    for _ in 0..1200 {
        if tg.files().len() == 2 {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Give a second delivery (which must not happen) a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(gateway);
    assert!(delivered, "the gateway never delivered the queued message");
    assert_eq!(tg.sent(), [(222, "The meeting moved to 3 pm.".to_owned())]);
}
