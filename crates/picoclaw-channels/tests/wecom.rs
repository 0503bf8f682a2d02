//! The WeCom channel against a loopback WeCom: the self-built app (encrypted XML callbacks,
//! message/send, media/get, tokens) and the group bot (encrypted JSON callbacks, webhook_url).
#![cfg(feature = "wecom")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{merged, wait_kept};

use picoclaw_api::{MediaKind, OutboundMessage};
use picoclaw_channels::wecom::WecomChannel;
use picoclaw_channels::{
    Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest, WebhookResponse,
};
use picoclaw_testkit::wecom::{AES_KEY, BOT_ID, FakeWecom, TOKEN};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const CORP: &str = "ww5823bf96d3bd56c7";
const SECRET: &str = "app-secret";

type Running = common::Running<WecomChannel>;

impl Running {
    async fn hook(&self, request: WebhookRequest) -> WebhookResponse {
        let inbox: Arc<dyn Inbox> = self.inbox.clone();
        self.channel.webhook(request, inbox).await
    }
}

fn app_settings(fake: &FakeWecom, extra: Value) -> Value {
    let v = json!({"enabled": true, "corp_id": CORP, "corp_secret": SECRET,
                   "agent_id": 1000002, "token": TOKEN, "encoding_aes_key": AES_KEY,
                   "api_base": fake.api_base(), "allow_from": ["ada"],
                   "rate_limit_per_minute": 0});
    merged(v, extra)
}

fn setup(name: &str, settings: Value, dir: &std::path::Path) -> ChannelSetup {
    std::fs::create_dir_all(dir.join("workspace")).unwrap();
    ChannelSetup::new(name, settings, &dir.join("workspace"), &dir.join("home"))
}

async fn start(name: &str, settings: Value) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let channel = WecomChannel::from_setup(&setup(name, settings, dir.path())).unwrap();
    common::run(channel, dir)
}

async fn wait(fake: &FakeWecom, what: &str, done: impl FnMut(&FakeWecom) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

fn body(r: &WebhookResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_takes_allowed_users_once_and_answers_in_markdown_parts() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;

    let hello = fake.app_callback(&fake.app_text("ada", "hello **there**"));
    let r = run.hook(hello.clone()).await;
    assert_eq!((r.status, body(&r).as_str()), (200, "success"));
    // WeCom's retry of the same MsgId, and a stranger: both answered, neither kept.
    assert_eq!(run.hook(hello).await.status, 200);
    assert_eq!(
        run.hook(fake.app_callback(&fake.app_text("eve", "let me in")))
            .await
            .status,
        200
    );
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1, "{all:?}");
    let m = &all[0];
    assert_eq!((m.chat_id.as_str(), m.sender_id.as_str()), ("ada", "ada"));
    assert_eq!(m.content, "hello **there**");
    assert!(m.metadata["message_id"].starts_with('7'));
    assert_eq!(m.channel.as_str(), "wecom_app");

    // 3000 CJK characters (9000 bytes): parts of at most 2048 bytes, as Markdown.
    let answer = format!("**Answer**\n\n{}", "字".repeat(3000));
    run.channel
        .send(&OutboundMessage::reply(m, answer))
        .await
        .unwrap();
    let sends = fake.sends();
    assert!(sends.len() >= 5, "{sends:?}");
    for s in &sends {
        assert_eq!(
            (s["touser"].as_str(), s["msgtype"].as_str()),
            (Some("ada"), Some("markdown"))
        );
        assert_eq!(s["agentid"], 1000002);
        assert!(s["markdown"]["content"].as_str().unwrap().len() <= 2048);
    }
    assert!(
        sends[0]["markdown"]["content"]
            .as_str()
            .unwrap()
            .starts_with("**Answer**")
    );
    assert_eq!(fake.token_calls(), 1, "the token is cached");

    // A stale token is renewed once and the message still goes.
    fake.expire_tokens();
    run.channel
        .send(&OutboundMessage::reply(m, "again"))
        .await
        .unwrap();
    assert_eq!(fake.token_calls(), 2);
    assert_eq!(fake.sends().last().unwrap()["markdown"]["content"], "again");

    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_unsigned_and_foreign_callbacks_are_refused_and_the_url_check_passes() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    let xml = fake.app_text("ada", "forged");
    let encrypted = FakeWecom::encrypt(&xml, CORP);
    let unsigned =
        WebhookRequest::new("POST", format!("<xml><Encrypt>{encrypted}</Encrypt></xml>"));
    assert_eq!(run.hook(unsigned).await.status, 400);
    let wrong_token = FakeWecom::signed_xml("another-token", &encrypted, CORP);
    assert_eq!(run.hook(wrong_token).await.status, 401);
    // Signed, but the body carries another ciphertext than the one signed.
    let mut swapped = FakeWecom::signed_xml(TOKEN, &encrypted, CORP);
    swapped.body = format!(
        "<xml><Encrypt>{}</Encrypt></xml>",
        FakeWecom::encrypt(&xml.replace("forged", "FORGED"), CORP)
    )
    .into_bytes();
    assert_eq!(run.hook(swapped).await.status, 401);
    // Encrypted with our key but for another corp.
    let foreign = FakeWecom::signed_xml(TOKEN, &FakeWecom::encrypt(&xml, "wwOTHER"), "wwOTHER");
    assert_eq!(run.hook(foreign).await.status, 403);
    // Malformed: a signed envelope whose ciphertext is junk, and a body that is not XML.
    assert_eq!(
        run.hook(FakeWecom::signed_xml(TOKEN, "AAAA", CORP))
            .await
            .status,
        400
    );
    let junk =
        WebhookRequest::new("POST", "<xml><Encrypt>").with_query(FakeWecom::query(TOKEN, "x", &[]));
    assert_eq!(run.hook(junk).await.status, 400);

    let check = run.hook(fake.url_check("1616140317555161061", CORP)).await;
    assert_eq!(
        (check.status, body(&check).as_str()),
        (200, "1616140317555161061")
    );
    let mut forged_check = fake.url_check("x", CORP);
    forged_check.query = forged_check.query.replace("nonce42", "nonce43");
    assert_eq!(run.hook(forged_check).await.status, 401);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(run.inbox.all().is_empty());
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_one_clear_error() {
    let fake = FakeWecom::start(CORP, SECRET);
    for (extra, key) in [
        (json!({"corp_secret": "stale"}), "corp_secret"),
        (json!({"corp_id": "wwWRONG"}), "corp_id"),
    ] {
        let run = start("wecom_app", app_settings(&fake, extra)).await;
        let err = run.task.await.unwrap().unwrap_err();
        assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "channels.wecom_app.{key} was refused by WeCom (errcode"
            )),
            "{text}"
        );
        assert!(!text.contains("stale") && !text.contains('\n'));
    }
    let dir = tempfile::tempdir().unwrap();
    let no_key = app_settings(&fake, json!({"encoding_aes_key": ""}));
    let err = WecomChannel::from_setup(&setup("wecom_app", no_key, dir.path())).unwrap_err();
    assert!(
        err.to_string()
            .contains("channels.wecom_app.encoding_aes_key")
    );
    let bad_key = app_settings(&fake, json!({"encoding_aes_key": "tooshort"}));
    let err = WecomChannel::from_setup(&setup("wecom_app", bad_key, dir.path())).unwrap_err();
    assert!(err.to_string().contains("43 characters"));
}

#[tokio::test(flavor = "multi_thread")]
async fn app_images_and_voice_are_saved_and_attached() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;
    let image = fake.app_callback(&fake.app_media("ada", "image", "image/png", b"\x89PNG img"));
    let voice = fake.app_callback(&fake.app_media("ada", "voice", "audio/amr", b"#!AMR voice"));
    assert_eq!(run.hook(image).await.status, 200);
    assert_eq!(run.hook(voice).await.status, 200);
    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    assert!(all.iter().all(|m| m.media.len() == 1), "{all:?}");
    assert_eq!(fake.downloads().len(), 2);
    let (img, audio) = (&all[0].media[0], &all[1].media[0]);
    assert_eq!(
        (img.kind, img.mime.as_deref()),
        (MediaKind::Image, Some("image/png"))
    );
    assert_eq!(std::fs::read(&img.location).unwrap(), b"\x89PNG img");
    assert_eq!(audio.kind, MediaKind::Audio);
    assert!(audio.location.ends_with(".amr"));
    assert_eq!(std::fs::read(&audio.location).unwrap(), b"#!AMR voice");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_pairs_and_a_refused_delivery_is_retried() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({"allow_from": []}))).await;
    let code = run.channel.pairing_code().expect("pairing is open");
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;
    assert_eq!(
        run.hook(fake.app_callback(&fake.app_text("eve", "hi")))
            .await
            .status,
        200
    );
    let pair = fake.app_callback(&fake.app_text("eve", &format!("/pair {code}")));
    assert_eq!(run.hook(pair).await.status, 200);
    wait(&fake, "the pairing notice", |f| !f.sends().is_empty()).await;
    assert!(
        fake.sends()[0]["markdown"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Paired")
    );

    run.inbox.fail.store(1, Ordering::SeqCst);
    let now = fake.app_callback(&fake.app_text("eve", "now?"));
    let refused = run.hook(now.clone()).await;
    // A fixed text: the inbox's error ("journal full") stays in the log.
    assert_eq!(
        (refused.status, body(&refused).as_str()),
        (500, "not kept, retry")
    );
    assert_eq!(run.hook(now).await.status, 200);
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].content, "now?");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wecom_section_with_corp_id_is_the_app_and_serves_its_own_listener() {
    let fake = FakeWecom::start(CORP, SECRET);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = app_settings(
        &fake,
        json!({"webhook_host": "127.0.0.1", "webhook_port": port, "webhook_path": "/wecom-hook"}),
    );
    let run = start("wecom", settings).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let request = fake.app_callback(&fake.app_text("ada", "via port"));
    let (status, answer) = tokio::task::block_in_place(|| {
        for _ in 0..300 {
            let got = FakeWecom::deliver_http(addr, "/wecom-hook", &request);
            if got.0 != 0 {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        (0, String::new())
    });
    assert_eq!((status, answer.as_str()), (200, "success"));
    let check = fake.url_check("echo-7", CORP);
    let (status, echo) =
        tokio::task::block_in_place(|| FakeWecom::deliver_http(addr, "/wecom-hook", &check));
    assert_eq!((status, echo.as_str()), (200, "echo-7"));
    let unsigned = WebhookRequest::new("POST", "<xml><Encrypt>x</Encrypt></xml>");
    let (status, _) =
        tokio::task::block_in_place(|| FakeWecom::deliver_http(addr, "/wecom-hook", &unsigned));
    assert_eq!(status, 400);
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(
        (m.channel.as_str(), m.content.as_str()),
        ("wecom", "via port")
    );
    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

fn bot_settings(fake: &FakeWecom) -> Value {
    json!({"enabled": true, "token": TOKEN, "encoding_aes_key": AES_KEY,
           "webhook_url": fake.webhook_url(), "allow_from": ["ada"],
           "rate_limit_per_minute": 0, "reply_timeout": 5})
}

#[tokio::test(flavor = "multi_thread")]
async fn the_group_bot_takes_dms_and_mentions_and_answers_through_its_webhook() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom", bot_settings(&fake)).await;
    let dm = fake.bot_callback(&fake.bot_text("ada", None, "hello"));
    let r = run.hook(dm.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(run.hook(dm).await.status, 200, "a retry is answered");
    let mention = fake.bot_text("ada", Some("G1"), "@pico what time is it?");
    let own = fake.bot_text(BOT_ID, None, "my own words");
    let stranger = fake.bot_text("eve", Some("G1"), "@pico hi");
    for m in [mention, own, stranger] {
        assert_eq!(run.hook(fake.bot_callback(&m)).await.status, 200);
    }
    // The bot's URL check: receive id empty.
    let check = run.hook(fake.url_check("bot-echo", "")).await;
    assert_eq!((check.status, body(&check).as_str()), (200, "bot-echo"));
    // A callback signed with another token.
    let enc = FakeWecom::encrypt(&fake.bot_text("ada", None, "forged").to_string(), "");
    let forged = WebhookRequest::new("POST", json!({"encrypt": enc}).to_string())
        .with_query(FakeWecom::query("another-token", &enc, &[]));
    assert_eq!(run.hook(forged).await.status, 401);

    wait_kept(&run.inbox, 2).await;
    let all = run.inbox.all();
    let got: Vec<(&str, &str)> = all
        .iter()
        .map(|m| (m.chat_id.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(got, [("ada", "hello"), ("G1", "what time is it?")]);
    assert_eq!(all[1].metadata["peer_kind"], "group");

    let long = format!("# Title\n\n{}", "word ".repeat(1000));
    run.channel
        .send(&OutboundMessage::reply(&all[1], long))
        .await
        .unwrap();
    let posts = fake.bot_posts();
    assert!(posts.len() >= 2, "{posts:?}");
    for p in &posts {
        assert_eq!(p["msgtype"], "markdown");
        assert!(p["markdown"]["content"].as_str().unwrap().len() <= 4096);
    }
    assert!(
        posts[0]["markdown"]["content"]
            .as_str()
            .unwrap()
            .starts_with("# Title")
    );
    assert!(fake.sends().is_empty(), "no app API in bot mode");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_group_bots_encrypted_images_are_decrypted_and_saved() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom", bot_settings(&fake)).await;
    let png = b"\x89PNG\r\n\x1a\n a picture".to_vec();
    assert_eq!(
        run.hook(fake.bot_callback(&fake.bot_image("ada", &png)))
            .await
            .status,
        200
    );
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    let media = &m.media[0];
    assert_eq!(
        (media.kind, media.mime.as_deref()),
        (MediaKind::Image, Some("image/png"))
    );
    assert_eq!(std::fs::read(&media.location).unwrap(), png);
    run.stop.cancel();
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_stay_out_of_failed_downloads_sends_and_errors() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;
    fake.reset_connections(true);
    // media/get?access_token=... fails: the agent gets a neutral note.
    let image = fake.app_callback(&fake.app_media("ada", "image", "image/png", b"\x89PNG"));
    assert_eq!(run.hook(image).await.status, 200);
    wait_kept(&run.inbox, 1).await;
    let m = run.inbox.all()[0].clone();
    assert_eq!(m.content, "[a file could not be downloaded]");
    assert!(m.media.is_empty());
    // message/send?access_token=... fails: the error does not show the token.
    let err = run
        .channel
        .send(&OutboundMessage::reply(&m, "answer"))
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Platform(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains("tok-") && !text.contains("access_token"),
        "{text}"
    );
    run.stop.cancel();

    // gettoken?corpsecret=... fails at the start: the error does not show the secret.
    let again = start("wecom_app", app_settings(&fake, json!({}))).await;
    let err = again.task.await.unwrap().unwrap_err();
    assert!(matches!(err, ChannelError::Platform(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("corpsecret"),
        "{text}"
    );

    // The group bot's webhook_url?key=... fails: the error does not show the key.
    let bot = start("wecom", bot_settings(&fake)).await;
    let err = bot
        .channel
        .send(&OutboundMessage::reply(&m, "answer"))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("fake-key") && !err.contains("key="), "{err}");
    bot.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_given_up_during_a_slow_download_lets_the_retry_through() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;
    fake.stall_downloads(true);
    let callback = fake.app_callback(&fake.app_media("ada", "image", "image/png", b"\x89PNG slow"));
    // The gateway drops the handler when its webhook timeout passes.
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let cut = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        run.channel.webhook(callback.clone(), inbox),
    )
    .await;
    assert!(cut.is_err(), "the download was meant to stall");
    assert_eq!(fake.downloads().len(), 1);
    fake.stall_downloads(false);
    assert_eq!(run.hook(callback.clone()).await.status, 200);
    wait_kept(&run.inbox, 1).await;
    let all = run.inbox.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].media.len(), 1, "{all:?}");
    // Kept now: a further retry is dropped.
    assert_eq!(run.hook(callback).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(run.inbox.all().len(), 1);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_signed_more_than_an_hour_away_are_refused_as_replays() {
    let fake = FakeWecom::start(CORP, SECRET);
    let run = start("wecom_app", app_settings(&fake, json!({}))).await;
    wait(&fake, "the start's token", |f| f.token_calls() == 1).await;
    let now = unix_now();
    let xml = fake.app_text("ada", "captured");
    for ts in [
        (now - 3 * 3600).to_string(),
        (now + 3 * 3600).to_string(),
        "1700000000".to_owned(),
        "soon".to_owned(),
    ] {
        let r = run.hook(fake.app_callback_at(&xml, &ts)).await;
        assert_eq!(r.status, 403, "timestamp {ts}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(run.inbox.all().is_empty());
    // A few minutes of clock skew pass.
    let r = run
        .hook(fake.app_callback_at(&xml, &(now - 300).to_string()))
        .await;
    assert_eq!((r.status, body(&r).as_str()), (200, "success"));
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "captured");
    run.stop.cancel();
}
