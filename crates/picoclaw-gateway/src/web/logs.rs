//! The gateway's recent log lines, for the Logs page: a bounded ring the application's logger
//! writes into ([`LogRing::writer`], a `std::io::Write` per line), read by the page with a
//! sequence number so a live view asks only for what is new.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Lines kept by default.
pub const DEFAULT_LINES: usize = 2000;
/// Longest line kept (longer lines are cut).
pub const MAX_LINE_BYTES: usize = 4096;

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<(u64, String)>,
    next: u64,
}

/// The last lines the gateway logged.
#[derive(Debug)]
pub struct LogRing {
    capacity: usize,
    ring: Mutex<Ring>,
    /// Woken at each new line (the live view waits on it).
    pub changed: tokio::sync::Notify,
}

impl Default for LogRing {
    fn default() -> Self {
        Self::new(DEFAULT_LINES)
    }
}

impl LogRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(Ring::default()),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Adds one line (a trailing newline is dropped; ANSI colour codes are removed).
    pub fn push(&self, line: &str) {
        let mut text = strip_ansi(line.trim_end_matches(['\n', '\r']));
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        {
            let mut ring = self
                .ring
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let seq = ring.next;
            ring.next += 1;
            if ring.lines.len() == self.capacity {
                ring.lines.pop_front();
            }
            ring.lines.push_back((seq, text));
        }
        self.changed.notify_waiters();
    }

    /// The lines after sequence number `after` (all kept lines when None), oldest first, with
    /// their numbers.
    pub fn since(&self, after: Option<u64>) -> Vec<(u64, String)> {
        let ring = self
            .ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ring.lines
            .iter()
            .filter(|(seq, _)| after.is_none_or(|a| *seq > a))
            .cloned()
            .collect()
    }

    /// A writer for one formatted log event (a `tracing_subscriber` `MakeWriter` makes one per
    /// event): the text is split into lines when dropped.
    pub fn writer(self: &Arc<Self>) -> LineWriter {
        LineWriter {
            ring: Arc::clone(self),
            buf: Vec::new(),
        }
    }
}

/// Collects one event's bytes and pushes them as lines on drop.
#[derive(Debug)]
pub struct LineWriter {
    ring: Arc<LogRing>,
    buf: Vec<u8>,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() < MAX_LINE_BYTES * 4 {
            self.buf.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.ring.push(line);
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

pub(super) fn routes() -> axum::Router<super::Web> {
    page::routes()
}

mod page {
    //! The Logs page: the kept lines, newest at the bottom, filtered by level and text, and
    //! `GET /ui/api/logs?after=<seq>` for the live view (it waits up to [`WAIT`] for a new line).
    use super::super::{Ctx, Page, Web, asset_url, json_error, layout};
    use super::LogRing;
    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use maud::html;
    use serde::Deserialize;
    use std::time::Duration;

    /// How long the live view's request waits for a new line before answering with none.
    pub(super) const WAIT: Duration = Duration::from_secs(25);
    /// The longest text filter taken.
    const MAX_FILTER_CHARS: usize = 200;
    const NOT_CAPTURED: &str = "This gateway does not capture its log lines in this process \
        (it was started by a program that set up its own logger): read them where that program \
        writes them (stderr, or ~/.picoclaw/logs with --log-files).";

    pub(super) fn routes() -> axum::Router<Web> {
        axum::Router::new()
            .route(Page::Logs.path(), get(show))
            .route("/ui/api/logs", get(api))
    }

    /// The levels, most severe first.
    pub(super) const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

    /// A line's level: a level word among its first three words (after the time stamp).
    fn level_of(line: &str) -> Option<usize> {
        line.split_whitespace()
            .take(3)
            .find_map(|w| LEVELS.iter().position(|l| *l == w))
    }

    #[derive(Debug, Default, Deserialize)]
    pub(super) struct Filter {
        /// `error`, `warn`, `info`, `debug`: that level and the more severe ones; empty: all.
        #[serde(default)]
        level: String,
        /// Lines containing this text (case-insensitive).
        #[serde(default)]
        q: String,
        /// Only lines after this sequence number.
        after: Option<u64>,
        /// Whether to wait for a line when there is none yet (the live view).
        #[serde(default)]
        wait: bool,
    }

    impl Filter {
        fn check(&self) -> Result<(Option<usize>, String), String> {
            let level = match self.level.trim() {
                "" | "all" => None,
                l => Some(
                    LEVELS
                        .iter()
                        .position(|x| x.eq_ignore_ascii_case(l))
                        .ok_or_else(|| {
                            "unknown level; use error, warn, info, debug or all".to_owned()
                        })?,
                ),
            };
            if self.q.chars().count() > MAX_FILTER_CHARS {
                return Err(format!(
                    "the text filter is longer than {MAX_FILTER_CHARS} characters"
                ));
            }
            Ok((level, self.q.trim().to_lowercase()))
        }
    }

    /// One line as shown.
    #[derive(Debug, serde::Serialize)]
    pub(super) struct Line {
        seq: u64,
        text: String,
        level: &'static str,
    }

    /// The lines after `after` that pass the filter, and the sequence number to ask after next.
    /// A line without a level (a continuation) has the level of the line before it.
    pub(super) fn select(
        ring: &LogRing,
        after: Option<u64>,
        level: Option<usize>,
        q: &str,
    ) -> (Vec<Line>, Option<u64>) {
        let all = ring.since(None);
        let q = q.to_lowercase();
        let mut next = after;
        let mut current = LEVELS.len() - 1;
        let mut out = Vec::new();
        for (seq, text) in all {
            if let Some(l) = level_of(&text) {
                current = l;
            }
            if after.is_some_and(|a| seq <= a) {
                continue;
            }
            next = Some(seq);
            if level.is_some_and(|max| current > max) {
                continue;
            }
            if !q.is_empty() && !text.to_lowercase().contains(&q) {
                continue;
            }
            out.push(Line {
                seq,
                text,
                level: LEVELS[current],
            });
        }
        (out, next)
    }

    async fn api(State(web): State<Web>, Query(filter): Query<Filter>) -> Response {
        let Some(ring) = web.dash.logs.clone() else {
            return json_error(StatusCode::NOT_FOUND, NOT_CAPTURED);
        };
        let (level, q) = match filter.check() {
            Ok(f) => f,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
        };
        // At most this many requests wait for lines at once; past that, a request waits a
        // moment and answers empty (the page asks again), so open tabs cannot pile up waiters.
        static WAITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(16);
        let _permit = if filter.wait {
            match WAITERS.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    return axum::Json(serde_json::json!({"lines": [], "next": filter.after}))
                        .into_response();
                }
            }
        } else {
            None
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut after = filter.after;
        loop {
            // Registered before looking, so a line pushed in between still wakes this request.
            let changed = ring.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (lines, next) = select(&ring, after, level, &q);
            if !filter.wait || !lines.is_empty() {
                return axum::Json(serde_json::json!({"lines": lines, "next": next}))
                    .into_response();
            }
            // Lines the filter leaves out are passed over while waiting.
            after = next;
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return axum::Json(serde_json::json!({"lines": [], "next": after})).into_response();
            }
        }
    }

    async fn show(
        State(web): State<Web>,
        axum::Extension(ctx): axum::Extension<Ctx>,
        Query(filter): Query<Filter>,
    ) -> Response {
        let checked = filter.check();
        let (level, q) = checked.clone().unwrap_or((None, String::new()));
        let selected = level
            .map(|l| LEVELS[l].to_ascii_lowercase())
            .unwrap_or_default();
        let body = html! {
            h1 { (Page::Logs.title()) }
            @if let Err(e) = &checked {
                p.notice.error role="alert" { "Filter ignored: " (e) }
            }
            @match &web.dash.logs {
                None => p.notice.error #logs-none role="status" { (NOT_CAPTURED) },
                Some(ring) => {
                    @let (lines, next) = select(ring, None, level, &q);
                    form.row.logs-controls #logs-form method="get" action=(Page::Logs.path()) {
                        div {
                            label for="logs-level" { "Level" }
                            select #logs-level name="level" {
                                option value="" selected[selected.is_empty()] { "All" }
                                @for l in &LEVELS[..4] {
                                    @let v = l.to_ascii_lowercase();
                                    option value=(v) selected[selected == v] { (l) " and above" }
                                }
                            }
                        }
                        div {
                            label for="logs-filter" { "Text" }
                            input #logs-filter type="search" name="q" value=(filter.q)
                                maxlength=(MAX_FILTER_CHARS) placeholder="filter lines";
                        }
                        button type="submit" { "Apply" }
                        button.secondary #logs-pause type="button" aria-pressed="false" hidden { "Pause" }
                    }
                    p.muted #logs-status role="status" aria-live="polite" {
                        (lines.len()) " lines shown; newest at the bottom."
                    }
                    div.logs-view #logs-view tabindex="0" aria-label="Log lines"
                        data-next=(next.map(|n| n.to_string()).unwrap_or_default()) {
                        ol.logs #logs-list {
                            @for line in &lines {
                                li data-seq=(line.seq) data-level=(line.level) { (line.text) }
                            }
                        }
                    }
                    script src=(asset_url("logs.js")) defer {}
                }
            }
        };
        layout(&ctx, Page::Logs, body)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lines_are_selected_by_number_level_and_text() {
            let ring = LogRing::new(10);
            ring.push("2026-01-01T00:00:00Z  INFO gateway listening");
            ring.push("2026-01-01T00:00:01Z  WARN slow answer");
            ring.push("  a continuation of the warning");
            ring.push("2026-01-01T00:00:02Z ERROR failed");
            ring.push("2026-01-01T00:00:03Z DEBUG detail");
            let texts = |lines: Vec<Line>| -> Vec<u64> { lines.iter().map(|l| l.seq).collect() };
            let (all, next) = select(&ring, None, None, "");
            assert_eq!(texts(all), vec![0, 1, 2, 3, 4]);
            assert_eq!(next, Some(4));
            let (warn, _) = select(&ring, None, Some(1), "");
            assert_eq!(texts(warn), vec![1, 2, 3]);
            let (after, next) = select(&ring, Some(2), None, "");
            assert_eq!(texts(after), vec![3, 4]);
            assert_eq!(next, Some(4));
            let (text, _) = select(&ring, None, None, "LISTENING");
            assert_eq!(texts(text), vec![0]);
            let (none, next) = select(&ring, Some(4), None, "");
            assert!(none.is_empty());
            assert_eq!(next, Some(4));
        }

        #[test]
        fn filters_are_checked() {
            let f = |level: &str, q: &str| Filter {
                level: level.into(),
                q: q.into(),
                ..Filter::default()
            };
            assert_eq!(f("warn", "").check(), Ok((Some(1), String::new())));
            assert_eq!(f("", " X ").check(), Ok((None, "x".to_owned())));
            assert!(f("loud", "").check().is_err());
            assert!(f("", &"x".repeat(201)).check().is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_ring_keeps_the_last_lines_with_their_numbers() {
        let ring = LogRing::new(3);
        for i in 0..5 {
            ring.push(&format!("line {i}\n"));
        }
        let all = ring.since(None);
        assert_eq!(
            all,
            vec![
                (2, "line 2".into()),
                (3, "line 3".into()),
                (4, "line 4".into())
            ]
        );
        assert_eq!(ring.since(Some(3)), vec![(4, "line 4".into())]);
        assert!(ring.since(Some(4)).is_empty());
    }

    #[test]
    fn a_writer_pushes_lines_without_colours() {
        let ring = Arc::new(LogRing::new(10));
        {
            let mut w = ring.writer();
            w.write_all(b"\x1b[32m INFO\x1b[0m gateway listening\n  second\n")
                .unwrap();
        }
        let lines: Vec<String> = ring.since(None).into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines, vec![" INFO gateway listening", "  second"]);
        ring.push(&"é".repeat(MAX_LINE_BYTES));
        assert!(ring.since(Some(1))[0].1.len() <= MAX_LINE_BYTES + 3);
    }
}
