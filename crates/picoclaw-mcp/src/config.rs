//! `tools.mcp` of the config, in the original PicoClaw's layout: `enabled`,
//! `call_timeout_seconds`, `max_inline_tools`, and `servers.<name>.{enabled, type, command, args,
//! env, env_file, url, headers, description, allow_insecure}`; and picoclaw's own keys for stdio
//! servers: `cwd`, `writable_paths`, `sandbox`.

use crate::error::ConfigError;
use serde::{Deserialize, Serialize};
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

/// `tools.mcp` as config.json holds it (the config loader decodes it, naming a misspelt key);
/// [`McpConfig::from_section`] checks it and builds the servers' settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct McpSection {
    /// `false` skips every server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inline_tools: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, McpServerSection>,
    /// `picoclaw mcp serve`: which of picoclaw's tools it offers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serve: Option<McpServeSection>,
    /// The original PicoClaw's tool discovery settings (not used by picoclaw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<Value>,
}

/// `tools.mcp.serve`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct McpServeSection {
    /// The tools offered (default `read_file` and `list_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// `tools.mcp.servers.<name>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct McpServerSection {
    /// `false` skips this server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `stdio`, `http` (`streamable-http`) or `sse`; inferred from `url`/`command` when absent.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Accept plain http to another machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_insecure: Option<bool>,
    /// picoclaw's: the stdio server's working folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// picoclaw's: more folders a stdio server may write in (a list; checked when the
    /// servers start, so that the message names the server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writable_paths: Option<Value>,
    /// picoclaw's: run a stdio server under Landlock (true or false, default true; checked
    /// when the servers start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Value>,
    /// The original PicoClaw's per-server discovery switch (not used by picoclaw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<Value>,
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
    /// Reads `tools.mcp` from JSON ([`McpSection`]'s keys; a wrong type is an error naming
    /// the section). See [`Self::from_section`].
    pub fn from_json(
        mcp: &Value,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<McpConfig>, ConfigError> {
        if mcp.is_null() {
            return Ok(None);
        }
        let section: McpSection =
            serde_json::from_value(mcp.clone()).map_err(ConfigError::Section)?;
        Self::from_section(&section, home, env)
    }

    /// Builds from the typed `tools.mcp`. `None` when `enabled: false`. Servers that are
    /// disabled are skipped; a server whose settings are wrong is an error naming it. `home` is
    /// picoclaw's home (`~/.picoclaw`): each stdio server gets its own folder
    /// `home/mcp/<name>`, and a relative `env_file`, `cwd` or writable path is read against it
    /// (never the workspace); `${VAR}` in env and header values comes from `env`.
    pub fn from_section(
        mcp: &McpSection,
        home: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<McpConfig>, ConfigError> {
        if mcp.enabled == Some(false) {
            return Ok(None);
        }
        let mut config = McpConfig::default();
        if let Some(secs) = mcp.call_timeout_seconds {
            config.call_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(n) = mcp.max_inline_tools {
            config.max_inline_tools = usize::try_from(n).unwrap_or(usize::MAX);
        }
        for (name, s) in &mcp.servers {
            if s.enabled == Some(false) {
                continue;
            }
            let text = |v: &Option<String>| {
                v.as_deref()
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let map = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
                m.iter()
                    .map(|(k, v)| (k.clone(), expand_vars(v, env)))
                    .collect()
            };
            let kind = text(&s.kind).unwrap_or_else(|| {
                if text(&s.url).is_some() {
                    "http".into()
                } else {
                    "stdio".into()
                }
            });
            let transport = match kind.as_str() {
                "stdio" => {
                    let command = text(&s.command).ok_or_else(|| {
                        ConfigError::server(name, "a stdio server needs `command`")
                    })?;
                    let args = s.args.iter().map(|v| expand_vars(v, env)).collect();
                    let mut vars = BTreeMap::new();
                    if let Some(file) = text(&s.env_file) {
                        let path = config_path(&file, home, env);
                        let body = std::fs::read_to_string(&path).map_err(|e| {
                            ConfigError::server(
                                name,
                                format!(
                                    "env_file {}: {e} (a relative \
                                 env_file is read from {})",
                                    path.display(),
                                    home.display()
                                ),
                            )
                        })?;
                        vars.extend(parse_env_file(&body));
                    }
                    vars.extend(map(&s.env));
                    let writable = match &s.writable_paths {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|p| match p.as_str().map(str::trim) {
                                Some(p) if !p.is_empty() => Ok(config_path(p, home, env)),
                                _ => Err(ConfigError::server(
                                    name,
                                    "writable_paths must be a list of folders",
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        Some(_) => {
                            return Err(ConfigError::server(
                                name,
                                "writable_paths must be a list of folders",
                            ));
                        }
                    };
                    let sandbox = match &s.sandbox {
                        None | Some(Value::Null) => true,
                        Some(Value::Bool(b)) => *b,
                        Some(_) => {
                            return Err(ConfigError::server(name, "sandbox must be true or false"));
                        }
                    };
                    Transport::Stdio {
                        command,
                        args,
                        env: vars,
                        dir: home.join("mcp").join(server_folder_name(name)),
                        cwd: text(&s.cwd).map(|c| config_path(&c, home, env)),
                        writable,
                        sandbox,
                    }
                }
                "http" | "sse" | "streamable-http" | "streamable_http" => {
                    let raw = text(&s.url)
                        .ok_or_else(|| ConfigError::server(name, "an HTTP server needs `url`"))?;
                    let url = url::Url::parse(&raw).map_err(|e| {
                        ConfigError::server(name, format!("url '{raw}' is not a URL: {e}"))
                    })?;
                    let insecure_ok = s.allow_insecure == Some(true);
                    if url.scheme() == "http" && !is_loopback_url(&url) && !insecure_ok {
                        return Err(ConfigError::server(
                            name,
                            format!(
                                "{raw} is plain http to another machine; \
                             use https, or set allow_insecure: true to accept that its tokens \
                             and results travel unencrypted"
                            ),
                        ));
                    }
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(ConfigError::server(
                            name,
                            format!("url '{raw}' must be http(s)"),
                        ));
                    }
                    if kind == "sse" {
                        Transport::Sse {
                            url: raw,
                            headers: map(&s.headers),
                        }
                    } else {
                        Transport::Http {
                            url: raw,
                            headers: map(&s.headers),
                        }
                    }
                }
                other => {
                    return Err(ConfigError::server(
                        name,
                        format!("type '{other}' is not one of stdio, http, sse"),
                    ));
                }
            };
            config.servers.push(ServerConfig {
                name: name.clone(),
                transport,
                description: text(&s.description),
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
        let err = read("only-here.env").unwrap_err().to_string();
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
        assert!(bad.unwrap_err().to_string().contains("sandbox must be"));
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
            // The server's name travels with the error, and leads its message.
            let server = cfg["servers"].as_object().unwrap().keys().next().unwrap();
            assert!(
                matches!(&err, ConfigError::Server { server: s, .. } if s == server),
                "{err:?}"
            );
            let err = err.to_string();
            assert!(
                err.starts_with(&format!("tools.mcp.servers.{server}: ")),
                "{err}"
            );
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
