//! Importing the original PicoClaw's state, so people switching keep their history.
//!
//! The original keeps sessions in `<workspace>/sessions/`, in one of two formats:
//!
//! - `<key>.json`: `{"key", "messages": [...], "summary", "created", "updated"}` (the first
//!   format; the original renames imported files to `.json.migrated`);
//! - `<key>.jsonl` with `<key>.meta.json`: one message per line, append-only, and
//!   `{"key", "summary", "skip", "count", "created_at", "updated_at"}` where the first `skip`
//!   lines were truncated after summarising.
//!
//! In both, `:` in the key became `_` in the file name. Messages are OpenAI-shaped:
//! `{"role", "content", "tool_calls": [{"id", "type", "function": {"name", "arguments"}}],
//! "tool_call_id"}` (older builds put `name` and `arguments` on the call itself, arguments as
//! an object). Scheduled jobs are in `<workspace>/cron/jobs.json` as `{"version", "jobs"}`.

use crate::cron::{CronJob, CronStore};
use crate::{SessionStore, StateError};
use picoclaw_api::{ChatMessage, SessionKey, ToolCall};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A session read from the original's files.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LegacySession {
    pub key: String,
    pub messages: Vec<ChatMessage>,
    pub summary: Option<String>,
    /// Messages at the start that the original had truncated (the summary covers them).
    pub truncated: usize,
    /// The file it came from.
    pub file: PathBuf,
}

#[derive(Deserialize)]
struct JsonSession {
    #[serde(default)]
    key: String,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    summary: Option<String>,
}

#[derive(Deserialize, Default)]
struct JsonlMeta {
    #[serde(default)]
    key: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    skip: usize,
}

/// One original message in our shape; `None` for messages with no place in a conversation
/// (system prompts the original sometimes stored). `tool_names` maps earlier tool-call ids to
/// their tool names (the original's results do not always carry the name).
pub fn convert_message(
    value: &Value,
    tool_names: &std::collections::HashMap<String, String>,
) -> Result<Option<ChatMessage>, String> {
    let role = value
        .get("role")
        .and_then(Value::as_str)
        .ok_or("a message has no role")?;
    let text = match value.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other.to_string(),
    };
    let msg = match role {
        "user" => ChatMessage::user(text),
        "system" => return Ok(None),
        "assistant" => {
            let mut calls = Vec::new();
            for call in value
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
                let function = call.get("function");
                let name = function
                    .and_then(|f| f.get("name"))
                    .or_else(|| call.get("name"))
                    .and_then(Value::as_str)
                    .ok_or("a tool call has no name")?;
                let arguments = match function
                    .and_then(|f| f.get("arguments"))
                    .or_else(|| call.get("arguments"))
                {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                calls.push(ToolCall::new(id, name, arguments));
            }
            if calls.is_empty() {
                ChatMessage::assistant(text)
            } else {
                ChatMessage::assistant_with_tools(text, calls)
            }
        }
        "tool" => {
            let id = value
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or("a tool result has no tool_call_id")?;
            let name = value
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| tool_names.get(id).map(String::as_str))
                .unwrap_or_default();
            ChatMessage::tool_result(id, name, text)
        }
        other => return Err(format!("unknown role \"{other}\"")),
    };
    Ok(Some(msg))
}

fn convert_all(values: &[Value]) -> Result<Vec<ChatMessage>, String> {
    let mut out = Vec::with_capacity(values.len());
    let mut names = std::collections::HashMap::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(m) =
            convert_message(v, &names).map_err(|e| format!("message {}: {e}", i + 1))?
        {
            for call in &m.tool_calls {
                names.insert(call.id.clone(), call.name.clone());
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// The key from the file's content, or from its name (`telegram_123` → `telegram:123` for the
/// known channel prefixes, as the original's `:` → `_` mapping is lossy).
fn key_from_name(stem: &str) -> String {
    match stem.split_once('_') {
        Some((prefix, rest))
            if !rest.is_empty() && prefix.chars().all(|c| c.is_ascii_lowercase()) =>
        {
            format!("{prefix}:{rest}")
        }
        _ => stem.to_owned(),
    }
}

fn read_json_session(path: &Path) -> Result<LegacySession, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let s: JsonSession =
        serde_json::from_str(&text).map_err(|e| format!("not a session file: {e}"))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    Ok(LegacySession {
        key: if s.key.is_empty() {
            key_from_name(stem)
        } else {
            s.key
        },
        messages: convert_all(&s.messages)?,
        summary: s.summary.filter(|s| !s.trim().is_empty()),
        truncated: 0,
        file: path.to_owned(),
    })
}

fn read_jsonl_session(path: &Path) -> Result<LegacySession, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let meta_path = path.with_file_name(format!("{stem}.meta.json"));
    let meta: JsonlMeta = match std::fs::read_to_string(&meta_path) {
        Ok(m) => serde_json::from_str(&m).map_err(|e| format!("{}: {e}", meta_path.display()))?,
        Err(_) => JsonlMeta::default(),
    };
    let mut values = Vec::new();
    let mut skipped_lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => values.push(v),
            // The original skips a torn last line after a crash; so do we.
            Err(_) => skipped_lines += 1,
        }
    }
    if skipped_lines > 0 {
        tracing::warn!(file = %path.display(), skipped_lines, "unreadable lines skipped");
    }
    let messages = convert_all(&values)?;
    Ok(LegacySession {
        key: if meta.key.is_empty() {
            key_from_name(stem)
        } else {
            meta.key
        },
        truncated: meta.skip.min(messages.len()),
        messages,
        summary: meta.summary.filter(|s| !s.trim().is_empty()),
        file: path.to_owned(),
    })
}

/// Every session file in `dir` (the original's `<workspace>/sessions`), read and converted; a
/// file that cannot be read comes back as its error. Sorted by file name.
pub fn read_legacy_sessions(dir: &Path) -> Vec<(PathBuf, Result<LegacySession, String>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !path.is_file() || name.ends_with(".meta.json") {
            continue;
        }
        if name.ends_with(".jsonl") {
            out.push((path.clone(), read_jsonl_session(&path)));
        } else if name.ends_with(".json") || name.ends_with(".json.migrated") {
            out.push((path.clone(), read_json_session(&path)));
        }
    }
    out
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Sessions imported, with their message counts.
    pub imported: Vec<(String, usize)>,
    /// Sessions skipped because the store already has them.
    pub already_present: Vec<String>,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    pub cron_imported: usize,
    pub cron_already_present: usize,
}

/// Imports the sessions in `dir` into `store`. A session the store already has (any message or
/// summary) is left alone, so running it twice imports nothing twice. Each session goes in as
/// one transaction; truncated history stays stored but hidden behind the summary, as compaction
/// leaves it. The original files are not changed.
pub async fn import_sessions(
    store: &dyn SessionStore,
    dir: &Path,
    dry_run: bool,
) -> Result<ImportReport, StateError> {
    let mut report = ImportReport::default();
    let mut seen = std::collections::HashSet::new();
    for (path, session) in read_legacy_sessions(dir) {
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                report.unreadable.push((path, e));
                continue;
            }
        };
        let key = SessionKey::new(&session.key);
        // A key in both formats (an upgrade midway): the first file, sorted, wins.
        if !seen.insert(session.key.clone()) {
            report.already_present.push(session.key);
            continue;
        }
        let existing = store.load(&key, Some(1)).await?;
        if !existing.messages.is_empty() || existing.summary.is_some() {
            report.already_present.push(session.key);
            continue;
        }
        if !dry_run {
            if !session.messages.is_empty() {
                store.append(&key, &session.messages).await?;
            }
            match (&session.summary, session.truncated) {
                (Some(summary), n) if n > 0 => {
                    store
                        .compact(&key, summary, session.messages.len() - n)
                        .await?;
                }
                (Some(summary), _) => store.set_summary(&key, Some(summary)).await?,
                (None, _) => {}
            }
        }
        report.imported.push((session.key, session.messages.len()));
    }
    Ok(report)
}

#[derive(Deserialize)]
struct JobsFile {
    #[serde(default)]
    jobs: Vec<CronJob>,
}

/// Imports `<workspace>/cron/jobs.json`: jobs the store does not have yet (by id). Returns
/// (imported, already present).
pub async fn import_cron_jobs(
    store: &dyn CronStore,
    jobs_file: &Path,
    dry_run: bool,
) -> Result<(usize, usize), StateError> {
    let text = match std::fs::read_to_string(jobs_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => {
            return Err(StateError::Io {
                path: jobs_file.to_owned(),
                source: e,
            });
        }
    };
    let file: JobsFile = serde_json::from_str(&text).map_err(|e| {
        StateError::Invalid(format!("{} is not a jobs file: {e}", jobs_file.display()))
    })?;
    let (mut imported, mut present) = (0, 0);
    for job in file.jobs {
        if store.get_job(&job.id).await?.is_some() {
            present += 1;
            continue;
        }
        if !dry_run {
            store.put_job(&job).await?;
        }
        imported += 1;
    }
    Ok((imported, present))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_tool_call_shapes_convert() {
        let new = json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"}}]});
        let old = json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "c2", "type": "function", "name": "exec", "arguments": {"command": "ls"}}]});
        let none = std::collections::HashMap::new();
        let a = convert_message(&new, &none).unwrap().unwrap();
        assert_eq!(a.tool_calls[0].name, "read_file");
        assert_eq!(a.tool_calls[0].arguments, "{\"path\":\"a\"}");
        let b = convert_message(&old, &none).unwrap().unwrap();
        assert_eq!(b.tool_calls[0].name, "exec");
        assert_eq!(
            serde_json::from_str::<Value>(&b.tool_calls[0].arguments).unwrap(),
            json!({"command": "ls"})
        );
        let named = std::collections::HashMap::from([("c2".to_owned(), "exec".to_owned())]);
        let r = convert_message(
            &json!({"role": "tool", "content": "ok", "tool_call_id": "c2"}),
            &named,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.tool_call_id.as_deref(), Some("c2"));
        assert_eq!(r.name.as_deref(), Some("exec"));
        assert_eq!(
            convert_message(&json!({"role": "system", "content": "x"}), &none).unwrap(),
            None
        );
        assert!(convert_message(&json!({"content": "x"}), &none).is_err());
        assert!(convert_message(&json!({"role": "tool", "content": "x"}), &none).is_err());
        let parts = json!({"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "x"}}]});
        assert_eq!(
            convert_message(&parts, &none).unwrap().unwrap().text(),
            "hi"
        );
    }

    #[test]
    fn keys_come_from_content_then_file_names() {
        assert_eq!(key_from_name("telegram_123"), "telegram:123");
        assert_eq!(key_from_name("cli_default"), "cli:default");
        assert_eq!(key_from_name("heartbeat"), "heartbeat");
    }
}
