//! [`Tool`]: something the model can call, what a call gets ([`ToolContext`]) and returns
//! ([`ToolOutput`]); and [`TypedTool`], the easy way to write one: arguments as a Rust type
//! whose JSON schema is generated, erased into a `Tool` by [`TypedTool::into_tool`].

use crate::{SessionKey, ToolSpec};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// What started a turn: a person writing, or picoclaw on its own schedule. Sub-agents inherit
/// their parent's origin, so a scheduled turn cannot shed it by delegating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnOrigin {
    /// Someone wrote: a chat message, the terminal, an API request.
    #[default]
    Conversation,
    /// A cron job's run.
    Cron,
    /// The periodic heartbeat (HEARTBEAT.md).
    Heartbeat,
}

impl TurnOrigin {
    /// A cron job or the heartbeat: nobody is there to approve what the turn does.
    pub fn is_scheduled(self) -> bool {
        matches!(self, TurnOrigin::Cron | TurnOrigin::Heartbeat)
    }
}

/// Who is calling: the conversation a tool call belongs to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ToolContext {
    /// The conversation the call happens in.
    pub session_key: SessionKey,
    /// The channel the conversation happens on (`cli`, `telegram`...), when known.
    pub channel: Option<String>,
    /// The chat within that channel, when known.
    pub chat_id: Option<String>,
    /// What started the turn.
    pub origin: TurnOrigin,
}

impl ToolContext {
    /// A context for `session_key`: a conversation, with no channel or chat known.
    pub fn new(session_key: SessionKey) -> Self {
        Self {
            session_key,
            channel: None,
            chat_id: None,
            origin: TurnOrigin::Conversation,
        }
    }

    /// Sets the channel and the chat within it.
    pub fn with_chat(mut self, channel: impl Into<String>, chat_id: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self.chat_id = Some(chat_id.into());
        self
    }

    /// Sets what started the turn.
    pub fn with_origin(mut self, origin: TurnOrigin) -> Self {
        self.origin = origin;
        self
    }
}

/// A tool's result. Failures are data for the model (`is_error`), never a reason to abort a turn.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolOutput {
    /// What the model reads as the result (on failure, what went wrong).
    pub content: String,
    /// Whether the call failed. The model reads only `content`, so an error's content should say
    /// it failed; the flag is for logs and events.
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed call, with `content` saying why, for the model.
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Something the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and JSON schema of the parameters, as sent to the model. An agent reads
    /// it once, when it is built, and sends that to the model on every call: a tool whose
    /// spec changes is registered in a new agent.
    fn spec(&self) -> ToolSpec;

    /// Runs the tool. `args` is the parsed JSON object the model sent.
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput;

    /// Whether calls of this tool may run at the same time as other such calls of one model
    /// response. True only for tools that change nothing (they read files, search, fetch); the
    /// default is false, so a tool that writes runs alone, in the order the model asked.
    fn parallel_safe(&self) -> bool {
        false
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Arc<T> {
    fn spec(&self) -> ToolSpec {
        (**self).spec()
    }
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        (**self).call(ctx, args).await
    }
    fn parallel_safe(&self) -> bool {
        (**self).parallel_safe()
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Tool for Box<T> {
    fn spec(&self) -> ToolSpec {
        (**self).spec()
    }
    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        (**self).call(ctx, args).await
    }
    fn parallel_safe(&self) -> bool {
        (**self).parallel_safe()
    }
}

/// A tool whose arguments are a Rust type. Its parameters' JSON schema is generated from
/// `Args` (derive `serde::Deserialize` and `schemars::JsonSchema`; doc comments become the
/// descriptions the model reads), and the model's JSON is parsed into `Args` before
/// [`TypedTool::run`] sees it: arguments that do not parse come back to the model as an error
/// result naming the problem, and `run` is not called.
///
/// ```
/// use picoclaw_api::tool::{ToolContext, ToolOutput, TypedTool};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args {
///     /// The text to shout.
///     text: String,
/// }
///
/// struct Shout;
///
/// #[async_trait::async_trait]
/// impl TypedTool for Shout {
///     type Args = Args;
///     fn name(&self) -> &str {
///         "shout"
///     }
///     fn description(&self) -> &str {
///         "Returns the text in capitals."
///     }
///     async fn run(&self, _ctx: &ToolContext, args: Args) -> ToolOutput {
///         ToolOutput::ok(args.text.to_uppercase())
///     }
/// }
///
/// let tool = Shout.into_tool();
/// # let _ = tool;
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync + Sized + 'static {
    /// The arguments, parsed from the JSON object the model sent.
    type Args: DeserializeOwned + JsonSchema + Send;

    /// The name the model calls the tool by (`[a-zA-Z0-9_-]`, at most 64 characters).
    fn name(&self) -> &str;

    /// What the tool does and when to use it, for the model.
    fn description(&self) -> &str;

    /// Runs the tool with parsed arguments.
    async fn run(&self, ctx: &ToolContext, args: Self::Args) -> ToolOutput;

    /// As [`Tool::parallel_safe`]: true only for tools that change nothing.
    fn parallel_safe(&self) -> bool {
        false
    }

    /// The erased form a tool registry keeps.
    fn into_tool(self) -> Typed<Self> {
        Typed::new(self)
    }
}

/// A [`TypedTool`] as a [`Tool`]: its spec (with the generated schema) built once.
#[derive(Debug)]
pub struct Typed<T> {
    tool: T,
    spec: ToolSpec,
}

impl<T: TypedTool> Typed<T> {
    /// Generates `T::Args`'s schema and keeps it with the tool.
    pub fn new(tool: T) -> Self {
        let spec = ToolSpec::new(tool.name(), tool.description(), schema_of::<T::Args>());
        Self { tool, spec }
    }

    /// The typed tool inside.
    pub fn inner(&self) -> &T {
        &self.tool
    }
}

#[async_trait]
impl<T: TypedTool> Tool for Typed<T> {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        // A model that sends no arguments means "none": an empty object.
        let args = if args.is_null() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            args
        };
        match serde_json::from_value::<T::Args>(args) {
            Ok(args) => self.tool.run(ctx, args).await,
            Err(e) => ToolOutput::error(format!(
                "Error: invalid arguments for {}: {e}",
                self.spec.name
            )),
        }
    }

    fn parallel_safe(&self) -> bool {
        self.tool.parallel_safe()
    }
}

/// The JSON schema of `A` as tool parameters: draft 7, every sub-schema inlined (several
/// vendors refuse `$ref`), without `$schema` and `title`.
pub fn schema_of<A: JsonSchema>() -> serde_json::Value {
    let settings = schemars::generate::SchemaSettings::draft07().with(|s| {
        s.inline_subschemas = true;
        s.meta_schema = None;
    });
    let schema = settings.into_generator().into_root_schema_for::<A>();
    let mut value = serde_json::Value::from(schema);
    if let Some(object) = value.as_object_mut() {
        object.remove("title");
        object.remove("$schema");
        // A struct without fields: vendors still want `properties`.
        if object.get("type").and_then(serde_json::Value::as_str) == Some("object") {
            object
                .entry("properties")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    struct Args {
        /// Where to look.
        city: String,
        #[serde(default)]
        days: Option<u8>,
    }

    struct Weather;

    #[async_trait]
    impl TypedTool for Weather {
        type Args = Args;
        fn name(&self) -> &str {
            "weather"
        }
        fn description(&self) -> &str {
            "The forecast."
        }
        async fn run(&self, _ctx: &ToolContext, args: Args) -> ToolOutput {
            ToolOutput::ok(format!("{}:{}", args.city, args.days.unwrap_or(1)))
        }
    }

    #[test]
    fn the_schema_is_generated_from_the_arguments() {
        let spec = Weather.into_tool().spec();
        assert_eq!(spec.name, "weather");
        let p = &spec.parameters;
        assert_eq!(p["type"], "object");
        assert_eq!(p["properties"]["city"]["type"], "string");
        assert_eq!(p["properties"]["city"]["description"], "Where to look.");
        assert_eq!(p["required"], serde_json::json!(["city"]));
        assert!(p.get("$schema").is_none() && p.get("title").is_none());
    }

    #[test]
    fn arguments_are_parsed_or_refused() {
        let tool = Weather.into_tool();
        let ctx = ToolContext::new(SessionKey::new("t"));
        let run = |args| futures_executor(tool.call(&ctx, args));
        let ok = run(serde_json::json!({"city": "Oslo", "days": 3}));
        assert_eq!(ok, ToolOutput::ok("Oslo:3"));
        let bad = run(serde_json::json!({"days": 3}));
        assert!(bad.is_error && bad.content.contains("city"), "{bad:?}");
    }

    /// Polls a future that never waits (the typed tool above) to its end.
    fn futures_executor<F: std::future::Future>(f: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
    }
}
