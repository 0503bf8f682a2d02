//! Process metrics in the Prometheus text format (`GET /metrics`): turns by source and outcome,
//! turn latency, tool calls, tokens, and queue depth. A handful of atomic counters rendered by
//! hand: the exposition format is a few lines of text, not worth a registry crate here.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where a turn came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Api,
    Channel,
    Cron,
    Heartbeat,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Api,
        Source::Channel,
        Source::Cron,
        Source::Heartbeat,
    ];

    fn label(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Channel => "channel",
            Source::Cron => "cron",
            Source::Heartbeat => "heartbeat",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct PerSource {
    ok: AtomicU64,
    error: AtomicU64,
    micros: AtomicU64,
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    turns: [PerSource; 4],
    tool_calls: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    reasoning_tokens: AtomicU64,
    deliveries_ok: AtomicU64,
    deliveries_failed: AtomicU64,
}

impl Metrics {
    /// Counts one finished turn.
    pub fn turn(
        &self,
        source: Source,
        ok: bool,
        took: Duration,
        tool_calls: usize,
        prompt: u64,
        completion: u64,
    ) {
        let s = &self.turns[source.index()];
        if ok {
            s.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            s.error.fetch_add(1, Ordering::Relaxed);
        }
        s.micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.tool_calls
            .fetch_add(tool_calls as u64, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(completion, Ordering::Relaxed);
    }

    /// Turns counted so far, ended well or not.
    pub fn turns_total(&self) -> u64 {
        self.turns
            .iter()
            .map(|s| s.ok.load(Ordering::Relaxed) + s.error.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts completion tokens a turn's model calls spent reasoning (already counted as
    /// completion tokens by [`Metrics::turn`]; this is the share of them, not more).
    pub fn reasoning(&self, tokens: u64) {
        self.reasoning_tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Counts one outbound message the channel took.
    pub fn delivered(&self) {
        self.deliveries_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one attempt at an outbound message that failed.
    pub fn delivery_failed(&self) {
        self.deliveries_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `active_sessions` is the dispatcher's current count.
    pub fn render(&self, active_sessions: usize) -> String {
        let mut out = String::with_capacity(2048);
        let _ = writeln!(
            out,
            "# HELP picoclaw_turns_total Agent turns finished, by source and outcome."
        );
        let _ = writeln!(out, "# TYPE picoclaw_turns_total counter");
        for src in Source::ALL {
            let s = &self.turns[src.index()];
            let _ = writeln!(
                out,
                "picoclaw_turns_total{{source=\"{}\",outcome=\"ok\"}} {}",
                src.label(),
                s.ok.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "picoclaw_turns_total{{source=\"{}\",outcome=\"error\"}} {}",
                src.label(),
                s.error.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP picoclaw_turn_seconds_sum Time spent in turns (model and tools), by source."
        );
        let _ = writeln!(out, "# TYPE picoclaw_turn_seconds_sum counter");
        for src in Source::ALL {
            let micros = self.turns[src.index()].micros.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "picoclaw_turn_seconds_sum{{source=\"{}\"}} {:.6}",
                src.label(),
                micros as f64 / 1e6
            );
        }
        for (name, help, v) in [
            (
                "picoclaw_tool_calls_total",
                "Tool calls executed.",
                &self.tool_calls,
            ),
            (
                "picoclaw_prompt_tokens_total",
                "Prompt tokens reported by providers.",
                &self.prompt_tokens,
            ),
            (
                "picoclaw_completion_tokens_total",
                "Completion tokens reported by providers.",
                &self.completion_tokens,
            ),
            (
                "picoclaw_reasoning_tokens_total",
                "Completion tokens spent reasoning, as reported (part of the completion tokens).",
                &self.reasoning_tokens,
            ),
            (
                "picoclaw_deliveries_total",
                "Replies handed to channels.",
                &self.deliveries_ok,
            ),
            (
                "picoclaw_delivery_failures_total",
                "Replies a channel refused (retried later).",
                &self.deliveries_failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP picoclaw_active_sessions Sessions with messages being processed or queued."
        );
        let _ = writeln!(out, "# TYPE picoclaw_active_sessions gauge");
        let _ = writeln!(out, "picoclaw_active_sessions {active_sessions}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.turn(Source::Api, true, Duration::from_millis(1500), 2, 100, 20);
        m.turn(Source::Channel, false, Duration::from_millis(10), 0, 0, 0);
        m.reasoning(12);
        m.delivered();
        let text = m.render(3);
        assert!(
            text.contains("picoclaw_turns_total{source=\"api\",outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("picoclaw_turns_total{source=\"channel\",outcome=\"error\"} 1\n"));
        assert!(text.contains("picoclaw_turn_seconds_sum{source=\"api\"} 1.500000\n"));
        assert!(text.contains("picoclaw_tool_calls_total 2\n"));
        assert!(text.contains("picoclaw_prompt_tokens_total 100\n"));
        assert!(text.contains("picoclaw_completion_tokens_total 20\n"));
        assert!(text.contains("picoclaw_reasoning_tokens_total 12\n"));
        assert!(text.contains("picoclaw_deliveries_total 1\n"));
        assert!(text.contains("picoclaw_active_sessions 3\n"));
        // Every sample line has a TYPE line for its family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let family = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
        }
    }
}
