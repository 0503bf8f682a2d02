//! Conformance checks for the runtime stores: [`runtime_suite`] (cron, key/value, inbound
//! journal, outbox, leases) and the races between two instances on one store
//! ([`claims_are_exclusive`], [`session_leases_serialize`]).

use super::cron::cron_jobs;
use picoclaw_api::{ChatMessage, SessionKey};

/// The behaviour of the runtime stores (cron, key/value, journal, outbox, leases); `store` must
/// start empty.
pub async fn runtime_suite<S>(store: &S)
where
    S: crate::CronStore
        + crate::KvStore
        + crate::InboundJournal
        + crate::Outbox
        + crate::LeaseStore,
{
    cron_jobs(store).await;
    key_values(store).await;
    journal(store).await;
    outbox(store).await;
    leases(store).await;
    finishing(store).await;
}

async fn finishing<S: crate::InboundJournal + crate::Outbox>(store: &S) {
    let t = 9_000_000i64;
    // Drain what earlier checks left so the outbox holds only this check's answer.
    while !store
        .claim_outbound("drain", t, 1, 100)
        .await
        .unwrap()
        .is_empty()
    {}
    let id = store
        .journal_inbound("telegram", "fin-1", "telegram:5", "{\"text\":\"ping\"}", t)
        .await
        .unwrap()
        .unwrap();
    let out = store
        .finish_inbound(id, "telegram", "5", "{\"text\":\"pong\"}", t)
        .await
        .unwrap();
    assert!(
        store
            .unprocessed(100)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != id)
    );
    let claimed = store.claim_outbound("gw", t, 1000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].id, out);
    assert_eq!(
        (claimed[0].channel.as_str(), claimed[0].chat_id.as_str()),
        ("telegram", "5")
    );
    assert_eq!(claimed[0].payload, "{\"text\":\"pong\"}");
}

async fn key_values(store: &impl crate::KvStore) {
    assert_eq!(store.kv_get("telegram", "offset").await.unwrap(), None);
    store.kv_put("telegram", "offset", "100").await.unwrap();
    store.kv_put("telegram", "offset", "101").await.unwrap();
    store.kv_put("telegram", "bot", "pico").await.unwrap();
    store.kv_put("slack", "offset", "x").await.unwrap();
    assert_eq!(
        store.kv_get("telegram", "offset").await.unwrap().as_deref(),
        Some("101")
    );
    assert_eq!(
        store.kv_list("telegram").await.unwrap(),
        [
            ("bot".to_owned(), "pico".to_owned()),
            ("offset".to_owned(), "101".to_owned())
        ]
    );
    assert!(store.kv_delete("telegram", "bot").await.unwrap());
    assert!(!store.kv_delete("telegram", "bot").await.unwrap());
    assert_eq!(store.kv_list("telegram").await.unwrap().len(), 1);
    assert_eq!(
        store.kv_get("slack", "offset").await.unwrap().as_deref(),
        Some("x")
    );
}

async fn journal(store: &impl crate::InboundJournal) {
    let a = store
        .journal_inbound(
            "telegram",
            "update-1",
            "telegram:42",
            "{\"text\":\"hi\"}",
            1000,
        )
        .await
        .unwrap()
        .expect("first delivery is journaled");
    // A redelivery of the same update is recognised; another channel's same id is not.
    assert_eq!(
        store
            .journal_inbound("telegram", "update-1", "telegram:42", "{}", 1001)
            .await
            .unwrap(),
        None
    );
    let b = store
        .journal_inbound("slack", "update-1", "slack:C1", "{}", 1002)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(a, b);
    let pending = store.unprocessed(10).await.unwrap();
    assert_eq!(pending.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
    assert_eq!(pending[0].payload, "{\"text\":\"hi\"}");
    assert_eq!(pending[0].session_key, "telegram:42");
    assert_eq!(pending[0].received_at_ms, 1000);
    assert!(store.is_unprocessed(a).await.unwrap());
    store.mark_processed(a).await.unwrap();
    assert!(!store.is_unprocessed(a).await.unwrap());
    assert!(store.is_unprocessed(b).await.unwrap());
    assert!(
        !store.is_unprocessed(b + 1000).await.unwrap(),
        "an unknown id is not pending"
    );
    let pending = store.unprocessed(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, b);
    // Pruning forgets processed messages only.
    assert_eq!(store.prune_inbound(5000).await.unwrap(), 1);
    assert_eq!(store.unprocessed(10).await.unwrap().len(), 1);
    store.mark_processed(b).await.unwrap();
}

async fn outbox(store: &impl crate::Outbox) {
    let t = 2_000_000i64;
    let first = store
        .enqueue_outbound("telegram", "42", "{\"text\":\"one\"}", t)
        .await
        .unwrap();
    let second = store
        .enqueue_outbound("telegram", "43", "{\"text\":\"two\"}", t)
        .await
        .unwrap();
    // An instance without the channel claims nothing of it.
    let elsewhere = ["slack".to_owned(), "discord".to_owned()];
    assert!(
        store
            .claim_outbound_on("gw-c", t, 30_000, 10, &elsewhere)
            .await
            .unwrap()
            .is_empty()
    );
    // One claimer gets them, in order; while leased nobody else does.
    let got = store
        .claim_outbound_on("gw-a", t, 30_000, 10, &["telegram".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(got[0].attempts, 1);
    assert_eq!(got[0].payload, "{\"text\":\"one\"}");
    assert!(
        store
            .claim_outbound("gw-b", t + 1, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A restarted single instance ends every lease: held messages are claimable at once.
    assert_eq!(store.release_outbound_leases().await.unwrap(), 2);
    let again = store.claim_outbound("gw-a", t, 30_000, 10).await.unwrap();
    assert_eq!(again.len(), 2);
    assert_eq!(again[0].attempts, 2);
    // Delivered: gone. Acknowledging what one no longer holds says so.
    assert!(store.ack_outbound(first, "gw-a").await.unwrap());
    assert!(!store.ack_outbound(first, "gw-a").await.unwrap());
    // A lease that runs out is handed to someone else, and the late owner cannot ack it.
    let retaken = store
        .claim_outbound("gw-b", t + 30_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].id, second);
    assert_eq!(retaken[0].attempts, 3);
    assert!(!store.ack_outbound(second, "gw-a").await.unwrap());
    // Failure with a retry time: due again then, with the error kept.
    store
        .fail_outbound(second, "gw-b", "429 Too Many Requests", Some(t + 90_000))
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-a", t + 60_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store
        .claim_outbound("gw-a", t + 90_000, 30_000, 10)
        .await
        .unwrap();
    assert_eq!(
        again[0].last_error.as_deref(),
        Some("429 Too Many Requests")
    );
    // Giving up: dead, never handed out again, listed for inspection.
    store
        .fail_outbound(second, "gw-a", "chat not found", None)
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-a", t + 10_000_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let dead = store.dead_outbound(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error.as_deref(), Some("chat not found"));
    // The limit holds.
    for i in 0..5 {
        store
            .enqueue_outbound("cli", &format!("x{i}"), &i.to_string(), t)
            .await
            .unwrap();
    }
    let first_three = store.claim_outbound("gw-a", t, 1000, 3).await.unwrap();
    let last_two = store.claim_outbound("gw-b", t, 1000, 3).await.unwrap();
    assert_eq!((first_three.len(), last_two.len()), (3, 2));
    for r in &first_three {
        assert!(store.ack_outbound(r.id, "gw-a").await.unwrap());
    }
    for r in &last_two {
        assert!(store.ack_outbound(r.id, "gw-b").await.unwrap());
    }

    // One chat's messages go out in order: a message waits while an older one to the same chat
    // is undelivered (leased or waiting for a retry), whoever claims.
    let t = t + 100_000_000;
    let a = store.enqueue_outbound("slack", "C9", "a", t).await.unwrap();
    let b = store.enqueue_outbound("slack", "C9", "b", t).await.unwrap();
    let other = store
        .enqueue_outbound("slack", "C10", "c", t)
        .await
        .unwrap();
    let ids = |v: Vec<crate::OutboundRecord>| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let got = ids(store.claim_outbound("gw-a", t, 1000, 10).await.unwrap());
    assert_eq!(got, [a, other], "b waits behind a");
    assert!(store.ack_outbound(other, "gw-a").await.unwrap());
    store
        .fail_outbound(a, "gw-a", "503", Some(t + 5_000))
        .await
        .unwrap();
    assert!(
        store
            .claim_outbound("gw-b", t + 10, 1000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let got = ids(store
        .claim_outbound("gw-b", t + 5_000, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [a]);
    assert!(store.ack_outbound(a, "gw-b").await.unwrap());
    let got = ids(store
        .claim_outbound("gw-b", t + 5_001, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [b]);
    // A dead message no longer holds its chat up.
    store.fail_outbound(b, "gw-b", "gone", None).await.unwrap();
    let next = store.enqueue_outbound("slack", "C9", "d", t).await.unwrap();
    let got = ids(store
        .claim_outbound("gw-b", t + 6_000, 1000, 10)
        .await
        .unwrap());
    assert_eq!(got, [next]);
}

async fn leases(store: &impl crate::LeaseStore) {
    let s = "session:telegram:42";
    assert!(store.try_lease(s, "gw-a", 1000, 10_000).await.unwrap());
    // Held: others are refused, the owner renews.
    assert!(!store.try_lease(s, "gw-b", 2000, 10_000).await.unwrap());
    assert!(store.try_lease(s, "gw-a", 5000, 10_000).await.unwrap());
    assert!(!store.try_lease(s, "gw-b", 14_999, 10_000).await.unwrap());
    // Expired (the owner died): taken over.
    assert!(store.try_lease(s, "gw-b", 15_000, 10_000).await.unwrap());
    assert!(!store.try_lease(s, "gw-a", 16_000, 10_000).await.unwrap());
    // Only the owner's release counts.
    store.release_lease(s, "gw-a").await.unwrap();
    assert!(!store.try_lease(s, "gw-a", 17_000, 10_000).await.unwrap());
    store.release_lease(s, "gw-b").await.unwrap();
    assert!(store.try_lease(s, "gw-a", 17_000, 10_000).await.unwrap());
    // Names are independent.
    assert!(
        store
            .try_lease("session:other", "gw-b", 17_000, 10_000)
            .await
            .unwrap()
    );
}

/// Two handles on one store (two pools standing for two processes, or one store twice) race
/// for the same cron run, the same outbound messages and the same lease: each is won once.
pub async fn claims_are_exclusive<A, B>(a: &A, b: &B)
where
    A: crate::CronStore + crate::Outbox + crate::LeaseStore,
    B: crate::CronStore + crate::Outbox + crate::LeaseStore,
{
    use crate::{CronJob, CronPayload, Schedule};
    let t0 = 1_900_000_000_000i64;
    let mut jobs = Vec::new();
    for i in 0..20 {
        let job = CronJob::new(
            format!("job{i}"),
            Schedule::Every { every_ms: 60_000 },
            CronPayload::new("tick"),
            t0,
        )
        .unwrap();
        a.put_job(&job).await.unwrap();
        jobs.push(job);
    }
    let now = t0 + 60_000;
    let mut wins = 0;
    for job in &jobs {
        let at = job.state.next_run_at_ms.unwrap();
        let next = job.schedule.following(at, now);
        let (x, y) = tokio::join!(
            a.claim_run(&job.id, at, next),
            b.claim_run(&job.id, at, next)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(x ^ y, "exactly one claim of {} wins ({x}, {y})", job.name);
        wins += 1;
    }
    assert_eq!(wins, 20);

    for i in 0..40 {
        a.enqueue_outbound("telegram", &i.to_string(), &i.to_string(), t0)
            .await
            .unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (x, y) = tokio::join!(
            a.claim_outbound("gw-a", t0, 60_000, 3),
            b.claim_outbound("gw-b", t0, 60_000, 3)
        );
        for r in x.unwrap().into_iter().chain(y.unwrap()) {
            assert!(seen.insert(r.id), "message {} handed out twice", r.id);
        }
    }
    assert_eq!(seen.len(), 40);

    let (x, y) = tokio::join!(
        a.try_lease("session:race", "gw-a", t0, 5000),
        b.try_lease("session:race", "gw-b", t0, 5000)
    );
    assert!(x.unwrap() ^ y.unwrap(), "one lease holder");
}

/// Two gateway instances take messages of one session from the journal, each processing only
/// while it holds the session's lease: the session never runs in both at once, every message is
/// processed once, and the turns are stored in order.
pub async fn session_leases_serialize<A, B>(a: &A, b: &B)
where
    A: crate::SessionStore + crate::InboundJournal + crate::LeaseStore,
    B: crate::SessionStore + crate::InboundJournal + crate::LeaseStore,
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let key = SessionKey::new("telegram:777");
    for i in 0..30 {
        a.journal_inbound(
            "telegram",
            &format!("u{i}"),
            key.as_str(),
            &format!("msg {i}"),
            i,
        )
        .await
        .unwrap();
    }
    let busy = AtomicBool::new(false);
    let overlaps = AtomicUsize::new(0);
    async fn worker<S: crate::SessionStore + crate::InboundJournal + crate::LeaseStore>(
        store: &S,
        me: &str,
        key: &SessionKey,
        busy: &AtomicBool,
        overlaps: &AtomicUsize,
    ) -> usize {
        let lease = format!("session:{key}");
        let mut done = 0;
        for _ in 0..400 {
            let now = chrono::Utc::now().timestamp_millis();
            if !store.try_lease(&lease, me, now, 30_000).await.unwrap() {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                continue;
            }
            if busy.swap(true, Ordering::SeqCst) {
                overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // Process at most two messages per lease, then let the other instance have a go.
            let pending = store.unprocessed(2).await.unwrap();
            for record in &pending {
                store
                    .append(
                        key,
                        &[
                            ChatMessage::user(record.payload.clone()),
                            ChatMessage::assistant("ok"),
                        ],
                    )
                    .await
                    .unwrap();
                store.mark_processed(record.id).await.unwrap();
                done += 1;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            busy.store(false, Ordering::SeqCst);
            store.release_lease(&lease, me).await.unwrap();
            if pending.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        done
    }
    let (x, y) = tokio::join!(
        worker(a, "gw-a", &key, &busy, &overlaps),
        worker(b, "gw-b", &key, &busy, &overlaps)
    );
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "the session ran in both instances at once"
    );
    assert_eq!(x + y, 30, "every message processed once ({x} + {y})");
    let session = a.load(&key, None).await.unwrap();
    let users: Vec<String> = session
        .messages
        .iter()
        .filter(|m| m.role == picoclaw_api::Role::User)
        .map(ChatMessage::text)
        .collect();
    let expected: Vec<String> = (0..30).map(|i| format!("msg {i}")).collect();
    assert_eq!(users, expected, "turns stored once each, in order");
}
