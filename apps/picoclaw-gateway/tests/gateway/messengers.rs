//! The messengers of channels II in one gateway, through the real binary: WhatsApp (the
//! bridge), LINE, Feishu (the long connection), DingTalk (Stream mode), QQ (the WebSocket
//! gateway), OneBot v11 and WeCom (the self-built app), each against its loopback fake.

use super::*;
use picoclaw_api::WebhookRequest;
use picoclaw_testkit::dingtalk::FakeDingtalk;
use picoclaw_testkit::feishu::FakeFeishu;
use picoclaw_testkit::line::FakeLine;
use picoclaw_testkit::onebot::FakeOnebot;
use picoclaw_testkit::qq::FakeQq;
use picoclaw_testkit::wecom::{AES_KEY, FakeWecom, TOKEN};
use picoclaw_testkit::whatsapp::FakeBridge;

/// The channels, as named in config.json.
const CHANNELS: [&str; 7] = [
    "whatsapp",
    "line",
    "feishu",
    "dingtalk",
    "qq",
    "onebot",
    "wecom_app",
];

const WA_ADA: &str = "15551234567@s.whatsapp.net";
const WA_EVE: &str = "15559990000@s.whatsapp.net";
const LINE_ADA: &str = "U0ada00000000000000000000000000000";
const LINE_EVE: &str = "U0eve00000000000000000000000000000";
const ONEBOT_ADA: i64 = 10001;
const ONEBOT_EVE: i64 = 66666;

/// Every platform's fake.
struct Fakes {
    bridge: FakeBridge,
    line: FakeLine,
    feishu: FakeFeishu,
    dingtalk: FakeDingtalk,
    qq: FakeQq,
    onebot: FakeOnebot,
    wecom: FakeWecom,
}

impl Fakes {
    fn start() -> Self {
        Self {
            bridge: FakeBridge::start(),
            line: FakeLine::start("line-secret", "line-token"),
            feishu: FakeFeishu::start("cli_e2e", "feishu-secret"),
            dingtalk: FakeDingtalk::start("ding-id", "ding-secret"),
            qq: FakeQq::start("102030", "qq-secret"),
            onebot: FakeOnebot::start(Some("onebot-token"), 42),
            wecom: FakeWecom::start("ww-e2e", "wecom-secret"),
        }
    }

    /// The `channels` section: each platform's own keys (the original's), pointed at its fake,
    /// Ada allowed everywhere.
    fn channels(&self) -> Value {
        json!({
            "whatsapp": {"enabled": true, "bridge_url": self.bridge.ws_url(),
                         "allow_from": ["+15551234567"]},
            "line": {"enabled": true, "channel_secret": "line-secret",
                     "channel_access_token": "line-token", "allow_from": [LINE_ADA],
                     "api_base": self.line.api_base()},
            "feishu": {"enabled": true, "app_id": "cli_e2e", "app_secret": "feishu-secret",
                       "allow_from": ["ou_ada"], "api_base": self.feishu.api_base()},
            "dingtalk": {"enabled": true, "client_id": "ding-id", "client_secret": "ding-secret",
                         "allow_from": ["ada"], "api_base": self.dingtalk.api_base()},
            "qq": {"enabled": true, "app_id": "102030", "app_secret": "qq-secret",
                   "allow_from": ["ADA"], "api_base": self.qq.api_base(),
                   "auth_base": self.qq.api_base()},
            "onebot": {"enabled": true, "ws_url": self.onebot.ws_url(),
                       "access_token": "onebot-token", "reconnect_interval": 1,
                       "allow_from": [ONEBOT_ADA]},
            "wecom_app": {"enabled": true, "corp_id": "ww-e2e", "corp_secret": "wecom-secret",
                          "agent_id": 1000002, "token": TOKEN, "encoding_aes_key": AES_KEY,
                          "allow_from": ["ada"], "api_base": self.wecom.api_base()},
        })
    }

    /// `who` (`ada` or `eve`, each platform's ids for them) writes `text` on `channel`. Returns
    /// what a webhook platform could deliver again: LINE's event, WeCom's message XML.
    async fn say(&self, gw: &Gateway, channel: &str, who: &str, text: &str) -> Value {
        let ada = who == "ada";
        match channel {
            "whatsapp" => {
                let from = if ada { WA_ADA } else { WA_EVE };
                let frame = self.bridge.message(from, from, text);
                tokio::task::block_in_place(|| self.bridge.push(&frame));
            }
            "line" => {
                let event = self
                    .line
                    .text_event(if ada { LINE_ADA } else { LINE_EVE }, text);
                let request = self.line.webhook(std::slice::from_ref(&event));
                assert_eq!(post(gw, "/webhook/line", &request).await, 200);
                return event;
            }
            "feishu" => {
                let event = self.feishu.dm(if ada { "ou_ada" } else { "ou_eve" }, text);
                tokio::task::block_in_place(|| self.feishu.push_event(&event, 1));
            }
            "dingtalk" => {
                let message =
                    self.dingtalk
                        .direct_message(if ada { "ada" } else { "eve" }, text, 600);
                tokio::task::block_in_place(|| self.dingtalk.push_callback(&message));
            }
            "qq" => {
                let d = self.qq.c2c_message(if ada { "ADA" } else { "EVE" }, text);
                tokio::task::block_in_place(|| self.qq.push("C2C_MESSAGE_CREATE", &d));
            }
            "onebot" => {
                let user = if ada { ONEBOT_ADA } else { ONEBOT_EVE };
                let event = self
                    .onebot
                    .private_message(user, json!([{"type": "text", "data": {"text": text}}]));
                tokio::task::block_in_place(|| self.onebot.push(&event));
            }
            "wecom_app" => {
                let xml = self.wecom.app_text(if ada { "ada" } else { "eve" }, text);
                let request = self.wecom.app_callback(&xml);
                assert_eq!(post(gw, "/webhook/wecom_app", &request).await, 200);
                return Value::String(xml);
            }
            other => panic!("no channel {other}"),
        }
        Value::Null
    }

    /// The answer texts `channel`'s platform received so far.
    fn answers(&self, channel: &str) -> Vec<String> {
        match channel {
            "whatsapp" => self
                .bridge
                .sent()
                .iter()
                .filter_map(|f| f["content"].as_str().map(str::to_owned))
                .collect(),
            "line" => self.line.sent().iter().flat_map(|s| s.texts()).collect(),
            "feishu" => self.feishu.sent().iter().map(|s| s.text()).collect(),
            "dingtalk" => {
                let mut texts: Vec<String> = self
                    .dingtalk
                    .session_posts()
                    .iter()
                    .map(|(_, body)| markdown_or_text(body))
                    .collect();
                texts.extend(
                    self.dingtalk
                        .api_calls()
                        .iter()
                        .filter_map(|(_, body, _)| body["msgParam"].as_str().map(str::to_owned)),
                );
                texts
            }
            "qq" => self
                .qq
                .posts()
                .iter()
                .map(|(_, body)| {
                    body["content"]
                        .as_str()
                        .or(body["markdown"]["content"].as_str())
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect(),
            "onebot" => self
                .onebot
                .actions()
                .iter()
                .filter(|a| {
                    a["action"]
                        .as_str()
                        .is_some_and(|name| name.starts_with("send_"))
                })
                .map(|a| segments_text(&a["params"]["message"]))
                .collect(),
            "wecom_app" => self.wecom.sends().iter().map(markdown_or_text).collect(),
            other => panic!("no channel {other}"),
        }
    }

    /// Waits until `channel`'s platform received an answer containing `text`.
    async fn wait_answer(&self, channel: &str, text: &str) {
        for _ in 0..1200 {
            if self.answers(channel).iter().any(|a| a.contains(text)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{channel} never got an answer containing {text:?}; it got {:?}",
            self.answers(channel)
        );
    }
}

/// The text of a `{"msgtype": "markdown"|"text", ...}` body (DingTalk, WeCom).
fn markdown_or_text(body: &Value) -> String {
    body["markdown"]["text"]
        .as_str()
        .or(body["markdown"]["content"].as_str())
        .or(body["text"]["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The text of a OneBot message: a CQ string, or the `text` segments of an array.
fn segments_text(message: &Value) -> String {
    match message {
        Value::String(s) => s.clone(),
        Value::Array(segments) => segments
            .iter()
            .filter(|s| s["type"] == "text")
            .filter_map(|s| s["data"]["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// Sends `request` to the gateway's `path`, as the platform would; returns the status.
async fn post(gw: &Gateway, path: &str, request: &WebhookRequest) -> u16 {
    let mut url = format!("{}{path}", gw.base);
    if !request.query.is_empty() {
        url = format!("{url}?{}", request.query);
    }
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
    let mut builder = client().request(method, url).body(request.body.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    builder.send().await.unwrap().status().as_u16()
}

/// Waits until `/ready` says every channel of [`CHANNELS`] is running.
async fn wait_running(gw: &Gateway) {
    let mut ready = Value::Null;
    for _ in 0..1200 {
        ready = client()
            .get(format!("{}/ready", gw.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if CHANNELS
            .iter()
            .all(|c| ready["channels"][c].as_str() == Some("running"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not every messenger is running: {ready}");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_six_messengers_in_one_gateway_across_a_restart() {
    let fakes = Fakes::start();
    let mut script = Vec::new();
    for c in CHANNELS {
        script.push(
            Reply::text(format!("First answer on {c}, **bold**."))
                .when_request_contains(&format!("first from {c}")),
        );
    }
    for c in CHANNELS {
        script.push(
            Reply::text(format!("Second answer on {c}."))
                .when_request_contains(&format!("second from {c}")),
        );
    }
    script.push(
        Reply::text("Third answer on wecom_app.").when_request_contains("third from wecom_app"),
    );
    // Answered only after the webhook was acknowledged.
    script.push(
        Reply::text("A slow answer on LINE.")
            .when_request_contains("slow from line")
            .delayed(Duration::from_secs(4)),
    );
    let endpoint = ScriptedEndpoint::start_with(script).await;
    let home = home_with(&endpoint, json!({"host": "127.0.0.1", "port": 0}));
    set_channels(home.path(), fakes.channels());

    let gw = Gateway::start(home.path());
    wait_running(&gw).await;
    // A stranger on every platform, then Ada.
    let mut firsts = std::collections::BTreeMap::new();
    for c in CHANNELS {
        fakes.say(&gw, c, "eve", &format!("stranger on {c}")).await;
        firsts.insert(
            c,
            fakes.say(&gw, c, "ada", &format!("first from {c}")).await,
        );
    }
    for c in CHANNELS {
        fakes.wait_answer(c, &format!("First answer on {c},")).await;
    }
    // Each platform's own format: WhatsApp's marks, cards or Markdown where the platform renders
    // it, plain text elsewhere.
    assert!(
        fakes
            .answers("whatsapp")
            .contains(&"First answer on whatsapp, *bold*.".to_owned()),
        "{:?}",
        fakes.answers("whatsapp")
    );
    assert!(
        fakes
            .answers("line")
            .contains(&"First answer on line, bold.".to_owned()),
        "{:?}",
        fakes.answers("line")
    );

    // Forged webhooks are refused and reach nobody.
    let event = fakes.line.text_event(LINE_ADA, "forged from line");
    let mut forged = fakes.line.webhook(&[event]);
    for (name, value) in &mut forged.headers {
        if name == "x-line-signature" {
            *value = FakeLine::sign("not-the-secret", "{}");
        }
    }
    assert_eq!(post(&gw, "/webhook/line", &forged).await, 401);
    let xml = fakes.wecom.app_text("ada", "forged from wecom");
    let mut forged = fakes.wecom.app_callback(&xml);
    forged.query = forged.query.replace("msg_signature=", "msg_signature=0000");
    let status = post(&gw, "/webhook/wecom_app", &forged).await;
    assert!(
        (400..500).contains(&status),
        "a forged WeCom callback got {status}"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        endpoint.requests().len(),
        CHANNELS.len(),
        "only Ada's messages reached the model: {:?}",
        endpoint
            .requests()
            .iter()
            .map(|r| r.message_texts())
            .collect::<Vec<_>>()
    );
    let before: Vec<usize> = CHANNELS.iter().map(|c| fakes.answers(c).len()).collect();
    assert!(gw.terminate().success());

    // After a restart: LINE and WeCom deliver again the first messages already answered (as
    // they do when an acknowledgement was lost), WeCom sends one callback twice, and Ada writes
    // again everywhere. Nothing is answered twice; each chat's conversation goes on where it
    // was.
    let gw = Gateway::start(home.path());
    wait_running(&gw).await;
    let again = FakeLine::redelivery(&firsts["line"]);
    assert_eq!(
        post(&gw, "/webhook/line", &fakes.line.webhook(&[again])).await,
        200,
        "a redelivery is acknowledged"
    );
    let first_xml = firsts["wecom_app"].as_str().unwrap().to_owned();
    let third_xml = fakes.wecom.app_text("ada", "third from wecom_app");
    for xml in [&first_xml, &third_xml, &third_xml] {
        let request = fakes.wecom.app_callback(xml);
        assert_eq!(post(&gw, "/webhook/wecom_app", &request).await, 200);
    }
    for c in CHANNELS {
        fakes.say(&gw, c, "ada", &format!("second from {c}")).await;
    }
    for c in CHANNELS {
        fakes
            .wait_answer(c, &format!("Second answer on {c}."))
            .await;
    }
    fakes
        .wait_answer("wecom_app", "Third answer on wecom_app.")
        .await;

    // A slow turn: LINE's webhook is answered at once, the answer comes later.
    let slow = fakes.line.text_event(LINE_ADA, "slow from line");
    assert_eq!(
        post(&gw, "/webhook/line", &fakes.line.webhook(&[slow])).await,
        200
    );
    assert!(
        !fakes
            .answers("line")
            .iter()
            .any(|a| a.contains("A slow answer")),
        "the webhook waited for the turn"
    );
    fakes.wait_answer("line", "A slow answer on LINE.").await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    for (i, c) in CHANNELS.iter().enumerate() {
        let answers = fakes.answers(c);
        let firsts = answers
            .iter()
            .filter(|a| a.contains("First answer"))
            .count();
        assert_eq!(
            firsts, 1,
            "{c} answered its first message once: {answers:?}"
        );
        assert!(answers.len() > before[i], "{c}: {answers:?}");
    }
    let requests = endpoint.requests();
    for c in CHANNELS {
        let turn = requests
            .iter()
            .map(|r| r.message_texts())
            .find(|texts| {
                texts
                    .iter()
                    .any(|t| t.contains(&format!("second from {c}")))
            })
            .unwrap_or_else(|| panic!("{c}'s second message never reached the model"));
        assert!(
            turn.iter().any(|t| t.contains(&format!("first from {c}"))),
            "{c}'s conversation survived the restart: {turn:?}"
        );
        for other in CHANNELS.iter().filter(|o| **o != c) {
            assert!(
                !turn.iter().any(|t| t.contains(&format!("from {other}"))),
                "{c}'s conversation is its own: {turn:?}"
            );
        }
    }
    // What came twice reached the model once.
    for text in [
        "first from line",
        "first from wecom_app",
        "third from wecom_app",
    ] {
        let turns = requests
            .iter()
            .filter(|r| r.message_texts().last().is_some_and(|t| t.contains(text)))
            .count();
        assert_eq!(turns, 1, "{text:?} was taken once");
    }
    assert_eq!(requests.len(), 2 * CHANNELS.len() + 2);
    drop(gw);
}
