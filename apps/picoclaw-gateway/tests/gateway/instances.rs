//! Two real gateway processes sharing one PostgreSQL database (each test in a schema of its
//! own): one conversation alternating between them keeps its history in order, concurrent
//! turns of one conversation never overlap, a due job runs once, and a message the instance
//! that received it could not answer (SIGKILL mid-turn) is answered by the other, once.

use super::*;
use crate::model::Model;

/// A home for one instance: the shared database and key, a lease of 2 s (what an instance
/// that dies leaves waits that long), and `channels`.
fn instance_home(model: &Model, db: &str, port: u16, channels: Value) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let config = json!({
        "agents": {"defaults": {"model": "openai/test-model",
            "workspace": home.path().join("workspace").display().to_string()}},
        "providers": {"openai": {"api_key": "sk-test", "api_base": model.base}},
        "gateway": {"host": "127.0.0.1", "port": port, "api_key": KEY},
        "heartbeat": {"enabled": false},
        "state": {"url": db, "session_lease_seconds": 2},
        "channels": channels,
    });
    std::fs::write(home.path().join("config.json"), config.to_string()).unwrap();
    home
}

async fn say(gw: &Gateway, session: &str, text: &str) -> String {
    let (status, body) = complete(
        &client(),
        gw,
        Some(session),
        json!({"messages": [{"role": "user", "content": text}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_one_database_take_turns_with_a_conversation() {
    let (schema, db) = picoclaw_state::conformance::fresh_schema().await;
    let model = Model::start().await;
    let (home_a, home_b) = (
        instance_home(&model, &db, 0, json!({})),
        instance_home(&model, &db, 0, json!({})),
    );
    let a = Gateway::start(home_a.path());
    let b = Gateway::start(home_b.path());

    // One conversation, its turns alternating between the instances: each turn sees every
    // turn before it, in order.
    for turn in 0..6 {
        let gw = if turn % 2 == 0 { &a } else { &b };
        let text = format!("conv=alt turn={turn}");
        let answer = say(gw, "alt", &text).await;
        assert!(answer.contains(&text), "{answer}");
    }
    let last = model.asked("conv=alt turn=5");
    assert_eq!(last.len(), 1, "{last:?}");
    let turns: Vec<&String> = last[0].iter().filter(|m| m.contains("conv=alt")).collect();
    let expected: Vec<String> = (0..6).map(|t| format!("conv=alt turn={t}")).collect();
    assert_eq!(turns, expected.iter().collect::<Vec<_>>());

    // Turns of three conversations sent to both instances at once: never two of one
    // conversation at the model together, every one answered once, each history whole.
    let mut sends = Vec::new();
    for conv in 0..3 {
        for turn in 0..4 {
            let base = if turn % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            sends.push(tokio::spawn(async move {
                let gw_text = format!("conv=c{conv} turn={turn}");
                let resp = client()
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(KEY)
                    .header("X-Session-Key", format!("c{conv}"))
                    .json(&json!({"messages": [{"role": "user", "content": gw_text}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }));
        }
    }
    for s in sends {
        s.await.unwrap();
    }
    assert_eq!(
        model.overlaps(),
        Vec::<String>::new(),
        "turns of one conversation overlapped"
    );
    for conv in 0..3 {
        // One more turn shows the stored history: each of the four turns once.
        let history = say(&a, &format!("c{conv}"), &format!("conv=c{conv} final")).await;
        assert!(history.contains("after 5 user messages"), "{history}");
        let seen = model.asked(&format!("conv=c{conv} final"));
        for turn in 0..4 {
            let tag = format!("conv=c{conv} turn={turn}");
            assert_eq!(
                seen[0].iter().filter(|m| **m == tag).count(),
                1,
                "{tag} in {:?}",
                seen[0]
            );
        }
        // And the model was asked each turn once.
        for turn in 0..4 {
            assert_eq!(model.asked(&format!("conv=c{conv} turn={turn}")).len(), 1);
        }
    }

    // A job due in two seconds runs once, though both instances see it due.
    {
        let store = picoclaw_state::open_state(Some(&db), Path::new("unused.db"))
            .await
            .unwrap();
        let now = picoclaw_state::now_ms();
        let job = picoclaw_state::NewJob {
            message: "conv=job run the report".to_owned(),
            agent: true,
            to: Some("telegram:111".to_owned()),
            name: None,
        }
        .build(
            picoclaw_state::parse_schedule("in", "2s", None, now).unwrap(),
            now,
        )
        .unwrap();
        store.put_job(&job).await.unwrap();
        store.close().await;
    }
    for _ in 0..1200 {
        if !model.asked("conv=job").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Proof that both schedulers have passed the due time since: a conversation turn on each
    // after two more cron ticks (the runners tick every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    say(&a, "after", "conv=after one").await;
    say(&b, "after", "conv=after two").await;
    assert_eq!(
        model.asked("conv=job").len(),
        1,
        "the job ran more than once, or never"
    );

    drop((a, b));
    picoclaw_state::conformance::drop_schema(&schema).await;
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_message_left_by_a_killed_instance_is_answered_by_the_other_once() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "777:TWO-instances";
    let tg = FakeBotApi::start(TOKEN);
    let (schema, db) = picoclaw_state::conformance::fresh_schema().await;
    let model = Model::start().await;
    // Telegram by webhook on both (behind a load balancer in production, with one
    // webhook_url and one webhook_secret); the fake posts to the one that registered last.
    let free_port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let telegram = |port: u16| {
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
            "api_base": tg.api_base(),
            "webhook_url": format!("http://127.0.0.1:{port}/webhook/telegram"),
            "webhook_secret": "a-shared-secret-of-enough-length-0123456789"}})
    };
    let (port_a, port_b) = (free_port(), free_port());
    let home_a = instance_home(&model, &db, port_a, telegram(port_a));
    let home_b = instance_home(&model, &db, port_b, telegram(port_b));
    let b = Gateway::start(home_b.path());
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        for _ in 0..2400 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}");
    };
    wait("b's webhook", &|| tg.webhook().is_some());
    let a = Gateway::start(home_a.path());
    wait("a's webhook", &|| {
        tg.webhook()
            .is_some_and(|(url, _)| url.contains(&port_a.to_string()))
    });

    // A takes the message (the platform has its 200), starts the turn, and dies mid-way.
    tg.private_message(111, "ada", "conv=tg slow question");
    wait("the model asked by a", &|| {
        !model.asked("slow question").is_empty()
    });
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    // B finds it unanswered once A's lease has run out, and answers it.
    wait("the answer from b", &|| {
        tg.sent().iter().any(|(_, t)| t.contains("slow question"))
    });
    // A later message, sent to B's webhook (as a load balancer would), is answered after it
    // (a chat's replies go in order), so by then a second answer to the first would have been
    // sent. (B is not restarted for this: an instance killed between a send and its
    // acknowledgement sends that reply again after the outbox lease, by design.)
    let update = json!({"update_id": 900_001, "message": {"message_id": 900_001,
        "date": 1_800_000_000, "chat": {"id": 111, "type": "private", "first_name": "ada"},
        "from": {"id": 111, "is_bot": false, "first_name": "ada", "username": "ada"},
        "text": "conv=tg second"}});
    let resp = client()
        .post(format!("http://127.0.0.1:{port_b}/webhook/telegram"))
        .header(
            "X-Telegram-Bot-Api-Secret-Token",
            "a-shared-secret-of-enough-length-0123456789",
        )
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait("the second answer", &|| {
        tg.sent().iter().any(|(_, t)| t.contains("second"))
    });
    let first: Vec<_> = tg
        .sent()
        .into_iter()
        .filter(|(_, t)| t.contains("slow question"))
        .collect();
    assert_eq!(first.len(), 1, "answered twice: {first:?}");
    drop(b);
    picoclaw_state::conformance::drop_schema(&schema).await;
}
