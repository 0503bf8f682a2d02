//! [`Extensions`]: what a build adds to picoclaw — providers (model prefixes and wire
//! formats), channels (config sections) and tools — handed to the CLI (`picoclaw_cli::run`)
//! and the gateway ([`crate::run_with`], and picoclaw-cli's `run_gateway`).
//!
//! ```no_run
//! use picoclaw_gateway::Extensions;
//! # fn my_factory(_: &picoclaw_providers::ProviderSpec)
//! #     -> Result<std::sync::Arc<dyn picoclaw_providers::LlmProvider>, picoclaw_providers::ProviderError> {
//! #     Err(picoclaw_providers::ProviderError::NotConfigured("see examples/provider-crate".into()))
//! # }
//! let ext = Extensions::new().with_provider("echo-upper", my_factory);
//! # let _ = ext;
//! ```

use picoclaw_api::Tool;
use picoclaw_channels::{ChannelFactory, ChannelRegistry};
use picoclaw_providers::{ProviderFactory, ProviderInfo, ProviderRegistry};
use picoclaw_tools::Sandbox;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What a tool factory gets when the agent is assembled: the workspace, and the sandbox every
/// built-in file tool opens paths through (so an extension's file tool is confined the same
/// way: see `Sandbox::locate`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ToolSetup {
    /// The agent's workspace folder.
    pub workspace: PathBuf,
    /// The workspace sandbox (restrict_to_workspace, the protected folders, the read roots).
    pub sandbox: Arc<Sandbox>,
}

/// Makes a build's tools once the workspace is known.
pub type ToolFactory = Arc<dyn Fn(&ToolSetup) -> Vec<Arc<dyn Tool>> + Send + Sync>;

/// Providers, channels and tools beyond the built-in ones. [`Extensions::new`] starts from
/// what this build carries; each `with_*` adds one (replacing a built-in of the same name).
#[derive(Clone)]
pub struct Extensions {
    providers: ProviderRegistry,
    channels: ChannelRegistry,
    tools: Vec<ToolFactory>,
    /// Where the application's logger keeps recent lines (the dashboard's Logs page).
    #[cfg(feature = "web")]
    logs: Option<Arc<crate::web::LogRing>>,
}

impl Default for Extensions {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("providers", &self.providers)
            .field("channels", &self.channels)
            .field("tool_factories", &self.tools.len())
            .finish()
    }
}

impl Extensions {
    /// The built-in providers and the channels this build carries; no extra tools.
    pub fn new() -> Self {
        Self {
            providers: ProviderRegistry::builtin(),
            channels: ChannelRegistry::builtin(),
            tools: Vec::new(),
            #[cfg(feature = "web")]
            logs: None,
        }
    }

    /// A provider with a wire format of its own: `"model": "<name>/<model>"` in config.json
    /// builds it with `factory`, which gets the `providers.<name>` section as its settings.
    pub fn with_provider(mut self, name: &str, factory: impl ProviderFactory + 'static) -> Self {
        self.providers.register_provider(name, factory);
        self
    }

    /// A wire format (for several prefixes, or for `providers.<name>.wire` in config).
    pub fn with_wire(mut self, wire: &str, factory: impl ProviderFactory + 'static) -> Self {
        self.providers.register_wire(wire, factory);
        self
    }

    /// A model prefix over a registered wire format (a vendor's base URL and key variable).
    pub fn with_provider_info(mut self, info: ProviderInfo) -> Self {
        self.providers.register(info);
        self
    }

    /// A channel started when `channels.<name>.enabled` is true.
    pub fn with_channel(mut self, name: &str, factory: impl ChannelFactory + 'static) -> Self {
        self.channels.register(name, factory);
        self
    }

    /// A tool every agent of this build may call (the built-in tools keep their names: a tool
    /// named like one of them is not registered, with a warning).
    pub fn with_tool(mut self, tool: impl Tool + 'static) -> Self {
        let tool: Arc<dyn Tool> = Arc::new(tool);
        self.tools
            .push(Arc::new(move |_: &ToolSetup| vec![Arc::clone(&tool)]));
        self
    }

    /// Tools made when the agent is assembled, with its workspace and sandbox: for tools that
    /// touch files.
    pub fn with_tools_from(
        mut self,
        factory: impl Fn(&ToolSetup) -> Vec<Arc<dyn Tool>> + Send + Sync + 'static,
    ) -> Self {
        self.tools.push(Arc::new(factory));
        self
    }

    /// The provider registry, for [`picoclaw_config::Config::with_registry`].
    pub fn providers(&self) -> Arc<ProviderRegistry> {
        Arc::new(self.providers.clone())
    }

    /// The channel registry.
    pub fn channels(&self) -> &ChannelRegistry {
        &self.channels
    }

    /// The ring the application's logger writes recent lines into, shown on the dashboard's
    /// Logs page (the gateway installs no logger itself).
    #[cfg(feature = "web")]
    pub fn with_logs(mut self, ring: Arc<crate::web::LogRing>) -> Self {
        self.logs = Some(ring);
        self
    }

    /// The log ring given to [`Extensions::with_logs`].
    #[cfg(feature = "web")]
    pub fn logs(&self) -> Option<&Arc<crate::web::LogRing>> {
        self.logs.as_ref()
    }

    /// The factories of the extra tools.
    pub fn tools(&self) -> &[ToolFactory] {
        &self.tools
    }
}
