//! The Feishu channel against a loopback Feishu: the long connection's protobuf frames, the Open
//! API (tokens, cards, replies, resources) and signed, encrypted webhooks, through `api_base`.
#![cfg(feature = "feishu")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::feishu::{FeishuChannel, FeishuConfig};
use picoclaw_channels::settings::ChannelSettings;
use picoclaw_channels::{Channel, ChannelError, Inbox};
use picoclaw_testkit::feishu::{BOT_OPEN_ID, FakeFeishu, SERVICE_ID};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

const APP_ID: &str = "cli_test";
const SECRET: &str = "app-secret";
const ENCRYPT_KEY: &str = "encrypt-key";

fn config(fake: &FakeFeishu, extra: Value) -> FeishuConfig {
    let v = json!({"app_id": APP_ID, "app_secret": SECRET, "allow_from": ["ou_ada"],
                   "api_base": fake.api_base(), "rate_limit_per_minute": 0});
    FeishuConfig::from_json(&merged(v, extra)).unwrap()
}

fn webhook_config(fake: &FakeFeishu, extra: Value) -> FeishuConfig {
    let v = json!({"mode": "webhook", "encrypt_key": ENCRYPT_KEY,
                   "verification_token": picoclaw_testkit::feishu::VERIFICATION_TOKEN});
    config(fake, merged(v, extra))
}

/// A running channel: it has no directory.
type Running = common::Running<FeishuChannel, ()>;

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    }
}

fn start(config: FeishuConfig) -> Running {
    common::run(FeishuChannel::new(config).unwrap(), ())
}

/// Blocks the test's thread while the channel (on the runtime's other threads) works.
async fn wait(fake: &FakeFeishu, what: &str, done: impl FnMut(&FakeFeishu) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

/// Waits until a webhook channel has signed in (events are answered 503 before).
async fn signed_in(channel: &FeishuChannel, inbox: &Arc<dyn Inbox>) {
    let probe = json!({"schema": "2.0", "header": {"event_type": "drive.file.edit_v1",
                       "token": picoclaw_testkit::feishu::VERIFICATION_TOKEN}});
    for _ in 0..500 {
        let request = FakeFeishu::webhook(&probe, Some(ENCRYPT_KEY));
        if channel.webhook(request, Arc::clone(inbox)).await.status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the channel did not sign in");
}

/// Pushes `event` over the long connection and waits for its acknowledgement.
async fn push_acked(fake: &FakeFeishu, event: &Value, parts: usize) -> String {
    let id = tokio::task::block_in_place(|| fake.push_event(event, parts));
    wait(fake, "the ack", |f| {
        f.acks().iter().any(|a| a.message_id == id)
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_long_connection_takes_dms_and_mentions_acks_them_and_drops_the_rest() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(
        &fake,
        json!({"group_trigger": {"prefixes": ["/ai"]}}),
    ));
    wait(&fake, "a connection", |f| f.connections() == 1).await;

    // A DM from an allowed user: kept, then acknowledged with code 200 and biz_rt.
    let dm = fake.dm("ou_ada", "hello there");
    let message_id = dm["event"]["message"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let frame = push_acked(&fake, &dm, 1).await;
    let kept = run.inbox.all();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].chat_id, "oc_dm_ou_ada");
    assert_eq!(kept[0].sender_id, "ou_ada");
    assert_eq!(kept[0].content, "hello there");
    assert_eq!(kept[0].metadata["message_id"], message_id);
    assert_eq!(kept[0].metadata["chat_type"], "p2p");
    assert_eq!(kept[0].timestamp.timestamp_millis(), 1_710_000_000_000);
    let ack = fake
        .acks()
        .into_iter()
        .find(|a| a.message_id == frame)
        .unwrap();
    assert_eq!(ack.code, 200);
    assert!(ack.biz_rt.is_some());

    // The same event again (a redelivery): acknowledged, not kept twice.
    push_acked(&fake, &dm, 1).await;
    // The same event in three frames: joined (and still a redelivery).
    push_acked(&fake, &dm, 3).await;
    assert_eq!(run.inbox.all().len(), 1);

    // Ignored, though acknowledged: a stranger, the bot itself, a group line without mention
    // or prefix, a malformed frame.
    let stranger = fake.dm("ou_eve", "let me in");
    let mut own = fake.dm(BOT_OPEN_ID, "my own answer");
    own["event"]["sender"]["sender_type"] = json!("app");
    let chatter = fake.group("ou_ada", "oc_team", "just chatting", false);
    tokio::task::block_in_place(|| fake.push_raw(&[0x2a, 0x7f, 0x01]));
    for e in [stranger, own, chatter] {
        push_acked(&fake, &e, 1).await;
    }
    assert_eq!(run.inbox.all().len(), 1);

    // A mention in a group: kept with the mention removed; a prefixed line too; a long event
    // split into parts is joined.
    push_acked(
        &fake,
        &fake.group("ou_ada", "oc_team", "what time is it?", true),
        1,
    )
    .await;
    push_acked(
        &fake,
        &fake.group("ou_ada", "oc_team", "/ai and tomorrow?", false),
        1,
    )
    .await;
    let long = "word ".repeat(400);
    push_acked(&fake, &fake.dm("ou_ada", &long), 4).await;
    wait_kept(&run.inbox, 4).await;
    let all = run.inbox.all();
    let texts: Vec<&str> = all.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts[1..3], ["what time is it?", "and tomorrow?"]);
    assert_eq!(texts[3], long.trim());
    assert_eq!(all[1].chat_id, "oc_team");
    assert_eq!(all[1].metadata["chat_type"], "group");

    // Pings name the URL's service_id.
    wait(&fake, "a ping", |f| !f.pings().is_empty()).await;
    assert!(fake.pings().iter().all(|s| *s == SERVICE_ID));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_inbox_refused_is_not_acked_and_its_redelivery_gets_through() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    run.inbox.fail.store(1, Ordering::SeqCst);
    let dm = fake.dm("ou_ada", "keep me");
    let refused = tokio::task::block_in_place(|| fake.push_event(&dm, 1));
    // The refusal is not acknowledged; the redelivery is kept and acknowledged.
    let again = push_acked(&fake, &dm, 1).await;
    assert!(!fake.acks().iter().any(|a| a.message_id == refused));
    assert!(fake.acks().iter().any(|a| a.message_id == again));
    assert_eq!(run.inbox.all().len(), 1);
    assert_eq!(run.inbox.all()[0].content, "keep me");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strangers_pair_with_the_one_time_code_when_allow_from_is_empty() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({"allow_from": []})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    push_acked(&fake, &fake.dm("ou_eve", "hello?"), 1).await;
    push_acked(&fake, &fake.dm("ou_eve", "/pair 000000x"), 1).await;
    wait(&fake, "the refusal", |f| f.sent().len() == 1).await;
    assert_eq!(
        fake.sent()[0].text(),
        "That code is wrong or was already used."
    );
    let code = run.channel.access().pairing_code().unwrap();
    push_acked(&fake, &fake.dm("ou_eve", &format!("/pair {code}")), 1).await;
    wait(&fake, "the welcome", |f| f.sent().len() == 2).await;
    let welcome = &fake.sent()[1];
    assert_eq!(welcome.kind, "create");
    assert_eq!(welcome.target, "oc_dm_ou_eve");
    assert_eq!(welcome.msg_type, "text");
    assert!(welcome.text().starts_with("Paired"));
    push_acked(&fake, &fake.dm("ou_eve", "now?"), 1).await;
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "now?");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_markdown_cards_split_and_the_first_replies() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    let long = format!("**Title**\n\n{}", "a sentence of the answer. ".repeat(300));
    let mut msg = OutboundMessage::new("feishu", "oc_team", long.clone());
    msg.reply_to = Some("om_question".into());
    run.channel.send(&msg).await.unwrap();
    let sent = fake.sent();
    assert!(sent.len() >= 2, "{sent:?}");
    assert_eq!(
        (sent[0].kind.as_str(), sent[0].target.as_str()),
        ("reply", "om_question")
    );
    for part in &sent[1..] {
        assert_eq!(
            (part.kind.as_str(), part.target.as_str()),
            ("create", "oc_team")
        );
    }
    for part in &sent {
        assert_eq!(part.msg_type, "interactive");
        assert_eq!(part.content["schema"], "2.0");
        assert_eq!(part.content["body"]["elements"][0]["tag"], "markdown");
        assert!(part.text().chars().count() <= 4000);
    }
    assert!(sent[0].text().starts_with("**Title**"));
    let joined: String = sent
        .iter()
        .map(|s| s.text().replace(['\n', ' '], ""))
        .collect();
    assert_eq!(joined, long.replace(['\n', ' '], ""));

    // A recalled message: the answer goes to the chat instead.
    let mut gone = OutboundMessage::new("feishu", "oc_team", "still here");
    gone.reply_to = Some("om_gone1".into());
    run.channel.send(&gone).await.unwrap();
    let last = fake.sent().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.text().as_str()),
        ("create", "still here")
    );

    // A chat the bot is not in: Feishu's code and message.
    let e = run
        .channel
        .send(&OutboundMessage::new("feishu", "nowhere", "x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("230002"), "{e}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_is_one_line_naming_the_key_and_not_retried() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let mut bad = config(&fake, json!({}));
    bad.app_secret = "wrong".into();
    let run = start(bad);
    let result = tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .unwrap()
        .unwrap();
    let Err(ChannelError::Rejected(e)) = result else {
        panic!("{result:?}");
    };
    assert!(e.contains("channels.feishu.app_secret"), "{e}");
    assert!(e.contains("10014"), "{e}");
    assert!(!e.contains('\n'));
    assert!(!e.contains("wrong"), "the secret is not echoed: {e}");
    assert_eq!(fake.connections(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn images_and_voice_are_downloaded_and_attached() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media/feishu");
    let run = start(
        config(&fake, json!({}))
            .with_media_dir(&media)
            .with_media_base(dir.path()),
    );
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    fake.add_resource("img_v3_1", b"\x89PNG fake", "image/png");
    fake.add_resource("file_v3_2", b"OggS fake", "audio/ogg");
    let chat = "oc_dm_ou_ada";
    let image = fake.message_event(
        "ou_ada",
        chat,
        "p2p",
        "image",
        &json!({"image_key": "img_v3_1"}),
        &[],
    );
    let voice = fake.message_event(
        "ou_ada",
        chat,
        "p2p",
        "audio",
        &json!({"file_key": "file_v3_2", "duration": 1500}),
        &[],
    );
    push_acked(&fake, &image, 1).await;
    push_acked(&fake, &voice, 1).await;
    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    assert_eq!(all[0].media[0].kind, MediaKind::Image);
    assert_eq!(all[0].media[0].mime.as_deref(), Some("image/png"));
    assert_eq!(
        std::fs::read(&all[0].media[0].location).unwrap(),
        b"\x89PNG fake"
    );
    assert!(std::path::Path::new(&all[0].media[0].location).starts_with(&media));
    assert_eq!(all[1].media[0].kind, MediaKind::Audio);
    assert_eq!(
        std::fs::read(&all[1].media[0].location).unwrap(),
        b"OggS fake"
    );
    let downloads = fake.downloads();
    assert_eq!(downloads[0].2, "image");
    assert_eq!(downloads[1].2, "file");
    assert_eq!(
        downloads[0].0,
        image["event"]["message"]["message_id"].as_str().unwrap()
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_long_connection_comes_back_after_feishu_drops_it() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    tokio::task::block_in_place(|| fake.drop_connections());
    wait(&fake, "a second connection", |f| f.connections() == 2).await;
    push_acked(&fake, &fake.dm("ou_ada", "still there?"), 1).await;
    wait_kept(&run.inbox, 1).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tenant_token_is_cached_and_renewed_when_feishu_refuses_it() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    assert_eq!(fake.token_requests(), 1, "bot info used the cached token");
    for n in 0..3 {
        let msg = OutboundMessage::new("feishu", "oc_team", format!("answer {n}"));
        run.channel.send(&msg).await.unwrap();
    }
    assert_eq!(fake.token_requests(), 1, "sends use the cached token");
    fake.revoke_tokens();
    run.channel
        .send(&OutboundMessage::new("feishu", "oc_team", "after"))
        .await
        .unwrap();
    assert_eq!(fake.token_requests(), 2, "renewed once");
    assert_eq!(fake.sent().last().unwrap().text(), "after");
    run.stop().await;

    // A token about to expire is renewed before it is used.
    let fake = FakeFeishu::start(APP_ID, SECRET);
    fake.set_token_expire(1);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    let before = fake.token_requests();
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.channel
        .send(&OutboundMessage::new("feishu", "oc_team", "late"))
        .await
        .unwrap();
    assert!(fake.token_requests() > before);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_verified_decrypted_and_answered_once_kept() {
    use picoclaw_channels::WebhookRequest;
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(webhook_config(&fake, json!({})));
    assert!(run.channel.takes_webhooks());
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let call = |r: WebhookRequest| {
        let (channel, inbox) = (Arc::clone(&run.channel), Arc::clone(&inbox));
        async move { channel.webhook(r, inbox).await }
    };
    // The URL check, encrypted, unsigned: the challenge back once the token is right.
    let challenge = json!({"type": "url_verification", "challenge": "c-1",
                           "token": picoclaw_testkit::feishu::VERIFICATION_TOKEN});
    let plain = WebhookRequest::new(
        "POST",
        json!({"encrypt": FakeFeishu::encrypt(ENCRYPT_KEY, challenge.to_string().as_bytes())})
            .to_string(),
    );
    let r = call(plain).await;
    assert_eq!(r.status, 200);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"challenge": "c-1"}));
    let mut wrong = challenge.clone();
    wrong["token"] = json!("guess");
    let r = call(WebhookRequest::new(
        "POST",
        json!({"encrypt": FakeFeishu::encrypt(ENCRYPT_KEY, wrong.to_string().as_bytes())})
            .to_string(),
    ))
    .await;
    assert_eq!(r.status, 401);

    signed_in(&run.channel, &inbox).await;

    // A signed, encrypted event: kept, then 200.
    let dm = fake.dm("ou_ada", "via webhook");
    let r = call(FakeFeishu::webhook(&dm, Some(ENCRYPT_KEY))).await;
    assert_eq!(r.status, 200);
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "via webhook");
    // Its redelivery: 200, not kept again.
    assert_eq!(
        call(FakeFeishu::webhook(&dm, Some(ENCRYPT_KEY)))
            .await
            .status,
        200
    );

    // Forged: a bad signature, no signature, a wrong token, a plain event. Nothing kept.
    let mut forged = FakeFeishu::webhook(&fake.dm("ou_ada", "forged"), Some(ENCRYPT_KEY));
    forged.headers.retain(|(n, _)| n != "x-lark-signature");
    let unsigned = forged.clone();
    forged = forged.with_header("x-lark-signature", "00".repeat(32));
    assert_eq!(call(forged).await.status, 401);
    assert_eq!(call(unsigned).await.status, 401);
    let mut bad_token = fake.dm("ou_ada", "bad token");
    bad_token["header"]["token"] = json!("guess");
    assert_eq!(
        call(FakeFeishu::webhook(&bad_token, Some(ENCRYPT_KEY)))
            .await
            .status,
        403
    );
    let plain_event = FakeFeishu::webhook(&fake.dm("ou_ada", "plain"), None);
    assert_eq!(call(plain_event).await.status, 401);
    let huge = WebhookRequest::new("POST", vec![b' '; 2 << 20]);
    assert_eq!(call(huge).await.status, 413);
    assert_eq!(
        call(WebhookRequest::new("POST", "{not json")).await.status,
        401
    );

    // A refused inbox: 503 (Feishu retries), and the retry is kept.
    run.inbox.fail.store(1, Ordering::SeqCst);
    let retried = fake.dm("ou_ada", "retry me");
    assert_eq!(
        call(FakeFeishu::webhook(&retried, Some(ENCRYPT_KEY)))
            .await
            .status,
        503
    );
    assert_eq!(
        call(FakeFeishu::webhook(&retried, Some(ENCRYPT_KEY)))
            .await
            .status,
        200
    );
    let texts: Vec<String> = run.inbox.all().into_iter().map(|m| m.content).collect();
    assert_eq!(texts, ["via webhook", "retry me"]);
    assert_eq!(
        fake.connections(),
        0,
        "webhook mode opens no long connection"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_mode_needs_an_encrypt_key_a_token_alone_is_refused() {
    use picoclaw_channels::WebhookRequest;
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let v = json!({"app_id": APP_ID, "app_secret": SECRET, "mode": "webhook",
                   "verification_token": picoclaw_testkit::feishu::VERIFICATION_TOKEN,
                   "api_base": fake.api_base()});
    let Err(ChannelError::Rejected(e)) = FeishuConfig::from_json(&v) else {
        panic!("webhook mode without encrypt_key was accepted");
    };
    assert!(e.contains("channels.feishu.encrypt_key"), "{e}");
    assert!(!e.contains('\n'), "{e}");
    let mut config = webhook_config(&fake, json!({}));
    config.encrypt_key = None;
    assert!(matches!(
        FeishuChannel::new(config),
        Err(ChannelError::Rejected(_))
    ));

    // With the key, anything but POST is refused.
    let run = start(webhook_config(&fake, json!({})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let get = run
        .channel
        .webhook(WebhookRequest::new("GET", ""), Arc::clone(&inbox))
        .await;
    assert_eq!(get.status, 405);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_webhooks_more_than_an_hour_old_or_ahead_are_refused() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(webhook_config(&fake, json!({})));
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    signed_in(&run.channel, &inbox).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dm = fake.dm("ou_ada", "replayed");
    for ts in [
        (now - 7200).to_string(),
        (now + 7200).to_string(),
        String::new(),
        "yesterday".to_owned(),
    ] {
        let request = FakeFeishu::webhook_at(&dm, ENCRYPT_KEY, &ts);
        let r = run.channel.webhook(request, Arc::clone(&inbox)).await;
        assert_eq!(r.status, 403, "timestamp {ts:?}");
    }
    assert!(run.inbox.all().is_empty());
    // Within the hour: taken.
    let request = FakeFeishu::webhook_at(&dm, ENCRYPT_KEY, &(now - 600).to_string());
    assert_eq!(
        run.channel
            .webhook(request, Arc::clone(&inbox))
            .await
            .status,
        200
    );
    wait_kept(&run.inbox, 1).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_handler_dropped_midway_lets_the_redelivery_through() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let run = start(
        webhook_config(&fake, json!({}))
            .with_media_dir(dir.path().join("media"))
            .with_media_base(dir.path()),
    );
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    signed_in(&run.channel, &inbox).await;
    fake.add_resource("img_slow", b"\x89PNG slow", "image/png");
    fake.stall("img_slow");
    let image = fake.message_event(
        "ou_ada",
        "oc_dm_ou_ada",
        "p2p",
        "image",
        &json!({"image_key": "img_slow"}),
        &[],
    );
    // Feishu gives up on the request (the gateway drops the handler's future).
    let first = tokio::time::timeout(
        Duration::from_millis(300),
        run.channel.webhook(
            FakeFeishu::webhook(&image, Some(ENCRYPT_KEY)),
            Arc::clone(&inbox),
        ),
    )
    .await;
    assert!(first.is_err(), "the download should have stalled");
    assert!(run.inbox.all().is_empty());
    // Its redelivery is taken, not dropped as seen.
    fake.release("img_slow");
    let again = run
        .channel
        .webhook(
            FakeFeishu::webhook(&image, Some(ENCRYPT_KEY)),
            Arc::clone(&inbox),
        )
        .await;
    assert_eq!(again.status, 200);
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].media.len(), 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_start_is_transient_and_a_bad_secret_is_not() {
    // Feishu's rate limit on the token: Platform (the manager restarts the channel).
    let fake = FakeFeishu::start(APP_ID, SECRET);
    fake.fail_token_requests(&[99_991_400]);
    let run = start(config(&fake, json!({})));
    let result = tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .unwrap()
        .unwrap();
    let Err(ChannelError::Platform(e)) = result else {
        panic!("{result:?}");
    };
    assert!(e.contains("99991400"), "{e}");
    // The next start gets through.
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    run.stop().await;

    let fake = FakeFeishu::start(APP_ID, SECRET);
    let mut bad = config(&fake, json!({}));
    bad.app_id = "cli_other".into();
    let result = tokio::time::timeout(Duration::from_secs(10), start(bad).task)
        .await
        .unwrap()
        .unwrap();
    let Err(ChannelError::Rejected(e)) = result else {
        panic!("{result:?}");
    };
    assert!(e.contains("10003"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_unknown_chat_types_are_dropped_not_taken_as_dms() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({"allow_from": []})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    let code = run.channel.access().pairing_code().unwrap();
    let pair = |chat_type: Option<&str>| {
        let mut e = fake.dm("ou_eve", &format!("/pair {code}"));
        match chat_type {
            Some(t) => e["event"]["message"]["chat_type"] = json!(t),
            None => {
                e["event"]["message"]
                    .as_object_mut()
                    .unwrap()
                    .remove("chat_type");
            }
        }
        e
    };
    // Neither a missing nor an unknown chat type pairs (or reaches the inbox).
    push_acked(&fake, &pair(None), 1).await;
    push_acked(&fake, &pair(Some("private")), 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.sent().is_empty(), "{:?}", fake.sent());
    // A p2p chat does.
    push_acked(&fake, &pair(Some("p2p")), 1).await;
    wait(&fake, "the welcome", |f| f.sent().len() == 1).await;
    assert!(fake.sent()[0].text().starts_with("Paired"));
    // Once allowed: a message of an unknown chat type is still dropped.
    let mut odd = fake.dm("ou_eve", "where am I?");
    odd["event"]["message"]["chat_type"] = json!("private");
    push_acked(&fake, &odd, 1).await;
    push_acked(&fake, &fake.dm("ou_eve", "here"), 1).await;
    wait_kept(&run.inbox, 1).await;
    let texts: Vec<String> = run.inbox.all().into_iter().map(|m| m.content).collect();
    assert_eq!(texts, ["here"]);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_stops_answering_pings_is_dialled_again() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    // The fake's PingInterval is 1 s: three silent seconds end the connection.
    tokio::task::block_in_place(|| fake.go_silent());
    wait(&fake, "a second connection", |f| f.connections() == 2).await;
    push_acked(&fake, &fake.dm("ou_ada", "back?"), 1).await;
    wait_kept(&run.inbox, 1).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_go_on_while_an_event_is_handled_slowly() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let dir = tempfile::tempdir().unwrap();
    let run = start(
        config(&fake, json!({}))
            .with_media_dir(dir.path().join("media"))
            .with_media_base(dir.path()),
    );
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    fake.add_resource("img_slow", b"\x89PNG slow", "image/png");
    fake.stall("img_slow");
    let image = fake.message_event(
        "ou_ada",
        "oc_dm_ou_ada",
        "p2p",
        "image",
        &json!({"image_key": "img_slow"}),
        &[],
    );
    let frame = tokio::task::block_in_place(|| fake.push_event(&image, 1));
    let before = fake.pings().len();
    // The download hangs for longer than three ping intervals: pings go on meanwhile, and a
    // message after it is taken in order once it is done.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(fake.pings().len() >= before + 2, "pings stopped");
    assert_eq!(fake.connections(), 1, "the connection was dropped");
    assert!(!fake.acks().iter().any(|a| a.message_id == frame));
    let next = tokio::task::block_in_place(|| fake.push_event(&fake.dm("ou_ada", "after"), 1));
    fake.release("img_slow");
    wait(&fake, "both acks", |f| {
        let acks = f.acks();
        acks.iter().any(|a| a.message_id == frame) && acks.iter().any(|a| a.message_id == next)
    })
    .await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].media.len(), 1);
    assert_eq!(all[1].content, "after");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn union_ids_are_allowed_too_and_bursts_are_limited() {
    let fake = FakeFeishu::start(APP_ID, SECRET);
    // The fake gives user ou_bob the union_id on_ou_bob.
    let run = start(config(
        &fake,
        json!({"allow_from": ["on_ou_bob"], "rate_limit_per_minute": 2}),
    ));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    for text in ["one", "two", "three", "four"] {
        push_acked(&fake, &fake.dm("ou_bob", text), 1).await;
    }
    // Two kept; the third is refused with one notice, the fourth silently.
    wait(&fake, "the notice", |f| !f.sent().is_empty()).await;
    let texts: Vec<String> = run.inbox.all().into_iter().map(|m| m.content).collect();
    assert_eq!(texts, ["one", "two"]);
    let sent = fake.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].text().contains("slow down"));
    assert_eq!(sent[0].target, "oc_dm_ou_bob");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_the_agent_sends_are_uploaded_and_sent_as_their_kind() {
    use picoclaw_api::MediaRef;
    let fake = FakeFeishu::start(APP_ID, SECRET);
    let run = start(config(&fake, json!({})));
    wait(&fake, "a connection", |f| f.connections() == 1).await;
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.png");
    let report = dir.path().join("report.pdf");
    let voice = dir.path().join("note.opus");
    std::fs::write(&chart, b"PNG bytes").unwrap();
    std::fs::write(&report, b"%PDF bytes").unwrap();
    std::fs::write(&voice, b"OggS opus").unwrap();
    let mut msg = OutboundMessage::new("feishu", "oc_team", "Here you are.")
        .with_media(MediaRef::new(MediaKind::Image, chart.display().to_string()))
        .with_media(MediaRef::new(
            MediaKind::Document,
            report.display().to_string(),
        ))
        .with_media(MediaRef::new(MediaKind::Audio, voice.display().to_string()))
        .with_media(
            MediaRef::new(MediaKind::Document, "https://example.test/big.zip").with_name("big.zip"),
        );
    msg.reply_to = Some("om_question".into());
    run.channel.send(&msg).await.unwrap();

    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 3, "{uploads:?}");
    assert_eq!(
        (
            uploads[0].kind.as_str(),
            uploads[0].fields["image_type"].as_str()
        ),
        ("image", "message")
    );
    assert_eq!(uploads[0].bytes, b"PNG bytes");
    assert_eq!(uploads[1].fields["file_type"], "pdf");
    assert_eq!(uploads[1].fields["file_name"], "report.pdf");
    assert_eq!(uploads[1].bytes, b"%PDF bytes");
    assert_eq!(uploads[2].fields["file_type"], "opus");

    let sent = fake.sent();
    let kinds: Vec<(&str, &str)> = sent
        .iter()
        .map(|s| (s.kind.as_str(), s.msg_type.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("reply", "interactive"),
            ("create", "image"),
            ("create", "file"),
            ("create", "audio")
        ]
    );
    assert!(
        sent[0]
            .text()
            .contains("[big.zip](https://example.test/big.zip)")
    );
    assert_eq!(sent[1].content["image_key"], uploads[0].key.as_str());
    assert_eq!(sent[2].content["file_key"], uploads[1].key.as_str());

    // A file that is not there: a clear error, nothing more sent.
    let missing = OutboundMessage::new("feishu", "oc_team", "")
        .with_media(MediaRef::new(MediaKind::Image, "/no/such/file.png"));
    let e = run.channel.send(&missing).await.unwrap_err();
    assert!(e.to_string().contains("file.png"), "{e}");
    assert_eq!(fake.sent().len(), 4);
    run.stop().await;
}
