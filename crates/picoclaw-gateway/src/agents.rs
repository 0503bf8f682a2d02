//! Several agents in one gateway (`agents.list`, `bindings`): each assembled on its own
//! workspace (so its file and exec tools reach its folder only), with its own model and tools,
//! sharing the state database under its own session keys (`agent:<id>:...`; the default agent
//! keeps the keys it had before there were several). Channel messages are routed by
//! [`picoclaw_config::Config::route`]; API requests name an agent (`model: "agent:<id>"` or
//! `X-Picoclaw-Agent`); scheduled jobs run on the agent whose conversation made them.

use crate::assemble::{AssembleOptions, Assembled, SetupError, assemble, open_state};
use picoclaw_api::InboundMessage;
use picoclaw_config::{Config, Paths, RouteInput};
use picoclaw_core::{Agent, SessionKey};
use std::path::PathBuf;
use std::sync::Arc;

/// One agent of the gateway.
#[derive(Debug)]
#[non_exhaustive]
pub struct GatewayAgent {
    pub id: String,
    /// The display name (`agents.list[].name`), or empty.
    pub name: String,
    pub agent: Agent,
    /// Like `agent`, with sessions in memory only (stateless API requests).
    pub ephemeral: Agent,
    pub workspace: PathBuf,
    /// `provider/model`, for display.
    pub model_label: String,
    /// Its skills, MCP servers, tools and memory, for the dashboard.
    pub report: crate::AssemblyReport,
}

impl GatewayAgent {
    fn from_assembled(id: &str, name: &str, a: Assembled) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            agent: a.agent,
            ephemeral: a.ephemeral,
            workspace: a.workspace,
            model_label: a.model_label,
            report: a.report,
        }
    }
}

/// The gateway's agents and how chats reach them.
#[derive(Debug)]
pub struct AgentSet {
    /// The config routing and session keys come from (`None`: one agent, keys unchanged).
    routing: Option<Config>,
    agents: Vec<GatewayAgent>,
    store: Arc<dyn picoclaw_state::StateBackend>,
}

/// Where a channel message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Routed {
    pub agent_id: String,
    pub session_key: SessionKey,
    /// Which rule chose the agent (`binding.peer`, ..., `default`).
    pub matched_by: &'static str,
}

impl AgentSet {
    /// One agent (the configuration without `agents.list`, an embedder's agent).
    pub fn single(assembled: Assembled) -> Self {
        let Assembled {
            agent,
            ephemeral,
            store,
            model_label,
            workspace,
            report,
        } = assembled;
        Self {
            routing: None,
            store,
            agents: vec![GatewayAgent {
                id: picoclaw_config::MAIN_AGENT.to_owned(),
                name: String::new(),
                agent,
                ephemeral,
                workspace,
                model_label,
                report,
            }],
        }
    }

    /// One agent from its parts (a test, an embedder with its own [`Agent`]).
    pub fn one(agent: Agent, store: Arc<dyn picoclaw_state::StateBackend>) -> Self {
        Self {
            routing: None,
            store,
            agents: vec![GatewayAgent {
                id: picoclaw_config::MAIN_AGENT.to_owned(),
                name: String::new(),
                ephemeral: agent.clone(),
                agent,
                workspace: PathBuf::new(),
                model_label: String::new(),
                report: crate::AssemblyReport::default(),
            }],
        }
    }

    /// The state database the agents share.
    pub fn store(&self) -> &Arc<dyn picoclaw_state::StateBackend> {
        &self.store
    }

    /// The agents, the default first.
    pub fn agents(&self) -> &[GatewayAgent] {
        &self.agents
    }

    /// The agent chats go to when nothing else says.
    pub fn default_agent(&self) -> &GatewayAgent {
        &self.agents[0]
    }

    /// The agent `id` (any case).
    pub fn get(&self, id: &str) -> Option<&GatewayAgent> {
        let id = picoclaw_config::agents::normalize_id(id);
        self.agents.iter().find(|a| a.id == id)
    }

    /// The ids, comma-separated (for messages).
    pub fn ids(&self) -> String {
        self.agents
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The agent a conversation belongs to.
    pub fn for_session(&self, key: &str) -> &GatewayAgent {
        match &self.routing {
            Some(config) => self
                .get(&config.agent_of_session(key))
                .unwrap_or_else(|| self.default_agent()),
            None => self.default_agent(),
        }
    }

    /// The key of conversation `key` with agent `id`.
    pub fn session_key(&self, id: &str, key: &str) -> SessionKey {
        match &self.routing {
            Some(config) => SessionKey::new(config.agent_session_key(id, key)),
            None => SessionKey::new(key),
        }
    }

    /// Where `msg` goes: its agent, and its conversation with that agent.
    pub fn route(&self, msg: &InboundMessage) -> Routed {
        let Some(config) = &self.routing else {
            return Routed {
                agent_id: self.default_agent().id.clone(),
                session_key: msg.session_key.clone(),
                matched_by: "default",
            };
        };
        let route = config.route(&route_input(msg));
        let session_key = self.session_key(&route.agent_id, msg.session_key.as_str());
        tracing::debug!(
            channel = %msg.channel.as_str(),
            agent = %route.agent_id,
            matched_by = route.matched_by,
            session = %session_key,
            "routed"
        );
        Routed {
            agent_id: route.agent_id,
            session_key,
            matched_by: route.matched_by,
        }
    }

    /// The key (in the `gateway` kv namespace) of the chat agent `id` last heard from: the
    /// heartbeat reports there.
    pub fn last_chat_key(&self, id: &str) -> String {
        if picoclaw_config::agents::normalize_id(id) == self.default_agent().id {
            LAST_CHAT.1.to_owned()
        } else {
            format!("{}:{}", LAST_CHAT.1, id)
        }
    }
}

/// The key/value slot where the dispatcher notes the chat the user last wrote from.
pub const LAST_CHAT: (&str, &str) = ("gateway", "last_chat");

/// What routing looks at in a channel message: the channel, the peer (`peer_kind` metadata
/// from the channel: `user` in a direct chat, else `group` or `channel`; a chat whose id is its
/// sender's is a direct one), the parent peer, the Discord guild, the Slack team, the account.
pub fn route_input(msg: &InboundMessage) -> RouteInput {
    let meta = |k: &str| msg.metadata.get(k).map(String::as_str).unwrap_or_default();
    let kind = match meta("peer_kind") {
        "" if msg.chat_id == msg.sender_id => "user",
        "" => "group",
        k => k,
    };
    let peer_id = if kind == "user" {
        msg.sender_id.as_str()
    } else {
        msg.chat_id.as_str()
    };
    let mut input = RouteInput::new(msg.channel.as_str())
        .peer(kind, peer_id)
        .guild(meta("guild_id"))
        .team(meta("team_id"))
        .account(meta("account_id"));
    if !meta("parent_peer_id").is_empty() {
        let parent_kind = match meta("parent_peer_kind") {
            "" => "channel",
            k => k,
        };
        input = input.parent_peer(parent_kind, meta("parent_peer_id"));
    }
    input
}

/// The other agents, for a hand-over (`subagent`/`spawn` with `agent_id`): bound to the set
/// once every agent is built (each agent needs it while it is built).
#[derive(Default)]
struct LatePeers(std::sync::OnceLock<std::sync::Weak<AgentSet>>);

impl picoclaw_core::PeerAgents for LatePeers {
    fn agent(&self, id: &str) -> Option<Agent> {
        let set = self.0.get()?.upgrade()?;
        set.get(id).map(|a| a.agent.clone())
    }

    fn session_key(&self, id: &str, key: &str) -> SessionKey {
        match self.0.get().and_then(std::sync::Weak::upgrade) {
            Some(set) => set.session_key(id, key),
            None => SessionKey::new(format!("agent:{id}:{key}")),
        }
    }
}

/// Assembles every agent of the config on one state database: `agents.list`, or the one agent
/// `agents.defaults` describes.
pub async fn assemble_agents(
    config: &Config,
    paths: &Paths,
    options: AssembleOptions,
) -> Result<Arc<AgentSet>, SetupError> {
    if config.agents.list.is_empty() {
        return Ok(Arc::new(AgentSet::single(
            assemble(config, paths, options).await?,
        )));
    }
    let peers = Arc::new(LatePeers::default());
    let store = match options.store.clone() {
        Some(store) => store,
        None => open_state(config, paths, true).await?.ok_or_else(|| {
            SetupError::other("cannot open the state database", "it was not created")
        })?,
    };
    let mut agents = Vec::new();
    // The default agent first.
    let mut infos = config.agent_infos();
    infos.sort_by_key(|a| !a.default);
    for info in infos {
        let Some(agent_config) = config.for_agent(&info.id, paths) else {
            continue;
        };
        let mut opts = options
            .clone()
            .with_store(store.clone())
            .with_memory_space(&info.id, info.default);
        if let Some(tools) = info.entry.as_ref().and_then(|e| e.tools.clone()) {
            opts = opts.with_tool_filter(tools);
        }
        if let Some(skills) = info.entry.as_ref().and_then(|e| e.skills.clone()) {
            opts = opts.with_skills_only(skills);
        }
        let allowed = info
            .entry
            .as_ref()
            .and_then(|e| e.subagents.as_ref())
            .map(|s| s.allow_agents.clone())
            .unwrap_or_default();
        opts = opts.with_peers(peers.clone(), allowed, info.id.clone());
        // The other agents' workspaces: never reached by this one's tools.
        let others: Vec<PathBuf> = config
            .agent_infos()
            .iter()
            .filter(|other| other.id != info.id)
            .map(|other| config.agent_workspace(&other.id, paths))
            .collect();
        opts = opts.with_closed_paths(others);
        let assembled = assemble(&agent_config, paths, opts)
            .await
            .map_err(|e| match e {
                SetupError::Config(msg) => {
                    SetupError::Config(format!("agent '{}': {msg}", info.id))
                }
                other => other,
            })?;
        tracing::info!(agent = %info.id, model = %assembled.model_label, workspace = %assembled.workspace.display(), "agent ready");
        agents.push(GatewayAgent::from_assembled(
            &info.id, &info.name, assembled,
        ));
    }
    let set = Arc::new(AgentSet {
        routing: Some(config.clone()),
        agents,
        store,
    });
    let _ = peers.0.set(Arc::downgrade(&set));
    Ok(set)
}
