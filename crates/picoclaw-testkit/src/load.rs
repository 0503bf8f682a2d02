//! A load driver for the gateway: it starts the scripted model ([`ScriptedEndpoint::responding`])
//! and the Telegram fake on 127.0.0.1, one or two real `picoclaw-gateway` processes over one
//! state database, drives concurrent API conversations and Telegram chats through them, and
//! reports what was lost or answered twice, whether every conversation's history reached the
//! model complete and in order, the per-turn overhead, and each gateway's memory, file
//! descriptors and threads (from `/proc`). The `load` bench tool and the gateway's load test
//! share it.

use crate::ScriptedEndpoint;
use crate::reply::Reply;
use crate::telegram::FakeBotApi;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The gateway key the driver configures and sends.
pub const GATEWAY_KEY: &str = "load-test-key-0123456789abcdef";
const BOT_TOKEN: &str = "4242:LOAD-token";
/// Telegram chats of one run get ids from `FIRST_CHAT + run × CHATS_PER_RUN` on: a chat's
/// conversation is keyed by its id, and runs on one PostgreSQL database must not meet.
const FIRST_CHAT: i64 = 1_000_000;
const CHATS_PER_RUN: i64 = 100_000;
/// Probes (one extra turn per conversation that reads its whole history back) run this many
/// at a time.
const PROBES_AT_ONCE: usize = 64;
/// The API clients' keep-alive pool (see `run`).
const CLIENT_IDLE_CONNECTIONS: usize = 100;
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the driver waits after the last answer for an answer sent twice.
const SETTLE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The `picoclaw-gateway` binary.
    pub gateway: PathBuf,
    /// Gateway processes (1 or 2). With two, an API conversation alternates between them turn
    /// by turn, and only the first runs the Telegram channel.
    pub instances: usize,
    /// `state.url` of every instance (PostgreSQL for two instances); `None`: one SQLite file.
    pub state_url: Option<String>,
    /// Concurrent API conversations per burst.
    pub conversations: usize,
    /// Turns of each conversation (and of each Telegram chat).
    pub turns: usize,
    /// Concurrent Telegram chats per burst.
    pub chats: usize,
    /// Bursts, each with fresh conversations, each followed by the idle wait.
    pub bursts: usize,
    /// How long the scripted model takes to answer a turn.
    pub model_delay: Duration,
    /// The longest the whole run may take; what is not answered by then counts as lost.
    pub duration: Duration,
    /// The wait after each burst before memory is read again.
    pub idle: Duration,
    /// Variables added to the gateways' environment (`MALLOC_ARENA_MAX=2`...).
    pub env: Vec<(String, String)>,
    /// A command the gateway runs under (`heaptrack --record-only -o FILE`); memory is then
    /// read from the `picoclaw-gateway` process beneath it.
    pub wrapper: Vec<String>,
    /// `RUST_LOG` of the gateways.
    pub log: String,
    /// Print progress lines to stderr.
    pub verbose: bool,
}

impl LoadOptions {
    /// One instance on SQLite, 40 conversations × 3 turns and 20 chats, 50 ms model delay,
    /// at most 120 s, no idle wait: the defaults of a short check.
    pub fn new(gateway: impl Into<PathBuf>) -> Self {
        Self {
            gateway: gateway.into(),
            instances: 1,
            state_url: None,
            conversations: 40,
            turns: 3,
            chats: 20,
            bursts: 1,
            model_delay: Duration::from_millis(50),
            duration: Duration::from_secs(120),
            idle: Duration::ZERO,
            env: Vec::new(),
            wrapper: Vec::new(),
            log: "warn".to_owned(),
            verbose: false,
        }
    }
}

/// The driver could not run (a gateway did not start...). Lost or doubled answers are not
/// errors: they are in the [`LoadReport`].
#[derive(Debug)]
pub struct LoadError(String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

fn fail(what: impl Into<String>) -> LoadError {
    LoadError(what.into())
}

/// A process's memory, descriptors and threads, from `/proc/<pid>/`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `RssAnon`, KiB.
    pub anon_kib: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// `Threads`.
    pub threads: usize,
}

impl ProcSample {
    /// Reads `/proc/<pid>/status` and `/proc/<pid>/fd`; `None` once the process is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        Some(Self {
            rss_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            fds,
            threads: usize::try_from(field("Threads:")).unwrap_or(0),
        })
    }
}

/// Memory of one instance around one burst.
#[derive(Clone, Copy, Debug, Default)]
pub struct BurstMemory {
    /// Just before the burst.
    pub before: ProcSample,
    /// The highest `VmRSS` and `RssAnon` seen during the burst (sampled every 50 ms).
    pub peak_rss_kib: u64,
    pub peak_anon_kib: u64,
    /// When the burst's last answer came.
    pub after: ProcSample,
    /// After the idle wait.
    pub idle: ProcSample,
}

/// What one gateway process looked like.
#[derive(Clone, Debug, Default)]
pub struct InstanceReport {
    /// Once it listened, before any traffic.
    pub start: ProcSample,
    pub bursts: Vec<BurstMemory>,
}

/// p50, p99 and the maximum of a set of durations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    fn of(mut values: Vec<Duration>) -> Self {
        values.sort_unstable();
        let at = |q: f64| {
            if values.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank.
            let rank = (q * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Self {
            count: values.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: values.last().copied().unwrap_or_default(),
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub instances: usize,
    pub state: String,
    pub conversations: usize,
    pub chats: usize,
    pub turns: usize,
    pub bursts: usize,
    pub model_delay: Duration,
    pub idle: Duration,
    /// API turns sent, and answered with the right text.
    pub api_turns: usize,
    pub api_answered: usize,
    /// Telegram messages sent, and answered (once or more).
    pub tg_messages: usize,
    pub tg_answered: usize,
    /// Messages never answered (API: no 200 with the answer; Telegram: no sendMessage), with why.
    pub lost: Vec<String>,
    /// Messages answered, or put to the model, more than once.
    pub doubled: Vec<String>,
    /// Requests to the model whose history was not the conversation so far, in order; and
    /// probes (one turn after everything) that did not see the whole conversation.
    pub history: Vec<String>,
    /// Per-turn latency minus the model delay: API answers, Telegram answers (from the update
    /// being offered to its sendMessage, so the long-polling cycle is in it).
    pub api_overhead: Percentiles,
    pub tg_overhead: Percentiles,
    /// Wall time of each burst's traffic.
    pub burst_times: Vec<Duration>,
    pub memory: Vec<InstanceReport>,
    /// The `duration` cap ended the run.
    pub timed_out: bool,
}

impl LoadReport {
    /// Everything that went wrong, one line each (empty: nothing lost, nothing twice, every
    /// history complete).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, list: &[String]| {
            if !list.is_empty() {
                out.push(format!("{} {what}; first: {}", list.len(), list[0]));
            }
        };
        add("lost", &self.lost);
        add("answered or asked twice", &self.doubled);
        add("histories incomplete or out of order", &self.history);
        if self.timed_out {
            out.push("the duration cap ended the run".to_owned());
        }
        out
    }

    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} instance(s) on {}; per burst {} API conversations + {} Telegram chats × {} turns; \
             {} burst(s); model delay {} ms; idle {} s",
            self.instances,
            self.state,
            self.conversations,
            self.chats,
            self.turns,
            self.bursts,
            self.model_delay.as_millis(),
            self.idle.as_secs()
        )?;
        writeln!(f)?;
        writeln!(f, "{:<34} {:>10}", "check", "count")?;
        writeln!(f, "{:<34} {:>10}", "API turns sent", self.api_turns)?;
        writeln!(f, "{:<34} {:>10}", "API turns answered", self.api_answered)?;
        writeln!(
            f,
            "{:<34} {:>10}",
            "Telegram messages sent", self.tg_messages
        )?;
        writeln!(
            f,
            "{:<34} {:>10}",
            "Telegram messages answered", self.tg_answered
        )?;
        writeln!(f, "{:<34} {:>10}", "lost", self.lost.len())?;
        writeln!(
            f,
            "{:<34} {:>10}",
            "answered or asked twice",
            self.doubled.len()
        )?;
        writeln!(f, "{:<34} {:>10}", "histories wrong", self.history.len())?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<34} {:>8} {:>8} {:>8} {:>8}",
            "overhead (ms, minus model delay)", "n", "p50", "p99", "max"
        )?;
        for (name, p) in [("API", self.api_overhead), ("Telegram", self.tg_overhead)] {
            writeln!(
                f,
                "{:<34} {:>8} {:>8} {:>8} {:>8}",
                name,
                p.count,
                ms(p.p50),
                ms(p.p99),
                ms(p.max)
            )?;
        }
        for (i, t) in self.burst_times.iter().enumerate() {
            writeln!(f, "burst {} took {:.1} s", i + 1, t.as_secs_f64())?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<9} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5}",
            "instance",
            "burst",
            "rss0",
            "anon0",
            "rss^",
            "anon^",
            "rss1",
            "anon1",
            "rss+idle",
            "anon+idl",
            "fds",
            "thr"
        )?;
        for (i, m) in self.memory.iter().enumerate() {
            writeln!(
                f,
                "{:<9} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5}",
                i + 1,
                "start",
                mib(m.start.rss_kib),
                mib(m.start.anon_kib),
                "",
                "",
                "",
                "",
                "",
                "",
                m.start.fds,
                m.start.threads
            )?;
            for (b, burst) in m.bursts.iter().enumerate() {
                writeln!(
                    f,
                    "{:<9} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5}",
                    i + 1,
                    b + 1,
                    mib(burst.before.rss_kib),
                    mib(burst.before.anon_kib),
                    mib(burst.peak_rss_kib),
                    mib(burst.peak_anon_kib),
                    mib(burst.after.rss_kib),
                    mib(burst.after.anon_kib),
                    mib(burst.idle.rss_kib),
                    mib(burst.idle.anon_kib),
                    burst.idle.fds,
                    burst.idle.threads
                )?;
            }
        }
        writeln!(
            f,
            "(MiB; 0: before the burst, ^: peak during it, 1: at its last answer, +idle: after \
             the idle wait; fds and threads after the idle wait)"
        )?;
        let problems = self.problems();
        writeln!(f)?;
        if problems.is_empty() {
            writeln!(
                f,
                "OK: nothing lost, nothing twice, every history complete and in order"
            )?;
        } else {
            for p in problems {
                writeln!(f, "FAIL: {p}")?;
            }
        }
        Ok(())
    }
}

/// One running gateway process.
struct Gateway {
    child: Child,
    /// The `picoclaw-gateway` process itself (beneath a wrapper, if any).
    pid: u32,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Gateway {
    fn start(options: &LoadOptions, home: &Path, name: &str) -> Result<Self, LoadError> {
        let mut command = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&options.gateway);
                c
            }
            None => Command::new(&options.gateway),
        };
        command
            .arg("--no-log-file")
            .env("PICOCLAW_HOME", home)
            .env_remove("PICOCLAW_CONFIG")
            .env_remove("PICOCLAW_STATE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("TELEGRAM_BOT_TOKEN")
            .env("RUST_LOG", &options.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .map_err(|e| fail(format!("cannot start {}: {e}", options.gateway.display())))?;
        let stderr = child.stderr.take().ok_or_else(|| fail("no stderr pipe"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let (name, verbose) = (name.to_owned(), options.verbose);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if verbose {
                    eprintln!("[{name}] {line}");
                }
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_owned());
                }
                let mut kept = lines.lock().unwrap();
                // The last lines only: a long run logs a lot.
                if kept.len() >= 200 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let mut gateway = Self {
            pid: child.id(),
            child,
            base: String::new(),
            log,
        };
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
            let status = match gateway.child.try_wait() {
                Ok(Some(status)) => format!("it ended ({status})"),
                _ => "it did not start listening within 60 s".to_owned(),
            };
            return Err(fail(format!(
                "{}: {status}; its last lines:\n{}",
                options.gateway.display(),
                gateway.log.lock().unwrap().join("\n")
            )));
        };
        gateway.base = format!("http://{addr}");
        if !options.wrapper.is_empty() {
            let exe = std::fs::canonicalize(&options.gateway)
                .map_err(|e| fail(format!("{}: {e}", options.gateway.display())))?;
            gateway.pid = find_process(gateway.child.id(), &exe).ok_or_else(|| {
                fail("no picoclaw-gateway process beneath the wrapper".to_owned())
            })?;
        }
        Ok(gateway)
    }

    fn sample(&self) -> ProcSample {
        ProcSample::read(self.pid).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 60 s (a profiler writes its file at exit).
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.pid.to_string())
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The process running `exe` among `root` and its descendants.
fn find_process(root: u32, exe: &Path) -> Option<u32> {
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe) {
            return Some(pid);
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                queue.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    None
}

/// Samples a process every 50 ms, keeping the highest RSS and anonymous RSS since the last
/// reset.
struct Sampler {
    peaks: Arc<Mutex<(u64, u64)>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let peaks = Arc::new(Mutex::new((0, 0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peaks), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(now) = ProcSample::read(pid) {
                    let mut peaks = p.lock().unwrap();
                    peaks.0 = peaks.0.max(now.rss_kib);
                    peaks.1 = peaks.1.max(now.anon_kib);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self { peaks, stop }
    }

    fn take(&self) -> (u64, u64) {
        std::mem::take(&mut *self.peaks.lock().unwrap())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the model saw: for every user text it was asked about, the user and assistant texts of
/// each request that ended with it, in order.
#[derive(Default)]
struct ModelLog {
    asked: HashMap<String, Vec<Vec<String>>>,
}

/// The user and assistant texts of a Chat Completions request body, in order.
fn conversation_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|msgs| {
            msgs.iter()
                .filter(|m| m["role"] == "user" || m["role"] == "assistant")
                .map(crate::endpoint::content_text)
                .collect()
        })
        .unwrap_or_default()
}

/// The model's answer to `text`.
fn answer_to(text: &str) -> String {
    format!("re {text}")
}

/// The user text of turn `turn` (1-based) of a conversation; `None` is the probe.
fn turn_text(conversation: &str, turn: Option<usize>) -> String {
    match turn {
        Some(t) => format!("{conversation} t{t}"),
        None => format!("{conversation} check"),
    }
}

/// The history the model must see for turn `turn` (1-based; `None`: the probe after `turns`).
fn expected_history(conversation: &str, turn: Option<usize>, turns: usize) -> Vec<String> {
    let before = turn.map_or(turns, |t| t - 1);
    let mut out = Vec::new();
    for t in 1..=before {
        let text = turn_text(conversation, Some(t));
        out.push(answer_to(&text));
        let answer = out.len() - 1;
        out.insert(answer, text);
    }
    out.push(turn_text(conversation, turn));
    out
}

/// One conversation: its name (unique in the run), and whether it goes through Telegram (its
/// chat id) or the API.
#[derive(Clone, Debug)]
struct Conversation {
    name: String,
    chat: Option<i64>,
}

/// What a conversation's turns produced.
#[derive(Default)]
struct TurnResults {
    overhead: Vec<Duration>,
    answered: usize,
    lost: Vec<String>,
}

struct Run {
    options: LoadOptions,
    client: reqwest::Client,
    gateways: Vec<String>,
    tg: Option<Arc<FakeBotApi>>,
    /// Telegram answers seen so far: text → when each copy arrived.
    tg_answers: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    deadline: Instant,
}

impl Run {
    /// Sends `text` as one API turn of `conversation` to instance `instance`; the latency when
    /// the right answer came back.
    async fn api_turn(
        &self,
        session: &str,
        text: &str,
        instance: usize,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let left = self.deadline.saturating_duration_since(started);
        let request = self
            .client
            .post(format!("{}/v1/chat/completions", self.gateways[instance]))
            .bearer_auth(GATEWAY_KEY)
            .header("X-Session-Key", session)
            .timeout(left.max(Duration::from_millis(1)))
            .json(&json!({"messages": [{"role": "user", "content": text}]}));
        let response = request
            .send()
            .await
            .map_err(|e| format!("{text}: no answer from instance {}: {e}", instance + 1))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("{text}: unreadable answer ({status}): {e}"))?;
        let latency = started.elapsed();
        let content = body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        if !status.is_success() || content != answer_to(text) {
            return Err(format!("{text}: {status} {body}"));
        }
        Ok(latency)
    }

    /// Offers `text` to the Telegram fake from chat `chat` and waits for its answer.
    async fn tg_turn(&self, chat: i64, text: &str) -> Result<Duration, String> {
        let Some(tg) = &self.tg else {
            return Err("no Telegram fake".to_owned());
        };
        let answer = answer_to(text);
        let started = Instant::now();
        tg.private_message(chat, &format!("u{chat}"), text);
        loop {
            if let Some(at) = self
                .tg_answers
                .lock()
                .unwrap()
                .get(&answer)
                .and_then(|a| a.first())
            {
                return Ok(at.saturating_duration_since(started));
            }
            if Instant::now() >= self.deadline {
                return Err(format!("{text}: no sendMessage (Telegram chat {chat})"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every turn of one conversation, one after the other.
    async fn conversation(&self, conversation: &Conversation) -> TurnResults {
        let mut results = TurnResults::default();
        for turn in 1..=self.options.turns {
            let text = turn_text(&conversation.name, Some(turn));
            let outcome = match conversation.chat {
                Some(chat) => self.tg_turn(chat, &text).await,
                None => {
                    let instance = (turn - 1) % self.gateways.len();
                    self.api_turn(&conversation.name, &text, instance).await
                }
            };
            match outcome {
                Ok(latency) => {
                    results.answered += 1;
                    results
                        .overhead
                        .push(latency.saturating_sub(self.options.model_delay));
                }
                Err(why) => {
                    // A conversation whose turn was lost stops: the next turns' histories
                    // would be wrong for a reason already reported.
                    results.lost.push(why);
                    break;
                }
            }
        }
        results
    }

    /// One more turn that the model answers at once; what it carried is checked afterwards.
    async fn probe(&self, conversation: &Conversation) -> Result<(), String> {
        let text = turn_text(&conversation.name, None);
        match conversation.chat {
            Some(chat) => self.tg_turn(chat, &text).await.map(drop),
            None => {
                let instance = self.options.turns % self.gateways.len();
                self.api_turn(&conversation.name, &text, instance)
                    .await
                    .map(drop)
            }
        }
    }
}

/// Follows the fake's sendMessage calls into `answers` until `stop`.
fn follow_telegram(
    tg: Arc<FakeBotApi>,
    answers: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    stop: Arc<AtomicBool>,
) {
    std::thread::spawn(move || {
        let mut seen = 0;
        while !stop.load(Ordering::Relaxed) {
            let new = tg.sent_since(seen);
            seen += new.len();
            if !new.is_empty() {
                let mut answers = answers.lock().unwrap();
                for (_, text, at) in new {
                    answers.entry(text).or_default().push(at);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

fn write_config(home: &Path, config: &Value) -> Result<(), LoadError> {
    std::fs::create_dir_all(home).map_err(|e| fail(format!("{}: {e}", home.display())))?;
    std::fs::write(home.join("config.json"), config.to_string())
        .map_err(|e| fail(format!("cannot write the config: {e}")))
}

/// Runs the load described by `options` and reports what it saw. Needs a multi-threaded tokio
/// runtime. Errors only when something could not be started; what was lost or doubled is in
/// the report.
pub async fn run(options: LoadOptions) -> Result<LoadReport, LoadError> {
    if !(1..=2).contains(&options.instances) {
        return Err(fail("--instances must be 1 or 2"));
    }
    if options.turns == 0 {
        return Err(fail("--turns must be at least 1"));
    }
    let started = Instant::now();
    // Conversations of different runs (on one PostgreSQL database) never meet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let run_id = format!("r{}x{}", std::process::id(), now % 1_000_000);
    let first_chat = FIRST_CHAT + CHATS_PER_RUN * i64::try_from(now % 1_000_000_000).unwrap_or(0);
    if (options.chats * options.bursts) as i64 > CHATS_PER_RUN / 2 {
        return Err(fail(
            "too many Telegram chats for one run (chats × bursts ≤ 50 000)",
        ));
    }

    let log = Arc::new(Mutex::new(ModelLog::default()));
    let endpoint = {
        let log = Arc::clone(&log);
        let delay = options.model_delay;
        ScriptedEndpoint::responding(move |body| {
            let texts = conversation_texts(body);
            let last = texts.last().cloned().unwrap_or_default();
            let reply = Reply::text(answer_to(&last));
            let probe = last.ends_with(" check");
            log.lock()
                .unwrap()
                .asked
                .entry(last)
                .or_default()
                .push(texts);
            if probe || delay.is_zero() {
                reply
            } else {
                reply.delayed(delay)
            }
        })
    };
    let tg = (options.chats > 0).then(|| Arc::new(FakeBotApi::start(BOT_TOKEN)));

    let dir = tempfile::tempdir().map_err(|e| fail(format!("no temporary directory: {e}")))?;
    let workspace = dir.path().join("workspace");
    let state_url = match (&options.state_url, options.instances) {
        (Some(url), _) => url.clone(),
        (None, 1) => String::new(),
        (None, _) => format!("sqlite:{}", dir.path().join("state.db").display()),
    };
    let state_name = match state_url.split(':').next() {
        Some("postgres" | "postgresql") => "PostgreSQL",
        Some("memory") => "memory (nothing shared)",
        _ => "SQLite",
    }
    .to_owned();
    let all_chats = options.chats * options.bursts;
    let allow: Vec<String> = (0..all_chats)
        .map(|i| (first_chat + i as i64).to_string())
        .collect();

    let mut gateways = Vec::new();
    for i in 0..options.instances {
        let home = dir.path().join(format!("home{}", i + 1));
        let mut config = json!({
            "agents": {"defaults": {"model": "openai/load-model",
                "workspace": workspace.display().to_string()}},
            "providers": {"openai": {"api_key": "sk-load", "api_base": endpoint.base_url()}},
            "gateway": {"host": "127.0.0.1", "port": 0, "api_key": GATEWAY_KEY},
            "heartbeat": {"enabled": false},
            "state": {"url": state_url},
        });
        if i == 0
            && let Some(tg) = &tg
        {
            config["channels"] = json!({"telegram": {"enabled": true, "token": BOT_TOKEN,
                "allow_from": allow, "api_base": tg.api_base(), "rate_limit_per_minute": 0}});
        }
        write_config(&home, &config)?;
        gateways.push(Gateway::start(
            &options,
            &home,
            &format!("gateway{}", i + 1),
        )?);
    }
    // Let the gateways finish starting (migrations, the channel's first poll) before the
    // start is measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut memory: Vec<InstanceReport> = gateways
        .iter()
        .map(|g| InstanceReport {
            start: g.sample(),
            bursts: Vec::new(),
        })
        .collect();
    let samplers: Vec<Sampler> = gateways.iter().map(|g| Sampler::start(g.pid)).collect();

    // Clients as OpenAI's SDKs keep them (httpx's limits: 100 idle connections, 5 s), so the
    // gateway's memory after a burst is not the driver's idle connections.
    let client = picoclaw_http::client_builder_for_endpoint("http://127.0.0.1", None, None)
        .map_err(|e| fail(format!("no HTTP client: {e}")))?
        .pool_max_idle_per_host(CLIENT_IDLE_CONNECTIONS)
        .pool_idle_timeout(CLIENT_IDLE_TIMEOUT)
        .build()
        .map_err(|e| fail(format!("no HTTP client: {e}")))?;
    let tg_answers = Arc::new(Mutex::new(HashMap::new()));
    let stop_following = Arc::new(AtomicBool::new(false));
    if let Some(tg) = &tg {
        follow_telegram(
            Arc::clone(tg),
            Arc::clone(&tg_answers),
            Arc::clone(&stop_following),
        );
    }
    let run = Arc::new(Run {
        client,
        gateways: gateways.iter().map(|g| g.base.clone()).collect(),
        tg: tg.clone(),
        tg_answers: Arc::clone(&tg_answers),
        deadline: started + options.duration,
        options: options.clone(),
    });

    let mut report = LoadReport {
        instances: options.instances,
        state: state_name,
        conversations: options.conversations,
        chats: options.chats,
        turns: options.turns,
        bursts: options.bursts,
        model_delay: options.model_delay,
        idle: options.idle,
        ..LoadReport::default()
    };
    let mut api_overhead = Vec::new();
    let mut tg_overhead = Vec::new();
    let mut everyone = Vec::new();
    let mut lost_conversations = std::collections::HashSet::new();
    for burst in 0..options.bursts {
        let conversations: Vec<Conversation> = (0..options.conversations)
            .map(|c| Conversation {
                name: format!("{run_id} b{} c{c}", burst + 1),
                chat: None,
            })
            .chain((0..options.chats).map(|g| Conversation {
                name: format!("{run_id} b{} g{g}", burst + 1),
                chat: Some(first_chat + (burst * options.chats + g) as i64),
            }))
            .collect();
        let before: Vec<ProcSample> = gateways.iter().map(Gateway::sample).collect();
        for s in &samplers {
            s.take();
        }
        if options.verbose {
            eprintln!("burst {}: {} conversations", burst + 1, conversations.len());
        }
        let burst_started = Instant::now();
        let tasks: Vec<_> = conversations
            .iter()
            .cloned()
            .map(|c| {
                let run = Arc::clone(&run);
                tokio::spawn(async move { run.conversation(&c).await })
            })
            .collect();
        for (task, conversation) in tasks.into_iter().zip(&conversations) {
            let results = task
                .await
                .map_err(|e| fail(format!("a conversation task failed: {e}")))?;
            let (sent, answered, overhead) = match conversation.chat {
                Some(_) => (
                    &mut report.tg_messages,
                    &mut report.tg_answered,
                    &mut tg_overhead,
                ),
                None => (
                    &mut report.api_turns,
                    &mut report.api_answered,
                    &mut api_overhead,
                ),
            };
            *sent += results.answered + results.lost.len();
            *answered += results.answered;
            overhead.extend(results.overhead);
            if !results.lost.is_empty() {
                lost_conversations.insert(conversation.name.clone());
            }
            report.lost.extend(results.lost);
        }
        report.burst_times.push(burst_started.elapsed());
        let after: Vec<ProcSample> = gateways.iter().map(Gateway::sample).collect();
        let peaks: Vec<(u64, u64)> = samplers.iter().map(Sampler::take).collect();
        if options.verbose {
            eprintln!(
                "burst {} done in {:.1} s; idle {} s",
                burst + 1,
                burst_started.elapsed().as_secs_f64(),
                options.idle.as_secs()
            );
        }
        tokio::time::sleep(options.idle).await;
        for (i, g) in gateways.iter().enumerate() {
            memory[i].bursts.push(BurstMemory {
                before: before[i],
                peak_rss_kib: peaks[i].0.max(after[i].rss_kib),
                peak_anon_kib: peaks[i].1.max(after[i].anon_kib),
                after: after[i],
                idle: g.sample(),
            });
        }
        everyone.extend(conversations);
        if Instant::now() >= run.deadline {
            report.timed_out = true;
            break;
        }
    }
    report.memory = memory;

    // Afterwards: one more turn per conversation, whose request carries the stored history.
    if options.verbose {
        eprintln!("probing {} histories", everyone.len());
    }
    let probe_deadline = Instant::now() + Duration::from_secs(60).max(options.duration / 4);
    let probe_run = Arc::new(Run {
        deadline: probe_deadline,
        client: run.client.clone(),
        gateways: run.gateways.clone(),
        tg: run.tg.clone(),
        tg_answers: Arc::clone(&run.tg_answers),
        options: options.clone(),
    });
    let to_probe: Vec<Conversation> = everyone
        .iter()
        .filter(|c| !lost_conversations.contains(&c.name))
        .cloned()
        .collect();
    for chunk in to_probe.chunks(PROBES_AT_ONCE) {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|c| {
                let run = Arc::clone(&probe_run);
                tokio::spawn(async move { run.probe(&c).await })
            })
            .collect();
        for task in tasks {
            if let Err(why) = task
                .await
                .map_err(|e| fail(format!("a probe task failed: {e}")))?
            {
                report.history.push(format!("probe: {why}"));
            }
        }
    }
    // Anything sent twice has had time to arrive.
    tokio::time::sleep(SETTLE).await;
    stop_following.store(true, Ordering::Relaxed);
    drop(samplers);

    // What the model saw and what Telegram got, per turn.
    let log = std::mem::take(&mut *log.lock().unwrap());
    let tg_answers = std::mem::take(&mut *tg_answers.lock().unwrap());
    let (history, doubled) = check(
        &everyone,
        &lost_conversations,
        options.turns,
        &log,
        &tg_answers,
    );
    report.history.extend(history);
    report.doubled.extend(doubled);
    report.api_overhead = Percentiles::of(api_overhead);
    report.tg_overhead = Percentiles::of(tg_overhead);
    if report.timed_out {
        report.lost.sort();
    }
    for g in gateways {
        g.stop();
    }
    drop(endpoint);
    Ok(report)
}

/// Checks every turn of `conversations` (but those in `skip`, already reported lost) and its
/// probe against what the model saw and what Telegram got: the model asked once per turn with
/// the conversation so far, in order; each Telegram answer sent once. Returns the history
/// problems and the doubles.
fn check(
    conversations: &[Conversation],
    skip: &std::collections::HashSet<String>,
    turns: usize,
    log: &ModelLog,
    tg_answers: &HashMap<String, Vec<Instant>>,
) -> (Vec<String>, Vec<String>) {
    let (mut history, mut doubled) = (Vec::new(), Vec::new());
    for conversation in conversations {
        if skip.contains(&conversation.name) {
            continue;
        }
        for turn in (1..=turns).map(Some).chain([None]) {
            let text = turn_text(&conversation.name, turn);
            let requests = log.asked.get(&text).map(Vec::as_slice).unwrap_or(&[]);
            match requests {
                [] => history.push(format!("{text}: the model was never asked")),
                [one] => {
                    let expected = expected_history(&conversation.name, turn, turns);
                    if *one != expected {
                        history.push(format!(
                            "{text}: the model saw {one:?}, expected {expected:?}"
                        ));
                    }
                }
                more => doubled.push(format!("{text}: the model was asked {} times", more.len())),
            }
            if conversation.chat.is_some() {
                let copies = tg_answers.get(&answer_to(&text)).map_or(0, Vec::len);
                if copies > 1 {
                    doubled.push(format!("{text}: sendMessage {copies} times"));
                }
            }
        }
    }
    (history, doubled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_history_alternates_questions_and_answers() {
        assert_eq!(expected_history("c", Some(1), 3), ["c t1"]);
        assert_eq!(
            expected_history("c", Some(3), 3),
            ["c t1", "re c t1", "c t2", "re c t2", "c t3"]
        );
        assert_eq!(
            expected_history("c", None, 2),
            ["c t1", "re c t1", "c t2", "re c t2", "c check"]
        );
    }

    #[test]
    fn a_missing_turn_a_wrong_history_and_a_double_are_all_found() {
        let c = |name: &str, chat| Conversation {
            name: name.to_owned(),
            chat,
        };
        let conversations = [c("a", None), c("b", Some(7))];
        let mut log = ModelLog::default();
        let mut tg = HashMap::new();
        for name in ["a", "b"] {
            for turn in [Some(1), Some(2), None] {
                let text = turn_text(name, turn);
                log.asked
                    .insert(text.clone(), vec![expected_history(name, turn, 2)]);
                tg.insert(answer_to(&text), vec![Instant::now()]);
            }
        }
        let skip = std::collections::HashSet::new();
        let clean = check(&conversations, &skip, 2, &log, &tg);
        assert_eq!(clean, (vec![], vec![]));

        // a's second turn did not see its first answer; b's probe was never asked; b's first
        // answer went out twice.
        log.asked
            .insert("a t2".into(), vec![vec!["a t1".into(), "a t2".into()]]);
        log.asked.remove("b check");
        tg.get_mut("re b t1").unwrap().push(Instant::now());
        let (history, doubled) = check(&conversations, &skip, 2, &log, &tg);
        assert_eq!(history.len(), 2, "{history:?}");
        assert!(history[0].starts_with("a t2: the model saw"), "{history:?}");
        assert!(history[1].starts_with("b check: the model was never asked"));
        assert_eq!(doubled, ["b t1: sendMessage 2 times"]);
        // A conversation already reported lost is not reported again.
        let skip = ["a".to_owned(), "b".to_owned()].into();
        assert_eq!(check(&conversations, &skip, 2, &log, &tg), (vec![], vec![]));
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let p = Percentiles::of((1..=100).map(Duration::from_millis).collect());
        assert_eq!(p.p50, Duration::from_millis(50));
        assert_eq!(p.p99, Duration::from_millis(99));
        assert_eq!(p.max, Duration::from_millis(100));
        assert_eq!(Percentiles::of(Vec::new()).p99, Duration::ZERO);
    }

    #[test]
    fn this_process_can_be_read_from_proc() {
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.threads >= 1 && me.fds >= 3, "{me:?}");
    }
}
