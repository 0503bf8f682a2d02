//! The memory section of a system prompt: MEMORY.md (whole, or its best-matching notes), the
//! recent daily notes and older related notes, within a token budget.

use super::format::{daily_source, strip_date_heading, tail_within};
use super::{LONG_TERM_FILE, WorkspaceMemory, lock};
use crate::MemoryHit;
use crate::StateError;
use chrono::NaiveDate;

/// Days of daily notes offered to the context (today and the two before, as the original).
const RECENT_DAYS: i64 = 3;

impl WorkspaceMemory {
    /// The memory section of a system prompt for a turn about `query`, within about
    /// `budget_tokens` (estimated at four bytes a token).
    ///
    /// MEMORY.md goes in whole while it takes at most 60% of the budget; past that, only its
    /// notes that best match the message do. Then the daily notes of the last three days,
    /// newest first (a day too long keeps its latest entries), then older notes that match.
    /// `None` when there is no memory at all.
    pub async fn context(
        &self,
        query: &str,
        budget_tokens: usize,
        today: NaiveDate,
    ) -> Result<Option<String>, StateError> {
        if budget_tokens == 0 {
            return Ok(None);
        }
        let query = query.trim();
        let report = self.sync().await;
        if let Err(e) = &report {
            tracing::warn!(error = %e, "memory index could not be updated; using it as it is");
        }
        let mut out = String::new();
        let mut left = budget_tokens;
        let mut included: Vec<String> = Vec::new();

        let share = budget_tokens * 6 / 10;
        // One search serves both the long-term notes and the older daily notes.
        let mut hits: Option<Vec<MemoryHit>> = None;
        let long_path = self.long_term_path();
        let long_len = self.metadata(&long_path).await.map_or(0, |m| m.len());
        // A file clearly too big is not even read: its notes come from the index.
        let long = if long_len > 0 && (long_len as usize).div_ceil(4) <= share * 2 {
            self.read_capped(&long_path).await.unwrap_or_default()
        } else {
            String::new()
        };
        let long = long.trim();
        if !long.is_empty() && tokens(long) <= share {
            out.push_str("### Long-term memory (memory/MEMORY.md)\n");
            out.push_str(long);
            out.push('\n');
            left = left.saturating_sub(tokens(long) + 12);
            included.push(LONG_TERM_FILE.to_owned());
        } else if long_len > 0 {
            let total = self.note_count(LONG_TERM_FILE);
            let found = hits.get_or_insert(self.store.search(query, 64).await.unwrap_or_default());
            let mut picked = Vec::new();
            let mut used = 0;
            for hit in found.iter().filter(|h| h.note.source == LONG_TERM_FILE) {
                let cost = tokens(&hit.note.text) + 2;
                if used + cost > share {
                    break;
                }
                used += cost;
                picked.push(&hit.note);
            }
            out.push_str(&format!(
                "### Long-term memory (memory/MEMORY.md has {total} notes, too many to \
                 include; {} most related to this message follow; use memory_search to \
                 find others)\n",
                picked.len()
            ));
            for note in picked {
                out.push_str("- ");
                out.push_str(&note.text);
                out.push('\n');
            }
            left = left.saturating_sub(used + 40);
            included.push(LONG_TERM_FILE.to_owned());
        }

        for back in 0..RECENT_DAYS {
            if left < 32 {
                break;
            }
            let Some(date) = today.checked_sub_signed(chrono::Duration::days(back)) else {
                break;
            };
            let source = daily_source(date);
            let Ok(text) = self.read_capped(&self.workspace.join(&source)).await else {
                continue;
            };
            let body = strip_date_heading(&text, date);
            if body.is_empty() {
                continue;
            }
            let heading = format!("### Daily notes {} ({source})\n", date.format("%Y-%m-%d"));
            let room = left.saturating_sub(tokens(&heading) + 12);
            let (shown, cut) = tail_within(body, room * 4);
            if shown.is_empty() {
                break;
            }
            out.push_str(&heading);
            if cut {
                out.push_str("[... earlier notes of the day omitted ...]\n");
            }
            out.push_str(shown);
            out.push('\n');
            left = left.saturating_sub(tokens(shown) + tokens(&heading) + 12);
            included.push(source);
        }

        // Older notes are searched only when some indexed file is not already in the section.
        let others = lock(&self.known)
            .as_ref()
            .is_some_and(|k| k.keys().any(|s| !included.contains(s)));
        if left >= 32 && !query.is_empty() && others {
            let found = match hits {
                Some(found) => found,
                None => self.store.search(query, 16).await.unwrap_or_default(),
            };
            let mut section = String::new();
            let mut used = 0;
            for hit in found.iter().filter(|h| !included.contains(&h.note.source)) {
                let line = format!("- {} ({})\n", hit.note.text, hit.note.source);
                let cost = tokens(&line);
                if used + cost + 12 > left {
                    break;
                }
                used += cost;
                section.push_str(&line);
            }
            if !section.is_empty() {
                out.push_str("### Older notes related to this message\n");
                out.push_str(&section);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

pub(super) fn tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}
