//! `status` and `onboard`.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn status_masks_the_key_and_version_prints() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let out = run(home.cmd(), &["status"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("test-model"), "{}", out.stdout);
    assert!(out.stdout.contains(&endpoint.base_url()));
    assert!(
        !out.stdout.contains(KEY),
        "key must be masked: {}",
        out.stdout
    );
    assert!(out.stdout.contains("sk-t"), "{}", out.stdout);
    let v = run(home.cmd(), &["version"]).await;
    assert_eq!(
        v.stdout.trim(),
        format!("picoclaw {}", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_names_a_misspelt_channel_key_with_a_suggestion() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
                                "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        "channels": {"telegram": {"enabled": false, "tokn": "123:abc"},
                     "line": {"enabled": false, "channel_secret": "", "webhook_port": 18791},
                     "discrod": {"enabled": true}},
        "rate_limits": {"max_requests_per_minute": 30}
    }));
    let out = run(home.cmd(), &["status"]).await;
    // A section of no channel this build has: a misspelling, named with the closest channel.
    assert!(
        out.stderr.contains(
            "channels.discrod: no channel of that name in this build (did you mean \
             'channels.discord'?)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "unknown key 'channels.telegram.tokn' is ignored (did you mean \
             'channels.telegram.token'?)"
        ),
        "{}",
        out.stderr
    );
    // The original's other channels are not checked; rate_limits is acted on, so nothing is
    // said of it.
    assert!(!out.stderr.contains("channels.line"), "{}", out.stderr);
    assert!(!out.stderr.contains("rate_limits"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn onboard_creates_files_and_never_clobbers_a_users_edits() {
    let home = Home::new();
    let out = run(
        home.cmd(),
        &["onboard", "--non-interactive", "--model", "ollama/qwen3"],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["agents"]["defaults"]["model"], "ollama/qwen3");
    // The channels are there to fill in, switched off.
    for channel in ["telegram", "discord", "slack"] {
        assert_eq!(config["channels"][channel]["enabled"], false, "{channel}");
    }
    assert_eq!(config["channels"]["slack"]["app_token"], "");
    let ws = home.path().join("workspace");
    for f in [
        "AGENT.md",
        "SOUL.md",
        "USER.md",
        "IDENTITY.md",
        "TOOLS.md",
        "HEARTBEAT.md",
    ] {
        assert!(ws.join(f).exists(), "{f} created");
    }
    assert!(ws.join("memory/MEMORY.md").exists());

    // The user edits a template and adds a key picoclaw does not know.
    std::fs::write(ws.join("USER.md"), "My name is Ada.").unwrap();
    let mut edited = config.clone();
    edited["my_plugin"] = json!({"keep": true});
    edited["agents"]["defaults"]["temperature"] = json!(0.2);
    home.write_config(&edited);
    let again = run(home.cmd(), &["onboard", "--non-interactive"]).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        std::fs::read_to_string(ws.join("USER.md")).unwrap(),
        "My name is Ada."
    );
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(after["my_plugin"]["keep"], true);
    assert_eq!(after["agents"]["defaults"]["temperature"], json!(0.2));
    assert_eq!(after["agents"]["defaults"]["model"], "ollama/qwen3");
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn status_tells_whether_the_gateway_runs() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::new();
    let port = free_port();
    let slack = picoclaw_testkit::slack::FakeSlack::start("xoxb-st", "xapp-st");
    let line = picoclaw_testkit::line::FakeLine::start("line-st", "line-token-st");
    home.write_config(&json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.workspace().display().to_string()}},
        "providers": {"openai": {"api_key": KEY, "api_base": endpoint.base_url()}},
        "gateway": {"host": "127.0.0.1", "port": port},
        "channels": {
            "slack": {"enabled": true, "bot_token": "xoxb-st", "app_token": "xapp-st",
                      "allow_from": ["U1"], "api_base": slack.api_base()},
            "matrix": {"enabled": true},
            "discord": {"enabled": false},
            "line": {"enabled": true, "channel_secret": "line-st",
                     "channel_access_token": "line-token-st", "api_base": line.api_base()},
        },
    }));
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout.contains("gateway:    not running"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("channels:   line, matrix (not in this build), slack\n"),
        "{}",
        out.stdout
    );

    let gateway = BackgroundGateway::start(&home);
    let mut running = false;
    for _ in 0..200 {
        let out = run(home.cmd(), &["status"]).await;
        if out.stdout.contains("gateway:    running at")
            && out.stdout.contains("slack (running)")
            && out.stdout.contains("line (running)")
        {
            assert!(out.stdout.contains("(ready)"), "{}", out.stdout);
            assert!(
                out.stdout.contains("matrix (not in this build)"),
                "{}",
                out.stdout
            );
            running = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(gateway);
    assert!(running, "status never saw the gateway");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_where_the_gateway_key_is_and_masks_it() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = Home::with_config(&endpoint, json!({}));
    let mut config = home.config();
    config["gateway"] = json!({"host": "127.0.0.1", "port": free_port()});
    home.write_config(&config);
    let file = home.path().join("gateway.key");
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout
            .contains(&format!("gateway key: {} (not created yet", file.display())),
        "{}",
        out.stdout
    );
    assert!(!file.exists(), "status creates nothing");

    let gateway = BackgroundGateway::start(&home);
    let mut out = run(home.cmd(), &["status"]).await;
    for _ in 0..200 {
        if out.stdout.contains("gateway:    running at") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        out = run(home.cmd(), &["status"]).await;
    }
    assert!(
        out.stdout.contains("gateway:    running at"),
        "{}",
        out.stdout
    );
    drop(gateway);
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("gateway key: "))
        .unwrap_or_default()
        .to_owned();
    assert!(
        line.contains(&format!("read it with `cat {}`", file.display())),
        "{line}"
    );
    assert!(
        line.contains(&key[..4]) && line.contains(&key[60..]),
        "masked: {line}"
    );
    assert!(!out.stdout.contains(&key), "the key itself is never shown");

    // A configured key is used instead, and masked as well.
    config["gateway"]["api_key"] = json!("configured-gateway-key-0123456789");
    home.write_config(&config);
    let out = run(home.cmd(), &["status"]).await;
    assert!(
        out.stdout.contains(
            "gateway key: set by gateway.api_key or PICOCLAW_GATEWAY_API_KEY (conf…6789)"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("configured-gateway-key-0123456789"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dotenv_in_the_working_folder_supplies_the_key_and_never_reaches_commands() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "exec",
            json!({"command": "echo \"marker=[$DOTENV_MARKER] key=[$OPENAI_API_KEY]\""}),
        ),
        Reply::text("done"),
    ])
    .await;
    let home = Home::with_config(&endpoint, json!({}));
    // No key in the config: it is in the .env of the folder picoclaw is started from.
    let mut config = home.config();
    config["providers"]["openai"]
        .as_object_mut()
        .unwrap()
        .remove("api_key");
    home.write_config(&config);
    let project = tempfile::tempdir().unwrap();
    let dotenv = project.path().join(".env");
    std::fs::write(
        &dotenv,
        format!("OPENAI_API_KEY={KEY}\nDOTENV_MARKER=only-for-picoclaw\nTELEGRAM_BOT_TOKEN=123:abcdefghijkl\n"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cmd = home.cmd();
    cmd.current_dir(project.path());
    let out = run(cmd, &["agent", "-m", "print the env"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        endpoint.requests()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    // The values stayed picoclaw's: the command's environment has neither.
    let result = tool_messages(&endpoint.requests()[1].body)[0].clone();
    assert!(result.contains("marker=[] key=[]"), "{result}");
    // status says where each credential came from, masked.
    let mut cmd = home.cmd();
    cmd.current_dir(project.path());
    let status = run(cmd, &["status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let expected = format!("(from .env {} (OPENAI_API_KEY))", dotenv.display());
    assert!(status.stdout.contains(&expected), "{}", status.stdout);
    assert!(
        status.stdout.contains(&format!(
            "credential: channels.telegram.token = 123:…ijkl (from .env {} (TELEGRAM_BOT_TOKEN))",
            dotenv.display()
        )),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains(KEY), "{}", status.stdout);
    assert!(!status.stdout.contains("abcdefghijkl"), "{}", status.stdout);
    // Readable by others, it is refused with the fix.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dotenv, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = home.cmd();
    cmd.current_dir(project.path());
    let out = run(cmd, &["agent", "-m", "hi"]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("chmod 600 {}", dotenv.display())),
        "{}",
        out.stderr
    );
}
