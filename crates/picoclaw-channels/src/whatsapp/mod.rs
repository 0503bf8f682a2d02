//! WhatsApp, two ways: the original PicoClaw's bridge (a WebSocket picoclaw dials at
//! `bridge_url`, JSON messages both ways; the bridge runs a WhatsApp Web client) or the WhatsApp
//! Business Cloud API (`phone_number_id`: signed webhooks on the gateway's `/webhook/whatsapp`,
//! answers through the Graph API). One of the two is configured; picoclaw has no WhatsApp Web
//! client of its own (`use_native` is refused).
//!
//! Both modes share the access rules (allow_from on the phone number, with or without `+`, the
//! JID's device suffix ignored; pairing when the list is empty; the per-user rate limit), the
//! group rule (prefixes; the bridge protocol carries no mentions), redelivery drops by message
//! id, and answers rendered with WhatsApp's formatting and split at 4 096 characters.

mod bridge;
mod cloud;

use crate::access::{Access, Admission};
use crate::group::{Claim, GroupTrigger, Seen};
use crate::settings::Common;
use crate::{Channel, ChannelError, ChannelSetup, Inbox, WebhookRequest, WebhookResponse};
use async_trait::async_trait;
use picoclaw_api::OutboundMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The longest text sent in one message (the Cloud API's limit for a text body; the bridge
/// uses the same).
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// The largest file taken from a user (WhatsApp's own limit for audio and video).
const MAX_MEDIA_BYTES: usize = 16 << 20;

/// Message ids remembered to drop redeliveries.
const SEEN_CAP: usize = 2048;

/// Builds `channels.whatsapp` (registered in [`crate::ChannelRegistry::builtin`]).
pub(crate) fn build(setup: &ChannelSetup) -> Result<Arc<dyn Channel>, ChannelError> {
    Ok(Arc::new(WhatsappChannel::from_setup(setup)?))
}

/// The WhatsApp channel, in bridge or Cloud API mode.
pub struct WhatsappChannel {
    mode: Mode,
}

enum Mode {
    Bridge(Arc<bridge::Bridge>),
    Cloud(Arc<cloud::Cloud>),
}

impl std::fmt::Debug for WhatsappChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Bridge(_) => "bridge",
            Mode::Cloud(_) => "cloud_api",
        };
        f.debug_struct("WhatsappChannel")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

impl WhatsappChannel {
    /// The channel `channels.whatsapp` describes: the bridge with `bridge_url`, the Cloud API
    /// with `phone_number_id` (and `access_token`, `app_secret`, `verify_token`).
    pub fn from_setup(setup: &ChannelSetup) -> Result<Self, ChannelError> {
        let section: crate::WhatsappSection = setup.settings()?;
        if section.use_native.as_ref().is_some_and(truthy) {
            return Err(ChannelError::Rejected(
                "channels.whatsapp.use_native: picoclaw has no built-in WhatsApp Web client; set \
                 bridge_url (the bridge) or phone_number_id (the Business Cloud API) instead \
                 (docs/channels/whatsapp.md)"
                    .into(),
            ));
        }
        let text = |v: &Option<String>| crate::sections::trimmed(v.as_ref());
        let shared = Shared::new(setup, &section)?;
        let mode = match (text(&section.bridge_url), text(&section.phone_number_id)) {
            (Some(_), Some(_)) => {
                return Err(ChannelError::Rejected(
                    "channels.whatsapp sets both bridge_url and phone_number_id: keep bridge_url \
                     for the bridge or phone_number_id for the Business Cloud API"
                        .into(),
                ));
            }
            (None, None) => {
                return Err(ChannelError::Rejected(
                    "channels.whatsapp needs bridge_url (the bridge's WebSocket, e.g. \
                     ws://localhost:3001) or phone_number_id (the Business Cloud API)"
                        .into(),
                ));
            }
            (Some(url), None) => Mode::Bridge(Arc::new(bridge::Bridge::new(url, shared)?)),
            (None, Some(id)) => Mode::Cloud(Arc::new(cloud::Cloud::new(id, &section, shared)?)),
        };
        let channel = Self { mode };
        // Opens pairing (and says how) when nobody is allowed yet.
        let _ = channel.access();
        Ok(channel)
    }

    /// Bridge mode: ping every `ping`, and dial again after `silence` without hearing from the
    /// bridge (30 s and 90 s unless changed here; writes are bounded by the smaller of 10 s and
    /// `silence`). For tests, which cannot wait minutes; call it before `run`.
    #[doc(hidden)]
    #[must_use]
    pub fn with_keepalive(mut self, ping: Duration, silence: Duration) -> Self {
        if let Mode::Bridge(b) = &mut self.mode
            && let Some(b) = Arc::get_mut(b)
        {
            b.keepalive = (ping.max(Duration::from_millis(10)), silence);
        }
        self
    }

    /// The access rules (for the one-time pairing code).
    pub fn access(&self) -> &Access {
        match &self.mode {
            Mode::Bridge(b) => b.shared.access(),
            Mode::Cloud(c) => c.shared.access(),
        }
    }
}

fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// What both modes share.
pub(crate) struct Shared {
    pub(crate) common: Common,
    /// Made once the settings are known to be good (it prints the pairing code).
    access: std::sync::OnceLock<Access>,
    pub(crate) group: GroupTrigger,
    pub(crate) seen: Seen,
    pub(crate) http: reqwest::Client,
}

/// What to do with a message after the access and group rules.
#[derive(Debug)]
pub(crate) enum Gate<'a> {
    /// Hand this text to the agent; keep the claim on its id once the inbox took it.
    Take(String, Option<Claim<'a>>),
    /// Answer the sender with this notice, hand nothing on.
    Notice(&'static str),
    /// Drop silently (not allowed, not for the bot, or a redelivery).
    Drop,
}

impl Shared {
    pub(crate) fn access(&self) -> &Access {
        self.access.get_or_init(|| self.common.access("whatsapp"))
    }

    fn new(setup: &ChannelSetup, section: &crate::WhatsappSection) -> Result<Self, ChannelError> {
        let mut common =
            Common::from_keys(section.allow_from.clone(), section.rate_limit_per_minute);
        common.media_dir = Some(setup.media_dir.clone());
        common.media_base = Some(setup.workspace.clone());
        common.paired_file = Some(setup.paired_file.clone());
        let http = picoclaw_http::client_builder()
            .map_err(|e| ChannelError::Platform(format!("whatsapp: HTTP client: {e}")))?
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| {
                ChannelError::Platform(format!("whatsapp: HTTP client: {}", e.without_url()))
            })?;
        Ok(Self {
            access: std::sync::OnceLock::new(),
            common,
            group: GroupTrigger::from_settings(&setup.settings),
            seen: Seen::new(SEEN_CAP),
            http,
        })
    }

    /// The access and group rules for a message from `sender` (a JID or a wa_id) with `text`:
    /// groups need a prefix (or a mention, where the transport knows of one); direct chats may
    /// pair; then allow_from; then the message's `id` is claimed (a redelivery is dropped here,
    /// after the access checks, so strangers cannot push allowed users' ids out); then the rate
    /// limit.
    pub(crate) fn gate(
        &self,
        sender: &str,
        text: &str,
        group: bool,
        mentioned: bool,
        id: Option<&str>,
    ) -> Gate<'_> {
        let number = bare_number(sender);
        let text = if group {
            match self.group.admit(text, mentioned) {
                Some(t) => t,
                None => return Gate::Drop,
            }
        } else {
            text.trim().to_owned()
        };
        // allow_from holds JIDs, bare numbers or numbers with `+`; any of them lets the sender
        // in. The bare number pairs and counts for the rate limit.
        let jid = without_device(sender);
        let plus = format!("+{number}");
        let ids = [number.as_str(), sender, jid.as_str(), plus.as_str()];
        let claim = || match id {
            Some(id) => self.seen.claim(id).map(Some),
            None => Some(None),
        };
        match self.access().admit(&ids, !group, &text, claim) {
            Admission::Deliver(claim) => Gate::Take(text, claim),
            Admission::Answer(notice) => Gate::Notice(notice),
            Admission::Ignore => Gate::Drop,
        }
    }

    /// GETs `url` (with the bearer token when given), refusing more than [`MAX_MEDIA_BYTES`].
    /// Returns the bytes and the Content-Type.
    pub(crate) async fn fetch(
        &self,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), String> {
        fetch_capped(&self.http, url, bearer, MAX_MEDIA_BYTES).await
    }
}

/// GETs `url`, reading at most `cap` bytes.
pub(crate) async fn fetch_capped(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    cap: usize,
) -> Result<(Vec<u8>, Option<String>), String> {
    let mut request = http.get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the download answered {}", response.status()));
    }
    let mime = crate::settings::mime_of(&response);
    Ok((crate::settings::read_capped(response, cap).await?, mime))
}

/// The phone number of a JID or wa_id: `+4915..`, `4915..@s.whatsapp.net` and
/// `4915..:12@s.whatsapp.net` all give `4915..`.
pub(crate) fn bare_number(id: &str) -> String {
    let user = id.split('@').next().unwrap_or(id);
    let user = user.split(':').next().unwrap_or(user);
    user.trim().trim_start_matches('+').to_owned()
}

/// A JID without its device suffix (`49..:12@s.whatsapp.net` → `49..@s.whatsapp.net`).
fn without_device(jid: &str) -> String {
    match jid.split_once('@') {
        Some((user, server)) => {
            let user = user.split(':').next().unwrap_or(user);
            format!("{user}@{server}")
        }
        None => jid.to_owned(),
    }
}

/// The agent's Markdown as WhatsApp messages: its formatting, at most 4 096 characters each.
pub(crate) fn render(markdown: &str) -> Vec<String> {
    crate::split_message(
        &crate::format::markdown_to_whatsapp(markdown),
        MAX_MESSAGE_CHARS,
    )
}

/// The media kind of a MIME type or a WhatsApp message type.
pub(crate) fn media_kind(kind: &str, mime: Option<&str>) -> picoclaw_api::MediaKind {
    use picoclaw_api::MediaKind;
    let mime = mime.unwrap_or_default();
    if kind == "image" || kind == "sticker" || mime.starts_with("image/") {
        MediaKind::Image
    } else if kind == "audio" || kind == "voice" || mime.starts_with("audio/") {
        MediaKind::Audio
    } else if kind == "video" || mime.starts_with("video/") {
        MediaKind::Video
    } else {
        MediaKind::Document
    }
}

/// A file extension for a MIME type WhatsApp sends (voice notes are `audio/ogg; codecs=opus`).
pub(crate) fn extension(mime: Option<&str>) -> &'static str {
    let mime = mime.unwrap_or_default();
    let mime = mime.split(';').next().unwrap_or(mime).trim();
    match mime {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/webp" => ".webp",
        "image/gif" => ".gif",
        "audio/ogg" => ".ogg",
        "audio/mpeg" => ".mp3",
        "audio/mp4" | "audio/aac" => ".m4a",
        "audio/amr" => ".amr",
        "video/mp4" => ".mp4",
        "video/3gpp" => ".3gp",
        "application/pdf" => ".pdf",
        _ => "",
    }
}

#[async_trait]
impl Channel for WhatsappChannel {
    fn name(&self) -> &str {
        "whatsapp"
    }

    async fn run(
        &self,
        inbox: Arc<dyn Inbox>,
        stop: CancellationToken,
    ) -> Result<(), ChannelError> {
        match &self.mode {
            Mode::Bridge(b) => Arc::clone(b).run(inbox, stop).await,
            Mode::Cloud(c) => c.run(stop).await,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<(), ChannelError> {
        match &self.mode {
            Mode::Bridge(b) => b.send(msg).await,
            Mode::Cloud(c) => c.send(msg).await,
        }
    }

    fn takes_webhooks(&self) -> bool {
        matches!(self.mode, Mode::Cloud(_))
    }

    async fn webhook(&self, request: WebhookRequest, inbox: Arc<dyn Inbox>) -> WebhookResponse {
        match &self.mode {
            Mode::Cloud(c) => Arc::clone(c).webhook(request, inbox).await,
            Mode::Bridge(_) => WebhookResponse::text(
                404,
                "channels.whatsapp uses the bridge; webhooks are for the Cloud API",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_out_of_jids_and_wa_ids() {
        assert_eq!(bare_number("491701234567@s.whatsapp.net"), "491701234567");
        assert_eq!(
            bare_number("491701234567:12@s.whatsapp.net"),
            "491701234567"
        );
        assert_eq!(bare_number("+491701234567"), "491701234567");
        assert_eq!(bare_number("491701234567"), "491701234567");
        assert_eq!(
            without_device("491701234567:3@s.whatsapp.net"),
            "491701234567@s.whatsapp.net"
        );
        assert_eq!(without_device("12036302@g.us"), "12036302@g.us");
    }

    #[test]
    fn media_kinds_and_extensions_follow_the_mime_type() {
        use picoclaw_api::MediaKind;
        assert_eq!(media_kind("image", None), MediaKind::Image);
        assert_eq!(
            media_kind("audio", Some("audio/ogg; codecs=opus")),
            MediaKind::Audio
        );
        assert_eq!(
            media_kind("document", Some("application/pdf")),
            MediaKind::Document
        );
        assert_eq!(extension(Some("audio/ogg; codecs=opus")), ".ogg");
        assert_eq!(extension(Some("application/x-unknown")), "");
    }
}
