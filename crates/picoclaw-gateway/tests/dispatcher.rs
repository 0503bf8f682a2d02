//! The dispatcher under load and across a restart, with an in-process fake channel and a model
//! that echoes what it was asked (with a little jitter, so sessions interleave).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_api::{InboundMessage, OutboundMessage};
use picoclaw_core::{
    Agent, ChatMessage, ChatRequest, ChatResponse, FinishReason, LlmProvider, ProviderError,
};
use picoclaw_gateway::{
    Accepted, Deliverer, DeliveryError, Dispatcher, DispatcherConfig, OutboundSink,
};
use picoclaw_state::{InMemoryStore, SqliteStore, StateBackend};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Answers "echo: <the last user message>", after 0–3 ms.
struct Echo {
    calls: AtomicUsize,
    /// How many turns of one session run at once, at most (must stay 1).
    in_flight: Mutex<HashMap<String, usize>>,
    overlap: AtomicUsize,
}

#[async_trait]
impl LlmProvider for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let last = req
            .messages
            .last()
            .map(ChatMessage::text)
            .unwrap_or_default();
        let session = last.split('#').next().unwrap_or_default().to_owned();
        {
            let mut f = self.in_flight.lock().unwrap();
            let e = f.entry(session.clone()).or_default();
            *e += 1;
            if *e > 1 {
                self.overlap.fetch_add(1, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(Duration::from_micros((n % 4) as u64 * 700)).await;
        *self.in_flight.lock().unwrap().get_mut(&session).unwrap() -= 1;
        Ok(ChatResponse::new(
            ChatMessage::assistant(format!("echo: {last}")),
            FinishReason::Stop,
        ))
    }
}

/// A channel that records what it was asked to send.
#[derive(Default)]
struct FakeChannel {
    sent: Mutex<Vec<OutboundMessage>>,
    fail_first: AtomicUsize,
    /// Refuses every message for good (a chat the bot was removed from).
    reject: std::sync::atomic::AtomicBool,
    attempts: AtomicUsize,
}

#[async_trait]
impl OutboundSink for FakeChannel {
    async fn send(&self, msg: &OutboundMessage) -> Result<(), DeliveryError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.reject.load(Ordering::SeqCst) {
            return Err(DeliveryError::Rejected("400: chat not found".into()));
        }
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err(DeliveryError::Failed("503 from the platform".into()));
        }
        self.sent.lock().unwrap().push(msg.clone());
        Ok(())
    }
}

fn echo_agent(store: Arc<dyn StateBackend>) -> (Agent, Arc<Echo>) {
    let echo = Arc::new(Echo {
        calls: AtomicUsize::new(0),
        in_flight: Mutex::new(HashMap::new()),
        overlap: AtomicUsize::new(0),
    });
    let agent = Agent::builder(echo.clone())
        .model("echo")
        .streaming(false)
        .session_store(store)
        .build()
        .unwrap();
    (agent, echo)
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_messages_in_a_hundred_sessions_are_each_answered_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StateBackend> =
        Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
    let (agent, echo) = echo_agent(store.clone());
    let config = DispatcherConfig::default()
        .max_concurrent_turns(16)
        .session_queue(4)
        .idle_timeout(Duration::from_millis(50));
    let dispatcher = Dispatcher::new(agent, store.clone(), config);
    let channel = Arc::new(FakeChannel::default());
    channel.fail_first.store(3, Ordering::SeqCst); // a few delivery failures, retried
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw-test").run(stop.clone()));

    // 100 chats, each sending 10 messages in order, all chats at once.
    let mut senders = Vec::new();
    for chat in 0..100 {
        let d = dispatcher.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..10 {
                let msg =
                    InboundMessage::new("fake", format!("c{chat}"), "user", format!("c{chat}#{i}"))
                        .with_metadata("message_id", i.to_string());
                assert!(matches!(d.accept(msg).await.unwrap(), Accepted::Queued(_)));
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    // A platform redelivering a message: recognised.
    let again = InboundMessage::new("fake", "c7", "user", "c7#3").with_metadata("message_id", "3");
    assert_eq!(dispatcher.accept(again).await.unwrap(), Accepted::Duplicate);

    wait_for("1 000 answers", || {
        channel.sent.lock().unwrap().len() >= 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sent = channel.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1000, "each message answered exactly once");
    let mut per_chat: HashMap<String, Vec<String>> = HashMap::new();
    for m in &sent {
        per_chat
            .entry(m.chat_id.clone())
            .or_default()
            .push(m.content.clone());
    }
    for chat in 0..100 {
        let expected: Vec<String> = (0..10).map(|i| format!("echo: c{chat}#{i}")).collect();
        assert_eq!(
            per_chat[&format!("c{chat}")],
            expected,
            "order of chat c{chat}"
        );
    }
    assert_eq!(
        echo.overlap.load(Ordering::SeqCst),
        0,
        "a session ran two turns at once"
    );
    assert_eq!(echo.calls.load(Ordering::SeqCst), 1000);
    // Replies thread under the message they answer.
    assert!(sent.iter().all(|m| m.reply_to.is_some()));
    // Idle sessions let their workers go.
    wait_for("idle workers to stop", || dispatcher.active_sessions() == 0).await;
    assert!(store.unprocessed(10).await.unwrap().is_empty());
    stop.cancel();
    deliverer.await.unwrap();
}

/// A message the platform refuses for good is tried once, not six times (issue 18: the
/// rejection used to be flattened to a string and retried with backoff).
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_message_is_tried_once() {
    let store: Arc<dyn StateBackend> = Arc::new(InMemoryStore::new());
    let (agent, _) = echo_agent(store.clone());
    let dispatcher = Dispatcher::new(agent, store.clone(), DispatcherConfig::default());
    let channel = Arc::new(FakeChannel::default());
    channel.reject.store(true, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw").run(stop.clone()));
    dispatcher
        .accept(
            InboundMessage::new("telegram", "42", "u", "hello").with_metadata("message_id", "1"),
        )
        .await
        .unwrap();
    wait_for("the first attempt", || {
        channel.attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    // A retryable failure would be tried again after 1 s, then 2 s.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(channel.attempts.load(Ordering::SeqCst), 1);
    // A failure worth retrying still is.
    channel.reject.store(false, Ordering::SeqCst);
    channel.fail_first.store(1, Ordering::SeqCst);
    dispatcher
        .accept(
            InboundMessage::new("telegram", "42", "u", "again").with_metadata("message_id", "2"),
        )
        .await
        .unwrap();
    wait_for("the retried message", || {
        channel
            .sent
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.content == "echo: again")
    })
    .await;
    stop.cancel();
    deliverer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_work_from_any_channel() {
    let store: Arc<dyn StateBackend> = Arc::new(InMemoryStore::new());
    let (agent, _) = echo_agent(store.clone());
    let dispatcher = Dispatcher::new(agent, store.clone(), DispatcherConfig::default());
    let channel = Arc::new(FakeChannel::default());
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw").run(stop.clone()));
    let send = |text: &str, id: &str| {
        InboundMessage::new("slack", "C1", "u", text).with_metadata("message_id", id)
    };
    dispatcher.accept(send("first#1", "1")).await.unwrap();
    dispatcher.accept(send("/help", "2")).await.unwrap();
    assert_eq!(
        dispatcher.accept(send("/stop", "3")).await.unwrap(),
        Accepted::Handled
    );
    dispatcher.accept(send("/new", "4")).await.unwrap();
    // /stop may catch the first turn running (then that turn says nothing) or not.
    let texts = || -> Vec<String> {
        channel
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.content.clone())
            .collect()
    };
    wait_for("the command answers", || {
        let t = texts();
        t.iter().any(|t| t.starts_with("Commands: /new"))
            && t.iter().any(|t| t == "Started a new conversation.")
            && t.iter()
                .any(|t| t == "Nothing is running." || t == "Stopped.")
    })
    .await;
    let t = texts();
    let stopped = t.iter().any(|t| t == "Stopped.");
    assert_eq!(t.iter().any(|t| t == "echo: first#1"), !stopped, "{t:?}");
    // /new cleared the history.
    let session = store
        .load(&picoclaw_core::SessionKey::new("slack:C1"), None)
        .await
        .unwrap();
    assert!(session.messages.is_empty());
    stop.cancel();
    deliverer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_journaled_before_a_crash_is_answered_after_the_restart_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    // "Before the crash": messages journaled, nothing processed (no worker got to them).
    {
        let store = SqliteStore::open(&path).await.unwrap();
        for i in 0..3 {
            let msg = InboundMessage::new("fake", "c1", "u", format!("c1#{i}"))
                .with_metadata("message_id", i.to_string());
            let payload = serde_json::to_string(&msg).unwrap();
            picoclaw_state::InboundJournal::journal_inbound(
                &store,
                "fake",
                &format!("c1:{i}"),
                "fake:c1",
                &payload,
                i,
            )
            .await
            .unwrap();
        }
        store.close().await;
    }
    // After the restart.
    let store: Arc<dyn StateBackend> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (agent, echo) = echo_agent(store.clone());
    let dispatcher = Dispatcher::new(agent, store.clone(), DispatcherConfig::default());
    assert_eq!(dispatcher.recover().await.unwrap(), 3);
    let channel = Arc::new(FakeChannel::default());
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw").run(stop.clone()));
    wait_for("three answers", || channel.sent.lock().unwrap().len() >= 3).await;
    // A second recovery finds nothing left: nothing is answered twice.
    assert_eq!(dispatcher.recover().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let texts: Vec<String> = channel
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.content.clone())
        .collect();
    assert_eq!(texts, ["echo: c1#0", "echo: c1#1", "echo: c1#2"]);
    assert_eq!(echo.calls.load(Ordering::SeqCst), 3);
    stop.cancel();
    deliverer.await.unwrap();
}

/// Counts the images in each request; refuses them (400) when asked to.
struct Looker {
    images_seen: Mutex<Vec<usize>>,
    texts_seen: Mutex<Vec<String>>,
    refuse_images: bool,
}

#[async_trait]
impl LlmProvider for Looker {
    fn name(&self) -> &str {
        "looker"
    }
    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let images = req
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|p| matches!(p, picoclaw_core::ContentPart::Image { .. }))
            .count();
        self.images_seen.lock().unwrap().push(images);
        let texts: Vec<String> = req.messages.iter().map(ChatMessage::text).collect();
        self.texts_seen.lock().unwrap().push(texts.join("\n"));
        if self.refuse_images && images > 0 {
            return Err(ProviderError::InvalidRequest {
                provider: "looker".into(),
                status: 400,
                message: "this model does not take image input".into(),
            });
        }
        Ok(ChatResponse::new(
            ChatMessage::assistant(format!("I see {images} image(s)")),
            FinishReason::Stop,
        ))
    }
}

async fn photo_turns(refuse_images: bool) -> (Vec<String>, Vec<usize>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.png");
    std::fs::write(&photo, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let looker = Arc::new(Looker {
        images_seen: Mutex::new(Vec::new()),
        texts_seen: Mutex::new(Vec::new()),
        refuse_images,
    });
    let store: Arc<dyn StateBackend> = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(looker.clone())
        .model("looker")
        .streaming(false)
        .session_store(store.clone())
        .build()
        .unwrap();
    let dispatcher = Dispatcher::new(agent, store, DispatcherConfig::default());
    let channel = Arc::new(FakeChannel::default());
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw").run(stop.clone()));
    let with_photo = InboundMessage::new("telegram", "42", "7", "what is this?")
        .with_metadata("message_id", "1")
        .with_media(picoclaw_api::MediaRef::new(
            picoclaw_api::MediaKind::Image,
            photo.display().to_string(),
        ));
    dispatcher.accept(with_photo).await.unwrap();
    let later =
        InboundMessage::new("telegram", "42", "7", "and now?").with_metadata("message_id", "2");
    dispatcher.accept(later).await.unwrap();
    wait_for("both answers", || channel.sent.lock().unwrap().len() == 2).await;
    stop.cancel();
    deliverer.await.unwrap();
    let answers = channel
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.content.clone())
        .collect();
    let images = looker.images_seen.lock().unwrap().clone();
    let texts = looker.texts_seen.lock().unwrap().clone();
    (answers, images, texts)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_is_shown_to_the_model_once_and_remembered_as_a_path() {
    let (answers, images, texts) = photo_turns(false).await;
    assert_eq!(answers, ["I see 1 image(s)", "I see 0 image(s)"]);
    // The pixels went with the first turn only; the history says where the photo is.
    assert_eq!(images, [1, 0]);
    assert!(texts[1].contains("[photo saved at "), "{}", texts[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_refuses_images_still_answers_the_photo_message() {
    let (answers, images, _) = photo_turns(true).await;
    assert_eq!(answers, ["I see 0 image(s)", "I see 0 image(s)"]);
    assert_eq!(
        images,
        [1, 0, 0],
        "one refused call, then the turn without the image"
    );
}

/// Takes 10 s (of the test's paused clock) to answer.
struct Slow;

#[async_trait]
impl LlmProvider for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    async fn chat(&self, _req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(ChatResponse::new(
            ChatMessage::assistant("done thinking"),
            FinishReason::Stop,
        ))
    }
}

/// Records typing indicators (and sends).
#[derive(Default)]
struct TypingRecorder {
    typing: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl OutboundSink for TypingRecorder {
    async fn send(&self, _msg: &OutboundMessage) -> Result<(), DeliveryError> {
        Ok(())
    }
    async fn typing(&self, channel: &str, chat_id: &str) {
        self.typing
            .lock()
            .unwrap()
            .push((channel.to_owned(), chat_id.to_owned()));
    }
}

#[tokio::test(start_paused = true)]
async fn typing_is_shown_every_few_seconds_while_a_turn_runs_and_stops_after() {
    let store: Arc<dyn StateBackend> = Arc::new(InMemoryStore::new());
    let agent = Agent::builder(Arc::new(Slow))
        .model("slow")
        .streaming(false)
        .session_store(store.clone())
        .build()
        .unwrap();
    let recorder = Arc::new(TypingRecorder::default());
    let dispatcher = Dispatcher::new(
        agent,
        store,
        DispatcherConfig::default().typing_to(recorder.clone()),
    );
    let channel = Arc::new(FakeChannel::default());
    let stop = CancellationToken::new();
    let deliverer =
        tokio::spawn(Deliverer::new(&dispatcher, channel.clone(), "gw").run(stop.clone()));
    let msg = InboundMessage::new("discord", "123", "7", "think").with_metadata("message_id", "1");
    dispatcher.accept(msg).await.unwrap();
    // The clock only moves when everything waits: 10 s of turn, then a while after it.
    while channel.sent.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = recorder.typing.lock().unwrap().len();
    assert_eq!(during, 2, "at 4 s and 8 s of a 10 s turn");
    assert_eq!(
        recorder.typing.lock().unwrap()[0],
        ("discord".to_owned(), "123".to_owned())
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        recorder.typing.lock().unwrap().len(),
        during,
        "stopped with the turn"
    );
    stop.cancel();
    deliverer.await.unwrap();
}
