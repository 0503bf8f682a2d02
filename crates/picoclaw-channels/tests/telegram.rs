//! The Telegram channel against a loopback Bot API (testkit's `FakeBotApi`): the real teloxide
//! client through `api_base`.
#![cfg(feature = "telegram")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // A test panics on what it did not expect.

mod common;

use common::{run, wait_kept};
use picoclaw_channels::telegram::{TelegramChannel, TelegramConfig};
use picoclaw_testkit::telegram::FakeBotApi;
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "123:LONG-POLL";

/// Telegram holds a getUpdates for its whole `timeout` when nothing happens. teloxide's default
/// client gives up on any request after 17 s, so with that client every quiet poll longer than
/// that failed, and the channel stopped and was restarted with a growing pause (up to a minute
/// without messages).
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_long_poll_longer_than_17_s_is_waited_out() {
    let tg = FakeBotApi::start(TOKEN);
    tg.hold_polls_up_to(Duration::from_secs(60));
    let mut config = TelegramConfig::from_json(
        &json!({"token": TOKEN, "api_base": tg.api_base(), "allow_from": ["111"]}),
    )
    .unwrap();
    config.poll_timeout = 18;
    let running = run(TelegramChannel::new(config).unwrap(), ());
    // The first poll is held 18 s, answered empty, and the channel polls again.
    let started = Instant::now();
    while tg.offsets().len() < 2 {
        if running.task.is_finished() {
            let elapsed = started.elapsed();
            panic!(
                "the channel stopped after {elapsed:?}: {:?}",
                running.task.await.unwrap()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no second poll"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it still takes messages.
    tg.private_message(111, "ada", "still there?");
    wait_kept(&running.inbox, 1).await;
    running.stop.cancel();
    running.task.await.unwrap().unwrap();
}
