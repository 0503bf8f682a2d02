//! `tools.mcp` of the config, in the original PicoClaw's layout: `enabled`,
//! `call_timeout_seconds`, `max_inline_tools`, and `servers.<name>.{enabled, type, command, args,
//! env, env_file, url, headers, description, allow_insecure}`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
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
    /// skipped; a server whose settings are wrong is an error naming it. `env_file` paths are
    /// relative to `workspace`; `${VAR}` in env and header values comes from `env`.
    pub fn from_json(
        mcp: &Value,
        workspace: &Path,
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
                        let path = workspace.join(&file);
                        let body = std::fs::read_to_string(&path).map_err(|e| {
                            format!("tools.mcp.servers.{name}: env_file {}: {e}", path.display())
                        })?;
                        vars.extend(parse_env_file(&body));
                    }
                    vars.extend(map("env"));
                    Transport::Stdio {
                        command,
                        args,
                        env: vars,
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
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(
            ws.path().join(".mcp.env"),
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
            ws.path(),
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.call_timeout, Duration::from_secs(5));
        assert_eq!(cfg.servers.len(), 2);
        let fs = cfg.servers.iter().find(|s| s.name == "fs").unwrap();
        match &fs.transport {
            Transport::Stdio { env, args, .. } => {
                assert_eq!(env["A"], "1");
                assert_eq!(env["B"], "override");
                assert_eq!(args[2], "");
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
    fn bad_settings_name_the_server() {
        let ws = tempfile::tempdir().unwrap();
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
            let err = McpConfig::from_json(&cfg, ws.path(), &none).unwrap_err();
            assert!(err.contains(want), "{cfg}: {err}");
        }
        // Loopback http is fine; allow_insecure lifts the rule knowingly.
        for ok in [
            json!({"servers": {"l": {"url": "http://127.0.0.1:9/mcp"}}}),
            json!({"servers": {"i": {"url": "http://10.0.0.5/mcp", "allow_insecure": true}}}),
        ] {
            assert!(McpConfig::from_json(&ok, ws.path(), &none).is_ok(), "{ok}");
        }
        assert!(
            McpConfig::from_json(&json!({"enabled": false}), ws.path(), &none)
                .unwrap()
                .is_none()
        );
    }
}
