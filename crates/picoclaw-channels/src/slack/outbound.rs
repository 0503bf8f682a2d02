//! What the channel sends to Slack: messages (with Block Kit buttons), notices, file uploads,
//! and the mapping of Web API errors to [`ChannelError`].

use super::Inner;
use crate::ChannelError;
use picoclaw_api::MediaRef;
use serde_json::{Value, json};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::sync::Arc;

/// What went wrong in a Web API call, as the channel reports it: refused credentials and
/// unknown channels are not worth retrying.
pub(super) fn api_error(method: &str, e: &SlackClientError) -> ChannelError {
    match e {
        SlackClientError::ApiError(api) => {
            let hint = match api.code.as_str() {
                "not_in_channel" => ": invite the bot to the channel (/invite @your-bot)",
                "channel_not_found" => {
                    ": the bot cannot see that channel (a private one needs an invite)"
                }
                "missing_scope" | "no_permission" => {
                    ": add the scope under OAuth & Permissions and reinstall the app (docs/channels/slack.md)"
                }
                "invalid_auth" | "not_authed" | "token_revoked" | "token_expired"
                | "account_inactive" => ": check channels.slack.bot_token",
                "is_archived" => ": the channel is archived",
                _ => "",
            };
            let text = format!("slack {method}: {}{hint}", api.code);
            match api.code.as_str() {
                "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked"
                | "token_expired" | "no_permission" | "missing_scope" | "channel_not_found"
                | "not_in_channel" | "is_archived" | "msg_too_long" | "invalid_blocks" => {
                    ChannelError::Rejected(text)
                }
                _ => ChannelError::Platform(text),
            }
        }
        other => ChannelError::Platform(format!("slack {method}: {other}")),
    }
}

/// `C123` → (`C123`, None); `C123/1700000000.000100` → (`C123`, Some(thread)).
pub(super) fn split_chat(chat_id: &str) -> (&str, Option<&str>) {
    match chat_id.split_once('/') {
        Some((channel, thread)) if !thread.is_empty() => (channel, Some(thread)),
        _ => (chat_id.trim_end_matches('/'), None),
    }
}

impl Inner {
    /// A short reply outside the conversation (pairing, slow down), in the background.
    pub(super) fn notice(
        self: &Arc<Self>,
        channel: &str,
        thread: Option<&str>,
        text: &'static str,
    ) {
        let this = Arc::clone(self);
        let mut req = SlackApiChatPostMessageRequest::new(
            channel.to_owned().into(),
            SlackMessageContent::new().with_text(text.to_owned()),
        );
        req.thread_ts = thread.map(|t| t.to_owned().into());
        tokio::spawn(async move {
            let session = this.client.open_session(&this.token);
            if let Err(e) = session.chat_post_message(&req).await {
                tracing::debug!(error = %e, "slack: notice not sent");
            }
        });
    }

    pub(super) async fn post(
        &self,
        channel: &str,
        thread: Option<&str>,
        text: String,
        blocks: Option<Vec<SlackBlock>>,
    ) -> Result<(), SlackClientError> {
        let mut content = SlackMessageContent::new().with_text(text);
        content.blocks = blocks;
        let mut req = SlackApiChatPostMessageRequest::new(channel.to_owned().into(), content);
        req.thread_ts = thread.map(|t| t.to_owned().into());
        self.client
            .open_session(&self.token)
            .chat_post_message(&req)
            .await
            .map(|_| ())
    }

    /// Uploads a workspace file into the conversation (files.getUploadURLExternal, the upload,
    /// files.completeUploadExternal).
    pub(super) async fn send_file(
        &self,
        channel: &str,
        thread: Option<&str>,
        media: &MediaRef,
    ) -> Result<(), ChannelError> {
        let bytes = tokio::fs::read(&media.location)
            .await
            .map_err(|e| ChannelError::Rejected(format!("cannot read {}: {e}", media.location)))?;
        let name = media.name.clone().unwrap_or_else(|| {
            std::path::Path::new(&media.location)
                .file_name()
                .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned())
        });
        let session = self.client.open_session(&self.token);
        let url = session
            .get_upload_url_external(&SlackApiFilesGetUploadUrlExternalRequest::new(
                name.clone(),
                bytes.len(),
            ))
            .await
            .map_err(|e| api_error("files.getUploadURLExternal", &e))?;
        session
            .files_upload_via_url(&SlackApiFilesUploadViaUrlRequest::new(
                url.upload_url,
                bytes,
                media
                    .mime
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
            ))
            .await
            .map_err(|e| api_error("file upload", &e))?;
        let mut complete = SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(url.file_id).with_title(name),
        ]);
        complete.channel_id = Some(channel.to_owned().into());
        complete.thread_ts = thread.map(|t| t.to_owned().into());
        session
            .files_complete_upload_external(&complete)
            .await
            .map_err(|e| api_error("files.completeUploadExternal", &e))?;
        Ok(())
    }
}

/// Block Kit for an answer with buttons: the text as a section, each row an actions block.
pub(super) fn blocks(text: &str, rows: &[Vec<picoclaw_api::Button>]) -> Option<Vec<SlackBlock>> {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    for (r, row) in rows.iter().enumerate().take(20) {
        let elements: Vec<Value> = row
            .iter()
            .enumerate()
            .take(25)
            .map(|(i, b)| {
                json!({
                    "type": "button",
                    "action_id": format!("picoclaw_{r}_{i}"),
                    "text": {"type": "plain_text", "text": b.text.chars().take(75).collect::<String>()},
                    "value": b.data.chars().take(2000).collect::<String>(),
                })
            })
            .collect();
        blocks.push(json!({"type": "actions", "elements": elements}));
    }
    serde_json::from_value(Value::Array(blocks)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_carry_their_thread() {
        assert_eq!(split_chat("C1"), ("C1", None));
        assert_eq!(split_chat("C1/17.5"), ("C1", Some("17.5")));
        assert_eq!(split_chat("C1/"), ("C1", None));
    }

    #[test]
    fn buttons_become_block_kit() {
        let rows = vec![vec![
            picoclaw_api::Button::new("Yes", "yes"),
            picoclaw_api::Button::new("No", "no"),
        ]];
        let b = blocks("*Pick*", &rows).unwrap();
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v[0]["type"], "section");
        assert_eq!(v[1]["type"], "actions");
        assert_eq!(v[1]["elements"][1]["value"], "no");
        assert_eq!(v[1]["elements"][0]["text"]["text"], "Yes");
    }
}
