//! The Skills & agents page: the gateway's agents (model, workspace, tools), the skills each is
//! offered (and the skill folders that failed to load, with why), and the MCP servers of
//! `tools.mcp` (connected with how many tools, or why not).

use super::{Ctx, Page, Web, layout};
use crate::GatewayAgent;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use picoclaw_skills::Catalog;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new().route(Page::Extensions.path(), get(show))
}

/// An agent and its skills as read now (`None`: skills are off for it).
struct Seen<'a> {
    agent: &'a GatewayAgent,
    skills: Option<Catalog>,
}

async fn show(State(web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
    let agents: &[GatewayAgent] = match &web.api.agents {
        Some(set) => set.agents(),
        None => &[],
    };
    let mut seen = Vec::with_capacity(agents.len());
    for agent in agents {
        // Reading the skill folders is file work: off the async workers.
        let skills = match agent.report.skills.clone() {
            Some(live) => tokio::task::spawn_blocking(move || live.catalog())
                .await
                .ok(),
            None => None,
        };
        seen.push(Seen { agent, skills });
    }
    let several = seen.len() > 1;
    let mcp_configured = web.dash.config.tools.mcp.is_some();
    layout(
        &ctx,
        Page::Extensions,
        html! {
            h1 { (Page::Extensions.title()) }
            h2 { "Agents" }
            (agent_table(&seen))
            h2 { "Skills" }
            div #skill-list {
                @if seen.is_empty() { p.muted { "No agent information in this gateway." } }
                @for s in &seen {
                    @if several { h3 { "Agent " (s.agent.id) } }
                    (skills(s.skills.as_ref()))
                }
            }
            h2 { "MCP servers" }
            div #mcp-list {
                @if !cfg!(feature = "mcp") && mcp_configured {
                    p.notice.error {
                        "tools.mcp is set, but this build has no MCP support (feature mcp): no server was started."
                    }
                }
                @for s in &seen {
                    @if several { h3 { "Agent " (s.agent.id) } }
                    (mcp(s.agent, mcp_configured))
                }
            }
        },
    )
}

fn agent_table(seen: &[Seen<'_>]) -> Markup {
    html! {
        div.table-wrap {
            table #agent-list {
                thead { tr {
                    th scope="col" { "Id" } th scope="col" { "Name" } th scope="col" { "Model" }
                    th scope="col" { "Workspace" } th.num scope="col" { "Tools" }
                    th.num scope="col" { "Skills" }
                } }
                tbody {
                    @for s in seen {
                        tr data-agent=(s.agent.id) {
                            td { code { (s.agent.id) } }
                            td { (s.agent.name) }
                            td { (s.agent.model_label) }
                            td { code { (s.agent.workspace.display()) } }
                            td.num title=(s.agent.report.tools.join(", ")) { (s.agent.report.tools.len()) }
                            td.num {
                                @match &s.skills {
                                    Some(c) => (c.skills.len()),
                                    None => span.muted { "off" },
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn skills(catalog: Option<&Catalog>) -> Markup {
    let Some(catalog) = catalog else {
        return html! { p.muted { "Skills are off (tools.skills.enabled is false)." } };
    };
    html! {
        @if catalog.skills.is_empty() {
            p.muted { "No skills found." }
        } @else {
            div.table-wrap {
                table.skills {
                    thead { tr {
                        th scope="col" { "Skill" } th scope="col" { "Description" }
                        th scope="col" { "Source" } th scope="col" { "Status" }
                    } }
                    tbody {
                        @for skill in &catalog.skills {
                            tr data-skill=(skill.name) {
                                td { code { (skill.name) } }
                                td { (skill.description) }
                                td { (skill.source.as_str()) }
                                td {
                                    @if skill.available() {
                                        span.badge.ok { "loaded" }
                                    } @else {
                                        span.badge.error { "unavailable" } " "
                                        span.muted { (skill.missing.join("; ")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !catalog.problems.is_empty() {
            h3 { "Skills that failed to load" }
            ul.skill-problems {
                @for problem in &catalog.problems {
                    li data-skill-problem=(problem.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()) {
                        span.badge.error { "failed" } " "
                        code { (problem.dir.display()) } " (" (problem.source.as_str()) "): "
                        (problem.reason)
                    }
                }
            }
        }
        @if !catalog.shadowed.is_empty() {
            p.muted {
                "Hidden by a skill of the same name from a closer folder: "
                @for (i, s) in catalog.shadowed.iter().enumerate() {
                    @if i > 0 { ", " }
                    code { (s.name) } " (" (s.source.as_str()) ")"
                }
            }
        }
    }
}

fn mcp(agent: &GatewayAgent, configured: bool) -> Markup {
    let servers = &agent.report.mcp;
    html! {
        @if servers.is_empty() {
            p.muted {
                @if configured { "No MCP server was started for this agent." }
                @else { "No MCP server is configured (tools.mcp)." }
            }
        } @else {
            div.table-wrap {
                table.mcp {
                    thead { tr {
                        th scope="col" { "Server" } th scope="col" { "Status" }
                        th.num scope="col" { "Tools" }
                    } }
                    tbody {
                        @for server in servers {
                            tr data-mcp=(server.name) {
                                td { code { (server.name) } }
                                @match &server.result {
                                    Ok(_) => td { span.badge.ok { "connected" } },
                                    Err(why) => td {
                                        span.badge.error { "failed" } " " span.mcp-why { (why) }
                                    },
                                }
                                td.num {
                                    @match &server.result {
                                        Ok(n) => (n),
                                        Err(_) => "-",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
