//! Run with: cargo run -p example-embed-agent
//!
//! Embeds a picoclaw agent in a program: a provider, one custom tool, a conversation.
//! Without credentials it talks to a scripted OpenAI-compatible server on 127.0.0.1 (from
//! `picoclaw-testkit`), so it runs anywhere; with `OPENAI_API_KEY` set it uses the real OpenAI API
//! (`OPENAI_BASE_URL` and `OPENAI_MODEL` are honoured too).

use async_trait::async_trait;
use picoclaw_core::{Agent, SessionKey, Tool, ToolContext, ToolOutput, ToolSpec};
use picoclaw_providers::{OpenAiCompatConfig, OpenAiCompatible};
use picoclaw_testkit::{Reply, ScriptedEndpoint};
use serde_json::json;
use std::sync::Arc;

/// A tool of our own: adds two numbers.
struct Add;

#[async_trait]
impl Tool for Add {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "add",
            "Add two numbers.",
            json!({"type": "object", "required": ["a", "b"],
                   "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
        match (args["a"].as_f64(), args["b"].as_f64()) {
            (Some(a), Some(b)) => ToolOutput::ok((a + b).to_string()),
            _ => ToolOutput::error("Error: 'a' and 'b' must be numbers"),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    picoclaw_providers::ensure_crypto_provider();
    // Keep the scripted server alive for the whole run when there is no key.
    let (_server, config, model) = match std::env::var("OPENAI_API_KEY") {
        Ok(key) => {
            let base = std::env::var("OPENAI_BASE_URL")
                .unwrap_or_else(|_| "https://api.openai.com/v1".to_owned());
            let model = std::env::var("OPENAI_MODEL").unwrap_or_else(|_| "gpt-4o-mini".into());
            (
                None,
                OpenAiCompatConfig::new("openai", base).with_api_key(key),
                model,
            )
        }
        Err(_) => {
            eprintln!("(no OPENAI_API_KEY: using a scripted model on 127.0.0.1)");
            let server = ScriptedEndpoint::start_with([
                Reply::tool_call("add", json!({"a": 2, "b": 40})),
                Reply::text("2 + 40 = 42."),
            ])
            .await;
            let config = OpenAiCompatConfig::new("scripted", server.base_url());
            (Some(server), config, "scripted-model".to_owned())
        }
    };

    // The ten lines an embedder writes:
    let provider = Arc::new(OpenAiCompatible::new(config)?);
    let agent = Agent::builder(provider)
        .model(model)
        .instructions("Use the add tool for arithmetic.")
        .tool(Add)
        .build()?;
    let session = SessionKey::new("example:embed");
    let outcome = agent.chat(&session, "What is 2 + 40?").await?;
    println!("{}", outcome.text);
    eprintln!(
        "({} model calls, {} tool calls)",
        outcome.model_calls, outcome.tool_calls
    );
    Ok(())
}
