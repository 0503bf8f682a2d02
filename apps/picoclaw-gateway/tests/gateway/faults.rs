//! Faults, driven through the real gateway binary: SIGKILL at random points across a hundred
//! channel messages, and the state database locked by another process. For each: what the
//! user sees, that nothing acknowledged to the platform is lost, and that the gateway recovers
//! by itself.

use super::*;
use crate::model::Model;
use picoclaw_testkit::telegram::FakeBotApi;
use std::sync::Arc;

const TOKEN: &str = "4242:FAULTS-token";
const USERS: [i64; 5] = [111, 112, 113, 114, 115];

fn telegram_home(model: &Model, tg: &FakeBotApi) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": model.base}},
        "gateway": {"host": "127.0.0.1", "port": 0, "api_key": KEY},
        "heartbeat": {"enabled": false},
        "channels": {"telegram": {"enabled": true, "token": TOKEN,
            "allow_from": USERS.iter().map(i64::to_string).collect::<Vec<_>>(),
            "api_base": tg.api_base()}},
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    home
}

/// The answers sent to the chats, in the order the platform got them: `(chat, message tag)`.
fn answers(tg: &FakeBotApi) -> Vec<(i64, String)> {
    tg.sent()
        .into_iter()
        .filter_map(|(chat, text)| {
            let tag = text
                .strip_prefix("answer to [")?
                .split(']')
                .next()?
                .to_owned();
            Some((chat, tag))
        })
        .collect()
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    for _ in 0..secs * 40 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_points_across_a_hundred_messages_loses_none() {
    let seed = std::env::var("PICOCLAW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15_u64);
    eprintln!("seed {seed} (PICOCLAW_CRASH_SEED replays it)");
    let mut rng = picoclaw_testkit::SeededRng::new(seed);
    let tg = FakeBotApi::start(TOKEN);
    let model = Model::start().await;
    let home = telegram_home(&model, &tg);
    const MESSAGES: usize = 100;

    let mut gw = Gateway::start(home.path());
    let (mut sent, mut kills) = (0, 0);
    while sent < MESSAGES {
        // A few messages from the five users, then (two times in three) SIGKILL at a random
        // point: while polling, journaling, waiting for the model, storing, delivering.
        for _ in 0..=(rng.next_u64() % 5) {
            if sent == MESSAGES {
                break;
            }
            let user = USERS[sent % USERS.len()];
            tg.private_message(user, "user", &format!("m{sent} of {user}"));
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 400)).await;
        if !rng.next_u64().is_multiple_of(3) {
            drop(gw); // SIGKILL, then wait for it
            kills += 1;
            gw = Gateway::start(home.path());
        }
    }
    // Every message is answered: what was acknowledged to Telegram was journaled first, and
    // what was not is fetched again. (A reply being sent when the process died is sent again
    // at the next start: the only instance ends the outbox leases of the one before.)
    wait_until("an answer to every message", 120, || {
        let got = answers(&tg);
        (0..MESSAGES).all(|i| {
            got.iter()
                .any(|(_, tag)| tag.starts_with(&format!("m{i} of ")))
        })
    })
    .await;
    let got = answers(&tg);
    // Each chat's answers come in the order of its messages (first sendings).
    for user in USERS {
        let mut firsts: Vec<usize> = Vec::new();
        for (_, tag) in got.iter().filter(|(chat, _)| *chat == user) {
            let n: usize = tag[1..tag.find(' ').unwrap()].parse().unwrap();
            if !firsts.contains(&n) {
                firsts.push(n);
            }
        }
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        assert_eq!(firsts, sorted, "chat {user} got its answers out of order");
    }
    // A second sending happens only for a reply whose delivery was cut by a kill (sent, not
    // yet acknowledged): at most one per kill.
    let duplicates = got.len() - MESSAGES;
    eprintln!("{MESSAGES} messages, {kills} kills, {duplicates} replies sent twice");
    assert!(
        duplicates <= kills,
        "{duplicates} duplicates for {kills} kills: {got:?}"
    );
    // The model was asked about each message at least once, and no turn was lost half-way:
    // a message killed mid-turn is asked again, never answered from half a turn.
    for i in 0..MESSAGES {
        assert!(!model.asked(&format!("m{i} of ")).is_empty());
    }
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_state_database_delays_answers_loses_nothing_and_recovers() {
    let tg = FakeBotApi::start(TOKEN);
    let model = Model::start().await;
    let home = telegram_home(&model, &tg);
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "before the lock");
    wait_until("the first answer", 60, || answers(&tg).len() == 1).await;

    // Another process holds a write transaction on state.db for 8 s (past SQLite's 5 s busy
    // timeout): Python's sqlite3, as an operator's tool or a backup might.
    let db = home.path().join("state.db");
    let mut locker = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(8)\n\
             c.execute('COMMIT')\n",
        )
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the locking process");
    let mut line = String::new();
    BufReader::new(locker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    // A message during the lock: the gateway cannot journal it, so it does not acknowledge it
    // to Telegram; it is fetched again and answered once the lock is gone.
    tg.private_message(112, "bob", "during the lock");
    // An API request during the lock: a clear error (the turn cannot be stored), not a hang.
    let (status, body) = complete(
        &client(),
        &gw,
        Some("locked"),
        json!({"messages": [{"role": "user", "content": "api during the lock"}]}),
    )
    .await;
    let text = body.to_string();
    eprintln!("the API during the lock: {status} {text}");
    if status == 200 {
        // The lock ended before the turn's write (a slow machine): then it must be whole.
        assert!(text.contains("api during the lock"), "{text}");
    } else {
        assert!(status >= 500, "{status} {text}");
        assert!(text.contains("locked") || text.contains("busy"), "{text}");
    }
    assert!(locker.wait().unwrap().success());

    wait_until("the answer to the message sent during the lock", 60, || {
        answers(&tg).iter().any(|(_, t)| t == "during the lock")
    })
    .await;
    // Recovered by itself: the API answers again.
    let (status, body) = complete(
        &client(),
        &gw,
        Some("after"),
        json!({"messages": [{"role": "user", "content": "after the lock"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = answers(&tg);
    assert_eq!(
        got.iter().filter(|(_, t)| t == "during the lock").count(),
        1,
        "{got:?}"
    );
    drop(gw);
}

/// How the hand-rolled model below treats a connection.
const RESET: u8 = 0;
const HANG_MID_STREAM: u8 = 1;
const ANSWER: u8 = 2;

/// An OpenAI-compatible model over raw TCP that can misbehave: reset every connection (an RST
/// after reading the request), send one chunk of a streamed answer and then nothing, or answer.
async fn unreliable_model(mode: Arc<std::sync::atomic::AtomicU8>) -> String {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mode = mode.clone();
            tokio::spawn(async move {
                // The request: headers, then Content-Length bytes of body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body_start = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + length {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let chunk = |content: &str| {
                    format!(
                        "data: {}\n\n",
                        json!({"id": "c", "object": "chat.completion.chunk", "created": 0,
                            "model": "m", "choices": [{"index": 0,
                            "delta": {"content": content}, "finish_reason": null}]})
                    )
                };
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                match mode.load(Ordering::SeqCst) {
                    RESET => {
                        // SO_LINGER 0: the close is a reset (RST), not an orderly end (it
                        // does not block with a zero linger).
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                    }
                    HANG_MID_STREAM => {
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(chunk("Half an ans").as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(120)).await;
                    }
                    _ => {
                        let done = json!({"id": "c", "object": "chat.completion.chunk",
                            "created": 0, "model": "m", "choices": [{"index": 0, "delta": {},
                            "finish_reason": "stop"}]});
                        let body = format!(
                            "{head}{}data: {done}\n\ndata: [DONE]\n\n",
                            chunk("Back to normal.")
                        );
                        let _ = sock.write_all(body.as_bytes()).await;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_resets_or_hangs_mid_stream_gets_a_clear_error_and_the_gateway_goes_on() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let mode = Arc::new(AtomicU8::new(RESET));
    let base = unreliable_model(mode.clone()).await;
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model", "request_timeout": 3,
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": base}},
        "gateway": {"host": "127.0.0.1", "port": 0, "api_key": KEY},
        "heartbeat": {"enabled": false},
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    let gw = Gateway::start(home.path());
    let ask = |text: &'static str| {
        let gw_base = gw.base.clone();
        async move {
            let started = std::time::Instant::now();
            let resp = client()
                .post(format!("{gw_base}/v1/chat/completions"))
                .bearer_auth(KEY)
                .header("X-Session-Key", "faults")
                .json(&json!({"messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            (status, body, started.elapsed())
        }
    };

    // Every connection reset: an error that says the model could not be reached.
    let (status, body, _) = ask("first").await;
    assert!(status >= 500, "{status} {body}");
    let lower = body.to_lowercase();
    assert!(
        lower.contains("connect") || lower.contains("reset") || lower.contains("closed"),
        "{body}"
    );
    // One chunk, then silence: cut after request_timeout (3 s), not after the 10-minute turn
    // limit, with an error that says so.
    mode.store(HANG_MID_STREAM, Ordering::SeqCst);
    let (status, body, took) = ask("second").await;
    assert!(status >= 500, "{status} {body}");
    assert!(body.contains("did not answer within 3s"), "{body}");
    assert!(
        took < Duration::from_secs(60),
        "the hung stream held the request {took:?}"
    );
    // The model is back: so is the gateway, with the conversation intact.
    mode.store(ANSWER, Ordering::SeqCst);
    let (status, body, _) = ask("third").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Back to normal."), "{body}");
    drop(gw);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bot_api_down_for_a_while_delays_answers_and_loses_none() {
    let tg = FakeBotApi::start(TOKEN);
    let model = Model::start().await;
    let home = telegram_home(&model, &tg);
    let gw = Gateway::start(home.path());
    // The Bot API answers the next two sends with 502 Bad Gateway (teloxide waits 10 s after
    // a server error before it returns it): the reply is not taken for a refusal, nor sent
    // again as plain text; it is tried again after 1 s, then 2 s (the schedule goes on
    // doubling up to 5 minutes, for a little over an hour), then sent.
    tg.fail_sends(2);
    tg.private_message(111, "ada", "during the outage");
    tg.private_message(111, "ada", "also during the outage");
    wait_until("the outage to be over", 60, || tg.failing_sends_left() == 0).await;
    wait_until("both answers", 60, || answers(&tg).len() == 2).await;
    // In order, each once, and the gateway took new messages all along.
    assert_eq!(
        answers(&tg),
        [
            (111, "during the outage".to_owned()),
            (111, "also during the outage".to_owned())
        ]
    );
    tg.private_message(111, "ada", "after the outage");
    wait_until("the answer after", 60, || answers(&tg).len() == 3).await;
    assert_eq!(answers(&tg)[2].1, "after the outage");
    drop(gw);
}

/// A tmpfs of `size_kib` mounted on a fresh folder (needs root, as CI runs; unmounted on drop).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(size_kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap().keep();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a small tmpfs for the disk-full test needs root (CAP_SYS_ADMIN), as \
             scripts/test.sh has in CI; run the test as root"
        );
        Tmpfs(dir)
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).and_then(|()| f.flush()).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_the_turn_clearly_keeps_what_was_stored_and_recovers() {
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello."),
        Reply::tool_call(
            "memory_write",
            json!({"content": "The user's sister is Ana"}),
        ),
        Reply::text("Noted."),
        // With the disk full: the memory write fails, the model says so, the turn cannot be
        // stored.
        Reply::tool_call(
            "memory_write",
            json!({"content": "The user's brother is Bo"}),
        )
        .delayed(Duration::from_millis(1500)),
        Reply::text("I could not write that down."),
        Reply::text("Back."),
    ])
    .await;
    let disk = Tmpfs::mount(8 * 1024);
    let home = disk.0.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": endpoint.base_url()}},
        "gateway": {"host": "127.0.0.1", "port": 0, "api_key": KEY},
        "heartbeat": {"enabled": false},
    });
    std::fs::write(home.join("config.json"), config.to_string()).unwrap();
    let gw = Gateway::start(&home);
    let c = client();
    let say = |text: &str| {
        complete(
            &c,
            &gw,
            Some("disk"),
            json!({"messages": [{"role": "user", "content": text}]}),
        )
    };
    assert_eq!(say("hello").await.0, 200);
    assert_eq!(say("remember my sister").await.0, 200);
    let memory = home.join("workspace/memory/MEMORY.md");
    let before = std::fs::read_to_string(&memory).unwrap();
    assert!(before.contains("sister is Ana"), "{before}");

    // The disk full before a turn: it fails at its first write (the conversation's lease),
    // before the model is asked, with an error that says why.
    let filler = disk.fill();
    let (status, body) = say("while the disk is full").await;
    eprintln!("with the disk full: {status} {body}");
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("disk is full"), "{body}");
    assert_eq!(
        endpoint.requests().len(),
        3,
        "the model was asked for a turn that cannot be kept"
    );
    std::fs::remove_file(&filler).unwrap();

    // The disk fills up during a turn, while the model is thinking: the memory write fails
    // and says why, and the turn cannot be stored.
    let during = tokio::spawn({
        let (c, base) = (c.clone(), gw.base.clone());
        async move {
            let resp = c
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(KEY)
                .header("X-Session-Key", "disk")
                .json(&json!({"messages": [{"role": "user", "content": "remember my brother"}]}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    });
    for _ in 0..1200 {
        if endpoint.requests().len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let filler = disk.fill();
    let (status, body) = during.await.unwrap();
    eprintln!("the disk filled during the turn: {status} {body}");
    assert_eq!(status, 500, "{body}");
    // The memory file is never cut short. The write either found room (SQLite gives back the
    // journal space of the write it failed), or it failed and said why — the fact may then be
    // in MEMORY.md already (the file is written first, atomically; its index failed and catches
    // up at the next sync), never half of it.
    let asked = endpoint.requests();
    let tool_result = tool_messages(&asked[4].body).pop().unwrap_or_default();
    let after = std::fs::read_to_string(&memory).unwrap();
    let with_bo = format!("{before}- The user's brother is Bo\n");
    assert!(after == before || after == with_bo, "{after:?}");
    if tool_result.contains("Remembered") {
        assert_eq!(after, with_bo);
    } else {
        assert!(
            tool_result.contains("No space left") || tool_result.contains("full"),
            "{tool_result}"
        );
    }
    eprintln!("the memory write with the disk full: {tool_result}");

    // Space again: the gateway goes on by itself, with the conversation as it was stored.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = say("are you back?").await;
    assert_eq!(status, 200, "{body}");
    let history = endpoint.requests().last().unwrap().message_texts();
    assert!(
        history.iter().any(|m| m == "remember my sister"),
        "{history:?}"
    );
    for lost in ["while the disk is full", "remember my brother"] {
        assert!(
            !history.iter().any(|m| m == lost),
            "a turn that could not be stored is not half there: {history:?}"
        );
    }
    drop(gw);
    drop(disk);
}

/// A PostgreSQL server of this test's own (Debian's binaries, run as the `postgres` user, as
/// scripts/postgres.sh installs them), so that it can be stopped and started under a running
/// gateway without touching the server the other tests share.
#[cfg(feature = "postgres")]
struct OwnPostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
}

#[cfg(feature = "postgres")]
impl OwnPostgres {
    fn as_postgres(&self, tool: &str, args: &[&str]) -> std::process::Output {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .expect("runuser runs")
    }

    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
            .expect(
                "PostgreSQL's binaries are not in /usr/lib/postgresql: run `bash \
                 scripts/postgres.sh` (it installs Debian's postgresql package)",
            );
        let data = tempfile::tempdir().unwrap().keep();
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&data)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "this test runs its own PostgreSQL as the postgres user and needs root for it"
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = OwnPostgres { bin, data, port };
        let dir = pg.data.display().to_string();
        let out = pg.as_postgres("initdb", &["-D", &dir, "-A", "trust", "-U", "postgres"]);
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.up();
        pg
    }

    fn up(&self) {
        let dir = self.data.display().to_string();
        let options = format!("-p {} -k {dir} -c listen_addresses=127.0.0.1", self.port);
        let out = self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                &dir,
                "-o",
                &options,
                "-l",
                &format!("{dir}/log"),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn down(&self) {
        let dir = self.data.display().to_string();
        let out = self.as_postgres("pg_ctl", &["-D", &dir, "-m", "fast", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

#[cfg(feature = "postgres")]
impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let dir = self.data.display().to_string();
        let _ = self.as_postgres("pg_ctl", &["-D", &dir, "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_restarted_under_a_running_gateway_delays_answers_and_loses_none() {
    let pg = OwnPostgres::start();
    let tg = FakeBotApi::start(TOKEN);
    let model = Model::start().await;
    let home = telegram_home(&model, &tg);
    edit_config(home.path(), |c| c["state"] = json!({"url": pg.url()}));
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "before the restart");
    wait_until("the first answer", 60, || answers(&tg).len() == 1).await;

    // The database goes away (a restart, a failover): a message then is not acknowledged to
    // Telegram, so it comes again; an API request gets a clear error.
    pg.down();
    tg.private_message(112, "bob", "while the database is down");
    let (status, body) = complete(
        &client(),
        &gw,
        Some("pg"),
        json!({"messages": [{"role": "user", "content": "api while down"}]}),
    )
    .await;
    eprintln!("the API with the database down: {status} {body}");
    assert!(status >= 500, "{status} {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not save or load the conversation")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.up();

    // Back: the gateway reconnects by itself, the message is answered once, the API works.
    wait_until(
        "the answer to the message sent while the database was down",
        90,
        || {
            answers(&tg)
                .iter()
                .any(|(_, t)| t == "while the database is down")
        },
    )
    .await;
    let (status, body) = complete(
        &client(),
        &gw,
        Some("pg"),
        json!({"messages": [{"role": "user", "content": "api after"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    tg.private_message(112, "bob", "and after");
    wait_until("the answer after", 60, || {
        answers(&tg).iter().any(|(_, t)| t == "and after")
    })
    .await;
    let got = answers(&tg);
    assert_eq!(
        got.iter()
            .filter(|(_, t)| t == "while the database is down")
            .count(),
        1,
        "{got:?}"
    );
    drop(gw);
}
