//! The Markdown layout of memory files: where a day's notes live, how a file splits into notes
//! (list items and paragraphs), how facts are cleaned and compared, and cutting text to fit.

use super::{MAX_ENTRY_CHARS, MEMORY_DIR};
use crate::MemoryNote;
use crate::StateError;
use chrono::NaiveDate;

/// One note is cut at this many bytes in the index.
const MAX_NOTE_BYTES: usize = 4000;

/// `memory/YYYYMM/YYYYMMDD.md`.
pub fn daily_source(date: NaiveDate) -> String {
    format!(
        "{MEMORY_DIR}/{}/{}.md",
        date.format("%Y%m"),
        date.format("%Y%m%d")
    )
}

/// A fact as one line: trimmed, inner newlines folded, not empty, not too long.
pub(super) fn one_line(fact: &str) -> Result<String, StateError> {
    let fact = fact
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let fact = strip_list_marker(&fact).trim().to_owned();
    if fact.is_empty() {
        return Err(StateError::Invalid("the fact is empty".into()));
    }
    if fact.chars().count() > MAX_ENTRY_CHARS {
        return Err(StateError::Invalid(format!(
            "the fact is longer than {MAX_ENTRY_CHARS} characters; keep facts short"
        )));
    }
    Ok(fact)
}

/// For comparing facts: lower case, words only, single spaces.
pub(super) fn normalize(text: &str) -> String {
    strip_list_marker(text.trim())
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `- x`, `* x`, `+ x`, `1. x`, `2) x` → `x`. Checkboxes stay (`[ ] x`).
fn strip_list_marker(line: &str) -> &str {
    let t = line.trim_start();
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(marker) {
            return rest;
        }
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 9 {
        let rest = &t[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return rest;
        }
    }
    line
}

fn is_list_item(line: &str) -> bool {
    strip_list_marker(line).len() != line.len()
}

/// Splits a Markdown memory file into notes: each list item (with its indented continuation
/// lines) and each paragraph is one; headings, rules and blank lines separate them.
pub fn split_notes(source: &str, text: &str) -> Vec<MemoryNote> {
    let mut notes = Vec::new();
    let mut current: Option<(u32, String)> = None;
    let mut in_fence = false;
    let flush = |current: &mut Option<(u32, String)>, notes: &mut Vec<MemoryNote>| {
        if let Some((line, mut body)) = current.take() {
            let trimmed = body.trim();
            if !trimmed.is_empty() {
                if body.len() > MAX_NOTE_BYTES {
                    let mut cut = MAX_NOTE_BYTES;
                    while !body.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    body.truncate(cut);
                }
                notes.push(MemoryNote::new(source, line, body.trim().to_owned()));
            }
        }
    };
    for (i, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            if trimmed.is_empty() || trimmed.starts_with('#') || is_rule(trimmed) {
                flush(&mut current, &mut notes);
                continue;
            }
            if is_list_item(line) {
                flush(&mut current, &mut notes);
                current = Some((line_no, strip_list_marker(line).trim().to_owned()));
                continue;
            }
        } else if trimmed.is_empty() {
            continue;
        }
        match &mut current {
            Some((_, body)) => {
                body.push(' ');
                body.push_str(trimmed);
            }
            None => current = Some((line_no, trimmed.to_owned())),
        }
    }
    flush(&mut current, &mut notes);
    notes
}

fn is_rule(line: &str) -> bool {
    let l: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    l.len() >= 3 && (l.chars().all(|c| c == '-') || l.chars().all(|c| c == '*'))
}

/// A daily file without its `# YYYY-MM-DD` heading (the section heading says the date).
pub(super) fn strip_date_heading(text: &str, date: NaiveDate) -> &str {
    let t = text.trim();
    let heading = format!("# {}", date.format("%Y-%m-%d"));
    t.strip_prefix(heading.as_str()).unwrap_or(t).trim()
}

/// The end of `text` that fits in `max_bytes`, cut at a line start; and whether it was cut.
pub(super) fn tail_within(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(nl) => (text[start + nl + 1..].trim(), true),
        None => ("", true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn notes_are_items_and_paragraphs() {
        let text = "# Long-term Memory\n\n## People\n- Sister: Ana\n  (lives in Porto)\n* Dog: Rex\n\n\
                    The user works\nat night.\n\n1. first\n2) second\n---\n```\ncode line\n\n# not a heading\n```\n";
        let notes = split_notes("memory/MEMORY.md", text);
        let got: Vec<(u32, &str)> = notes.iter().map(|n| (n.line, n.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (4, "Sister: Ana (lives in Porto)"),
                (6, "Dog: Rex"),
                (8, "The user works at night."),
                (11, "first"),
                (12, "second"),
                (15, "code line # not a heading"),
            ]
        );
        assert!(split_notes("x", "").is_empty());
        assert!(split_notes("x", "# only a heading\n\n---\n").is_empty());
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let text = "é".repeat(3000);
        let notes = split_notes("x", &text);
        assert!(notes[0].text.len() <= MAX_NOTE_BYTES);
    }

    #[test]
    fn normalizing_ignores_case_marks_and_punctuation() {
        assert_eq!(normalize("- The user likes TEA."), "the user likes tea");
        assert_eq!(normalize("the  user likes tea"), "the user likes tea");
        assert_eq!(
            daily_source(date("2026-01-05")),
            "memory/202601/20260105.md"
        );
    }

    #[test]
    fn tails_start_at_a_line() {
        let text = "one\ntwo\nthree\nfour";
        assert_eq!(tail_within(text, 100), (text, false));
        assert_eq!(tail_within(text, 11), ("three\nfour", true));
        assert_eq!(tail_within(text, 2), ("", true));
    }
}
