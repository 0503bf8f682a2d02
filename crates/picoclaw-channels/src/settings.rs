//! Reading a channel's JSON settings the same way for every platform, and the file names
//! channels give what users send.

use serde_json::Value;
use std::path::PathBuf;

/// What every channel's settings have: who may talk to it, how fast, and where its files go.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Common {
    /// User ids (or usernames, where the platform has them) allowed to talk to the bot. Empty:
    /// nobody, until someone pairs with the one-time code.
    pub allow_from: Vec<String>,
    /// Where files users send are saved (the gateway sets `workspace/media/<channel>`); without
    /// it, such messages are taken as their text only.
    pub media_dir: Option<PathBuf>,
    /// The folder `media_dir` lies in whose handle confines downloads (the gateway sets the
    /// workspace): a link planted at `media` or below by a command cannot redirect a download.
    pub media_base: Option<PathBuf>,
    /// Where paired users are kept, outside the workspace (the gateway sets
    /// `~/.picoclaw/channels/<channel>-paired.json`).
    pub paired_file: Option<PathBuf>,
    /// Messages per user per minute (`rate_limit_per_minute`, default 20; 0: no limit).
    pub rate_limit_per_minute: u32,
}

impl Common {
    /// `allow_from` and `rate_limit_per_minute` from a channel's settings.
    pub fn from_json(value: &Value) -> Self {
        Self::from_keys(
            allow_from(value),
            value.get("rate_limit_per_minute").and_then(Value::as_u64),
        )
    }

    /// `allow_from` and `rate_limit_per_minute` (default 20; 0 turns the limit off) as a typed
    /// section holds them.
    pub fn from_keys(allow_from: Vec<String>, rate_limit_per_minute: Option<u64>) -> Self {
        Self {
            allow_from,
            media_dir: None,
            media_base: None,
            paired_file: None,
            rate_limit_per_minute: rate_limit_per_minute
                .map_or(20, |n| n.min(u64::from(u32::MAX)) as u32),
        }
    }

    /// The access rules (allow-list, pairing, rate limit) of channel `name`.
    pub fn access(&self, name: &str) -> crate::access::Access {
        crate::access::Access::new(
            name,
            self.allow_from.clone(),
            self.paired_file.clone(),
            self.rate_limit_per_minute,
        )
    }
}

/// A channel's settings: where the gateway puts the files and the paired users.
pub trait ChannelSettings: Sized {
    fn common_mut(&mut self) -> &mut Common;

    fn with_media_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.common_mut().media_dir = Some(dir.into());
        self
    }

    /// Downloads into `media_dir` are opened beneath `base`'s directory handle.
    fn with_media_base(mut self, base: impl Into<PathBuf>) -> Self {
        self.common_mut().media_base = Some(base.into());
        self
    }

    fn with_paired_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.common_mut().paired_file = Some(file.into());
        self
    }
}

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
    checked_api_base(text(value, "api_base").as_deref(), channel)
}

/// An `api_base` setting checked: trimmed, an http(s) URL, without its trailing `/`; None when
/// absent or blank (the platform's own).
pub fn checked_api_base(
    base: Option<&str>,
    channel: &str,
) -> Result<Option<String>, crate::ChannelError> {
    let Some(base) = base.map(str::trim).filter(|b| !b.is_empty()) else {
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

/// The body of `response`, refused when it is longer than `cap` bytes (by its Content-Length
/// first, then as it arrives, so a lying header cannot make it read more). Errors carry no URL.
#[cfg(feature = "http-client")]
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let too_big = || format!("larger than {} MiB", cap >> 20);
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("download failed: {}", e.without_url()))?
    {
        if bytes.len() + chunk.len() > cap {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The MIME type `response` names, without its parameters (`image/jpeg`).
#[cfg(any(
    feature = "whatsapp",
    feature = "onebot",
    feature = "line",
    feature = "wecom"
))]
pub(crate) fn mime_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
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

/// Saves a download as a new file `<media_dir>/<folder>/<name>`, opened beneath the handle of
/// `media_base` (else of `media_dir`): created exclusively, so an existing file or a link
/// planted at that name is never written through (a taken name gets a `-N` suffix). Runs on the
/// blocking pool. Returns where the file is.
pub async fn save_download(
    common: &Common,
    folder: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<PathBuf, String> {
    use picoclaw_fs::{FsError, WorkspaceDir};
    use std::io::Write;
    let Some(dir) = common.media_dir.clone() else {
        return Err("no media folder is configured".into());
    };
    let base = common
        .media_base
        .clone()
        .filter(|b| dir.starts_with(b) && dir != *b);
    let folder = safe_file_name(folder);
    let name = safe_file_name(name);
    let work = move || -> Result<PathBuf, FsError> {
        let open_err = |path: &std::path::Path| {
            let shown = path.display().to_string();
            move |source| FsError::Io {
                path: shown,
                source,
            }
        };
        let (root, sub) = match &base {
            Some(base) => {
                let rel = dir.strip_prefix(base).unwrap_or(&dir).join(&folder);
                (WorkspaceDir::open(base).map_err(open_err(base))?, rel)
            }
            None => (
                WorkspaceDir::create(&dir).map_err(open_err(&dir))?,
                PathBuf::from(&folder),
            ),
        };
        let target = root.create_subdir(&sub.to_string_lossy())?;
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
            _ => (name.clone(), String::new()),
        };
        for attempt in 0..100u32 {
            let candidate = if attempt == 0 {
                name.clone()
            } else {
                format!("{stem}-{attempt}{ext}")
            };
            match target.create_new(&candidate) {
                Ok(mut file) => {
                    file.write_all(&bytes).map_err(|source| FsError::Io {
                        path: candidate.clone(),
                        source,
                    })?;
                    return Ok(target.root().join(candidate));
                }
                Err(FsError::Exists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(FsError::Exists { path: name })
    };
    picoclaw_fs::off_thread(std::time::Duration::from_secs(60), work)
        .await
        .map_err(|e| format!("cannot save the file: {e}"))
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
