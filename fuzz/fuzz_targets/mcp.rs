//! MCP's JSON-RPC framing on both sides, over an in-memory pipe in place of a server's stdio:
//!
//! - client side (first byte even): the rest is what a server writes. rmcp's client decodes it
//!   (the handshake, then `tools/list` and `tools/call`), and what picoclaw does with the
//!   listed tools (names, schema cleaning and checks) and a call's result (the text the model
//!   gets) runs on what came back;
//! - server side (first byte odd): the rest is what a client writes to `picoclaw mcp serve`
//!   (picoclaw-mcp's `ToolServer`, here with no tools), until the end of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use picoclaw_mcp::ToolServer;
use picoclaw_mcp::fuzzing::{call_result, listed_tool};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a runtime: {e}"))
    })
}

/// The other end writes `data`, then closes; what the side under test writes is kept in the
/// pipe's buffer (large enough for every answer to a fuzz input).
async fn pipe(
    data: &[u8],
) -> (
    tokio::io::ReadHalf<tokio::io::DuplexStream>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
    tokio::io::DuplexStream,
) {
    let (ours, mut theirs) = tokio::io::duplex(4 << 20);
    let _ = theirs.write_all(data).await;
    let _ = theirs.flush().await;
    let (read, write) = tokio::io::split(ours);
    (read, write, theirs)
}

async fn client_side(data: &[u8]) {
    let (read, write, mut theirs) = pipe(data).await;
    // The server's side ends with the input.
    let _ = theirs.shutdown().await;
    let Ok(client) = ().serve((read, write)).await else {
        return;
    };
    if let Ok(listed) = client.list_all_tools().await {
        for tool in &listed {
            if let Ok((name, _)) = listed_tool("fuzz", tool) {
                assert!(
                    name.starts_with("mcp_fuzz__"),
                    "a tool name out of place: {name}"
                );
            }
        }
    }
    if let Ok(result) = client.call_tool(CallToolRequestParams::new("echo")).await
        && let Ok(text) = call_result(&result)
    {
        // Cut at MAX_RESULT_BYTES, plus the line that says so.
        assert!(text.len() <= picoclaw_mcp::MAX_RESULT_BYTES + 100);
    }
    let _ = client.cancel().await;
}

async fn server_side(data: &[u8]) {
    let (read, write, mut theirs) = pipe(data).await;
    let _ = theirs.shutdown().await;
    let server = ToolServer::new(picoclaw_tools::ToolRegistry::new());
    if let Ok(running) = server.serve((read, write)).await {
        let _ = running.waiting().await;
    }
    drop(theirs);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        let work = async {
            if which % 2 == 0 {
                client_side(rest).await;
            } else {
                server_side(rest).await;
            }
        };
        // Neither side may wait for more once the input ended.
        if tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .is_err()
        {
            panic!("the MCP session did not end with its input");
        }
    });
});
