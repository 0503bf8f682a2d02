//! The gateway's API key. The gateway never runs without one: `gateway.api_key` (or
//! `PICOCLAW_GATEWAY_API_KEY`) when set, else the key in `gateway.key` in picoclaw's home
//! (`~/.picoclaw`, or `$PICOCLAW_HOME`), made of 32 random bytes at the first start. The file is
//! created with mode 0600 (never a wider mode narrowed afterwards) and appears complete or not
//! at all; it lives outside the workspace, which the agent's tools can write.

use picoclaw_api::Secret;
use picoclaw_config::{Config, Paths};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bytes of randomness in a created key (written as 64 hex digits).
const KEY_BYTES: usize = 32;
/// Shortest key accepted from the key file: anything shorter was not made by us and is too weak.
const MIN_FILE_KEY_CHARS: usize = 16;

/// Where the key in use comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// `gateway.api_key` in the config, or `PICOCLAW_GATEWAY_API_KEY`.
    Config,
    /// The key file; `created` when this start made it.
    File { path: PathBuf, created: bool },
}

/// The key clients must send as `Authorization: Bearer <key>`, and where it came from.
#[derive(Clone, Debug)]
pub struct GatewayKey {
    pub key: Secret<String>,
    pub source: KeySource,
}

/// Why no key could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error(
        "cannot create the gateway key file {}: {source}; make picoclaw's home writable, or set \
         gateway.api_key (or PICOCLAW_GATEWAY_API_KEY)",
        path.display()
    )]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read the gateway key file {}: {source}; fix its owner or permissions (chmod 600), \
         or set gateway.api_key (or PICOCLAW_GATEWAY_API_KEY)",
        path.display()
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the gateway key file {} holds no usable key (empty, or shorter than {MIN_FILE_KEY_CHARS} \
         characters): delete it and start the gateway again to create a new one, or set \
         gateway.api_key",
        path.display()
    )]
    Unusable { path: PathBuf },
    #[error("cannot draw random bytes for the gateway key: {0}")]
    Random(#[source] getrandom::Error),
}

/// The key the gateway requires: the configured one, else the key file's, creating the file
/// when there is none yet.
pub fn gateway_key(config: &Config, paths: &Paths) -> Result<GatewayKey, KeyError> {
    if let Some(key) = configured(config) {
        return Ok(GatewayKey {
            key,
            source: KeySource::Config,
        });
    }
    let path = paths.gateway_key_file();
    if let Some(key) = read_key_file(&path)? {
        return Ok(GatewayKey {
            key,
            source: KeySource::File {
                path,
                created: false,
            },
        });
    }
    let (key, created) = create_key_file(&path)?;
    Ok(GatewayKey {
        key,
        source: KeySource::File { path, created },
    })
}

fn configured(config: &Config) -> Option<Secret<String>> {
    let key = config.gateway.api_key.trim();
    (!key.is_empty()).then(|| Secret::new(key.to_owned()))
}

/// The key in `path`, or None when there is no such file.
fn read_key_file(path: &Path) -> Result<Option<Secret<String>>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let key = text.trim();
    if key.chars().count() < MIN_FILE_KEY_CHARS || key.contains(char::is_whitespace) {
        return Err(KeyError::Unusable {
            path: path.to_path_buf(),
        });
    }
    warn_if_shared(path);
    Ok(Some(Secret::new(key.to_owned())))
}

/// A key file others can read (written by hand, or copied) is worth a warning.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{} can be read by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Creates the key file with a new key. The key is written to a private temporary file first
/// and then linked into place, so the file appears whole or not at all, and a concurrent first
/// start (another gateway on the same home) does not clobber the key the other one made: the
/// second start uses the first one's key. Returns the key and whether this call created it.
fn create_key_file(path: &Path) -> Result<(Secret<String>, bool), KeyError> {
    let create_err = |source| KeyError::Create {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    make_private_dir(dir).map_err(create_err)?;
    let key = random_key()?;
    let tmp = dir.join(format!(
        ".gateway.key.{}.{}.tmp",
        std::process::id(),
        picoclaw_state::now_ms()
    ));
    let written = write_private(&tmp, &key);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(create_err(e));
    }
    let placed = match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // Filesystems without hard links (some network mounts): a rename is still atomic.
        Err(_) => std::fs::rename(&tmp, path).map(|()| true),
    };
    let _ = std::fs::remove_file(&tmp);
    match placed {
        Ok(true) => Ok((Secret::new(key), true)),
        Ok(false) => match read_key_file(path)? {
            Some(theirs) => Ok((theirs, false)),
            None => Err(KeyError::Unusable {
                path: path.to_path_buf(),
            }),
        },
        Err(e) => Err(create_err(e)),
    }
}

/// 32 random bytes as 64 lowercase hex digits.
fn random_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates `path` exclusively with mode 0600 (from the first moment it exists) and writes
/// `key` and a newline into it.
fn write_private(path: &Path, key: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{key}\n").as_bytes())?;
    file.sync_all()
}

/// Picoclaw's home, created 0700 when it does not exist yet.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// For `picoclaw status`: where the gateway's key is, how to read it, and the key masked.
pub fn describe(config: &Config, paths: &Paths) -> String {
    if let Some(key) = configured(config) {
        return format!(
            "set by gateway.api_key or PICOCLAW_GATEWAY_API_KEY ({})",
            key.masked()
        );
    }
    let path = paths.gateway_key_file();
    let read_it = format!("read it with `{}`", cat_command(&path));
    match read_key_file(&path) {
        Ok(Some(key)) => format!("{} ({}); {read_it}", path.display(), key.masked()),
        Ok(None) => format!(
            "{} (not created yet: the gateway makes it at its first start); {read_it}",
            path.display()
        ),
        Err(e) => e.to_string(),
    }
}

/// The command that prints the key file: `cat <path>`.
pub fn cat_command(path: &Path) -> String {
    format!("cat {}", shell_quoted(path))
}

/// `path` as a shell word (quoted only when it needs to be).
fn shell_quoted(path: &Path) -> String {
    picoclaw_config::shell_quote(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(home: &Path) -> Paths {
        Paths::new(home, home.join("config.json"))
    }

    #[test]
    fn a_configured_key_wins_and_no_file_is_made() {
        let home = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.gateway.api_key = " configured-key-0123456789 ".into();
        let key = gateway_key(&config, &paths(home.path())).unwrap();
        assert_eq!(key.key.expose(), "configured-key-0123456789");
        assert_eq!(key.source, KeySource::Config);
        assert!(!home.path().join("gateway.key").exists());
        let shown = describe(&config, &paths(home.path()));
        assert!(shown.contains("gateway.api_key"), "{shown}");
        assert!(!shown.contains("configured-key-0123456789"), "{shown}");
    }

    #[test]
    fn the_key_file_is_created_private_then_reused() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path().join("nested-home");
        let config = Config::default();
        let first = gateway_key(&config, &paths(&home)).unwrap();
        let file = home.join("gateway.key");
        assert_eq!(
            first.source,
            KeySource::File {
                path: file.clone(),
                created: true
            }
        );
        let key = first.key.expose();
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["gateway.key"]);
        let again = gateway_key(&config, &paths(&home)).unwrap();
        assert_eq!(again.key.expose(), key);
        assert_eq!(
            again.source,
            KeySource::File {
                path: file.clone(),
                created: false
            }
        );
        let other = gateway_key(&config, &paths(&home.join("elsewhere"))).unwrap();
        assert_ne!(
            other.key.expose(),
            key,
            "every home gets its own random key"
        );

        let shown = describe(&config, &paths(&home));
        assert!(
            shown.contains(&format!("cat {}", file.display())),
            "{shown}"
        );
        assert!(!shown.contains(key.as_str()), "{shown}");
        assert!(shown.contains(&key[..4]), "masked, not hidden: {shown}");
    }

    #[test]
    fn a_file_created_meanwhile_is_used_not_clobbered() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("gateway.key");
        std::fs::write(&file, "theirs-0123456789abcdef\n").unwrap();
        let (key, created) = create_key_file(&file).unwrap();
        assert!(!created);
        assert_eq!(key.expose(), "theirs-0123456789abcdef");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "theirs-0123456789abcdef\n"
        );
    }

    #[test]
    fn an_unusable_key_file_is_an_error_that_says_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join("gateway.key"), "tiny1\n").unwrap();
        let err = gateway_key(&Config::default(), &paths(home.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("delete it"), "{err}");
        assert!(!err.contains("tiny1"), "the content is not shown: {err}");
    }

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(
            shell_quoted(Path::new("/home/ada/.picoclaw/gateway.key")),
            "/home/ada/.picoclaw/gateway.key"
        );
        assert_eq!(
            shell_quoted(Path::new("/home/a da/it's")),
            "'/home/a da/it'\\''s'"
        );
    }
}
