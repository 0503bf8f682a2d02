//! Loading, overrides, validation, model resolution and writing, on real files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_config::{
    ConfigError, Paths, load_with_env, merge_preserving, write_config_atomically,
};
use serde_json::{Value, json};
use std::collections::HashMap;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn paths(&self) -> Paths {
        Paths::new(self.dir.path(), self.dir.path().join("config.json"))
    }
    fn write(&self, text: &str) {
        std::fs::write(self.dir.path().join("config.json"), text).unwrap();
    }
    fn write_json(&self, v: &Value) {
        self.write(&serde_json::to_string_pretty(v).unwrap());
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_original_layout_loads_quietly_and_resolves() {
    let home = Home::new();
    home.write(include_str!("fixtures/original.json"));
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    assert!(loaded.file_found);
    // Every key is known, `rate_limits` is acted on, and `devices` is switched off (nothing is
    // lost by ignoring it): nothing to say.
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.rate_limits, picoclaw_config::RateLimits::new(30, 60));
    assert!(!c.tools.exec.enabled);
    assert_eq!(c.gateway.port, 18790);
    assert!(c.channels.telegram.is_some() && c.channels.line.is_some());
    let r = c.resolve_model(&env(&[])).unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("deepseek", "deepseek-chat")
    );
    assert_eq!(r.api_base, "https://api.deepseek.com/v1");
    assert_eq!(r.api_key.unwrap().expose(), "sk-deepseek-fixture-0001");
    // Round trip keeps the sections this build does not model.
    let back = serde_json::to_value(c).unwrap();
    assert_eq!(
        back["tools"]["mcp"]["servers"]["example-stdio"]["command"],
        "npx"
    );
    assert_eq!(back["channels"]["line"]["webhook_port"], 18791);
    assert_eq!(back["rate_limits"]["max_requests_per_minute"], 30);
    assert_eq!(back["providers"]["openai"]["auth_method"], "oauth");
}

#[test]
fn a_missing_file_means_defaults() {
    let home = Home::new();
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    assert!(!loaded.file_found);
    let d = &loaded.config.agents.defaults;
    assert_eq!(
        (d.max_tokens, d.context_window, d.max_tool_iterations),
        (8192, 128_000, 20)
    );
    assert!(d.restrict_to_workspace);
    assert_eq!(
        loaded.config.workspace_path(&home.paths()),
        home.dir.path().join("workspace")
    );
}

#[test]
fn malformed_json_reports_line_and_column() {
    let home = Home::new();
    home.write("{\n  \"agents\": {\n    \"defaults\": {\"model\": \"x\",}\n  }\n}\n");
    let err = load_with_env(&home.paths(), &env(&[])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Parse { line: 3, .. }), "{msg}");
    assert!(msg.contains("config.json:3:"), "{msg}");
    assert!(msg.contains("fix the JSON"), "{msg}");
}

#[test]
fn a_wrong_type_names_the_key() {
    let home = Home::new();
    home.write_json(&json!({"agents": {"defaults": {"max_tokens": "lots"}}}));
    let msg = load_with_env(&home.paths(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("agents.defaults.max_tokens"), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");
}

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let home = Home::new();
    home.write_json(&json!({"agents": {"defaults": {"modle": "openai/gpt-4o"}}, "gatway": {}}));
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    let all = loaded.warnings.join("\n");
    assert!(
        all.contains("agents.defaults.modle")
            && all.contains("did you mean 'agents.defaults.model'"),
        "{all}"
    );
    assert!(
        all.contains("'gatway'") && all.contains("did you mean 'gateway'"),
        "{all}"
    );
}

/// The warnings of loading `v`, joined.
fn warnings_of(v: &Value) -> String {
    let home = Home::new();
    home.write_json(v);
    load_with_env(&home.paths(), &env(&[]))
        .unwrap()
        .warnings
        .join("\n")
}

#[test]
fn unknown_keys_in_channel_sections_warn_with_a_suggestion() {
    let all = warnings_of(&json!({"channels": {
        "telegram": {"enabled": false, "tokn": "123:abc", "allow_from": [42, "ada"]},
        "slack": {"bot_tokem": "xoxb-1", "app_token": "xapp-1"},
        "discrod": {"enabled": true}
    }}));
    for (key, want) in [
        ("channels.telegram.tokn", "channels.telegram.token"),
        ("channels.slack.bot_tokem", "channels.slack.bot_token"),
    ] {
        assert!(
            all.contains(&format!(
                "unknown key '{key}' is ignored (did you mean '{want}'?)"
            )),
            "{key}: {all}"
        );
    }
    // `discrod` may be a build's own channel: only the build can tell (status and the gateway
    // warn, see picoclaw_gateway::unknown_channel_sections); loading keeps it quietly.
    assert_eq!(all.lines().count(), 2, "{all}");
}

#[test]
fn the_originals_other_channels_and_keys_are_accepted_quietly() {
    let all = warnings_of(&json!({"channels": {
        "telegram": {"enabled": false, "token": "", "base_url": "", "proxy": "",
                     "allow_from": [], "group_trigger": {"mention_only": true},
                     "typing": {"enabled": true}, "placeholder": {"enabled": false},
                     "reasoning_channel_id": "", "use_markdown_v2": false,
                     "streaming": {"enabled": true}},
        "discord": {"enabled": false, "token": "", "proxy": "", "mention_only": true},
        "line": {"enabled": false, "channel_secret": "s", "channel_access_token": "t",
                 "webhook_host": "127.0.0.1", "webhook_port": 18791,
                 "webhook_path": "/webhook/line", "allow_from": []},
        "feishu": {"enabled": false, "app_id": "", "app_secret": "", "encrypt_key": "",
                   "verification_token": "", "allow_from": []},
        "whatsapp": {"enabled": false, "bridge_url": "ws://localhost:3001"},
        "onebot": {"enabled": false, "ws_url": "ws://127.0.0.1:3001"},
        "pico": {"enabled": false, "token": ""}
    }}));
    assert!(all.is_empty(), "{all}");
}

#[test]
fn the_six_messengers_load_in_both_layouts_of_the_original() {
    // The original's first layout: flat sections, with its v0.1 group prefix list.
    let flat = json!({"channels": {
        "whatsapp": {"enabled": true, "bridge_url": "ws://localhost:3001", "use_native": false,
                     "session_store_path": "", "allow_from": ["8613800000000"],
                     "reasoning_channel_id": ""},
        "line": {"enabled": true, "channel_secret": "s", "channel_access_token": "t",
                 "webhook_host": "0.0.0.0", "webhook_port": 18791, "webhook_path": "/webhook/line",
                 "allow_from": ["U1"], "group_trigger": {"mention_only": true},
                 "typing": {"enabled": true}, "placeholder": {"enabled": false, "text": ""}},
        "feishu": {"enabled": true, "app_id": "cli_a", "app_secret": "s", "encrypt_key": "",
                   "verification_token": "", "allow_from": ["ou_1"], "is_lark": false},
        "dingtalk": {"enabled": true, "client_id": "c", "client_secret": "s", "allow_from": []},
        "qq": {"enabled": true, "app_id": "1", "app_secret": "s", "allow_from": [],
               "max_message_length": 2000, "send_markdown": false},
        "onebot": {"enabled": true, "ws_url": "ws://127.0.0.1:3001", "access_token": "",
                   "reconnect_interval": 5, "group_trigger_prefix": ["/ai"], "allow_from": [10001]},
        "wecom": {"enabled": true, "token": "t", "encoding_aes_key": "k",
                  "webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x",
                  "webhook_host": "0.0.0.0", "webhook_port": 18793, "webhook_path": "/webhook/wecom",
                  "reply_timeout": 5, "allow_from": []},
        "wecom_app": {"enabled": true, "corp_id": "ww1", "corp_secret": "s", "agent_id": 1000002,
                      "token": "t", "encoding_aes_key": "k", "webhook_host": "0.0.0.0",
                      "webhook_port": 18792, "webhook_path": "/webhook/wecom-app",
                      "reply_timeout": 5, "allow_from": ["zhangsan"]}
    }});
    assert!(warnings_of(&flat).is_empty(), "{}", warnings_of(&flat));
    let home = Home::new();
    home.write_json(&flat);
    let c = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    assert_eq!(
        c.channels.enabled(),
        [
            "whatsapp",
            "line",
            "feishu",
            "dingtalk",
            "qq",
            "onebot",
            "wecom",
            "wecom_app"
        ]
    );
    assert_eq!(c.channels.onebot.as_ref().unwrap().allow_from, ["10001"]);
    assert_eq!(
        c.channels.onebot.as_ref().unwrap().group_trigger_prefix,
        ["/ai"]
    );

    // Its later layout: common keys outside, the platform's inside `settings`, and `type`.
    let nested = json!({"channels": {
        "line": {"enabled": true, "type": "line", "allow_from": ["U2"],
                 "group_trigger": {"mention_only": false, "prefixes": ["!bot"]},
                 "settings": {"channel_secret": "s2", "channel_access_token": "t2",
                              "webhook_port": 18791}},
        "feishu": {"enabled": true, "type": "feishu",
                   "settings": {"app_id": "cli_b", "app_secret": "s", "is_lark": true}}
    }});
    assert!(warnings_of(&nested).is_empty(), "{}", warnings_of(&nested));
    home.write_json(&nested);
    let c = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    let line = c.channels.line.as_ref().unwrap();
    assert_eq!(line.channel_secret.as_deref(), Some("s2"));
    assert_eq!(line.webhook_port, Some(18791));
    assert_eq!(line.allow_from, ["U2"]);
    assert_eq!(c.channels.feishu.as_ref().unwrap().is_lark, Some(true));

    // A misspelt key inside `settings` is still named, with the closest one.
    let typo = warnings_of(&json!({"channels": {"line": {"enabled": false,
        "settings": {"chanel_secret": "s"}}}}));
    assert!(
        typo.contains(
            "unknown key 'channels.line.chanel_secret' is ignored (did you mean \
                       'channels.line.channel_secret'?)"
        ),
        "{typo}"
    );
}

#[test]
fn pico_and_maixcam_sections_are_typed_and_websocket_is_picos_older_name() {
    let all = warnings_of(&json!({"channels": {
        "pico": {"enabled": true, "token": "t", "allow_origin": ["*"], "ping_interval": 30},
        "maixcam": {"enabled": false, "host": "0.0.0.0", "prot": 18791, "allow_from": []}
    }}));
    for (key, want) in [
        ("channels.pico.allow_origin", "channels.pico.allow_origins"),
        ("channels.maixcam.prot", "channels.maixcam.port"),
    ] {
        assert!(
            all.contains(&format!(
                "unknown key '{key}' is ignored (did you mean '{want}'?)"
            )),
            "{key}: {all}"
        );
    }
    let home = Home::new();
    home.write_json(
        &json!({"channels": {"websocket": {"enabled": true, "token": "t",
        "allow_token_query": false, "read_timeout": 60, "write_timeout": 10,
        "max_connections": 5, "allow_from": ["pico-user"]}}}),
    );
    let config = load_with_env(&home.paths(), &env(&[])).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.config.channels.enabled(), ["pico"]);
    let pico = config.config.channels.pico.as_ref().unwrap();
    assert_eq!(pico.max_connections, Some(5));
    assert_eq!(pico.token.as_deref(), Some("t"));
}

#[test]
fn a_wrong_type_in_a_channel_section_names_the_key() {
    let home = Home::new();
    home.write_json(&json!({"channels": {"discord": {"mention_only": "yes"}}}));
    let msg = load_with_env(&home.paths(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("channels.discord.mention_only"), "{msg}");
}

#[test]
fn unknown_keys_in_tool_sections_and_stt_warn_with_a_suggestion() {
    let all = warnings_of(&json!({
        "tools": {
            "web": {"brave": {"enabled": false, "api_kye": "k"}, "fetch": {"proxi": ""},
                    "duckduckgo": {"enabled": true}},
            "mcp": {"servers": {"fs": {"comand": "npx"}}, "max_inline_tool": 3},
            "skills": {"buitin": false},
            "i2c": {"enable": true},
            "spii": {"enabled": true},
            "gpio": {"enabled": true, "pin": [17]}
        },
        "stt": {"api_kee": "gsk", "model": "whisper-large-v3"}
    }));
    for (key, want) in [
        ("tools.web.brave.api_kye", "tools.web.brave.api_key"),
        ("tools.web.fetch.proxi", "tools.web.fetch.proxy"),
        (
            "tools.mcp.servers.fs.comand",
            "tools.mcp.servers.fs.command",
        ),
        ("tools.mcp.max_inline_tool", "tools.mcp.max_inline_tools"),
        ("tools.skills.buitin", "tools.skills.builtin"),
        ("tools.i2c.enable", "tools.i2c.enabled"),
        ("tools.spii", "tools.spi"),
        ("tools.gpio.pin", "tools.gpio.pins"),
        ("stt.api_kee", "stt.api_key"),
    ] {
        assert!(
            all.contains(&format!(
                "unknown key '{key}' is ignored (did you mean '{want}'?)"
            )),
            "{key}: {all}"
        );
    }
    assert_eq!(all.lines().count(), 9, "{all}");
}

#[test]
fn sections_kept_but_not_used_warn_once_each() {
    let all = warnings_of(&json!({
        "agents": {"list": [{"id": "a", "workspace": "~/a"}, {"id": "b", "skills": ["x"]}]},
        "rate_limits": {"max_tool_calls_per_minute": 60, "max_requests_per_minute": 30},
        "bindings": [{"agent_id": "a", "match": {"channel": "telegram"}}],
        "devices": {"enabled": true, "monitor_usb": true}
    }));
    assert_eq!(all.matches("devices: ").count(), 1, "{all}");
    // rate_limits is enforced now: nothing is said of it.
    assert!(!all.contains("rate_limits"), "{all}");
    // Several agents and their bindings are acted on now: nothing is said of them.
    assert!(
        !all.contains("agents.list") && !all.contains("bindings"),
        "{all}"
    );
    assert_eq!(all.lines().count(), 1, "{all}");
    assert!(!all.contains("unknown key"), "{all}");
    // Empty or switched off: nothing is ignored, nothing is said.
    let quiet = warnings_of(&json!({"agents": {"list": []}, "devices": {"enabled": false}}));
    assert!(quiet.is_empty(), "{quiet}");
}

#[test]
fn gateway_access_keys_are_typed_overridable_and_checked() {
    let home = Home::new();
    home.write_json(&json!({"gateway": {
        "allowed_origins": ["https://app.example.com", "app.example.com"],
        "allowed_hosts": ["picoclaw.example.com", "https://wrong.example"],
        "metrics_public": true,
        "allowed_origin": ["https://typo.example"],
    }}));
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    let gw = &loaded.config.gateway;
    assert_eq!(
        gw.allowed_origins,
        ["https://app.example.com", "app.example.com"]
    );
    assert_eq!(
        gw.allowed_hosts,
        ["picoclaw.example.com", "https://wrong.example"]
    );
    assert!(gw.metrics_public);
    let all = loaded.warnings.join("\n");
    assert!(
        all.contains("'gateway.allowed_origin'")
            && all.contains("did you mean 'gateway.allowed_origins'"),
        "{all}"
    );
    assert!(
        all.contains("gateway.allowed_origins[1] is 'app.example.com'"),
        "{all}"
    );
    assert!(
        all.contains("gateway.allowed_hosts[1] is 'https://wrong.example'"),
        "{all}"
    );
    assert!(!all.contains("allowed_origins[0]"), "{all}");

    // From the environment, as a comma-separated list or JSON.
    let e = env(&[
        (
            "PICOCLAW_GATEWAY_ALLOWED_HOSTS",
            "a.example, b.example:8443",
        ),
        (
            "PICOCLAW_GATEWAY_ALLOWED_ORIGINS",
            r#"["https://c.example"]"#,
        ),
        ("PICOCLAW_GATEWAY_METRICS_PUBLIC", "false"),
    ]);
    let c = load_with_env(&home.paths(), &e).unwrap().config;
    assert_eq!(c.gateway.allowed_hosts, ["a.example", "b.example:8443"]);
    assert_eq!(c.gateway.allowed_origins, ["https://c.example"]);
    assert!(!c.gateway.metrics_public);

    // A wrong type names the key.
    home.write_json(&json!({"gateway": {"metrics_public": "yes"}}));
    let msg = load_with_env(&home.paths(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("gateway.metrics_public"), "{msg}");
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let home = Home::new();
    home.write_json(&json!({"agents": {"defaults": {"temperature": 3.5, "context_window": 4096}}}));
    let msg = load_with_env(&home.paths(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("agents.defaults.temperature is 3.5"), "{msg}");
    assert!(
        msg.contains("agents.defaults.context_window (4096) must be larger than max_tokens (8192)"),
        "{msg}"
    );
}

#[test]
fn environment_overrides_every_key() {
    let home = Home::new();
    home.write_json(&json!({"agents": {"defaults": {"model": "openai/gpt-4o"}}}));
    let e = env(&[
        ("PICOCLAW_AGENTS_DEFAULTS_MODEL", "ollama/qwen3"),
        ("PICOCLAW_AGENTS_DEFAULTS_MAX_TOKENS", "1024"),
        ("PICOCLAW_AGENTS_DEFAULTS_RESTRICT_TO_WORKSPACE", "false"),
        ("PICOCLAW_GATEWAY_PORT", "19000"),
        ("PICOCLAW_HEARTBEAT_ENABLED", "0"),
        ("PICOCLAW_PROVIDERS_DEEPSEEK_API_KEY", "sk-from-env"),
        ("PICOCLAW_CHANNELS_SLACK_BOT_TOKEN", "xoxb-from-env"),
        ("PICOCLAW_HOME", "/ignored/here"),
    ]);
    let c = load_with_env(&home.paths(), &e).unwrap().config;
    assert_eq!(c.agents.defaults.model, "ollama/qwen3");
    assert_eq!(c.agents.defaults.max_tokens, 1024);
    assert!(!c.agents.defaults.restrict_to_workspace);
    assert_eq!(c.gateway.port, 19000);
    assert!(!c.heartbeat.enabled);
    assert_eq!(
        c.providers["deepseek"].api_key.as_ref().unwrap().expose(),
        "sk-from-env"
    );
    // A channel token that is not in the file at all.
    assert_eq!(
        c.channels.slack.as_ref().unwrap().bot_token.as_deref(),
        Some("xoxb-from-env")
    );

    let err = load_with_env(&home.paths(), &env(&[("PICOCLAW_GATEWAY_PORT", "many")])).unwrap_err();
    assert!(err.to_string().contains("PICOCLAW_GATEWAY_PORT"), "{err}");
    let err = load_with_env(
        &home.paths(),
        &env(&[("PICOCLAW_HEARTBEAT_ENABLED", "maybe")]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("PICOCLAW_HEARTBEAT_ENABLED"),
        "{err}"
    );
}

#[test]
fn paths_follow_the_environment() {
    let p = Paths::from_env_map(&env(&[("PICOCLAW_HOME", "/srv/pc")]), None).unwrap();
    assert_eq!(p.config_file(), std::path::Path::new("/srv/pc/config.json"));
    assert_eq!(p.state_db(), std::path::PathBuf::from("/srv/pc/state.db"));
    let p = Paths::from_env_map(
        &env(&[("PICOCLAW_CONFIG", "/etc/pc.json")]),
        Some("/home/ada".into()),
    )
    .unwrap();
    assert_eq!(p.home(), std::path::Path::new("/home/ada/.picoclaw"));
    assert_eq!(p.config_file(), std::path::Path::new("/etc/pc.json"));
    assert!(Paths::from_env_map(&env(&[]), None).is_err());
}

fn resolve(
    config: Value,
    e: &[(&str, &str)],
) -> Result<picoclaw_config::ResolvedModel, ConfigError> {
    let home = Home::new();
    home.write_json(&config);
    load_with_env(&home.paths(), &env(&[]))
        .unwrap()
        .config
        .resolve_model(&env(e))
}

#[test]
fn resolution_order() {
    // Explicit provider.
    let r = resolve(
        json!({"agents": {"defaults": {"provider": "groq", "model": "llama-3.3-70b"}},
        "providers": {"groq": {"api_key": "gsk_1"}}}),
        &[],
    )
    .unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("groq", "llama-3.3-70b")
    );
    // Prefix; everything after the first '/' is the model id.
    let r = resolve(
        json!({"agents": {"defaults": {"model": "openrouter/anthropic/claude-3.5-sonnet"}}}),
        &[("OPENROUTER_API_KEY", "sk-or")],
    )
    .unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("openrouter", "anthropic/claude-3.5-sonnet")
    );
    assert_eq!(r.api_key.unwrap().expose(), "sk-or");
    // Local servers need no key.
    let r = resolve(
        json!({"agents": {"defaults": {"model": "ollama/qwen3"}}}),
        &[],
    )
    .unwrap();
    assert_eq!(r.api_base, "http://localhost:11434/v1");
    assert!(r.api_key.is_none());
    // model_list alias with api_keys; its settings win over providers.<name>.
    let r = resolve(json!({
        "agents": {"defaults": {"model_name": "fast"}},
        "providers": {"openai": {"api_key": "sk-provider", "api_base": "https://wrong.example/v1"}},
        "model_list": [{"model_name": "fast", "model": "openai/gpt-4o-mini",
                        "api_base": "https://gw.example/v1", "api_keys": ["sk-list-1", "sk-list-2"]}]}), &[]).unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(r.api_base, "https://gw.example/v1");
    assert_eq!(r.api_key.as_ref().unwrap().expose(), "sk-list-1");
    assert!(r.via.contains("model_list"));
    // The second key takes turns with the first.
    assert_eq!(r.alternates.len(), 1);
    assert_eq!(
        r.alternates[0].api_key.as_ref().unwrap().expose(),
        "sk-list-2"
    );
    // Known names.
    let r = resolve(
        json!({"agents": {"defaults": {"model": "gpt-4o"}}}),
        &[("OPENAI_API_KEY", "sk-env")],
    )
    .unwrap();
    assert_eq!(r.provider, "openai");
    let r = resolve(
        json!({"agents": {"defaults": {"model": "glm-4.7"}},
        "providers": {"zhipu": {"api_key": "z"}}}),
        &[],
    )
    .unwrap();
    assert_eq!(r.provider, "zhipu");
    // Claude: by name, with the native wire format.
    let r = resolve(
        json!({"agents": {"defaults": {"model": "claude-sonnet-4-5"}}}),
        &[("ANTHROPIC_API_KEY", "sk-ant")],
    )
    .unwrap();
    assert_eq!(r.provider, "anthropic");
    assert_eq!(r.api_base, "https://api.anthropic.com");
    assert_eq!(r.wire, "anthropic");
}

#[test]
fn the_standard_openai_variables_are_honoured() {
    let r = resolve(json!({}), &[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")]).unwrap();
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(r.api_base, "http://127.0.0.1:9/v1");
    assert!(r.api_key.is_none(), "a custom base needs no key");
    let r = resolve(
        json!({"agents": {"defaults": {"model": "openai/gpt-4o"}}}),
        &[("OPENAI_API_KEY", "sk-e")],
    )
    .unwrap();
    assert_eq!(r.api_base, "https://api.openai.com/v1");
    assert_eq!(r.api_key.unwrap().expose(), "sk-e");
}

#[test]
fn resolution_errors_say_what_to_do() {
    let err = resolve(json!({}), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::NoProvider { .. }));
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && msg.contains("picoclaw onboard") && msg.contains("OPENAI_API_KEY"),
        "{msg}"
    );

    let msg = resolve(
        json!({"agents": {"defaults": {"model": "mistralai/mixtral"}}}),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("unknown provider 'mistralai'") && msg.contains("openrouter"),
        "{msg}"
    );
    let msg = resolve(
        json!({"agents": {"defaults": {"model": "bedrock/claude"}}}),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("not supported yet"), "{msg}");
    let msg = resolve(
        json!({"agents": {"defaults": {"model": "anthropic/claude-sonnet-4-5"}}}),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("ANTHROPIC_API_KEY"), "{msg}");

    let err = resolve(
        json!({"agents": {"defaults": {"model": "deepseek/deepseek-chat"}}}),
        &[],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::MissingKey { .. }), "{msg}");
    assert!(
        msg.contains("providers.deepseek.api_key") && msg.contains("DEEPSEEK_API_KEY"),
        "{msg}"
    );

    let msg = resolve(
        json!({"agents": {"defaults": {"model": "my-special-model"}}}),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("my-special-model") && msg.contains("provider/model"),
        "{msg}"
    );
}

#[test]
fn atomic_write_keeps_unknown_keys() {
    let home = Home::new();
    let path = home.dir.path().join("sub/config.json");
    let user = json!({"agents": {"defaults": {"model": "ollama/qwen3", "my_note": "keep me"}},
                      "custom_section": {"a": 1}});
    let merged = merge_preserving(user, picoclaw_config::default_config_json());
    write_config_atomically(&path, &merged).unwrap();
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        back["agents"]["defaults"]["model"], "ollama/qwen3",
        "the user's value wins"
    );
    assert_eq!(back["agents"]["defaults"]["my_note"], "keep me");
    assert_eq!(back["custom_section"]["a"], 1);
    assert_eq!(back["gateway"]["port"], 18790, "missing defaults filled in");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn templates_never_overwrite_without_asking() {
    use picoclaw_config::onboard::{WriteOutcome, workspace_templates, write_workspace_templates};
    let total: usize = workspace_templates().iter().map(|(_, c)| c.len()).sum();
    assert!(
        total < 2048,
        "templates are {total} bytes; they go into every prompt"
    );
    let ws = tempfile::tempdir().unwrap();
    let first = write_workspace_templates(ws.path(), false).unwrap();
    assert!(first.iter().all(|(_, o)| *o == WriteOutcome::Created));
    assert!(ws.path().join("skills").is_dir() && ws.path().join("memory/MEMORY.md").exists());
    std::fs::write(ws.path().join("USER.md"), "Ada").unwrap();
    let again = write_workspace_templates(ws.path(), false).unwrap();
    assert!(again.iter().all(|(_, o)| *o == WriteOutcome::Kept));
    assert_eq!(
        std::fs::read_to_string(ws.path().join("USER.md")).unwrap(),
        "Ada"
    );
    let forced = write_workspace_templates(ws.path(), true).unwrap();
    assert!(forced.iter().all(|(_, o)| *o == WriteOutcome::Overwritten));
}

#[test]
fn the_factory_builds_a_provider_and_keeps_the_key_out_of_debug() {
    let r = resolve(
        json!({"agents": {"defaults": {"model": "openai/gpt-4o"}},
        "providers": {"openai": {"api_key": "sk-factory-secret-1"}}}),
        &[],
    )
    .unwrap();
    assert!(!format!("{r:?}").contains("sk-factory-secret-1"));
    let p = picoclaw_config::build_provider(&picoclaw_config::Config::default(), &r).unwrap();
    assert_eq!(p.name(), "openai");
}

#[test]
fn fallbacks_resolve_like_the_primary_and_errors_name_the_entry() {
    let home = Home::new();
    home.write_json(&json!({
        "agents": {"defaults": {"model": "openai/gpt-4o", "model_fallbacks": ["cheap", "ollama/qwen3"]}},
        "providers": {"openai": {"api_key": "sk-1"}},
        "model_list": [{"model_name": "cheap", "model": "deepseek/deepseek-chat", "api_key": "sk-ds"}]}));
    let c = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    let f = c.resolve_fallbacks(&env(&[])).unwrap();
    let names: Vec<String> = f
        .iter()
        .map(|r| format!("{}/{}", r.provider, r.model))
        .collect();
    assert_eq!(names, ["deepseek/deepseek-chat", "ollama/qwen3"]);
    let built = picoclaw_config::build_agent_provider(&c, &env(&[])).unwrap();
    assert_eq!(built.fallbacks.len(), 2);
    assert_eq!(built.primary.model, "gpt-4o");

    home.write_json(&json!({
        "agents": {"defaults": {"model": "openai/gpt-4o", "model_fallbacks": ["nowhere/x"]}},
        "providers": {"openai": {"api_key": "sk-1"}}}));
    let c = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    let msg = picoclaw_config::build_agent_provider(&c, &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unknown provider 'nowhere'"), "{msg}");
}

#[tokio::test]
async fn model_list_entries_sharing_an_alias_are_balanced_with_their_fallbacks() {
    use picoclaw_api::ChatMessage;
    use picoclaw_providers::ChatRequest;
    use picoclaw_testkit::{Reply, ScriptedEndpoint};
    let a =
        ScriptedEndpoint::start_with([Reply::text("from a"), Reply::text("from a again")]).await;
    let b = ScriptedEndpoint::start_with([Reply::text("from b")]).await;
    let c = ScriptedEndpoint::start_with([Reply::text("from the fallback")]).await;
    let home = Home::new();
    home.write_json(&json!({
        "agents": {"defaults": {"model_name": "smart", "max_retries": 0}},
        "model_list": [
            {"model_name": "smart", "model": "openai/model-a", "api_base": a.base_url(), "api_key": "k", "rpm": 100,
             "fallbacks": ["backup"]},
            {"model_name": "smart", "model": "vllm/model-b", "api_base": b.base_url()},
            {"model_name": "backup", "model": "ollama/model-c", "api_base": c.base_url()}
        ]}));
    let config = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    let built = picoclaw_config::build_agent_provider(&config, &env(&[])).unwrap();
    assert_eq!(built.primary.rpm, Some(100));
    assert_eq!(built.primary.alternates.len(), 1);
    let p = built.provider;
    let ask = || ChatRequest::new("ignored", vec![ChatMessage::user("hi")]);
    let texts = [
        p.chat(ask()).await.unwrap().message.text(),
        p.chat(ask()).await.unwrap().message.text(),
        p.chat(ask()).await.unwrap().message.text(),
    ];
    assert_eq!(texts, ["from a", "from b", "from a again"]);
    assert_eq!(a.requests()[0].body["model"], "model-a");
    assert_eq!(b.requests()[0].body["model"], "model-b");
    // Both balanced entries are now out of script (500s): the fallback answers.
    let r = p.chat(ask()).await.unwrap();
    assert_eq!(r.message.text(), "from the fallback");
    assert_eq!(r.served_by.as_deref(), Some("ollama/model-c"));
}

#[test]
fn azure_resolution_from_config_and_environment() {
    let r = resolve(
        json!({"agents": {"defaults": {"model": "azure/gpt-5.2-chat"}},
               "providers": {"azure": {"api_base": "https://res.openai.azure.com/",
                                       "managed_identity_client_id": "mi-123"}}}),
        &[],
    )
    .unwrap();
    assert_eq!(r.provider, "azure");
    assert!(r.api_key.is_none(), "managed identity needs no key");
    let az = r.azure.unwrap();
    assert_eq!(az.deployment, "gpt-5.2-chat");
    assert_eq!(az.api_version, picoclaw_config::DEFAULT_AZURE_API_VERSION);
    assert_eq!(az.scope, "https://cognitiveservices.azure.com/.default");
    assert_eq!(az.managed_identity_client_id.as_deref(), Some("mi-123"));
    assert!(r.key_hint.contains("Azure identity"), "{}", r.key_hint);

    // Environment only, as on App Service.
    let r = resolve(
        json!({}),
        &[
            ("AZURE_OPENAI_ENDPOINT", "https://env.openai.azure.com"),
            ("AZURE_OPENAI_DEPLOYMENT", "prod-gpt"),
            ("AZURE_OPENAI_API_VERSION", "2025-01-01-preview"),
            ("AZURE_OPENAI_API_KEY", "az-key"),
        ],
    )
    .unwrap();
    assert_eq!(r.api_base, "https://env.openai.azure.com");
    assert_eq!(r.api_key.unwrap().expose(), "az-key");
    let az = r.azure.unwrap();
    assert_eq!(
        (az.deployment.as_str(), az.api_version.as_str()),
        ("prod-gpt", "2025-01-01-preview")
    );

    let msg = resolve(json!({"agents": {"defaults": {"model": "azure/x"}}}), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("AZURE_OPENAI_ENDPOINT"), "{msg}");
}

#[test]
fn a_stored_login_stands_in_for_a_missing_key() {
    let home = Home::new();
    home.write_json(&json!({"agents": {"defaults": {"model": "codex/gpt-5-codex"}}}));
    // No key and no login: the usual missing-key error.
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    let err = loaded.config.resolve_model(&env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::MissingKey { .. }), "{err}");
    // Signed in to openai (ChatGPT): codex resolves to the ChatGPT backend with the login.
    let store = picoclaw_auth::AuthStore::new(home.paths().auth_file());
    store
        .put(
            "openai",
            picoclaw_auth::Credential::Oauth(picoclaw_auth::OauthCredential::new(
                "at-x",
                "https://auth.example/oauth/token",
                "client",
            )),
        )
        .unwrap();
    let loaded = load_with_env(&home.paths(), &env(&[])).unwrap();
    let resolved = loaded.config.resolve_model(&env(&[])).unwrap();
    assert_eq!(resolved.api_base, picoclaw_config::CHATGPT_CODEX_BASE);
    assert_eq!(
        resolved.login.as_ref().map(|(_, n)| n.as_str()),
        Some("openai")
    );
    // A key wins over the login, and keeps the platform API.
    let resolved = loaded
        .config
        .resolve_model(&env(&[("OPENAI_API_KEY", "sk-key-0123456789")]))
        .unwrap();
    assert!(resolved.login.is_none());
    assert_eq!(resolved.api_base, "https://api.openai.com/v1");
}

#[test]
fn reasoning_keys_of_model_list_are_known_and_a_typo_is_warned() {
    let all = warnings_of(&json!({"model_list": [
        {"model_name": "deep", "model": "azure/my-deployment", "reasoning": true,
         "reasoning_effort": "high", "temperature": 1.0, "auth_method": "oauth"}]}));
    assert!(!all.contains("unknown key"), "{all}");
    assert!(!all.contains("reasoning"), "{all}");
    let all = warnings_of(&json!({"model_list": [
        {"model_name": "deep", "model": "openai/o3", "reasoning_efort": "high"}]}));
    assert!(
        all.contains("model_list.0.reasoning_efort")
            && all.contains("did you mean 'model_list.0.reasoning_effort'"),
        "{all}"
    );
    let all = warnings_of(&json!({"model_list": [
        {"model_name": "deep", "model": "openai/o3", "reasoning_effort": "extreme"}]}));
    assert!(
        all.contains("model_list[0].reasoning_effort is 'extreme'"),
        "{all}"
    );
}

#[tokio::test]
async fn a_model_list_entry_marked_reasoning_reaches_the_azure_client() {
    use picoclaw_api::ChatMessage;
    use picoclaw_providers::ChatRequest;
    use picoclaw_testkit::{Reply, ScriptedEndpoint};
    let ep = ScriptedEndpoint::start_with([Reply::text("thought about it")]).await;
    let home = Home::new();
    home.write_json(&json!({
    "agents": {"defaults": {"model_name": "deep", "max_retries": 0, "temperature": 0.7}},
    "model_list": [
        {"model_name": "deep", "model": "azure/my-deployment", "api_key": "azure-key",
         "api_base": ep.base_url().trim_end_matches("/v1"),
         "reasoning": true, "reasoning_effort": "low"}
    ]}));
    let config = load_with_env(&home.paths(), &env(&[])).unwrap().config;
    let built = picoclaw_config::build_agent_provider(&config, &env(&[])).unwrap();
    assert_eq!(built.primary.reasoning, Some(true));
    let req = ChatRequest::new("ignored", vec![ChatMessage::user("hi")])
        .with_max_tokens(Some(64))
        .with_temperature(Some(0.7));
    let r = built.provider.chat(req).await.unwrap();
    assert_eq!(r.message.text(), "thought about it");
    let sent = &ep.requests()[0];
    assert_eq!(
        sent.path,
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_eq!(sent.body["max_completion_tokens"], 64);
    assert!(sent.body.get("max_tokens").is_none(), "{}", sent.body);
    assert!(sent.body.get("temperature").is_none(), "{}", sent.body);
    assert_eq!(sent.body["reasoning_effort"], "low");
}

#[test]
fn rate_limits_are_typed_and_a_misspelt_key_is_named() {
    let all = warnings_of(&json!({
        "rate_limits": {"max_request_per_minute": 5, "max_tool_calls_per_minute": 2},
        "agents": {"list": [{"id": "a", "rate_limits": {"max_tool_call_per_minute": 1}}]}
    }));
    assert!(
        all.contains(
            "unknown key 'rate_limits.max_request_per_minute' is ignored (did you mean \
             'rate_limits.max_requests_per_minute'?)"
        ),
        "{all}"
    );
    assert!(
        all.contains(
            "'agents.list.0.rate_limits.max_tool_call_per_minute' is ignored (did you mean \
             'agents.list.0.rate_limits.max_tool_calls_per_minute'?)"
        ),
        "{all}"
    );
    assert_eq!(all.lines().count(), 2, "{all}");
    // A wrong type is an error naming the key.
    let home = Home::new();
    home.write_json(&json!({"rate_limits": {"max_requests_per_minute": "lots"}}));
    let err = load_with_env(&home.paths(), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("rate_limits.max_requests_per_minute"), "{err}");
    // Nothing set: nothing written back.
    let c = picoclaw_config::Config::default();
    assert!(
        serde_json::to_value(&c)
            .unwrap()
            .get("rate_limits")
            .is_none()
    );
}
