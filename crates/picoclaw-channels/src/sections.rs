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
            /// The original's group settings (not used by picoclaw).
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
    }
    original {
        whatsapp,
        feishu,
        qq,
        dingtalk,
        matrix,
        line,
        onebot,
        wecom,
        wecom_app,
        wecom_aibot,
        weixin,
        pico_client,
        irc,
    }
}

impl ChannelsSection {
    /// The `session_scope` of channel `name` (`chat` when the channel has no typed section).
    pub fn session_scope(&self, name: &str) -> Result<crate::SessionScope, crate::ChannelError> {
        let raw = match name {
            "telegram" => self
                .telegram
                .as_ref()
                .and_then(|s| s.session_scope.as_deref()),
            "discord" => self
                .discord
                .as_ref()
                .and_then(|s| s.session_scope.as_deref()),
            "slack" => self.slack.as_ref().and_then(|s| s.session_scope.as_deref()),
            "pico" => self.pico.as_ref().and_then(|s| s.session_scope.as_deref()),
            "maixcam" => self
                .maixcam
                .as_ref()
                .and_then(|s| s.session_scope.as_deref()),
            other => self
                .others
                .get(other)
                .and_then(|v| v.get("session_scope"))
                .and_then(Value::as_str),
        };
        crate::SessionScope::parse(name, raw)
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
        assert!(bad.unwrap_err().to_string().contains("list of user ids"));
    }
}
