//! The DingTalk channel against a loopback DingTalk (Stream mode WebSocket, token endpoint,
//! robot APIs, session webhooks) through `api_base`.
#![cfg(feature = "dingtalk")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::dingtalk::DingtalkChannel;
use picoclaw_channels::{Channel, ChannelError, ChannelSetup};
use picoclaw_testkit::dingtalk::{BOT_USER_ID, FakeDingtalk};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

const ID: &str = "dingclient";
const SECRET: &str = "dingsecret";

/// A running channel; `dir` is its workspace.
type Running = common::Running<DingtalkChannel>;

fn setup(fake: &FakeDingtalk, extra: Value, workspace: &std::path::Path) -> ChannelSetup {
    let v = json!({"enabled": true, "client_id": ID, "client_secret": SECRET,
                   "allow_from": ["ada"], "api_base": fake.api_base(),
                   "rate_limit_per_minute": 0});
    ChannelSetup::new(
        "dingtalk",
        merged(v, extra),
        workspace,
        &workspace.join("home"),
    )
}

async fn start(fake: &FakeDingtalk, extra: Value) -> Running {
    let workspace = tempfile::tempdir().unwrap();
    let channel = DingtalkChannel::from_setup(&setup(fake, extra, workspace.path())).unwrap();
    common::run(channel, workspace)
}

async fn wait(fake: &FakeDingtalk, what: &str, done: impl FnMut(&FakeDingtalk) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

/// Pushes a robot message and waits for its acknowledgement.
async fn push_acked(fake: &FakeDingtalk, message: &Value) -> Value {
    let id = tokio::task::block_in_place(|| fake.push_callback(message));
    wait(fake, "the ack", |f| f.ack_of(&id).is_some()).await;
    fake.ack_of(&id).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_mode_takes_allowed_messages_acks_them_and_drops_the_rest() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({"group_trigger": {"prefixes": ["/ai"]}})).await;
    wait(&fake, "a connection", |f| !f.opens().is_empty()).await;
    let open = &fake.opens()[0];
    assert!(
        open["subscriptions"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "CALLBACK", "topic": "/v1.0/im/bot/messages/get"})),
        "{open}"
    );

    // The server's ping is answered with its opaque data.
    let ping = tokio::task::block_in_place(|| fake.ping());
    wait(&fake, "the pong", |f| f.ack_of(&ping).is_some()).await;
    let pong = fake.ack_of(&ping).unwrap();
    assert_eq!(pong["code"], 200);
    assert_eq!(pong["data"], r#"{"opaque":"op-123"}"#);

    // An allowed user's message: kept with its id, then acknowledged.
    let dm = fake.direct_message("ada", "hello there", 5400);
    let ack = push_acked(&fake, &dm).await;
    assert_eq!(ack["code"], 200);
    assert_eq!(ack["headers"]["contentType"], "application/json");
    assert_eq!(ack["data"], r#"{"response":null}"#);
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "kept before the ack");
    assert_eq!(all[0].chat_id, "user:ada");
    assert_eq!(all[0].sender_id, "ada");
    assert_eq!(all[0].content, "hello there");
    assert_eq!(all[0].metadata["message_id"], dm["msgId"].as_str().unwrap());
    assert_eq!(all[0].metadata["sender_name"], "Nick ada");

    // A redelivery is acknowledged, not kept twice; strangers, the bot itself and group
    // chatter are acknowledged and dropped; EVENT frames get the SDKs' success answer.
    push_acked(&fake, &dm).await;
    push_acked(&fake, &fake.direct_message("eve", "let me in", 5400)).await;
    let mut own = fake.direct_message("ada", "my own words", 5400);
    own["senderId"] = json!(BOT_USER_ID);
    own["senderStaffId"] = Value::Null;
    push_acked(&fake, &own).await;
    push_acked(
        &fake,
        &fake.group_message("ada", "cidTeam", "just chatting", false),
    )
    .await;
    let event = tokio::task::block_in_place(|| fake.push_event("chat_update", &json!({})));
    wait(&fake, "the event ack", |f| f.ack_of(&event).is_some()).await;
    assert_eq!(
        fake.ack_of(&event).unwrap()["data"],
        r#"{"status":"SUCCESS","message":"success"}"#
    );
    assert_eq!(run.inbox.all().len(), 1);

    // In groups: an @-mention, or the configured prefix.
    push_acked(
        &fake,
        &fake.group_message("ada", "cidTeam", " what time is it?", true),
    )
    .await;
    push_acked(
        &fake,
        &fake.group_message("ada", "cidTeam", "/ai and tomorrow?", false),
    )
    .await;
    let all = run.inbox.all();
    let texts: Vec<(&str, &str)> = all
        .iter()
        .map(|m| (m.chat_id.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            ("user:ada", "hello there"),
            ("group:cidTeam", "what time is it?"),
            ("group:cidTeam", "and tomorrow?"),
        ]
    );
    assert_eq!(all[1].metadata["peer_kind"], "group");
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_the_inbox_refuses_is_not_acked_and_its_redelivery_is_kept() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({})).await;
    run.inbox.fail.store(1, Ordering::SeqCst);
    let dm = fake.direct_message("ada", "keep me", 5400);
    let first = tokio::task::block_in_place(|| fake.push_callback(&dm));
    // The next frame's ack proves the first was handled (frames are handled in order).
    let ping = tokio::task::block_in_place(|| fake.ping());
    wait(&fake, "the pong", |f| f.ack_of(&ping).is_some()).await;
    assert!(
        fake.ack_of(&first).is_none(),
        "a message not kept was acked"
    );
    assert!(run.inbox.all().is_empty());
    push_acked(&fake, &dm).await;
    assert_eq!(run.inbox.all().len(), 1);
    assert_eq!(run.inbox.all()[0].content, "keep me");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_use_the_session_webhook_then_the_robot_apis_with_a_cached_token() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({})).await;
    let dm = fake.direct_message("ada", "write a lot", 5400);
    push_acked(&fake, &dm).await;
    let inbound = run.inbox.all()[0].clone();

    // A long answer: split at 5 000 characters, as Markdown, through the session webhook.
    let long = format!("# Report\n\n{}", "word ".repeat(1500));
    let reply = OutboundMessage::reply(&inbound, long);
    run.channel.send(&reply).await.unwrap();
    let posts = fake.session_posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    let session = dm["sessionWebhook"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    assert!(posts.iter().all(|(s, _)| s == session));
    assert_eq!(posts[0].1["msgtype"], "markdown");
    assert_eq!(posts[0].1["markdown"]["title"], "Report");
    assert!(
        posts[0].1["markdown"]["text"]
            .as_str()
            .unwrap()
            .starts_with("# Report")
    );
    assert!(
        posts
            .iter()
            .all(|(_, b)| b["markdown"]["text"].as_str().unwrap().chars().count() <= 5000)
    );
    assert!(
        fake.tokens().is_empty(),
        "no token needed for session webhooks"
    );

    // Expired session: a proactive 1:1 message with the access token, which is cached.
    let old = fake.direct_message("ada", "later", -10);
    push_acked(&fake, &old).await;
    let later = run.inbox.all()[1].clone();
    run.channel
        .send(&OutboundMessage::reply(&later, "**done**"))
        .await
        .unwrap();
    run.channel
        .send(&OutboundMessage::new(
            "dingtalk",
            "group:cidTeam",
            "to the team",
        ))
        .await
        .unwrap();
    let calls = fake.api_calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(fake.tokens().len(), 1, "the token is reused");
    let (method, body, token) = &calls[0];
    assert_eq!(method, "oToMessages/batchSend");
    assert_eq!(body["robotCode"], ID);
    assert_eq!(body["userIds"], json!(["ada"]));
    assert_eq!(body["msgKey"], "sampleMarkdown");
    let param: Value = serde_json::from_str(body["msgParam"].as_str().unwrap()).unwrap();
    assert_eq!(param["text"], "**done**");
    assert_eq!(param["title"], "done");
    assert_eq!(token.as_deref(), Some(fake.tokens()[0].as_str()));
    assert_eq!(calls[1].0, "groupMessages/send");
    assert_eq!(calls[1].1["openConversationId"], "cidTeam");

    // A chat id of neither kind is refused without a call.
    let e = run
        .channel
        .send(&OutboundMessage::new("dingtalk", "cidTeam", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_is_renewed() {
    let fake = FakeDingtalk::start(ID, SECRET);
    // Shorter than the renewal margin: every send needs a new token.
    fake.set_token_lifetime(60);
    let run = start(&fake, json!({})).await;
    for text in ["one", "two"] {
        run.channel
            .send(&OutboundMessage::new("dingtalk", "user:ada", text))
            .await
            .unwrap();
    }
    assert_eq!(fake.tokens().len(), 2);
    let calls = fake.api_calls();
    assert_eq!(calls[1].2.as_deref(), Some(fake.tokens()[1].as_str()));
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_is_one_line_naming_the_key() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let workspace = tempfile::tempdir().unwrap();
    let channel = DingtalkChannel::from_setup(&setup(
        &fake,
        json!({"client_secret": "wrong"}),
        workspace.path(),
    ))
    .unwrap();
    let e = channel
        .run(Arc::new(Kept::default()), CancellationToken::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ChannelError::Rejected(_)), "{text}");
    assert!(
        text.contains("channels.dingtalk.client_id / client_secret"),
        "{text}"
    );
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong") && !text.contains('\n'), "{text}");

    // A missing key is refused when the channel is built.
    let e = DingtalkChannel::from_setup(&setup(&fake, json!({"client_id": " "}), workspace.path()))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("channels.dingtalk.client_id is empty"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_and_voice_notes_are_saved() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({})).await;
    push_acked(
        &fake,
        &fake.media_message("ada", "picture", b"\x89PNG picture"),
    )
    .await;
    push_acked(&fake, &fake.media_message("ada", "audio", b"#!AMR voice")).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 2);
    let picture = &all[0].media[0];
    assert_eq!(picture.kind, MediaKind::Image);
    assert_eq!(picture.mime.as_deref(), Some("image/png"));
    assert!(
        picture
            .location
            .starts_with(run.dir.path().to_str().unwrap())
    );
    assert_eq!(
        std::fs::read(&picture.location).unwrap(),
        b"\x89PNG picture"
    );
    assert_eq!(all[1].content, "voice words");
    assert_eq!(all[1].media[0].kind, MediaKind::Audio);
    assert_eq!(
        std::fs::read(&all[1].media[0].location).unwrap(),
        b"#!AMR voice"
    );
    let calls = fake.api_calls();
    assert_eq!(calls[0].0, "messageFiles/download");
    assert_eq!(calls[0].1["robotCode"], ID);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_socket_and_a_disconnect_request_reconnect() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({})).await;
    wait(&fake, "a connection", |f| f.opens().len() == 1).await;
    tokio::task::block_in_place(|| fake.drop_connections());
    wait(&fake, "a second connection", |f| f.opens().len() == 2).await;
    push_acked(&fake, &fake.direct_message("ada", "still there?", 5400)).await;
    tokio::task::block_in_place(|| fake.ask_to_reconnect());
    wait(&fake, "a third connection", |f| f.opens().len() == 3).await;
    push_acked(&fake, &fake.direct_message("ada", "and now?", 5400)).await;
    wait_kept(&run.inbox, 2).await;
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_pairs_with_the_one_time_code() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let run = start(&fake, json!({"allow_from": []})).await;
    let code = run.channel.pairing_code().expect("pairing is open");
    push_acked(&fake, &fake.direct_message("bob", "hi", 5400)).await;
    push_acked(&fake, &fake.direct_message("bob", "/pair 000000x", 5400)).await;
    push_acked(
        &fake,
        &fake.direct_message("bob", &format!("/pair {code}"), 5400),
    )
    .await;
    let texts: Vec<String> = fake
        .session_posts()
        .iter()
        .map(|(_, b)| b["markdown"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "That code is wrong or was already used.",
            "Paired: you can talk to me now."
        ]
    );
    assert!(run.inbox.all().is_empty());
    push_acked(&fake, &fake.direct_message("bob", "now?", 5400)).await;
    assert_eq!(run.inbox.all()[0].content, "now?");
    assert!(run.channel.pairing_code().is_none());
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_only_refused_credentials_are_final() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let throttled = json!({"code": "Throttling", "message": "too many requests"});
    // connections/open throttled twice at start: retried, not a final error.
    fake.fail_next_open(429, throttled.clone());
    fake.fail_next_open(503, json!({"code": "ServiceUnavailable"}));
    let run = start(&fake, json!({})).await;
    wait(&fake, "a connection after the refusals", |f| {
        f.opens().len() == 1
    })
    .await;
    assert!(
        !run.task.is_finished(),
        "a throttled open ended the channel"
    );
    push_acked(&fake, &fake.direct_message("ada", "through", 5400)).await;
    assert_eq!(run.inbox.all().len(), 1);

    // The token endpoint throttles: a temporary error; a refused secret: final.
    fake.fail_next_token(429, throttled);
    // A group without a live session webhook: the robot API, with a token.
    let send = OutboundMessage::new("dingtalk", "group:cidTeam", "hello");
    let e = run.channel.send(&send).await.unwrap_err();
    assert!(matches!(e, ChannelError::Platform(_)), "{e}");
    fake.fail_next_token(
        400,
        json!({"code": "invalidClientIdOrSecret", "message": "invalid appKey or appSecret"}),
    );
    let e = run.channel.send(&send).await.unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    run.channel.send(&send).await.unwrap();
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_at_expiry_make_one_token_request() {
    let fake = FakeDingtalk::start(ID, SECRET);
    let workspace = tempfile::tempdir().unwrap();
    let channel =
        Arc::new(DingtalkChannel::from_setup(&setup(&fake, json!({}), workspace.path())).unwrap());
    // A token that is due for renewal at once.
    fake.set_token_lifetime(60);
    channel
        .send(&OutboundMessage::new("dingtalk", "user:ada", "first"))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 1);
    fake.set_token_lifetime(7200);
    fake.set_token_delay_ms(300);
    let sends: Vec<_> = (0..5)
        .map(|i| {
            let channel = Arc::clone(&channel);
            tokio::spawn(async move {
                channel
                    .send(&OutboundMessage::new(
                        "dingtalk",
                        "user:ada",
                        format!("part {i}"),
                    ))
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    assert_eq!(fake.token_requests(), 2, "one renewal for five sends");
    assert_eq!(fake.api_calls().len(), 6);
}
