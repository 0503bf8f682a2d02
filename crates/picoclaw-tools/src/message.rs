//! `message(content, channel, chat_id, media)`: the agent sends a message on its own — to the
//! current conversation by default, or to another chat — through the outbox, so it is delivered
//! like every reply (in order per chat, retried, once). Useful from scheduled tasks and the
//! heartbeat. `media` attaches workspace files, opened beneath the workspace handle of the
//! [`Sandbox`] and copied to a folder outside the workspace before queueing, so the file the
//! channel uploads later is the one that was checked (a link swapped in afterwards changes
//! nothing).

use crate::args::{parse, schema};
use crate::sandbox::{Access, Sandbox};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_api::{MediaKind, MediaRef, OutboundMessage};
use picoclaw_state::{Outbox, now_ms};
use serde::Deserialize;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Longest message the tool accepts (channels split long ones further).
pub(crate) const MAX_MESSAGE_CHARS: usize = 16_000;

/// Largest file the tool attaches (Telegram's upload limit for bots; Slack's and Discord's
/// default limits are lower and are checked by those channels).
pub(crate) const MAX_MEDIA_BYTES: u64 = 50 * 1024 * 1024;

/// Most files one message carries.
pub(crate) const MAX_MEDIA_FILES: usize = 10;

/// Proactive messages.
#[derive(Clone)]
pub struct MessageTool {
    outbox: Arc<dyn Outbox>,
    sandbox: Option<Arc<Sandbox>>,
    /// Where attachments are copied (outside the workspace); `None` queues the workspace path.
    snapshots: Option<PathBuf>,
}

impl std::fmt::Debug for MessageTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageTool").finish_non_exhaustive()
    }
}

impl MessageTool {
    /// Text only: `media` is refused.
    pub fn new(outbox: Arc<dyn Outbox>) -> Self {
        Self {
            outbox,
            sandbox: None,
            snapshots: None,
        }
    }

    /// Files named in `media` are taken from this workspace.
    pub fn with_files(mut self, sandbox: Arc<Sandbox>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Copies each attachment into `dir` (a folder the model cannot write, such as
    /// `~/.picoclaw/media-out`) and queues the copy; copies older than a week are removed.
    pub fn with_snapshots(mut self, dir: impl Into<PathBuf>) -> Self {
        self.snapshots = Some(dir.into());
        self
    }

    async fn attachments(&self, media: Option<Value>) -> Result<Vec<MediaRef>, String> {
        let paths: Vec<String> = match media {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::String(one)) if one.trim().is_empty() => return Ok(Vec::new()),
            Some(Value::String(one)) => vec![one],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(p) => Ok(p),
                    other => Err(format!(
                        "message: media must list workspace file paths, got {other}"
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(format!(
                    "message: media must be a list of workspace file paths, got {other}"
                ));
            }
        };
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let Some(sandbox) = &self.sandbox else {
            return Err("message: this agent cannot attach files; send the text only".into());
        };
        if paths.len() > MAX_MEDIA_FILES {
            return Err(format!(
                "message: at most {MAX_MEDIA_FILES} files per message ({} given)",
                paths.len()
            ));
        }
        let mut refs = Vec::with_capacity(paths.len());
        for raw in paths {
            let at = sandbox
                .locate(raw.trim(), Access::Read)
                .map_err(|e| format!("message: media: {}", e.for_model()))?;
            let name = at
                .full()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| raw.clone());
            let snapshots = self.snapshots.clone();
            let copy_name = name.clone();
            let path = Sandbox::io(move || {
                let opened = at.dir.open_file(&at.path)?;
                if opened.len > MAX_MEDIA_BYTES {
                    return Ok(Err(opened.len));
                }
                match snapshots {
                    Some(dir) => snapshot(&dir, &copy_name, opened.file).map(Ok),
                    None => Ok(Ok(at.full())),
                }
            })
            .await
            .map_err(|e| format!("message: media: cannot use '{raw}': {}", e.for_model()))?
            .map_err(|len| {
                format!(
                    "message: media: '{raw}' is {} MiB; files up to {} MiB can be sent",
                    len / (1024 * 1024),
                    MAX_MEDIA_BYTES / (1024 * 1024)
                )
            })?;
            let (kind, mime) = kind_of(&name);
            refs.push(
                MediaRef::new(kind, path.display().to_string())
                    .with_mime(mime)
                    .with_name(name),
            );
        }
        Ok(refs)
    }
}

/// How long copies of sent attachments are kept (deliveries are retried for far less).
const SNAPSHOT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Copies an opened attachment into `dir` under a fresh name (created exclusively, 0600) and
/// removes copies older than [`SNAPSHOT_KEEP`]. Returns the copy's path.
fn snapshot(
    dir: &std::path::Path,
    name: &str,
    file: std::fs::File,
) -> Result<PathBuf, picoclaw_fs::FsError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |source: std::io::Error| picoclaw_fs::FsError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    if let Ok(entries) = std::fs::read_dir(dir) {
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > SNAPSHOT_KEEP);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let safe: String = name
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    let dest = dir.join(format!("{}-{}-{n}-{safe}", now_ms(), std::process::id()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&dest)
        .map_err(io)?;
    let copied = std::io::copy(&mut file.take(MAX_MEDIA_BYTES + 1), &mut out);
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&dest);
        return Err(io(e));
    }
    Ok(dest)
}

/// The kind and MIME type of a file, from its extension.
fn kind_of(name: &str) -> (MediaKind, &'static str) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => (MediaKind::Image, "image/png"),
        "jpg" | "jpeg" => (MediaKind::Image, "image/jpeg"),
        "gif" => (MediaKind::Image, "image/gif"),
        "webp" => (MediaKind::Image, "image/webp"),
        "mp3" => (MediaKind::Audio, "audio/mpeg"),
        "ogg" | "oga" | "opus" => (MediaKind::Audio, "audio/ogg"),
        "m4a" => (MediaKind::Audio, "audio/mp4"),
        "wav" => (MediaKind::Audio, "audio/wav"),
        "mp4" => (MediaKind::Video, "video/mp4"),
        "webm" => (MediaKind::Video, "video/webm"),
        "mov" => (MediaKind::Video, "video/quicktime"),
        "pdf" => (MediaKind::Document, "application/pdf"),
        "txt" | "md" | "log" => (MediaKind::Document, "text/plain"),
        "csv" => (MediaKind::Document, "text/csv"),
        "json" => (MediaKind::Document, "application/json"),
        "zip" => (MediaKind::Document, "application/zip"),
        _ => (MediaKind::Document, "application/octet-stream"),
    }
}

#[derive(Deserialize)]
struct Args {
    content: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    chat_id: Option<String>,
    #[serde(default)]
    media: Option<Value>,
    #[serde(default)]
    buttons: Option<Value>,
}

/// Most buttons one message carries (Telegram allows 100; more is never readable).
pub(crate) const MAX_BUTTONS: usize = 12;

/// `buttons`: a list of labels (one row), or a list of lists (rows). A label is also what a
/// press sends back.
fn parse_buttons(value: Option<Value>) -> Result<Vec<Vec<picoclaw_api::Button>>, String> {
    let label = |v: &Value| -> Result<picoclaw_api::Button, String> {
        match v.as_str().map(str::trim) {
            Some(t) if !t.is_empty() && t.chars().count() <= 40 => {
                Ok(picoclaw_api::Button::new(t, t))
            }
            _ => Err(format!(
                "message: each button is a label of 1 to 40 characters, got {v}"
            )),
        }
    };
    let rows: Vec<Vec<picoclaw_api::Button>> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => items
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|r| r.iter().map(label).collect::<Result<Vec<_>, _>>())
                    .unwrap_or(Ok(Vec::new()))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Array(items)) => vec![items.iter().map(label).collect::<Result<_, _>>()?],
        Some(other) => {
            return Err(format!(
                "message: buttons must be a list of labels (or of rows of labels), got {other}"
            ));
        }
    };
    if rows.iter().map(Vec::len).sum::<usize>() > MAX_BUTTONS {
        return Err(format!("message: at most {MAX_BUTTONS} buttons"));
    }
    Ok(rows.into_iter().filter(|r| !r.is_empty()).collect())
}

#[async_trait]
impl Tool for MessageTool {
    fn spec(&self) -> ToolSpec {
        let mut parameters = schema(
            &[
                ("content", "string", "The text to send"),
                (
                    "channel",
                    "string",
                    "The channel (telegram, slack...); default: this conversation's",
                ),
                (
                    "chat_id",
                    "string",
                    "The chat within the channel; default: this conversation's",
                ),
                ("media", "array", "Files to attach"),
                ("buttons", "array", "Answer buttons"),
            ],
            &["content"],
        );
        parameters["properties"]["media"]["items"] = serde_json::json!({"type": "string"});
        parameters["properties"]["buttons"]["items"] = serde_json::json!({"type": "string"});
        ToolSpec::new(
            "message",
            "Send a message now; default: this chat.",
            parameters,
        )
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: Args = match parse("message", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let content = args.content.trim();
        if content.is_empty() {
            return ToolOutput::error("message: content is empty");
        }
        if content.chars().count() > MAX_MESSAGE_CHARS {
            return ToolOutput::error(format!(
                "message: content is longer than {MAX_MESSAGE_CHARS} characters; shorten it"
            ));
        }
        let channel = args
            .channel
            .filter(|c| !c.trim().is_empty())
            .or_else(|| ctx.channel.clone());
        let chat = args
            .chat_id
            .filter(|c| !c.trim().is_empty())
            .or_else(|| ctx.chat_id.clone());
        let (Some(channel), Some(chat)) = (channel, chat) else {
            return ToolOutput::error(
                "message: this conversation has no chat to send to (it is not on a channel); give \
                 channel and chat_id",
            );
        };
        if crate::answers_in_place(&channel) {
            return ToolOutput::error(format!(
                "message: the {channel} conversation gets your answer directly; just answer"
            ));
        }
        let media = match self.attachments(args.media).await {
            Ok(m) => m,
            Err(e) => return ToolOutput::error(e),
        };
        let buttons = match parse_buttons(args.buttons) {
            Ok(b) => b,
            Err(e) => return ToolOutput::error(e),
        };
        let files = media.len();
        let mut msg = OutboundMessage::new(channel.as_str(), chat.as_str(), content);
        msg.media = media;
        msg.buttons = buttons;
        let payload = match serde_json::to_string(&msg) {
            Ok(p) => p,
            Err(e) => return ToolOutput::error(format!("message: {e}")),
        };
        match self
            .outbox
            .enqueue_outbound(&channel, &chat, &payload, now_ms())
            .await
        {
            Ok(_) if files > 0 => ToolOutput::ok(format!(
                "Sent to {channel}:{chat} with {files} file{}.",
                if files == 1 { "" } else { "s" }
            )),
            Ok(_) => ToolOutput::ok(format!("Sent to {channel}:{chat}.")),
            Err(e) => ToolOutput::error(format!("message: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::SessionKey;
    use picoclaw_state::InMemoryStore;
    use serde_json::json;

    #[tokio::test]
    async fn sends_to_this_chat_or_another_through_the_outbox() {
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone());
        let ctx = ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42");
        let out = tool.call(&ctx, json!({"content": "Working on it…"})).await;
        assert_eq!(out.content, "Sent to telegram:42.");
        let out = tool
            .call(
                &ctx,
                json!({"content": "FYI", "channel": "slack", "chat_id": "C9"}),
            )
            .await;
        assert!(!out.is_error, "{out:?}");
        let sent = store.claim_outbound("t", now_ms(), 1000, 10).await.unwrap();
        let texts: Vec<(String, String)> = sent
            .iter()
            .map(|r| {
                let m: OutboundMessage = serde_json::from_str(&r.payload).unwrap();
                (format!("{}:{}", r.channel, r.chat_id), m.content)
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("telegram:42".to_owned(), "Working on it…".to_owned()),
                ("slack:C9".to_owned(), "FYI".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn attaches_workspace_files_and_refuses_others() {
        let ws = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("chart.png"), b"\x89PNG").unwrap();
        std::fs::write(ws.path().join("report.pdf"), b"%PDF").unwrap();
        std::fs::write(outside.path().join("secret.txt"), b"s").unwrap();
        std::fs::create_dir(ws.path().join("dir")).unwrap();
        let sandbox = Arc::new(Sandbox::new(ws.path()).unwrap());
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone()).with_files(sandbox.clone());
        let ctx = ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42");
        let out = tool
            .call(
                &ctx,
                json!({"content": "Here", "media": ["chart.png", "report.pdf"]}),
            )
            .await;
        assert_eq!(out.content, "Sent to telegram:42 with 2 files.");
        let secret = outside.path().join("secret.txt").display().to_string();
        for (media, want) in [
            (json!(["../secret.txt"]), "restrict_to_workspace"),
            (json!([secret]), "restrict_to_workspace"),
            (json!(["missing.png"]), "cannot use 'missing.png'"),
            (json!(["dir"]), "is a directory"),
            (json!([1]), "file paths"),
            (json!({"a": 1}), "list of workspace file paths"),
            (json!(vec!["chart.png"; 11]), "at most 10 files"),
        ] {
            let out = tool
                .call(&ctx, json!({"content": "x", "media": media.clone()}))
                .await;
            assert!(
                out.is_error && out.content.contains(want),
                "{media}: {out:?}"
            );
        }
        let sent = store.claim_outbound("t", now_ms(), 1000, 10).await.unwrap();
        assert_eq!(sent.len(), 1, "refused calls queue nothing");
        let m: OutboundMessage = serde_json::from_str(&sent[0].payload).unwrap();
        assert_eq!(m.media.len(), 2);
        assert_eq!(m.media[0].kind, MediaKind::Image);
        assert_eq!(m.media[0].mime.as_deref(), Some("image/png"));
        assert_eq!(m.media[0].name.as_deref(), Some("chart.png"));
        assert_eq!(
            std::path::Path::new(&m.media[1].location),
            sandbox.root().join("report.pdf")
        );
        assert_eq!(m.media[1].kind, MediaKind::Document);
    }

    /// An attachment swapped for a link after the tool checked it must not change what the
    /// channel uploads: the queued file is a copy outside the workspace.
    #[tokio::test]
    async fn attachments_are_copied_out_of_reach_before_queueing() {
        let ws = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(ws.path().join("report.txt"), b"report").unwrap();
        std::fs::write(outside.path().join("config.json"), b"sk-SECRET").unwrap();
        let sandbox = Arc::new(Sandbox::new(ws.path()).unwrap());
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone())
            .with_files(sandbox)
            .with_snapshots(home.path().join("media-out"));
        let ctx = ToolContext::new(SessionKey::new("telegram:42")).with_chat("telegram", "42");
        let out = tool
            .call(&ctx, json!({"content": "Here", "media": ["report.txt"]}))
            .await;
        assert!(!out.is_error, "{out:?}");
        std::fs::remove_file(ws.path().join("report.txt")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("config.json"),
            ws.path().join("report.txt"),
        )
        .unwrap();
        let sent = store.claim_outbound("t", now_ms(), 1000, 10).await.unwrap();
        let m: OutboundMessage = serde_json::from_str(&sent[0].payload).unwrap();
        let queued = std::path::Path::new(&m.media[0].location);
        assert!(
            queued.starts_with(home.path().join("media-out")),
            "{queued:?}"
        );
        assert_eq!(std::fs::read(queued).unwrap(), b"report");
        assert_eq!(m.media[0].name.as_deref(), Some("report.txt"));
        // And a link planted before the call is refused outright.
        let out = tool
            .call(&ctx, json!({"content": "x", "media": ["report.txt"]}))
            .await;
        assert!(
            out.is_error && out.content.contains("restrict_to_workspace"),
            "{out:?}"
        );
    }

    #[test]
    fn buttons_are_labels_in_one_row_or_rows() {
        let one = parse_buttons(Some(json!(["Yes", "No"]))).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][1], picoclaw_api::Button::new("No", "No"));
        let rows = parse_buttons(Some(json!([["A", "B"], ["C"]]))).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(parse_buttons(None).unwrap().is_empty());
        for bad in [
            json!("Yes"),
            json!([""]),
            json!([1]),
            json!(["x".repeat(41)]),
            json!(vec!["b"; 13]),
        ] {
            assert!(parse_buttons(Some(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(picoclaw_api::buttons_as_text(&rows), "[A] [B]\n[C]");
    }

    #[tokio::test]
    async fn refuses_what_cannot_be_sent() {
        let store = Arc::new(InMemoryStore::new());
        let tool = MessageTool::new(store.clone());
        let cli = ToolContext::new(SessionKey::new("cli:default")).with_chat("cli", "default");
        let bare = ToolContext::new(SessionKey::new("x"));
        let chat = ToolContext::new(SessionKey::new("telegram:1")).with_chat("telegram", "1");
        // The dashboard's chat answers in place too: no "web" channel to queue a message for.
        let web = ToolContext::new(SessionKey::new("web:ab12")).with_chat("web", "ab12");
        for (ctx, args, want) in [
            (&bare, json!({"content": "hi"}), "no chat to send to"),
            (&cli, json!({"content": "hi"}), "answer directly"),
            (&web, json!({"content": "hi"}), "answer directly"),
            (&chat, json!({"content": "  "}), "empty"),
            (
                &chat,
                json!({"content": "x".repeat(MAX_MESSAGE_CHARS + 1)}),
                "longer than",
            ),
            (
                &chat,
                json!({"content": "hi", "media": ["a.png"]}),
                "cannot attach files",
            ),
            (&chat, json!({}), "invalid arguments"),
        ] {
            let out = tool.call(ctx, args.clone()).await;
            assert!(
                out.is_error && out.content.contains(want),
                "{args}: {out:?}"
            );
        }
        assert!(
            store
                .claim_outbound("t", now_ms(), 1000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
