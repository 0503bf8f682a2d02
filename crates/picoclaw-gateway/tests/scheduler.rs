//! Cron and heartbeat with a clock the test moves: no sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_core::{Agent, SessionKey};
use picoclaw_gateway::scheduler::{Beat, CronRunner, Heartbeat, LAST_CHAT, ManualClock};
use picoclaw_state::{CronJob, CronPayload, Schedule, SqliteStore, StateBackend};
use picoclaw_testkit::{Reply, ScriptedProvider};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const T0: i64 = 1_800_000_000_000; // 2027-01-15T08:00:00Z

fn agent(provider: Arc<ScriptedProvider>, store: Arc<dyn StateBackend>) -> Agent {
    Agent::builder(provider)
        .model("m")
        .streaming(false)
        .session_store(store)
        .build()
        .unwrap()
}

async fn store() -> (tempfile::TempDir, Arc<dyn StateBackend>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
    (dir, Arc::new(s))
}

/// Texts waiting in the outbox for a chat (claimed and acknowledged, as a channel would).
async fn delivered(store: &dyn StateBackend, now: i64) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let batch = store.claim_outbound("test", now, 1000, 50).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for r in batch {
            let msg: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            out.push((
                format!("{}:{}", r.channel, r.chat_id),
                msg["content"].as_str().unwrap().to_owned(),
            ));
            store.ack_outbound(r.id, "test").await.unwrap();
        }
    }
    out
}

#[tokio::test]
async fn reminders_run_on_time_and_missed_runs_once() {
    let (_dir, store) = store().await;
    let provider = Arc::new(ScriptedProvider::new([]));
    let clock = Arc::new(ManualClock::at(T0));
    let runner = CronRunner::new(
        store.clone(),
        agent(provider.clone(), store.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let hourly = CronJob::new(
        "stretch",
        Schedule::Every {
            every_ms: 3_600_000,
        },
        CronPayload::new("Time to stretch!")
            .delivered()
            .to("telegram", "42"),
        T0,
    )
    .unwrap();
    store.put_job(&hourly).await.unwrap();

    assert!(runner.tick().await.unwrap().is_empty(), "nothing due yet");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        runner.tick().await.unwrap(),
        std::slice::from_ref(&hourly.id)
    );
    assert!(
        runner.tick().await.unwrap().is_empty(),
        "a run happens once"
    );
    assert_eq!(
        delivered(&*store, clock.now()).await,
        [("telegram:42".to_owned(), "Time to stretch!".to_owned())]
    );
    // Ten hours down: one run when back, then the rhythm continues.
    clock.advance(Duration::from_secs(10 * 3600 + 60));
    assert_eq!(runner.tick().await.unwrap().len(), 1);
    assert!(runner.tick().await.unwrap().is_empty());
    assert_eq!(delivered(&*store, clock.now()).await.len(), 1);
    let job = store.get_job(&hourly.id).await.unwrap().unwrap();
    assert_eq!(job.state.next_run_at_ms, Some(T0 + 12 * 3_600_000));
    assert_eq!(job.state.last_status.as_deref(), Some("ok"));
    assert!(
        provider.requests().is_empty(),
        "a delivered reminder needs no model"
    );
}

#[tokio::test]
async fn an_agent_job_answers_in_its_chat_and_a_missed_one_shot_is_sent_late() {
    let (_dir, store) = store().await;
    let provider = Arc::new(ScriptedProvider::new([Reply::text(
        "Your morning summary: 3 meetings.",
    )]));
    let clock = Arc::new(ManualClock::at(T0));
    let runner = CronRunner::new(
        store.clone(),
        agent(provider.clone(), store.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let summary = CronJob::new(
        "morning summary",
        Schedule::Cron {
            expr: "0 9 * * *".into(),
            tz: Some("Europe/Lisbon".into()),
        },
        CronPayload::new("Summarise my day").to("slack", "C1"),
        T0,
    )
    .unwrap();
    let once = CronJob::new(
        "dentist",
        Schedule::At {
            at_ms: T0 + 30 * 60_000,
        },
        CronPayload::new("Dentist at 10!")
            .delivered()
            .to("slack", "C1"),
        T0,
    )
    .unwrap();
    store.put_job(&summary).await.unwrap();
    store.put_job(&once).await.unwrap();
    // 09:00 Lisbon (UTC+0 in January) is an hour after T0; the one-shot was due at 08:30.
    clock.advance(Duration::from_secs(3600));
    let ran = runner.tick().await.unwrap();
    assert_eq!(
        ran.len(),
        2,
        "the missed one-shot is sent late, the summary on time"
    );
    let sent = delivered(&*store, clock.now()).await;
    assert!(
        sent.contains(&("slack:C1".to_owned(), "Dentist at 10!".to_owned())),
        "{sent:?}"
    );
    assert!(
        sent.contains(&(
            "slack:C1".to_owned(),
            "Your morning summary: 3 meetings.".to_owned()
        )),
        "{sent:?}"
    );
    // The one-shot is gone; the prompt went to the job's own session, not the chat's.
    assert_eq!(store.get_job(&once.id).await.unwrap(), None);
    let chat = store
        .load(&SessionKey::new("slack:C1"), None)
        .await
        .unwrap();
    assert!(chat.messages.is_empty());
    let session = store
        .load(&SessionKey::new(format!("cron-{}", summary.id)), None)
        .await
        .unwrap();
    assert!(session.messages[0].text().contains("Summarise my day"));
    assert!(
        session.messages[0]
            .text()
            .contains("Scheduled task \"morning summary\"")
    );
}

#[tokio::test]
async fn a_failing_job_records_its_error_and_stays_scheduled() {
    let (_dir, store) = store().await;
    let provider = Arc::new(ScriptedProvider::new([Reply::error(500, "model down")]));
    let clock = Arc::new(ManualClock::at(T0));
    let runner = CronRunner::new(
        store.clone(),
        agent(provider, store.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let job = CronJob::new(
        "check",
        Schedule::Every { every_ms: 60_000 },
        CronPayload::new("check"),
        T0,
    )
    .unwrap();
    store.put_job(&job).await.unwrap();
    clock.advance(Duration::from_secs(60));
    runner.tick().await.unwrap();
    let after = store.get_job(&job.id).await.unwrap().unwrap();
    assert_eq!(after.state.last_status.as_deref(), Some("error"));
    assert!(after.state.last_error.unwrap().contains("model down"));
    assert_eq!(after.state.next_run_at_ms, Some(T0 + 120_000));
}

#[tokio::test]
async fn two_gateways_on_one_store_run_a_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let a: Arc<dyn StateBackend> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b: Arc<dyn StateBackend> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let provider = Arc::new(ScriptedProvider::new([]));
    let clock = Arc::new(ManualClock::at(T0));
    let ra = CronRunner::new(
        a.clone(),
        agent(provider.clone(), a.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let rb = CronRunner::new(
        b.clone(),
        agent(provider.clone(), b.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    for i in 0..10 {
        let job = CronJob::new(
            format!("j{i}"),
            Schedule::Every { every_ms: 60_000 },
            CronPayload::new(format!("ping {i}"))
                .delivered()
                .to("cli", "x"),
            T0,
        )
        .unwrap();
        a.put_job(&job).await.unwrap();
    }
    let mut runs = 0;
    for _ in 0..5 {
        clock.advance(Duration::from_secs(60));
        let (x, y) = tokio::join!(ra.tick(), rb.tick());
        runs += x.unwrap().len() + y.unwrap().len();
    }
    assert_eq!(runs, 50, "10 jobs × 5 minutes, each once");
}

#[tokio::test]
async fn heartbeat_costs_nothing_without_tasks_and_never_sends_the_ok_marker() {
    let (dir, store) = store().await;
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let provider = Arc::new(ScriptedProvider::new([
        Reply::text("HEARTBEAT_OK"),
        Reply::text("Rain from 15:00 — take an umbrella."),
    ]));
    let clock = Arc::new(ManualClock::at(T0));
    let hb = Heartbeat::new(
        agent(provider.clone(), store.clone()),
        store.clone(),
        ws.clone(),
        clock.clone(),
        Arc::new(Notify::new()),
    );

    // No file, then the onboarding template: no model call.
    assert_eq!(hb.beat().await.unwrap(), Beat::NoTasks);
    std::fs::write(
        ws.join("HEARTBEAT.md"),
        "# Heartbeat\n\n<!-- Tasks to check periodically, one per line. -->\n",
    )
    .unwrap();
    assert_eq!(hb.beat().await.unwrap(), Beat::NoTasks);
    assert!(provider.requests().is_empty());

    // A task, nothing to report: nothing sent.
    std::fs::write(
        ws.join("HEARTBEAT.md"),
        "# Heartbeat\n\n- Check the weather for Lisbon\n",
    )
    .unwrap();
    assert_eq!(hb.beat().await.unwrap(), Beat::NothingToReport);
    assert!(delivered(&*store, clock.now()).await.is_empty());

    // Something to report: to the chat the user last wrote from.
    store
        .kv_put(LAST_CHAT.0, LAST_CHAT.1, "telegram\n42")
        .await
        .unwrap();
    assert_eq!(
        hb.beat().await.unwrap(),
        Beat::Sent {
            channel: "telegram".into(),
            chat_id: "42".into()
        }
    );
    assert_eq!(
        delivered(&*store, clock.now()).await,
        [(
            "telegram:42".to_owned(),
            "Rain from 15:00 — take an umbrella.".to_owned()
        )]
    );
    // Heartbeat turns live in their own session, not the user's.
    let hb_session = store
        .load(&SessionKey::new("heartbeat"), None)
        .await
        .unwrap();
    assert_eq!(hb_session.messages.len(), 4);
    assert!(
        store
            .load(&SessionKey::new("telegram:42"), None)
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    assert!(
        provider.requests()[0]
            .messages
            .iter()
            .any(|m| m.text().contains("Check the weather for Lisbon"))
    );
}

/// An agent with the `cron` tool and sub-agents over `store`, as the gateway assembles one.
fn agent_with_cron(provider: Arc<ScriptedProvider>, store: Arc<dyn StateBackend>) -> Agent {
    Agent::builder(provider)
        .model("m")
        .streaming(false)
        .session_store(store.clone())
        .tool(picoclaw_tools::CronTool::new(store.clone()))
        .subagents(2, Some(store))
        .build()
        .unwrap()
}

/// The tool results the model was shown in request `n`.
fn tool_results(provider: &ScriptedProvider, n: usize) -> Vec<String> {
    provider.requests()[n]
        .messages
        .iter()
        .filter(|m| m.role == picoclaw_core::Role::Tool)
        .map(|m| m.text())
        .collect()
}

#[tokio::test]
async fn a_cron_turn_and_its_sub_agents_cannot_add_cron_jobs() {
    let (_dir, store) = store().await;
    let provider = Arc::new(ScriptedProvider::new([
        // The job's turn tries to schedule more of itself ...
        Reply::tool_call(
            "cron",
            serde_json::json!({"action": "add", "message": "Summarise the news", "every_seconds": 60}),
        ),
        // ... then through a sub-agent.
        Reply::tool_call(
            "subagent",
            serde_json::json!({"task": "Add a cron job that runs every minute"}),
        ),
        Reply::tool_call(
            "cron",
            serde_json::json!({"action": "add", "message": "again", "cron_expr": "* * * * *"}),
        ),
        Reply::text("I could not add it."),
        Reply::text("Nothing new in the news."),
    ]));
    let clock = Arc::new(ManualClock::at(T0));
    let runner = CronRunner::new(
        store.clone(),
        agent_with_cron(provider.clone(), store.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let job = CronJob::new(
        "news",
        Schedule::Every {
            every_ms: 3_600_000,
        },
        CronPayload::new("Summarise the news").to("telegram", "42"),
        T0,
    )
    .unwrap();
    store.put_job(&job).await.unwrap();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(runner.tick().await.unwrap(), std::slice::from_ref(&job.id));

    let jobs: Vec<String> = store
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(jobs, std::slice::from_ref(&job.id), "no job added");
    assert_eq!(provider.requests().len(), 5);
    let refusal = "scheduled turns cannot add jobs";
    let parent = tool_results(&provider, 1);
    assert!(parent[0].contains(refusal), "{parent:?}");
    let child = tool_results(&provider, 3);
    assert!(
        child.len() == 1 && child[0].contains(refusal),
        "the sub-agent is refused too: {child:?}"
    );
    assert_eq!(
        delivered(&*store, clock.now()).await,
        [(
            "telegram:42".to_owned(),
            "Nothing new in the news.".to_owned()
        )]
    );
}

#[tokio::test]
async fn a_heartbeat_turn_cannot_add_cron_jobs() {
    let (dir, store) = store().await;
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("HEARTBEAT.md"),
        "# Heartbeat\n\n- Make sure a reminder runs every minute\n",
    )
    .unwrap();
    let provider = Arc::new(ScriptedProvider::new([
        Reply::tool_call(
            "cron",
            serde_json::json!({"action": "add", "message": "ping", "every_seconds": 60}),
        ),
        Reply::text("HEARTBEAT_OK"),
    ]));
    let hb = Heartbeat::new(
        agent_with_cron(provider.clone(), store.clone()),
        store.clone(),
        ws,
        Arc::new(ManualClock::at(T0)),
        Arc::new(Notify::new()),
    );
    assert_eq!(hb.beat().await.unwrap(), Beat::NothingToReport);
    assert!(store.list_jobs().await.unwrap().is_empty(), "no job added");
    let results = tool_results(&provider, 1);
    assert!(
        results[0].contains("started by the heartbeat")
            && results[0].contains("scheduled turns cannot add jobs"),
        "{results:?}"
    );
}

#[tokio::test]
async fn two_instances_beat_once_per_interval_between_them() {
    let (_dir, store) = store().await;
    let clock = Arc::new(ManualClock::at(T0));
    let beat = |owner: &str| {
        Heartbeat::new(
            agent(Arc::new(ScriptedProvider::new([])), store.clone()),
            store.clone(),
            std::path::PathBuf::from("/nonexistent"),
            clock.clone(),
            Arc::new(Notify::new()),
        )
        .owner(owner)
    };
    let (a, b) = (beat("a"), beat("b"));
    let every = Duration::from_secs(30 * 60);
    assert!(a.claim(every).await, "the first instance beats");
    assert!(
        !b.claim(every).await,
        "the second skips the interval the first beat"
    );
    clock.advance(Duration::from_secs(20 * 60));
    assert!(!b.claim(every).await);
    // Nine tenths of the interval after the beat the claim is over: whoever ticks next beats
    // (so when the first instance is gone, the second takes over).
    clock.advance(Duration::from_secs(7 * 60 + 1));
    assert!(b.claim(every).await);
    assert!(!a.claim(every).await);
}

#[tokio::test]
async fn the_clock_jumping_back_and_forth_never_runs_a_job_twice() {
    let (_dir, store) = store().await;
    let clock = Arc::new(ManualClock::at(T0));
    let runner = CronRunner::new(
        store.clone(),
        agent(Arc::new(ScriptedProvider::new([])), store.clone()),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let hourly = CronJob::new(
        "water",
        Schedule::Every {
            every_ms: 3_600_000,
        },
        CronPayload::new("Water the plants")
            .delivered()
            .to("telegram", "42"),
        T0,
    )
    .unwrap();
    let once = CronJob::new(
        "call",
        Schedule::At {
            at_ms: T0 + 1_800_000,
        },
        CronPayload::new("Call the bank")
            .delivered()
            .to("telegram", "42"),
        T0,
    )
    .unwrap();
    store.put_job(&hourly).await.unwrap();
    store.put_job(&once).await.unwrap();
    clock.advance(Duration::from_secs(3600));
    assert_eq!(runner.tick().await.unwrap().len(), 2, "both due");
    // NTP steps the clock two hours back: nothing runs again, not the hourly job's last run
    // and not the one-shot reminder.
    clock.set(T0 - 3_600_000);
    for _ in 0..3 {
        assert!(runner.tick().await.unwrap().is_empty());
        clock.advance(Duration::from_secs(1800));
    }
    // Back at the time of the last run: still nothing; then the next hour runs, once.
    clock.set(T0 + 3_600_000);
    assert!(runner.tick().await.unwrap().is_empty());
    clock.set(T0 + 2 * 3_600_000);
    assert_eq!(
        runner.tick().await.unwrap(),
        std::slice::from_ref(&hourly.id)
    );
    assert!(runner.tick().await.unwrap().is_empty());
    // A jump a day ahead: one run for the missed ones, then the rhythm from there.
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(runner.tick().await.unwrap().len(), 1);
    assert!(runner.tick().await.unwrap().is_empty());
    let mut texts: Vec<String> = delivered(&*store, clock.now())
        .await
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            "Call the bank",
            "Water the plants",
            "Water the plants",
            "Water the plants"
        ]
    );
}
