//! Scheduled jobs from the CLI and from the agent.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn cron_jobs_are_managed_from_the_cli_and_by_the_agent() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "cron",
            json!({"action": "add", "message": "Stand up and stretch", "every_seconds": 3600}),
        ),
        Reply::text("Every hour, I'll remind you."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("no scheduled jobs"), "{}", out.stderr);

    let out = run(
        home.cmd(),
        &[
            "cron",
            "add",
            "-m",
            "Standup notes",
            "--cron",
            "0 9 * * 1-5",
            "--tz",
            "Europe/Lisbon",
            "--to",
            "telegram:42",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out.stdout.trim().to_owned();
    assert_eq!(id.len(), 16, "the new job's id on stdout: {}", out.stdout);

    // The agent schedules through its tool.
    let out = run(
        home.cmd(),
        &["agent", "-m", "remind me to stretch every hour"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let tool_result = tool_messages(&endpoint.requests()[1].body)[0].clone();
    assert!(
        tool_result.starts_with("Scheduled: Stand up and stretch"),
        "{tool_result}"
    );

    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(
        out.stdout.contains("cron \"0 9 * * 1-5\" (Europe/Lisbon)"),
        "{}",
        out.stdout
    );
    // The owner sees which chat made a job.
    assert!(
        out.stdout.contains("(made in cli:cli:default)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("→ telegram:42"), "{}", out.stdout);
    assert!(out.stdout.contains("every 1h"), "{}", out.stdout);

    let out = run(home.cmd(), &["cron", "disable", &id]).await;
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("disabled"), "{}", out.stderr);
    let out = run(home.cmd(), &["cron", "enable", &id]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(home.cmd(), &["cron", "remove", &id]).await;
    assert_eq!(out.code, 0);
    let out = run(home.cmd(), &["cron", "remove", &id]).await;
    assert_eq!(out.code, 1);

    // Bad input: a clear message and exit code 2, nothing stored.
    for args in [
        &["cron", "add", "-m", "x", "--in", "soon"][..],
        &["cron", "add", "-m", "x", "--cron", "61 * * * *"][..],
        &["cron", "add", "-m", "x", "--at", "tomorrow"][..],
        &["cron", "add", "-m", "x", "--in", "10m", "--to", "telegram"][..],
        &["cron", "add", "-m", "x", "--at", "2001-01-01 09:00"][..],
    ] {
        let out = run(home.cmd(), args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
    }
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cron_started_turn_cannot_add_cron_jobs_and_the_tool_sees_only_its_chat() {
    let endpoint = ScriptedEndpoint::start_with([
        // The job's turn, run by the gateway: it tries to schedule more work.
        Reply::tool_call(
            "cron",
            json!({"action": "add", "message": "Check the news again", "every_seconds": 60}),
        ),
        Reply::text("Checked the news."),
        // Then a turn in the terminal lists the jobs it can see.
        Reply::tool_call("cron", json!({"action": "list"})),
        Reply::text("Nothing is scheduled here."),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = home.config();
    config["gateway"] = json!({"host": "127.0.0.1", "port": port});
    config["heartbeat"] = json!({"enabled": false});
    config["tools"] = json!({"cron": {"max_jobs": 5}});
    home.write_config(&config);
    // The owner's jobs: a task for the agent, due at once, and a reminder for a Telegram chat.
    for args in [
        &[
            "cron",
            "add",
            "-m",
            "Look for news",
            "--agent",
            "--in",
            "1s",
        ][..],
        &[
            "cron",
            "add",
            "-m",
            "Standup",
            "--every",
            "1d",
            "--to",
            "telegram:42",
        ][..],
    ] {
        let out = run(home.cmd(), args).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }

    // Stopped when dropped: a failed assertion leaves no gateway behind.
    let gateway = BackgroundGateway::start(&home);
    for _ in 0..600 {
        if endpoint.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let requests = endpoint.requests();
    assert!(requests.len() >= 2, "the job never ran its turn");
    assert!(
        requests[0].body["messages"]
            .to_string()
            .contains("Scheduled task"),
        "the first request is the job's turn"
    );
    let refused = tool_messages(&requests[1].body)[0].clone();
    assert!(
        refused.contains("scheduled turns cannot add jobs"),
        "{refused}"
    );
    // Let the run finish (its result recorded, the one-shot removed) before stopping.
    for _ in 0..600 {
        let out = run(home.cmd(), &["cron", "list"]).await;
        if !out.stdout.contains("Look for news") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(gateway);
    let out = run(home.cmd(), &["cron", "list"]).await;
    assert!(!out.stdout.contains("Check the news"), "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
    assert!(out.stdout.contains("Standup"), "{}", out.stdout);

    // The terminal's cron tool does not see the Telegram chat's job; the owner's CLI did.
    let out = run(home.cmd(), &["agent", "-m", "what is scheduled?"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed = tool_messages(&endpoint.requests()[3].body)[0].clone();
    assert_eq!(listed, "No scheduled jobs in this chat.");
}
