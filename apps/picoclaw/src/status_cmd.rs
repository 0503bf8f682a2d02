//! `picoclaw status`: where things are and what model/provider would be used. Keys are masked
//! (the gateway's too: status says which file holds it and how to read it).

use crate::wiring::{self, SetupError};
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) fn run(
    config: Option<PathBuf>,
    extensions: &picoclaw_gateway::Extensions,
) -> anyhow::Result<ExitCode> {
    let paths = match wiring::paths(config) {
        Ok(p) => p,
        Err(SetupError::Config(msg)) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let exists = |p: &std::path::Path| if p.exists() { "" } else { " (missing)" };
    println!("picoclaw {}", env!("CARGO_PKG_VERSION"));
    println!(
        "config:     {}{}",
        paths.config_file().display(),
        exists(paths.config_file())
    );
    let loaded = match wiring::load(&paths) {
        Ok(l) => l,
        Err(SetupError::Config(msg)) => {
            println!("config error: {msg}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let config = &loaded.config.clone().with_registry(extensions.providers());
    #[cfg(feature = "gateway")]
    for warning in picoclaw_gateway::unknown_channel_sections(config, extensions.channels()) {
        eprintln!("warning: {warning}");
    }
    let workspace = config.workspace_path(&paths);
    println!("workspace:  {}{}", workspace.display(), exists(&workspace));
    println!(
        "sandbox:    {}",
        if config.agents.defaults.restrict_to_workspace {
            "file tools confined to the workspace"
        } else {
            "OFF (restrict_to_workspace = false)"
        }
    );
    println!("exec:       {}", exec_isolation(config));
    if config.state.url.trim().is_empty() {
        println!(
            "state:      {}{}",
            paths.state_db().display(),
            exists(&paths.state_db())
        );
    } else {
        println!(
            "state:      {}",
            crate::wiring::state_location(config, &paths)
        );
    }
    let env = config.env_vars();
    match config.resolve_model(&env) {
        Ok(resolved) => {
            println!("provider:   {}", resolved.provider);
            println!("model:      {}", resolved.model);
            println!("api base:   {}", resolved.api_base);
            let source = resolved
                .key_source
                .as_deref()
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default();
            println!(
                "api key:    {}{source}",
                resolved
                    .api_key
                    .as_ref()
                    .map(|k| k.masked())
                    .unwrap_or_else(|| "(none)".to_owned())
            );
        }
        Err(err) => println!("model:      not usable: {err}"),
    }
    for line in credential_lines(config) {
        println!("{line}");
    }
    let env_files = config.environment().files().to_vec();
    if !env_files.is_empty() {
        let names: Vec<String> = env_files.iter().map(|p| p.display().to_string()).collect();
        println!(".env:       {}", names.join(", "));
    }
    if !config.agents.list.is_empty() {
        for a in config.agent_infos() {
            let routed = crate::agents_cmd::bindings_of(config, &a.id);
            println!(
                "agent:      {}{} ← {}",
                a.id,
                if a.default { " (default)" } else { "" },
                if routed.is_empty() {
                    if a.default {
                        "every chat no binding matches".to_owned()
                    } else {
                        "no binding (API: model agent:<id>)".to_owned()
                    }
                } else {
                    routed.join("; ")
                }
            );
        }
    }
    #[cfg(feature = "gateway")]
    {
        let (gateway, ready) = gateway_status(&config.gateway);
        println!("gateway:    {gateway}");
        println!(
            "gateway key: {}",
            picoclaw_gateway::key::describe(config, &paths)
        );
        println!(
            "channels:   {}",
            channels_status(config, extensions.channels(), ready.as_ref())
        );
    }
    #[cfg(not(feature = "gateway"))]
    println!(
        "gateway:    not in this build (built without the `gateway` feature: no \
         `picoclaw gateway`, no channels)"
    );
    Ok(ExitCode::SUCCESS)
}

/// The channels' secrets that are set, masked, each with where it came from (the config file
/// unless the environment, a `.env` file or Key Vault gave it).
fn credential_lines(config: &picoclaw_config::Config) -> Vec<String> {
    let file = config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "config".to_owned());
    let ch = &config.channels;
    let candidates: [(&str, Option<&str>); 6] = [
        (
            "channels.telegram.token",
            ch.telegram.as_ref().and_then(|t| t.token.as_deref()),
        ),
        (
            "channels.discord.token",
            ch.discord.as_ref().and_then(|d| d.token.as_deref()),
        ),
        (
            "channels.slack.bot_token",
            ch.slack.as_ref().and_then(|s| s.bot_token.as_deref()),
        ),
        (
            "channels.slack.app_token",
            ch.slack.as_ref().and_then(|s| s.app_token.as_deref()),
        ),
        (
            "channels.slack.signing_secret",
            ch.slack.as_ref().and_then(|s| s.signing_secret.as_deref()),
        ),
        (
            "channels.pico.token",
            ch.pico.as_ref().and_then(|p| p.token.as_deref()),
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(key, value)| {
            let value = value.map(str::trim).filter(|v| !v.is_empty())?;
            let from = config
                .origins
                .get(key)
                .cloned()
                .unwrap_or_else(|| file.clone());
            Some(format!(
                "credential: {key} = {} (from {from})",
                picoclaw_api::Secret::new(value.to_owned()).masked()
            ))
        })
        .collect()
}

/// The enabled channels: their state from a running gateway's `/ready`, or whether this build
/// has them.
#[cfg(feature = "gateway")]
fn channels_status(
    config: &picoclaw_config::Config,
    channels: &picoclaw_channels::ChannelRegistry,
    ready: Option<&serde_json::Value>,
) -> String {
    let mut enabled = config.channels.enabled();
    enabled.sort_unstable();
    if enabled.is_empty() {
        return "none enabled (docs/channels/)".to_owned();
    }
    enabled
        .iter()
        .map(|name| {
            let built = channels.contains(name);
            let state = ready
                .and_then(|r| r["channels"][*name].as_str())
                .map(str::to_owned);
            match (built, state) {
                (false, _) => format!("{name} (not in this build)"),
                (true, Some(state)) => format!("{name} ({state})"),
                (true, None) if ready.is_some() => {
                    format!("{name} (not started: see the gateway log)")
                }
                (true, None) => name.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `exec` commands are confined on this machine with this config.
fn exec_isolation(config: &picoclaw_config::Config) -> String {
    let exec = &config.tools.exec;
    if !exec.enabled {
        return "disabled (tools.exec.enabled = false)".to_owned();
    }
    if !exec.landlock {
        return "UNCONFINED: deny-list only; Landlock off (tools.exec.landlock = false); \
                commands can read and write everything picoclaw can"
            .to_owned();
    }
    match picoclaw_tools::landlock_abi() {
        Ok(abi) => {
            let reach = if config.agents.defaults.restrict_to_workspace {
                let mut writes = format!("the workspace and {}", std::env::temp_dir().display());
                for p in &exec.writable_paths {
                    writes.push_str(", ");
                    writes.push_str(p);
                }
                format!(
                    "commands read the system and the workspace{}, write only in {writes}",
                    if exec.readable_paths.is_empty() {
                        String::new()
                    } else {
                        format!(" and {}", exec.readable_paths.join(", "))
                    }
                )
            } else {
                "commands reach the whole file system (restrict_to_workspace = false)".to_owned()
            };
            format!(
                "Landlock active (kernel ABI {abi}): {reach}; picoclaw's home and your home \
                 closed{}{}",
                if exec.network {
                    "; network open (tools.exec.network)"
                } else {
                    "; no outbound TCP"
                },
                if abi >= 6 {
                    "; no signals to picoclaw"
                } else {
                    ""
                }
            )
        }
        Err(why) if exec.require_sandbox => {
            format!("refused: Landlock not available ({why}) and tools.exec.require_sandbox is on")
        }
        Err(why) => format!(
            "UNCONFINED: deny-list only; Landlock not available: {why}. Commands can read \
             picoclaw's config and keys; set tools.exec.require_sandbox to refuse them"
        ),
    }
}

/// Whether a gateway answers on the configured address, how ready it says it is, and its
/// `/ready` body when it answered.
#[cfg(feature = "gateway")]
fn gateway_status(gw: &picoclaw_config::GatewayConfig) -> (String, Option<serde_json::Value>) {
    use std::io::{Read, Write};
    let host = match gw.host.trim() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    let addr = if host.contains(':') {
        format!("[{host}]:{}", gw.port)
    } else {
        format!("{host}:{}", gw.port)
    };
    let probe = || -> std::io::Result<String> {
        use std::net::ToSocketAddrs;
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let timeout = std::time::Duration::from_millis(500);
        let mut stream = std::net::TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(
            format!("GET /ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )?;
        let mut response = String::new();
        stream.take(64 * 1024).read_to_string(&mut response)?;
        Ok(response)
    };
    let body = |r: &str| {
        r.split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
    };
    match probe() {
        Ok(r) if r.starts_with("HTTP/1.1 200") => {
            (format!("running at http://{addr} (ready)"), body(&r))
        }
        Ok(r) => (
            format!(
                "running at http://{addr}, not ready: {}",
                r.lines().next().unwrap_or_default()
            ),
            body(&r),
        ),
        Err(_) => (
            format!("not running (nothing answers on {addr}; start it with `picoclaw gateway`)"),
            None,
        ),
    }
}
