//! Slack (Socket Mode, Events API, pairing) and all three channels in one gateway.

use super::*;
#[cfg_attr(not(feature = "slack"), allow(unused_imports))]
use crate::telegram::{pairing_code, wait_sent};

/// A home whose gateway listens on a free loopback port and runs Telegram against `tg`.
#[cfg(feature = "telegram")]
pub(crate) fn telegram_home(
    endpoint: &ScriptedEndpoint,
    tg: &picoclaw_testkit::telegram::FakeBotApi,
    token: &str,
    allow_from: Value,
) -> tempfile::TempDir {
    let home = home_with(endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": token, "allow_from": allow_from,
            "api_base": tg.api_base()}}),
    );
    home
}

/// Waits until the fake Slack has `n` chat.postMessage calls.
#[cfg(feature = "slack")]
async fn wait_posts(fake: &picoclaw_testkit::slack::FakeSlack, n: usize) -> Vec<Value> {
    for _ in 0..1200 {
        if fake.posts().len() >= n {
            return fake.posts();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} Slack posts, got {:?}", fake.posts());
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn slack_socket_mode_end_to_end_across_a_restart() {
    use picoclaw_testkit::slack::{BOT_USER_ID, FakeSlack};
    let slack = FakeSlack::start("xoxb-e2e", "xapp-e2e");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello **Ada**!"),
        Reply::text("It is noon."),
        Reply::text("Welcome back, I remember you."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-e2e", "app_token": "xapp-e2e",
            "allow_from": ["UADA"], "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    // An allowed user's DM: answered in mrkdwn; a stranger's DM: never reaches the model.
    let hi = slack.event_callback(slack.dm_event("UADA", "hi"));
    let push = |payload: Value| tokio::task::block_in_place(|| slack.push_socket(payload));
    push(hi.clone());
    push(slack.event_callback(slack.dm_event("UEVE", "let me in")));
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["channel"], "DUADA");
    assert_eq!(posts[0]["text"], "Hello *Ada*!");
    // A mention in a channel: answered in the thread under it.
    let mention = slack.mention_event("UADA", "CGEN", &format!("<@{BOT_USER_ID}> time?"));
    let ts = mention["ts"].as_str().unwrap().to_owned();
    push(slack.event_callback(mention));
    let posts = wait_posts(&slack, 2).await;
    assert_eq!(posts[1]["channel"], "CGEN");
    assert_eq!(posts[1]["thread_ts"], ts.as_str());
    assert_eq!(posts[1]["text"], "It is noon.");
    let ready: Value = client()
        .get(format!("{}/ready", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["slack"], "running", "{ready}");
    // Stopped gracefully: what was sent is acknowledged first (after a kill, delivery is at
    // least once and an answer could go out again).
    assert!(gw.terminate().success());

    // After a restart: Slack delivers the first event again (as it does when an ack was lost),
    // and the user writes again. The old message is not answered twice (the journal knows
    // it); the session goes on where it was.
    let gw = Gateway::start(home.path());
    push(hi);
    push(slack.event_callback(slack.dm_event("UADA", "still there?")));
    // The redelivery comes first in the same conversation: had it been answered, that answer
    // would be this third post (and would have used up the model's third reply).
    let posts = wait_posts(&slack, 3).await;
    assert_eq!(posts[2]["text"], "Welcome back, I remember you.");
    assert_eq!(slack.posts().len(), 3, "nothing answered twice");
    let requests = endpoint.requests();
    assert_eq!(
        requests.len(),
        3,
        "the stranger and the redelivery never reached the model"
    );
    let history = requests[2].message_texts();
    assert!(
        history.iter().any(|t| t == "hi") && history.iter().any(|t| t == "Hello **Ada**!"),
        "the DM session survived the restart: {history:?}"
    );
    drop(gw);
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_slack_turn_over_the_events_api_is_answered_once() {
    use picoclaw_testkit::slack::FakeSlack;
    const SECRET: &str = "e2e-signing-secret";
    let slack = FakeSlack::start("xoxb-e2e", "xapp-unused");
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Thought about it for a while.").delayed(Duration::from_secs(4)),
        Reply::text("And the next."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-e2e", "signing_secret": SECRET,
            "allow_from": ["UADA"], "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    let body = slack
        .event_callback(slack.dm_event("UADA", "think hard"))
        .to_string();
    let post_body = |body: String, retry: Option<u32>| {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut req = client()
            .post(format!("{}/webhook/slack", gw.base))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", at.to_string())
            .header("x-slack-signature", FakeSlack::sign(SECRET, at, &body))
            .body(body);
        if let Some(n) = retry {
            req = req
                .header("x-slack-retry-num", n.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        req.send()
    };
    let post = |retry: Option<u32>| post_body(body.clone(), retry);
    // 503 until the channel signed in; then Slack gets its 200 at once, long before the turn
    // ends (it gives up after 3 s).
    let mut status = 0;
    for _ in 0..1200 {
        let started = std::time::Instant::now();
        status = post(None).await.unwrap().status().as_u16();
        if status == 200 {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200);
    // Slack's retries of the same event while the turn runs: accepted, not answered again.
    for _ in 0..1200 {
        if !endpoint.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(endpoint.requests().len(), 1, "the turn is running");
    assert_eq!(post(Some(1)).await.unwrap().status().as_u16(), 200);
    assert_eq!(post(Some(2)).await.unwrap().status().as_u16(), 200);
    // A forged request: refused.
    let forged = client()
        .post(format!("{}/webhook/slack", gw.base))
        .header("x-slack-request-timestamp", "1")
        .header("x-slack-signature", "v0=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["text"], "Thought about it for a while.");
    // Answered once: the DM's next message is answered after anything a retry could cause.
    let next = slack
        .event_callback(slack.dm_event("UADA", "and now?"))
        .to_string();
    assert_eq!(post_body(next, None).await.unwrap().status().as_u16(), 200);
    let posts = wait_posts(&slack, 2).await;
    assert_eq!(posts[1]["text"], "And the next.");
    assert_eq!(slack.posts().len(), 2, "answered once");
    assert_eq!(endpoint.requests().len(), 2);
    drop(gw);
}

/// The acceptance of the channels issue: Telegram, Discord and Slack in one gateway, each
/// pointed at its loopback fake through `api_base`. Each answers a user on its allow-list,
/// ignores one who is not, and after a restart the sessions go on with nothing answered twice.
#[cfg(all(feature = "telegram", feature = "discord", feature = "slack"))]
#[tokio::test(flavor = "multi_thread")]
async fn three_channels_in_one_gateway_across_a_restart() {
    use picoclaw_testkit::discord::FakeDiscord;
    use picoclaw_testkit::slack::FakeSlack;
    use picoclaw_testkit::telegram::FakeBotApi;
    const ADA: &str = "100000000000000001";
    const DM: &str = "200000000000000001";
    let tg = FakeBotApi::start("77:THREE");
    let dc = FakeDiscord::start("discord-three");
    let sl = FakeSlack::start("xoxb-three", "xapp-three");
    // Each channel's conversation is its own session; the model sees which by the history.
    let endpoint = ScriptedEndpoint::start_with(
        [
            ("tg-1", "telegram one"),
            ("dc-1", "discord one"),
            ("sl-1", "slack one"),
            ("tg-2", "telegram two"),
            ("dc-2", "discord two"),
            ("sl-2", "slack two"),
        ]
        .map(|(needle, answer)| Reply::text(answer).when_request_contains(needle)),
    )
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({
            "telegram": {"enabled": true, "token": "77:THREE", "allow_from": ["111"],
                         "api_base": tg.api_base()},
            "discord": {"enabled": true, "token": "discord-three", "allow_from": [ADA],
                        "api_base": dc.api_base()},
            "slack": {"enabled": true, "bot_token": "xoxb-three", "app_token": "xapp-three",
                      "allow_from": ["UADA"], "api_base": sl.api_base()},
        }),
    );
    let blocking = |f: &dyn Fn()| tokio::task::block_in_place(f);
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "tg-1");
    tg.private_message(222, "eve", "tg-stranger");
    blocking(&|| {
        dc.message(DM, None, ADA, "ada", "dc-1", json!({}));
    });
    blocking(&|| {
        dc.message(
            "200000000000000009",
            None,
            "100000000000000009",
            "eve",
            "dc-stranger",
            json!({}),
        );
    });
    blocking(&|| {
        sl.push_socket(sl.event_callback(sl.dm_event("UADA", "sl-1")));
        sl.push_socket(sl.event_callback(sl.dm_event("UEVE", "sl-stranger")));
    });
    wait_sent(&tg, 1).await;
    blocking(&|| dc.wait_for("the discord answer", |f| !f.sent().is_empty()));
    wait_posts(&sl, 1).await;
    assert_eq!(tg.sent()[0].1, "telegram one");
    assert_eq!(dc.sent()[0].body["content"], "discord one");
    assert_eq!(dc.sent()[0].channel, DM);
    assert_eq!(sl.posts()[0]["text"], "slack one");
    // Stopped gracefully: what was sent is acknowledged first (after a kill, delivery is at
    // least once and an answer could go out again).
    assert!(gw.terminate().success());

    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "tg-2");
    // The old Gateway connection may look open to the fake for a moment after the kill: send
    // only once the restarted gateway has identified, or the message goes to the dead one.
    blocking(&|| {
        dc.wait_for("the restarted gateway's IDENTIFY", |f| {
            f.identifies().len() >= 2
        });
        dc.message(DM, None, ADA, "ada", "dc-2", json!({}));
    });
    blocking(&|| {
        sl.push_socket(sl.event_callback(sl.dm_event("UADA", "sl-2")));
    });
    wait_sent(&tg, 2).await;
    blocking(&|| dc.wait_for("the second discord answer", |f| f.sent().len() >= 2));
    wait_posts(&sl, 2).await;
    // Each chat's answers go out in order, and a first message taken again would have asked
    // the model: nothing was answered twice if each second answer is the new one.
    assert_eq!(tg.sent().len(), 2, "{:?}", tg.sent());
    assert_eq!(dc.sent().len(), 2);
    assert_eq!(sl.posts().len(), 2);
    assert_eq!(tg.sent()[1].1, "telegram two");
    assert_eq!(dc.sent()[1].body["content"], "discord two");
    assert_eq!(sl.posts()[1]["text"], "slack two");
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 6, "strangers never reach the model");
    // Each second turn carries its channel's first exchange, and only that one.
    for (second, first, answer, others) in [
        ("tg-2", "tg-1", "telegram one", ["dc-1", "sl-1"]),
        ("dc-2", "dc-1", "discord one", ["tg-1", "sl-1"]),
        ("sl-2", "sl-1", "slack one", ["tg-1", "dc-1"]),
    ] {
        let r = requests
            .iter()
            .find(|r| r.message_texts().last().map(String::as_str) == Some(second))
            .unwrap();
        let texts = r.message_texts();
        assert!(
            texts.iter().any(|t| t == first) && texts.iter().any(|t| t == answer),
            "{second}: {texts:?}"
        );
        assert!(
            !texts.iter().any(|t| others.contains(&t.as_str())),
            "{texts:?}"
        );
    }
    drop(gw);
}

#[cfg(feature = "slack")]
#[tokio::test(flavor = "multi_thread")]
async fn slack_with_nobody_allowed_the_owner_pairs_from_a_dm() {
    use picoclaw_testkit::slack::FakeSlack;
    let slack = FakeSlack::start("xoxb-pair", "xapp-pair");
    let endpoint = ScriptedEndpoint::start_with([Reply::text("Hello, owner.")]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"slack": {"enabled": true, "bot_token": "xoxb-pair", "app_token": "xapp-pair",
            "api_base": slack.api_base()}}),
    );
    let gw = Gateway::start_with(home.path(), &[], "warn");
    let code = pairing_code(&gw).await;
    assert!(
        gw.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("/picoclaw pair {code}"))),
        "the log tells Slack users the slash command"
    );
    let push = |text: &str| {
        let payload = slack.event_callback(slack.dm_event("UZED", text));
        tokio::task::block_in_place(|| slack.push_socket(payload));
    };
    push("hello?");
    // Slack users send it with a leading space (Slack takes "/..." for a command).
    push(&format!(" /pair {code}"));
    let posts = wait_posts(&slack, 1).await;
    assert_eq!(posts[0]["text"], "Paired: you can talk to me now.");
    push("hi");
    let posts = wait_posts(&slack, 2).await;
    assert_eq!(posts[1]["text"], "Hello, owner.");
    assert_eq!(
        endpoint.requests().len(),
        1,
        "only the paired message reached the model"
    );
    assert!(home.path().join("channels/slack-paired.json").is_file());
    drop(gw);
}
