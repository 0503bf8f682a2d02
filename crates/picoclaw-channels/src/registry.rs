//! The channel registry: which `channels.<name>` sections a build can start, and the factory
//! that makes each channel from its settings. The built-in platforms are registered by
//! [`ChannelRegistry::builtin`] the same way a crate from outside the workspace registers its
//! own with [`ChannelRegistry::register`].

use crate::{Channel, ChannelError};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a channel factory gets: its section of config.json and the places the gateway chose
/// for it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelSetup {
    /// The section name (`telegram`, a contributor's `matrix`).
    pub name: String,
    /// `channels.<name>` as written in config.json.
    pub settings: serde_json::Value,
    /// The agent's workspace: downloads are opened beneath its directory handle.
    pub workspace: PathBuf,
    /// Where files users send are saved (`workspace/media/<name>`).
    pub media_dir: PathBuf,
    /// Where users paired with a one-time code are kept (outside the workspace).
    pub paired_file: PathBuf,
    /// The gateway's HTTP port, whose `/webhook/<name>` route serves the channel's callbacks:
    /// a channel with a listener of its own (the original's `webhook_port`) opens one only on
    /// another port.
    pub gateway_port: Option<u16>,
}

impl ChannelSetup {
    /// The setup of channel `name` for a gateway whose workspace is `workspace` and whose home
    /// is `home`.
    pub fn new(name: &str, settings: serde_json::Value, workspace: &Path, home: &Path) -> Self {
        Self {
            name: name.to_owned(),
            settings,
            workspace: workspace.to_path_buf(),
            media_dir: workspace.join("media").join(name),
            paired_file: home.join("channels").join(format!("{name}-paired.json")),
            gateway_port: None,
        }
    }

    /// Says which port the gateway serves `/webhook/<name>` on.
    pub fn with_gateway_port(mut self, port: u16) -> Self {
        self.gateway_port = Some(port);
        self
    }

    /// The section as the factory's own settings type; a wrong value is a clear error naming
    /// the key.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ChannelError> {
        serde_json::from_value(self.settings.clone())
            .map_err(|e| ChannelError::Rejected(format!("channels.{}: {e}", self.name)))
    }
}

/// Makes a channel from its settings.
pub trait ChannelFactory: Send + Sync {
    /// The channel `setup` describes. An error says what to fix in `channels.<name>`; the
    /// gateway logs it and starts without that channel.
    fn build(&self, setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError>;
}

impl<F> ChannelFactory for F
where
    F: Fn(&ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> + Send + Sync,
{
    fn build(&self, setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
        self(setup)
    }
}

/// The channels a build can start, by config section.
#[derive(Clone, Default)]
pub struct ChannelRegistry {
    factories: BTreeMap<String, Arc<dyn ChannelFactory>>,
}

impl fmt::Debug for ChannelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl ChannelRegistry {
    /// A registry that knows no channel.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The platforms this build carries (by cargo feature).
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut r = Self::empty();
        #[cfg(feature = "telegram")]
        r.register("telegram", |s: &ChannelSetup| {
            use crate::settings::ChannelSettings;
            use crate::telegram::{TelegramChannel, TelegramConfig};
            let config = TelegramConfig::from_json(&s.settings)?
                .with_media_dir(&s.media_dir)
                .with_media_base(&s.workspace)
                .with_paired_file(&s.paired_file);
            Ok(Arc::new(TelegramChannel::new(config)?) as Arc<dyn Channel>)
        });
        #[cfg(feature = "discord")]
        r.register("discord", |s: &ChannelSetup| {
            use crate::discord::{DiscordChannel, DiscordConfig};
            use crate::settings::ChannelSettings;
            let config = DiscordConfig::from_json(&s.settings)?
                .with_media_dir(&s.media_dir)
                .with_media_base(&s.workspace)
                .with_paired_file(&s.paired_file);
            Ok(Arc::new(DiscordChannel::new(config)?) as Arc<dyn Channel>)
        });
        #[cfg(feature = "slack")]
        r.register("slack", |s: &ChannelSetup| {
            use crate::settings::ChannelSettings;
            use crate::slack::{SlackChannel, SlackConfig};
            let config = SlackConfig::from_json(&s.settings)?
                .with_media_dir(&s.media_dir)
                .with_media_base(&s.workspace)
                .with_paired_file(&s.paired_file);
            Ok(Arc::new(SlackChannel::new(config)?) as Arc<dyn Channel>)
        });
        #[cfg(feature = "pico")]
        r.register("pico", |s: &ChannelSetup| {
            use crate::pico::{PicoChannel, PicoConfig};
            use crate::settings::ChannelSettings;
            let config = PicoConfig::from_json(&s.settings)?.with_paired_file(&s.paired_file);
            Ok(Arc::new(PicoChannel::new(config)?) as Arc<dyn Channel>)
        });
        #[cfg(feature = "maixcam")]
        r.register("maixcam", |s: &ChannelSetup| {
            use crate::maixcam::{MaixcamChannel, MaixcamConfig};
            let config = MaixcamConfig::from_json(&s.settings)?;
            Ok(Arc::new(MaixcamChannel::new(config)?) as Arc<dyn Channel>)
        });
        #[cfg(feature = "whatsapp")]
        r.register("whatsapp", crate::whatsapp::build);
        #[cfg(feature = "line")]
        r.register("line", crate::line::build);
        #[cfg(feature = "feishu")]
        r.register("feishu", crate::feishu::build);
        #[cfg(feature = "dingtalk")]
        r.register("dingtalk", crate::dingtalk::build);
        #[cfg(feature = "qq")]
        r.register("qq", crate::qq::build);
        #[cfg(feature = "onebot")]
        r.register("onebot", crate::onebot::build);
        #[cfg(feature = "wecom")]
        r.register("wecom", crate::wecom::build);
        #[cfg(feature = "wecom")]
        r.register("wecom_app", crate::wecom::build_app);
        r
    }

    /// Registers (or replaces) the factory of section `channels.<name>`.
    pub fn register(&mut self, name: &str, factory: impl ChannelFactory + 'static) {
        self.factories.insert(name.to_owned(), Arc::new(factory));
    }

    /// Whether `channels.<name>` can be started by this build.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The section names this build can start, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// The channel for `setup`, or `None` when no factory is registered for its section.
    pub fn build(&self, setup: &ChannelSetup) -> Option<Result<Arc<dyn Channel>, ChannelError>> {
        self.factories.get(&setup.name).map(|f| f.build(setup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use picoclaw_api::{Inbox, OutboundMessage};
    use tokio_util::sync::CancellationToken;

    struct Quiet(String);

    #[async_trait]
    impl Channel for Quiet {
        fn name(&self) -> &str {
            &self.0
        }
        async fn run(
            &self,
            _inbox: Arc<dyn Inbox>,
            stop: CancellationToken,
        ) -> Result<(), ChannelError> {
            stop.cancelled().await;
            Ok(())
        }
        async fn send(&self, _msg: &OutboundMessage) -> Result<(), ChannelError> {
            Ok(())
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        #[allow(dead_code)]
        enabled: bool,
        room: String,
    }

    #[test]
    fn an_outside_channel_is_built_from_its_typed_section() {
        let mut r = ChannelRegistry::builtin();
        r.register("pigeon", |s: &ChannelSetup| {
            let settings: Settings = s.settings()?;
            Ok(Arc::new(Quiet(settings.room)) as Arc<dyn Channel>)
        });
        assert!(r.contains("pigeon"));
        let dir = Path::new("/srv/ws");
        let setup = ChannelSetup::new(
            "pigeon",
            serde_json::json!({"enabled": true, "room": "loft"}),
            dir,
            Path::new("/home/me/.picoclaw"),
        );
        assert_eq!(setup.media_dir, dir.join("media/pigeon"));
        let made = r.build(&setup).map(|r| r.map(|c| c.name().to_owned()));
        assert!(matches!(made, Some(Ok(ref n)) if n == "loft"), "{made:?}");

        let typo = ChannelSetup::new(
            "pigeon",
            serde_json::json!({"enabled": true, "rooom": "loft"}),
            dir,
            dir,
        );
        let Some(Err(e)) = r.build(&typo) else {
            panic!("a typo was accepted");
        };
        assert!(e.to_string().contains("channels.pigeon"), "{e}");
        assert!(
            r.build(&ChannelSetup::new(
                "nope",
                serde_json::Value::Null,
                dir,
                dir
            ))
            .is_none()
        );
    }
}
