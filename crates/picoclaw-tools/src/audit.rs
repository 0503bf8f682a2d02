//! The audit trail: every tool call (tool, session, outcome, arguments with secrets masked) is
//! an event with the tracing target [`TARGET`], which the apps write to
//! `~/.picoclaw/logs/audit.<date>.jsonl` and `picoclaw audit` reads. Other crates (the gateway's
//! key checks, the channels' pairing, the CLI's logins) emit events with the same target.
//! Libraries only emit; where the events go is the app's choice.

use serde_json::Value;

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// The longest a string argument is shown.
const MAX_ARG_CHARS: usize = 200;
/// The longest the arguments are shown in all.
const MAX_ARGS_CHARS: usize = 2000;

/// Whether a JSON key names something secret (`api_key`, `token`, `password`...).
fn secret_key(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "cookie",
        "credential",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

fn mask(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if secret_key(k) && !v.is_null() {
                        Value::String("***".into())
                    } else {
                        mask(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        Value::String(s) if crate::is_secret_value(s) => Value::String("***".into()),
        Value::String(s) if s.chars().count() > MAX_ARG_CHARS => {
            let mut cut: String = s.chars().take(MAX_ARG_CHARS).collect();
            cut.push('…');
            Value::String(cut)
        }
        other => other.clone(),
    }
}

/// The arguments of a call as the audit log shows them: secret-named values and URLs with
/// passwords replaced by `***`, long strings cut, the whole at most 2 000 characters.
pub fn masked_args(args: &Value) -> String {
    let mut text = mask(args).to_string();
    if text.chars().count() > MAX_ARGS_CHARS {
        text = text.chars().take(MAX_ARGS_CHARS).collect();
        text.push('…');
    }
    text
}

/// Records one finished tool call.
pub(crate) fn tool_call(
    session: &str,
    tool: &str,
    args: &str,
    output: &crate::ToolOutput,
    elapsed: std::time::Duration,
) {
    let outcome = if output.is_error { "error" } else { "ok" };
    let detail: String = if output.is_error {
        output
            .content
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect()
    } else {
        String::new()
    };
    tracing::trace!(
        target: "audit",
        kind = "tool_call",
        session,
        tool,
        outcome,
        ms = elapsed.as_millis() as u64,
        args,
        detail = detail.as_str(),
        "tool call"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_and_long_values_cut() {
        let shown = masked_args(&json!({
            "path": "notes.txt",
            "headers": {"Authorization": "Bearer sk-live", "X-Api-Key": "k"},
            "url": "postgres://app:hunter2@db/x",
            "content": "x".repeat(500),
        }));
        assert!(
            !shown.contains("sk-live") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(shown.contains("notes.txt"), "{shown}");
        assert!(shown.len() < 400, "{shown}");
        let huge = masked_args(&json!((0..1000).map(|i| i.to_string()).collect::<Vec<_>>()));
        assert!(huge.chars().count() <= MAX_ARGS_CHARS + 1);
    }
}
