//! The file tools, with the original PicoClaw's names and parameters: `read_file(path, offset,
//! length)`, `write_file(path, content)`, `edit_file(path, old_text, new_text)`,
//! `append_file(path, content)`, `list_dir(path)`. Every path is opened beneath the handle the
//! [`Sandbox`] gives it, on tokio's blocking pool.

use crate::args::{parse, schema};
use crate::sandbox::{Access, Located, Sandbox, SandboxError};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_fs::OpenedFile;
use serde::Deserialize;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// The most `read_file` returns in one call (the original's limit): larger files are paged.
pub const MAX_READ_BYTES: u64 = 64 * 1024;
/// The largest file `edit_file` loads to change.
const MAX_EDIT_BYTES: u64 = 16 * 1024 * 1024;
/// `list_dir` shows at most this many entries.
const MAX_DIR_ENTRIES: usize = 1000;

/// Where `path` is opened, or the refusal as the tool's result.
fn locate(
    sandbox: &Sandbox,
    tool: &str,
    path: &str,
    access: Access,
) -> Result<Located, ToolOutput> {
    sandbox
        .locate(path, access)
        .map_err(|e| ToolOutput::error(format!("{tool}: {}", e.for_model())))
}

fn fs_error(tool: &str, err: &SandboxError) -> ToolOutput {
    ToolOutput::error(format!("{tool}: {}", err.for_model()))
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
        let at = match locate(&self.sandbox, "read_file", &args.path, Access::Read) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let offset = args.offset.unwrap_or(0);
        let length = args
            .length
            .unwrap_or(MAX_READ_BYTES)
            .clamp(1, MAX_READ_BYTES);
        let page = Sandbox::io(move || {
            let opened = at.dir.open_file(&at.path)?;
            Ok(read_page(opened, offset, length))
        })
        .await;
        match page {
            Ok(Ok(page)) => page.render(&args.path),
            Ok(Err(ReadError::Io(e))) => {
                ToolOutput::error(format!("read_file: {}: {e}", args.path))
            }
            Ok(Err(ReadError::Message(m))) => {
                ToolOutput::error(format!("read_file: {}: {m}", args.path))
            }
            Err(SandboxError::Fs(picoclaw_fs::FsError::IsDir { .. })) => ToolOutput::error(
                format!("read_file: {} is a directory; use list_dir", args.path),
            ),
            Err(e) => fs_error("read_file", &e),
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

fn read_page(opened: OpenedFile, offset: u64, length: u64) -> Result<Page, ReadError> {
    let OpenedFile {
        mut file,
        len: total,
    } = opened;
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
        let at = match locate(&self.sandbox, "write_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let shown = self.sandbox.display(&at.full());
        let len = args.content.len();
        match Sandbox::io(move || at.dir.write_atomic(&at.path, args.content.as_bytes())).await {
            Ok(()) => ToolOutput::ok(format!("Wrote {len} bytes to {shown}")),
            Err(e) => fs_error("write_file", &e),
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
        let at = match locate(&self.sandbox, "edit_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let shown = self.sandbox.display(&at.full());
        let path = args.path.clone();
        let edited = Sandbox::io(move || {
            let bytes = at.dir.read(&at.path, MAX_EDIT_BYTES)?;
            let Ok(text) = String::from_utf8(bytes) else {
                return Ok(Err(format!(
                    "edit_file: {path} is not UTF-8 text; edit_file changes text files only"
                )));
            };
            match text.matches(args.old_text.as_str()).count() {
                0 => Ok(Err(format!(
                    "edit_file: old_text was not found in {path}. Read the file with read_file \
                     and copy the exact text, whitespace included."
                ))),
                1 => {
                    let updated = text.replacen(args.old_text.as_str(), &args.new_text, 1);
                    at.dir.write_atomic(&at.path, updated.as_bytes())?;
                    Ok(Ok(()))
                }
                n => Ok(Err(format!(
                    "edit_file: old_text appears {n} times in {path}; include more surrounding \
                     text so it matches exactly once."
                ))),
            }
        })
        .await;
        match edited {
            Ok(Ok(())) => ToolOutput::ok(format!("Edited {shown}")),
            Ok(Err(message)) => ToolOutput::error(message),
            Err(e) => fs_error("edit_file", &e),
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
        let at = match locate(&self.sandbox, "append_file", &args.path, Access::Write) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let shown = self.sandbox.display(&at.full());
        let len = args.content.len();
        match Sandbox::io(move || at.dir.append(&at.path, args.content.as_bytes())).await {
            Ok(()) => ToolOutput::ok(format!("Appended {len} bytes to {shown}")),
            Err(e) => fs_error("append_file", &e),
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
        let at = match locate(&self.sandbox, "list_dir", &shown, Access::Read) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let entries = match Sandbox::io(move || at.dir.list(&at.path)).await {
            Ok(entries) => entries,
            Err(e) => return fs_error("list_dir", &e),
        };
        let mut items: Vec<(bool, String)> =
            entries.into_iter().map(|e| (e.is_dir, e.name)).collect();
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
