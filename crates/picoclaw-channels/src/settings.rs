//! Reading a channel's JSON settings the same way for every platform, and the file names
//! channels give what users send.

use serde_json::Value;

/// A trimmed, non-empty string setting.
pub fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `allow_from`: strings or numbers (ids written as JSON numbers), blanks dropped.
pub fn allow_from(value: &Value) -> Vec<String> {
    match value.get("allow_from") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.trim().to_owned()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// `api_base`: an http(s) URL without its trailing `/`, or None for the platform's own.
pub fn api_base(value: &Value, channel: &str) -> Result<Option<String>, crate::ChannelError> {
    let Some(base) = text(value, "api_base") else {
        return Ok(None);
    };
    let base = base.trim_end_matches('/').to_owned();
    let parsed = url::Url::parse(&base).map_err(|e| {
        crate::ChannelError::Rejected(format!("channels.{channel}.api_base '{base}': {e}"))
    })?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(crate::ChannelError::Rejected(format!(
            "channels.{channel}.api_base '{base}' must be an http(s) URL"
        )));
    }
    Ok(Some(base))
}

/// `rate_limit_per_minute` (default 20; 0 turns the limit off).
pub fn rate_limit(value: &Value) -> u32 {
    value
        .get("rate_limit_per_minute")
        .and_then(Value::as_u64)
        .map_or(20, |n| n.min(u64::from(u32::MAX)) as u32)
}

/// The last component of a file name a user sent, with anything a path could abuse replaced
/// by `_` (no separators, no leading dots).
pub fn safe_file_name(name: &str) -> String {
    let safe: String = name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "file".to_owned()
    } else {
        safe.chars().take(120).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_climb_or_hide() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(safe_file_name(".bashrc"), "bashrc");
        assert_eq!(safe_file_name("my report (1).pdf"), "my_report__1_.pdf");
        assert_eq!(safe_file_name(""), "file");
        assert_eq!(safe_file_name(".."), "file");
    }

    #[test]
    fn settings_read_the_common_keys() {
        let v = serde_json::json!({"allow_from": ["U1", 42, " ", null], "x": "  y ",
                                   "rate_limit_per_minute": 0});
        assert_eq!(allow_from(&v), ["U1", "42"]);
        assert_eq!(text(&v, "x").as_deref(), Some("y"));
        assert_eq!(text(&v, "missing"), None);
        assert_eq!(rate_limit(&v), 0);
        assert_eq!(rate_limit(&serde_json::json!({})), 20);
    }
}
