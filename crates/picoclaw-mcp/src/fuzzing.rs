//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not part of the API): what
//! picoclaw does with a server's tool list and call results once rmcp has decoded them.

use crate::CallError;
use serde_json::Value;

/// A listed tool as `start_all` takes it in: its name for the model, its cleaned input schema,
/// or why it is left out.
pub fn listed_tool(server: &str, tool: &rmcp::model::Tool) -> Result<(String, Value), String> {
    let name = crate::tool_name(server, &tool.name);
    let schema = crate::clean_schema(&Value::Object((*tool.input_schema).clone()));
    crate::client::check_schema(&schema)?;
    Ok((name, schema))
}

/// A call's result as `McpTool::call_tool` hands it on.
pub fn call_result(result: &rmcp::model::CallToolResult) -> Result<String, CallError> {
    crate::client::result_text(result)
}
