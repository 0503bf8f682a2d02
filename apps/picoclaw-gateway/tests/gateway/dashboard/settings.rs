//! The Settings page (the running config with secrets masked and each value's source; the form
//! that edits config.json) and the Logs page (the captured lines, filtered, live).

use super::super::{Gateway, KEY, edit_config, home_with};
use super::Dash;
use picoclaw_testkit::ScriptedEndpoint;
use serde_json::{Value, json};

const TELEGRAM_TOKEN: &str = "123456789:AAtelegram-secret-token-xyz";
const DISCORD_TOKEN: &str = "discord-secret-token-0987654321";
const LIST_KEY: &str = "sk-modellist-secret-123456789";
const VAULT_SECRET: &str = "kv-secret-from-the-vault-42";

/// The `version` the Settings form carries.
fn version_of(page: &str) -> String {
    let at = page
        .find("name=\"version\" value=\"")
        .expect("a version field");
    let rest = &page[at + "name=\"version\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The text of the notice at the top of a page.
fn notice_of(page: &str) -> String {
    let at = page.find("class=\"notice").expect("a notice");
    let rest = &page[at..];
    let start = rest.find('>').unwrap() + 1;
    rest[start..rest.find("</p>").unwrap()]
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `<tr>` of `key` in the effective config table.
fn row_of<'a>(page: &'a str, key: &str) -> &'a str {
    let at = page
        .find(&format!("<tr data-key=\"{key}\">"))
        .unwrap_or_else(|| panic!("no row for {key}"));
    let rest = &page[at..];
    &rest[..rest.find("</tr>").unwrap()]
}

fn read_config(home: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(home.join("config.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_show_secrets_masked_with_their_sources_and_save_only_the_edited_keys() {
    let identity = picoclaw_testkit::IdentityEndpoint::spawn("eyJ-vault-token", "hdr-secret");
    let vault = picoclaw_testkit::KeyVaultFake::spawn("eyJ-vault-token");
    vault.set("openai-key", VAULT_SECRET);
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    edit_config(home.path(), |config| {
        config["providers"]["openai"]["api_key"] = json!("keyvault://picoclaw-kv/openai-key");
        config["agents"]["defaults"]["x_note"] = json!("kept as written");
        config["x_custom"] = json!({"a": 1, "b": [true, "two"]});
        config["model_list"] = json!([{"model_name": "fast", "model": "openai/fast-model",
            "api_key": LIST_KEY}]);
        config["channels"] = json!({
            "telegram": {"enabled": false, "token": TELEGRAM_TOKEN, "x_extra": 7},
            "discord": {"enabled": false, "token": DISCORD_TOKEN},
        });
    });
    let before = read_config(home.path());
    let gw = Gateway::start_env(
        home.path(),
        &[],
        "warn",
        &[
            ("IDENTITY_ENDPOINT", identity.url()),
            ("IDENTITY_HEADER", "hdr-secret".into()),
            ("AZURE_KEYVAULT_ENDPOINT", vault.url()),
            ("PICOCLAW_HEARTBEAT_INTERVAL", "45".into()),
        ],
    );
    let dash = Dash::login(&gw).await;

    let (status, page) = dash.get("/ui/settings").await;
    assert_eq!(status, 200, "{page}");
    for secret in [VAULT_SECRET, TELEGRAM_TOKEN, DISCORD_TOKEN, LIST_KEY, KEY] {
        assert!(!page.contains(secret), "{secret} is on the page");
    }
    // Masked, not hidden: a long secret shows its ends.
    assert!(row_of(&page, "channels.telegram.token").contains("1234…-xyz"));
    assert!(row_of(&page, "model_list.0.api_key").contains("sk-m…6789"));
    assert!(row_of(&page, "gateway.api_key").contains("gw-t…6789"));
    // Where each value came from.
    let kv = row_of(&page, "providers.openai.api_key");
    assert!(
        kv.contains("Key Vault keyvault://picoclaw-kv/openai-key"),
        "{kv}"
    );
    assert!(kv.contains("kv-s…t-42"), "the vault's secret, masked: {kv}");
    let interval = row_of(&page, "heartbeat.interval");
    assert!(interval.contains(">45<"), "{interval}");
    assert!(
        interval.contains("set by $PICOCLAW_HEARTBEAT_INTERVAL"),
        "{interval}"
    );
    assert!(row_of(&page, "agents.defaults.model").contains("config file"));
    assert!(row_of(&page, "agents.defaults.max_tokens").contains("default"));
    // The form: the model with the model_list names, one switch per channel section, the
    // interval set by the environment read-only.
    for id in [
        "id=\"settings-form\"",
        "id=\"settings-model\"",
        "id=\"settings-save\"",
        "id=\"settings-heartbeat\"",
        "id=\"settings-channel-telegram\"",
        "id=\"settings-channel-discord\"",
        "<option value=\"fast\">",
    ] {
        assert!(page.contains(id), "{id} missing");
    }
    let field_at = page.find("id=\"settings-heartbeat-interval\"").unwrap();
    let field = &page[page[..field_at].rfind('<').unwrap()..];
    let field = &field[..field.find('>').unwrap()];
    assert!(
        field.contains("disabled") && !field.contains("name="),
        "{field}"
    );
    assert!(
        !page.contains("settings-restart-notice"),
        "nothing to restart for yet"
    );

    // Change the model and switch Telegram on; the interval (the environment's) is not sent.
    let (status, location) = dash
        .post_form(
            "/ui/settings",
            &[
                ("version", &version_of(&page)),
                ("switches", "1"),
                ("model", "fast"),
                ("heartbeat", "on"),
                ("channel.telegram", "on"),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, "/ui/settings"));
    let (_, page) = dash.get("/ui/settings").await;
    let path = home.path().join("config.json");
    assert_eq!(
        notice_of(&page),
        format!("Saved to {}. Restart the gateway to apply.", path.display())
    );
    assert!(page.contains("id=\"settings-restart-notice\""), "{page}");

    // Only the two keys changed: the Key Vault reference, the unknown keys, the tokens are the
    // same values; no heartbeat key was added (the form matched the defaults), nothing resolved
    // or masked was written.
    let mut expected = before.clone();
    expected["agents"]["defaults"]["model"] = json!("fast");
    expected["channels"]["telegram"]["enabled"] = json!(true);
    assert_eq!(read_config(home.path()), expected);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(VAULT_SECRET) && !text.contains('…'));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The running gateway still uses what it started with.
    assert!(row_of(&page, "agents.defaults.model").contains("openai/test-model"));
}

#[tokio::test]
async fn settings_refuse_bad_values_and_stale_forms_leaving_the_file_as_it_was() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    edit_config(home.path(), |config| {
        config["channels"] = json!({"discord": {"enabled": false, "token": DISCORD_TOKEN}});
    });
    let path = home.path().join("config.json");
    let gw = Gateway::start(home.path());
    let dash = Dash::login(&gw).await;
    let (_, page) = dash.get("/ui/settings").await;
    let version = version_of(&page);
    let original = std::fs::read(&path).unwrap();

    let long = "x".repeat(300);
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("model", "nosuch/model-x"), ("heartbeat", "on")],
            "unknown provider 'nosuch'",
        ),
        (
            &[
                ("model", "openai/test-model"),
                ("heartbeat", "on"),
                ("heartbeat_interval", "0"),
            ],
            "heartbeat.interval is 0 minutes",
        ),
        (
            &[
                ("model", "openai/test-model"),
                ("heartbeat", "on"),
                ("heartbeat_interval", "abc"),
            ],
            "heartbeat.interval: invalid type: string \"abc\"",
        ),
        (
            &[("model", &long), ("heartbeat", "on")],
            "longer than 200 characters",
        ),
        (
            &[
                ("model", "openai/test-model"),
                ("heartbeat", "on"),
                ("heartbeat_interval", "-5"),
            ],
            "heartbeat.interval: invalid value",
        ),
    ];
    for (fields, why) in cases {
        let mut fields = fields.to_vec();
        fields.push(("version", &version));
        fields.push(("switches", "1"));
        let (status, location) = dash.post_form("/ui/settings", &fields).await;
        assert_eq!((status, location.as_str()), (303, "/ui/settings"));
        let (_, page) = dash.get("/ui/settings").await;
        let notice = notice_of(&page);
        assert!(
            notice.starts_with("Not saved: ") && notice.contains(why),
            "{fields:?}: {notice}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), original, "{fields:?}");
    }

    // A switch for a channel the file does not have is ignored, whatever its name.
    let (_, location) = dash
        .post_form(
            "/ui/settings",
            &[
                ("version", &version),
                ("switches", "1"),
                ("model", "openai/test-model"),
                ("heartbeat", "on"),
                ("heartbeat_interval", "30"),
                ("channel.../../etc", "on"),
                ("channel.evil", "on"),
            ],
        )
        .await;
    assert_eq!(location, "/ui/settings");
    let (_, page) = dash.get("/ui/settings").await;
    assert_eq!(
        notice_of(&page),
        "Nothing to save: the form matches the file."
    );
    assert_eq!(std::fs::read(&path).unwrap(), original);

    // The file changed since the page was shown: refused, the other edit kept.
    edit_config(home.path(), |config| config["x_other_edit"] = json!(1));
    let edited = std::fs::read(&path).unwrap();
    dash.post_form(
        "/ui/settings",
        &[
            ("version", &version),
            ("switches", "1"),
            ("model", "openai/other-model"),
            ("heartbeat", "on"),
            ("heartbeat_interval", "30"),
        ],
    )
    .await;
    let (_, page) = dash.get("/ui/settings").await;
    let notice = notice_of(&page);
    assert!(
        notice.contains("the file changed") && notice.contains("reload"),
        "{notice}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), edited);

    // With the page reloaded, the same edit goes through.
    let version = version_of(&page);
    dash.post_form(
        "/ui/settings",
        &[
            ("version", &version),
            ("switches", "1"),
            ("model", "openai/other-model"),
            ("heartbeat", "on"),
            ("heartbeat_interval", "30"),
            ("channel.discord", "on"),
        ],
    )
    .await;
    let config = read_config(home.path());
    assert_eq!(config["agents"]["defaults"]["model"], "openai/other-model");
    assert_eq!(config["channels"]["discord"]["enabled"], true);
    assert_eq!(config["channels"]["discord"]["token"], DISCORD_TOKEN);
    assert_eq!(config["x_other_edit"], 1);

    // A form without the switches' marker (not the page's own) turns nothing off: a missing
    // checkbox would read as "off".
    let (_, page) = dash.get("/ui/settings").await;
    dash.post_form(
        "/ui/settings",
        &[
            ("version", &version_of(&page)),
            ("model", "openai/third-model"),
        ],
    )
    .await;
    let config = read_config(home.path());
    assert_eq!(config["agents"]["defaults"]["model"], "openai/third-model");
    assert_eq!(config["channels"]["discord"]["enabled"], true);
    assert_ne!(config["heartbeat"]["enabled"], false, "not switched off");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_show_the_gateways_lines_after_a_number_and_by_level() {
    let endpoint = ScriptedEndpoint::start().await;
    let home = home_with(&endpoint, json!({"port": 0, "api_key": KEY}));
    // An unknown key: the gateway warns about it at start.
    edit_config(home.path(), |config| config["x_unknown_key"] = json!(1));
    let gw = Gateway::start_with(home.path(), &[], "info");
    let dash = Dash::login(&gw).await;

    let (status, page) = dash.get("/ui/logs").await;
    assert_eq!(status, 200, "{page}");
    for id in ["logs-list", "logs-level", "logs-filter", "logs-pause"] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(page.contains("gateway listening"), "{page}");

    let lines = |body: &str| -> Vec<(u64, String, String)> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["seq"].as_u64().unwrap(),
                    l["text"].as_str().unwrap().to_owned(),
                    l["level"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (status, body) = dash.get("/ui/api/logs").await;
    assert_eq!(status, 200, "{body}");
    let all = lines(&body);
    let listening = all
        .iter()
        .find(|(_, text, _)| text.contains("gateway listening"))
        .expect("the start line")
        .0;
    assert!(all.iter().all(|(_, t, _)| !t.contains(KEY)), "{body}");

    // After a number: only the lines after it.
    let (_, body) = dash.get(&format!("/ui/api/logs?after={listening}")).await;
    let after = lines(&body);
    assert!(after.iter().all(|(seq, _, _)| *seq > listening), "{body}");
    assert_eq!(
        after.len(),
        all.iter().filter(|(seq, _, _)| *seq > listening).count()
    );

    // By level: WARN and above only, the unknown key's warning among them.
    let (_, body) = dash.get("/ui/api/logs?level=warn").await;
    let warn = lines(&body);
    assert!(
        warn.iter().any(|(_, t, _)| t.contains("x_unknown_key")),
        "{body}"
    );
    assert!(
        warn.iter()
            .all(|(_, _, level)| level == "WARN" || level == "ERROR"),
        "{body}"
    );
    let (_, page) = dash.get("/ui/logs?level=warn").await;
    assert!(page.contains("x_unknown_key") && !page.contains("gateway listening"));
    let (status, _) = dash.get("/ui/api/logs?level=loud").await;
    assert_eq!(status, 400);

    // Live: a request waiting after the last line gets the next one the gateway logs.
    let v: Value = serde_json::from_str(&dash.get("/ui/api/logs").await.1).unwrap();
    let next = v["next"].as_u64().unwrap();
    let waiting = {
        let http = dash.http.clone();
        let url = format!("{}/ui/api/logs?after={next}&wait=true", dash.base);
        let cookie = dash.cookie.clone();
        tokio::spawn(async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    // A save logs a line.
    let (_, page) = dash.get("/ui/settings").await;
    dash.post_form(
        "/ui/settings",
        &[
            ("version", &version_of(&page)),
            ("switches", "1"),
            ("model", "openai/other-model"),
            ("heartbeat", "on"),
            ("heartbeat_interval", "30"),
        ],
    )
    .await;
    let body = waiting.await.unwrap();
    let new = lines(&body);
    assert!(new.iter().all(|(seq, _, _)| *seq > next), "{body}");
    assert!(
        new.iter()
            .any(|(_, t, _)| t.contains("settings saved from the dashboard")),
        "{body}"
    );
}
