//! Event subscriptions over HTTP (`mode: "webhook"`, on the gateway's `/webhook/feishu`). With
//! an `encrypt_key`, Feishu encrypts bodies (`{"encrypt": base64(iv ‖ AES-256-CBC(...))}`, the
//! key the SHA-256 of `encrypt_key`) and signs events (`X-Lark-Signature`: hex SHA-256 of
//! timestamp + nonce + encrypt_key + body); the signature is checked, in constant time, before
//! the body is read; its `X-Lark-Request-Timestamp` must be within an hour of now (a replayed
//! request is refused). The verification token events carry is checked too (in constant time).
//! An `encrypt_key` is required: the token alone, sent in the clear, proves nothing.
//! `url_verification` challenges are answered after their token is checked.

use super::Inner;
use crate::{Inbox, WebhookRequest, WebhookResponse};
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The largest request body taken (Feishu's events are a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Hex SHA-256 of `timestamp + nonce + key + body`: the `X-Lark-Signature` of a request.
pub(crate) fn signature(timestamp: &str, nonce: &str, key: &str, body: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(timestamp.as_bytes());
    ctx.update(nonce.as_bytes());
    ctx.update(key.as_bytes());
    ctx.update(body);
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decrypts an `encrypt` field with `key` (the configured `encrypt_key`).
pub(crate) fn decrypt(key: &str, encrypted: &str) -> Result<Vec<u8>, String> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encrypted.trim())
        .map_err(|_| "not base64".to_owned())?;
    if raw.len() < 32 || raw.len() % 16 != 0 {
        return Err("not whole AES blocks after the IV".into());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let (iv, data) = raw.split_at(16);
    cbc::Decryptor::<aes::Aes256>::new_from_slices(digest.as_ref(), iv)
        .map_err(|_| "bad key or IV length".to_owned())?
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map_err(|_| "bad padding (a wrong encrypt_key?)".to_owned())
}

/// Signed requests older or newer than this are refused (a captured request replayed later).
const REPLAY_WINDOW_SECS: i64 = 3600;

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `X-Lark-Request-Timestamp` (seconds) is within the replay window of `now`.
fn recent(timestamp: &str, now: i64) -> bool {
    timestamp
        .trim()
        .parse::<i64>()
        .is_ok_and(|ts| now.abs_diff(ts) <= REPLAY_WINDOW_SECS.unsigned_abs())
}

fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn refused(status: u16, why: &str) -> WebhookResponse {
    tracing::warn!(status, why, "feishu webhook: request refused");
    WebhookResponse::text(status, why)
}

/// Handles one request to `/webhook/feishu`.
pub(crate) async fn handle(
    inner: &Arc<Inner>,
    request: WebhookRequest,
    inbox: Arc<dyn Inbox>,
) -> WebhookResponse {
    if !request.method.eq_ignore_ascii_case("POST") {
        return WebhookResponse::text(405, "Feishu sends events with POST");
    }
    if request.body.len() > MAX_BODY {
        return refused(413, "the body is too large");
    }
    let config = &inner.config;
    // Webhook mode is only built with an encrypt_key (`FeishuChannel::new` refuses it without):
    // the verification token alone, sent in the clear, authenticates nothing.
    let Some(key) = config.encrypt_key.as_deref() else {
        return refused(401, "channels.feishu.encrypt_key is not set");
    };
    // `signed`: the signature was checked (before anything else is read), and its timestamp is
    // recent. Unsigned: only a url_verification challenge with the right token may pass, and
    // every failure on that path answers the same, so nothing is learnt about the decryption.
    let signed = match request.header("x-lark-signature") {
        Some(given) => {
            let ts = request
                .header("x-lark-request-timestamp")
                .unwrap_or_default();
            let nonce = request.header("x-lark-request-nonce").unwrap_or_default();
            if !same(&signature(ts, nonce, key, &request.body), given.trim()) {
                return refused(401, "bad signature");
            }
            if !recent(ts, now_secs()) {
                return refused(403, "the request timestamp is more than an hour off");
            }
            true
        }
        None => false,
    };
    let unverified = || refused(401, "unsigned request is not a valid url_verification");
    let Ok(outer) = serde_json::from_slice::<Value>(&request.body) else {
        return if signed {
            refused(400, "the body is not JSON")
        } else {
            unverified()
        };
    };
    let body = match outer.get("encrypt").and_then(Value::as_str) {
        Some(encrypted) => {
            match decrypt(key, encrypted).map(|b| serde_json::from_slice::<Value>(&b)) {
                Ok(Ok(v)) => v,
                _ if signed => return refused(400, "the body cannot be decrypted"),
                _ => return unverified(),
            }
        }
        None => outer,
    };
    let token = body
        .get("header")
        .and_then(|h| h.get("token"))
        .or_else(|| body.get("token"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token_ok = config
        .verification_token
        .as_deref()
        .is_none_or(|expected| same(token, expected));
    if body.get("type").and_then(Value::as_str) == Some("url_verification") {
        // Without a verification token, a challenge must at least be signed.
        if !token_ok || (config.verification_token.is_none() && !signed) {
            return if signed {
                refused(403, "wrong verification token")
            } else {
                unverified()
            };
        }
        let challenge = body.get("challenge").cloned().unwrap_or(Value::Null);
        return WebhookResponse::json(&json!({ "challenge": challenge }));
    }
    if !signed {
        return refused(401, "the event is not signed (X-Lark-Signature)");
    }
    if !token_ok {
        return refused(403, "wrong verification token");
    }
    if inner.bot().is_none() {
        return WebhookResponse::text(503, "the channel is starting; retry later");
    }
    match inner.take_event(&body, inbox.as_ref()).await {
        Ok(()) => WebhookResponse::json(&json!({})),
        Err(e) => {
            tracing::warn!(error = %e, "feishu webhook: event not kept; Feishu will retry");
            WebhookResponse::text(503, "the event could not be kept; retry later")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_documented_example_decrypts() {
        // The example of Feishu's "Encrypt Key" guide: key "test key", text "hello world".
        let plain = decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=").unwrap();
        assert_eq!(plain, b"hello world");
        assert!(decrypt("other key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=").is_err());
        assert!(decrypt("test key", "not base64!").is_err());
        assert!(decrypt("test key", "AAAA").is_err());
    }

    #[test]
    fn only_timestamps_within_an_hour_are_recent() {
        let now = 1_800_000_000;
        assert!(recent("1800000000", now));
        assert!(recent("1799996400", now));
        assert!(recent(" 1800003600", now));
        assert!(!recent("1799996399", now));
        assert!(!recent("1800003601", now));
        assert!(!recent("", now));
        assert!(!recent("soon", now));
        assert!(!recent("-9223372036854775808", now));
    }

    #[test]
    fn the_signature_covers_timestamp_nonce_key_and_body() {
        // SHA-256 of "abc", split over the four parts.
        assert_eq!(
            signature("a", "b", "c", b""),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(
            signature("1", "n", "k", b"x"),
            signature("1", "n", "k", b"y")
        );
    }
}
