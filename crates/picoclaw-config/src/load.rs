//! Loading: read the file (line:column on malformed JSON), apply `PICOCLAW_<SECTION>_<KEY>`
//! environment overrides, decode (the key path on a wrong type), warn about unknown keys (with a
//! "did you mean"; [`crate::keys`]) and the original's sections that are kept but not used,
//! validate.

use crate::ConfigError;
use crate::model::Config;
use crate::paths::Paths;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A loaded configuration and what was noticed on the way.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and questionable values; printed, never fatal.
    pub warnings: Vec<String>,
    /// Whether the config file existed (defaults and environment only, otherwise).
    pub file_found: bool,
}

/// Loads the config at `paths.config_file()` with the process environment and the `.env` files
/// of the working folder and of picoclaw's home (see [`load_from`]).
pub fn load(paths: &Paths) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir().ok();
    load_from(paths, &env, cwd.as_deref())
}

/// [`load`] without reading Key Vault: references stay as written. For decisions made before
/// the real load that need no secret (it costs no network round trip).
pub fn load_without_key_vault(paths: &Paths) -> Result<Loaded, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir().ok();
    load_inner(paths, &env, cwd.as_deref(), false)
}

/// [`load`] with the environment given (tests never touch the process environment); the `.env`
/// file in picoclaw's home is read, the working folder's is not.
pub fn load_with_env(paths: &Paths, env: &HashMap<String, String>) -> Result<Loaded, ConfigError> {
    load_from(paths, env, None)
}

/// Loads the config with `env` as the process environment, completed by `<cwd>/.env` (when a
/// working folder is given) and then `<home>/.env`: a variable in the environment always wins
/// over a `.env` file, and the working folder's file over the home's. A `.env` file inside the
/// workspace is skipped with a warning; one holding secrets that others can read is an error.
/// [`Config::environment`] holds the result, for everything that reads variables later.
pub fn load_from(
    paths: &Paths,
    env: &HashMap<String, String>,
    cwd: Option<&Path>,
) -> Result<Loaded, ConfigError> {
    load_inner(paths, env, cwd, true)
}

/// Loads `value` as if it were the content of the config file at `paths.config_file()` (errors
/// name that file), with `env` as the environment and `<home>/.env` (as [`load_with_env`]),
/// without reading Key Vault: references stay as written. The same decoding, environment
/// overrides and validation as [`load`], for checking an edit before it is written (the
/// dashboard's Settings page).
pub fn load_value(
    paths: &Paths,
    value: Value,
    env: &HashMap<String, String>,
) -> Result<Loaded, ConfigError> {
    load_parsed(paths, value, true, env, None, false)
}

/// The config file as JSON, as written (no environment, no Key Vault): `None` when there is no
/// file.
pub fn read_config_json(path: &Path) -> Result<Option<Value>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_json(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Parses the text of a config file (as [`read_config_json`] does), for a caller that read the
/// bytes itself; errors name `path`.
pub fn parse_config_json(path: &Path, text: &str) -> Result<Value, ConfigError> {
    parse_json(path, text)
}

fn load_inner(
    paths: &Paths,
    env: &HashMap<String, String>,
    cwd: Option<&Path>,
    read_key_vault: bool,
) -> Result<Loaded, ConfigError> {
    let (value, file_found) = match read_config_json(paths.config_file())? {
        Some(value) => (value, true),
        None => (Value::Object(Map::new()), false),
    };
    load_parsed(paths, value, file_found, env, cwd, read_key_vault)
}

fn load_parsed(
    paths: &Paths,
    mut value: Value,
    file_found: bool,
    env: &HashMap<String, String>,
    cwd: Option<&Path>,
    read_key_vault: bool,
) -> Result<Loaded, ConfigError> {
    let path = paths.config_file();
    if !value.is_object() {
        return Err(ConfigError::Type {
            path: path.to_path_buf(),
            key: "(top level)".into(),
            message: "the config must be a JSON object ({ ... })".into(),
        });
    }
    let mut warnings = Vec::new();
    // The workspace as the file and the real environment place it: a .env file cannot move it.
    let workspace = {
        let mut probe = value.clone();
        apply_env(&mut probe, env, &mut Vec::new())?;
        let mut c = Config::default();
        if let Some(ws) = probe["agents"]["defaults"]["workspace"].as_str() {
            c.agents.defaults.workspace = ws.to_owned();
        }
        c.workspace_path(paths)
    };
    let mut candidates = Vec::new();
    if let Some(cwd) = cwd {
        candidates.push(cwd.join(".env"));
    }
    candidates.push(paths.home().join(".env"));
    let environment = crate::envfile::with_env_files(env, &candidates, &workspace, &mut warnings)?;
    let mut set_by = Vec::new();
    apply_env(&mut value, environment.vars(), &mut set_by)?;
    apply_vendor_env(&mut value, &environment, &mut set_by);
    // Secrets kept in Key Vault are read now, into memory only.
    let mut references = crate::keyvault::find_references(&value)?;
    if !read_key_vault {
        references.clear();
    }
    let mut from_vault = Vec::new();
    let key_vault =
        crate::keyvault::resolve(&mut value, references, &environment, &mut from_vault)?;
    let (mut config, decode_warnings) = decode(path, value)?;
    for (key, var) in set_by {
        if let Some(origin) = environment.describe(&var) {
            config.origins.insert(key, origin);
        }
    }
    config.origins.extend(from_vault);
    config.key_vault = key_vault;
    warnings.extend(decode_warnings);
    config.source = Some(path.to_path_buf());
    config.environment = Some(std::sync::Arc::new(environment));
    config.auth = Some(picoclaw_auth::AuthStore::new(paths.auth_file()));
    let (mut problems, notes) = validate(&config);
    problems.extend(crate::agents::workspace_problems(&config, paths));
    warnings.extend(notes);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        });
    }
    Ok(Loaded {
        config,
        warnings,
        file_found,
    })
}

fn parse_json(path: &Path, text: &str) -> Result<Value, ConfigError> {
    // A UTF-8 byte order mark (some Windows editors add one) is not an error.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// The keys of a `model_list` entry picoclaw reads.
const MODEL_ENTRY_KEYS: &[&str] = &[
    "model_name",
    "model",
    "api_base",
    "api_key",
    "api_keys",
    "proxy",
    "rpm",
    "fallbacks",
    "price",
    "reasoning",
    "reasoning_effort",
    "temperature",
];

/// `model_list` entries keep keys picoclaw does not read (the original's own, round-tripped
/// as written), so only a key spelt like one it does read is warned about, as a misspelling.
fn model_list_typos(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, entry) in config.model_list.iter().enumerate() {
        for key in entry.extra.keys() {
            if let Some(want) = crate::keys::closest(MODEL_ENTRY_KEYS, key) {
                out.push(format!(
                    "unknown key 'model_list.{i}.{key}' is ignored (did you mean \
                     'model_list.{i}.{want}'?)"
                ));
            }
        }
    }
    out
}

/// Decodes the config, collecting unknown keys (in every typed section, the channel and tool
/// sections included) and the original's sections that are kept but not used as warnings.
fn decode(path: &Path, mut value: Value) -> Result<(Config, Vec<String>), ConfigError> {
    if let Some(channels) = value.get_mut("channels") {
        picoclaw_channels::sections::lift_settings(channels);
    }
    let (config, unknown) =
        crate::keys::decode::<Config>(&value).map_err(|e| ConfigError::Type {
            path: path.to_path_buf(),
            key: e.path,
            message: e.message,
        })?;
    let mut warnings: Vec<String> = unknown
        .into_iter()
        .map(|key| {
            let mut msg = format!("{}: unknown key '{}' is ignored", path.display(), key.path);
            if let Some(s) = key.suggestion {
                msg.push_str(&format!(" (did you mean '{s}'?)"));
            }
            msg
        })
        .collect();
    warnings.extend(
        model_list_typos(&config)
            .into_iter()
            .map(|msg| format!("{}: {msg}", path.display())),
    );
    // A channel section of another name is a build's own channel or a misspelling: which one
    // only the build knows (picoclaw_gateway::unknown_channel_sections, at status and start).
    warnings.extend(
        ignored_sections(&config)
            .into_iter()
            .map(|msg| format!("{}: {msg}", path.display())),
    );
    Ok((config, warnings))
}

/// One line for each section of the original PicoClaw that picoclaw keeps but does not act on,
/// when the file has it with something in it (an empty section, or one that says
/// `"enabled": false`, loses nothing by being ignored).
pub(crate) fn ignored_sections(config: &Config) -> Vec<String> {
    fn holds_something(v: &Option<Value>) -> bool {
        match v {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => {
                !o.is_empty() && o.get("enabled").and_then(Value::as_bool) != Some(false)
            }
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        }
    }
    let sections: [(&Option<Value>, &str); 4] = [
        (
            &config.devices,
            "devices: device monitoring is not supported yet; this section is ignored",
        ),
        (
            &config.llm,
            "llm: this section of the original PicoClaw is not used; it is ignored",
        ),
        (
            &config.session,
            "session: not supported; this section is ignored (choose per channel with \
             channels.<name>.session_scope)",
        ),
        (
            &config.memory,
            "memory: not used; this section is ignored (long-term memory is memory/MEMORY.md in \
             the workspace)",
        ),
    ];
    let mut out: Vec<String> = sections
        .into_iter()
        .filter(|(v, _)| holds_something(v))
        .map(|(_, msg)| msg.to_owned())
        .collect();
    if config
        .agents
        .defaults
        .data_dir
        .as_deref()
        .is_some_and(|d| !d.trim().is_empty())
    {
        out.push(
            "agents.defaults.data_dir is ignored (state lives in state.db under picoclaw's home, \
             or at state.url)"
                .to_owned(),
        );
    }
    out
}

/// Every leaf key path of `v` (objects only; arrays are leaves).
fn leaves(v: &Value, prefix: &mut Vec<String>, out: &mut BTreeMap<String, (Vec<String>, Value)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                prefix.push(k.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Object(_) if prefix.is_empty() => {}
        other => {
            let var = format!(
                "PICOCLAW_{}",
                prefix.join("_").to_uppercase().replace('-', "_")
            );
            out.entry(var)
                .or_insert_with(|| (prefix.clone(), other.clone()));
        }
    }
}

/// Applies `PICOCLAW_<PATH>` variables: each leaf key of the schema (and of the file) can be set
/// by its path upper-cased and joined by `_`, parsed as the key's type.
/// Each key set is added to `set_by` with its variable.
fn apply_env(
    value: &mut Value,
    env: &HashMap<String, String>,
    set_by: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    if !env.keys().any(|k| k.starts_with("PICOCLAW_")) {
        return Ok(());
    }
    let mut targets = BTreeMap::new();
    let mut schema = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    // Provider entries that are not in the file yet can still be set from the environment.
    if let Some(providers) = schema.get_mut("providers").and_then(Value::as_object_mut) {
        let names: Vec<String> = picoclaw_providers::presets::builtin()
            .into_iter()
            .map(|p| p.name)
            .collect();
        for name in names {
            providers.insert(
                name,
                serde_json::json!({"api_key": "", "api_base": "", "proxy": ""}),
            );
        }
    }
    for (k, v) in [("model_name", ""), ("data_dir", "")] {
        schema["agents"]["defaults"][k] = Value::String(v.into());
    }
    schema["tools"]["exec"]["timeout_seconds"] = Value::from(0);
    schema["gateway"]["api_key"] = Value::String(String::new());
    // Channel secrets, so that a token can stay out of config.json.
    schema["channels"] = serde_json::json!({
        "telegram": {"token": ""},
        "discord": {"token": ""},
        "slack": {"bot_token": "", "app_token": "", "signing_secret": ""},
        "pico": {"token": ""},
    });
    leaves(&schema, &mut Vec::new(), &mut targets);
    leaves(value, &mut Vec::new(), &mut targets);
    for (var, raw) in env {
        let Some((path, example)) = targets.get(var) else {
            continue;
        };
        let parsed = match example {
            Value::Bool(_) => match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Value::Bool(true),
                "0" | "false" | "no" | "off" => Value::Bool(false),
                _ => {
                    return Err(ConfigError::Env {
                        var: var.clone(),
                        message: format!("'{raw}' is not a boolean; use true or false"),
                    });
                }
            },
            Value::Number(_) => {
                let n: Option<Value> = raw
                    .trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .ok()
                    .or_else(|| raw.trim().parse::<f64>().ok().map(Value::from));
                n.ok_or_else(|| ConfigError::Env {
                    var: var.clone(),
                    message: format!("'{raw}' is not a number"),
                })?
            }
            Value::Array(_) => serde_json::from_str(raw).unwrap_or_else(|_| {
                Value::Array(
                    raw.split(',')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                        .collect(),
                )
            }),
            _ => Value::String(raw.clone()),
        };
        set_path(value, path, parsed);
        set_by.push((path.join("."), var.clone()));
    }
    Ok(())
}

/// The vendors' own variable names for settings that have a config key, as the architecture's
/// environment table and the platforms' docs spell them: `(variable, key path)`. Each fills its
/// key only when the file and the `PICOCLAW_*` variables leave it empty. The model providers'
/// key variables (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, ...) are read where the model is
/// resolved; the Azure identity variables (`AZURE_CLIENT_ID`, `MANAGED_IDENTITY_CLIENT_ID`...)
/// by the Azure credential chain.
pub const VENDOR_VARIABLES: &[(&str, &str)] = &[
    ("TELEGRAM_BOT_TOKEN", "channels.telegram.token"),
    ("DISCORD_BOT_TOKEN", "channels.discord.token"),
    ("SLACK_BOT_TOKEN", "channels.slack.bot_token"),
    ("SLACK_APP_TOKEN", "channels.slack.app_token"),
    ("SLACK_SIGNING_SECRET", "channels.slack.signing_secret"),
    ("AZURE_KEYVAULT_ENDPOINT", "azure.keyvault_endpoint"),
];

/// Applies [`VENDOR_VARIABLES`] to keys that are empty.
fn apply_vendor_env(
    value: &mut Value,
    env: &crate::Environment,
    set_by: &mut Vec<(String, String)>,
) {
    for (var, key) in VENDOR_VARIABLES {
        let Some(v) = env.get(var) else { continue };
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        let mut node = &*value;
        let mut current = None;
        for seg in &path {
            match node.get(seg) {
                Some(next) => {
                    node = next;
                    current = Some(next);
                }
                None => {
                    current = None;
                    break;
                }
            }
        }
        let empty = match current {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(_) => false,
        };
        if empty {
            set_path(value, &path, Value::String(v.to_owned()));
            set_by.push(((*key).to_owned(), (*var).to_owned()));
        }
    }
}

pub(crate) fn set_path(root: &mut Value, path: &[String], new: Value) {
    let mut node = root;
    for seg in &path[..path.len().saturating_sub(1)] {
        if !node.get(seg).is_some_and(Value::is_object) {
            node[seg.as_str()] = Value::Object(Map::new());
        }
        node = &mut node[seg.as_str()];
    }
    if let Some(last) = path.last() {
        node[last.as_str()] = new;
    }
}

/// Checks values that cannot work (errors) or look wrong (warnings).
pub fn validate(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let d = &config.agents.defaults;
    if !(0.0..=2.0).contains(&d.temperature) {
        errors.push(format!(
            "agents.defaults.temperature is {}; use a value from 0 to 2 (0.7 is a good default)",
            d.temperature
        ));
    }
    if d.max_tokens == 0 {
        errors.push(
            "agents.defaults.max_tokens is 0; set the longest answer in tokens, e.g. 8192".into(),
        );
    }
    if d.context_window <= d.max_tokens {
        errors.push(format!(
            "agents.defaults.context_window ({}) must be larger than max_tokens ({}); set it to \
             your model's context window, e.g. 128000",
            d.context_window, d.max_tokens
        ));
    }
    if d.max_tool_iterations == 0 {
        errors.push("agents.defaults.max_tool_iterations is 0; use at least 1 (default 20)".into());
    }
    if let Err(e) = crate::keyvault::parse_credential(&config.azure.credential) {
        errors.push(e);
    }
    errors.extend(crate::agents::problems(config));
    if d.request_timeout == 0 {
        errors.push(
            "agents.defaults.request_timeout is 0; use the seconds a model call may take, e.g. 120"
                .into(),
        );
    }
    // gateway.port 0 asks the system for any free port (the gateway prints the one it got).
    for (i, entry) in config.model_list.iter().enumerate() {
        if entry.model_name.trim().is_empty() {
            errors.push(format!(
                "model_list[{i}].model_name is empty; give the entry an alias"
            ));
        }
        if entry.model.trim().is_empty() {
            errors.push(format!(
                "model_list[{i}].model is empty; set it to \"protocol/model-id\", e.g. \
                 \"openai/gpt-4o-mini\""
            ));
        }
        if let Some(t) = entry.temperature
            && !(0.0..=2.0).contains(&t)
        {
            errors.push(format!(
                "model_list[{i}].temperature is {t}; use a value from 0 to 2, or leave it out \
                 for agents.defaults.temperature"
            ));
        }
        if let Some(effort) = &entry.reasoning_effort
            && !matches!(
                effort.trim(),
                "minimal" | "low" | "medium" | "high" | "none" | "xhigh"
            )
        {
            warnings.push(format!(
                "model_list[{i}].reasoning_effort is '{effort}'; OpenAI takes low, medium or \
                 high (minimal, none, xhigh for some models); it is sent as written"
            ));
        }
    }
    // A malformed entry never matches (the gateway refuses such requests), so it is only a
    // warning, but one that says how to write it.
    for (i, origin) in config.gateway.allowed_origins.iter().enumerate() {
        if !looks_like_origin(origin) {
            warnings.push(format!(
                "gateway.allowed_origins[{i}] is '{origin}', which is not an origin and matches \
                 nothing; write scheme://host[:port] without a path, e.g. \
                 \"https://app.example.com\""
            ));
        }
    }
    for (i, host) in config.gateway.allowed_hosts.iter().enumerate() {
        let h = host.trim();
        if h.is_empty() || h.contains("://") || h.contains(['/', ' ', '*']) {
            warnings.push(format!(
                "gateway.allowed_hosts[{i}] is '{host}', which matches nothing; write a host \
                 name as clients send it, optionally with the port, e.g. \"picoclaw.example.com\" \
                 or \"192.168.1.5:18790\""
            ));
        }
    }
    if config.heartbeat.enabled && config.heartbeat.interval < 5 {
        warnings.push(format!(
            "heartbeat.interval is {} minutes; the minimum is 5, which will be used",
            config.heartbeat.interval
        ));
    }
    (errors, warnings)
}

/// `http(s)://host[:port]`, nothing after it (an `Origin` header's shape).
fn looks_like_origin(origin: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !authority.is_empty()
        && !authority.contains(['/', '?', '#', '@', ' ', '*'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_loaded_as_the_file_would_be_without_reading_key_vault() {
        let home = std::env::temp_dir().join(format!("picoclaw-load-value-{}", std::process::id()));
        let paths = Paths::new(&home, home.join("config.json"));
        let env = HashMap::from([("PICOCLAW_HEARTBEAT_INTERVAL".to_owned(), "45".to_owned())]);
        let value = serde_json::json!({
            "agents": {"defaults": {"workspace": home.join("ws").display().to_string()}},
            "providers": {"openai": {"api_key": "keyvault://vault/openai-key"}},
        });
        let loaded = load_value(&paths, value, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded.config.heartbeat.interval, 45);
        assert_eq!(
            loaded.config.origins["heartbeat.interval"],
            "environment PICOCLAW_HEARTBEAT_INTERVAL"
        );
        let key = loaded.config.providers["openai"]
            .api_key
            .as_ref()
            .map(|k| k.expose().clone());
        assert_eq!(key.as_deref(), Some("keyvault://vault/openai-key"));
        assert_eq!(loaded.config.source.as_deref(), Some(paths.config_file()));

        let bad = serde_json::json!({"heartbeat": {"interval": "abc"}});
        let err = load_value(&paths, bad, &HashMap::new())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&paths.config_file().display().to_string())
                && err.contains("heartbeat.interval"),
            "{err}"
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        for ok in [
            "https://app.example.com",
            "http://localhost:3000",
            "https://a.example/",
        ] {
            assert!(looks_like_origin(ok), "{ok}");
        }
        for bad in [
            "app.example.com",
            "https://",
            "https://a.example/path",
            "null",
            "*",
        ] {
            assert!(!looks_like_origin(bad), "{bad}");
        }
    }
}
