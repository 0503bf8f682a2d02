//! Runs the tool calls of one model response, each time-limited, results returned in the order of
//! the calls as tool messages. Consecutive calls of tools that only read
//! ([`Tool::parallel_safe`](picoclaw_tools::Tool::parallel_safe)) run concurrently; any other call
//! runs alone, after the calls before it and before the calls after it, so "write the file, then
//! run it" happens in that order. Failures become text for the model, never errors.

use crate::events::{AgentEvent, EventSink};
use picoclaw_api::{ChatMessage, ToolCall};
use picoclaw_tools::{ToolContext, ToolOutput, ToolRegistry};
use std::time::Duration;

pub(crate) struct ToolLoopConfig {
    pub timeout: Duration,
    pub max_result_bytes: usize,
}

pub(crate) async fn run_tool_calls(
    tools: &ToolRegistry,
    ctx: &ToolContext,
    calls: &[ToolCall],
    cfg: &ToolLoopConfig,
    events: &dyn EventSink,
) -> Vec<ChatMessage> {
    let mut results = Vec::with_capacity(calls.len());
    let mut start = 0;
    while start < calls.len() {
        let mut end = start + 1;
        if tools.is_parallel_safe(&calls[start].name) {
            while end < calls.len() && tools.is_parallel_safe(&calls[end].name) {
                end += 1;
            }
        }
        results.extend(
            futures::future::join_all(
                calls[start..end]
                    .iter()
                    .map(|call| run_call(tools, ctx, call, cfg, events)),
            )
            .await,
        );
        start = end;
    }
    results
}

async fn run_call(
    tools: &ToolRegistry,
    ctx: &ToolContext,
    call: &ToolCall,
    cfg: &ToolLoopConfig,
    events: &dyn EventSink,
) -> ChatMessage {
    events.event(AgentEvent::ToolStarted {
        id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
    });
    let output = run_one(tools, ctx, call, cfg.timeout).await;
    let content = cap(output.content, cfg.max_result_bytes);
    tracing::debug!(tool = %call.name, is_error = output.is_error, bytes = content.len(), "tool call finished");
    events.event(AgentEvent::ToolFinished {
        id: call.id.clone(),
        name: call.name.clone(),
        is_error: output.is_error,
        preview: preview(&content),
    });
    ChatMessage::tool_result(call.id.clone(), call.name.clone(), content)
}

async fn run_one(
    tools: &ToolRegistry,
    ctx: &ToolContext,
    call: &ToolCall,
    timeout: Duration,
) -> ToolOutput {
    if tools.get(&call.name).is_none() {
        let available: Vec<&str> = tools.names().collect();
        return ToolOutput::error(format!(
            "Error: there is no tool named '{}'. Available tools: {}.",
            call.name,
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            }
        ));
    }
    let raw = call.arguments.trim();
    let args = if raw.is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(other) => {
                return ToolOutput::error(format!(
                    "Error: the arguments for '{}' must be a JSON object, got {}. Call it again \
                     with an object matching its parameters.",
                    call.name,
                    type_name(&other)
                ));
            }
            Err(err) => {
                return ToolOutput::error(format!(
                    "Error: the arguments for '{}' are not valid JSON ({err}). Call it again with \
                     a JSON object matching its parameters.",
                    call.name
                ));
            }
        }
    };
    match tokio::time::timeout(timeout, tools.call(ctx, &call.name, args)).await {
        Ok(output) => output,
        Err(_) => {
            // The registry's own record of the call never happens: the call was dropped.
            tracing::trace!(
                target: "audit",
                kind = "tool_call",
                session = ctx.session_key.as_str(),
                tool = call.name.as_str(),
                outcome = "timeout",
                ms = timeout.as_millis() as u64,
                "tool call"
            );
            ToolOutput::error(format!(
                "Error: '{}' did not finish within {} seconds and was stopped.",
                call.name,
                timeout.as_secs()
            ))
        }
    }
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn cap(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[... result truncated: {} of {} bytes shown ...]",
        cut, total
    ));
    text
}

fn preview(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut out: String = line.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use picoclaw_api::{SessionKey, ToolSpec};
    use picoclaw_tools::Tool;
    use std::sync::Arc;

    struct Sleepy(u64, &'static str);

    #[async_trait]
    impl Tool for Sleepy {
        fn spec(&self) -> ToolSpec {
            ToolSpec::new(self.1, "sleeps", serde_json::json!({"type":"object"}))
        }
        async fn call(&self, _ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
            tokio::time::sleep(Duration::from_millis(self.0)).await;
            ToolOutput::ok(format!("{} done {}", self.1, args))
        }
    }

    fn cfg(timeout_ms: u64) -> ToolLoopConfig {
        ToolLoopConfig {
            timeout: Duration::from_millis(timeout_ms),
            max_result_bytes: 1000,
        }
    }

    /// A read-only tool that waits until `n` calls of it are running at once: run one at a time,
    /// it never finishes (and the loop's timeout turns that into an error result).
    struct Rendezvous(Arc<tokio::sync::Barrier>);

    #[async_trait]
    impl Tool for Rendezvous {
        fn spec(&self) -> ToolSpec {
            ToolSpec::new("look", "reads", serde_json::json!({"type":"object"}))
        }
        async fn call(&self, _ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
            self.0.wait().await;
            ToolOutput::ok(format!("looked {args}"))
        }
        fn parallel_safe(&self) -> bool {
            true
        }
    }

    /// A tool that changes things: logs when each call starts and ends.
    struct Writer(Arc<std::sync::Mutex<Vec<String>>>);

    #[async_trait]
    impl Tool for Writer {
        fn spec(&self) -> ToolSpec {
            ToolSpec::new("write", "writes", serde_json::json!({"type":"object"}))
        }
        async fn call(&self, _ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
            let n = args["n"].clone();
            self.0.lock().unwrap().push(format!("start {n}"));
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.0.lock().unwrap().push(format!("end {n}"));
            ToolOutput::ok(format!("wrote {n}"))
        }
    }

    #[tokio::test]
    async fn read_only_calls_run_together_and_writes_run_alone_in_order() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tools = ToolRegistry::new()
            .with(Rendezvous(Arc::new(tokio::sync::Barrier::new(3))))
            .with(Writer(Arc::clone(&log)));
        assert!(tools.is_parallel_safe("look"));
        assert!(!tools.is_parallel_safe("write"));
        assert!(!tools.is_parallel_safe("nope"));
        let ctx = ToolContext::new(SessionKey::new("t"));
        let calls = vec![
            ToolCall::new("1", "write", r#"{"n":1}"#),
            ToolCall::new("2", "look", r#"{"n":2}"#),
            ToolCall::new("3", "look", r#"{"n":3}"#),
            ToolCall::new("4", "look", r#"{"n":4}"#),
            ToolCall::new("5", "write", r#"{"n":5}"#),
            ToolCall::new("6", "write", r#"{"n":6}"#),
        ];
        let out = run_tool_calls(&tools, &ctx, &calls, &cfg(10_000), &()).await;
        let ids: Vec<_> = out
            .iter()
            .map(|m| m.tool_call_id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
        // The three reads met at the barrier, so they ran at the same time.
        for m in &out[1..4] {
            assert!(m.text().starts_with("looked"), "{}", m.text());
        }
        // The writes never overlapped and kept their order.
        assert_eq!(
            *log.lock().unwrap(),
            ["start 1", "end 1", "start 5", "end 5", "start 6", "end 6"]
        );
    }

    /// Like [`Writer`] but read-only, logging into the same log.
    struct Reader(Arc<std::sync::Mutex<Vec<String>>>);

    #[async_trait]
    impl Tool for Reader {
        fn spec(&self) -> ToolSpec {
            ToolSpec::new("read", "reads", serde_json::json!({"type":"object"}))
        }
        async fn call(&self, ctx: &ToolContext, args: serde_json::Value) -> ToolOutput {
            Writer(Arc::clone(&self.0)).call(ctx, args).await
        }
        fn parallel_safe(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_write_between_reads_splits_them() {
        // read, write, read: the reads are not gathered across the write.
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tools = ToolRegistry::new()
            .with(Reader(Arc::clone(&log)))
            .with(Writer(Arc::clone(&log)));
        let ctx = ToolContext::new(SessionKey::new("t"));
        let calls = vec![
            ToolCall::new("1", "read", r#"{"n":1}"#),
            ToolCall::new("2", "write", r#"{"n":2}"#),
            ToolCall::new("3", "read", r#"{"n":3}"#),
        ];
        run_tool_calls(&tools, &ctx, &calls, &cfg(10_000), &()).await;
        assert_eq!(
            *log.lock().unwrap(),
            ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]
        );
    }

    #[tokio::test]
    async fn bad_calls_become_error_text() {
        let tools = ToolRegistry::new()
            .with(Sleepy(0, "t"))
            .with(Sleepy(1000, "stuck"));
        let ctx = ToolContext::new(SessionKey::new("t"));
        let calls = vec![
            ToolCall::new("1", "nope", "{}"),
            ToolCall::new("2", "t", "{not json"),
            ToolCall::new("3", "t", "[1,2]"),
            ToolCall::new("4", "stuck", "{}"),
            ToolCall::new("5", "t", ""),
        ];
        let out = run_tool_calls(&tools, &ctx, &calls, &cfg(50), &()).await;
        assert!(out[0].text().contains("no tool named 'nope'"));
        assert!(out[0].text().contains("stuck, t"));
        assert!(out[1].text().contains("not valid JSON"));
        assert!(
            out[2]
                .text()
                .contains("must be a JSON object, got an array")
        );
        assert!(out[3].text().contains("did not finish"));
        assert!(out[4].text().starts_with("t done {}"));
    }

    #[test]
    fn cap_respects_utf8() {
        let s = "é".repeat(10);
        let c = cap(s, 5);
        assert!(c.starts_with("éé"));
        assert!(c.contains("4 of 20 bytes"));
    }
}
