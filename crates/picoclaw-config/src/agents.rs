//! Several agents in one gateway, in the original PicoClaw's layout: `agents.list[]` names the
//! agents, `bindings[]` routes a chat to one of them. Each agent has its own workspace (so its
//! own files, memory and skills), its own conversations (`agent:<id>:<channel>:<chat>`), its own
//! model, tools and sub-agent permissions. Without `agents.list` there is one agent, `main`,
//! made of `agents.defaults`, exactly as before.
//!
//! Routing follows the original's order, most specific first: the peer (a user, group or
//! channel id), the parent peer (a thread's channel), the Discord guild, the Slack team, the
//! account, the channel wildcard (`account_id: "*"`), then the default agent (`"default": true`,
//! else the first listed).

use crate::model::Config;
use crate::paths::Paths;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The id of the one agent a config without `agents.list` has.
pub const MAIN_AGENT: &str = "main";

/// One entry of `agents.list`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct AgentEntry {
    /// Unique; letters, digits, `-` and `_` (compared in lower case).
    pub id: String,
    /// The agent chats go to when no binding matches.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its own workspace. Default: `agents.defaults.workspace` for the default agent, else
    /// `workspace-<id>` beside it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub workspace: String,
    /// `"provider/model"`, a model_list alias, or `{primary, fallbacks}`; default
    /// `agents.defaults.model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<AgentModel>,
    /// The skills this agent may use (by name); all when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skills: Option<Vec<String>>,
    /// Which agents it may hand a task to (`spawn` with `agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subagents: Option<SubagentsEntry>,
    /// Which tools it has: `allow` (only these, when not empty), then `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<AgentTools>,
    /// Its own rate limits; when present they replace the top-level `rate_limits` whole (a key
    /// left out is 0, no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<crate::RateLimits>,
}

/// An agent's model: a name, or a primary with fallbacks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
#[non_exhaustive]
pub enum AgentModel {
    /// `"anthropic/claude-sonnet-4"` or a model_list alias.
    Name(String),
    /// `{"primary": "...", "fallbacks": ["..."]}`.
    WithFallbacks {
        primary: String,
        #[serde(default)]
        fallbacks: Vec<String>,
    },
}

impl AgentModel {
    /// The primary model.
    pub fn primary(&self) -> &str {
        match self {
            AgentModel::Name(n) => n,
            AgentModel::WithFallbacks { primary, .. } => primary,
        }
    }

    /// The fallbacks, in order.
    pub fn fallbacks(&self) -> &[String] {
        match self {
            AgentModel::Name(_) => &[],
            AgentModel::WithFallbacks { fallbacks, .. } => fallbacks,
        }
    }
}

/// `agents.list[].subagents`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct SubagentsEntry {
    /// Agent ids it may hand tasks to; `"*"` for any.
    pub allow_agents: Vec<String>,
    /// The model its sub-agents use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<AgentModel>,
}

/// `agents.list[].tools`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct AgentTools {
    /// Only these tools (names; a trailing `*` matches a prefix), when not empty.
    pub allow: Vec<String>,
    /// Never these.
    pub deny: Vec<String>,
}

impl AgentTools {
    /// Whether the tool `name` is offered.
    pub fn allows(&self, name: &str) -> bool {
        let hit = |pattern: &String| match pattern.trim().strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern.trim() == name,
        };
        (self.allow.is_empty() || self.allow.iter().any(hit)) && !self.deny.iter().any(hit)
    }
}

/// One entry of `bindings`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct Binding {
    pub agent_id: String,
    #[serde(rename = "match")]
    pub matches: BindingMatch,
}

/// `bindings[].match`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct BindingMatch {
    /// `telegram`, `discord`, `slack`... (required).
    pub channel: String,
    /// The bot account; empty is the channel's one account, `"*"` any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerMatch>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub guild_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub team_id: String,
}

/// `bindings[].match.peer`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[non_exhaustive]
pub struct PeerMatch {
    /// `user` (a direct chat; `direct` is the same), `group` or `channel`.
    pub kind: String,
    pub id: String,
}

/// Where a message came from, for routing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInput {
    pub channel: String,
    /// Empty: the channel's one account.
    pub account_id: String,
    /// `(kind, id)`: `("user", sender)` in a direct chat, `("group", chat)` in a group.
    pub peer: Option<(String, String)>,
    /// A thread's parent chat, as a peer.
    pub parent_peer: Option<(String, String)>,
    pub guild_id: String,
    pub team_id: String,
}

impl RouteInput {
    /// A message on `channel` from `peer_kind`/`peer_id`.
    pub fn new(channel: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            ..Self::default()
        }
    }

    pub fn peer(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.peer = Some((kind.into(), id.into()));
        self
    }

    pub fn parent_peer(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.parent_peer = Some((kind.into(), id.into()));
        self
    }

    pub fn guild(mut self, id: impl Into<String>) -> Self {
        self.guild_id = id.into();
        self
    }

    pub fn team(mut self, id: impl Into<String>) -> Self {
        self.team_id = id.into();
        self
    }

    pub fn account(mut self, id: impl Into<String>) -> Self {
        self.account_id = id.into();
        self
    }
}

/// The agent a message goes to, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    pub agent_id: String,
    /// `binding.peer`, `binding.peer.parent`, `binding.guild`, `binding.team`,
    /// `binding.account`, `binding.channel` or `default`.
    pub matched_by: &'static str,
    /// The index in `bindings` of the binding that matched.
    pub binding: Option<usize>,
}

/// An agent id in its compared form.
pub fn normalize_id(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

fn peer_kind(kind: &str) -> String {
    match kind.trim().to_ascii_lowercase().as_str() {
        "direct" | "dm" | "private" => "user".to_owned(),
        other => other.to_owned(),
    }
}

/// What a resolved agent is: its id, whether it is the default, and its settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AgentInfo {
    pub id: String,
    pub name: String,
    pub default: bool,
    /// `None` for the implicit `main` agent.
    pub entry: Option<AgentEntry>,
}

impl Config {
    /// The agents this config runs: `agents.list`, or the one implicit `main` agent.
    pub fn agent_infos(&self) -> Vec<AgentInfo> {
        if self.agents.list.is_empty() {
            return vec![AgentInfo {
                id: MAIN_AGENT.to_owned(),
                name: String::new(),
                default: true,
                entry: None,
            }];
        }
        let default = self.default_agent_id();
        self.agents
            .list
            .iter()
            .map(|e| AgentInfo {
                id: normalize_id(&e.id),
                name: e.name.clone(),
                default: normalize_id(&e.id) == default,
                entry: Some(e.clone()),
            })
            .collect()
    }

    /// The agent chats go to when no binding matches: the one marked `"default": true`, else
    /// the first listed, else `main`.
    pub fn default_agent_id(&self) -> String {
        let list = &self.agents.list;
        list.iter()
            .find(|e| e.default && !e.id.trim().is_empty())
            .or_else(|| list.first())
            .map(|e| normalize_id(&e.id))
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| MAIN_AGENT.to_owned())
    }

    /// The agent entry `id` names (`None` for the implicit `main`, or an unknown id).
    pub fn agent_entry(&self, id: &str) -> Option<&AgentEntry> {
        let id = normalize_id(id);
        self.agents.list.iter().find(|e| normalize_id(&e.id) == id)
    }

    /// Whether `id` is one of this config's agents.
    pub fn has_agent(&self, id: &str) -> bool {
        let id = normalize_id(id);
        if self.agents.list.is_empty() {
            return id == MAIN_AGENT;
        }
        // Per message (routing): no copies of the entries.
        self.agents.list.iter().any(|e| normalize_id(&e.id) == id)
    }

    /// The config agent `id` runs with: `agents.defaults` with the entry's workspace and model
    /// in place. The default agent keeps the defaults' workspace unless it names its own;
    /// another agent without one gets `workspace-<id>` beside the default workspace (never
    /// inside another agent's).
    pub fn for_agent(&self, id: &str, paths: &Paths) -> Option<Config> {
        let id = normalize_id(id);
        if !self.has_agent(&id) {
            return None;
        }
        let mut c = self.clone();
        let Some(entry) = self.agent_entry(&id) else {
            return Some(c); // the implicit main agent
        };
        c.agents.defaults.workspace = self.agent_workspace(&id, paths).display().to_string();
        if let Some(model) = &entry.model {
            c.agents.defaults.model = model.primary().trim().to_owned();
            c.agents.defaults.provider = String::new();
            c.agents.defaults.model_fallbacks = model.fallbacks().to_vec();
        }
        if let Some(limits) = entry.rate_limits {
            c.rate_limits = limits;
        }
        Some(c)
    }

    /// Agent `id`'s workspace folder.
    pub fn agent_workspace(&self, id: &str, paths: &Paths) -> PathBuf {
        let id = normalize_id(id);
        match self.agent_entry(&id) {
            Some(e) if !e.workspace.trim().is_empty() => crate::home_path(&e.workspace, paths),
            Some(_) if id != self.default_agent_id() => {
                let base = self.workspace_path(paths);
                let parent = base
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(|| paths.home().to_path_buf());
                parent.join(format!("workspace-{id}"))
            }
            _ => self.workspace_path(paths),
        }
    }

    /// The agent a message from `input` goes to.
    pub fn route(&self, input: &RouteInput) -> Route {
        let default = || Route {
            agent_id: self.default_agent_id(),
            matched_by: "default",
            binding: None,
        };
        if self.agents.list.is_empty() {
            return default();
        }
        let channel = input.channel.trim().to_ascii_lowercase();
        let account = normalize_id(&input.account_id);
        let account_ok = |want: &str| match want.trim() {
            "" => account.is_empty() || account == "default",
            "*" => true,
            other => normalize_id(other) == account,
        };
        let candidates: Vec<(usize, &Binding)> = self
            .bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| {
                b.matches.channel.trim().to_ascii_lowercase() == channel
                    && account_ok(&b.matches.account_id)
                    && self.has_agent(&b.agent_id)
            })
            .collect();
        let chosen = |i: usize, b: &Binding, by: &'static str| Route {
            agent_id: normalize_id(&b.agent_id),
            matched_by: by,
            binding: Some(i),
        };
        let peer_hit = |peer: &(String, String)| {
            candidates.iter().find(|(_, b)| {
                b.matches.peer.as_ref().is_some_and(|p| {
                    !p.id.trim().is_empty()
                        && peer_kind(&p.kind) == peer_kind(&peer.0)
                        && p.id.trim() == peer.1.trim()
                })
            })
        };
        if let Some(peer) = input.peer.as_ref().filter(|p| !p.1.trim().is_empty())
            && let Some((i, b)) = peer_hit(peer)
        {
            return chosen(*i, b, "binding.peer");
        }
        if let Some(peer) = input
            .parent_peer
            .as_ref()
            .filter(|p| !p.1.trim().is_empty())
            && let Some((i, b)) = peer_hit(peer)
        {
            return chosen(*i, b, "binding.peer.parent");
        }
        let guild = input.guild_id.trim();
        if !guild.is_empty()
            && let Some((i, b)) = candidates
                .iter()
                .find(|(_, b)| b.matches.guild_id.trim() == guild)
        {
            return chosen(*i, b, "binding.guild");
        }
        let team = input.team_id.trim();
        if !team.is_empty()
            && let Some((i, b)) = candidates
                .iter()
                .find(|(_, b)| b.matches.team_id.trim() == team)
        {
            return chosen(*i, b, "binding.team");
        }
        let plain = |b: &Binding| {
            b.matches.peer.is_none()
                && b.matches.guild_id.trim().is_empty()
                && b.matches.team_id.trim().is_empty()
        };
        if let Some((i, b)) = candidates
            .iter()
            .find(|(_, b)| plain(b) && b.matches.account_id.trim() != "*")
        {
            return chosen(*i, b, "binding.account");
        }
        if let Some((i, b)) = candidates
            .iter()
            .find(|(_, b)| plain(b) && b.matches.account_id.trim() == "*")
        {
            return chosen(*i, b, "binding.channel");
        }
        default()
    }

    /// The session key of a conversation `key` (`telegram:123`, `api:ada`) with agent `id`:
    /// the default agent keeps the key as it is (conversations from before several agents stay
    /// its own), another agent's is `agent:<id>:<key>`.
    pub fn agent_session_key(&self, id: &str, key: &str) -> String {
        let id = normalize_id(id);
        if id == self.default_agent_id() {
            key.to_owned()
        } else {
            format!("agent:{id}:{key}")
        }
    }

    /// The agent a session key belongs to (see [`Config::agent_session_key`]).
    pub fn agent_of_session(&self, key: &str) -> String {
        if let Some(rest) = key.strip_prefix("agent:")
            && let Some((id, _)) = rest.split_once(':')
            && self.has_agent(id)
            && !self.agents.list.is_empty()
        {
            return normalize_id(id);
        }
        self.default_agent_id()
    }
}

/// Problems with `agents.list` and `bindings` (each names the entry and the fix).
pub(crate) fn problems(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let list = &config.agents.list;
    let mut seen: Vec<String> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let id = normalize_id(&e.id);
        if id.is_empty() {
            out.push(format!(
                "agents.list[{i}] has no id; give it one (\"id\": \"coder\")"
            ));
            continue;
        }
        if id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(format!(
                "agents.list[{i}].id '{}' must be letters, digits, '-' and '_' (at most 64)",
                e.id
            ));
        }
        if seen.contains(&id) {
            out.push(format!(
                "agents.list[{i}].id '{id}' is used twice; ids must be unique"
            ));
        }
        seen.push(id);
        if let Some(sub) = &e.subagents {
            for a in &sub.allow_agents {
                if a.trim() != "*" && !list.iter().any(|x| normalize_id(&x.id) == normalize_id(a)) {
                    out.push(format!(
                        "agents.list[{i}].subagents.allow_agents names '{a}', which is not an \
                         agent; known: {}",
                        known(config)
                    ));
                }
            }
        }
    }
    if list.iter().filter(|e| e.default).count() > 1 {
        out.push("agents.list: more than one agent is marked \"default\": true; mark one".into());
    }
    for (i, b) in config.bindings.iter().enumerate() {
        if list.is_empty() {
            out.push(format!(
                "bindings[{i}] routes to agent '{}' but agents.list is empty; add the agent to \
                 agents.list",
                b.agent_id
            ));
            continue;
        }
        if !config.has_agent(&b.agent_id) {
            out.push(format!(
                "bindings[{i}].agent_id '{}' is not an agent in agents.list; known: {}",
                b.agent_id,
                known(config)
            ));
        }
        if b.matches.channel.trim().is_empty() {
            out.push(format!(
                "bindings[{i}].match.channel is empty; name the channel (\"telegram\")"
            ));
        }
        if let Some(p) = &b.matches.peer
            && (p.id.trim().is_empty()
                || !matches!(peer_kind(&p.kind).as_str(), "user" | "group" | "channel"))
        {
            out.push(format!(
                "bindings[{i}].match.peer needs a kind (user, group or channel) and an id"
            ));
        }
    }
    out
}

/// Each agent's workspace is its own, none inside another's (that agent's tools could read and
/// write it).
pub(crate) fn workspace_problems(config: &Config, paths: &Paths) -> Vec<String> {
    let mut out = Vec::new();
    if config.agents.list.len() > 1 {
        let spaces: Vec<(String, PathBuf)> = config
            .agent_infos()
            .into_iter()
            .map(|a| {
                let ws = config.agent_workspace(&a.id, paths);
                (a.id, ws)
            })
            .collect();
        for (a, wa) in &spaces {
            for (b, wb) in &spaces {
                if a < b && (wa.starts_with(wb) || wb.starts_with(wa)) {
                    out.push(format!(
                        "agents '{a}' and '{b}' share a workspace ({} and {}): give each its \
                         own folder, neither inside the other",
                        wa.display(),
                        wb.display()
                    ));
                }
            }
        }
    }
    out
}

fn known(config: &Config) -> String {
    config
        .agent_infos()
        .iter()
        .map(|a| a.id.clone())
        .collect::<Vec<_>>()
        .join(", ")
}
