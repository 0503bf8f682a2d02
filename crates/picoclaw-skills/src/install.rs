//! `picoclaw skills install SOURCE`: from a local folder, a git repository (through the system
//! `git`), the original's `owner/repo/path` shorthand (resolved against a configurable git
//! host), or an archive URL (`.tar.gz`, `.tgz`, `.zip`), extracted without trusting its paths.
//! The skill is validated in a staging folder next to its destination and moved into place only
//! when it loads.

use crate::error::InstallError;
use crate::skill::{Skill, Source};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// Largest archive downloaded.
pub const MAX_ARCHIVE_BYTES: u64 = 20 * 1024 * 1024;
/// Most bytes a skill may unpack or copy to.
pub const MAX_SKILL_BYTES: u64 = 50 * 1024 * 1024;
/// Most files in one skill.
pub(crate) const MAX_SKILL_FILES: usize = 2000;

/// How to install.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InstallOptions {
    /// Base of the `owner/repo/path` shorthand (default `https://github.com`).
    pub git_host: String,
    /// Replace a skill of the same name.
    pub force: bool,
    pub timeout: Duration,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            git_host: "https://github.com".into(),
            force: false,
            timeout: Duration::from_secs(120),
        }
    }
}

impl InstallOptions {
    pub fn git_host(mut self, host: impl Into<String>) -> Self {
        self.git_host = host.into();
        self
    }

    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }
}

/// What a SOURCE argument is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Folder(PathBuf),
    Archive(String),
    /// A repository URL and a folder inside it (empty: the top).
    Git {
        url: String,
        subdir: String,
    },
}

/// Reads a SOURCE argument: an existing folder; an http(s) URL ending in `.tar.gz`, `.tgz` or
/// `.zip`; a git URL (`https://...`, `git@...`, `ssh://`, `file://`, optionally `#sub/dir`); or
/// `owner/repo[/path]` on `git_host`.
pub fn classify(source: &str, git_host: &str) -> Result<SourceKind, InstallError> {
    let source = source.trim();
    if source.is_empty() {
        return Err(InstallError::Source("no source given".into()));
    }
    let path = Path::new(source);
    if path.is_dir() {
        return Ok(SourceKind::Folder(path.to_path_buf()));
    }
    let lower = source.to_ascii_lowercase();
    let is_url = lower.starts_with("http://") || lower.starts_with("https://");
    let without_query = lower.split(['?', '#']).next().unwrap_or_default();
    if is_url
        && (without_query.ends_with(".tar.gz")
            || without_query.ends_with(".tgz")
            || without_query.ends_with(".zip"))
    {
        return Ok(SourceKind::Archive(source.to_owned()));
    }
    if is_url
        || lower.starts_with("git@")
        || lower.starts_with("ssh://")
        || lower.starts_with("file://")
        || lower.starts_with("git://")
    {
        let (url, subdir) = source.split_once('#').unwrap_or((source, ""));
        return Ok(SourceKind::Git {
            url: url.to_owned(),
            subdir: subdir.trim_matches('/').to_owned(),
        });
    }
    if source.starts_with('/') || source.starts_with('.') || source.starts_with('~') {
        return Err(InstallError::Source(format!("{source} is not a folder")));
    }
    let parts: Vec<&str> = source.split('/').filter(|p| !p.is_empty()).collect();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if parts.len() >= 2 && parts.iter().all(|p| part_ok(p)) {
        return Ok(SourceKind::Git {
            url: format!(
                "{}/{}/{}",
                git_host.trim_end_matches('/'),
                parts[0],
                parts[1]
            ),
            subdir: parts[2..].join("/"),
        });
    }
    Err(InstallError::Source(format!(
        "cannot tell what '{source}' is: give a folder, a git URL, an archive URL (.tar.gz, \
         .zip), or owner/repo/path"
    )))
}

/// Installs the skill at `source` into `dest_root` (`~/.picoclaw/skills` or the workspace's
/// `skills/`) and returns it as loaded from its new place.
pub async fn install(
    source: &str,
    dest_root: &Path,
    options: &InstallOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Skill, InstallError> {
    let kind = classify(source, &options.git_host)?;
    std::fs::create_dir_all(dest_root).map_err(|e| {
        InstallError::Destination(format!("cannot create {}: {e}", dest_root.display()))
    })?;
    // Everything happens in a scratch folder beside the destination, so the final move is a
    // rename on one file system, and a failure leaves nothing behind.
    let scratch = tempdir_in(dest_root).map_err(InstallError::Destination)?;
    let result = fetch_and_place(&kind, scratch.path(), dest_root, options, env).await;
    drop(scratch);
    result
}

async fn fetch_and_place(
    kind: &SourceKind,
    scratch: &Path,
    dest_root: &Path,
    options: &InstallOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Skill, InstallError> {
    let fetched = scratch.join("fetched");
    let skill_src = match kind {
        SourceKind::Folder(dir) => dir.clone(),
        SourceKind::Git { url, subdir } => {
            clone(url, &fetched, options.timeout).await?;
            let dir = if subdir.is_empty() {
                fetched.clone()
            } else {
                let sub = safe_relative(subdir).ok_or_else(|| {
                    InstallError::Source(format!(
                        "'{subdir}' is not a folder inside the repository"
                    ))
                })?;
                fetched.join(sub)
            };
            if !dir.is_dir() {
                return Err(InstallError::Fetch(format!(
                    "the repository {url} has no folder '{subdir}'"
                )));
            }
            dir
        }
        SourceKind::Archive(url) => {
            let bytes = download(url, options.timeout)
                .await
                .map_err(InstallError::Fetch)?;
            std::fs::create_dir_all(&fetched)
                .map_err(|e| InstallError::Destination(e.to_string()))?;
            let lower = url.to_ascii_lowercase();
            if lower
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .ends_with(".zip")
            {
                extract_zip(&bytes, &fetched).map_err(InstallError::Contents)?;
            } else {
                extract_tar_gz(&bytes, &fetched).map_err(InstallError::Contents)?;
            }
            skill_root(&fetched).map_err(InstallError::Contents)?
        }
    };
    if !skill_src.join("SKILL.md").is_file() && !skill_src.join("manifest.json").is_file() {
        return Err(InstallError::NotASkill {
            source_name: display_source(kind),
        });
    }
    let staged = scratch.join("staged");
    let mut budget = (0u64, 0usize);
    copy_tree(&skill_src, &staged, &mut budget).map_err(InstallError::Contents)?;
    let invalid = |error| InstallError::Invalid {
        source_name: display_source(kind),
        error,
    };
    let skill = Skill::load(&staged, Source::Global, env).map_err(invalid)?;
    let dest = dest_root.join(&skill.name);
    if dest.exists() {
        if !options.force {
            return Err(InstallError::AlreadyInstalled {
                name: skill.name,
                path: dest,
            });
        }
        std::fs::remove_dir_all(&dest).map_err(|e| {
            InstallError::Destination(format!("cannot replace {}: {e}", dest.display()))
        })?;
    }
    std::fs::rename(&staged, &dest).map_err(|e| {
        InstallError::Destination(format!("cannot move the skill to {}: {e}", dest.display()))
    })?;
    Skill::load(&dest, Source::Global, env).map_err(invalid)
}

fn display_source(kind: &SourceKind) -> String {
    match kind {
        SourceKind::Folder(d) => d.display().to_string(),
        SourceKind::Archive(u) => u.clone(),
        SourceKind::Git { url, subdir } if subdir.is_empty() => url.clone(),
        SourceKind::Git { url, subdir } => format!("{url} ({subdir})"),
    }
}

/// A scratch folder inside `parent`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(parent: &Path) -> Result<Scratch, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = parent.join(format!(".install-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(Scratch(dir))
}

/// `path` as relative components only (no `..`, no root), or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

async fn clone(url: &str, into: &Path, timeout: Duration) -> Result<(), InstallError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["clone", "--depth", "1", "--quiet", "--", url])
        .arg(into)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(InstallError::Fetch(format!(
                "git clone {url} took longer than {} s",
                timeout.as_secs()
            )));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InstallError::GitMissing);
        }
        Ok(Err(e)) => return Err(InstallError::Fetch(format!("cannot run git: {e}"))),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(InstallError::Fetch(format!(
            "git clone {url} failed: {}",
            err.trim()
        )));
    }
    Ok(())
}

async fn download(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let client = picoclaw_http::client_builder()
        .map_err(|e| format!("cannot download {url}: {e}"))?
        .timeout(timeout)
        .user_agent(concat!("picoclaw/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "downloading {url} failed: HTTP {}",
            response.status()
        ));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ARCHIVE_BYTES)
    {
        return Err(too_big(url));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("downloading {url} failed: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
            return Err(too_big(url));
        }
    }
    Ok(bytes)
}

fn too_big(url: &str) -> String {
    format!(
        "{url} is larger than {} MiB; a skill archive must be smaller",
        MAX_ARCHIVE_BYTES / (1024 * 1024)
    )
}

fn hostile(entry: &str) -> String {
    format!(
        "the archive is unsafe: the entry '{entry}' points outside the skill folder; nothing was \
         installed"
    )
}

fn count(budget: &mut (u64, usize), size: u64) -> Result<(), String> {
    budget.0 += size;
    budget.1 += 1;
    if budget.0 > MAX_SKILL_BYTES {
        return Err(format!(
            "the skill unpacks to more than {} MiB; nothing was installed",
            MAX_SKILL_BYTES / (1024 * 1024)
        ));
    }
    if budget.1 > MAX_SKILL_FILES {
        return Err(format!(
            "the skill has more than {MAX_SKILL_FILES} files; nothing was installed"
        ));
    }
    Ok(())
}

/// Unpacks a `.tar.gz` into `into`: regular files and folders only, every path relative and
/// inside; links, devices and `..` entries refuse the whole archive.
pub(crate) fn extract_tar_gz(bytes: &[u8], into: &Path) -> Result<(), String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut budget = (0u64, 0usize);
    let entries = archive
        .entries()
        .map_err(|e| format!("not a .tar.gz archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the archive is damaged: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("the archive is damaged: {e}"))?
            .to_string_lossy()
            .into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
        {
            continue;
        }
        let Some(rel) = safe_relative(&raw) else {
            if raw.trim_matches('/') == "." || raw.is_empty() {
                continue;
            }
            return Err(hostile(&raw));
        };
        let target = into.join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
        } else if kind.is_file() {
            count(&mut budget, entry.header().size().unwrap_or(0))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_SKILL_BYTES + 1)
                .read_to_end(&mut data)
                .map_err(|e| format!("the archive is damaged: {e}"))?;
            write_file(&target, &data, entry.header().mode().unwrap_or(0o644))?;
        } else {
            return Err(format!(
                "the archive contains '{raw}', which is a link or a special file; skills may \
                 only contain files and folders; nothing was installed"
            ));
        }
    }
    Ok(())
}

/// Unpacks a `.zip` into `into`, with the same rules as [`extract_tar_gz`].
pub(crate) fn extract_zip(bytes: &[u8], into: &Path) -> Result<(), String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a .zip archive: {e}"))?;
    let mut budget = (0u64, 0usize);
    for i in 0..archive.len() {
        let mut file = archive
            .by_index(i)
            .map_err(|e| format!("the archive is damaged: {e}"))?;
        let raw = file
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| "(unreadable name)".to_owned());
        let Some(rel) = file
            .enclosed_name()
            .and_then(|p| safe_relative(&p.to_string_lossy()))
        else {
            return Err(hostile(&raw));
        };
        if file.is_symlink() {
            return Err(format!(
                "the archive contains the link '{raw}'; skills may only contain files and \
                 folders; nothing was installed"
            ));
        }
        let target = into.join(&rel);
        if file.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
            continue;
        }
        count(&mut budget, file.size())?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let mut data = Vec::new();
        (&mut file)
            .take(MAX_SKILL_BYTES + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("the archive is damaged: {e}"))?;
        write_file(&target, &data, file.unix_mode().unwrap_or(0o644))?;
    }
    Ok(())
}

fn write_file(target: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(target, data).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    // Keep the executable bit (entry scripts), nothing else: no set-uid, no world-writable.
    let mode = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode))
        .map_err(|e| e.to_string())
}

/// The folder of an unpacked archive that holds the skill: the top, or its only folder (how
/// GitHub archives and `tar czf skill.tar.gz skill/` come).
fn skill_root(dir: &Path) -> Result<PathBuf, String> {
    if dir.join("SKILL.md").is_file() || dir.join("manifest.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    if let [only] = entries.as_slice()
        && only.is_dir()
    {
        return Ok(only.clone());
    }
    Err("the archive has no SKILL.md at its top or in its only folder".into())
}

/// Copies a skill folder: files and folders only (`.git` left out), within the size caps. A
/// symlink is refused: it could point anywhere.
fn copy_tree(from: &Path, to: &Path, budget: &mut (u64, usize)) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| e.to_string())?;
        let target = to.join(&name);
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{} is a symbolic link; skills may only contain files and folders",
                path.display()
            ));
        } else if meta.is_dir() {
            copy_tree(&path, &target, budget)?;
        } else if meta.is_file() {
            count(budget, meta.len())?;
            std::fs::copy(&path, &target)
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sources_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let host = "https://git.example";
        assert_eq!(
            classify(dir.path().to_str().unwrap(), host).unwrap(),
            SourceKind::Folder(dir.path().to_path_buf())
        );
        assert_eq!(
            classify("https://x.example/skill.tar.gz?x=1", host).unwrap(),
            SourceKind::Archive("https://x.example/skill.tar.gz?x=1".into())
        );
        assert_eq!(
            classify("https://x.example/s.zip", host).unwrap(),
            SourceKind::Archive("https://x.example/s.zip".into())
        );
        assert_eq!(
            classify("https://github.com/o/r.git#skills/pdf", host).unwrap(),
            SourceKind::Git {
                url: "https://github.com/o/r.git".into(),
                subdir: "skills/pdf".into()
            }
        );
        assert_eq!(
            classify("sipeed/picoclaw/workspace/skills/weather", host).unwrap(),
            SourceKind::Git {
                url: "https://git.example/sipeed/picoclaw".into(),
                subdir: "workspace/skills/weather".into()
            }
        );
        for bad in ["", "/no/such/dir", "./nope", "one", "a/../b", "a b/c"] {
            assert!(classify(bad, host).is_err(), "{bad}");
        }
    }
}
