//! The OneBot v11 channel against a loopback implementation (a forward WebSocket server that
//! checks the access token, pushes events and answers actions by echo).
#![cfg(feature = "onebot")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, block, contents, merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::onebot::OnebotChannel;
use picoclaw_channels::{Channel, ChannelError, ChannelSetup};
use picoclaw_testkit::onebot::FakeOnebot;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BOT: i64 = 10001;
const ADA: i64 = 42;
const TOKEN: &str = "onebot-token";

type Running = common::Running<OnebotChannel>;

fn settings(fake: &FakeOnebot, extra: Value) -> Value {
    let v = json!({"enabled": true, "ws_url": fake.ws_url(), "access_token": TOKEN,
                   "reconnect_interval": 1, "allow_from": [ADA], "rate_limit_per_minute": 0});
    merged(v, extra)
}

/// The channel, built in a temporary directory that must outlive it.
fn channel(settings: Value) -> (OnebotChannel, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workspace")).unwrap();
    let setup = ChannelSetup::new(
        "onebot",
        settings,
        &dir.path().join("workspace"),
        &dir.path().join("home"),
    );
    (OnebotChannel::from_setup(&setup).unwrap(), dir)
}

fn start(settings: Value) -> Running {
    let (channel, dir) = channel(settings);
    common::run(channel, dir)
}

fn text(t: &str) -> Value {
    json!({"type": "text", "data": {"text": t}})
}

/// Sends once the connection is up (the channel registers its writer just after the handshake).
async fn send_when_connected(run: &Running, msg: &OutboundMessage) -> Result<(), ChannelError> {
    for _ in 0..200 {
        match run.channel.send(msg).await {
            Err(ChannelError::Platform(m)) if m.contains("not connected") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
    panic!("never connected");
}

#[tokio::test]
async fn a_missing_or_wrong_ws_url_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    for (settings, named) in [
        (json!({"enabled": true}), "channels.onebot.ws_url"),
        (json!({"ws_url": "http://127.0.0.1:3001"}), "ws://"),
    ] {
        let setup = ChannelSetup::new("onebot", settings, dir.path(), dir.path());
        let e = OnebotChannel::from_setup(&setup).unwrap_err();
        assert!(
            matches!(e, ChannelError::Rejected(ref m) if m.contains(named)),
            "{e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_access_token_is_a_clear_error() {
    let fake = FakeOnebot::start(Some("the-real-one"), BOT);
    let run = start(settings(&fake, json!({})));
    let e = run.task.await.unwrap().unwrap_err();
    match e {
        ChannelError::Rejected(m) => {
            assert!(m.contains("channels.onebot.access_token"), "{m}");
            assert!(m.contains("401"), "{m}");
            assert!(!m.contains(TOKEN), "the token is not echoed: {m}");
        }
        other => panic!("{other:?}"),
    }
    block(|| fake.wait_for("the refusal", |f| f.refused() == 1)).await;
    assert_eq!(fake.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn private_messages_are_delivered_once_and_the_rest_ignored() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let run = start(settings(&fake, json!({})));
    let first = fake.private_message(ADA, json!([text("hello [there]")]));
    let id = first["message_id"].to_string();
    let mut own = fake.private_message(BOT, json!([text("my own words")]));
    own["user_id"] = json!(BOT);
    let mut sent_event = fake.private_message(ADA, json!([text("sent elsewhere")]));
    sent_event["post_type"] = json!("message_sent");
    let cq = fake.private_message(ADA, json!("a&amp;b &#91;x&#93; [CQ:face,id=14]"));
    block(|| {
        fake.push(&first);
        fake.push(&first);
        fake.push(&fake.heartbeat());
        fake.push(&fake.private_message(43, json!([text("a stranger")])));
        fake.push(&own);
        fake.push(&sent_event);
        fake.push(&json!({"post_type": "message", "message_type": "private", "user_id": [1]}));
        fake.push(&json!("just a string"));
        fake.push(&cq);
    })
    .await;
    // Events are handled in order: once the last one is kept, the others were dealt with.
    wait_kept(&run.inbox, 2).await;
    assert_eq!(contents(&run.inbox), ["hello [there]", "a&b [x]"]);
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, "private:42");
    assert_eq!(m.sender_id, "42");
    assert_eq!(m.metadata["message_id"], id);
    assert_eq!(m.metadata["user_name"], "Ada");
    assert!(fake.actions().is_empty(), "{:?}", fake.actions());
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_need_a_mention_of_the_bot_or_a_prefix() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let run = start(settings(
        &fake,
        json!({"group_trigger": {"prefixes": ["/ai"]}}),
    ));
    let at = |qq: i64| json!({"type": "at", "data": {"qq": qq.to_string()}});
    block(|| {
        fake.push(&fake.group_message(7, ADA, json!([text("chatter")])));
        fake.push(&fake.group_message(7, ADA, json!([at(555), text(" not you")])));
        fake.push(&fake.group_message(7, ADA, json!([at(BOT), text(" what time is it?")])));
        fake.push(&fake.group_message(7, ADA, json!(format!("[CQ:at,qq={BOT}] and now?"))));
        fake.push(&fake.group_message(7, ADA, json!([text("/ai weather")])));
        fake.push(&fake.group_message(7, 43, json!([at(BOT), text(" stranger")])));
        // Events are handled in order: once this one is kept, the others were dealt with.
        fake.push(&fake.group_message(7, ADA, json!([text("/ai the last")])));
    })
    .await;
    wait_kept(&run.inbox, 4).await;
    assert_eq!(
        contents(&run.inbox),
        ["what time is it?", "and now?", "weather", "the last"]
    );
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, "group:7");
    assert_eq!(m.sender_id, "42");
    assert_eq!(m.metadata["user_name"], "Ada L.");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_plain_split_threaded_and_failures_reported() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let run = start(settings(&fake, json!({})));
    let mut answer = OutboundMessage::new(
        "onebot",
        "private:42",
        format!("**Sure**: `ls`\n\n{}", "lorem ipsum ".repeat(500)),
    );
    answer.reply_to = Some("5001".into());
    send_when_connected(&run, &answer).await.unwrap();
    run.channel
        .send(&OutboundMessage::new("onebot", "group:7", "to the group"))
        .await
        .unwrap();
    let actions = fake.actions();
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert_eq!(actions[0]["action"], "send_private_msg");
    assert_eq!(actions[0]["params"]["user_id"], ADA);
    assert_eq!(
        actions[0]["params"]["message"][0],
        json!({"type": "reply", "data": {"id": "5001"}})
    );
    let first = actions[0]["params"]["message"][1]["data"]["text"]
        .as_str()
        .unwrap();
    assert!(first.starts_with("Sure: ls"), "{first}");
    assert_eq!(actions[1]["params"]["message"][0]["type"], "text");
    for a in &actions[..2] {
        let t = a["params"]["message"].as_array().unwrap().last().unwrap()["data"]["text"]
            .as_str()
            .unwrap();
        assert!(t.chars().count() <= 4500);
    }
    assert_ne!(actions[0]["echo"], actions[1]["echo"]);
    assert_eq!(actions[2]["action"], "send_group_msg");
    assert_eq!(actions[2]["params"]["group_id"], 7);

    fake.fail_next(100, "risk control");
    let e = run
        .channel
        .send(&OutboundMessage::new("onebot", "group:7", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChannelError::Platform(ref m) if m.contains("retcode 100") && m.contains("risk control")),
        "{e}"
    );
    let e = run
        .channel
        .send(&OutboundMessage::new("onebot", "42", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_channel_reconnects_after_the_implementation_drops_it() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let run = start(settings(&fake, json!({})));
    block(|| fake.wait_for("the connection", |f| f.connections() == 1)).await;
    block(|| fake.drop_connections()).await;
    block(|| fake.wait_for("the second connection", |f| f.connections() == 2)).await;
    block(|| fake.push(&fake.private_message(ADA, json!([text("still there?")])))).await;
    wait_kept(&run.inbox, 1).await;
    send_when_connected(&run, &OutboundMessage::new("onebot", "private:42", "yes"))
        .await
        .unwrap();
    assert_eq!(fake.actions().len(), 1);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn images_and_voice_are_saved_and_strangers_pair() {
    let fake = FakeOnebot::start(None, BOT);
    let run = start(settings(
        &fake,
        json!({"allow_from": [], "access_token": ""}),
    ));
    let code = run.channel.access().pairing_code().unwrap();
    let image = fake.add_file("a.png", b"\x89PNG pixels", "image/png");
    let voice = fake.add_file("v.amr", b"#!AMR voice", "audio/amr");
    block(|| {
        fake.push(&fake.private_message(ADA, json!([text("hi?")])));
        fake.push(&fake.private_message(ADA, json!([text(&format!("/pair {code}"))])));
        fake.push(&fake.private_message(
            ADA,
            json!([
                text("look"),
                {"type": "image", "data": {"file": "a.image", "url": image}},
                {"type": "record", "data": {"file": voice}},
                {"type": "image", "data": {"file": "file:///etc/passwd"}}
            ]),
        ));
    })
    .await;
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.content, "look");
    assert_eq!(m.media.len(), 2, "{:?}", m.media);
    assert_eq!(m.media[0].kind, MediaKind::Image);
    assert_eq!(m.media[0].mime.as_deref(), Some("image/png"));
    assert_eq!(
        std::fs::read(&m.media[0].location).unwrap(),
        b"\x89PNG pixels"
    );
    assert_eq!(m.media[1].kind, MediaKind::Audio);
    assert_eq!(std::fs::read(&m.media[1].location).unwrap(), b"#!AMR voice");
    let notices = fake.actions();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(notices[0]["action"], "send_private_msg");
    let said = notices[0]["params"]["message"][0]["data"]["text"]
        .as_str()
        .unwrap();
    assert!(said.starts_with("Paired"), "{said}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_drops_bursts_and_says_so_once() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let run = start(settings(&fake, json!({"rate_limit_per_minute": 1})));
    block(|| {
        for n in 0..3 {
            fake.push(&fake.private_message(ADA, json!([text(&format!("burst {n}"))])));
        }
    })
    .await;
    block(|| fake.wait_for("the slow-down notice", |f| !f.actions().is_empty())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(contents(&run.inbox), ["burst 0"]);
    let actions = fake.actions();
    assert_eq!(actions.len(), 1, "{actions:?}");
    let said = actions[0]["params"]["message"][0]["data"]["text"]
        .as_str()
        .unwrap();
    assert!(said.contains("slow down"), "{said}");
    run.stop.cancel();
}

/// An inbox that holds every delivery until it is let through.
struct Gated {
    open: tokio::sync::Semaphore,
    entered: std::sync::atomic::AtomicUsize,
    kept: std::sync::Mutex<Vec<picoclaw_api::InboundMessage>>,
}

#[async_trait::async_trait]
impl picoclaw_channels::Inbox for Gated {
    async fn deliver(
        &self,
        msg: picoclaw_api::InboundMessage,
    ) -> Result<(), picoclaw_api::InboxError> {
        self.entered
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.open.acquire().await.unwrap().forget();
        self.kept.lock().unwrap().push(msg);
        Ok(())
    }
}

impl Gated {
    fn new() -> Self {
        Self {
            open: tokio::sync::Semaphore::new(0),
            entered: std::sync::atomic::AtomicUsize::new(0),
            kept: std::sync::Mutex::new(Vec::new()),
        }
    }
    fn entered(&self) -> usize {
        self.entered.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn kept(&self) -> usize {
        self.kept.lock().unwrap().len()
    }
}

struct Tuned {
    channel: Arc<OnebotChannel>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ChannelError>>,
    _dir: tempfile::TempDir,
}

fn start_tuned(
    settings: Value,
    inbox: Arc<dyn picoclaw_channels::Inbox>,
    keepalive: Option<(Duration, Duration)>,
) -> Tuned {
    let (mut channel, dir) = channel(settings);
    if let Some((ping, silence)) = keepalive {
        channel = channel.with_keepalive(ping, silence);
    }
    let channel = Arc::new(channel);
    let stop = CancellationToken::new();
    let task = {
        let (channel, stop) = (Arc::clone(&channel), stop.clone());
        tokio::spawn(async move { channel.run(inbox, stop).await })
    };
    Tuned {
        channel,
        stop,
        task,
        _dir: dir,
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_implementation_is_given_up_and_dialled_again() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let inbox = Arc::new(Kept::default());
    let run = start_tuned(
        settings(&fake, json!({})),
        inbox.clone(),
        Some((Duration::from_millis(50), Duration::from_millis(400))),
    );
    block(|| fake.wait_for("the connection", |f| f.connections() >= 1)).await;
    let before = fake.connections();
    // An implementation that answers the pings keeps its connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.connections(), before, "a live connection was dropped");
    // Its host vanishes without a FIN: nothing is heard any more.
    block(|| fake.stall_connections()).await;
    block(|| fake.wait_for("the next connection", |f| f.connections() == before + 1)).await;
    block(|| fake.push(&fake.private_message(ADA, json!([text("back again")])))).await;
    wait_kept(&inbox, 1).await;
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run.task)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_go_out_while_the_event_queue_is_full() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let inbox = Arc::new(Gated::new());
    let run = start_tuned(settings(&fake, json!({})), inbox.clone(), None);
    block(|| fake.wait_for("the connection", |f| f.connections() == 1)).await;
    // The first message is stuck in the inbox; 300 more fill the queue behind it.
    block(|| {
        for n in 0..301 {
            fake.push(&fake.private_message(ADA, json!([text(&format!("m{n}"))])));
        }
    })
    .await;
    wait_until("the first delivery", || inbox.entered() == 1).await;
    // An answer's response must still be read (well before the 15 s action timeout).
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        run.channel
            .send(&OutboundMessage::new("onebot", "private:42", "still here")),
    )
    .await
    .expect("the answer waited on the full event queue");
    sent.unwrap();
    inbox.open.add_permits(1000);
    // What fit in the queue is kept; the overflow was dropped, not the reader stalled: at
    // least the one in the inbox and the 256 queued behind it, and not all 301 (how many more
    // than 257 fit depends on when the handler took the first one from the queue).
    wait_until("the queued messages", || inbox.kept() >= 257).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = inbox.kept();
    assert!((257..301).contains(&kept), "kept {kept} of 301");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_delivered_after_the_channel_stopped() {
    let fake = FakeOnebot::start(Some(TOKEN), BOT);
    let inbox = Arc::new(Gated::new());
    let run = start_tuned(settings(&fake, json!({})), inbox.clone(), None);
    block(|| {
        fake.push(&fake.private_message(ADA, json!([text("one")])));
        fake.push(&fake.private_message(ADA, json!([text("two")])));
    })
    .await;
    wait_until("the first delivery", || inbox.entered() == 1).await;
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run.task)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
    // The inbox opens after the stop: the handler that was waiting on it is gone.
    inbox.open.add_permits(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(inbox.kept(), 0);
    assert_eq!(inbox.entered(), 1);
}

#[tokio::test]
async fn the_access_token_in_ws_url_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let good = ChannelSetup::new(
        "onebot",
        json!({"ws_url": "ws://127.0.0.1:3001/?access_token=s3cret"}),
        dir.path(),
        dir.path(),
    );
    let channel = OnebotChannel::from_setup(&good).unwrap();
    let shown = format!("{channel:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("127.0.0.1:3001"), "{shown}");
    let bad = ChannelSetup::new(
        "onebot",
        json!({"ws_url": "http://127.0.0.1:3001/?access_token=s3cret"}),
        dir.path(),
        dir.path(),
    );
    let e = OnebotChannel::from_setup(&bad).unwrap_err();
    assert!(!e.to_string().contains("s3cret"), "{e}");
}
