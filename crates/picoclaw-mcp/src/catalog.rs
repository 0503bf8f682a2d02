//! Token economy: every tool schema is sent with every request. When the MCP tools together are
//! more than `tools.mcp.max_inline_tools`, the model gets two tools instead of all of them:
//! `mcp_search` (find tools by words: names, one-line descriptions, schemas) and `mcp_call`
//! (call one by name).

use crate::client::McpTool;
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_tools::{Tool, ToolContext, ToolOutput};
use serde_json::{Value, json};
use std::sync::Arc;

/// The tools to register for the MCP servers: each one when there are at most `max_inline`,
/// else `mcp_search` and `mcp_call` over all of them.
pub fn registry_tools(tools: Vec<McpTool>, max_inline: usize) -> Vec<Arc<dyn Tool>> {
    if tools.len() <= max_inline {
        return tools
            .into_iter()
            .map(|t| Arc::new(t) as Arc<dyn Tool>)
            .collect();
    }
    let catalog = Arc::new(tools);
    vec![
        Arc::new(McpSearch(Arc::clone(&catalog))),
        Arc::new(McpCall(catalog)),
    ]
}

/// `mcp_search(query, limit)`.
#[derive(Debug)]
pub struct McpSearch(Arc<Vec<McpTool>>);

/// `mcp_call(name, arguments)`.
#[derive(Debug)]
pub struct McpCall(Arc<Vec<McpTool>>);

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1)
        .map(str::to_lowercase)
        .collect()
}

fn search_spec(count: usize) -> ToolSpec {
    ToolSpec::new(
        "mcp_search",
        format!(
            "Find tools of the connected MCP servers ({count} tools) by words; returns their \
             names, descriptions and parameters. Then use mcp_call."
        ),
        json!({"type": "object", "properties": {
            "query": {"type": "string", "description": "Words describing the task"},
            "limit": {"type": "integer", "description": "Most tools to return (default 8)"}
        }, "required": ["query"]}),
    )
}

fn call_spec() -> ToolSpec {
    ToolSpec::new(
        "mcp_call",
        "Call an MCP tool found with mcp_search.",
        json!({"type": "object", "properties": {
            "name": {"type": "string", "description": "The tool's name (mcp_<server>__<tool>)"},
            "arguments": {"type": "object", "description": "Its parameters"}
        }, "required": ["name"]}),
    )
}

#[async_trait]
impl Tool for McpSearch {
    fn spec(&self) -> ToolSpec {
        search_spec(self.0.len())
    }

    fn parallel_safe(&self) -> bool {
        true
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let query = args["query"].as_str().unwrap_or_default();
        let limit = args["limit"].as_u64().unwrap_or(8).clamp(1, 50) as usize;
        let wanted = words(query);
        let mut scored: Vec<(usize, &McpTool)> = self
            .0
            .iter()
            .map(|t| {
                let spec = t.spec();
                let hay = words(&format!("{} {}", spec.name, spec.description));
                let score = wanted
                    .iter()
                    .filter(|w| hay.iter().any(|h| h.contains(w.as_str())))
                    .count();
                (score, t)
            })
            .filter(|(score, _)| wanted.is_empty() || *score > 0)
            .collect();
        scored.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.spec().name.cmp(&b.1.spec().name))
        });
        if scored.is_empty() {
            return ToolOutput::ok(format!(
                "No MCP tool matches \"{query}\". Try other words, or an empty query to list them."
            ));
        }
        let mut out = String::new();
        for (_, tool) in scored.into_iter().take(limit) {
            let spec = tool.spec();
            out.push_str(&format!(
                "{}: {}\n  parameters: {}\n",
                spec.name,
                spec.description.lines().next().unwrap_or_default(),
                spec.parameters
            ));
        }
        ToolOutput::ok(out)
    }
}

#[async_trait]
impl Tool for McpCall {
    fn spec(&self) -> ToolSpec {
        call_spec()
    }

    async fn call(&self, ctx: &ToolContext, args: Value) -> ToolOutput {
        let name = args["name"].as_str().unwrap_or_default();
        let Some(tool) = self.0.iter().find(|t| t.spec().name == name) else {
            return ToolOutput::error(format!(
                "mcp_call: there is no MCP tool named '{name}'; find the right name with \
                 mcp_search"
            ));
        };
        let arguments = match args.get("arguments") {
            None | Some(Value::Null) => json!({}),
            Some(v) => v.clone(),
        };
        tool.call(ctx, arguments).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool the size of a typical MCP tool (GitHub's create_issue: a two-sentence description,
    /// four parameters).
    fn typical(i: usize) -> ToolSpec {
        ToolSpec::new(
            format!("mcp_github__tool_{i}"),
            "Create a new issue in a GitHub repository. Requires push access to the repository \
             unless issues are open to everyone.",
            json!({"type": "object", "properties": {
                "owner": {"type": "string", "description": "Repository owner"},
                "repo": {"type": "string", "description": "Repository name"},
                "title": {"type": "string", "description": "Issue title"},
                "body": {"type": "string", "description": "Issue body (Markdown)"}
            }, "required": ["owner", "repo", "title"]}),
        )
    }

    /// Bytes the tools add to every request, in OpenAI's `tools` shape.
    fn request_bytes(specs: &[ToolSpec]) -> usize {
        let tools: Vec<Value> = specs
            .iter()
            .map(|s| {
                json!({"type": "function", "function": {"name": s.name,
                "description": s.description, "parameters": s.parameters}})
            })
            .collect();
        if tools.is_empty() {
            0
        } else {
            Value::Array(tools).to_string().len()
        }
    }

    /// `cargo test -p picoclaw-mcp request_bytes_by_tool_count -- --nocapture` prints the figures
    /// docs/PERFORMANCE.md reports.
    #[test]
    fn request_bytes_by_tool_count() {
        let mut rows = Vec::new();
        for n in [0usize, 16, 200] {
            let all: Vec<ToolSpec> = (0..n).map(typical).collect();
            let sent = if n <= 16 {
                all.clone()
            } else {
                vec![search_spec(n), call_spec()]
            };
            rows.push((n, request_bytes(&all), request_bytes(&sent)));
            println!(
                "{n:>4} MCP tools: {:>6} bytes if all were inline, {:>5} bytes sent",
                request_bytes(&all),
                request_bytes(&sent)
            );
        }
        assert_eq!(rows[0].2, 0);
        assert_eq!(rows[1].1, rows[1].2, "16 tools are sent inline");
        assert!(rows[2].2 * 50 < rows[2].1, "{rows:?}");
        assert!(
            rows[2].2 < rows[1].2,
            "200 tools cost less than 16 inline: {rows:?}"
        );
    }
}
