//! The Memory page: search MEMORY.md and the daily notes (the search the agent's memory tool
//! and `picoclaw memory search` use), add a fact to MEMORY.md (as the memory tool writes it,
//! beneath the workspace's directory handle), and read MEMORY.md and the list of daily notes.
//! The default agent's memory.

use super::{Ctx, Page, Web, back_to, csrf_field, failure, layout};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use maud::html;
use picoclaw_state::{Remembered, StateError, WorkspaceMemory};
use serde::Deserialize;
use std::sync::Arc;

/// Longest fact the form takes (bytes); the memory itself refuses facts over
/// [`picoclaw_state::MAX_ENTRY_CHARS`] characters.
pub(super) const MAX_FACT_BYTES: usize = 4096;
/// Longest search query (characters).
const MAX_QUERY_CHARS: usize = 500;
/// Most hits shown.
const HITS: usize = 20;

pub(super) fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route(Page::Memory.path(), get(show))
        .route("/ui/memory/add", post(add))
}

/// The default agent's memory.
fn memory_of(web: &Web) -> Option<Arc<WorkspaceMemory>> {
    web.api
        .agents
        .as_ref()
        .and_then(|set| set.default_agent().report.memory.clone())
}

#[derive(Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn show(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let Some(memory) = memory_of(&web) else {
        return failure(
            &ctx,
            Page::Memory,
            "cannot show the memory",
            "this gateway's agent has no workspace memory",
        );
    };
    let q = query.q.trim();
    let search = if q.is_empty() {
        None
    } else if q.chars().count() > MAX_QUERY_CHARS {
        Some(Err(format!(
            "the query is longer than {MAX_QUERY_CHARS} characters; use a few words"
        )))
    } else if picoclaw_state::query_terms(q).is_empty() {
        Some(Err(
            "the query has no words to search for; type a word or two".to_owned(),
        ))
    } else {
        Some(
            memory
                .search(q, HITS)
                .await
                .map_err(|e| format!("the search failed: {e}")),
        )
    };
    let mut text = match memory.long_term_text().await {
        Ok(t) => t,
        Err(e) => return failure(&ctx, Page::Memory, "cannot read memory/MEMORY.md", e),
    };
    // The agent can grow MEMORY.md: the page shows its start.
    const SHOWN_BYTES: usize = 64 * 1024;
    if text.len() > SHOWN_BYTES {
        let mut cut = SHOWN_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n… (the rest of MEMORY.md is not shown here; search finds it)");
    }
    let files: Vec<String> = memory
        .files()
        .await
        .into_iter()
        .filter(|f| f != picoclaw_state::LONG_TERM_FILE)
        .collect();
    let workspace = memory.workspace().display().to_string();
    layout(
        &ctx,
        Page::Memory,
        html! {
            h1 { (Page::Memory.title()) }
            p.muted { "Long-term memory of the default agent, in " code { (workspace) "/memory" } "." }
            form.row #memory-search-form method="get" action=(Page::Memory.path()) role="search" {
                div {
                    label for="memory-search" { "Search MEMORY.md and the daily notes" }
                    input #memory-search type="search" name="q" value=(q) maxlength="500"
                        placeholder="words to look for";
                }
                button type="submit" { "Search" }
            }
            @match &search {
                None => {},
                Some(Err(why)) => p.notice.error role="alert" { (why) },
                Some(Ok(hits)) if hits.is_empty() => p #memory-hits .muted { "No notes match \u{201c}" (q) "\u{201d}." },
                Some(Ok(hits)) => div.table-wrap {
                    table #memory-hits {
                        caption { (hits.len()) " note(s) match \u{201c}" (q) "\u{201d}, best first" }
                        thead { tr { th scope="col" { "File" } th.num scope="col" { "Line" } th scope="col" { "Note" } } }
                        tbody {
                            @for hit in hits {
                                tr {
                                    td { code { (hit.note.source) } }
                                    td.num { (hit.note.line) }
                                    td { (hit.note.text) }
                                }
                            }
                        }
                    }
                },
            }
            h2 { "Add a fact" }
            form #memory-add method="post" action="/ui/memory/add" {
                (csrf_field(&ctx))
                label for="memory-fact" { "A durable fact (one line is kept; appended to MEMORY.md)" }
                textarea #memory-fact name="fact" rows="2" required maxlength=(MAX_FACT_BYTES) {}
                button type="submit" { "Remember" }
            }
            h2 { "MEMORY.md" }
            @if text.trim().is_empty() {
                p.muted #memory-content { "MEMORY.md is empty." }
            } @else {
                pre.memory-file #memory-content { (text) }
            }
            h2 { "Daily notes" }
            @if files.is_empty() {
                p.muted #memory-files { "No daily notes yet." }
            } @else {
                ul #memory-files {
                    @for file in &files { li { code { (file) } } }
                }
            }
        },
    )
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    fact: String,
}

async fn add(
    State(web): State<Web>,
    axum::Extension(ctx): axum::Extension<Ctx>,
    axum::Form(form): axum::Form<AddForm>,
) -> Response {
    let result = match memory_of(&web) {
        None => Err("this gateway's agent has no workspace memory".to_owned()),
        Some(memory) => remember(&memory, &form.fact).await,
    };
    back_to(&web, &ctx, Page::Memory.path(), result)
}

/// Checks a fact from the form and appends it to MEMORY.md: what to tell the user.
async fn remember(memory: &WorkspaceMemory, fact: &str) -> Result<String, String> {
    if fact.trim().is_empty() {
        return Err("the fact is empty; type what to remember".to_owned());
    }
    if fact.len() > MAX_FACT_BYTES {
        return Err(format!(
            "the fact is {} bytes, more than {MAX_FACT_BYTES}; keep one fact short",
            fact.len()
        ));
    }
    match memory.remember(fact).await {
        Ok(Remembered::Added { line }) => Ok(format!("Added to memory/MEMORY.md line {line}.")),
        Ok(Remembered::AlreadyKnown { line, existing }) => Ok(format!(
            "Already known (memory/MEMORY.md line {line}: {existing}); nothing was written."
        )),
        Err(StateError::Invalid(why)) => Err(why),
        Err(e) => Err(format!("cannot write memory/MEMORY.md: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn facts_are_checked_then_appended_once() {
        let dir = tempfile::tempdir().unwrap();
        let memory =
            WorkspaceMemory::new(dir.path(), Arc::new(picoclaw_state::InMemoryStore::new()));
        assert!(remember(&memory, "  \n").await.is_err());
        assert!(
            remember(&memory, &"x".repeat(MAX_FACT_BYTES + 1))
                .await
                .unwrap_err()
                .contains("4096")
        );
        assert!(!dir.path().join("memory/MEMORY.md").exists());
        let said = remember(&memory, "Ada likes tea").await.unwrap();
        assert!(said.contains("line 3"), "{said}");
        assert!(
            remember(&memory, "ada likes tea.")
                .await
                .unwrap()
                .starts_with("Already known")
        );
        let text = std::fs::read_to_string(dir.path().join("memory/MEMORY.md")).unwrap();
        assert_eq!(text, "# Long-term Memory\n\n- Ada likes tea\n");
    }
}
