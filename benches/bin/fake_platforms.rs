//! Loopback Telegram, Discord and Slack, and the messengers of channels II (the testkit's fakes),
//! for measuring a gateway with its channels connected (scripts/perf-channels.sh). Prints one
//! JSON line with each fake's `api_base` (or WebSocket URL), then serves until killed. The
//! messengers' fakes take fixed credentials, the ones scripts/perf-channels.sh configures.
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
    let bridge = picoclaw_testkit::whatsapp::FakeBridge::start();
    let line = picoclaw_testkit::line::FakeLine::start("line-secret", "line-token");
    let feishu = picoclaw_testkit::feishu::FakeFeishu::start("cli_perf", "feishu-secret");
    let dingtalk = picoclaw_testkit::dingtalk::FakeDingtalk::start("ding-id", "ding-secret");
    let qq = picoclaw_testkit::qq::FakeQq::start("102030", "qq-secret");
    let onebot = picoclaw_testkit::onebot::FakeOnebot::start(Some("onebot-token"), 42);
    let wecom = picoclaw_testkit::wecom::FakeWecom::start("ww-perf", "wecom-secret");
    println!(
        "{}",
        serde_json::json!({"telegram": tg.api_base(), "discord": dc.api_base(),
                           "slack": sl.api_base(), "whatsapp": bridge.ws_url(),
                           "line": line.api_base(), "feishu": feishu.api_base(),
                           "dingtalk": dingtalk.api_base(), "qq": qq.api_base(),
                           "onebot": onebot.ws_url(), "wecom": wecom.api_base()})
    );
    loop {
        std::thread::park();
    }
}
