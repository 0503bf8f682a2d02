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
        Value::String(s) => {
            let s = mask_text(s);
            if s.chars().count() > MAX_ARG_CHARS {
                let mut cut: String = s.chars().take(MAX_ARG_CHARS).collect();
                cut.push('…');
                Value::String(cut)
            } else {
                Value::String(s)
            }
        }
        other => other.clone(),
    }
}

/// Credentials written inside a text (a command line, a URL): the word after `Bearer`, `Basic`
/// or a `--password`-like option, the value of `key=`/`token=`/`password=`-like pairs (also in
/// URL queries), and `sk-...` keys.
pub fn mask_text(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut hide_next = false;
    for word in text.split(' ') {
        if hide_next && !word.is_empty() {
            out.push("***".to_owned());
            hide_next = false;
            continue;
        }
        let bare = word.trim_matches(|c: char| c == '\'' || c == '"');
        let lower = bare.to_ascii_lowercase();
        if lower.ends_with("bearer")
            || lower.ends_with("basic")
            || (lower.starts_with('-') && !lower.contains('=') && secret_key(&lower))
        {
            hide_next = true;
            out.push(word.to_owned());
            continue;
        }
        if bare.starts_with("sk-") && bare.len() > 12 {
            out.push("***".to_owned());
            continue;
        }
        out.push(mask_pairs(word));
    }
    out.join(" ")
}

/// `name=value` pairs of one word (`--password=x`, `A_KEY=x`, `?api_key=x&q=1`) with the values
/// of secret names replaced.
fn mask_pairs(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for segment in word.split_inclusive(['?', '&']) {
        let (body, sep) = match segment.strip_suffix(['?', '&']) {
            Some(body) => (body, &segment[body.len()..]),
            None => (segment, ""),
        };
        match body.split_once('=') {
            Some((name, _)) if secret_key(name) => {
                out.push_str(name);
                out.push_str("=***");
                out.push_str(sep);
            }
            _ => out.push_str(segment),
        }
    }
    out
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
        mask_text(output.content.lines().next().unwrap_or_default())
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
        for text in [
            "curl -H 'Authorization: Bearer sk-live-123456789' https://x",
            "curl https://api.example/v1?api_key=abc123secret&q=1",
            "mysql --password=hunter2 -u root",
            "mysql --password hunter2 -u root",
            "export OPENAI_API_KEY=sk-abcdefghijklmnop",
        ] {
            let m = mask_text(text);
            for secret in [
                "sk-live-123456789",
                "abc123secret",
                "hunter2",
                "sk-abcdefghijklmnop",
            ] {
                assert!(!m.contains(secret), "{text} -> {m}");
            }
        }
        assert_eq!(
            mask_text("ls -la notes && curl https://x/?q=1"),
            "ls -la notes && curl https://x/?q=1"
        );
        let huge = masked_args(&json!((0..1000).map(|i| i.to_string()).collect::<Vec<_>>()));
        assert!(huge.chars().count() <= MAX_ARGS_CHARS + 1);
    }
}
