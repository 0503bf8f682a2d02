//! The gateway under a short load (picoclaw-testkit's load driver): concurrent API conversations
//! and Telegram chats through the real binary, a scripted model and the Telegram fake on
//! 127.0.0.1. Nothing lost, nothing answered twice, every history complete and in order. No
//! timing or memory is asserted (that is the `load` bench tool's report, docs/PERFORMANCE.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

use picoclaw_testkit::load::{LoadOptions, LoadReport, run};
use std::time::Duration;

/// 40 API conversations × 3 turns, and 20 Telegram chats × 3 messages where this build has
/// Telegram, all at once.
fn short(instances: usize, state_url: Option<String>) -> LoadOptions {
    LoadOptions {
        instances,
        state_url,
        conversations: 40,
        turns: 3,
        chats: if cfg!(feature = "telegram") { 20 } else { 0 },
        model_delay: Duration::from_millis(50),
        duration: Duration::from_secs(120),
        ..LoadOptions::new(env!("CARGO_BIN_EXE_picoclaw-gateway"))
    }
}

fn assert_clean(report: &LoadReport, options: &LoadOptions) {
    println!("{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.api_answered, options.conversations * options.turns);
    assert_eq!(report.tg_answered, options.chats * options.turns);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_instance_on_sqlite_loses_nothing_and_answers_nothing_twice() {
    let options = short(1, None);
    let report = run(options.clone()).await.unwrap();
    assert_clean(&report, &options);
}

/// Two instances sharing PostgreSQL, each API conversation alternating between them turn by
/// turn: every turn must see the one before it, whichever instance ran it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_on_postgresql_keep_every_conversation_whole() {
    let url = std::env::var("PICOCLAW_TEST_POSTGRES_URL").expect(
        "PICOCLAW_TEST_POSTGRES_URL is not set: the two-instance load test needs PostgreSQL \
         (bash scripts/postgres.sh starts one and prints the URL; scripts/test.sh sets it)",
    );
    let options = short(2, Some(url));
    let report = run(options.clone()).await.unwrap();
    assert_clean(&report, &options);
}
