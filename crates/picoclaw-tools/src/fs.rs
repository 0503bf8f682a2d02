//! The file tools, with the original PicoClaw's names and parameters: `read_file(path, offset,
//! length)`, `write_file(path, content)`, `edit_file(path, old_text, new_text)`,
//! `append_file(path, content)`, `list_dir(path)`. Every path goes through the [`Sandbox`].

use crate::args::{parse, schema};
use crate::sandbox::{Access, Sandbox};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_types::ToolSpec;
use serde::Deserialize;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The most `read_file` returns in one call (the original's limit): larger files are paged.
pub const MAX_READ_BYTES: u64 = 64 * 1024;
/// `list_dir` shows at most this many entries.
const MAX_DIR_ENTRIES: usize = 1000;

fn resolve(
    sandbox: &Sandbox,
    tool: &str,
    path: &str,
    access: Access,
) -> Result<PathBuf, ToolOutput> {
    sandbox
        .resolve(path, access)
        .map_err(|e| ToolOutput::error(format!("{tool}: {e}")))
}

fn io_error(tool: &str, path: &str, err: &std::io::Error) -> ToolOutput {
    let what = match err.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => err.to_string(),
    };
    ToolOutput::error(format!("{tool}: {path}: {what}"))
}

/// Writes `data` to `path` through a temporary file in the same folder and a rename, so the file
/// is never seen half-written. Creates parent folders.
pub(crate) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per call: tool calls of one response run concurrently and may target one file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, meta.permissions());
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `read_file(path, offset, length)`: text of a file, paged by bytes.
#[derive(Debug)]
pub struct ReadFileTool {
    sandbox: Arc<Sandbox>,
}

impl ReadFileTool {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

#[derive(Deserialize)]
struct ReadArgs {
    path: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    length: Option<u64>,
}

#[async_trait]
impl Tool for ReadFileTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "read_file",
            "Read a text file. Large files are paged with offset/length (bytes).",
            schema(
                &[
                    ("path", "string", "File path"),
                    ("offset", "integer", "Byte offset to start at (default 0)"),
                    (
                        "length",
                        "integer",
                        "Max bytes to read (default and cap 65536)",
                    ),
                ],
                &["path"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: ReadArgs = match parse("read_file", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let path = match resolve(&self.sandbox, "read_file", &args.path, Access::Read) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let offset = args.offset.unwrap_or(0);
        let length = args
            .length
            .unwrap_or(MAX_READ_BYTES)
            .clamp(1, MAX_READ_BYTES);
        match read_page(&path, offset, length) {
            Ok(page) => page.render(&args.path),
            Err(ReadError::Io(e)) => io_error("read_file", &args.path, &e),
            Err(ReadError::Message(m)) => {
                ToolOutput::error(format!("read_file: {}: {m}", args.path))
            }
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Message(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

struct Page {
    text: String,
    start: u64,
    end: u64,
    total: u64,
}

impl Page {
    fn render(self, shown_path: &str) -> ToolOutput {
        if self.start == 0 && self.end >= self.total {
            return ToolOutput::ok(self.text);
        }
        let mut out = format!(
            "[file: {shown_path} | {} bytes | showing bytes {}-{}]\n",
            self.total,
            self.start,
            self.end.saturating_sub(1)
        );
        out.push_str(&self.text);
        if self.end < self.total {
            out.push_str(&format!(
                "\n[truncated: call read_file with offset={} to continue]",
                self.end
            ));
        }
        ToolOutput::ok(out)
    }
}

fn read_page(path: &Path, offset: u64, length: u64) -> Result<Page, ReadError> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(ReadError::Message("is a directory; use list_dir".into()));
    }
    let total = meta.len();
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; 1024];
    let n = file.read(&mut head)?;
    if head[..n].contains(&0) {
        return Err(ReadError::Message(format!(
            "looks like a binary file ({total} bytes); read_file returns text only"
        )));
    }
    if offset > total {
        return Err(ReadError::Message(format!(
            "offset {offset} is past the end of the file ({total} bytes)"
        )));
    }
    file.seek(SeekFrom::Start(offset))?;
    // Read up to 3 extra bytes so a character cut at the end can be completed or dropped.
    let mut buf = Vec::with_capacity(usize::try_from(length).unwrap_or(0) + 3);
    file.take(length + 3).read_to_end(&mut buf)?;
    // Start on a character boundary.
    let skip = buf
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let mut end = usize::try_from(length).unwrap_or(usize::MAX).min(buf.len());
    while end > skip && end < buf.len() && (buf[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    let slice = &buf[skip..end];
    Ok(Page {
        text: String::from_utf8_lossy(slice).into_owned(),
        start: offset + skip as u64,
        end: offset + end as u64,
        total,
    })
}

/// `write_file(path, content)`: creates or replaces a file (atomically), creating folders.
#[derive(Debug)]
pub struct WriteFileTool {
    sandbox: Arc<Sandbox>,
}

impl WriteFileTool {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[async_trait]
impl Tool for WriteFileTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "write_file",
            "Create or overwrite a file with the given content.",
            schema(
                &[
                    ("path", "string", "File path"),
                    ("content", "string", "Full file content"),
                ],
                &["path", "content"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: WriteArgs = match parse("write_file", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let path = match resolve(&self.sandbox, "write_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        if path.is_dir() {
            return ToolOutput::error(format!("write_file: {} is a directory", args.path));
        }
        match write_atomically(&path, args.content.as_bytes()) {
            Ok(()) => ToolOutput::ok(format!(
                "Wrote {} bytes to {}",
                args.content.len(),
                self.sandbox.display(&path)
            )),
            Err(e) => io_error("write_file", &args.path, &e),
        }
    }
}

/// `edit_file(path, old_text, new_text)`: replaces exactly one occurrence of `old_text`.
#[derive(Debug)]
pub struct EditFileTool {
    sandbox: Arc<Sandbox>,
}

impl EditFileTool {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    old_text: String,
    new_text: String,
}

#[async_trait]
impl Tool for EditFileTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "edit_file",
            "Replace old_text with new_text in a file; old_text must match exactly once.",
            schema(
                &[
                    ("path", "string", "File path"),
                    ("old_text", "string", "Exact text to replace"),
                    ("new_text", "string", "Replacement text"),
                ],
                &["path", "old_text", "new_text"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: EditArgs = match parse("edit_file", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        if args.old_text.is_empty() {
            return ToolOutput::error("edit_file: old_text must not be empty");
        }
        let path = match resolve(&self.sandbox, "edit_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return io_error("edit_file", &args.path, &e),
        };
        match text.matches(args.old_text.as_str()).count() {
            0 => ToolOutput::error(format!(
                "edit_file: old_text was not found in {}. Read the file with read_file and copy \
                 the exact text, whitespace included.",
                args.path
            )),
            1 => {
                let updated = text.replacen(args.old_text.as_str(), &args.new_text, 1);
                match write_atomically(&path, updated.as_bytes()) {
                    Ok(()) => ToolOutput::ok(format!("Edited {}", self.sandbox.display(&path))),
                    Err(e) => io_error("edit_file", &args.path, &e),
                }
            }
            n => ToolOutput::error(format!(
                "edit_file: old_text appears {n} times in {}; include more surrounding text so it \
                 matches exactly once.",
                args.path
            )),
        }
    }
}

/// `append_file(path, content)`: appends to a file, creating it (and its folders) if needed.
#[derive(Debug)]
pub struct AppendFileTool {
    sandbox: Arc<Sandbox>,
}

impl AppendFileTool {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

#[async_trait]
impl Tool for AppendFileTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "append_file",
            "Append content to the end of a file, creating it if missing.",
            schema(
                &[
                    ("path", "string", "File path"),
                    ("content", "string", "Text to append"),
                ],
                &["path", "content"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: WriteArgs = match parse("append_file", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let path = match resolve(&self.sandbox, "append_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let result = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(args.content.as_bytes())
        })();
        match result {
            Ok(()) => ToolOutput::ok(format!(
                "Appended {} bytes to {}",
                args.content.len(),
                self.sandbox.display(&path)
            )),
            Err(e) => io_error("append_file", &args.path, &e),
        }
    }
}

/// `list_dir(path)`: the entries of a folder, sorted, folders first marked `DIR:`.
#[derive(Debug)]
pub struct ListDirTool {
    sandbox: Arc<Sandbox>,
}

impl ListDirTool {
    pub fn new(sandbox: Arc<Sandbox>) -> Self {
        Self { sandbox }
    }
}

#[derive(Deserialize)]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
}

#[async_trait]
impl Tool for ListDirTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "list_dir",
            "List the files and folders in a directory.",
            schema(
                &[("path", "string", "Directory path (default: workspace)")],
                &[],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: ListArgs = match parse("list_dir", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let shown = args.path.unwrap_or_else(|| ".".to_owned());
        let path = match resolve(&self.sandbox, "list_dir", &shown, Access::Read) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let entries = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) => return io_error("list_dir", &shown, &e),
        };
        let mut items: Vec<(bool, String)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let is_dir =
                    e.file_type().map(|t| t.is_dir()).unwrap_or(false) || e.path().is_dir();
                (is_dir, e.file_name().to_string_lossy().into_owned())
            })
            .collect();
        if items.is_empty() {
            return ToolOutput::ok(format!("{shown} is empty"));
        }
        items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let total = items.len();
        let mut out = String::new();
        for (is_dir, name) in items.iter().take(MAX_DIR_ENTRIES) {
            out.push_str(if *is_dir { "DIR:  " } else { "FILE: " });
            out.push_str(name);
            out.push('\n');
        }
        if total > MAX_DIR_ENTRIES {
            out.push_str(&format!(
                "... and {} more entries\n",
                total - MAX_DIR_ENTRIES
            ));
        }
        ToolOutput::ok(out)
    }
}
