//! Conformance checks for [`crate::CronStore`]: storing jobs, due jobs and run claims (part of
//! [`super::runtime_suite`]), and two schedulers on one store firing every run once.

pub(super) async fn cron_jobs(store: &impl crate::CronStore) {
    use crate::{CronJob, CronPayload, Schedule};
    let t0 = 1_800_000_000_000i64;
    assert!(store.list_jobs().await.unwrap().is_empty());
    let every = CronJob::new(
        "water plants",
        Schedule::Every { every_ms: 60_000 },
        CronPayload::new("Remind me to water the plants").to("telegram", "42"),
        t0,
    )
    .unwrap();
    let once = CronJob::new(
        "call mum",
        Schedule::At { at_ms: t0 + 30_000 },
        CronPayload::new("Call mum").delivered(),
        t0 + 1,
    )
    .unwrap();
    let daily = CronJob::new(
        "standup",
        Schedule::Cron {
            expr: "0 9 * * 1-5".into(),
            tz: Some("Europe/Lisbon".into()),
        },
        CronPayload::new("standup notes"),
        t0 + 2,
    )
    .unwrap();
    for job in [&every, &once, &daily] {
        store.put_job(job).await.unwrap();
    }
    // Round trip, listing oldest first.
    assert_eq!(store.get_job(&once.id).await.unwrap().as_ref(), Some(&once));
    assert_eq!(store.get_job("nope").await.unwrap(), None);
    let names: Vec<String> = store
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["water plants", "call mum", "standup"]);

    // Due: only what has come, earliest first.
    assert!(store.due_jobs(t0, 10).await.unwrap().is_empty());
    let due = store.due_jobs(t0 + 60_000, 10).await.unwrap();
    let due_names: Vec<&str> = due.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(due_names, ["call mum", "water plants"]);
    assert_eq!(store.due_jobs(t0 + 60_000, 1).await.unwrap().len(), 1);

    // A claim moves the job on once; a second claim of the same run fails.
    let scheduled = every.state.next_run_at_ms.unwrap();
    let next = every.schedule.following(scheduled, t0 + 60_000);
    assert!(store.claim_run(&every.id, scheduled, next).await.unwrap());
    assert!(!store.claim_run(&every.id, scheduled, next).await.unwrap());
    store
        .record_result(&every.id, t0 + 60_001, Err("telegram is down".into()))
        .await
        .unwrap();
    let after = store.get_job(&every.id).await.unwrap().unwrap();
    assert_eq!(after.state.next_run_at_ms, Some(t0 + 120_000));
    assert_eq!(after.state.last_run_at_ms, Some(t0 + 60_001));
    assert_eq!(after.state.last_status.as_deref(), Some("error"));
    assert_eq!(after.state.last_error.as_deref(), Some("telegram is down"));
    assert!(after.enabled);
    store
        .record_result(&every.id, t0 + 120_001, Ok(()))
        .await
        .unwrap();
    let after = store.get_job(&every.id).await.unwrap().unwrap();
    assert_eq!(after.state.last_status.as_deref(), Some("ok"));
    assert_eq!(after.state.last_error, None);

    // A one-shot job finishes and goes away.
    let at = once.state.next_run_at_ms.unwrap();
    assert!(store.claim_run(&once.id, at, None).await.unwrap());
    assert!(
        store
            .due_jobs(t0 + 60_000, 10)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != once.id)
    );
    store.record_result(&once.id, at, Ok(())).await.unwrap();
    assert_eq!(store.get_job(&once.id).await.unwrap(), None);

    // Disabled jobs are never due, nor claimable; enabling computes the next run.
    let disabled = store
        .set_enabled(&daily.id, false, t0)
        .await
        .unwrap()
        .unwrap();
    assert!(!disabled.enabled && disabled.state.next_run_at_ms.is_none());
    let far = t0 + 10 * 86_400_000;
    assert!(
        store
            .due_jobs(far, 10)
            .await
            .unwrap()
            .iter()
            .all(|j| j.id != daily.id)
    );
    let enabled = store
        .set_enabled(&daily.id, true, t0)
        .await
        .unwrap()
        .unwrap();
    assert!(enabled.state.next_run_at_ms.unwrap() > t0);
    assert_eq!(store.set_enabled("nope", true, t0).await.unwrap(), None);

    // Replacing and removing.
    let mut renamed = enabled.clone();
    renamed.name = "daily standup".into();
    store.put_job(&renamed).await.unwrap();
    assert_eq!(
        store.get_job(&daily.id).await.unwrap().unwrap().name,
        "daily standup"
    );
    assert!(store.remove_job(&daily.id).await.unwrap());
    assert!(!store.remove_job(&daily.id).await.unwrap());
    assert_eq!(store.list_jobs().await.unwrap().len(), 1);
    store.remove_job(&every.id).await.unwrap();
}
/// Two scheduler instances (`a` and `b`, as two processes would) step through the same minutes
/// of simulated time, each taking due jobs and claiming them: every scheduled run happens
/// exactly once.
pub async fn scheduler_fires_once<A: crate::CronStore, B: crate::CronStore>(a: &A, b: &B) {
    use crate::{CronJob, CronPayload, Schedule};
    use std::collections::HashMap;
    use std::sync::Mutex;
    let t0 = 2_000_000_000_000i64;
    let every = CronJob::new(
        "tick",
        Schedule::Every { every_ms: 10_000 },
        CronPayload::new("t"),
        t0,
    )
    .unwrap();
    let minutely = CronJob::new(
        "minutely",
        Schedule::Cron {
            expr: "* * * * *".into(),
            tz: None,
        },
        CronPayload::new("m"),
        t0,
    )
    .unwrap();
    a.put_job(&every).await.unwrap();
    a.put_job(&minutely).await.unwrap();
    let runs: Mutex<HashMap<(String, i64), u32>> = Mutex::new(HashMap::new());
    async fn instance(
        store: &dyn crate::CronStore,
        t0: i64,
        runs: &Mutex<HashMap<(String, i64), u32>>,
    ) {
        // Five minutes in steps of one second.
        for step in 0..=300 {
            let now = t0 + step * 1000;
            for job in store.due_jobs(now, 10).await.unwrap() {
                let at = job.state.next_run_at_ms.unwrap();
                let next = job.schedule.following(at, now);
                if store.claim_run(&job.id, at, next).await.unwrap() {
                    *runs
                        .lock()
                        .unwrap()
                        .entry((job.name.clone(), at))
                        .or_default() += 1;
                    store.record_result(&job.id, now, Ok(())).await.unwrap();
                }
            }
            if step % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    tokio::join!(instance(a, t0, &runs), instance(b, t0, &runs));
    let runs = runs.into_inner().unwrap();
    assert!(
        runs.values().all(|n| *n == 1),
        "a run happened twice: {runs:?}"
    );
    let ticks = runs.keys().filter(|(name, _)| name == "tick").count();
    let minutes = runs.keys().filter(|(name, _)| name == "minutely").count();
    // Every 10 s for 300 s: at t0+10s .. t0+300s. Whole minutes within five minutes: 5 (or 4
    // when t0 sits exactly on a minute boundary past the last step).
    assert_eq!(ticks, 30, "{runs:?}");
    assert!((4..=5).contains(&minutes), "{runs:?}");
}
