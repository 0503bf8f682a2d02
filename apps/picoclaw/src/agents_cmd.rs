//! `picoclaw agents`: the agents of `agents.list` and the bindings that route chats to them.

use crate::wiring;
use picoclaw_config::{Binding, Config, Paths};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct AgentsArgs {
    #[command(subcommand)]
    command: AgentsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AgentsCommand {
    /// Each agent: id, name, model, workspace, and how many bindings route to it.
    List,
    /// One agent in full: model and fallbacks, workspace, tools, skills, sub-agents, bindings.
    Show {
        /// The agent's id.
        id: String,
    },
}

pub(crate) fn run(config: Option<PathBuf>, args: AgentsArgs) -> anyhow::Result<ExitCode> {
    let Some((paths, loaded)) = wiring::paths_and_config(config)? else {
        return Ok(ExitCode::from(2));
    };
    let config = &loaded.config;
    match args.command {
        AgentsCommand::List => {
            for line in list(config, &paths) {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentsCommand::Show { id } => match show(config, &paths, &id) {
            Some(lines) => {
                for line in lines {
                    println!("{line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            None => {
                let known: Vec<String> = config.agent_infos().into_iter().map(|a| a.id).collect();
                eprintln!("error: no agent '{id}'; known: {}", known.join(", "));
                Ok(ExitCode::from(2))
            }
        },
    }
}

/// The model an agent uses, as configured.
fn model_of(config: &Config, id: &str) -> String {
    match config.agent_entry(id).and_then(|e| e.model.as_ref()) {
        Some(m) if !m.fallbacks().is_empty() => {
            format!("{} (fallbacks: {})", m.primary(), m.fallbacks().join(", "))
        }
        Some(m) => m.primary().to_owned(),
        None => {
            let d = &config.agents.defaults;
            if d.model.trim().is_empty() {
                "(agents.defaults.model)".to_owned()
            } else {
                d.model.clone()
            }
        }
    }
}

/// A binding in words: `telegram peer user:42`, `slack team T1`, `telegram (every account)`.
pub(crate) fn describe_binding(b: &Binding) -> String {
    let m = &b.matches;
    let mut out = m.channel.clone();
    if let Some(p) = &m.peer {
        out.push_str(&format!(" peer {}:{}", p.kind, p.id));
    }
    if !m.guild_id.is_empty() {
        out.push_str(&format!(" guild {}", m.guild_id));
    }
    if !m.team_id.is_empty() {
        out.push_str(&format!(" team {}", m.team_id));
    }
    match m.account_id.trim() {
        "" => {}
        "*" => out.push_str(" (every account)"),
        a => out.push_str(&format!(" account {a}")),
    }
    out
}

/// The bindings that route to agent `id`, described.
pub(crate) fn bindings_of(config: &Config, id: &str) -> Vec<String> {
    let id = picoclaw_config::agents::normalize_id(id);
    config
        .bindings
        .iter()
        .enumerate()
        .filter(|(_, b)| picoclaw_config::agents::normalize_id(&b.agent_id) == id)
        .map(|(i, b)| format!("bindings[{i}]: {}", describe_binding(b)))
        .collect()
}

fn list(config: &Config, paths: &Paths) -> Vec<String> {
    config
        .agent_infos()
        .into_iter()
        .map(|a| {
            let mark = if a.default { " (default)" } else { "" };
            let name = if a.name.is_empty() {
                String::new()
            } else {
                format!(" \"{}\"", a.name)
            };
            let routed = bindings_of(config, &a.id).len();
            format!(
                "{}{name}{mark}: model {}, workspace {}, {routed} binding{}",
                a.id,
                model_of(config, &a.id),
                config.agent_workspace(&a.id, paths).display(),
                if routed == 1 { "" } else { "s" }
            )
        })
        .collect()
}

fn show(config: &Config, paths: &Paths, id: &str) -> Option<Vec<String>> {
    let info = config
        .agent_infos()
        .into_iter()
        .find(|a| a.id == picoclaw_config::agents::normalize_id(id))?;
    let mut out = vec![format!("id:         {}", info.id)];
    if !info.name.is_empty() {
        out.push(format!("name:       {}", info.name));
    }
    out.push(format!(
        "default:    {}",
        if info.default {
            "yes (chats no binding matches come here)"
        } else {
            "no"
        }
    ));
    out.push(format!("model:      {}", model_of(config, &info.id)));
    out.push(format!(
        "workspace:  {}",
        config.agent_workspace(&info.id, paths).display()
    ));
    out.push(format!(
        "sessions:   {}",
        config.agent_session_key(&info.id, "<channel>:<chat>")
    ));
    let entry = info.entry.as_ref();
    let tools = entry.and_then(|e| e.tools.as_ref());
    out.push(format!(
        "tools:      {}",
        match tools {
            None => "all".to_owned(),
            Some(t) => format!(
                "allow [{}], deny [{}]",
                if t.allow.is_empty() {
                    "all".to_owned()
                } else {
                    t.allow.join(", ")
                },
                t.deny.join(", ")
            ),
        }
    ));
    out.push(format!(
        "skills:     {}",
        match entry.and_then(|e| e.skills.as_ref()) {
            None => "all".to_owned(),
            Some(s) => s.join(", "),
        }
    ));
    out.push(format!(
        "sub-agents: {}",
        match entry.and_then(|e| e.subagents.as_ref()) {
            Some(s) if !s.allow_agents.is_empty() => s.allow_agents.join(", "),
            _ => "none".to_owned(),
        }
    ));
    let routed = bindings_of(config, &info.id);
    if routed.is_empty() {
        out.push("bindings:   none".to_owned());
    } else {
        out.push("bindings:".to_owned());
        out.extend(routed.into_iter().map(|b| format!("  {b}")));
    }
    Some(out)
}
