//! Run with: cargo run -p example-embed-agent
//!
//! An agent with one typed tool, embedded through the `picoclaw` facade. With `OPENAI_API_KEY`
//! set it asks OpenAI (`OPENAI_BASE_URL`, `OPENAI_MODEL` honoured); without, a scripted
//! OpenAI-compatible server on 127.0.0.1 plays the model, so it runs anywhere.

use picoclaw::{Agent, SessionKey, ToolContext, ToolOutput, TypedTool};

/// The tool's arguments: their schema (and these descriptions) are generated for the model.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The first number.
    a: f64,
    /// The second number.
    b: f64,
}

struct Add;

#[picoclaw::async_trait]
impl TypedTool for Add {
    type Args = AddArgs;
    fn name(&self) -> &str {
        "add"
    }
    fn description(&self) -> &str {
        "Add two numbers."
    }
    async fn run(&self, _ctx: &ToolContext, args: AddArgs) -> ToolOutput {
        ToolOutput::ok((args.a + args.b).to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_offline, base, key, model) = endpoint().await;
    // What an embedder writes:
    let agent = Agent::builder(picoclaw::providers::openai_compatible(&base, key)?)
        .model(model)
        .instructions("Use the add tool for arithmetic.")
        .tool(Add.into_tool())
        .build()?;
    let outcome = agent
        .chat(&SessionKey::new("example"), "What is 2 + 40?")
        .await?;
    println!("{}", outcome.text);
    eprintln!(
        "({} model calls, {} tool calls)",
        outcome.model_calls, outcome.tool_calls
    );
    Ok(())
}

/// OpenAI when a key is set; else a scripted model on loopback (kept alive by the first value).
async fn endpoint() -> (
    Option<picoclaw_testkit::ScriptedEndpoint>,
    String,
    Option<String>,
    String,
) {
    use picoclaw_testkit::{Reply, ScriptedEndpoint};
    if let Ok(key) = std::env::var("OPENAI_API_KEY") {
        let base = std::env::var("OPENAI_BASE_URL").unwrap_or("https://api.openai.com/v1".into());
        let model = std::env::var("OPENAI_MODEL").unwrap_or("gpt-4o-mini".into());
        return (None, base, Some(key), model);
    }
    eprintln!("(no OPENAI_API_KEY: using a scripted model on 127.0.0.1)");
    let server = ScriptedEndpoint::start_with([
        Reply::tool_call("add", serde_json::json!({"a": 2, "b": 40})),
        Reply::text("2 + 40 = 42."),
    ])
    .await;
    let base = server.base_url();
    (Some(server), base, None, "scripted-model".into())
}
