//! `picoclaw mcp serve`: picoclaw as an MCP server over stdio, offering a chosen set of its own
//! tools (file tools confined to the workspace, exec under its policy, web, memory) to other MCP
//! clients: editors, other agents.

use picoclaw_api::SessionKey;
use picoclaw_tools::{ToolContext, ToolRegistry};
use rmcp::ServiceExt;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::Value;

/// The server: `tools` is what it offers.
pub struct ToolServer {
    tools: ToolRegistry,
}

impl std::fmt::Debug for ToolServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolServer")
            .field("tools", &self.tools)
            .finish()
    }
}

impl ToolServer {
    pub fn new(tools: ToolRegistry) -> Self {
        Self { tools }
    }
}

impl ServerHandler for ToolServer {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("picoclaw", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "picoclaw's tools. File paths are relative to picoclaw's workspace; paths \
                 outside it are refused.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, rmcp::ErrorData> {
        let tools = self
            .tools
            .specs()
            .into_iter()
            .map(|spec| {
                let schema = match spec.parameters {
                    Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                rmcp::model::Tool::new(spec.name, spec.description, schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        let name = request.name.to_string();
        let args = request
            .arguments
            .map(Value::Object)
            .unwrap_or_else(|| Value::Object(Default::default()));
        let ctx = ToolContext::new(SessionKey::new("mcp:serve"));
        let out = self.tools.call(&ctx, &name, args).await;
        let content = vec![ContentBlock::text(out.content)];
        Ok(if out.is_error {
            CallToolResult::error(content)
        } else {
            CallToolResult::success(content)
        }
        .into())
    }
}

/// Serves `tools` on stdin/stdout until the client hangs up.
pub async fn serve_stdio(tools: ToolRegistry) -> Result<(), ServeError> {
    let service = ToolServer::new(tools)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| ServeError::Handshake(e.to_string()))?;
    service
        .waiting()
        .await
        .map_err(|e| ServeError::Session(e.to_string()))?;
    Ok(())
}

/// Why serving picoclaw's tools over stdio ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The client on stdin did not complete the MCP handshake (not an MCP client?).
    #[error("the MCP handshake failed: {0}")]
    Handshake(String),
    /// The session broke off after it started.
    #[error("the MCP session ended with an error: {0}")]
    Session(String),
}
