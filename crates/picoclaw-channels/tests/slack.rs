//! The Slack channel against a loopback Slack (Web API + Socket Mode WebSocket): the real
//! slack-morphism client through `api_base`.
#![cfg(feature = "slack")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Kept, install_crypto, wait_kept};

use picoclaw_api::{Button, MediaKind, MediaRef, OutboundMessage};
use picoclaw_channels::settings::ChannelSettings;
use picoclaw_channels::slack::{SlackChannel, SlackConfig};
use picoclaw_channels::{Channel, ChannelError, Inbox, WebhookRequest};
use picoclaw_testkit::slack::{BOT_USER_ID, FakeSlack};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BOT: &str = "xoxb-test";
const APP: &str = "xapp-test";
const SECRET: &str = "signing-secret";

fn config(fake: &FakeSlack, extra: Value) -> SlackConfig {
    let mut v = json!({"bot_token": BOT, "app_token": APP, "signing_secret": SECRET,
                       "allow_from": ["UADA"], "api_base": fake.api_base(),
                       "rate_limit_per_minute": 0});
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    SlackConfig::from_json(&v).unwrap()
}

struct Running {
    channel: Arc<SlackChannel>,
    inbox: Arc<Kept>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ChannelError>>,
}

async fn start(config: SlackConfig) -> Running {
    install_crypto();
    let channel = Arc::new(SlackChannel::new(config).unwrap());
    let inbox = Arc::new(Kept::default());
    let stop = CancellationToken::new();
    let task = {
        let (channel, inbox, stop) = (Arc::clone(&channel), Arc::clone(&inbox), stop.clone());
        tokio::spawn(async move { channel.run(inbox, stop).await })
    };
    Running {
        channel,
        inbox,
        stop,
        task,
    }
}

/// Blocks the test's thread while the channel (on the runtime's other threads) works.
async fn wait(fake: &FakeSlack, what: &str, done: impl FnMut(&FakeSlack) -> bool + Send) {
    tokio::task::block_in_place(|| fake.wait_for(what, done));
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_mode_takes_dms_and_mentions_acks_them_and_drops_the_rest() {
    let fake = FakeSlack::start(BOT, APP);
    let run = start(config(&fake, json!({}))).await;

    // A DM from an allowed user: kept, acknowledged, marked 👀.
    let dm = fake.dm_event("UADA", "hello &amp; welcome");
    let dm_ts = dm["ts"].as_str().unwrap().to_owned();
    let env = tokio::task::block_in_place(|| fake.push_socket(fake.event_callback(dm)));
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.chat_id, "DUADA");
    assert_eq!(m.sender_id, "UADA");
    assert_eq!(m.content, "hello & welcome");
    assert_eq!(m.session_key.as_str(), "slack:DUADA");
    assert_eq!(m.metadata["message_id"], dm_ts);
    wait(&fake, "the reaction", |f| !f.reactions().is_empty()).await;
    assert_eq!(fake.reactions()[0], ("DUADA".into(), dm_ts, "eyes".into()));

    // The same event again (Slack's redelivery): acknowledged, not kept twice.
    let again = fake.event_callback(fake.dm_event("UADA", "second"));
    let env1 = tokio::task::block_in_place(|| fake.push_socket(again.clone()));
    let env2 = tokio::task::block_in_place(|| fake.push_socket(again));
    wait(&fake, "both acks", |f| {
        f.acks().contains(&env1) && f.acks().contains(&env2)
    })
    .await;
    wait_kept(&run.inbox, 2).await;

    // Ignored, though acknowledged: a stranger, the bot itself, another bot, an edit, and a
    // channel line that does not mention the bot.
    let stranger = fake.dm_event("UEVE", "let me in");
    let mut own = fake.dm_event(BOT_USER_ID, "my own answer");
    own["bot_id"] = json!("BBOT");
    let mut other_bot = fake.dm_event("UADA", "from a workflow");
    other_bot["bot_id"] = json!("BOTHER");
    let mut edit = fake.dm_event("UADA", "edited");
    edit["subtype"] = json!("message_changed");
    let chatter = fake.channel_event("UADA", "CGEN", "just chatting", None);
    // A mention typed as text (Slack escapes it) is not a mention.
    let typed = fake.channel_event("UADA", "CGEN", &format!("&lt;@{BOT_USER_ID}&gt; hi"), None);
    let mut envs = Vec::new();
    for e in [stranger, own, other_bot, edit, chatter, typed] {
        envs.push(tokio::task::block_in_place(|| {
            fake.push_socket(fake.event_callback(e))
        }));
    }
    wait(&fake, "all acks", |f| {
        envs.iter().all(|e| f.acks().contains(e))
    })
    .await;

    // A mention in a channel: kept, the mention removed, answered in a thread under it; a
    // reply in that thread needs no mention; the `message` twin of the mention is dropped.
    let mention = fake.mention_event(
        "UADA",
        "CGEN",
        &format!("<@{BOT_USER_ID}> what time is it?"),
    );
    let ts = mention["ts"].as_str().unwrap().to_owned();
    let mut twin = mention.clone();
    twin["type"] = json!("message");
    twin["channel_type"] = json!("channel");
    for e in [mention, twin] {
        let env = tokio::task::block_in_place(|| fake.push_socket(fake.event_callback(e)));
        wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    }
    let follow = fake.channel_event("UADA", "CGEN", "and tomorrow?", Some(&ts));
    let env = tokio::task::block_in_place(|| fake.push_socket(fake.event_callback(follow)));
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    wait_kept(&run.inbox, 4).await;
    let all = run.inbox.all();
    let texts: Vec<&str> = all.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hello & welcome",
            "second",
            "what time is it?",
            "and tomorrow?"
        ]
    );
    assert_eq!(all[2].chat_id, format!("CGEN/{ts}"));
    assert_eq!(all[3].chat_id, format!("CGEN/{ts}"));

    run.stop.cancel();
    run.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_inbox_cannot_keep_is_not_acknowledged_and_comes_again() {
    let fake = FakeSlack::start(BOT, APP);
    let run = start(config(&fake, json!({}))).await;
    run.inbox.fail.store(1, Ordering::SeqCst);
    let payload = fake.event_callback(fake.dm_event("UADA", "keep me"));
    let first = tokio::task::block_in_place(|| fake.push_socket(payload.clone()));
    // Slack redelivers an unacknowledged envelope; this one is kept and acknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fake.acks().contains(&first), "not acknowledged");
    let second = tokio::task::block_in_place(|| fake.push_socket(payload));
    wait(&fake, "the ack", |f| f.acks().contains(&second)).await;
    wait_kept(&run.inbox, 1).await;
    assert_eq!(run.inbox.all()[0].content, "keep me");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_mode_reconnects_when_slack_asks() {
    let fake = FakeSlack::start(BOT, APP);
    let run = start(config(&fake, json!({}))).await;
    let env = tokio::task::block_in_place(|| {
        fake.push_socket(fake.event_callback(fake.dm_event("UADA", "one")))
    });
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    let opened = fake.connections_opened();
    tokio::task::block_in_place(|| fake.disconnect_socket());
    wait(&fake, "a new connection", |f| {
        f.connections_opened() > opened
    })
    .await;
    let env = tokio::task::block_in_place(|| {
        fake.push_socket(fake.event_callback(fake.dm_event("UADA", "two")))
    });
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    wait_kept(&run.inbox, 2).await;
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_tokens_are_clear_errors_not_retry_loops() {
    install_crypto();
    let fake = FakeSlack::start(BOT, APP);
    for (bot, app, named) in [
        ("xoxb-wrong", APP, "bot_token (invalid_auth)"),
        (BOT, "xapp-wrong", "app_token (invalid_auth)"),
    ] {
        let config = SlackConfig::from_json(&json!({"bot_token": bot, "app_token": app,
            "api_base": fake.api_base()}))
        .unwrap();
        let err = SlackChannel::new(config)
            .unwrap()
            .run(Arc::new(Kept::default()), CancellationToken::new())
            .await
            .unwrap_err();
        assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
        assert!(err.to_string().contains(named), "{err}");
    }
}

fn signed(body: &str, at: i64) -> WebhookRequest {
    WebhookRequest::new("POST", body.as_bytes().to_vec())
        .with_header("content-type", "application/json")
        .with_header("x-slack-request-timestamp", at.to_string())
        .with_header("x-slack-signature", FakeSlack::sign(SECRET, at, body))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_events_api_checks_signatures_and_keeps_each_event_once() {
    let fake = FakeSlack::start(BOT, APP);
    // Events API only: no app token.
    let mut cfg = config(&fake, json!({}));
    cfg.app_token = None;
    let run = start(cfg).await;
    assert!(run.channel.takes_webhooks());
    // The URL check Slack does when the Request URL is saved.
    let check = json!({"token": "x", "challenge": "c-123", "type": "url_verification"}).to_string();
    let inbox: Arc<dyn Inbox> = run.inbox.clone();
    let r = run
        .channel
        .webhook(signed(&check, now()), Arc::clone(&inbox))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["challenge"],
        "c-123"
    );

    let body = fake
        .event_callback(fake.dm_event("UADA", "via webhook"))
        .to_string();
    // Wait until auth.test is done (503 before: Slack retries).
    let mut status = 0;
    for _ in 0..200 {
        status = run
            .channel
            .webhook(signed(&body, now()), Arc::clone(&inbox))
            .await
            .status;
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
    // Slack's retry of the same event (X-Slack-Retry-Num): 200, not kept again.
    let retry = signed(&body, now()).with_header("x-slack-retry-num", "1");
    assert_eq!(
        run.channel.webhook(retry, Arc::clone(&inbox)).await.status,
        200
    );
    assert_eq!(run.inbox.all().len(), 1);
    assert_eq!(run.inbox.all()[0].content, "via webhook");

    // Forged, tampered, stale, unsigned: refused, nothing kept.
    let other = fake
        .event_callback(fake.dm_event("UADA", "forged"))
        .to_string();
    let mut forged = signed(&other, now());
    forged.headers.retain(|(n, _)| n != "x-slack-signature");
    let forged = forged.with_header("x-slack-signature", FakeSlack::sign("wrong", now(), &other));
    let tampered = {
        let mut r = signed(&other, now());
        r.body = other.replace("forged", "tampered").into_bytes();
        r
    };
    let stale = signed(&other, now() - 600);
    let unsigned = WebhookRequest::new("POST", other.as_bytes().to_vec());
    for request in [forged, tampered, stale, unsigned] {
        let r = run.channel.webhook(request, Arc::clone(&inbox)).await;
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    }
    assert_eq!(run.inbox.all().len(), 1);

    // A full inbox: 503, so Slack sends the event again.
    run.inbox.fail.store(1, Ordering::SeqCst);
    let body = fake
        .event_callback(fake.dm_event("UADA", "later"))
        .to_string();
    assert_eq!(
        run.channel
            .webhook(signed(&body, now()), Arc::clone(&inbox))
            .await
            .status,
        503
    );
    assert_eq!(
        run.channel
            .webhook(signed(&body, now()), Arc::clone(&inbox))
            .await
            .status,
        200
    );
    assert_eq!(run.inbox.all().len(), 2);

    // A button press through the interactivity URL (a form with a JSON `payload`).
    let payload = json!({"type": "block_actions", "user": {"id": "UADA"},
        "channel": {"id": "DUADA"}, "trigger_id": "t1",
        "message": {"ts": "1.2"}, "actions": [{"value": "yes", "action_ts": "9.9"}]});
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let at = now();
    let press = WebhookRequest::new("POST", form.as_bytes().to_vec())
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_header("x-slack-request-timestamp", at.to_string())
        .with_header("x-slack-signature", FakeSlack::sign(SECRET, at, &form));
    assert_eq!(
        run.channel.webhook(press, Arc::clone(&inbox)).await.status,
        200
    );
    let last = run.inbox.all().pop().unwrap();
    assert_eq!(
        (last.chat_id.as_str(), last.content.as_str()),
        ("DUADA", "yes")
    );
    assert_eq!(last.metadata["button"], "true");

    // A slash command `/picoclaw new` becomes `/new`.
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("command", "/picoclaw")
        .append_pair("text", "new")
        .append_pair("user_id", "UADA")
        .append_pair("channel_id", "DUADA")
        .finish();
    let at = now();
    let cmd = WebhookRequest::new("POST", form.as_bytes().to_vec())
        .with_header("content-type", "application/x-www-form-urlencoded")
        .with_header("x-slack-request-timestamp", at.to_string())
        .with_header("x-slack-signature", FakeSlack::sign(SECRET, at, &form));
    let r = run.channel.webhook(cmd, Arc::clone(&inbox)).await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Got it."[..]));
    assert_eq!(run.inbox.all().pop().unwrap().content, "/new");
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_split_threaded_formatted_with_buttons_and_files() {
    let fake = FakeSlack::start(BOT, APP);
    let ws = tempfile::tempdir().unwrap();
    let run = start(config(&fake, json!({}))).await;
    // Wait for auth.test through one kept message.
    let env = tokio::task::block_in_place(|| {
        fake.push_socket(fake.event_callback(fake.dm_event("UADA", "hi")))
    });
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;

    // 9 000 characters of Markdown in a thread: three mrkdwn messages in that thread.
    let long = format!("**Report**\n\n{}", "word ".repeat(1800));
    let msg = OutboundMessage::new("slack", "CGEN/1710000000.000001", long);
    run.channel.send(&msg).await.unwrap();
    let posts = fake.posts();
    assert_eq!(posts.len(), 3, "{posts:?}");
    for p in &posts {
        assert_eq!(p["channel"], "CGEN");
        assert_eq!(p["thread_ts"], "1710000000.000001");
        assert!(p["text"].as_str().unwrap().chars().count() <= 4000);
    }
    assert!(posts[0]["text"].as_str().unwrap().starts_with("*Report*"));

    // Buttons: Block Kit; when Slack refuses the blocks, plain text with the choices.
    let mut msg = OutboundMessage::new("slack", "DUADA", "Pick **one**");
    msg.buttons = vec![vec![Button::new("Yes", "yes"), Button::new("No", "no")]];
    run.channel.send(&msg).await.unwrap();
    let p = fake.posts().pop().unwrap();
    assert!(p.get("thread_ts").is_none());
    assert_eq!(p["blocks"][1]["elements"][0]["value"], "yes");
    assert_eq!(p["blocks"][0]["text"]["text"], "Pick *one*");
    fake.reject_blocks(1);
    run.channel.send(&msg).await.unwrap();
    let p = fake.posts().pop().unwrap();
    assert!(p.get("blocks").is_none(), "{p}");
    let text = p["text"].as_str().unwrap();
    assert!(
        text.contains("Pick **one**") && text.contains("Yes"),
        "{text}"
    );

    // 429 with Retry-After: waited out, then sent.
    fake.rate_limit_posts(1, 1);
    let before = fake.posts().len();
    run.channel
        .send(&OutboundMessage::new("slack", "DUADA", "after the wait"))
        .await
        .unwrap();
    assert_eq!(fake.posts().len(), before + 1);

    // A file: uploaded the external way into the thread.
    let path = ws.path().join("report.txt");
    std::fs::write(&path, b"numbers").unwrap();
    let msg = OutboundMessage::new("slack", "CGEN/1710000000.000001", "").with_media(
        MediaRef::new(MediaKind::Document, path.display().to_string()),
    );
    run.channel.send(&msg).await.unwrap();
    let up = &fake.uploads()[0];
    assert_eq!(
        (up.name.as_str(), up.bytes.as_slice(), up.channel.as_str()),
        ("report.txt", &b"numbers"[..], "CGEN")
    );
    assert_eq!(up.thread_ts.as_deref(), Some("1710000000.000001"));

    // A channel that does not exist: rejected, not retried.
    let err = run
        .channel
        .send(&OutboundMessage::new("slack", "C-MISSING", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, ChannelError::Rejected(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("channel_not_found: the bot cannot see that channel"),
        "{err}"
    );
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn files_users_share_are_downloaded_with_the_bot_token() {
    let fake = FakeSlack::start(BOT, APP);
    let media = tempfile::tempdir().unwrap();
    let run = start(config(&fake, json!({})).with_media_dir(media.path())).await;
    let mut event = fake.dm_event("UADA", "see attached");
    event["subtype"] = json!("file_share");
    event["files"] = json!([fake.add_file("../notes.txt", b"secret plans")]);
    let env = tokio::task::block_in_place(|| fake.push_socket(fake.event_callback(event)));
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.media.len(), 1, "{m:?}");
    let saved = std::path::Path::new(&m.media[0].location);
    assert!(saved.starts_with(media.path()), "{saved:?}");
    assert_eq!(std::fs::read(saved).unwrap(), b"secret plans");
    assert_eq!(m.media[0].name.as_deref(), Some("../notes.txt"));
    assert_eq!(fake.downloads(), [Some(format!("Bearer {BOT}"))]);
    run.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn button_presses_over_socket_mode_come_back_as_messages() {
    let fake = FakeSlack::start(BOT, APP);
    let run = start(config(&fake, json!({}))).await;
    let env = tokio::task::block_in_place(|| {
        fake.press_button_socket("UADA", "CGEN", "option-b", Some("1710000000.000007"))
    });
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    wait_kept(&run.inbox, 1).await;
    let m = &run.inbox.all()[0];
    assert_eq!(m.content, "option-b");
    assert_eq!(m.chat_id, "CGEN/1710000000.000007");
    // A stranger's press does nothing.
    let env =
        tokio::task::block_in_place(|| fake.press_button_socket("UEVE", "CGEN", "option-a", None));
    wait(&fake, "the ack", |f| f.acks().contains(&env)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(run.inbox.all().len(), 1);
    run.stop.cancel();
}
