//! The `channels` section of config.json, typed: what each channel's settings may hold. These
//! structs are compiled in every build (a platform's cargo feature gates only its client), so the
//! config loader can check any channel's keys and name a misspelt one.
//!
//! Each channel has the keys every channel shares (`enabled`, `allow_from`,
//! `rate_limit_per_minute`, `session_scope`) and its own; keys the original PicoClaw has for the
//! channel that picoclaw does not act on (`group_trigger`, `typing`, `placeholder`,
//! `reasoning_channel_id`, `proxy`...) are accepted as they are. Channels of the original that
//! picoclaw does not implement are kept as raw JSON: their keys are not checked.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `allow_from`: a list of ids as strings or numbers (ids written as JSON numbers), trimmed,
/// blanks and other values dropped; `null` is an empty list.
pub fn deserialize_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        list @ Value::Array(_) => Ok(crate::settings::allow_from(
            &serde_json::json!({ "allow_from": list }),
        )),
        other => Err(serde::de::Error::custom(format!(
            "allow_from must be a list of user ids, e.g. [\"123456789\"], not {other}"
        ))),
    }
}

/// Declares a channel's section: the shared keys, the original's unused ones, and `$field`s.
macro_rules! channel_section {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct $name {
            /// Start this channel (in the gateway). Default false.
            pub enabled: bool,
            /// User ids (or usernames, where the platform has them) allowed to talk to the bot.
            #[serde(deserialize_with = "deserialize_ids", skip_serializing_if = "Vec::is_empty")]
            pub allow_from: Vec<String>,
            /// Messages per user per minute (default 20; 0: no limit).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub rate_limit_per_minute: Option<u64>,
            /// `"chat"` (default) or `"user"`: which messages share one conversation.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub session_scope: Option<String>,
            /// The original's later layout names the channel's type (its section name).
            #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
            pub kind: Option<Value>,
            /// When groups are answered: `{"mention_only": bool, "prefixes": [...]}` (see
            /// `crate::group::GroupTrigger`; Telegram, Discord and Slack answer mentions).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub group_trigger: Option<Value>,
            /// The original's typing indicator switch (picoclaw always shows it).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub typing: Option<Value>,
            /// The original's placeholder message (not used by picoclaw).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub placeholder: Option<Value>,
            /// The original's channel for reasoning traces (not used by picoclaw).
            #[serde(skip_serializing_if = "Option::is_none")]
            pub reasoning_channel_id: Option<Value>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }
    };
}

channel_section! {
    /// `channels.telegram`.
    TelegramSection {
        /// The bot token from @BotFather.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// A self-hosted Bot API server (the original's `base_url`).
        #[serde(alias = "base_url", skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// Webhook mode: the public HTTPS URL Telegram posts updates to.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_url: Option<String>,
        /// The secret Telegram sends back with every update.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_secret: Option<String>,
        /// The original's proxy (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy: Option<Value>,
        /// The original's streaming settings (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        streaming: Option<Value>,
        /// The original's MarkdownV2 switch (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        use_markdown_v2: Option<Value>,
    }
}

channel_section! {
    /// `channels.discord`.
    DiscordSection {
        /// The bot token (a leading `Bot ` is dropped).
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// A REST proxy's base URL.
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// In guild channels, answer only mentions and replies (default true).
        #[serde(skip_serializing_if = "Option::is_none")]
        mention_only: Option<bool>,
        /// The original's proxy (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        proxy: Option<Value>,
    }
}

channel_section! {
    /// `channels.slack`.
    SlackSection {
        /// The bot token (`xoxb-...`).
        #[serde(skip_serializing_if = "Option::is_none")]
        bot_token: Option<String>,
        /// The app-level token (`xapp-...`) for Socket Mode.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_token: Option<String>,
        /// Verifies Events API requests to `/webhook/slack`.
        #[serde(skip_serializing_if = "Option::is_none")]
        signing_secret: Option<String>,
        /// A Slack-compatible Web API base URL.
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
    }
}

channel_section! {
    /// `channels.pico` (the original's older name, `channels.websocket`, is read too): the
    /// Pico protocol's WebSocket endpoint `/pico/ws` on the gateway.
    PicoSection {
        /// The secret clients present (`Authorization: Bearer`, or the subprotocol
        /// `token.<value>`, or `?token=` with `allow_token_query`). Required.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// Take the token from the `token` query parameter too (default false: URLs end up in
        /// logs).
        #[serde(skip_serializing_if = "Option::is_none")]
        allow_token_query: Option<bool>,
        /// Web page origins allowed to connect (`"*"`: any). Empty: only clients that send no
        /// `Origin` (scripts, apps; no browser page).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        allow_origins: Vec<String>,
        /// Seconds between WebSocket pings (default 30).
        #[serde(skip_serializing_if = "Option::is_none")]
        ping_interval: Option<u64>,
        /// Seconds without anything from the client (a pong included) before the connection
        /// is closed (default 60).
        #[serde(skip_serializing_if = "Option::is_none")]
        read_timeout: Option<u64>,
        /// Seconds a write may take before the connection is dropped (default 10).
        #[serde(skip_serializing_if = "Option::is_none")]
        write_timeout: Option<u64>,
        /// Connections open at once (default 100).
        #[serde(skip_serializing_if = "Option::is_none")]
        max_connections: Option<u64>,
        /// The original's streaming settings (picoclaw always streams over this channel).
        #[serde(skip_serializing_if = "Option::is_none")]
        streaming: Option<Value>,
    }
}

channel_section! {
    /// `channels.maixcam`: a TCP listener MaixCam boards connect to and send JSON events on.
    MaixcamSection {
        /// The address to listen on (default `0.0.0.0`).
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// The port to listen on (default 18790).
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    }
}

channel_section! {
    /// `channels.whatsapp`: the original's bridge (`bridge_url`) or the WhatsApp Business Cloud
    /// API (`phone_number_id`); one of the two.
    WhatsappSection {
        /// The bridge's WebSocket URL (`ws://localhost:3001`): picoclaw dials it.
        #[serde(skip_serializing_if = "Option::is_none")]
        bridge_url: Option<String>,
        /// The original's built-in WhatsApp client switch: refused (use the bridge or the Cloud
        /// API).
        #[serde(skip_serializing_if = "Option::is_none")]
        use_native: Option<Value>,
        /// The original's native client's session folder (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        session_store_path: Option<Value>,
        /// Cloud API: the sending phone number's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        phone_number_id: Option<String>,
        /// Cloud API: a system user's access token.
        #[serde(skip_serializing_if = "Option::is_none")]
        access_token: Option<String>,
        /// Cloud API: the app secret that signs webhooks (`X-Hub-Signature-256`).
        #[serde(skip_serializing_if = "Option::is_none")]
        app_secret: Option<String>,
        /// Cloud API: the token the webhook's GET verification must echo.
        #[serde(skip_serializing_if = "Option::is_none")]
        verify_token: Option<String>,
        /// Cloud API: the Graph API base (default `https://graph.facebook.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// Cloud API: the Graph API version (default `v21.0`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_version: Option<String>,
    }
}

channel_section! {
    /// `channels.line`: the LINE Messaging API.
    LineSection {
        /// Checks `X-Line-Signature` on webhooks.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel_secret: Option<String>,
        /// The long-lived channel access token.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel_access_token: Option<String>,
        /// The original's own webhook listener: its address (used when it differs from the
        /// gateway's).
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_host: Option<String>,
        /// The original's own webhook listener: its port.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_port: Option<u16>,
        /// The original's own webhook listener: its path (default `/webhook/line`).
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_path: Option<String>,
        /// The Messaging API base (default `https://api.line.me`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// The content API base for media (default `https://api-data.line.me`; `api_base`
        /// when only that is set).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_data_base: Option<String>,
    }
}

channel_section! {
    /// `channels.feishu`: Feishu, or Lark with `is_lark`.
    FeishuSection {
        /// The app's id (`cli_...`).
        #[serde(skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// The app's secret.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_secret: Option<String>,
        /// Decrypts encrypted events and checks `X-Lark-Signature` (webhook mode).
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypt_key: Option<String>,
        /// The token events carry (webhook mode).
        #[serde(skip_serializing_if = "Option::is_none")]
        verification_token: Option<String>,
        /// `"websocket"` (default: the long connection, no public URL) or `"webhook"`
        /// (`/webhook/feishu`).
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// Lark (larksuite.com) rather than Feishu (feishu.cn).
        #[serde(skip_serializing_if = "Option::is_none")]
        is_lark: Option<bool>,
        /// The Open API base (default `https://open.feishu.cn`, or `https://open.larksuite.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
    }
}

channel_section! {
    /// `channels.dingtalk`: a DingTalk robot in Stream mode.
    DingtalkSection {
        /// The app's Client ID (AppKey).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The app's Client Secret (AppSecret).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_secret: Option<String>,
        /// The Open API base (default `https://api.dingtalk.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
    }
}

channel_section! {
    /// `channels.qq`: a QQ bot of the official bot platform.
    QqSection {
        /// The bot's AppID.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_id: Option<String>,
        /// The bot's AppSecret.
        #[serde(skip_serializing_if = "Option::is_none")]
        app_secret: Option<String>,
        /// `"websocket"` (default) or `"webhook"` (`/webhook/qq`, Ed25519-signed).
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        /// The OpenAPI base (default `https://api.sgroup.qq.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
        /// The app access token base (default `https://bots.qq.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        auth_base: Option<String>,
        /// The longest message part (the original's key; default 2000).
        #[serde(skip_serializing_if = "Option::is_none")]
        max_message_length: Option<u64>,
        /// The original's Markdown switch (needs a Markdown-enabled bot).
        #[serde(skip_serializing_if = "Option::is_none")]
        send_markdown: Option<bool>,
    }
}

channel_section! {
    /// `channels.onebot`: a OneBot v11 implementation's forward WebSocket.
    OnebotSection {
        /// The implementation's WebSocket URL (`ws://127.0.0.1:3001`).
        #[serde(skip_serializing_if = "Option::is_none")]
        ws_url: Option<String>,
        /// Sent as `Authorization: Bearer` when set.
        #[serde(skip_serializing_if = "Option::is_none")]
        access_token: Option<String>,
        /// Seconds between reconnection attempts (the original's key; default 5).
        #[serde(skip_serializing_if = "Option::is_none")]
        reconnect_interval: Option<u64>,
        /// The original's v0.1 group prefixes (`group_trigger.prefixes` in its later layout).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        group_trigger_prefix: Vec<String>,
    }
}

channel_section! {
    /// `channels.wecom`: the original's WeCom group bot (`webhook_url`); with `corp_id`, the
    /// self-built app of `channels.wecom_app`.
    WecomSection {
        /// Checks `msg_signature` on callbacks.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The 43-character key that decrypts callbacks.
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding_aes_key: Option<String>,
        /// The group bot's webhook (`https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...`).
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_url: Option<String>,
        /// The original's own callback listener: its address.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_host: Option<String>,
        /// The original's own callback listener: its port.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_port: Option<u16>,
        /// The original's own callback listener: its path.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_path: Option<String>,
        /// The original's reply timeout (not used by picoclaw: answers are sent, not returned).
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_timeout: Option<Value>,
        /// Self-built app: the corp id (selects the app layout).
        #[serde(skip_serializing_if = "Option::is_none")]
        corp_id: Option<String>,
        /// Self-built app: the app's secret.
        #[serde(skip_serializing_if = "Option::is_none")]
        corp_secret: Option<String>,
        /// Self-built app: the AgentId (a number or a string of digits).
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_id: Option<Value>,
        /// The API base (default `https://qyapi.weixin.qq.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
    }
}

channel_section! {
    /// `channels.wecom_app`: a WeCom self-built app.
    WecomAppSection {
        /// The corp id (`ww...`).
        #[serde(skip_serializing_if = "Option::is_none")]
        corp_id: Option<String>,
        /// The app's secret.
        #[serde(skip_serializing_if = "Option::is_none")]
        corp_secret: Option<String>,
        /// The AgentId (a number or a string of digits).
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_id: Option<Value>,
        /// Checks `msg_signature` on callbacks.
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The 43-character key that decrypts callbacks.
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding_aes_key: Option<String>,
        /// The original's own callback listener: its address.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_host: Option<String>,
        /// The original's own callback listener: its port.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_port: Option<u16>,
        /// The original's own callback listener: its path.
        #[serde(skip_serializing_if = "Option::is_none")]
        webhook_path: Option<String>,
        /// The original's reply timeout (not used by picoclaw).
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_timeout: Option<Value>,
        /// The API base (default `https://qyapi.weixin.qq.com`).
        #[serde(skip_serializing_if = "Option::is_none")]
        api_base: Option<String>,
    }
}

/// Declares `ChannelsSection` with the typed channels and the original's other channels.
macro_rules! channels_section {
    (typed { $($(#[$tmeta:meta])* $typed:ident : $ty:ty,)* } original { $($other:ident,)* }) => {
        /// `channels`: the channels picoclaw has, typed, and the original PicoClaw's other
        /// channels, kept as they are (picoclaw does not implement them yet).
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default)]
        #[non_exhaustive]
        pub struct ChannelsSection {
            $(
                $(#[$tmeta])*
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $typed: Option<$ty>,
            )*
            $(
                /// A channel of the original PicoClaw that picoclaw does not implement yet.
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $other: Option<Value>,
            )*
            /// Sections of channels neither picoclaw nor the original has: a build's own
            /// (`Extensions::with_channel`), by name, as written.
            #[serde(flatten)]
            pub others: std::collections::BTreeMap<String, Value>,
        }

        impl ChannelsSection {
            /// Every channel name this section knows, picoclaw's first.
            pub const NAMES: &'static [&'static str] = &[
                $(stringify!($typed),)* $(stringify!($other),)*
            ];

            /// The section of channel `name` as JSON, when config.json has one.
            pub fn section(&self, name: &str) -> Option<Value> {
                match name {
                    $(stringify!($typed) => self.$typed.as_ref().and_then(|s| serde_json::to_value(s).ok()),)*
                    $(stringify!($other) => self.$other.clone(),)*
                    other => self.others.get(other).cloned(),
                }
            }

            /// The names of the channels switched on (`enabled: true`): picoclaw's, then the
            /// original's, then any other section's, whether or not this build has them.
            pub fn enabled(&self) -> Vec<&str> {
                let mut on: Vec<&str> = Vec::new();
                $(
                    if self.$typed.as_ref().is_some_and(|s| s.enabled) {
                        on.push(stringify!($typed));
                    }
                )*
                $(
                    if self.$other.as_ref().and_then(|v| v.get("enabled"))
                        .and_then(Value::as_bool) == Some(true)
                    {
                        on.push(stringify!($other));
                    }
                )*
                for (name, v) in &self.others {
                    if v.get("enabled").and_then(Value::as_bool) == Some(true) {
                        on.push(name);
                    }
                }
                on
            }
        }
    };
}

channels_section! {
    typed {
        telegram: TelegramSection,
        discord: DiscordSection,
        slack: SlackSection,
        /// `channels.pico`; `channels.websocket` is the original's older name of it.
        #[serde(alias = "websocket")]
        pico: PicoSection,
        maixcam: MaixcamSection,
        whatsapp: WhatsappSection,
        line: LineSection,
        feishu: FeishuSection,
        dingtalk: DingtalkSection,
        qq: QqSection,
        onebot: OnebotSection,
        wecom: WecomSection,
        wecom_app: WecomAppSection,
    }
    original {
        matrix,
        wecom_aibot,
        weixin,
        pico_client,
        irc,
    }
}

impl ChannelsSection {
    /// The `session_scope` of channel `name` (`chat` when the channel has no typed section).
    pub fn session_scope(&self, name: &str) -> Result<crate::SessionScope, crate::ChannelError> {
        let section = self.section(name);
        let raw = section
            .as_ref()
            .and_then(|v| v.get("session_scope"))
            .and_then(Value::as_str);
        crate::SessionScope::parse(name, raw)
    }
}

/// Reads the original PicoClaw's later channel layout as its first one: in
/// `{"enabled": true, "type": "line", "allow_from": [...], "settings": {"channel_secret": ...}}`
/// the keys of `settings` join the section's own (a key written at both levels keeps the outer
/// value). `channels` is the whole `channels` object; other shapes are left as they are.
pub fn lift_settings(channels: &mut Value) {
    let Some(sections) = channels.as_object_mut() else {
        return;
    };
    for section in sections.values_mut() {
        let Some(fields) = section.as_object_mut() else {
            continue;
        };
        if !matches!(fields.get("settings"), Some(Value::Object(_))) {
            continue;
        }
        if let Some(Value::Object(inner)) = fields.remove("settings") {
            for (key, value) in inner {
                fields.entry(key).or_insert(value);
            }
        }
    }
}

/// A trimmed, non-empty copy of a text setting.
pub fn trimmed(value: Option<&String>) -> Option<String> {
    value
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn sections_read_the_original_keys_and_ids_as_numbers() {
        let c: ChannelsSection = serde_json::from_value(json!({
            "telegram": {"enabled": true, "token": "1:a", "base_url": "http://bot.local",
                         "proxy": "", "allow_from": ["U1", 42, " ", null]},
            "line": {"enabled": true, "channel_secret": "", "webhook_port": 18791},
            "slack": {"enabled": false}
        }))
        .unwrap();
        let t = c.telegram.as_ref().unwrap();
        assert_eq!(t.allow_from, ["U1", "42"]);
        assert_eq!(t.api_base.as_deref(), Some("http://bot.local"));
        assert_eq!(c.enabled(), ["telegram", "line"]);
        let bad = serde_json::from_value::<ChannelsSection>(json!({"discord": {"allow_from": 7}}));
        assert!(bad.is_err());
        let mut later = json!({
            "line": {"enabled": true, "type": "line", "allow_from": ["U1"],
                     "settings": {"channel_secret": "s", "allow_from": ["ignored"]}},
            "matrix": "not an object"
        });
        lift_settings(&mut later);
        let c: ChannelsSection = serde_json::from_value(later.clone()).unwrap();
        let line = c.line.as_ref().unwrap();
        assert_eq!(line.channel_secret.as_deref(), Some("s"));
        assert_eq!(line.allow_from, ["U1"]);
        assert_eq!(later["matrix"], "not an object");
        let bad = serde_json::from_value::<ChannelsSection>(json!({"discord": {"allow_from": 7}}));
        assert!(bad.unwrap_err().to_string().contains("list of user ids"));
    }
}
