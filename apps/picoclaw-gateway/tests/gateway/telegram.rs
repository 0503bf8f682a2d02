//! Telegram end to end: polling, webhooks, formatting, voice notes, pairing, buttons; API sessions kept apart from channel conversations.

use super::*;
use crate::slack::telegram_home;

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_end_to_end_through_a_loopback_bot_api() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "123456:TEST-token";
    let tg = FakeBotApi::start(TOKEN);
    let long = "word ".repeat(1200); // 6 000 characters: two Telegram messages
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello Ada!"),
        Reply::text("It is noon."),
        Reply::text(long.trim_end()),
        Reply::text("Rate limits survived."),
        Reply::text("Welcome back, I remember you."),
    ])
    .await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["111", "@carol"], "api_base": tg.api_base()}}),
    );

    let gw = Gateway::start_with(home.path(), &[], "info");
    // An allowed user in a private chat: answered, with a typing indicator first.
    tg.private_message(111, "ada", "hi");
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0], (111, "Hello Ada!".to_owned()));
    // The message was marked as read (👀) once it was kept.
    for _ in 0..1500 {
        if !tg.reactions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tg.reactions()[0].0, 111);
    assert_eq!(tg.reactions()[0].2, "👀");
    let ready: Value = client()
        .get(format!("{}/ready", gw.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["channels"]["telegram"], "running", "{ready}");
    assert!(
        tg.actions().contains(&(111, "typing".to_owned())),
        "{:?}",
        tg.actions()
    );
    // Someone not on the list: ignored, and the model is never asked.
    tg.private_message(222, "eve", "let me in");
    // In a group, only mentions (or replies to the bot) count.
    tg.group_message(-500, 111, "ada", "chatting among ourselves", false);
    tg.group_message(-500, 111, "ada", "@pico_test_bot what time is it?", false);
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (-500, "It is noon.".to_owned()));
    let asked: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| r.message_texts().last().unwrap().clone())
        .collect();
    assert_eq!(
        asked,
        ["hi", "what time is it?"],
        "eve and the unaddressed group line never reach the model"
    );

    // A long answer is split at Telegram's limit.
    tg.private_message(111, "ada", "tell me a lot");
    wait_sent(&tg, 4).await;
    let parts: Vec<(i64, String)> = tg.sent()[2..4].to_vec();
    assert!(
        parts.iter().all(|(_, t)| t.chars().count() <= 4096),
        "{parts:?}"
    );
    assert_eq!(
        parts
            .iter()
            .map(|(_, t)| t.split_whitespace().count())
            .sum::<usize>(),
        1200
    );
    // A 429 is waited out, not lost. Allowed by username too.
    tg.rate_limit_sends(1, 1);
    tg.private_message(333, "carol", "are you there?");
    wait_sent(&tg, 5).await;
    assert_eq!(tg.sent()[4], (333, "Rate limits survived.".to_owned()));

    // A restart answers nothing twice and keeps the conversation.
    let status = gw.terminate();
    assert!(status.success());
    let before = tg.sent().len();
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "I'm back");
    wait_sent(&tg, before + 1).await;
    // What the outbox still held would have gone out in the restarted gateway's first delivery
    // pass, before this answer existed; a message taken again would have asked the model.
    assert_eq!(
        tg.sent()[before..],
        [(111, "Welcome back, I remember you.".to_owned())],
        "nothing answered twice after the restart"
    );
    assert_eq!(endpoint.requests().len(), 5);
    let history = endpoint.requests().last().unwrap().message_texts();
    assert!(history.contains(&"hi".to_owned()), "{history:?}");
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_message_interrupted_by_sigterm_is_answered_once_after_the_restart() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "42:RESTART";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("never seen").delayed(Duration::from_secs(30)),
        Reply::text("Answered after the restart."),
        Reply::text("And the next one."),
    ])
    .await;
    let home = home_with(
        &endpoint,
        json!({"host": "127.0.0.1", "port": 0, "shutdown_grace_seconds": 1}),
    );
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN,
        "allow_from": ["111"], "api_base": tg.api_base()}}),
    );

    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "a question that takes long");
    for _ in 0..1500 {
        if !endpoint.requests().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(endpoint.requests().len(), 1, "the turn is running");
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(tg.sent().is_empty(), "nothing was answered before the stop");

    // After the restart the journaled message is answered — once.
    let gw = Gateway::start(home.path());
    wait_sent(&tg, 1).await;
    // The chat's next message is answered after anything the first one could still cause (a
    // session's messages are taken in order, and a chat's answers go out in order).
    tg.private_message(111, "ada", "and the next?");
    wait_sent(&tg, 2).await;
    assert_eq!(
        tg.sent(),
        [
            (111, "Answered after the restart.".to_owned()),
            (111, "And the next one.".to_owned())
        ]
    );
    assert_eq!(endpoint.requests().len(), 3);
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_telegram_token_fails_the_channel_once_and_ready_says_so() {
    use picoclaw_testkit::telegram::FakeBotApi;
    let tg = FakeBotApi::start("1:RIGHT");
    let endpoint = ScriptedEndpoint::start_with([]).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": "1:WRONG",
        "allow_from": ["1"], "api_base": tg.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    let mut ready = Value::Null;
    for _ in 0..1500 {
        ready = client()
            .get(format!("{}/ready", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["status"] == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready["status"], "degraded", "{ready}");
    let state = ready["channels"]["telegram"].as_str().unwrap();
    assert!(
        state.starts_with("failed:") && state.contains("token"),
        "{state}"
    );
    // Not retried in a loop: "failed" is set only once the channel's supervisor has given up
    // (a retry would show "restarting"), so nothing can poll after this.
    assert!(
        tg.offsets().is_empty(),
        "never polled with a rejected token"
    );
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_in_webhook_mode_then_back_to_polling() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "555:WEBHOOK-token";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Hello over the webhook."),
        Reply::text("Hello by polling."),
    ])
    .await;
    // Telegram needs the public URL before the gateway starts, so the port is chosen first.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": port}));
    let hook = format!("http://127.0.0.1:{port}/webhook/telegram");
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
            "api_base": tg.api_base(), "webhook_url": hook}}),
    );
    // Generous: a gateway starting on a loaded 2-core machine can take seconds.
    let wait = |what: &'static str, done: &dyn Fn() -> bool| {
        for _ in 0..1200 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}");
    };

    let gw = Gateway::start(home.path());
    wait("setWebhook", &|| tg.webhook().is_some());
    let (url, secret) = tg.webhook().unwrap();
    assert_eq!(url, hook);
    let secret = secret.expect("a secret token is always set");
    assert!(secret.len() >= 32, "{secret}");

    // Forged requests (no secret, a wrong one) are refused and reach nobody.
    let forged = json!({"update_id": 1, "message": {"message_id": 1, "date": 1_800_000_000,
        "chat": {"id": 111, "type": "private", "first_name": "ada"},
        "from": {"id": 111, "is_bot": false, "first_name": "ada"}, "text": "forged"}});
    for header in [None, Some("guess")] {
        let mut req = client().post(&hook).json(&forged);
        if let Some(h) = header {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
    }

    // A user's message comes in through the webhook and is answered.
    tg.private_message(111, "ada", "hi");
    wait("the webhook answer", &|| !tg.sent().is_empty());
    assert_eq!(tg.sent(), [(111, "Hello over the webhook.".to_owned())]);
    assert!(tg.offsets().is_empty(), "no polling in webhook mode");
    assert!(
        tg.webhook_failures().is_empty(),
        "{:?}",
        tg.webhook_failures()
    );
    let asked: Vec<String> = endpoint
        .requests()
        .iter()
        .map(|r| r.message_texts().last().unwrap().clone())
        .collect();
    assert_eq!(asked, ["hi"], "the forged messages never reached the model");
    // Stopped gracefully: killed, it could leave the answer sent but not acknowledged, and the
    // dead gateway's lease on it would hold the chat's next answer back for 30 s.
    assert!(gw.terminate().success());

    // Back to polling: the webhook is removed and messages arrive by getUpdates.
    set_channels(
        home.path(),
        json!({"telegram": {"enabled": true, "token": TOKEN, "allow_from": ["111"],
            "api_base": tg.api_base()}}),
    );
    let gw = Gateway::start(home.path());
    wait("deleteWebhook", &|| tg.webhook().is_none());
    tg.private_message(111, "ada", "and now?");
    wait("the polled answer", &|| tg.sent().len() == 2);
    assert_eq!(tg.sent()[1], (111, "Hello by polling.".to_owned()));
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn telegram_answers_are_formatted_with_a_plain_fallback() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "888:FORMAT";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("**Done**: see `notes.md` & <this>"),
        Reply::text("**Again**"),
        Reply::text("Third."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "status?");
    wait_sent(&tg, 1).await;
    assert_eq!(
        tg.sent()[0],
        (
            111,
            "<b>Done</b>: see <code>notes.md</code> &amp; &lt;this&gt;".to_owned()
        )
    );
    assert_eq!(tg.parse_modes()[0].as_deref(), Some("HTML"));
    // Telegram refuses the formatting: the same answer goes out as plain text, once.
    tg.reject_html(1);
    tg.private_message(111, "ada", "again?");
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (111, "**Again**".to_owned()));
    assert_eq!(tg.parse_modes()[1], None);
    // Once: the chat's next answer goes out only after that one is done with.
    tg.private_message(111, "ada", "and?");
    wait_sent(&tg, 3).await;
    assert_eq!(tg.sent()[2], (111, "Third.".to_owned()));
    assert_eq!(tg.sent().len(), 3, "{:?}", tg.sent());
    drop(gw);
}

/// An OpenAI-compatible `/audio/transcriptions` on loopback that "hears" a fixed sentence in any
/// upload containing `OggS`.
#[cfg(feature = "telegram")]
async fn stt_server() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/audio/transcriptions",
        post(|body: axum::body::Bytes| async move {
            if String::from_utf8_lossy(&body).contains("OggS") {
                axum::Json(json!({"text": "remind me to water the plants"}))
            } else {
                axum::Json(json!({"text": ""}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn a_telegram_voice_note_is_saved_transcribed_and_answered() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "999:VOICE";
    let tg = FakeBotApi::start(TOKEN);
    let stt = stt_server().await;
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("I will remind you to water the plants."),
        Reply::text("Got your recording."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let file = home.path().join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    config["stt"] = json!({"api_key": "stt-key", "api_base": stt});
    std::fs::write(&file, config.to_string()).unwrap();

    let gw = Gateway::start(home.path());
    tg.voice_message(111, "ada", b"OggS-fake-opus-bytes");
    wait_sent(&tg, 1).await;
    assert_eq!(
        tg.sent(),
        [(111, "I will remind you to water the plants.".to_owned())]
    );
    // The model got the transcript; the recording is in the workspace.
    let asked = endpoint.requests()[0]
        .message_texts()
        .last()
        .unwrap()
        .clone();
    assert_eq!(asked, "[voice note] remind me to water the plants");
    let saved = home.path().join("workspace/media/telegram/111");
    let files: Vec<_> = std::fs::read_dir(&saved).unwrap().collect();
    assert_eq!(files.len(), 1);
    let path = files[0].as_ref().unwrap().path();
    assert_eq!(std::fs::read(&path).unwrap(), b"OggS-fake-opus-bytes");
    // Stopped as a service manager stops it, so the answer is acknowledged in the outbox. A
    // kill here can land between Telegram taking the answer and the outbox acknowledging it:
    // the dead gateway's 30 s lease on that row then holds back every later answer to this
    // chat (the outbox keeps each chat's order) until it expires, and the row is sent again.
    assert!(gw.terminate().success());

    // Without speech to text, the agent is told where the recording is.
    config.as_object_mut().unwrap().remove("stt");
    std::fs::write(&file, config.to_string()).unwrap();
    let gw = Gateway::start(home.path());
    tg.voice_message(111, "ada", b"OggS-second");
    wait_sent(&tg, 2).await;
    // The answer to this note, not the first one sent again.
    assert_eq!(
        tg.sent(),
        [
            (111, "I will remind you to water the plants.".to_owned()),
            (111, "Got your recording.".to_owned())
        ]
    );
    let asked = endpoint.requests()[1]
        .message_texts()
        .last()
        .unwrap()
        .clone();
    assert!(
        asked.starts_with("[voice note saved at ") && asked.contains("stt.api_key"),
        "{asked}"
    );
    drop(gw);
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn with_nobody_allowed_the_owner_pairs_with_the_code_from_the_log() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "444:PAIR";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint =
        ScriptedEndpoint::start_with([Reply::text("Hello, owner."), Reply::text("Hello again.")])
            .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!([]));
    let gw = Gateway::start_with(home.path(), &[], "warn");
    let code = pairing_code(&gw).await;
    // Before pairing: ignored. A wrong code: refused. The right one: paired, then answered.
    tg.private_message(555, "zed", "hello?");
    tg.private_message(555, "zed", "/pair 000000x");
    wait_sent(&tg, 1).await;
    assert_eq!(tg.sent()[0].1, "That code is wrong or was already used.");
    tg.private_message(555, "zed", &format!("/pair {code}"));
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1].1, "Paired: you can talk to me now.");
    tg.private_message(555, "zed", "hi");
    wait_sent(&tg, 3).await;
    assert_eq!(tg.sent()[2], (555, "Hello, owner.".to_owned()));
    assert_eq!(
        endpoint.requests().len(),
        1,
        "only the paired message reached the model"
    );
    // The pairing outlives a restart, and it is kept outside the workspace.
    assert!(gw.terminate().success());
    assert!(home.path().join("channels/telegram-paired.json").is_file());
    let gw = Gateway::start_with(home.path(), &[], "info");
    tg.private_message(555, "zed", "still me");
    wait_sent(&tg, 4).await;
    assert_eq!(tg.sent()[3], (555, "Hello again.".to_owned()));
    // The channel decided who may pair before it took that message; once the gateway's last
    // line is read, so is any code it printed.
    let log = gw.log.clone();
    assert!(gw.terminate().success());
    wait_logged(&log, "gateway stopped").await;
    assert!(
        !log.lock().unwrap().iter().any(|l| l.contains("/pair ")),
        "no new code once someone is paired"
    );
}

/// Waits up to 30 s for a gateway log line containing `what`.
pub(crate) async fn wait_logged(log: &std::sync::Mutex<Vec<String>>, what: &str) {
    for _ in 0..1200 {
        if log.lock().unwrap().iter().any(|l| l.contains(what)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway never logged {what:?}");
}

/// The one-time pairing code the gateway logged (waiting up to 30 s for it).
#[cfg(any(feature = "telegram", feature = "slack"))]
pub(crate) async fn pairing_code(gw: &Gateway) -> String {
    for _ in 0..1200 {
        let code = gw
            .log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.split("/pair ").nth(1))
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            });
        if let Some(code) = code {
            assert_eq!(code.len(), 6);
            return code;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the pairing code was not logged");
}

/// Waits until the fake Bot API has received `n` messages from the bot.
#[cfg(feature = "telegram")]
pub(crate) async fn wait_sent(tg: &picoclaw_testkit::telegram::FakeBotApi, n: usize) {
    for _ in 0..1200 {
        if tg.sent().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} sent messages, got {:?}", tg.sent());
}

#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn buttons_go_out_as_an_inline_keyboard_and_presses_come_back() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "321:BUTTONS";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::tool_call(
            "message",
            json!({"content": "Water the plants now?", "buttons": ["Yes", "Later"]}),
        ),
        Reply::text("I asked."),
        Reply::text("Watering now."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    let gw = Gateway::start(home.path());
    tg.private_message(111, "ada", "ask me about the plants");
    wait_sent(&tg, 2).await;
    let sent = tg.sent();
    let asked = sent
        .iter()
        .position(|(_, t)| t == "Water the plants now?")
        .expect("the question was sent");
    let keyboard = &tg.markups()[asked]["inline_keyboard"];
    assert_eq!(keyboard[0][0]["text"], "Yes", "{keyboard}");
    assert_eq!(keyboard[0][0]["callback_data"], "Yes");
    assert_eq!(keyboard[0][1]["text"], "Later");
    // Pressing "Yes" is a message from the user; the spinner is stopped.
    tg.press_button(111, "ada", "Yes");
    wait_sent(&tg, 3).await;
    assert_eq!(tg.sent()[2], (111, "Watering now.".to_owned()));
    let last = endpoint.requests().last().unwrap().message_texts();
    assert_eq!(last.last().unwrap(), "Yes");
    for _ in 0..1500 {
        if !tg.answered().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tg.answered().len(), 1);
    drop(gw);
}

/// exec (or anything on the machine) holding the key still cannot read or write a channel's
/// conversation through the API: `telegram:<chat>` as a session key lands in `api:telegram:<chat>`.
#[cfg(feature = "telegram")]
#[tokio::test(flavor = "multi_thread")]
async fn an_api_session_key_cannot_reach_a_channel_conversation() {
    use picoclaw_testkit::telegram::FakeBotApi;
    const TOKEN: &str = "424242:SESSIONS";
    let tg = FakeBotApi::start(TOKEN);
    let endpoint = ScriptedEndpoint::start_with([
        Reply::text("Noted, the code is 1234."),
        Reply::text("I know nothing of that."),
        Reply::text("Still nothing."),
        Reply::text("Your code is 1234."),
    ])
    .await;
    let home = telegram_home(&endpoint, &tg, TOKEN, json!(["111"]));
    edit_config(home.path(), |config| {
        config["gateway"]["api_key"] = json!(KEY)
    });
    let gw = Gateway::start(home.path());
    let key = KEY;
    tg.private_message(111, "ada", "remember my door code 1234");
    wait_sent(&tg, 1).await;

    let c = client();
    let ask = |session: Option<&'static str>, user: Option<&'static str>, text: &'static str| {
        let mut body = json!({"messages": [{"role": "user", "content": text}]});
        if let Some(user) = user {
            body["user"] = json!(user);
        }
        let mut req = c
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(key)
            .json(&body);
        if let Some(session) = session {
            req = req.header("X-Session-Key", session);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Reading: the channel's history is not sent to the model for these requests.
    assert_eq!(
        ask(Some("telegram:111"), None, "what is my door code?").await,
        200
    );
    assert_eq!(
        ask(None, Some("telegram:111"), "and now? (user)").await,
        200
    );
    for request in &endpoint.requests()[1..3] {
        let texts = request.message_texts();
        assert!(
            !texts.iter().any(|t| t.contains("1234")),
            "the Telegram conversation leaked into an API turn: {texts:?}"
        );
    }
    // Both landed in the same API session (the second request saw the first).
    let second = endpoint.requests()[2].message_texts();
    assert!(
        second.contains(&"what is my door code?".to_owned()),
        "{second:?}"
    );

    // Writing: the Telegram conversation goes on without anything the API said.
    tg.private_message(111, "ada", "what was my code?");
    wait_sent(&tg, 2).await;
    assert_eq!(tg.sent()[1], (111, "Your code is 1234.".to_owned()));
    let texts = endpoint.requests()[3].message_texts();
    assert!(
        texts.contains(&"remember my door code 1234".to_owned()),
        "{texts:?}"
    );
    assert!(
        !texts
            .iter()
            .any(|t| t.contains("what is my door code?") || t.contains("I know nothing")),
        "an API turn was written into the Telegram conversation: {texts:?}"
    );
    drop(gw);
}
