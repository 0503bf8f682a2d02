//! The Discord channel against a loopback Discord (REST + Gateway WebSocket): the real serenity
//! client through `api_base`.
#![cfg(feature = "discord")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Kept, install_crypto, wait_kept};
use picoclaw_api::{Button, MediaKind, MediaRef, OutboundMessage};
use picoclaw_channels::discord::{DiscordChannel, DiscordConfig};
use picoclaw_channels::settings::ChannelSettings;
use picoclaw_channels::{Channel, ChannelError};
use picoclaw_testkit::discord::{BOT_ID, FakeDiscord};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "discord-test-token";
const ADA: &str = "100000000000000001";
const EVE: &str = "100000000000000002";
const DM: &str = "200000000000000001";
const GENERAL: &str = "200000000000000002";
const GUILD: &str = "300000000000000001";

fn config(fake: &FakeDiscord, extra: Value) -> DiscordConfig {
    let mut v = json!({"token": TOKEN, "allow_from": [ADA], "api_base": fake.api_base(),
                       "rate_limit_per_minute": 0});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    DiscordConfig::from_json(&v).unwrap()
}

struct Running {
    channel: Arc<DiscordChannel>,
    inbox: Arc<Kept>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ChannelError>>,
}

async fn start(fake: &FakeDiscord, config: DiscordConfig) -> Running {
    install_crypto();
    let channel = Arc::new(DiscordChannel::new(config).unwrap());
    let inbox = Arc::new(Kept::default());
    let stop = CancellationToken::new();
    let task = {
        let (channel, inbox, stop) = (Arc::clone(&channel), Arc::clone(&inbox), stop.clone());
        tokio::spawn(async move { channel.run(inbox, stop).await })
    };
    wait(fake, "IDENTIFY", |f| !f.identifies().is_empty()).await;
    Running {
        channel,
        inbox,
        stop,
        task,
    }
}

async fn wait(fake: &FakeDiscord, what: &str, done: impl FnMut(&FakeDiscord) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

/// Runs a blocking fake call (it waits for a Gateway connection) off the async threads.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread")]
async fn dms_and_mentions_reach_the_inbox_strangers_bots_and_chatter_do_not() {
    let fake = FakeDiscord::start(TOKEN);
    let run = start(&fake, config(&fake, json!({}))).await;
    // The intents asked for: guild messages, DMs, and the privileged message content.
    let intents = fake.identifies()[0]["intents"].as_u64().unwrap();
    assert_eq!(intents & (1 << 9), 1 << 9, "GUILD_MESSAGES");
    assert_eq!(intents & (1 << 12), 1 << 12, "DIRECT_MESSAGES");
    assert_eq!(intents & (1 << 15), 1 << 15, "MESSAGE_CONTENT");

    let id = blocking(|| fake.message(DM, None, ADA, "ada", "hello", json!({})));
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(
        (m.chat_id.as_str(), m.sender_id.as_str(), m.content.as_str()),
        (DM, ADA, "hello")
    );
    assert_eq!(m.session_key.as_str(), format!("discord:{DM}"));
    assert_eq!(m.metadata["message_id"], id);
    wait(&fake, "the reaction", |f| !f.reactions().is_empty()).await;
    let (channel, message, emoji) = fake.reactions()[0].clone();
    assert_eq!((channel.as_str(), message.as_str()), (DM, id.as_str()));
    assert!(emoji.contains("%F0%9F%91%80") || emoji == "👀", "{emoji}");
    assert!(fake.typing().contains(&DM.to_owned()));

    // Ignored: a stranger, a bot (the bot itself included), and guild chatter without a mention.
    blocking(|| fake.message(DM, None, EVE, "eve", "let me in", json!({})));
    blocking(|| fake.bot_message(DM, BOT_ID, "my own answer"));
    blocking(|| fake.bot_message(GENERAL, "999", "another bot"));
    blocking(|| fake.message(GENERAL, Some(GUILD), ADA, "ada", "chatting", json!({})));
    // Kept: a mention (removed from the text) and a reply to the bot.
    let mention = json!({"mentions": [FakeDiscord::user(BOT_ID, "pico", true)]});
    blocking(|| {
        fake.message(
            GENERAL,
            Some(GUILD),
            ADA,
            "ada",
            &format!("<@{BOT_ID}> what time is it?"),
            mention,
        )
    });
    let replied = fake.message_object(GENERAL, FakeDiscord::user(BOT_ID, "pico", true), "noon");
    blocking(|| {
        fake.message(
            GENERAL,
            Some(GUILD),
            ADA,
            "ada",
            "and tomorrow?",
            json!({"referenced_message": replied, "type": 19}),
        )
    });
    // Messages are taken in order: once the last one is kept, the others were dealt with.
    wait_kept(&run.inbox, 3).await;
    let texts: Vec<String> = run.inbox.all().iter().map(|m| m.content.clone()).collect();
    assert_eq!(texts, ["hello", "what time is it?", "and tomorrow?"]);
    assert_eq!(run.inbox.all()[1].metadata["guild_id"], GUILD);

    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_mention_only_off_every_guild_message_counts() {
    let fake = FakeDiscord::start(TOKEN);
    let run = start(&fake, config(&fake, json!({"mention_only": false}))).await;
    blocking(|| fake.message(GENERAL, Some(GUILD), ADA, "ada", "chatting", json!({})));
    wait_kept(&run.inbox, 1).await;
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_resumes_after_a_reconnect_request() {
    let fake = FakeDiscord::start(TOKEN);
    let run = start(&fake, config(&fake, json!({}))).await;
    blocking(|| fake.message(DM, None, ADA, "ada", "one", json!({})));
    wait_kept(&run.inbox, 1).await;
    fake.request_reconnect();
    wait(&fake, "RESUME", |f| !f.resumes().is_empty()).await;
    let resume = &fake.resumes()[0];
    assert_eq!(resume["session_id"], "fake-session");
    let token = resume["token"].as_str().unwrap();
    assert_eq!(token.strip_prefix("Bot ").unwrap_or(token), TOKEN);
    assert!(resume["seq"].as_u64().unwrap() >= 2, "{resume}");
    assert_eq!(fake.identifies().len(), 1, "resumed, not identified again");
    blocking(|| fake.message(DM, None, ADA, "ada", "two", json!({})));
    wait_kept(&run.inbox, 2).await;
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_connection_is_resumed_and_nothing_is_missed_after() {
    let fake = FakeDiscord::start(TOKEN);
    // serenity notices a dead connection by its heartbeats; short ones keep the test short.
    fake.set_heartbeat_interval(200);
    let run = start(&fake, config(&fake, json!({}))).await;
    blocking(|| fake.message(DM, None, ADA, "ada", "before", json!({})));
    wait_kept(&run.inbox, 1).await;
    fake.drop_connections();
    wait(&fake, "a new session or a resume", |f| {
        !f.resumes().is_empty() || f.identifies().len() > 1
    })
    .await;
    blocking(|| fake.message(DM, None, ADA, "ada", "after", json!({})));
    wait_kept(&run.inbox, 2).await;
    let texts: Vec<String> = run.inbox.all().iter().map(|m| m.content.clone()).collect();
    assert_eq!(texts, ["before", "after"]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_token_and_refused_intents_are_clear_errors() {
    install_crypto();
    let fake = FakeDiscord::start(TOKEN);
    let mut bad = config(&fake, json!({}));
    bad.token = "wrong".into();
    let err = DiscordChannel::new(bad)
        .unwrap()
        .run(Arc::new(Kept::default()), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(
        fake.identifies().is_empty(),
        "no gateway connection with a refused token"
    );

    fake.refuse_next_identify(4014);
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        DiscordChannel::new(config(&fake, json!({})))
            .unwrap()
            .run(Arc::new(Kept::default()), CancellationToken::new()),
    )
    .await
    .expect("a refused intent ends the channel instead of looping")
    .unwrap_err();
    assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("MESSAGE CONTENT"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_split_never_ping_and_carry_buttons_and_files() {
    let fake = FakeDiscord::start(TOKEN);
    let ws = tempfile::tempdir().unwrap();
    let run = start(&fake, config(&fake, json!({}))).await;
    let long = format!("@everyone {}", "word ".repeat(900)); // 4 510 characters
    let mut msg = OutboundMessage::new("discord", GENERAL, long);
    msg.reply_to = Some("123456789012345678".into());
    run.channel.send(&msg).await.unwrap();
    let sent = fake.sent();
    assert_eq!(sent.len(), 3);
    for s in &sent {
        assert_eq!(s.channel, GENERAL);
        assert!(s.body["content"].as_str().unwrap().chars().count() <= 2000);
        assert_eq!(s.body["allowed_mentions"]["parse"], json!([]), "{}", s.body);
    }
    assert_eq!(
        sent[0].body["message_reference"]["message_id"],
        "123456789012345678"
    );
    assert!(sent[1].body.get("message_reference").is_none());

    let path = ws.path().join("plot.txt");
    std::fs::write(&path, b"1,2,3").unwrap();
    let mut msg = OutboundMessage::new("discord", DM, "Pick one").with_media(MediaRef::new(
        MediaKind::Document,
        path.display().to_string(),
    ));
    msg.buttons = vec![vec![Button::new("Yes", "yes"), Button::new("No", "no")]];
    run.channel.send(&msg).await.unwrap();
    let last = fake.sent().pop().unwrap();
    assert_eq!(last.body["content"], "Pick one");
    let buttons = &last.body["components"][0]["components"];
    assert_eq!(buttons[0]["label"], "Yes");
    assert_eq!(buttons[1]["custom_id"], "no");
    assert_eq!(last.files, [("plot.txt".to_owned(), b"1,2,3".to_vec())]);

    // An unknown channel and a chat id that is no channel id: rejected, not retried.
    let err = run
        .channel
        .send(&OutboundMessage::new("discord", "404000000000000000", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
    let err = run
        .channel
        .send(&OutboundMessage::new("discord", "general", "x"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a Discord channel id"),
        "{err}"
    );
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_are_saved_and_button_presses_come_back() {
    let fake = FakeDiscord::start(TOKEN);
    let media = tempfile::tempdir().unwrap();
    let run = start(&fake, config(&fake, json!({})).with_media_dir(media.path())).await;
    let file = fake.attachment("../../notes.txt", b"plans");
    blocking(|| {
        fake.message(
            DM,
            None,
            ADA,
            "ada",
            "see this",
            json!({"attachments": [file]}),
        )
    });
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    let saved = std::path::Path::new(&m.media[0].location);
    assert!(saved.starts_with(media.path()), "{saved:?}");
    assert_eq!(std::fs::read(saved).unwrap(), b"plans");

    let id = blocking(|| fake.press_button(DM, ADA, "yes"));
    wait_kept(&run.inbox, 2).await;
    let press = run.inbox.all()[1].clone();
    assert_eq!(
        (press.chat_id.as_str(), press.content.as_str()),
        (DM, "yes")
    );
    wait(&fake, "the interaction ack", |f| !f.callbacks().is_empty()).await;
    assert_eq!(fake.callbacks()[0].0, id);
    assert_eq!(
        fake.callbacks()[0].1["type"],
        6,
        "deferred update (acknowledge)"
    );
    // A stranger's press: acknowledged, not taken.
    blocking(|| fake.press_button(DM, EVE, "no"));
    wait(&fake, "the second ack", |f| f.callbacks().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run.inbox.all().len(), 2);
    run.stop.cancel();
}
