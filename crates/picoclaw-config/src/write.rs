//! Writing the config: atomically (temp file, fsync, rename; 0600 since it holds keys), merged
//! over the user's file so every key picoclaw does not understand is kept.

use crate::ConfigError;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;

/// What `picoclaw onboard` writes: the original's layout with empty keys.
pub fn default_config_json() -> Value {
    json!({
        "agents": {
            "defaults": {
                "workspace": crate::model::DEFAULT_WORKSPACE,
                "restrict_to_workspace": true,
                "provider": "",
                "model": "openai/gpt-4o-mini",
                "max_tokens": 8192,
                "context_window": 128000,
                "temperature": 0.7,
                "max_tool_iterations": 20
            }
        },
        "providers": {
            "openai": {"api_key": "", "api_base": ""},
            "openrouter": {"api_key": "", "api_base": ""},
            "deepseek": {"api_key": "", "api_base": ""},
            "groq": {"api_key": "", "api_base": ""},
            "zhipu": {"api_key": "", "api_base": ""},
            "moonshot": {"api_key": "", "api_base": ""},
            "gemini": {"api_key": "", "api_base": ""},
            "vllm": {"api_key": "", "api_base": "http://localhost:8000/v1"},
            "ollama": {"api_key": "", "api_base": "http://localhost:11434/v1"}
        },
        // Switched off until filled in (docs/channels/<name>.md); the original's keys.
        "channels": {
            "telegram": {"enabled": false, "token": "", "allow_from": []},
            "discord": {"enabled": false, "token": "", "allow_from": []},
            "slack": {"enabled": false, "bot_token": "", "app_token": "", "allow_from": []}
        },
        "tools": {"exec": {"enabled": true}},
        "heartbeat": {"enabled": true, "interval": 30},
        "gateway": {"host": "127.0.0.1", "port": 18790}
    })
}

/// `existing` with every key of `ours` it lacks added (recursively). The user's values win and
/// keys picoclaw does not know are kept.
pub fn merge_preserving(existing: Value, ours: Value) -> Value {
    match (existing, ours) {
        (Value::Object(mut mine), Value::Object(theirs)) => {
            for (k, v) in theirs {
                let merged = match mine.remove(&k) {
                    Some(old) => merge_preserving(old, v),
                    None => v,
                };
                mine.insert(k, merged);
            }
            Value::Object(mine)
        }
        (existing, _) => existing,
    }
}

/// Writes `value` as pretty JSON to `path` through a temporary file and a rename, with
/// owner-only permissions.
pub fn write_config_atomically(path: &Path, value: &Value) -> Result<(), ConfigError> {
    let err = |source| ConfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut text = serde_json::to_string_pretty(value).map_err(|e| err(e.into()))?;
    text.push('\n');
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}
