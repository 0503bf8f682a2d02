//! The QQ channel against a loopback QQ (token endpoint, WebSocket gateway, v2 message APIs,
//! Ed25519-signed callbacks) through `api_base` and `auth_base`.
#![cfg(feature = "qq")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::qq::QqChannel;
use picoclaw_channels::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest};
use picoclaw_testkit::qq::FakeQq;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

const APP: &str = "102030";
const SECRET: &str = "DG5g3B4j9X2KOErG";

/// A running channel; `dir` is its workspace.
type Running = common::Running<QqChannel>;

fn setup(fake: &FakeQq, extra: Value, workspace: &std::path::Path) -> ChannelSetup {
    let v = json!({"enabled": true, "app_id": APP, "app_secret": SECRET,
                   "allow_from": ["ADA"], "api_base": fake.api_base(),
                   "auth_base": fake.api_base(), "rate_limit_per_minute": 0});
    ChannelSetup::new("qq", merged(v, extra), workspace, &workspace.join("home"))
}

async fn start(fake: &FakeQq, extra: Value) -> Running {
    let workspace = tempfile::tempdir().unwrap();
    let channel = QqChannel::from_setup(&setup(fake, extra, workspace.path())).unwrap();
    common::run(channel, workspace)
}

async fn wait(fake: &FakeQq, what: &str, done: impl FnMut(&FakeQq) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

/// Waits for the gateway session (READY after Identify).
async fn ready(fake: &FakeQq) {
    wait(fake, "identify", |f| !f.received_op(2).is_empty()).await;
}

/// Pushes a dispatch, then a marker message from the allowed user, and waits until the marker
/// is kept: what came before it was handled.
async fn push_then_mark(fake: &FakeQq, run: &Running, t: &str, d: &Value) {
    let before = run.inbox.all().len();
    tokio::task::block_in_place(|| fake.push(t, d));
    tokio::task::block_in_place(|| {
        fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "mark"))
    });
    for _ in 0..500 {
        if run
            .inbox
            .all()
            .iter()
            .skip(before)
            .any(|m| m.content == "mark")
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the marker was not kept: {:?}", run.inbox.all());
}

/// What was kept, without the markers.
fn contents(run: &Running) -> Vec<String> {
    let mut all = common::contents(&run.inbox);
    all.retain(|c| c != "mark");
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_takes_allowed_c2c_and_group_messages_once() {
    let fake = FakeQq::start(APP, SECRET);
    fake.set_heartbeat_ms(100);
    let run = start(&fake, json!({"group_trigger": {"prefixes": ["/ai"]}})).await;
    ready(&fake).await;
    let identify = &fake.received_op(2)[0]["d"];
    assert_eq!(identify["token"], format!("QQBot {}", fake.tokens()[0]));
    assert_ne!(identify["intents"].as_u64().unwrap() & (1 << 25), 0);

    let dm = fake.c2c_message("ADA", "hello there");
    tokio::task::block_in_place(|| fake.push("C2C_MESSAGE_CREATE", &dm));
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, "user:ADA");
    assert_eq!(m.sender_id, "ADA");
    assert_eq!(m.content, "hello there");
    assert_eq!(m.metadata["message_id"], dm["id"].as_str().unwrap());

    // A redelivery, a stranger and another bot are dropped.
    push_then_mark(&fake, &run, "C2C_MESSAGE_CREATE", &dm).await;
    push_then_mark(
        &fake,
        &run,
        "C2C_MESSAGE_CREATE",
        &fake.c2c_message("EVE", "let me in"),
    )
    .await;
    let mut bot = fake.c2c_message("ADA", "from a bot");
    bot["author"]["bot"] = json!(true);
    push_then_mark(&fake, &run, "C2C_MESSAGE_CREATE", &bot).await;
    assert_eq!(contents(&run), ["hello there"]);

    // A group @-message: the mention markup is taken out.
    let at = fake.group_message("GRP1", "ADA", "what time is it?");
    push_then_mark(&fake, &run, "GROUP_AT_MESSAGE_CREATE", &at).await;
    let kept = run.inbox.all();
    let group = kept.iter().find(|m| m.chat_id == "group:GRP1").unwrap();
    assert_eq!(group.content, "what time is it?");
    assert_eq!(group.sender_id, "ADA");
    assert_eq!(group.metadata["peer_kind"], "group");

    // Heartbeats carry the last sequence number and are acknowledged (no reconnection).
    wait(&fake, "heartbeats", |f| f.received_op(1).len() >= 3).await;
    let last = fake.received_op(1).last().unwrap().clone();
    assert!(last["d"].as_u64().unwrap() >= 2, "{last}");
    assert_eq!(fake.received_op(2).len(), 1, "one session all along");
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drop_resumes_the_session_and_an_invalid_session_identifies_again() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({})).await;
    ready(&fake).await;
    let session = "session-"; // the fake numbers its sessions
    let seq = fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "one"));
    wait_kept(&run.inbox, 1).await;

    tokio::task::block_in_place(|| fake.drop_connections());
    wait(&fake, "a resume", |f| !f.received_op(6).is_empty()).await;
    let resume = &fake.received_op(6)[0]["d"];
    assert!(resume["session_id"].as_str().unwrap().starts_with(session));
    assert_eq!(resume["seq"], seq);
    tokio::task::block_in_place(|| {
        fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "two"))
    });
    wait_kept(&run.inbox, 2).await;

    tokio::task::block_in_place(|| fake.ask_to_reconnect());
    wait(&fake, "a second resume", |f| f.received_op(6).len() == 2).await;

    tokio::task::block_in_place(|| fake.invalidate_session());
    wait(&fake, "a new identify", |f| f.received_op(2).len() == 2).await;
    tokio::task::block_in_place(|| {
        fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "three"))
    });
    wait_kept(&run.inbox, 3).await;

    // A message the inbox refuses: the session is resumed from before it, so that QQ replays it.
    let resumes = fake.received_op(6).len();
    run.inbox.fail.store(1, Ordering::SeqCst);
    let refused = tokio::task::block_in_place(|| {
        fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "four"))
    });
    wait(&fake, "a resume before it", |f| {
        f.received_op(6).len() > resumes
    })
    .await;
    assert_eq!(fake.received_op(6)[resumes]["d"]["seq"], refused - 1);
    assert_eq!(run.inbox.all().len(), 3);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_numbered_passive_replies_in_plain_text() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({"max_message_length": 100})).await;
    ready(&fake).await;
    let dm = fake.c2c_message("ADA", "explain");
    tokio::task::block_in_place(|| fake.push("C2C_MESSAGE_CREATE", &dm));
    wait_kept(&run.inbox, 1).await;
    let inbound = run.inbox.all()[0].clone();

    let long = format!("**Answer**: {}", "many words here ".repeat(15));
    run.channel
        .send(&OutboundMessage::reply(&inbound, long))
        .await
        .unwrap();
    // A second answer to the same message continues the numbering (QQ refuses a repeat).
    run.channel
        .send(&OutboundMessage::reply(&inbound, "and one more thing"))
        .await
        .unwrap();
    let posts = fake.posts();
    assert!(posts.len() >= 4, "{posts:?}");
    for (i, (path, body)) in posts.iter().enumerate() {
        assert_eq!(path, "/v2/users/ADA/messages");
        assert_eq!(body["msg_type"], 0);
        assert_eq!(body["msg_id"], dm["id"]);
        assert_eq!(body["msg_seq"], i as u64 + 1);
        assert!(body["content"].as_str().unwrap().chars().count() <= 100);
    }
    assert!(
        posts[0].1["content"]
            .as_str()
            .unwrap()
            .starts_with("Answer: many")
    );

    // Without a message to answer: an active message, to a group.
    run.channel
        .send(&OutboundMessage::new("qq", "group:GRP1", "news"))
        .await
        .unwrap();
    let (path, body) = fake.posts().last().unwrap().clone();
    assert_eq!(path, "/v2/groups/GRP1/messages");
    assert!(body.get("msg_id").is_none(), "{body}");
    assert_eq!(fake.tokens().len(), 1, "the token is cached");

    let e = run
        .channel
        .send(&OutboundMessage::new("qq", "GRP1", "x"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_is_sent_as_markdown_when_asked_and_tokens_are_renewed() {
    let fake = FakeQq::start(APP, SECRET);
    // Shorter than the renewal margin: each call needs a new token.
    fake.set_token_lifetime(30);
    let workspace = tempfile::tempdir().unwrap();
    let channel = QqChannel::from_setup(&setup(
        &fake,
        json!({"send_markdown": true, "mode": "webhook"}),
        workspace.path(),
    ))
    .unwrap();
    channel
        .send(&OutboundMessage::new("qq", "user:ADA", "**bold** move"))
        .await
        .unwrap();
    channel
        .send(&OutboundMessage::new("qq", "user:ADA", "again"))
        .await
        .unwrap();
    let posts = fake.posts();
    assert_eq!(posts[0].1["msg_type"], 2);
    assert_eq!(posts[0].1["markdown"]["content"], "**bold** move");
    assert_eq!(fake.tokens().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_app_secret_is_one_line_naming_the_keys() {
    let fake = FakeQq::start(APP, SECRET);
    let workspace = tempfile::tempdir().unwrap();
    let channel = QqChannel::from_setup(&setup(
        &fake,
        json!({"app_secret": "not-the-secret"}),
        workspace.path(),
    ))
    .unwrap();
    let e = channel
        .run(Arc::new(Kept::default()), CancellationToken::new())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ChannelError::Rejected(_)), "{text}");
    assert!(text.contains("channels.qq.app_id / app_secret"), "{text}");
    assert!(
        !text.contains("not-the-secret") && !text.contains('\n'),
        "{text}"
    );

    let e = QqChannel::from_setup(&setup(&fake, json!({"mode": "polling"}), workspace.path()))
        .unwrap_err();
    assert!(e.to_string().contains("channels.qq.mode"), "{e}");
    let e =
        QqChannel::from_setup(&setup(&fake, json!({"app_id": ""}), workspace.path())).unwrap_err();
    assert!(e.to_string().contains("channels.qq.app_id is empty"), "{e}");
    let e = QqChannel::from_setup(&setup(
        &fake,
        json!({"auth_base": "ftp://h"}),
        workspace.path(),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("channels.qq.auth_base"), "{e}");
}

/// Header names and values.
type Headers = Vec<(String, String)>;

/// Seconds since the epoch, `offset` from now, as QQ's `X-Signature-Timestamp`.
fn stamp(offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now + offset).to_string()
}

fn request(body: &[u8], headers: &[(String, String)]) -> WebhookRequest {
    let mut r =
        WebhookRequest::new("POST", body.to_vec()).with_header("content-type", "application/json");
    for (k, v) in headers {
        r = r.with_header(k, v.clone());
    }
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_verified_validated_and_acknowledged() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({"mode": "webhook"})).await;
    assert!(run.channel.takes_webhooks());
    let inbox: Arc<dyn Inbox> = run.inbox.clone();

    // The callback URL check: plain_token back, signed with the key of the app secret.
    let check = json!({"op": 13, "d": {"plain_token": "Arq0D5A61EgUu4OxUvOp",
                                       "event_ts": "1725442341"}})
    .to_string();
    let r = run
        .channel
        .webhook(
            request(check.as_bytes(), &fake.sign(&stamp(0), check.as_bytes())),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(r.status, 200);
    let answer: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(answer["plain_token"], "Arq0D5A61EgUu4OxUvOp");
    assert_eq!(
        answer["signature"],
        fake.validation_signature("1725442341", "Arq0D5A61EgUu4OxUvOp")
    );

    // A signed dispatch: kept, then acknowledged with op 12; its redelivery kept once.
    let body = fake.callback(
        "C2C_MESSAGE_CREATE",
        &fake.c2c_message("ADA", "via webhook"),
    );
    for _ in 0..2 {
        let r = run
            .channel
            .webhook(
                request(&body, &fake.sign(&stamp(0), &body)),
                Arc::clone(&inbox),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap(),
            json!({"op": 12, "d": 0})
        );
    }
    assert_eq!(contents(&run), ["via webhook"]);

    // Forged, tampered, unsigned: refused, nothing kept.
    let forged = fake.callback("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "forged"));
    let now = stamp(0);
    let mut flipped = fake.sign(&now, &forged);
    let first = if flipped[0].1.starts_with('0') {
        "1"
    } else {
        "0"
    };
    flipped[0].1.replace_range(0..1, first);
    let mut tampered = forged.clone();
    tampered.extend_from_slice(b" ");
    let mut restamped = fake.sign(&now, &forged);
    restamped[1].1 = stamp(1);
    // Signed, but more than an hour ago or ahead: a replay.
    let stale = fake.sign(&stamp(-3601), &forged);
    let ahead = fake.sign(&stamp(3601), &forged);
    let refused: [(&Vec<u8>, Headers); 6] = [
        (&forged, flipped),
        (&tampered, fake.sign(&now, &forged)),
        (&forged, restamped),
        (&forged, Vec::new()),
        (&forged, stale),
        (&forged, ahead),
    ];
    for (body, headers) in refused {
        let r = run
            .channel
            .webhook(request(body, &headers), Arc::clone(&inbox))
            .await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    }
    // An unsigned validation request cannot make us sign a callback body.
    let oracle = json!({"op": 13, "d": {"plain_token": String::from_utf8_lossy(&forged),
                                        "event_ts": "1760000000"}})
    .to_string();
    let r = run
        .channel
        .webhook(request(oracle.as_bytes(), &[]), Arc::clone(&inbox))
        .await;
    assert_eq!(r.status, 401);
    // Unsigned validation fields must be plain letters and digits: no JSON, quotes, spaces.
    for (plain, ts) in [
        ("{\"op\":0}", "1760000000"),
        ("Arq0D5A61\"EgUu4", "1760000000"),
        ("Arq0D5A61 EgUu4", "1760000000"),
        ("Arq0D5A61EgUu4", "1760000000 "),
        ("Arq0D5A61EgUu4", "{1760000000}"),
    ] {
        let check = json!({"op": 13, "d": {"plain_token": plain, "event_ts": ts}}).to_string();
        let r = run
            .channel
            .webhook(request(check.as_bytes(), &[]), Arc::clone(&inbox))
            .await;
        assert_eq!(r.status, 401, "{plain:?} {ts:?}");
    }
    let plain = json!({"op": 13, "d": {"plain_token": "Arq0D5A61EgUu4", "event_ts": "1760000000"}})
        .to_string();
    let r = run
        .channel
        .webhook(request(plain.as_bytes(), &[]), Arc::clone(&inbox))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(contents(&run), ["via webhook"]);

    // A refused delivery is answered 503 (QQ retries) and the retry gets through.
    run.inbox.fail.store(1, Ordering::SeqCst);
    let body = fake.callback("C2C_MESSAGE_CREATE", &fake.c2c_message("ADA", "retry me"));
    let r = run
        .channel
        .webhook(
            request(&body, &fake.sign(&stamp(0), &body)),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, b"not kept, retry", "no internal error text");
    let r = run
        .channel
        .webhook(
            request(&body, &fake.sign(&stamp(1), &body)),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(contents(&run), ["via webhook", "retry me"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn images_and_voice_attachments_are_saved() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({})).await;
    ready(&fake).await;
    let image = fake.c2c_attachment("ADA", "image/png", b"\x89PNG qq");
    tokio::task::block_in_place(|| fake.push("C2C_MESSAGE_CREATE", &image));
    let voice = fake.c2c_attachment("ADA", "voice", b"#!SILK");
    tokio::task::block_in_place(|| fake.push("C2C_MESSAGE_CREATE", &voice));
    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    let picture = &all[0].media[0];
    assert_eq!(picture.kind, MediaKind::Image);
    assert_eq!(picture.mime.as_deref(), Some("image/png"));
    assert!(
        picture
            .location
            .starts_with(run.dir.path().to_str().unwrap())
    );
    assert_eq!(std::fs::read(&picture.location).unwrap(), b"\x89PNG qq");
    assert_eq!(all[1].media[0].kind, MediaKind::Audio);
    assert_eq!(std::fs::read(&all[1].media[0].location).unwrap(), b"#!SILK");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_pairs_with_the_one_time_code() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({"allow_from": []})).await;
    ready(&fake).await;
    let code = run.channel.pairing_code().expect("pairing is open");
    for text in ["hi", "/pair 12", &format!("/pair {code}")] {
        tokio::task::block_in_place(|| {
            fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("BOB", text))
        });
    }
    wait(&fake, "two notices", |f| f.posts().len() == 2).await;
    let texts: Vec<Value> = fake
        .posts()
        .into_iter()
        .map(|(_, b)| b["content"].clone())
        .collect();
    assert_eq!(
        texts,
        [
            json!("That code is wrong or was already used."),
            json!("Paired: you can talk to me now.")
        ]
    );
    tokio::task::block_in_place(|| {
        fake.push("C2C_MESSAGE_CREATE", &fake.c2c_message("BOB", "now?"))
    });
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "now?");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_handler_dropped_midway_lets_the_redelivery_through() {
    let fake = FakeQq::start(APP, SECRET);
    let run = start(&fake, json!({"mode": "webhook"})).await;
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    // QQ gives up on a callback whose attachment takes too long (the handler future dropped).
    fake.set_file_delay_ms(3000);
    let body = fake.callback(
        "C2C_MESSAGE_CREATE",
        &fake.c2c_attachment("ADA", "image/png", b"\x89PNG slow"),
    );
    let first = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        run.channel.webhook(
            request(&body, &fake.sign(&stamp(0), &body)),
            Arc::clone(&inbox),
        ),
    )
    .await;
    assert!(first.is_err(), "the download was expected to stall");
    fake.set_file_delay_ms(0);
    let r = run
        .channel
        .webhook(
            request(&body, &fake.sign(&stamp(0), &body)),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(r.status, 200);
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "the redelivery was dropped as seen");
    assert_eq!(
        std::fs::read(&all[0].media[0].location).unwrap(),
        b"\x89PNG slow"
    );
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_event_does_not_cost_the_connection() {
    let fake = FakeQq::start(APP, SECRET);
    fake.set_heartbeat_ms(100);
    let run = start(&fake, json!({})).await;
    ready(&fake).await;
    wait(&fake, "heartbeats", |f| f.received_op(1).len() >= 2).await;
    // The download keeps the read loop busy for six heartbeat intervals.
    fake.set_file_delay_ms(600);
    let slow = fake.c2c_attachment("ADA", "image/png", b"\x89PNG");
    tokio::task::block_in_place(|| fake.push("C2C_MESSAGE_CREATE", &slow));
    wait_kept(&run.inbox, 1).await;
    let beats = fake.received_op(1).len();
    wait(&fake, "heartbeats after it", |f| {
        f.received_op(1).len() >= beats + 3
    })
    .await;
    assert_eq!(fake.received_op(2).len(), 1, "identified again");
    assert!(
        fake.received_op(6).is_empty(),
        "reconnected after a slow event"
    );
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_failure_at_hello_resumes_the_session() {
    let fake = FakeQq::start(APP, SECRET);
    // Shorter than the renewal margin: every call fetches a token.
    fake.set_token_lifetime(30);
    let run = start(&fake, json!({})).await;
    ready(&fake).await;
    // After the drop: /gateway gets a token, Resume does not (QQ throttles once).
    fake.plan_tokens(vec![
        None,
        Some((429, json!({"code": 429, "message": "rate limited"}))),
    ]);
    tokio::task::block_in_place(|| fake.drop_connections());
    wait(&fake, "a resume", |f| !f.received_op(6).is_empty()).await;
    assert!(!run.task.is_finished(), "the channel ended");
    let resume = &fake.received_op(6)[0]["d"];
    assert!(
        resume["session_id"]
            .as_str()
            .unwrap()
            .starts_with("session-")
    );
    assert_eq!(
        fake.received_op(2).len(),
        1,
        "a new session lost the old one's events"
    );
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_at_start_is_temporary() {
    let fake = FakeQq::start(APP, SECRET);
    let workspace = tempfile::tempdir().unwrap();
    let channel = QqChannel::from_setup(&setup(&fake, json!({}), workspace.path())).unwrap();
    for failure in [
        (429, json!({"code": 429, "message": "rate limited"})),
        (200, json!({"code": 100017, "message": "rate limited"})),
        (500, json!({"code": 500, "message": "internal error"})),
    ] {
        fake.plan_tokens(vec![Some(failure.clone())]);
        let e = channel
            .run(Arc::new(Kept::default()), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(e, ChannelError::Platform(_)), "{failure:?}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_at_expiry_make_one_token_request() {
    let fake = FakeQq::start(APP, SECRET);
    let workspace = tempfile::tempdir().unwrap();
    let channel = Arc::new(
        QqChannel::from_setup(&setup(&fake, json!({"mode": "webhook"}), workspace.path())).unwrap(),
    );
    // A token that is due for renewal at once.
    fake.set_token_lifetime(30);
    channel
        .send(&OutboundMessage::new("qq", "user:ADA", "first"))
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
                    .send(&OutboundMessage::new("qq", "user:ADA", format!("part {i}")))
                    .await
            })
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    assert_eq!(fake.token_requests(), 2, "one renewal for five sends");
    assert_eq!(fake.posts().len(), 6);
}
