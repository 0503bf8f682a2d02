//! The WhatsApp channel against loopback fakes: the original's bridge (a WebSocket server) and
//! the Business Cloud API (a Graph API, with webhooks signed as Meta signs them).
#![cfg(feature = "whatsapp")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{block, contents, merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::whatsapp::WhatsappChannel;
use picoclaw_channels::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest};
use picoclaw_testkit::whatsapp::{FakeBridge, FakeCloud};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ADA: &str = "491701234567";
const TOKEN: &str = "EAAG-test-token";
const SECRET: &str = "app-secret";
const VERIFY: &str = "verify-me";
const PHONE_ID: &str = "106540352242922";

type Running = common::Running<WhatsappChannel>;

fn channel(settings: Value) -> (Result<WhatsappChannel, ChannelError>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workspace")).unwrap();
    let setup = ChannelSetup::new(
        "whatsapp",
        settings,
        &dir.path().join("workspace"),
        &dir.path().join("home"),
    );
    (WhatsappChannel::from_setup(&setup), dir)
}

fn start(settings: Value) -> Running {
    let (channel, dir) = channel(settings);
    common::run(channel.unwrap(), dir)
}

fn bridge_settings(fake: &FakeBridge, extra: Value) -> Value {
    let v = json!({"enabled": true, "bridge_url": fake.ws_url(), "allow_from": [format!("+{ADA}")],
                   "rate_limit_per_minute": 0});
    merged(v, extra)
}

#[tokio::test]
async fn the_two_modes_exclude_each_other_and_native_is_refused() {
    let cases = [
        (
            json!({"bridge_url": "ws://127.0.0.1:1", "phone_number_id": "1"}),
            "bridge_url and phone_number_id",
        ),
        (json!({"enabled": true}), "bridge_url"),
        (
            json!({"use_native": true, "bridge_url": "ws://127.0.0.1:1"}),
            "use_native",
        ),
        (json!({"bridge_url": "http://127.0.0.1:1"}), "ws://"),
        (
            json!({"phone_number_id": PHONE_ID, "access_token": TOKEN, "verify_token": VERIFY}),
            "channels.whatsapp.app_secret",
        ),
        (
            json!({"phone_number_id": PHONE_ID, "access_token": TOKEN, "app_secret": SECRET}),
            "channels.whatsapp.verify_token",
        ),
        (
            json!({"phone_number_id": PHONE_ID, "app_secret": SECRET, "verify_token": VERIFY}),
            "channels.whatsapp.access_token",
        ),
        (
            json!({"phone_number_id": PHONE_ID, "access_token": TOKEN, "app_secret": SECRET,
                "verify_token": VERIFY, "api_base": "ftp://x"}),
            "api_base",
        ),
    ];
    for (settings, named) in cases {
        let (made, _dir) = channel(settings.clone());
        match made {
            Err(ChannelError::Rejected(e)) => assert!(e.contains(named), "{settings}: {e}"),
            other => panic!("{settings}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn sending_while_the_bridge_is_away_is_a_retryable_error() {
    let fake = FakeBridge::start();
    let (made, _dir) = channel(bridge_settings(&fake, json!({})));
    let e = made
        .unwrap()
        .send(&OutboundMessage::new("whatsapp", "1@s.whatsapp.net", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChannelError::Platform(ref m) if m.contains("not connected")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_delivers_allowed_senders_once_and_ignores_the_rest() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(&fake, json!({})));
    block(|| fake.wait_for("the connection", |f| f.connections() == 1)).await;

    // From a linked device (":3") of an allowed number written with "+": kept.
    let jid = format!("{ADA}@s.whatsapp.net");
    let first = fake.message(&format!("{ADA}:3@s.whatsapp.net"), &jid, "hello");
    let id = first["id"].as_str().unwrap().to_owned();
    block(|| fake.push(&first)).await;
    // The same message again, a stranger, the account's own message, a status frame and junk.
    let stranger = fake.message(
        "4915550000@s.whatsapp.net",
        "4915550000@s.whatsapp.net",
        "hi",
    );
    let mut own = fake.message(&jid, &jid, "my own words");
    own["from_me"] = json!(true);
    block(|| {
        fake.push(&first);
        fake.push(&stranger);
        fake.push(&own);
        fake.push(&json!({"type": "status", "status": "connected"}));
        fake.push_raw("{not json");
        fake.push(&json!({"type": "message", "from": 42}));
        fake.push(&fake.message(&jid, &jid, "second"));
    })
    .await;
    // Frames are handled in order: once the last one is kept, the others were dealt with.
    wait_kept(&run.inbox, 2).await;
    assert_eq!(contents(&run.inbox), ["hello", "second"]);
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, jid);
    assert_eq!(m.sender_id, format!("{ADA}:3@s.whatsapp.net"));
    assert_eq!(m.metadata["message_id"], id);
    assert_eq!(m.metadata["user_name"], "Someone");
    assert!(
        fake.sent().is_empty(),
        "nothing is answered: {:?}",
        fake.sent()
    );
    run.stop.cancel();
    assert!(run.task.await.unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_groups_are_answered_on_a_prefix_only() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(
        &fake,
        json!({"group_trigger_prefix": ["/ai"]}),
    ));
    let group = "120363041234567890@g.us";
    let ada = format!("{ADA}@s.whatsapp.net");
    block(|| {
        fake.push(&fake.message(&ada, group, "just chatting"));
        fake.push(&fake.message(&ada, group, "/ai what time is it?"));
        fake.push(&fake.message("4915550000@s.whatsapp.net", group, "/ai let me in"));
        // Frames are handled in order: once this one is kept, the others were dealt with.
        fake.push(&fake.message(&ada, group, "/ai and the last"));
    })
    .await;
    wait_kept(&run.inbox, 2).await;
    assert_eq!(contents(&run.inbox), ["what time is it?", "and the last"]);
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, group);
    assert_eq!(m.metadata["peer_kind"], "group");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_answers_are_formatted_split_and_survive_a_reconnect() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(&fake, json!({})));
    let jid = format!("{ADA}@s.whatsapp.net");
    block(|| fake.wait_for("the connection", |f| f.connections() == 1)).await;
    // The connection may be up a moment before the channel registered its writer.
    let mut sent = Err(ChannelError::Platform(String::new()));
    for _ in 0..100 {
        sent = run
            .channel
            .send(&OutboundMessage::new("whatsapp", &jid, "**Done**, see `x`"))
            .await;
        if sent.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent.unwrap();
    let long = "word ".repeat(2000);
    run.channel
        .send(&OutboundMessage::new("whatsapp", &jid, long.clone()))
        .await
        .unwrap();
    block(|| fake.wait_for("four frames", |f| f.sent().len() >= 4)).await;
    let frames = fake.sent();
    assert_eq!(
        frames[0],
        json!({"type": "message", "to": jid, "content": "*Done*, see `x`"})
    );
    let parts: Vec<&str> = frames[1..]
        .iter()
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert!(parts.iter().all(|p| p.chars().count() <= 4096), "{parts:?}");
    assert_eq!(parts.join(" ").split_whitespace().count(), 2000);

    // The bridge restarts: the channel dials again and answers still go out.
    block(|| fake.drop_connections()).await;
    block(|| fake.wait_for("the second connection", |f| f.connections() == 2)).await;
    let mut again = Err(ChannelError::Platform(String::new()));
    for _ in 0..200 {
        again = run
            .channel
            .send(&OutboundMessage::new("whatsapp", &jid, "back"))
            .await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again.unwrap();
    block(|| {
        fake.wait_for("the answer after reconnecting", |f| {
            f.sent().iter().any(|s| s["content"] == "back")
        })
    })
    .await;
    block(|| fake.push(&fake.message(&jid, &jid, "still there?"))).await;
    wait_kept(&run.inbox, 1).await;
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_strangers_pair_with_the_one_time_code() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(&fake, json!({"allow_from": []})));
    let code = run.channel.access().pairing_code().unwrap();
    let jid = format!("{ADA}@s.whatsapp.net");
    block(|| {
        fake.push(&fake.message(&jid, &jid, "hello?"));
        fake.push(&fake.message(&jid, &jid, "/pair 000000x"));
        fake.push(&fake.message(&jid, &jid, &format!("/pair {code}")));
        fake.push(&fake.message(&jid, &jid, "now?"));
    })
    .await;
    wait_kept(&run.inbox, 1).await;
    assert_eq!(contents(&run.inbox), ["now?"]);
    // The notices are queued for the connection's writer, not waited for: maybe not out yet.
    block(|| fake.wait_for("the two notices", |f| f.sent().len() >= 2)).await;
    let notices: Vec<String> = fake
        .sent()
        .iter()
        .map(|f| f["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].contains("wrong"), "{notices:?}");
    assert!(notices[1].starts_with("Paired"), "{notices:?}");
    assert_eq!(fake.sent()[1]["to"], jid.as_str());
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_media_urls_are_saved_and_a_refused_message_comes_through_again() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(&fake, json!({})));
    let jid = format!("{ADA}@s.whatsapp.net");
    let url = fake.add_file("photo", b"\xff\xd8jpeg bytes", "image/jpeg");
    let voice = fake.add_file("voice", b"OggS voice", "audio/ogg");
    let mut msg = fake.message(&jid, &jid, "look");
    msg["media"] = json!([url, "/etc/passwd", {"url": voice, "type": "audio"}]);
    // The journal is full once: the message is not kept, the sender is told, and the same
    // message sent again is not dropped as a redelivery.
    run.inbox.fail.store(1, Ordering::SeqCst);
    block(|| fake.push(&msg)).await;
    block(|| fake.wait_for("the notice", |f| !f.sent().is_empty())).await;
    assert!(run.inbox.all().is_empty());
    block(|| fake.push(&msg)).await;
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.content, "look");
    assert_eq!(m.media.len(), 2, "{:?}", m.media);
    assert_eq!(m.media[0].kind, MediaKind::Image);
    assert_eq!(m.media[0].mime.as_deref(), Some("image/jpeg"));
    assert_eq!(
        std::fs::read(&m.media[0].location).unwrap(),
        b"\xff\xd8jpeg bytes"
    );
    assert_eq!(m.media[1].kind, MediaKind::Audio);
    assert_eq!(std::fs::read(&m.media[1].location).unwrap(), b"OggS voice");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bridge_rate_limit_drops_bursts_and_says_so_once() {
    let fake = FakeBridge::start();
    let run = start(bridge_settings(&fake, json!({"rate_limit_per_minute": 1})));
    let jid = format!("{ADA}@s.whatsapp.net");
    block(|| {
        for n in 0..3 {
            fake.push(&fake.message(&jid, &jid, &format!("burst {n}")));
        }
    })
    .await;
    block(|| fake.wait_for("the slow-down notice", |f| !f.sent().is_empty())).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(contents(&run.inbox), ["burst 0"]);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0]["content"].as_str().unwrap().contains("slow down"));
    run.stop.cancel();
}

fn cloud_settings(fake: &FakeCloud, extra: Value) -> Value {
    let v = json!({"enabled": true, "phone_number_id": PHONE_ID, "access_token": TOKEN,
                   "app_secret": SECRET, "verify_token": VERIFY, "api_base": fake.api_base(),
                   "allow_from": [ADA], "rate_limit_per_minute": 0});
    merged(v, extra)
}

fn post(fake: &FakeCloud, body: &str) -> WebhookRequest {
    WebhookRequest::new("POST", body.as_bytes().to_vec())
        .with_header("Content-Type", "application/json")
        .with_header("X-Hub-Signature-256", fake.signature(body))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_access_token_is_a_clear_error_at_start() {
    let fake = FakeCloud::start("the-real-token", SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    let e = run.task.await.unwrap().unwrap_err();
    match e {
        ChannelError::Rejected(m) => {
            assert!(m.contains("channels.whatsapp.access_token"), "{m}");
            assert!(m.contains("401"), "{m}");
            assert!(!m.contains(TOKEN), "the token is not echoed: {m}");
            assert!(!m.contains('\n'), "one line: {m}");
        }
        other => panic!("{other:?}"),
    }
    // An unknown phone number id names that key.
    let fake = FakeCloud::start(TOKEN, SECRET, "999");
    let run = start(cloud_settings(&fake, json!({})));
    let e = run.task.await.unwrap().unwrap_err();
    assert!(
        matches!(e, ChannelError::Rejected(ref m) if m.contains("phone_number_id")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_webhooks_are_verified_signed_and_delivered_once() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    assert!(run.channel.takes_webhooks());
    let inbox: Arc<dyn Inbox> = run.inbox.clone();

    // Meta's subscription check.
    let get = |q: &str| WebhookRequest::new("GET", Vec::new()).with_query(q);
    let ok = run
        .channel
        .webhook(
            get(&format!(
                "hub.mode=subscribe&hub.verify_token={VERIFY}&hub.challenge=1158201444"
            )),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(
        (ok.status, ok.body.as_slice()),
        (200, b"1158201444".as_slice())
    );
    assert!(ok.content_type.starts_with("text/plain"));
    for q in [
        "hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
        "hub.challenge=1",
        "",
    ] {
        assert_eq!(
            run.channel.webhook(get(q), Arc::clone(&inbox)).await.status,
            403,
            "{q}"
        );
    }

    // Unsigned, forged and re-signed-with-another-secret requests reach no inbox.
    let hello = fake.text(ADA, "hello **there**");
    let id = hello["id"].as_str().unwrap().to_owned();
    let body = fake.notification("Ada", &[hello]);
    let unsigned = WebhookRequest::new("POST", body.as_bytes().to_vec());
    let forged = WebhookRequest::new("POST", body.replace("hello", "HACKED").into_bytes())
        .with_header("X-Hub-Signature-256", fake.signature(&body));
    let other_key = WebhookRequest::new("POST", body.as_bytes().to_vec())
        .with_header("X-Hub-Signature-256", FakeCloud::sign("another", &body));
    for request in [unsigned, forged, other_key] {
        let r = run.channel.webhook(request, Arc::clone(&inbox)).await;
        assert!((400..500).contains(&r.status), "{r:?}");
    }
    assert!(run.inbox.all().is_empty());

    // Signed: kept and answered 200; Meta's redelivery is answered 200 and dropped.
    for _ in 0..2 {
        let r = run
            .channel
            .webhook(post(&fake, &body), Arc::clone(&inbox))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A stranger, the business number itself, a delivery status, a malformed body (signed).
    let stranger = fake.notification("Eve", &[fake.text("4915550000", "let me in")]);
    let own = fake.notification(
        "Me",
        &[fake.text(picoclaw_testkit::whatsapp::DISPLAY_PHONE_NUMBER, "echo")],
    );
    let status = fake.status_notification("wamid.OUT1", ADA);
    for b in [stranger, own, status] {
        assert_eq!(
            run.channel
                .webhook(post(&fake, &b), Arc::clone(&inbox))
                .await
                .status,
            200
        );
    }
    let junk = "{\"object\": [1, 2";
    assert_eq!(
        run.channel
            .webhook(post(&fake, junk), Arc::clone(&inbox))
            .await
            .status,
        400
    );
    assert_eq!(contents(&run.inbox), ["hello **there**"]);
    let m = &run.inbox.all()[0];
    assert_eq!((m.chat_id.as_str(), m.sender_id.as_str()), (ADA, ADA));
    assert_eq!(m.metadata["message_id"], id);
    assert_eq!(m.metadata["user_name"], "Ada");
    block(|| fake.wait_for("the read receipt", |f| f.reads() == [id.clone()])).await;

    // A full journal: 503 (Meta retries), and the retry is kept.
    let later = fake.notification("Ada", &[fake.text(ADA, "later")]);
    run.inbox.fail.store(1, Ordering::SeqCst);
    assert_eq!(
        run.channel
            .webhook(post(&fake, &later), Arc::clone(&inbox))
            .await
            .status,
        503
    );
    assert_eq!(
        run.channel
            .webhook(post(&fake, &later), Arc::clone(&inbox))
            .await
            .status,
        200
    );
    assert_eq!(contents(&run.inbox), ["hello **there**", "later"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_images_and_voice_notes_are_downloaded_with_the_token() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let photo = fake.add_media(b"\x89PNG picture", "image/png");
    let voice = fake.add_media(b"OggS opus", "audio/ogg; codecs=opus");
    let mut image = fake.media_message(ADA, "image", &photo, "image/png");
    image["image"]["caption"] = json!("what is this?");
    let audio = fake.media_message(ADA, "audio", &voice, "audio/ogg; codecs=opus");
    let body = fake.notification("Ada", &[image, audio]);
    assert_eq!(
        run.channel.webhook(post(&fake, &body), inbox).await.status,
        200
    );
    let all = run.inbox.all();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].content, "what is this?");
    assert_eq!(all[0].media[0].kind, MediaKind::Image);
    assert_eq!(all[0].media[0].mime.as_deref(), Some("image/png"));
    assert_eq!(
        std::fs::read(&all[0].media[0].location).unwrap(),
        b"\x89PNG picture"
    );
    assert_eq!(all[1].content, "");
    assert_eq!(all[1].media[0].kind, MediaKind::Audio);
    assert!(
        all[1].media[0].location.ends_with(".ogg"),
        "{:?}",
        all[1].media[0]
    );
    assert_eq!(
        std::fs::read(&all[1].media[0].location).unwrap(),
        b"OggS opus"
    );
    assert_eq!(fake.downloads(), vec![Some(TOKEN.to_owned()); 2]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_answers_are_formatted_split_threaded_and_errors_classified() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    let mut answer = OutboundMessage::new(
        "whatsapp",
        ADA,
        format!("**Sure**\n\n{}", "lorem ipsum ".repeat(500)),
    );
    answer.reply_to = Some("wamid.IN1".into());
    run.channel.send(&answer).await.unwrap();
    let sent = fake.messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["messaging_product"], "whatsapp");
    assert_eq!(sent[0]["recipient_type"], "individual");
    assert_eq!(sent[0]["to"], ADA);
    assert_eq!(sent[0]["type"], "text");
    assert_eq!(sent[0]["text"]["preview_url"], false);
    assert!(
        sent[0]["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("*Sure*")
    );
    assert_eq!(sent[0]["context"]["message_id"], "wamid.IN1");
    assert!(sent[1].get("context").is_none());
    for s in &sent {
        assert!(s["text"]["body"].as_str().unwrap().chars().count() <= 4096);
    }

    fake.fail_next_send(400, 131047, "Re-engagement message");
    let e = run
        .channel
        .send(&OutboundMessage::new("whatsapp", ADA, "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChannelError::Rejected(ref m) if m.contains("131047")),
        "{e}"
    );
    fake.fail_next_send(429, 130429, "Rate limit hit");
    let e = run
        .channel
        .send(&OutboundMessage::new("whatsapp", ADA, "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Platform(_)), "{e}");
    let e = run
        .channel
        .send(&OutboundMessage::new("whatsapp", "group@g.us", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_strangers_pair_and_are_told_so() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({"allow_from": []})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let code = run.channel.access().pairing_code().unwrap();
    for text in [
        "hello?".to_owned(),
        format!("/pair {code}"),
        "now?".to_owned(),
    ] {
        let body = fake.notification("Ada", &[fake.text(&format!("+{ADA}"), &text)]);
        assert_eq!(
            run.channel
                .webhook(post(&fake, &body), Arc::clone(&inbox))
                .await
                .status,
            200
        );
    }
    assert_eq!(contents(&run.inbox), ["now?"]);
    block(|| fake.wait_for("the notice", |f| !f.messages().is_empty())).await;
    let notices = fake.messages();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0]["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Paired")
    );
    run.stop.cancel();
}

fn start_with_keepalive(settings: Value, ping: Duration, silence: Duration) -> Running {
    let (channel, dir) = channel(settings);
    common::run(channel.unwrap().with_keepalive(ping, silence), dir)
}

/// Sends until the channel's writer is registered (it is, a moment after the handshake).
async fn send_when_connected(run: &Running, msg: &OutboundMessage) {
    for _ in 0..200 {
        match run.channel.send(msg).await {
            Err(ChannelError::Platform(m)) if m.contains("not connected") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.unwrap(),
        }
    }
    panic!("never connected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_the_bridge_never_read_is_an_error_not_a_success() {
    let fake = FakeBridge::start();
    // Pings too rare to matter here; writes are bounded by 2 s.
    let run = start_with_keepalive(
        bridge_settings(&fake, json!({})),
        Duration::from_secs(600),
        Duration::from_secs(2),
    );
    let jid = format!("{ADA}@s.whatsapp.net");
    send_when_connected(&run, &OutboundMessage::new("whatsapp", &jid, "hi")).await;
    block(|| fake.wait_for("the first answer", |f| f.sent().len() == 1)).await;
    // The bridge stops reading: once the socket buffers are full, a write cannot finish, and
    // the answer waiting on it must not be reported as sent.
    block(|| fake.stall_connections()).await;
    let part = "x".repeat(4000);
    let mut failure = None;
    for n in 0..10_000 {
        match run
            .channel
            .send(&OutboundMessage::new("whatsapp", &jid, part.clone()))
            .await
        {
            Ok(()) => {}
            Err(e) => {
                failure = Some((n, e));
                break;
            }
        }
    }
    let (n, e) = failure.expect("40 MB were 'sent' to a bridge that reads nothing");
    assert!(n > 0, "the first answers fit in the socket buffers");
    assert!(
        matches!(e, ChannelError::Platform(ref m) if m.contains("ended before the answer was written")),
        "{e}"
    );
    // The channel dials again.
    block(|| fake.wait_for("the second connection", |f| f.connections() == 2)).await;
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run.task)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_bridge_is_given_up_and_dialled_again() {
    let fake = FakeBridge::start();
    let run = start_with_keepalive(
        bridge_settings(&fake, json!({})),
        Duration::from_millis(50),
        Duration::from_millis(400),
    );
    block(|| fake.wait_for("the connection", |f| f.connections() == 1)).await;
    // A bridge that answers the pings keeps its connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.connections(), 1, "a live bridge was dropped");
    // Its host vanishes without a FIN: nothing is heard any more.
    block(|| fake.stall_connections()).await;
    block(|| fake.wait_for("the second connection", |f| f.connections() == 2)).await;
    let jid = format!("{ADA}@s.whatsapp.net");
    block(|| fake.push(&fake.message(&jid, &jid, "back again"))).await;
    wait_kept(&run.inbox, 1).await;
    run.stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), run.task)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_status_broadcast_and_newsletter_chats_are_never_answered() {
    let fake = FakeBridge::start();
    let lid = "123456789012345@lid";
    let run = start(bridge_settings(
        &fake,
        json!({"allow_from": [format!("+{ADA}"), lid]}),
    ));
    let ada = format!("{ADA}@s.whatsapp.net");
    block(|| {
        fake.push(&fake.message(&ada, "status@broadcast", "my status"));
        fake.push(&fake.message(&ada, "1733390000@broadcast", "to my list"));
        fake.push(&fake.message(&ada, "120363000000000000@newsletter", "news"));
        fake.push(&fake.message(lid, lid, "from a lid"));
    })
    .await;
    // Frames are handled in order: once the last one is kept, the others were dealt with.
    wait_kept(&run.inbox, 1).await;
    assert_eq!(contents(&run.inbox), ["from a lid"]);
    assert_eq!(run.inbox.all()[0].metadata["peer_kind"], "user");
    let e = run
        .channel
        .send(&OutboundMessage::new("whatsapp", "status@broadcast", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(e, ChannelError::Rejected(_)), "{e}");
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_changes_for_another_or_no_phone_number_id_are_ignored() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    for metadata in [
        json!({"display_phone_number": "15550100"}),
        json!({"display_phone_number": "15550100", "phone_number_id": "999"}),
        Value::Null,
    ] {
        let body: Value =
            serde_json::from_str(&fake.notification("Ada", &[fake.text(ADA, "not ours")])).unwrap();
        let mut body = body;
        let value = &mut body["entry"][0]["changes"][0]["value"];
        if metadata.is_null() {
            value.as_object_mut().unwrap().remove("metadata");
        } else {
            value["metadata"] = metadata;
        }
        let r = run
            .channel
            .webhook(post(&fake, &body.to_string()), Arc::clone(&inbox))
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    assert!(run.inbox.all().is_empty(), "{:?}", contents(&run.inbox));
    // Ours is taken.
    let body = fake.notification("Ada", &[fake.text(ADA, "ours")]);
    let r = run.channel.webhook(post(&fake, &body), inbox).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(contents(&run.inbox), ["ours"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_webhook_cut_short_lets_the_redelivery_through() {
    let fake = FakeCloud::start(TOKEN, SECRET, PHONE_ID);
    let run = start(cloud_settings(&fake, json!({})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let photo = fake.add_media(b"\x89PNG picture", "image/png");
    let image = fake.media_message(ADA, "image", &photo, "image/png");
    let body = fake.notification("Ada", &[image]);
    // The download hangs; the gateway (or Meta) gives up on the request: the handler is
    // dropped midway.
    fake.stall_downloads(true);
    let cut = tokio::time::timeout(
        Duration::from_secs(2),
        run.channel.webhook(post(&fake, &body), Arc::clone(&inbox)),
    )
    .await;
    assert!(cut.is_err(), "the stalled download was not waited for");
    block(|| fake.wait_for("the stalled download", |f| !f.downloads().is_empty())).await;
    fake.stall_downloads(false);
    // Meta delivers the request again: it is kept now.
    let r = run
        .channel
        .webhook(post(&fake, &body), Arc::clone(&inbox))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        std::fs::read(&all[0].media[0].location).unwrap(),
        b"\x89PNG picture"
    );
    // And a third delivery is a redelivery.
    let r = run.channel.webhook(post(&fake, &body), inbox).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(run.inbox.all().len(), 1);
    run.stop.cancel();
}

/// An inbox that holds every delivery until it is let through.
struct Gated {
    open: tokio::sync::Semaphore,
    entered: std::sync::atomic::AtomicUsize,
    kept: std::sync::Mutex<Vec<picoclaw_api::InboundMessage>>,
}

#[async_trait::async_trait]
impl Inbox for Gated {
    async fn deliver(
        &self,
        msg: picoclaw_api::InboundMessage,
    ) -> Result<(), picoclaw_api::InboxError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.open.acquire().await.unwrap().forget();
        self.kept.lock().unwrap().push(msg);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_answers_go_out_while_a_message_is_kept_and_stop_cuts_it_short() {
    let fake = FakeBridge::start();
    let (channel, _dir) = channel(bridge_settings(&fake, json!({})));
    let channel = Arc::new(channel.unwrap());
    let inbox = Arc::new(Gated {
        open: tokio::sync::Semaphore::new(0),
        entered: std::sync::atomic::AtomicUsize::new(0),
        kept: std::sync::Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let task = {
        let (channel, inbox, stop) = (Arc::clone(&channel), Arc::clone(&inbox), stop.clone());
        tokio::spawn(async move { channel.run(inbox, stop).await })
    };
    let jid = format!("{ADA}@s.whatsapp.net");
    block(|| fake.push(&fake.message(&jid, &jid, "slow to keep"))).await;
    for _ in 0..1000 {
        if inbox.entered.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(inbox.entered.load(Ordering::SeqCst), 1);
    // The message is stuck in the inbox; an answer to an earlier one still goes out.
    tokio::time::timeout(
        Duration::from_secs(5),
        channel.send(&OutboundMessage::new("whatsapp", &jid, "meanwhile")),
    )
    .await
    .expect("the answer waited for the message being kept")
    .unwrap();
    block(|| fake.wait_for("the answer", |f| f.sent().len() == 1)).await;
    // The channel stops: the handler waiting on the inbox is cut short.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("run returns after stop")
        .unwrap()
        .unwrap();
    inbox.open.add_permits(10);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(inbox.kept.lock().unwrap().is_empty());
}
