//! Holding a conversation for its turns: two agents standing for two instances that share one
//! state (sessions and leases) never run turns of one conversation at once, each turn sees the
//! one before it, a dropped turn gives its lease back, an instance that died (its lease not
//! renewed) is waited out, and the turn permits bound how many turns run at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use async_trait::async_trait;
use picoclaw_core::*;
use picoclaw_state::{InMemoryStore, LeaseStore, SessionStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A model that takes `delay` per answer, counts the calls in flight (most at once), and
/// answers with how many messages it was shown: a turn that saw the turn before it answers
/// with a larger number.
struct Slow {
    delay: Duration,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl Slow {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            delay,
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl LlmProvider for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn chat(&self, req: ChatRequest) -> Result<ChatResponse, ProviderError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let users = req.messages.iter().filter(|m| m.role == Role::User).count();
        Ok(ChatResponse::new(
            ChatMessage::assistant(format!("seen {users}")),
            FinishReason::Stop,
        ))
    }
}

/// An agent for "instance" `owner` over the shared `store`.
fn instance(provider: Arc<Slow>, store: &Arc<InMemoryStore>, owner: &str) -> Agent {
    Agent::builder(provider)
        .model("m")
        .streaming(false)
        .session_store(store.clone())
        .session_leases(SessionLeases::new(store.clone(), owner).ttl(Duration::from_secs(2)))
        .build()
        .unwrap()
}

#[tokio::test]
async fn two_instances_never_run_one_conversation_at_once_and_keep_its_order() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_millis(20));
    let a = instance(model.clone(), &store, "a");
    let b = instance(model.clone(), &store, "b");
    let key = SessionKey::new("api:shared");
    // Twelve turns of one conversation, sent to the two instances at once.
    let mut turns = Vec::new();
    for i in 0..12 {
        let agent = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        turns.push(tokio::spawn(async move {
            agent
                .chat(&key, &format!("message {i}"))
                .await
                .unwrap()
                .text
        }));
    }
    let mut answers = Vec::new();
    for t in turns {
        answers.push(t.await.unwrap());
    }
    assert_eq!(
        model.most.load(Ordering::SeqCst),
        1,
        "two turns of one conversation ran at once"
    );
    // Each turn saw every turn before it: the answers count 1, 2, ... 12 user messages.
    answers.sort_by_key(|a| a["seen ".len()..].parse::<usize>().unwrap());
    let expected: Vec<String> = (1..=12).map(|n| format!("seen {n}")).collect();
    assert_eq!(answers, expected);
    let stored = store.load(&key, None).await.unwrap();
    assert_eq!(stored.messages.len(), 24, "every turn stored whole");
    // Released at the end: either instance takes the lease at once.
    assert!(
        store
            .try_lease("session:api:shared", "c", picoclaw_state::now_ms(), 1000)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn different_conversations_run_in_parallel_across_instances() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_millis(100));
    let a = instance(model.clone(), &store, "a");
    let b = instance(model.clone(), &store, "b");
    let (one, two) = (SessionKey::new("one"), SessionKey::new("two"));
    let (x, y) = tokio::join!(a.chat(&one, "hi"), b.chat(&two, "hi"));
    x.unwrap();
    y.unwrap();
    assert_eq!(model.most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_lease_left_by_a_dead_instance_is_waited_out() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_millis(1));
    let b = instance(model.clone(), &store, "b");
    // "a" took the lease and died: nobody renews it; it lasts 1.5 s.
    let now = picoclaw_state::now_ms();
    assert!(
        store
            .try_lease("session:telegram:7", "a", now, 1500)
            .await
            .unwrap()
    );
    let started = std::time::Instant::now();
    let out = b.chat(&SessionKey::new("telegram:7"), "hi").await.unwrap();
    assert_eq!(out.text, "seen 1");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the turn ran while another instance held the conversation ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_turn_dropped_mid_way_gives_its_lease_back() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_secs(30));
    let a = instance(model.clone(), &store, "a");
    let key = SessionKey::new("api:dropped");
    let turn = a.chat(&key, "hi");
    // Dropped (a client gone, a timeout) while the model is answering.
    let _ = tokio::time::timeout(Duration::from_millis(200), turn).await;
    let mut free = false;
    for _ in 0..100 {
        if store
            .try_lease(
                "session:api:dropped",
                "other",
                picoclaw_state::now_ms(),
                1000,
            )
            .await
            .unwrap()
        {
            free = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(free, "the dropped turn kept the conversation's lease");
}

#[tokio::test]
async fn a_long_turn_keeps_its_lease_renewed() {
    let store = Arc::new(InMemoryStore::new());
    // The turn lasts 3 s, twice the 1.5 s lease: renewal keeps the other out.
    let model = Slow::new(Duration::from_millis(3000));
    let a = Agent::builder(model.clone())
        .model("m")
        .streaming(false)
        .session_store(store.clone())
        .session_leases(SessionLeases::new(store.clone(), "a").ttl(Duration::from_millis(1500)))
        .build()
        .unwrap();
    let key = SessionKey::new("api:long");
    let turn = tokio::spawn({
        let a = a.clone();
        let key = key.clone();
        async move { a.chat(&key, "hi").await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..25 {
        assert!(
            !store
                .try_lease("session:api:long", "b", picoclaw_state::now_ms(), 1000)
                .await
                .unwrap(),
            "another instance took the lease of a running turn"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    turn.await.unwrap();
}

#[tokio::test]
async fn turn_permits_bound_the_turns_running_at_once() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_millis(30));
    let permits = Arc::new(tokio::sync::Semaphore::new(3));
    let agent = Agent::builder(model.clone())
        .model("m")
        .streaming(false)
        .session_store(store.clone())
        .turn_permits(permits)
        .build()
        .unwrap();
    let turns: Vec<_> = (0..12)
        .map(|i| {
            let agent = agent.clone();
            tokio::spawn(async move {
                agent
                    .chat(&SessionKey::new(format!("c{i}")), "hi")
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in turns {
        t.await.unwrap();
    }
    assert_eq!(
        model.most.load(Ordering::SeqCst),
        3,
        "more turns than permits ran at once (or fewer: the bound was not reached)"
    );
}

#[tokio::test]
async fn a_held_session_runs_turns_under_the_callers_hold() {
    let store = Arc::new(InMemoryStore::new());
    let model = Slow::new(Duration::from_millis(1));
    let a = instance(model.clone(), &store, "a");
    let b = instance(model.clone(), &store, "b");
    let key = SessionKey::new("telegram:9");
    let guard = a.hold_session(&key).await.unwrap();
    // The other instance waits while the hold lasts, even between turns.
    let waiting = tokio::spawn({
        let b = b.clone();
        let key = key.clone();
        async move { b.chat(&key, "from b").await.unwrap().text }
    });
    let first = a
        .turn_held(&guard, ChatMessage::user("one"), TurnOptions::new(), &())
        .await
        .unwrap();
    assert_eq!(first.text, "seen 1");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "b ran a turn while a held the conversation"
    );
    // Another agent's hold is refused.
    assert!(matches!(
        b.turn_held(&guard, ChatMessage::user("x"), TurnOptions::new(), &())
            .await,
        Err(AgentError::Setup(_))
    ));
    guard.release().await;
    assert_eq!(waiting.await.unwrap(), "seen 2");
}
