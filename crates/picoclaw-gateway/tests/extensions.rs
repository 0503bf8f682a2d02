//! A build's own provider, channel and tool, added through `Extensions` and selected by
//! config.json alone, carry a whole conversation through the real gateway: the channel's
//! message reaches the agent, the model (a prefix of the build's own) calls the build's tool,
//! which writes in the workspace through the sandbox, and the answer goes back out through the
//! channel.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_api::{
    Channel, ChannelError, InboundMessage, Inbox, LlmProvider, OutboundMessage, ToolContext,
    ToolOutput, TypedTool,
};
use picoclaw_channels::ChannelSetup;
use picoclaw_gateway::{Extensions, ToolSetup};
use picoclaw_providers::{OpenAiCompatConfig, OpenAiCompatible, ProviderSpec};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A channel that says one thing when it starts and reports what it is sent.
struct Pigeon {
    room: String,
    sent: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Channel for Pigeon {
    fn name(&self) -> &str {
        "pigeon"
    }
    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        let msg = InboundMessage::new("pigeon", self.room.clone(), "ada", "note it down")
            .with_metadata("message_id", "m1");
        inbox.deliver(msg).await?;
        stop.cancelled().await;
        Ok(())
    }
    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        let _ = self.sent.send(format!("{}:{}", msg.chat_id, msg.content));
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PigeonSettings {
    #[allow(dead_code)]
    enabled: bool,
    room: String,
    #[allow(dead_code)]
    #[serde(default)]
    allow_from: Vec<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct NoteArgs {
    /// What to write down.
    text: String,
}

/// Writes a note into the workspace through the sandbox it was given.
struct Note(ToolSetup);

#[async_trait]
impl TypedTool for Note {
    type Args = NoteArgs;
    fn name(&self) -> &str {
        "note"
    }
    fn description(&self) -> &str {
        "Write a note into notes.txt in the workspace."
    }
    async fn run(&self, _ctx: &ToolContext, args: NoteArgs) -> ToolOutput {
        let located = match self
            .0
            .sandbox
            .locate("notes.txt", picoclaw_tools::Access::Write)
        {
            Ok(l) => l,
            Err(e) => return ToolOutput::error(e.to_string()),
        };
        // Beneath the workspace's directory handle: a link planted at notes.txt cannot redirect it.
        match located
            .dir
            .write_atomic(&located.path, args.text.as_bytes())
        {
            Ok(()) => ToolOutput::ok("noted"),
            Err(e) => ToolOutput::error(e.to_string()),
        }
    }
}

#[tokio::test]
async fn a_builds_own_provider_channel_and_tool_are_chosen_by_config() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call("note", json!({"text": "buy tea"})),
        Reply::text("Noted."),
    ])
    .await;
    let home = tempfile::tempdir().unwrap();
    let workspace = home.path().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    let config_file = home.path().join("config.json");
    std::fs::write(
        &config_file,
        json!({
            "agents": {"defaults": {"model": "relay/scripted",
                                    "workspace": workspace.display().to_string()}},
            "providers": {"relay": {"api_base": endpoint.base_url(), "upstream": "scripted"}},
            "gateway": {"host": "127.0.0.1", "port": 0},
            "channels": {"pigeon": {"enabled": true, "room": "loft", "allow_from": ["ada"]}},
            "heartbeat": {"enabled": false},
        })
        .to_string(),
    )
    .unwrap();
    let paths = picoclaw_config::Paths::new(home.path(), &config_file);
    let loaded = picoclaw_config::load(&paths).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| !w.contains("pigeon") && !w.contains("relay")),
        "{:?}",
        loaded.warnings
    );

    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    #[derive(serde::Deserialize)]
    struct RelaySettings {
        upstream: String,
    }
    let extensions = Extensions::new()
        .with_provider("relay", |spec: &ProviderSpec| {
            // Typed settings from providers.relay.
            let settings: RelaySettings = spec.settings()?;
            let p = OpenAiCompatible::new(OpenAiCompatConfig::new(
                settings.upstream,
                spec.api_base.clone(),
            ))?;
            Ok(Arc::new(p) as Arc<dyn LlmProvider>)
        })
        .with_channel("pigeon", move |setup: &ChannelSetup| {
            let settings: PigeonSettings = setup.settings()?;
            Ok(Arc::new(Pigeon {
                room: settings.room,
                sent: sent_tx.clone(),
            }) as Arc<dyn Channel>)
        })
        .with_tools_from(|setup: &ToolSetup| vec![Arc::new(Note(setup.clone()).into_tool()) as _]);

    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let gateway = tokio::spawn(picoclaw_gateway::run_with(
        loaded.config,
        paths,
        extensions,
        async move { shutdown.cancelled().await },
        |_| {},
    ));
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), sent_rx.recv())
        .await
        .expect("an answer within 30 s")
        .expect("the channel is open");
    stop.cancel();
    let _ = gateway.await;

    assert_eq!(answer, "loft:Noted.");
    assert_eq!(
        std::fs::read_to_string(workspace.join("notes.txt")).unwrap(),
        "buy tea"
    );
    // The model was offered the build's tool with its generated schema.
    let first = &endpoint.requests()[0].body;
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(offered.contains(&"note"), "{offered:?}");
}

#[test]
fn an_unknown_channel_section_is_named_with_the_closest_channel() {
    let config: picoclaw_config::Config = serde_json::from_value(json!({
        "channels": {"pigeon": {"enabled": true}, "telegarm": {"enabled": true}}
    }))
    .unwrap();
    let plain = picoclaw_channels::ChannelRegistry::builtin();
    let warnings = picoclaw_gateway::unknown_channel_sections(&config, &plain);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("channels.telegarm") && w.contains("'channels.telegram'")),
        "{warnings:?}"
    );
    let mut extended = plain.clone();
    extended.register("pigeon", |_: &ChannelSetup| {
        Err(ChannelError::Rejected("unused".into()))
    });
    let warnings = picoclaw_gateway::unknown_channel_sections(&config, &extended);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}
