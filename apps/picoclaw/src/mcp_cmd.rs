//! `picoclaw mcp`: the MCP servers of `tools.mcp.servers`: list (with their state, tool count,
//! folder and sandbox), show, test, add, remove. Adding and removing rewrite config.json atomically and keep
//! every other key as it was.

use anyhow::Context;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub(crate) struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
}

#[derive(Debug, clap::Subcommand)]
enum McpCommand {
    /// Every configured server: transport, whether it starts, how many tools it offers.
    List,
    /// One server's settings and its tools.
    Show { name: String },
    /// Start one server and list its tools; the exit code says whether it worked.
    Test { name: String },
    /// Add a server: `mcp add NAME -- COMMAND ARGS...` or `mcp add NAME --url URL`.
    Add {
        name: String,
        /// A streamable HTTP server instead of a command.
        #[arg(long)]
        url: Option<String>,
        /// An HTTP header, `Name=Value` (repeatable); `${VAR}` is read from the environment.
        #[arg(long = "header", value_name = "K=V")]
        headers: Vec<String>,
        /// An environment variable for a command server, `NAME=VALUE` (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Remove a server from the config.
    Remove { name: String },
    /// Be an MCP server on stdin/stdout, offering picoclaw's own tools (`tools.mcp.serve.tools`;
    /// by default the read-only file tools) to another MCP client.
    Serve,
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .with_context(|| format!("{what} '{item}' must look like NAME=VALUE"))?;
        map.insert(k.trim().to_owned(), Value::String(v.to_owned()));
    }
    Ok(map)
}

pub(crate) fn run(config: Option<PathBuf>, args: McpArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = crate::wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let file = paths.config_file().to_path_buf();
    let raw: Value = match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let servers = raw["tools"]["mcp"]["servers"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let env = |k: &str| std::env::var(k).ok();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
    };
    // One server's settings as a config of its own (so a disabled one can still be tested).
    let single = |name: &str| -> anyhow::Result<Option<picoclaw_mcp::McpConfig>> {
        let Some(entry) = servers.get(name) else {
            return Ok(None);
        };
        let mut entry = entry.clone();
        entry["enabled"] = json!(true);
        let mut section = raw["tools"]["mcp"].clone();
        if !section.is_object() {
            section = json!({});
        }
        section["enabled"] = json!(true);
        section["servers"] = json!({ name: entry });
        picoclaw_mcp::McpConfig::from_json(&section, paths.home(), &env).map_err(anyhow::Error::msg)
    };
    match args.command {
        McpCommand::Serve => serve(&loaded.config, &paths),
        McpCommand::List => {
            if servers.is_empty() {
                println!(
                    "no MCP servers (add one with `picoclaw mcp add NAME -- COMMAND ARGS` or \
                     `--url URL`)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            let rt = runtime()?;
            for (name, entry) in &servers {
                let transport = match (entry.get("url"), entry.get("command")) {
                    (Some(u), _) if entry.get("type").and_then(Value::as_str) == Some("sse") => {
                        format!("sse {}", u.as_str().unwrap_or_default())
                    }
                    (Some(u), _) => format!("http {}", u.as_str().unwrap_or_default()),
                    (_, Some(c)) => format!("stdio {}", c.as_str().unwrap_or_default()),
                    _ => "(incomplete)".into(),
                };
                if entry.get("enabled").and_then(Value::as_bool) == Some(false) {
                    println!("{name:<16} {transport:<40} disabled");
                    continue;
                }
                let (state, contained) = match single(name) {
                    Err(e) => (format!("invalid: {e}"), None),
                    Ok(None) => ("invalid".into(), None),
                    Ok(Some(cfg)) => {
                        let contained = cfg.servers.first().and_then(picoclaw_mcp::containment);
                        let started = rt.block_on(picoclaw_mcp::start_all(&cfg));
                        let state = match started.failed.first() {
                            Some((_, why)) => format!("failed: {why}"),
                            None => format!("ok, {} tools", started.tools.len()),
                        };
                        (state, contained)
                    }
                };
                println!("{name:<16} {transport:<40} {state}");
                if let Some(contained) = contained {
                    println!("{:<16} {contained}", "");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Show { name } | McpCommand::Test { name } if !servers.contains_key(&name) => {
            eprintln!("error: no MCP server named '{name}' in {}", file.display());
            Ok(ExitCode::from(1))
        }
        McpCommand::Show { name } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&servers[&name]).unwrap_or_default()
            );
            test(&runtime()?, single(&name)?, &name)
        }
        McpCommand::Test { name } => test(&runtime()?, single(&name)?, &name),
        McpCommand::Add {
            name,
            url,
            headers,
            env: vars,
            description,
            command,
        } => {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                anyhow::bail!("the name '{name}' may use only letters, digits, - and _");
            }
            let mut entry = match (&url, command.split_first()) {
                (Some(url), None) => {
                    json!({"type": "http", "url": url, "headers": pairs(&headers, "header")?})
                }
                (None, Some((cmd, rest))) => {
                    json!({"type": "stdio", "command": cmd, "args": rest, "env": pairs(&vars, "env")?})
                }
                (Some(_), Some(_)) => {
                    anyhow::bail!("give either --url or a command after --, not both")
                }
                (None, None) => anyhow::bail!(
                    "give a command after -- (mcp add NAME -- npx -y server) or --url URL"
                ),
            };
            if let Some(d) = description {
                entry["description"] = json!(d);
            }
            // Check it reads before writing anything.
            let check = json!({"servers": { name.clone(): entry.clone() }});
            picoclaw_mcp::McpConfig::from_json(&check, paths.home(), &env)
                .map_err(anyhow::Error::msg)?;
            let mut updated = raw.clone();
            if !updated["tools"]["mcp"]["servers"].is_object() {
                let mut mcp = updated["tools"]["mcp"].clone();
                if !mcp.is_object() {
                    mcp = json!({});
                }
                mcp["servers"] = json!({});
                updated["tools"]["mcp"] = mcp;
            }
            let replaced = updated["tools"]["mcp"]["servers"].get(&name).is_some();
            updated["tools"]["mcp"]["servers"][&name] = entry;
            picoclaw_config::write_config_atomically(&file, &updated)?;
            println!(
                "{} the MCP server '{name}' in {}; check it with `picoclaw mcp test {name}`",
                if replaced { "replaced" } else { "added" },
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Remove { name } => {
            let mut updated = raw.clone();
            let removed = updated["tools"]["mcp"]["servers"]
                .as_object_mut()
                .and_then(|s| s.remove(&name))
                .is_some();
            if !removed {
                eprintln!("error: no MCP server named '{name}' in {}", file.display());
                return Ok(ExitCode::from(1));
            }
            picoclaw_config::write_config_atomically(&file, &updated)?;
            println!("removed the MCP server '{name}' from {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The tools `mcp serve` may offer, by name (`tools.mcp.serve.tools`).
#[cfg(feature = "mcp-server")]
const SERVABLE: &[&str] = &[
    "read_file",
    "list_dir",
    "write_file",
    "edit_file",
    "append_file",
    "exec",
    "web_fetch",
    "web_search",
];

/// Without the `mcp-server` feature: says how to get a build that has it (exit code 2).
#[cfg(not(feature = "mcp-server"))]
fn serve(
    _config: &picoclaw_config::Config,
    _paths: &picoclaw_config::Paths,
) -> anyhow::Result<ExitCode> {
    eprintln!(
        "error: this build of picoclaw has no MCP server side; build it with \
         `--features mcp-server` (the `full` feature has it) to offer its tools over MCP"
    );
    Ok(ExitCode::from(2))
}

#[cfg(feature = "mcp-server")]
fn serve(
    config: &picoclaw_config::Config,
    paths: &picoclaw_config::Paths,
) -> anyhow::Result<ExitCode> {
    let wanted: Vec<String> = match config
        .tools
        .mcp
        .as_ref()
        .and_then(|m| m.serve.as_ref())
        .and_then(|s| s.tools.clone())
    {
        Some(list) => list,
        None => vec!["read_file".into(), "list_dir".into()],
    };
    if let Some(bad) = wanted.iter().find(|w| !SERVABLE.contains(&w.as_str())) {
        eprintln!(
            "error: tools.mcp.serve.tools names '{bad}'; the tools that can be served are {}",
            SERVABLE.join(", ")
        );
        return Ok(ExitCode::from(2));
    }
    let workspace = config.workspace_path(paths);
    let sandbox = if config.agents.defaults.restrict_to_workspace {
        picoclaw_tools::Sandbox::new(&workspace)
    } else {
        picoclaw_tools::Sandbox::unrestricted(&workspace)
    };
    let sandbox =
        sandbox.with_context(|| format!("cannot use the workspace {}", workspace.display()))?;
    let sandbox = std::sync::Arc::new(sandbox);
    let mut all =
        picoclaw_tools::builtin_tools(sandbox, picoclaw_gateway::exec_config(config, paths));
    let web = config.tools.web.clone().unwrap_or_default();
    let fetch = match picoclaw_tools::WebFetchConfig::from_section(
        &web.fetch.clone().unwrap_or_default(),
    ) {
        Ok(fetch) => fetch,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(ExitCode::from(2));
        }
    };
    all.register(std::sync::Arc::new(picoclaw_tools::WebFetchTool::new(
        fetch,
    )));
    if let Some(Ok(search)) = picoclaw_tools::WebSearchConfig::from_section(&web) {
        all.register(std::sync::Arc::new(picoclaw_tools::WebSearchTool::new(
            search,
        )));
    }
    let mut offered = picoclaw_tools::ToolRegistry::new();
    for name in &wanted {
        match all.get(name) {
            Some(tool) => {
                offered.register(std::sync::Arc::clone(tool));
            }
            None => eprintln!("warning: {name} is not available here (disabled in the config?)"),
        }
    }
    let names: Vec<String> = offered.specs().into_iter().map(|s| s.name).collect();
    eprintln!(
        "picoclaw MCP server on stdio: {} (workspace {})",
        names.join(", "),
        workspace.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match rt.block_on(picoclaw_mcp::serve_stdio(offered)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test(
    rt: &tokio::runtime::Runtime,
    cfg: Option<picoclaw_mcp::McpConfig>,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let Some(mut cfg) = cfg else {
        eprintln!("error: no MCP server named '{name}'");
        return Ok(ExitCode::from(1));
    };
    cfg.connect_timeout = cfg.connect_timeout.max(Duration::from_secs(20));
    let started = rt.block_on(picoclaw_mcp::start_all(&cfg));
    if let Some((_, why)) = started.failed.first() {
        eprintln!("error: {name}: {why}");
        return Ok(ExitCode::from(1));
    }
    println!("{name}: started, {} tools", started.tools.len());
    for tool in &started.tools {
        use picoclaw_tools::Tool;
        let spec = tool.spec();
        println!(
            "  {}: {}",
            spec.name,
            spec.description.lines().next().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
