//! `memory_search(query, limit)` and `memory_write(content, kind)`: the agent's long-term memory
//! in the workspace (`memory/MEMORY.md`, `memory/YYYYMM/YYYYMMDD.md`), through
//! [`WorkspaceMemory`].

use crate::args::{parse, schema};
use crate::{Tool, ToolContext, ToolOutput};
use async_trait::async_trait;
use picoclaw_api::ToolSpec;
use picoclaw_state::{Remembered, WorkspaceMemory};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Most results one search returns.
const MAX_LIMIT: usize = 50;

/// Full-text search over the memory notes.
#[derive(Debug, Clone)]
pub struct MemorySearchTool {
    memory: Arc<WorkspaceMemory>,
}

impl MemorySearchTool {
    pub fn new(memory: Arc<WorkspaceMemory>) -> Self {
        Self { memory }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    query: String,
    #[serde(default)]
    limit: Option<usize>,
}

#[async_trait]
impl Tool for MemorySearchTool {
    // Reads only.
    fn parallel_safe(&self) -> bool {
        true
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec::new(
            "memory_search",
            "Search long-term memory (MEMORY.md, daily notes) by words; best first.",
            schema(
                &[
                    ("query", "string", "Words to look for"),
                    (
                        "limit",
                        "integer",
                        "Most notes to return (default 10, at most 50)",
                    ),
                ],
                &["query"],
            ),
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: SearchArgs = match parse("memory_search", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        if picoclaw_state::query_terms(&args.query).is_empty() {
            return ToolOutput::error(
                "memory_search: the query has no words to search for; give a few keywords",
            );
        }
        let limit = args.limit.unwrap_or(10).clamp(1, MAX_LIMIT);
        match self.memory.search(&args.query, limit).await {
            Ok(hits) if hits.is_empty() => ToolOutput::ok(format!(
                "No notes in memory match \"{}\".",
                args.query.trim()
            )),
            Ok(hits) => {
                let mut out = format!("{} note(s) found:\n", hits.len());
                for hit in hits {
                    out.push_str(&format!(
                        "- {} ({}:{})\n",
                        hit.note.text, hit.note.source, hit.note.line
                    ));
                }
                ToolOutput::ok(out)
            }
            Err(e) => ToolOutput::error(format!("memory_search: {e}")),
        }
    }
}

/// Appends a durable fact to MEMORY.md (never twice) or a note to today's daily file.
#[derive(Debug, Clone)]
pub struct MemoryWriteTool {
    memory: Arc<WorkspaceMemory>,
}

impl MemoryWriteTool {
    pub fn new(memory: Arc<WorkspaceMemory>) -> Self {
        Self { memory }
    }
}

#[derive(Deserialize, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Fact,
    Daily,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    content: String,
    #[serde(default)]
    kind: Kind,
}

#[async_trait]
impl Tool for MemoryWriteTool {
    fn spec(&self) -> ToolSpec {
        let mut params = schema(
            &[
                (
                    "content",
                    "string",
                    "The fact or note, short and self-contained (\"The user's sister is Ana\")",
                ),
                (
                    "kind",
                    "string",
                    "\"fact\" (default): a durable fact for memory/MEMORY.md, skipped when \
                     already known; \"daily\": a note for today's memory/YYYYMM/YYYYMMDD.md",
                ),
            ],
            &["content"],
        );
        params["properties"]["kind"]["enum"] = serde_json::json!(["fact", "daily"]);
        ToolSpec::new(
            "memory_write",
            "Remember something across conversations: a durable fact about the user or their \
             world, or a note about today.",
            params,
        )
    }

    async fn call(&self, _ctx: &ToolContext, args: Value) -> ToolOutput {
        let args: WriteArgs = match parse("memory_write", args) {
            Ok(a) => a,
            Err(e) => return e,
        };
        match args.kind {
            Kind::Fact => match self.memory.remember(&args.content).await {
                Ok(Remembered::Added { line }) => {
                    ToolOutput::ok(format!("Remembered in memory/MEMORY.md (line {line})."))
                }
                Ok(Remembered::AlreadyKnown { line, existing }) => ToolOutput::ok(format!(
                    "Already known (memory/MEMORY.md line {line}: \"{existing}\"); nothing written."
                )),
                Err(e) => ToolOutput::error(format!("memory_write: {e}")),
            },
            Kind::Daily => {
                let today = chrono::Local::now().date_naive();
                match self.memory.add_daily_note(&args.content, today).await {
                    Ok(source) => ToolOutput::ok(format!("Noted in {source}.")),
                    Err(e) => ToolOutput::error(format!("memory_write: {e}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picoclaw_api::SessionKey;
    use picoclaw_state::InMemoryStore;
    use serde_json::json;

    fn tools() -> (tempfile::TempDir, MemorySearchTool, MemoryWriteTool) {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(WorkspaceMemory::new(
            dir.path(),
            Arc::new(InMemoryStore::new()),
        ));
        (
            dir,
            MemorySearchTool::new(Arc::clone(&memory)),
            MemoryWriteTool::new(memory),
        )
    }

    fn ctx() -> ToolContext {
        ToolContext::new(SessionKey::new("cli:test"))
    }

    #[tokio::test]
    async fn write_then_search() {
        let (dir, search, write) = tools();
        let out = write
            .call(&ctx(), json!({"content": "The user's sister is Ana"}))
            .await;
        assert!(!out.is_error, "{out:?}");
        assert!(out.content.contains("line 3"), "{out:?}");
        let again = write
            .call(
                &ctx(),
                json!({"content": "the user's sister is ana", "kind": "fact"}),
            )
            .await;
        assert!(again.content.starts_with("Already known"), "{again:?}");
        let daily = write
            .call(
                &ctx(),
                json!({"content": "Ana called about the trip", "kind": "daily"}),
            )
            .await;
        assert!(daily.content.starts_with("Noted in memory/"), "{daily:?}");

        let found = search.call(&ctx(), json!({"query": "Ana"})).await;
        assert!(!found.is_error);
        assert!(found.content.starts_with("2 note(s) found"), "{found:?}");
        assert!(
            found
                .content
                .contains("The user's sister is Ana (memory/MEMORY.md:3)"),
            "{found:?}"
        );
        let one = search
            .call(&ctx(), json!({"query": "Ana", "limit": 1}))
            .await;
        assert!(one.content.starts_with("1 note(s)"), "{one:?}");
        let none = search.call(&ctx(), json!({"query": "zebra"})).await;
        assert_eq!(none.content, "No notes in memory match \"zebra\".");
        assert!(dir.path().join("memory/MEMORY.md").is_file());
    }

    #[tokio::test]
    async fn bad_arguments_are_explained() {
        let (_dir, search, write) = tools();
        let out = search.call(&ctx(), json!({"query": "?!"})).await;
        assert!(out.is_error && out.content.contains("no words"), "{out:?}");
        let out = search.call(&ctx(), json!({})).await;
        assert!(out.is_error && out.content.contains("query"), "{out:?}");
        let out = write
            .call(&ctx(), json!({"content": "x", "kind": "forever"}))
            .await;
        assert!(
            out.is_error && out.content.contains("kind") || out.content.contains("forever"),
            "{out:?}"
        );
        let out = write.call(&ctx(), json!({"content": "   "})).await;
        assert!(out.is_error && out.content.contains("empty"), "{out:?}");
        let out = write
            .call(&ctx(), json!({"content": "y".repeat(5000)}))
            .await;
        assert!(
            out.is_error && out.content.contains("longer than"),
            "{out:?}"
        );
    }

    #[test]
    fn the_kind_parameter_is_an_enum() {
        let (_dir, _, write) = tools();
        let spec = write.spec();
        assert_eq!(
            spec.parameters["properties"]["kind"]["enum"],
            json!(["fact", "daily"])
        );
    }
}
