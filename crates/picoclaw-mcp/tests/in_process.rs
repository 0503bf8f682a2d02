//! Fast, in-process: picoclaw's MCP server side (`ToolServer`) and rmcp's client talking over an
//! in-memory pipe, no Python needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.
#![cfg(feature = "serve")]

use picoclaw_mcp::ToolServer;
use picoclaw_tools::{Sandbox, ToolRegistry};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn the_server_side_lists_and_calls_picoclaws_tools() {
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("note.txt"), "in the workspace").unwrap();
    let sandbox = Arc::new(Sandbox::new(ws.path()).unwrap());
    let mut tools = ToolRegistry::new();
    tools.register(Arc::new(picoclaw_tools::ReadFileTool::new(sandbox.clone())));
    tools.register(Arc::new(picoclaw_tools::ListDirTool::new(sandbox)));

    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let running = ToolServer::new(tools).serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    let client = ().serve(client_io).await.unwrap();
    let listed = client.list_all_tools().await.unwrap();
    let mut names: Vec<String> = listed.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["list_dir", "read_file"]);
    let schema = Value::Object((*listed[0].input_schema).clone());
    assert_eq!(schema["type"], "object");

    let mut call = CallToolRequestParams::new("read_file");
    call.arguments = json!({"path": "note.txt"}).as_object().cloned();
    let result = client.call_tool(call).await.unwrap();
    let value = serde_json::to_value(&result).unwrap();
    assert_ne!(value["isError"], json!(true), "{value}");
    assert!(value.to_string().contains("in the workspace"), "{value}");

    let mut call = CallToolRequestParams::new("read_file");
    call.arguments = json!({"path": "/etc/passwd"}).as_object().cloned();
    let value = serde_json::to_value(client.call_tool(call).await.unwrap()).unwrap();
    assert_eq!(value["isError"], json!(true), "{value}");
    assert!(
        value.to_string().contains("outside the workspace"),
        "{value}"
    );

    // A tool it does not offer is an error result, not a broken session.
    let value = serde_json::to_value(
        client
            .call_tool(CallToolRequestParams::new("exec"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(value["isError"], json!(true), "{value}");
    drop(client);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
}
