//! Loopback Telegram, Discord and Slack (the testkit's fakes) for measuring a gateway with its
//! channels connected (scripts/perf-channels.sh). Prints one JSON line with each fake's
//! `api_base`, then serves until killed.
//! Usage: fake-platforms TELEGRAM_TOKEN DISCORD_TOKEN SLACK_BOT_TOKEN SLACK_APP_TOKEN

use picoclaw_testkit::discord::FakeDiscord;
use picoclaw_testkit::slack::FakeSlack;
use picoclaw_testkit::telegram::FakeBotApi;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [telegram, discord, slack_bot, slack_app] = args.as_slice() else {
        eprintln!(
            "usage: fake-platforms TELEGRAM_TOKEN DISCORD_TOKEN SLACK_BOT_TOKEN SLACK_APP_TOKEN"
        );
        std::process::exit(2);
    };
    let tg = FakeBotApi::start(telegram);
    let dc = FakeDiscord::start(discord);
    let sl = FakeSlack::start(slack_bot, slack_app);
    println!(
        "{}",
        serde_json::json!({"telegram": tg.api_base(), "discord": dc.api_base(),
                           "slack": sl.api_base()})
    );
    loop {
        std::thread::park();
    }
}
