//! `tools.mcp` of the config, in the original PicoClaw's layout: `enabled`,
//! `call_timeout_seconds`, `max_inline_tools`, and `servers.<name>.{enabled, type, command, args,
//! env, env_file, url, headers, description, allow_insecure}`; and picoclaw's own keys for stdio
//! servers: `cwd`, `writable_paths`, `sandbox`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    Stdio {
        command: String,
        args: Vec<String>,
        /// Variables given to it (besides the minimal environment).
        env: BTreeMap<String, String>,
        /// Its own folder under picoclaw's home (`mcp/<name>`, made 0700): its HOME and caches,
        /// its working folder unless `cwd` names another, and where it may write.
        dir: PathBuf,
        /// The working folder the config names (`cwd`), instead of `dir`.
        cwd: Option<PathBuf>,
        /// Further folders it may write in (`writable_paths`) besides `dir`, `cwd` and the
        /// temporary folder.
        writable: Vec<PathBuf>,
        /// Run it under Landlock (`sandbox`, default true).
        sandbox: bool,
    },
    /// Streamable HTTP.
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// The legacy HTTP+SSE transport: an event stream from `url`, messages POSTed to the
    /// endpoint it names.
    Sse {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

/// One configured server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    pub name: String,
    pub transport: Transport,
    pub description: Option<String>,
}

/// `tools.mcp`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpConfig {
    pub servers: Vec<ServerConfig>,
    pub call_timeout: Duration,
    /// When the MCP tools together are more than this, the model gets `mcp_search` and
    /// `mcp_call` instead of every schema ([`crate::registry_tools`]).
    pub max_inline_tools: usize,
    /// Longest a server may take to start and list its tools.
    pub connect_timeout: Duration,
}

impl Default for McpConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            call_timeout: Duration::from_secs(60),
            max_inline_tools: 16,
            connect_timeout: Duration::from_secs(20),
        }
    }
}

/// Replaces `${VAR}` with the variable's value (empty when unset, with a warning).
pub fn expand_vars(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => tracing::warn!(var = name, "tools.mcp: ${{{name}}} is not set"),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `KEY=VALUE` lines (blank lines and `#` comments skipped, `export ` and quotes allowed).
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
}

/// The folder name of a server's own folder: the name itself when it is a plain file name,
/// otherwise its letters and digits plus a hash of the whole name (so `a/b` and `../x` cannot
/// point elsewhere, and two odd names do not share a folder).
pub fn server_folder_name(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        return name.to_owned();
    }
    // FNV-1a: stable across builds and platforms, which is all a folder name needs.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let clean: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    format!("{clean}-{hash:016x}")
}

/// A path from the config: `~/...` in the user's home (`HOME` from `env`), absolute as it is,
/// anything else relative to picoclaw's home (never the workspace, which the model can write).
fn config_path(raw: &str, home: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let user_home = || env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if raw == "~"
        && let Some(h) = user_home()
    {
        return h;
    }
    if let Some(rest) = raw.strip_prefix("~/")
        && let Some(h) = user_home()
    {
        return h.join(rest);
    }
    let p = PathBuf::from(raw);
    if p.is_absolute() { p } else { home.join(p) }
}

fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl McpConfig {
    /// Reads `tools.mcp`. `None` when absent or `enabled: false`. Servers that are disabled are
    /// skipped; a server whose settings are wrong is an error naming it. `home` is picoclaw's
    /// home (`~/.picoclaw`): each stdio server gets its own folder `home/mcp/<name>`, and a
    /// relative `env_file`, `cwd` or writable path is read against it (never the workspace);
    /// `${VAR}` in env and header values comes from `env`.
    pub fn from_json(
        mcp: &Value,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<McpConfig>, String> {
        if mcp.is_null() || mcp.get("enabled").and_then(Value::as_bool) == Some(false) {
            return Ok(None);
        }
        let mut config = McpConfig::default();
        if let Some(secs) = mcp.get("call_timeout_seconds").and_then(Value::as_u64) {
            config.call_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(n) = mcp.get("max_inline_tools").and_then(Value::as_u64) {
            config.max_inline_tools = n as usize;
        }
        let Some(servers) = mcp.get("servers").and_then(Value::as_object) else {
            return Ok(Some(config));
        };
        for (name, s) in servers {
            if s.get("enabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let text = |k: &str| {
                s.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let map = |k: &str| -> BTreeMap<String, String> {
                s.get(k)
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| {
                                v.as_str().map(|v| (k.clone(), expand_vars(v, env)))
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let kind = text("type").unwrap_or_else(|| {
                if text("url").is_some() {
                    "http".into()
                } else {
                    "stdio".into()
                }
            });
            let transport = match kind.as_str() {
                "stdio" => {
                    let command = text("command").ok_or_else(|| {
                        format!("tools.mcp.servers.{name}: a stdio server needs `command`")
                    })?;
                    let args = s
                        .get("args")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|v| expand_vars(v, env))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut vars = BTreeMap::new();
                    if let Some(file) = text("env_file") {
                        let path = config_path(&file, home, env);
                        let body = std::fs::read_to_string(&path).map_err(|e| {
                            format!(
                                "tools.mcp.servers.{name}: env_file {}: {e} (a relative \
                                 env_file is read from {})",
                                path.display(),
                                home.display()
                            )
                        })?;
                        vars.extend(parse_env_file(&body));
                    }
                    vars.extend(map("env"));
                    let writable = match s.get("writable_paths") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|p| match p.as_str().map(str::trim) {
                                Some(p) if !p.is_empty() => Ok(config_path(p, home, env)),
                                _ => Err(format!(
                                    "tools.mcp.servers.{name}: writable_paths must be a list of \
                                     folders"
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        Some(_) => {
                            return Err(format!(
                                "tools.mcp.servers.{name}: writable_paths must be a list of \
                                 folders"
                            ));
                        }
                    };
                    let sandbox = match s.get("sandbox") {
                        None | Some(Value::Null) => true,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => {
                            return Err(format!(
                                "tools.mcp.servers.{name}: sandbox must be true or false"
                            ));
                        }
                    };
                    Transport::Stdio {
                        command,
                        args,
                        env: vars,
                        dir: home.join("mcp").join(server_folder_name(name)),
                        cwd: text("cwd").map(|c| config_path(&c, home, env)),
                        writable,
                        sandbox,
                    }
                }
                "http" | "sse" | "streamable-http" | "streamable_http" => {
                    let raw = text("url").ok_or_else(|| {
                        format!("tools.mcp.servers.{name}: an HTTP server needs `url`")
                    })?;
                    let url = url::Url::parse(&raw).map_err(|e| {
                        format!("tools.mcp.servers.{name}: url '{raw}' is not a URL: {e}")
                    })?;
                    let insecure_ok =
                        s.get("allow_insecure").and_then(Value::as_bool) == Some(true);
                    if url.scheme() == "http" && !is_loopback_url(&url) && !insecure_ok {
                        return Err(format!(
                            "tools.mcp.servers.{name}: {raw} is plain http to another machine; \
                             use https, or set allow_insecure: true to accept that its tokens \
                             and results travel unencrypted"
                        ));
                    }
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(format!(
                            "tools.mcp.servers.{name}: url '{raw}' must be http(s)"
                        ));
                    }
                    if kind == "sse" {
                        Transport::Sse {
                            url: raw,
                            headers: map("headers"),
                        }
                    } else {
                        Transport::Http {
                            url: raw,
                            headers: map("headers"),
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "tools.mcp.servers.{name}: type '{other}' is not one of stdio, http, sse"
                    ));
                }
            };
            config.servers.push(ServerConfig {
                name: name.clone(),
                transport,
                description: text("description"),
            });
        }
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn the_original_layout_reads_with_inference_and_variables() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".mcp.env"),
            "# tokens\nexport A=1\nB=\"two words\"\n",
        )
        .unwrap();
        let env = |k: &str| (k == "GH_TOKEN").then(|| "ghp_secret".to_owned());
        let cfg = McpConfig::from_json(
            &json!({"call_timeout_seconds": 5, "servers": {
                "fs": {"command": "npx", "args": ["-y", "server-fs", "${HOME_X}"], "env_file": ".mcp.env",
                       "env": {"B": "override"}},
                "gh": {"url": "https://api.example/mcp", "headers": {"Authorization": "Bearer ${GH_TOKEN}"}},
                "off": {"enabled": false, "command": "x"}
            }}),
            home.path(),
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.call_timeout, Duration::from_secs(5));
        assert_eq!(cfg.servers.len(), 2);
        let fs = cfg.servers.iter().find(|s| s.name == "fs").unwrap();
        match &fs.transport {
            Transport::Stdio {
                env,
                args,
                dir,
                cwd,
                sandbox,
                ..
            } => {
                assert_eq!(env["A"], "1");
                assert_eq!(env["B"], "override");
                assert_eq!(args[2], "");
                assert_eq!(dir, &home.path().join("mcp/fs"));
                assert_eq!(cwd, &None);
                assert!(sandbox);
            }
            other => panic!("{other:?}"),
        }
        let gh = cfg.servers.iter().find(|s| s.name == "gh").unwrap();
        assert_eq!(
            gh.transport,
            Transport::Http {
                url: "https://api.example/mcp".into(),
                headers: [("Authorization".to_owned(), "Bearer ghp_secret".to_owned())].into()
            }
        );
    }

    #[test]
    fn a_relative_env_file_is_read_from_picoclaws_home_never_the_workspace() {
        let home = tempfile::tempdir().unwrap();
        let workspace = home.path().join("workspace");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(home.path().join("srv.env"), "WHO=home\n").unwrap();
        // What a hostile model would plant: it can write the workspace, not the home.
        std::fs::write(workspace.join("srv.env"), "WHO=workspace\n").unwrap();
        std::fs::write(workspace.join("only-here.env"), "WHO=workspace\n").unwrap();
        let none = |_: &str| None;
        let read = |file: &str| {
            McpConfig::from_json(
                &json!({"servers": {"s": {"command": "x", "env_file": file}}}),
                home.path(),
                &none,
            )
        };
        let cfg = read("srv.env").unwrap().unwrap();
        let Transport::Stdio { env, .. } = &cfg.servers[0].transport else {
            panic!("not stdio")
        };
        assert_eq!(env["WHO"], "home");
        let err = read("only-here.env").unwrap_err();
        assert!(
            err.contains(&home.path().join("only-here.env").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn stdio_servers_get_their_own_folder_and_may_name_another_working_folder() {
        let home = Path::new("/h/.picoclaw");
        let env = |k: &str| (k == "HOME").then(|| "/h".to_owned());
        let cfg = McpConfig::from_json(
            &json!({"servers": {
                "notes": {"command": "x", "cwd": "~/notes", "writable_paths": ["data", "/srv/out"],
                          "sandbox": false},
                "../escape": {"command": "x"},
                "a b": {"command": "x"},
            }}),
            home,
            &env,
        )
        .unwrap()
        .unwrap();
        let get = |n: &str| {
            let s = cfg.servers.iter().find(|s| s.name == n).unwrap();
            match &s.transport {
                Transport::Stdio {
                    dir,
                    cwd,
                    writable,
                    sandbox,
                    ..
                } => (dir.clone(), cwd.clone(), writable.clone(), *sandbox),
                other => panic!("{other:?}"),
            }
        };
        let (dir, cwd, writable, sandbox) = get("notes");
        assert_eq!(dir, home.join("mcp/notes"));
        assert_eq!(cwd, Some(PathBuf::from("/h/notes")));
        assert_eq!(
            writable,
            [home.join("data"), PathBuf::from("/srv/out")].to_vec()
        );
        assert!(!sandbox);
        for odd in ["../escape", "a b"] {
            let (dir, ..) = get(odd);
            assert_eq!(dir.parent(), Some(home.join("mcp").as_path()), "{odd}");
            assert!(
                dir.file_name().unwrap().to_str().unwrap().contains('-'),
                "{odd}"
            );
        }
        assert_ne!(get("../escape").0, get("a b").0);
        let bad = McpConfig::from_json(
            &json!({"servers": {"s": {"command": "x", "sandbox": "no"}}}),
            home,
            &env,
        );
        assert!(bad.unwrap_err().contains("sandbox must be"));
    }

    #[test]
    fn bad_settings_name_the_server() {
        let home = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        for (cfg, want) in [
            (
                json!({"servers": {"a": {"type": "stdio"}}}),
                "needs `command`",
            ),
            (json!({"servers": {"b": {"type": "http"}}}), "needs `url`"),
            (
                json!({"servers": {"c": {"url": "http://10.0.0.5/mcp"}}}),
                "allow_insecure",
            ),
            (
                json!({"servers": {"d": {"type": "carrier-pigeon", "command": "x"}}}),
                "not one of",
            ),
            (
                json!({"servers": {"e": {"command": "x", "env_file": "missing.env"}}}),
                "env_file",
            ),
        ] {
            let err = McpConfig::from_json(&cfg, home.path(), &none).unwrap_err();
            assert!(err.contains(want), "{cfg}: {err}");
        }
        // Loopback http is fine; allow_insecure lifts the rule knowingly.
        for ok in [
            json!({"servers": {"l": {"url": "http://127.0.0.1:9/mcp"}}}),
            json!({"servers": {"i": {"url": "http://10.0.0.5/mcp", "allow_insecure": true}}}),
        ] {
            assert!(
                McpConfig::from_json(&ok, home.path(), &none).is_ok(),
                "{ok}"
            );
        }
        assert!(
            McpConfig::from_json(&json!({"enabled": false}), home.path(), &none)
                .unwrap()
                .is_none()
        );
    }
}
