//! The LINE channel against a loopback Messaging API: signed webhooks, reply and push, media.
#![cfg(feature = "line")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{Kept, merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::line::LineChannel;
use picoclaw_channels::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest};
use picoclaw_testkit::line::{BOT_USER_ID, FakeLine};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "line-channel-secret";
const TOKEN: &str = "line-access-token";
const ADA: &str = "Uada0000000000000000000000000000";
const EVE: &str = "Ueve0000000000000000000000000000";
const GROUP: &str = "Cgroup00000000000000000000000000";

type Running = common::Running<LineChannel>;

impl Running {
    async fn hook(&self, request: WebhookRequest) -> u16 {
        let inbox: Arc<dyn Inbox> = self.inbox.clone();
        self.channel.webhook(request, inbox).await.status
    }
}

fn setup(fake: &FakeLine, extra: Value, dir: &std::path::Path) -> ChannelSetup {
    let v = json!({"enabled": true, "channel_secret": SECRET, "channel_access_token": TOKEN,
                   "allow_from": [ADA], "api_base": fake.api_base(),
                   "rate_limit_per_minute": 0});
    std::fs::create_dir_all(dir.join("workspace")).unwrap();
    ChannelSetup::new(
        "line",
        merged(v, extra),
        &dir.join("workspace"),
        &dir.join("home"),
    )
}

async fn start_with(fake: &FakeLine, extra: Value) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let channel = LineChannel::from_setup(&setup(fake, extra, dir.path())).unwrap();
    let run = common::run(channel, dir);
    // Signed in once a webhook with an event is no longer answered 503.
    for _ in 0..500 {
        let probe = run
            .hook(fake.webhook(&[json!({"type": "follow", "webhookEventId": "probe"})]))
            .await;
        if probe == 200 {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the channel did not sign in");
}

async fn wait(fake: &FakeLine, what: &str, done: impl FnMut(&FakeLine) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_users_are_delivered_once_and_answered_by_reply_then_push() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;

    let hello = fake.text_event(ADA, "hello there");
    assert_eq!(
        run.hook(fake.webhook(std::slice::from_ref(&hello))).await,
        200
    );
    // LINE's redelivery keeps the event id: taken once.
    assert_eq!(
        run.hook(fake.webhook(&[FakeLine::redelivery(&hello)]))
            .await,
        200
    );
    // A stranger is ignored (and no pairing: allow_from is set).
    assert_eq!(
        run.hook(fake.webhook(&[fake.text_event(EVE, "let me in")]))
            .await,
        200
    );
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "{all:?}");
    let m = &all[0];
    assert_eq!((m.chat_id.as_str(), m.sender_id.as_str()), (ADA, ADA));
    assert_eq!(m.content, "hello there");
    assert_eq!(
        m.metadata["message_id"],
        hello["message"]["id"].as_str().unwrap()
    );
    assert_eq!(m.session_key.as_str(), format!("line:{ADA}"));

    // Seven parts of plain text: five by the reply token, two pushed.
    let long: String = (0..7)
        .map(|i| format!("**part {i}** {}", "x".repeat(4900)))
        .collect::<Vec<_>>()
        .join("\n\n");
    run.channel
        .send(&OutboundMessage::reply(m, long))
        .await
        .unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].api, "reply");
    assert_eq!(sent[0].target, hello["replyToken"].as_str().unwrap());
    assert_eq!(sent[0].messages.len(), 5);
    assert_eq!(
        (sent[1].api.as_str(), sent[1].target.as_str()),
        ("push", ADA)
    );
    assert_eq!(sent[1].messages.len(), 2);
    let texts: Vec<String> = sent.iter().flat_map(|s| s.texts()).collect();
    assert!(texts[0].starts_with("part 0 x"), "Markdown rendered plain");
    assert!(texts.iter().all(|t| t.chars().count() <= 5000));

    // The token was used: the next answer to the same message is pushed.
    run.channel
        .send(&OutboundMessage::reply(m, "again"))
        .await
        .unwrap();
    let last = fake.sent().pop().unwrap();
    assert_eq!(
        (last.api.as_str(), last.texts()),
        ("push", vec!["again".to_owned()])
    );

    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_unsigned_webhooks_are_refused_and_verify_passes() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    let events = [fake.text_event(ADA, "forged")];
    let body = FakeLine::body(&events);
    let unsigned = WebhookRequest::new("POST", body.clone());
    assert_eq!(run.hook(unsigned).await, 401);
    let forged = WebhookRequest::new("POST", body.clone())
        .with_header("x-line-signature", FakeLine::sign("another secret", &body));
    assert_eq!(run.hook(forged).await, 401);
    // A valid signature over another body.
    let tampered = WebhookRequest::new("POST", body.replace("forged", "FORGED"))
        .with_header("x-line-signature", FakeLine::sign(SECRET, &body));
    assert_eq!(run.hook(tampered).await, 401);
    // Malformed JSON, signed: refused without a panic.
    let junk = WebhookRequest::new("POST", "{\"events\": [")
        .with_header("x-line-signature", FakeLine::sign(SECRET, "{\"events\": ["));
    assert_eq!(run.hook(junk).await, 400);
    // The console's Verify request.
    assert_eq!(run.hook(fake.webhook(&[])).await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(run.inbox.all().is_empty());
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_are_answered_on_mention_or_prefix_and_the_bot_itself_is_ignored() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({"group_trigger": {"prefixes": ["/ai"]}})).await;
    let chatter = fake.group_text_event(GROUP, ADA, "just chatting", &[]);
    let other = fake.group_text_event(GROUP, ADA, "@bob look", &[(0, 4, false)]);
    let own = fake.text_event(BOT_USER_ID, "my own words");
    let mention = fake.group_text_event(GROUP, ADA, "@pico what time is it?", &[(0, 5, true)]);
    let prefixed = fake.group_text_event(GROUP, ADA, "/ai and tomorrow?", &[]);
    let stranger = fake.group_text_event(GROUP, EVE, "@pico hi", &[(0, 5, true)]);
    for e in [chatter, other, own, mention, prefixed, stranger] {
        assert_eq!(run.hook(fake.webhook(&[e])).await, 200);
    }
    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|m| (m.chat_id.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(got, [(GROUP, "what time is it?"), (GROUP, "and tomorrow?")]);
    assert_eq!(all[0].metadata["peer_kind"], "group");

    // Answers go to the group; the loading animation only exists in 1:1 chats.
    run.channel.typing(GROUP).await;
    run.channel.typing(ADA).await;
    wait(&fake, "the loading animation", |f| !f.loadings().is_empty()).await;
    assert_eq!(fake.loadings(), [ADA]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_pairs_with_the_one_time_code() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({"allow_from": []})).await;
    let code = run.channel.pairing_code().expect("pairing is open");
    assert_eq!(
        run.hook(fake.webhook(&[fake.text_event(EVE, "hi")])).await,
        200
    );
    assert_eq!(
        run.hook(fake.webhook(&[fake.text_event(EVE, &format!("/pair {code}"))]))
            .await,
        200
    );
    wait(&fake, "the pairing notice", |f| !f.sent().is_empty()).await;
    assert!(fake.sent()[0].texts()[0].starts_with("Paired"));
    assert_eq!(
        run.hook(fake.webhook(&[fake.text_event(EVE, "now?")]))
            .await,
        200
    );
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].content, "now?");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delivery_is_not_acknowledged_and_its_redelivery_gets_through() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    run.inbox.fail.store(1, Ordering::SeqCst);
    let e = fake.text_event(ADA, "keep me");
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let refused = run
        .channel
        .webhook(fake.webhook(std::slice::from_ref(&e)), inbox)
        .await;
    assert_eq!(refused.status, 500);
    // A fixed text: the inbox's error ("journal full") stays in the log.
    assert_eq!(String::from_utf8_lossy(&refused.body), "not kept, retry");
    assert!(run.inbox.all().is_empty());
    assert_eq!(
        run.hook(fake.webhook(&[FakeLine::redelivery(&e)])).await,
        200
    );
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "keep me");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_reply_token_falls_back_to_push() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    assert_eq!(
        run.hook(fake.webhook(&[fake.text_event(ADA, "hi")])).await,
        200
    );
    wait_kept(&run.inbox, 1).await;
    fake.expire_reply_tokens();
    let m = run.inbox.all()[0].clone();
    run.channel
        .send(&OutboundMessage::reply(&m, "late `answer`"))
        .await
        .unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].api.as_str(), sent[0].target.as_str()),
        ("push", ADA)
    );
    assert_eq!(sent[0].texts(), ["late answer"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn images_and_voice_are_saved_and_attached() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    let image = fake.media_event(ADA, "image", "image/png", b"\x89PNG fake");
    let voice = fake.media_event(ADA, "audio", "audio/m4a", b"voice bytes");
    assert_eq!(run.hook(fake.webhook(&[image, voice])).await, 200);
    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    assert_eq!(fake.downloads().len(), 2);
    assert!(all.iter().all(|m| m.media.len() == 1), "{all:?}");
    let (img, audio) = (&all[0].media[0], &all[1].media[0]);
    assert_eq!(img.kind, MediaKind::Image);
    assert_eq!(img.mime.as_deref(), Some("image/png"));
    assert!(img.location.ends_with(".png"));
    assert_eq!(std::fs::read(&img.location).unwrap(), b"\x89PNG fake");
    assert_eq!(audio.kind, MediaKind::Audio);
    assert_eq!(std::fs::read(&audio.location).unwrap(), b"voice bytes");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_or_a_missing_secret_is_one_clear_error() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let wrong = LineChannel::from_setup(&setup(
        &fake,
        json!({"channel_access_token": "stale"}),
        dir.path(),
    ))
    .unwrap();
    let err = wrong
        .run(Arc::new(Kept::default()), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("channels.line.channel_access_token was refused by LINE (401)"),
        "{text}"
    );
    assert!(!text.contains("stale") && !text.contains('\n'));
    let missing = LineChannel::from_setup(&setup(&fake, json!({"channel_secret": ""}), dir.path()))
        .unwrap_err();
    assert!(missing.to_string().contains("channels.line.channel_secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_own_listener_takes_signed_requests() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = start_with(
        &fake,
        json!({"webhook_host": "127.0.0.1", "webhook_port": port, "webhook_path": "/line-hook"}),
    )
    .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let status = tokio::task::block_in_place(|| {
        let mut status = 0;
        for _ in 0..300 {
            status = fake.post_webhook(addr, "/line-hook", &[fake.text_event(ADA, "via port")]);
            if status != 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        status
    });
    assert_eq!(status, 200);
    let unsigned = tokio::task::block_in_place(|| {
        picoclaw_testkit::line::post_raw(addr, "/line-hook", &[], FakeLine::body(&[]).as_bytes())
    });
    assert_eq!(unsigned, 401);
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "via port");
    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_given_up_during_a_slow_download_lets_the_redelivery_through() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    fake.stall_downloads(true);
    let e = fake.media_event(ADA, "image", "image/png", b"\x89PNG slow");
    // The gateway drops the handler when its webhook timeout passes.
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        run.channel
            .webhook(fake.webhook(std::slice::from_ref(&e)), inbox),
    )
    .await;
    assert!(cut.is_err(), "the download was meant to stall");
    assert_eq!(fake.downloads().len(), 1);
    assert!(run.inbox.all().is_empty());
    fake.stall_downloads(false);
    assert_eq!(
        run.hook(fake.webhook(&[FakeLine::redelivery(&e)])).await,
        200
    );
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].media.len(), 1, "{all:?}");
    // Kept now: a further redelivery is dropped.
    assert_eq!(
        run.hook(fake.webhook(&[FakeLine::redelivery(&e)])).await,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(run.inbox.all().len(), 1);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_flood_does_not_push_out_the_ids_already_taken() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    let e = fake.text_event(ADA, "only once");
    assert_eq!(run.hook(fake.webhook(std::slice::from_ref(&e))).await, 200);
    wait_kept(&run.inbox, 1).await;
    // More strangers' events than the ids remembered (4096).
    for _ in 0..5 {
        let spam: Vec<Value> = (0..1000).map(|_| fake.text_event(EVE, "spam")).collect();
        assert_eq!(run.hook(fake.webhook(&spam)).await, 200);
    }
    assert_eq!(
        run.hook(fake.webhook(&[FakeLine::redelivery(&e)])).await,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "the redelivery was taken again: {all:?}");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_download_reaches_the_agent_as_a_neutral_note() {
    let fake = FakeLine::start(SECRET, TOKEN);
    let run = start_with(&fake, json!({})).await;
    let mut e = fake.media_event(ADA, "image", "image/png", b"\x89PNG");
    // Content the fake does not have: the content API answers 404.
    e["message"]["id"] = json!("999999999");
    assert_eq!(run.hook(fake.webhook(&[e])).await, 200);
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.content, "[an image could not be downloaded]");
    assert!(m.media.is_empty());
    run.stop.cancel();
}
