//! The Settings page: the running config as a table of keys, values (secrets masked) and where
//! each came from, and a form for the common settings that edits config.json itself (only the
//! keys changed, checked by the loader first; the gateway applies them at its next start).

use super::{Ctx, Page, Web, back_to, csrf_field, layout};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use picoclaw_config::{Config, ConfigError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Settings.path(), get(show).post(save))
}

/// The longest model name the form takes.
const MAX_MODEL_CHARS: usize = 200;

// ---- Where values come from, and masking ----

/// Where a setting's running value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    File,
    /// An environment variable or a `.env` file (the loader's words: `environment NAME`,
    /// `.env PATH (NAME)`).
    Env(String),
    /// A Key Vault reference (`Key Vault keyvault://vault/secret`).
    Vault(String),
    Default,
}

impl Source {
    fn of(config: &Config, file: Option<&Value>, key: &str) -> Source {
        let origin = config.origins.get(key).cloned().or_else(|| {
            // An array whose items came from elsewhere (`api_keys.0` from Key Vault).
            let prefix = format!("{key}.");
            config
                .origins
                .iter()
                .find(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v.clone())
        });
        match origin {
            Some(o) if o.starts_with("Key Vault ") => Source::Vault(o),
            Some(o) => Source::Env(o),
            None if file.is_some_and(|f| in_file(f, key)) => Source::File,
            None => Source::Default,
        }
    }

    fn label(&self) -> String {
        match self {
            Source::File => "config file".to_owned(),
            Source::Env(o) => set_by(o),
            Source::Vault(o) => o.clone(),
            Source::Default => "default".to_owned(),
        }
    }

    /// Whether an environment variable sets it (editing the file would not change it).
    fn env(&self) -> Option<String> {
        match self {
            Source::Env(o) => Some(set_by(o)),
            _ => None,
        }
    }
}

/// `set by $NAME` from the loader's `environment NAME` / `.env PATH (NAME)`.
fn set_by(origin: &str) -> String {
    match origin.strip_prefix("environment ") {
        Some(name) => format!("set by ${name}"),
        None => format!("set by {origin}"),
    }
}

/// The variable named in an origin (`environment NAME`, `.env PATH (NAME)`).
fn origin_var(origin: &str) -> &str {
    if let Some(name) = origin.strip_prefix("environment ") {
        return name;
    }
    origin
        .rsplit_once('(')
        .map(|(_, n)| n.trim_end_matches(')'))
        .unwrap_or(origin)
}

/// Whether the file has `key` (dotted; array items by index). A channel's key may be written in
/// its `settings` object (the original's later layout, lifted by the loader).
fn in_file(file: &Value, key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    if lookup(file, &parts).is_some() {
        return true;
    }
    if parts.len() >= 3 && parts[0] == "channels" {
        let mut lifted = parts[..2].to_vec();
        lifted.push("settings");
        lifted.extend_from_slice(&parts[2..]);
        return lookup(file, &lifted).is_some();
    }
    false
}

fn lookup<'a>(value: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    parts.iter().try_fold(value, |node, part| match node {
        Value::Object(map) => map.get(*part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Whether a key's name says it holds a secret (`api_key`, `token`, `app_secret`,
/// `encrypt_key`, `encoding_aes_key`, `password`...).
/// Everything under `headers` (`Authorization`, `Cookie`), `env` and `args` (an MCP server's
/// `GITHUB_PAT`, `--api-key sk-...`) is masked too: those hold credentials under any name.
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "aes",
        "auth",
        "cookie",
        "bearer",
    ]
    .iter()
    .any(|w| k.contains(w))
        || matches!(k.as_str(), "headers" | "env" | "args" | "environment")
        || picoclaw_tools::is_secret_env(key)
}

/// One setting of the running config, as shown.
#[derive(Debug)]
struct Row {
    key: String,
    value: String,
    source: Source,
}

/// The running config's leaves, masked, each with its source.
fn rows(config: &Config, file: Option<&Value>) -> Vec<Row> {
    let value = serde_json::to_value(config).unwrap_or(Value::Null);
    let mut out = Vec::new();
    flatten(
        &value,
        &mut Vec::new(),
        false,
        &mut |path, leaf, secret_by_name| {
            let key = path.join(".");
            let source = Source::of(config, file, &key);
            let secret_origin = match &source {
                Source::Vault(_) => true,
                Source::Env(o) => picoclaw_tools::is_secret_env(origin_var(o)),
                _ => false,
            };
            let value = shown(leaf, secret_by_name || secret_origin);
            out.push(Row { key, value, source });
        },
    );
    out
}

/// Calls `leaf` for every leaf of `value` (arrays of objects by index; other arrays whole), with
/// whether a key on its path names a secret.
fn flatten(
    value: &Value,
    path: &mut Vec<String>,
    secret: bool,
    leaf: &mut dyn FnMut(&[String], &Value, bool),
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                path.push(k.clone());
                flatten(child, path, secret || secret_name(k), leaf);
                path.pop();
            }
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                flatten(child, path, secret, leaf);
                path.pop();
            }
        }
        other if !path.is_empty() => leaf(path, other, secret),
        _ => {}
    }
}

/// A leaf as text: strings as written, masked when secret (or a URL with a password); numbers,
/// booleans and lists as JSON.
fn shown(value: &Value, secret: bool) -> String {
    match value {
        Value::String(s) => show_text(s, secret),
        Value::Array(items) if secret => {
            let shown: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => show_text(s, true),
                    other => other.to_string(),
                })
                .collect();
            format!("[{}]", shown.join(", "))
        }
        Value::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => show_text(s, false),
                    other => other.to_string(),
                })
                .collect();
            format!("[{}]", shown.join(", "))
        }
        Value::Object(_) => "{}".to_owned(),
        other => other.to_string(),
    }
}

fn show_text(s: &str, secret: bool) -> String {
    if secret {
        return picoclaw_api::mask(s);
    }
    // A URL with a password keeps its shape: `postgres://user:***@host/db`.
    picoclaw_state::redact_url(s)
}

// ---- The config file ----

/// The config file as it is on disk now.
#[derive(Debug)]
struct FileNow {
    /// The parsed JSON (`None`: no file).
    json: Option<Value>,
    /// What the form carries to notice a change made meanwhile.
    version: String,
}

fn read_file(path: &Path) -> Result<FileNow, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let version = version_of(bytes.as_deref());
    // The bytes fingerprinted are the bytes parsed (a second read could see another edit).
    let json = match bytes {
        None => None,
        Some(b) => Some(
            picoclaw_config::parse_config_json(path, &String::from_utf8_lossy(&b))
                .map_err(|e| e.to_string())?,
        ),
    };
    Ok(FileNow { json, version })
}

/// A fingerprint of the file's bytes (not a security measure: it only notices another edit).
fn version_of(bytes: Option<&[u8]>) -> String {
    use std::hash::{Hash, Hasher};
    match bytes {
        None => "none".to_owned(),
        Some(b) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            b.hash(&mut h);
            format!("{}-{:016x}", b.len(), h.finish())
        }
    }
}

/// The channel sections the file has (each gets a switch).
fn file_channels(file: Option<&Value>) -> Vec<String> {
    file.and_then(|f| f.get("channels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_object())
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The common settings as the form edits them.
#[derive(Clone, Debug, PartialEq)]
struct Common {
    model: String,
    heartbeat: bool,
    interval: Value,
    channels: Vec<(String, bool)>,
}

impl Common {
    /// As the file has them (defaults for the keys it lacks).
    fn of_file(file: Option<&Value>) -> Common {
        let defaults = Config::default();
        let get = |parts: &[&str]| file.and_then(|f| lookup(f, parts));
        Common {
            model: get(&["agents", "defaults", "model"])
                .and_then(Value::as_str)
                .unwrap_or(&defaults.agents.defaults.model)
                .to_owned(),
            heartbeat: get(&["heartbeat", "enabled"])
                .and_then(Value::as_bool)
                .unwrap_or(defaults.heartbeat.enabled),
            interval: get(&["heartbeat", "interval"])
                .cloned()
                .unwrap_or_else(|| Value::from(defaults.heartbeat.interval)),
            channels: file_channels(file)
                .into_iter()
                .map(|name| {
                    let on = get(&["channels", &name, "enabled"])
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    (name, on)
                })
                .collect(),
        }
    }
}

/// Keys whose running value an environment variable sets: `key` → `set by $NAME`.
fn env_locked(config: &Config, file: Option<&Value>, keys: &[String]) -> HashMap<String, String> {
    keys.iter()
        .filter_map(|k| Some((k.clone(), Source::of(config, file, k).env()?)))
        .collect()
}

fn common_keys(channels: &[String]) -> Vec<String> {
    let mut keys = vec![
        "agents.defaults.model".to_owned(),
        "heartbeat.enabled".to_owned(),
        "heartbeat.interval".to_owned(),
    ];
    keys.extend(channels.iter().map(|c| format!("channels.{c}.enabled")));
    keys
}

/// Whether the file's common settings, loaded as the gateway would load them now, differ from
/// the running ones: `Err` when the file would not load.
fn restart_needed(web: &Web, file: Option<&Value>) -> Result<bool, String> {
    let running = &web.dash.config;
    let value = file.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let loaded = picoclaw_config::load_value(&web.dash.paths, value, &running.env_vars())
        .map_err(|e| e.to_string())?;
    let next = &loaded.config;
    let mut on_now = running.channels.enabled();
    let mut on_next = next.channels.enabled();
    on_now.sort_unstable();
    on_next.sort_unstable();
    Ok(running.agents.defaults.model != next.agents.defaults.model
        || running.heartbeat.enabled != next.heartbeat.enabled
        || running.heartbeat.interval != next.heartbeat.interval
        || on_now != on_next)
}

// ---- The page ----

async fn show(State(web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    let path = web.dash.paths.config_file().to_path_buf();
    let file = match read_file(&path) {
        Ok(f) => f,
        Err(e) => {
            return super::failure(&ctx, Page::Settings, "cannot read the config file", e);
        }
    };
    let config = &web.dash.config;
    let current = Common::of_file(file.json.as_ref());
    let names: Vec<String> = current.channels.iter().map(|(n, _)| n.clone()).collect();
    let locked = env_locked(config, file.json.as_ref(), &common_keys(&names));
    let restart = restart_needed(&web, file.json.as_ref());
    let rows = rows(config, file.json.as_ref());
    let models: Vec<&str> = config
        .model_list
        .iter()
        .map(|m| m.model_name.as_str())
        .filter(|n| !n.trim().is_empty())
        .collect();
    let resolved = config.resolve_model(&config.env_vars());
    let env_files = config.environment().files().to_vec();
    let interval = match &current.interval {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let body = html! {
        h1 { (Page::Settings.title()) }
        @match &restart {
            Ok(true) => p.notice.warn #settings-restart-notice role="status" {
                "Restart needed: the config file's common settings differ from the ones this \
                 gateway runs with. Restart the gateway to apply them."
            },
            Ok(false) => {},
            Err(e) => p.notice.error #settings-restart-notice role="alert" {
                "The config file would not load as it is now (the gateway would not start with \
                 it): " (e)
            },
        }
        p.muted {
            "Config file: " code { (path.display()) }
            @if file.json.is_none() { " (missing: the gateway runs on defaults and the environment)" }
            @if !env_files.is_empty() {
                br;
                ".env files read: "
                @for (i, f) in env_files.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (f.display()) }
                }
            }
        }

        h2 { "Common settings" }
        form #settings-form method="post" action=(Page::Settings.path()) {
            (csrf_field(&ctx))
            input type="hidden" name="version" value=(file.version);
            // The checkboxes below are on this form: a missing one means "off".
            input type="hidden" name="switches" value="1";
            (field_model(&current.model, locked.get("agents.defaults.model"), &models))
            fieldset {
                legend { "Heartbeat" }
                (checkbox("settings-heartbeat", "heartbeat", "Heartbeat enabled (the agent reads HEARTBEAT.md on a schedule)",
                    current.heartbeat, locked.get("heartbeat.enabled")))
                label for="settings-heartbeat-interval" { "Interval (minutes, at least 5)" }
                @if let Some(by) = locked.get("heartbeat.interval") {
                    input #settings-heartbeat-interval type="number" value=(config.heartbeat.interval) disabled;
                    p.muted { (by) }
                } @else {
                    input #settings-heartbeat-interval type="number" name="heartbeat_interval"
                        min="5" step="1" required value=(interval);
                }
            }
            @if !current.channels.is_empty() {
                fieldset {
                    legend { "Channels" }
                    @for (name, on) in &current.channels {
                        (checkbox(&format!("settings-channel-{name}"), &format!("channel.{name}"),
                            name, *on, locked.get(&format!("channels.{name}.enabled"))))
                    }
                }
            }
            p.muted { "Saved to the file; the gateway applies it at its next start." }
            button #settings-save type="submit" { "Save" }
        }

        h2 { "Model in use" }
        @match &resolved {
            Ok(r) => {
                dl.settings-model-in-use {
                    dt { "Provider" } dd { (r.provider) }
                    dt { "Model" } dd { (r.model) }
                    dt { "API base" } dd { code { (r.api_base) } }
                    dt { "API key" }
                    dd {
                        (r.api_key.as_ref().map(|k| k.masked()).unwrap_or_else(|| "(none)".to_owned()))
                        @if let Some(s) = &r.key_source { span.muted { " from " (s) } }
                    }
                }
            }
            Err(e) => p.notice.error { "The configured model is not usable: " (e.to_string()) },
        }

        h2 { "Effective configuration" }
        p.muted { "What this gateway runs with. Secrets are masked." }
        div.table-wrap {
            table #settings-effective {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Value" } th scope="col" { "Source" } } }
                tbody {
                    @for row in &rows {
                        tr data-key=(row.key) {
                            td { code { (row.key) } }
                            td.settings-value { (row.value) }
                            td {
                                @match &row.source {
                                    Source::File => span.badge { (row.source.label()) },
                                    Source::Default => span.muted { (row.source.label()) },
                                    _ => span.badge.ok { (row.source.label()) },
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&ctx, Page::Settings, body)
}

fn field_model(value: &str, locked: Option<&String>, models: &[&str]) -> Markup {
    html! {
        label for="settings-model" { "Default model (agents.defaults.model)" }
        @if let Some(by) = locked {
            input #settings-model type="text" value=(value) disabled;
            p.muted { (by) " (the environment wins over the file)" }
        } @else {
            input #settings-model type="text" name="model" value=(value) list="settings-models"
                maxlength=(MAX_MODEL_CHARS) autocomplete="off" spellcheck="false";
            p.muted { "provider/model (e.g. openai/gpt-4o-mini) or a model_list name." }
        }
        datalist #settings-models {
            @for m in models { option value=(m) {} }
        }
    }
}

fn checkbox(id: &str, name: &str, text: &str, on: bool, locked: Option<&String>) -> Markup {
    html! {
        label.check for=(id) {
            @if locked.is_some() {
                input id=(id) type="checkbox" checked[on] disabled;
            } @else {
                input id=(id) type="checkbox" name=(name) checked[on];
            }
            (text)
            @if let Some(by) = locked { span.muted { " — " (by) } }
        }
    }
}

// ---- Saving ----

async fn save(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    axum::Form(fields): axum::Form<Vec<(String, String)>>,
) -> Response {
    // One save at a time: the check that the file is unchanged and the write go together.
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let result = {
        let _one = SAVING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apply(&web, &fields)
    };
    back_to(&web, &ctx, Page::Settings.path(), result)
}

/// The form's fields by name (the last of a repeated name).
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks and writes the form's changes: `Ok` with what to tell, `Err` with why nothing was
/// written.
fn apply(web: &Web, fields: &[(String, String)]) -> Result<String, String> {
    let path = web.dash.paths.config_file().to_path_buf();
    let now = read_file(&path).map_err(|e| format!("Not saved: {e}"))?;
    if field(fields, "version") != Some(now.version.as_str()) {
        return Err(format!(
            "Not saved: the file changed on disk since this page was shown ({}); reload the \
             page and make your change again",
            path.display()
        ));
    }
    if now.json.as_ref().is_some_and(|j| !j.is_object()) {
        return Err(format!(
            "Not saved: {} is not a JSON object; fix the file by hand first",
            path.display()
        ));
    }
    // The switches: a form without its marker (not this page's) changes none of them, since
    // a missing checkbox would read as "off".
    let switches = field(fields, "switches").is_some();
    let config = &web.dash.config;
    let before = Common::of_file(now.json.as_ref());
    let names: Vec<String> = before.channels.iter().map(|(n, _)| n.clone()).collect();
    let locked = env_locked(config, now.json.as_ref(), &common_keys(&names));
    let mut edited = now
        .json
        .clone()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut changed: Vec<String> = Vec::new();
    let mut set = |parts: &[&str], new: Value, old: &Value, changed: &mut Vec<String>| {
        let key = parts.join(".");
        if locked.contains_key(&key) || &new == old {
            return;
        }
        set_path(&mut edited, parts, new);
        changed.push(key);
    };

    if let Some(model) = field(fields, "model") {
        let model = model.trim();
        if model.chars().count() > MAX_MODEL_CHARS {
            return Err(format!(
                "Not saved: the model name is longer than {MAX_MODEL_CHARS} characters"
            ));
        }
        if model.chars().any(char::is_control) {
            return Err("Not saved: the model name has control characters".to_owned());
        }
        set(
            &["agents", "defaults", "model"],
            Value::String(model.to_owned()),
            &Value::String(before.model.clone()),
            &mut changed,
        );
    }
    if switches {
        let heartbeat = field(fields, "heartbeat").is_some();
        set(
            &["heartbeat", "enabled"],
            Value::Bool(heartbeat),
            &Value::Bool(before.heartbeat),
            &mut changed,
        );
    }
    let mut interval_edit = None;
    if let Some(raw) = field(fields, "heartbeat_interval") {
        let raw = raw.trim();
        if raw.chars().count() > 20 {
            return Err(
                "Not saved: heartbeat.interval is not a number of minutes; enter e.g. 30"
                    .to_owned(),
            );
        }
        // A number is written as one; anything else goes to the loader as written, which says
        // what is wrong with it.
        let new = raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(raw.to_owned()));
        interval_edit = new.as_i64();
        set(
            &["heartbeat", "interval"],
            new,
            &before.interval,
            &mut changed,
        );
    }
    for (name, was) in before.channels.iter().filter(|_| switches) {
        let on = field(fields, &format!("channel.{name}")).is_some();
        set(
            &["channels", name.as_str(), "enabled"],
            Value::Bool(on),
            &Value::Bool(*was),
            &mut changed,
        );
    }
    if changed.is_empty() {
        return Ok("Nothing to save: the form matches the file.".to_owned());
    }

    // The loader's checks, with the environment the gateway runs with.
    let env = config.env_vars();
    let loaded = picoclaw_config::load_value(&web.dash.paths, edited.clone(), &env)
        .map_err(|e| format!("Not saved: {e}"))?;
    if changed.iter().any(|k| k == "heartbeat.interval") && loaded.config.heartbeat.enabled {
        let minutes = loaded.config.heartbeat.interval;
        if interval_edit.is_some() && minutes < 5 {
            let said = loaded
                .warnings
                .iter()
                .find(|w| w.starts_with("heartbeat.interval"))
                .cloned()
                .unwrap_or_else(|| format!("heartbeat.interval is {minutes} minutes"));
            return Err(format!(
                "Not saved: {said}; enter 5 minutes or more (untick the heartbeat to stop it)"
            ));
        }
    }
    let next = loaded.config.with_registry(config.registry());
    next.resolve_model(&env)
        .map_err(|e: ConfigError| format!("Not saved: {e}"))?;
    picoclaw_config::write_config_atomically(&path, &edited)
        .map_err(|e| format!("Not saved: {e}"))?;
    tracing::info!(keys = %changed.join(", "), file = %path.display(), "settings saved from the dashboard");
    Ok(format!(
        "Saved to {}. Restart the gateway to apply.",
        path.display()
    ))
}

/// Sets `parts` in `root`, making the objects on the way (a non-object on the way is replaced).
fn set_path(root: &mut Value, parts: &[&str], new: Value) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut node = root;
    for part in parents {
        let Value::Object(map) = node else {
            return;
        };
        let child = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        node = child;
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_owned(), new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_by_name_and_urls_lose_their_password() {
        assert!(secret_name("api_key") && secret_name("encoding_aes_key"));
        assert!(secret_name("app_secret") && secret_name("bot_token"));
        assert!(!secret_name("model") && !secret_name("api_base"));
        for whole in ["headers", "env", "args", "Authorization", "GITHUB_PAT"] {
            assert!(secret_name(whole), "{whole}");
        }
        assert_eq!(shown(&json!("sk-0123456789abcdef"), true), "sk-0…cdef");
        assert_eq!(shown(&json!("short"), true), "****");
        assert_eq!(
            shown(&json!("postgres://u:hunter2@db/x"), false),
            "postgres://u:***@db/x"
        );
        assert_eq!(
            shown(&json!(["sk-0123456789abcdef", "x"]), true),
            "[sk-0…cdef, ****]"
        );
        assert_eq!(shown(&json!(8192), true), "8192");
    }

    #[test]
    fn leaves_are_found_by_path_and_arrays_of_objects_by_index() {
        let mut seen = Vec::new();
        flatten(
            &json!({"a": {"api_key": "k", "n": 1}, "list": [{"token": "t"}], "tags": ["x"]}),
            &mut Vec::new(),
            false,
            &mut |path, _, secret| seen.push((path.join("."), secret)),
        );
        assert_eq!(
            seen,
            vec![
                ("a.api_key".to_owned(), true),
                ("a.n".to_owned(), false),
                ("list.0.token".to_owned(), true),
                ("tags".to_owned(), false),
            ]
        );
        let file = json!({"channels": {"line": {"settings": {"channel_secret": "s"}}}, "x": [1]});
        assert!(in_file(&file, "channels.line.channel_secret"));
        assert!(in_file(&file, "x.0"));
        assert!(!in_file(&file, "channels.line.token"));
    }

    #[test]
    fn origins_name_their_variable() {
        assert_eq!(set_by("environment PICOCLAW_X"), "set by $PICOCLAW_X");
        assert_eq!(
            origin_var(".env /h/.env (TELEGRAM_BOT_TOKEN)"),
            "TELEGRAM_BOT_TOKEN"
        );
        assert_eq!(origin_var("environment OPENAI_API_KEY"), "OPENAI_API_KEY");
    }

    #[test]
    fn setting_a_path_keeps_the_rest() {
        let mut v = json!({"agents": {"defaults": {"x_note": "n", "model": "a"}}, "x": {"a": 1}});
        set_path(&mut v, &["agents", "defaults", "model"], json!("b"));
        set_path(&mut v, &["heartbeat", "interval"], json!(10));
        assert_eq!(
            v,
            json!({"agents": {"defaults": {"x_note": "n", "model": "b"}}, "x": {"a": 1},
                "heartbeat": {"interval": 10}})
        );
    }
}
