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
    //! The Logs page.
    use super::super::{Ctx, Page, Web, layout};
    use axum::extract::State;
    use axum::response::Response;
    use axum::routing::get;
    use maud::html;

    pub(super) fn routes() -> axum::Router<Web> {
        axum::Router::new().route(Page::Logs.path(), get(show))
    }

    async fn show(State(_web): State<Web>, axum::Extension(ctx): axum::Extension<Ctx>) -> Response {
        layout(&ctx, Page::Logs, html! { h1 { (Page::Logs.title()) } })
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
