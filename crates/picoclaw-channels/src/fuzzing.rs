//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, not part of the API): each
//! webhook channel, made from a config once and signed in without its platform, takes requests
//! through its real `Channel::webhook`; the request is signed (or not) the way the platform
//! signs it, so the fuzzer reaches both the signature checks and the event parsing behind them.
//! Platform API calls go to a closed port on 127.0.0.1 and fail at once.

use crate::{Channel, ChannelSetup, InboundMessage, Inbox, InboxError, WebhookRequest};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The user every channel lets in (`allow_from`), so that messages get as far as the inbox.
pub const ALLOWED: &str = "U0FUZZ";
/// The secrets of the channels' configs (for signing).
pub const SECRET: &str = "fuzz-secret";
/// WeCom's corp id and EncodingAESKey (43 base64 characters).
const WECOM_CORP: &str = "wwfuzz";
const WECOM_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// The closed port the platform APIs are reached on.
const API: &str = "http://127.0.0.1:9";

/// An inbox that takes everything and counts it.
#[derive(Debug, Default)]
struct Sink(AtomicUsize);

#[async_trait::async_trait]
impl Inbox for Sink {
    async fn deliver(&self, _msg: InboundMessage) -> Result<(), InboxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The webhook channels, made once.
pub struct Webhooks {
    line: crate::line::LineChannel,
    whatsapp: crate::whatsapp::WhatsappChannel,
    slack: crate::slack::SlackChannel,
    telegram: crate::telegram::TelegramChannel,
    qq: crate::qq::QqChannel,
    feishu: crate::feishu::FeishuChannel,
    wecom: crate::wecom::WecomChannel,
    inbox: Arc<Sink>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

fn setup(name: &str, settings: Value, dir: &Path) -> ChannelSetup {
    ChannelSetup::new(name, settings, &dir.join("workspace"), &dir.join("home"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_sha256(key: &str, data: &[u8]) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    ring::hmac::sign(&key, data).as_ref().to_vec()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Webhooks {
    /// The channels, with their media folders under `dir`.
    pub fn new(dir: &Path) -> Result<Self, crate::ChannelError> {
        let common = json!({"enabled": true, "allow_from": [ALLOWED], "rate_limit_per_minute": 0});
        let with = |extra: Value| {
            let mut v = common.clone();
            if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                v.extend(extra);
            }
            v
        };
        let line = crate::line::LineChannel::from_setup(&setup(
            "line",
            with(json!({"channel_secret": SECRET, "channel_access_token": "t", "api_base": API})),
            dir,
        ))?;
        line.signed_in_for_fuzzing("Ubot");
        let whatsapp = crate::whatsapp::WhatsappChannel::from_setup(&setup(
            "whatsapp",
            with(
                json!({"phone_number_id": "100", "access_token": "t", "app_secret": SECRET,
                        "verify_token": SECRET, "api_base": API}),
            ),
            dir,
        ))?;
        let slack = crate::slack::SlackChannel::new(crate::slack::SlackConfig::from_json(&with(
            json!({"bot_token": "xoxb-fuzz", "signing_secret": SECRET, "api_base": API}),
        ))?)?;
        slack.signed_in_for_fuzzing("UBOT");
        let telegram = crate::telegram::TelegramChannel::new(
            crate::telegram::TelegramConfig::from_json(&with(json!({
                "token": "1:fuzz", "webhook_secret": SECRET, "api_base": API,
                "webhook_url": "https://fuzz.invalid/webhook/telegram"
            })))?,
        )?;
        *crate::lock(&telegram.me) = Some(crate::telegram::Me {
            username: "fuzzbot".to_owned(),
            id: teloxide::types::UserId(1),
        });
        let qq = crate::qq::QqChannel::from_setup(&setup(
            "qq",
            with(
                json!({"app_id": "1", "app_secret": SECRET, "mode": "webhook",
                        "api_base": API, "auth_base": API}),
            ),
            dir,
        ))?;
        let feishu =
            crate::feishu::FeishuChannel::new(crate::feishu::FeishuConfig::from_json(&with(
                json!({"app_id": "cli_fuzz", "app_secret": SECRET, "mode": "webhook",
                         "encrypt_key": SECRET, "verification_token": SECRET, "api_base": API}),
            ))?)?;
        feishu.signed_in_for_fuzzing("ou_bot");
        let wecom = crate::wecom::WecomChannel::from_setup(&setup(
            "wecom_app",
            with(
                json!({"corp_id": WECOM_CORP, "corp_secret": SECRET, "agent_id": 1000002,
                        "token": SECRET, "encoding_aes_key": WECOM_AES_KEY, "api_base": API}),
            ),
            dir,
        ))?;
        Ok(Self {
            line,
            whatsapp,
            slack,
            telegram,
            qq,
            feishu,
            wecom,
            inbox: Arc::new(Sink::default()),
        })
    }

    /// One request with `body` to the channel `which` picks (LINE, WhatsApp Cloud, Slack's
    /// Events API, Telegram, QQ, Feishu, WeCom): signed as the platform signs when bit 0 of
    /// `flags` is clear, else carrying a signature made from the body's first bytes (bit 1: a
    /// form for Slack, no signature headers at all for QQ). Feishu's and WeCom's signed
    /// bodies are encrypted first, as the platforms do (`body` is then the plaintext event);
    /// unsigned, `body` is what is posted. `query` is the URL's query (WhatsApp's
    /// subscription check). Returns the HTTP status.
    pub async fn webhook(&self, which: u8, flags: u8, query: &str, body: Vec<u8>) -> u16 {
        let (sign, variant) = (flags & 1 == 0, flags & 2 != 0);
        let forged = hex(body.get(..8).unwrap_or_default());
        let inbox: Arc<dyn Inbox> = self.inbox.clone();
        let mut request = WebhookRequest::new("POST", body.clone());
        request.query = query.to_owned();
        match which % 10 {
            0 => {
                let signature = if sign {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(SECRET, &body))
                } else {
                    forged
                };
                let request = request.with_header("x-line-signature", signature);
                self.line.webhook(request, inbox).await.status
            }
            1 => {
                let signature = if sign {
                    format!("sha256={}", hex(&hmac_sha256(SECRET, &body)))
                } else {
                    forged
                };
                let request = request.with_header("x-hub-signature-256", signature);
                self.whatsapp.webhook(request, inbox).await.status
            }
            2 => {
                // WhatsApp's subscription check (a GET with the query).
                request.method = "GET".to_owned();
                self.whatsapp.webhook(request, inbox).await.status
            }
            3 => {
                let ts = now().to_string();
                let signature = if sign {
                    let mut signed = format!("v0:{ts}:").into_bytes();
                    signed.extend_from_slice(String::from_utf8_lossy(&body).as_bytes());
                    format!("v0={}", hex(&hmac_sha256(SECRET, &signed)))
                } else {
                    forged
                };
                // Slash commands and interactions come as forms, events as JSON.
                let content_type = if variant {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                };
                let request = request
                    .with_header("x-slack-signature", signature)
                    .with_header("x-slack-request-timestamp", ts)
                    .with_header("content-type", content_type);
                self.slack.webhook(request, inbox).await.status
            }
            4 => {
                let token = if sign { SECRET.to_owned() } else { forged };
                let request = request.with_header("x-telegram-bot-api-secret-token", token);
                self.telegram.webhook(request, inbox).await.status
            }
            5 => {
                let ts = now().to_string();
                let request = if sign {
                    let signature = self.qq.sign_for_fuzzing(&ts, &body);
                    request
                        .with_header("x-signature-ed25519", signature)
                        .with_header("x-signature-timestamp", ts)
                } else if variant {
                    // Unsigned: only the callback URL check may pass.
                    request
                } else {
                    request
                        .with_header("x-signature-ed25519", forged)
                        .with_header("x-signature-timestamp", ts)
                };
                self.qq.webhook(request, inbox).await.status
            }
            6 => {
                let request = if sign {
                    let (ts, nonce) = (now().to_string(), "fuzz-nonce");
                    let outer = json!({"encrypt": feishu_encrypt(SECRET, &body)}).to_string();
                    let signature =
                        crate::feishu::webhook::signature(&ts, nonce, SECRET, outer.as_bytes());
                    let mut signed = WebhookRequest::new("POST", outer)
                        .with_header("x-lark-signature", signature)
                        .with_header("x-lark-request-timestamp", ts)
                        .with_header("x-lark-request-nonce", nonce);
                    signed.query = request.query;
                    signed
                } else {
                    request
                };
                self.feishu.webhook(request, inbox).await.status
            }
            7 => {
                let (ts, nonce) = (now().to_string(), "fuzznonce");
                let (outer, signature) = if sign {
                    let (encrypted, signature) =
                        self.wecom.seal_for_fuzzing(&body, WECOM_CORP, &ts, nonce);
                    let outer = format!(
                        "<xml><ToUserName><![CDATA[{WECOM_CORP}]]></ToUserName>\
                         <Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
                    );
                    (outer.into_bytes(), signature)
                } else {
                    (body, forged)
                };
                let mut request = WebhookRequest::new("POST", outer);
                request.query = format!("msg_signature={signature}&timestamp={ts}&nonce={nonce}");
                self.wecom.webhook(request, inbox).await.status
            }
            8 => {
                // WeCom's URL check: `echostr` is encrypted and signed like a callback.
                let (ts, nonce) = (now().to_string(), "fuzznonce");
                let (echo, signature) = if sign {
                    self.wecom.seal_for_fuzzing(&body, WECOM_CORP, &ts, nonce)
                } else {
                    (String::from_utf8_lossy(&body).into_owned(), forged)
                };
                let query: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("msg_signature", &signature)
                    .append_pair("timestamp", &ts)
                    .append_pair("nonce", nonce)
                    .append_pair("echostr", &echo)
                    .finish();
                let mut request = WebhookRequest::new("GET", Vec::new());
                request.query = query;
                self.wecom.webhook(request, inbox).await.status
            }
            _ => {
                // The query as the platform sends it (WeCom reads its signature from it).
                let mut request = WebhookRequest::new("POST", Vec::new());
                request.query = query.to_owned();
                self.wecom.webhook(request, inbox).await.status
            }
        }
    }
}

impl Webhooks {
    /// How many messages the channels have handed to the inbox so far.
    pub fn delivered(&self) -> usize {
        self.inbox.0.load(Ordering::SeqCst)
    }
}

/// Feishu's `encrypt` field: AES-256-CBC under SHA-256 of the key, a (fixed) IV first, base64.
fn feishu_encrypt(key: &str, plain: &[u8]) -> String {
    use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
    use base64::Engine as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let iv = [7u8; 16];
    let mut out = iv.to_vec();
    match cbc::Encryptor::<aes::Aes256>::new_from_slices(digest.as_ref(), &iv) {
        Ok(enc) => out.extend(enc.encrypt_padded_vec_mut::<Pkcs7>(plain)),
        Err(_) => return String::new(),
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// OneBot's CQ-code strings (`hi [CQ:at,qq=123] there`) as message segments.
pub fn onebot_cq(text: &str) -> Vec<Value> {
    crate::onebot::parse_cq(text)
}
