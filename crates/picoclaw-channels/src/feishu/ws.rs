//! The long connection (`mode: "websocket"`, the default): what the official SDKs open instead
//! of a webhook, so no public URL is needed. picoclaw asks `/callback/ws/endpoint` for a URL,
//! dials it, pings every `PingInterval` with the URL's `service_id`, joins events Feishu sends
//! in several frames, and acknowledges each event frame (`{"code":200}` in the frame sent back)
//! once the inbox kept it. An event the inbox refused is not acknowledged: Feishu sends it again.

use super::Inner;
use super::api::ClientConfig;
use super::frame::{CONTROL, DATA, Frame};
use crate::wsclient::{CloseFrame, Message, connect_ticket, reconnect_delay};
use crate::{ChannelError, Inbox};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A connection that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY: Duration = Duration::from_secs(60);

/// Parts of split events kept at once, and how long the parts of one may take to arrive.
const MAX_PENDING: usize = 32;
const PART_WAIT: Duration = Duration::from_secs(10);

/// The most parts one event may come in.
const MAX_PARTS: usize = 64;

/// Runs the long connection until `stop`, reconnecting with backoff. Returns `Err` only for
/// what reconnecting cannot fix (credentials refused).
pub(crate) async fn run(
    inner: &Arc<Inner>,
    inbox: &Arc<dyn Inbox>,
    stop: &CancellationToken,
) -> Result<(), ChannelError> {
    let mut attempt = 0u32;
    let mut config = ClientConfig::default();
    loop {
        let started = Instant::now();
        let outcome = match inner.api.ws_endpoint().await {
            Ok(endpoint) => {
                config = endpoint.config;
                session(inner, inbox, stop, &endpoint.url, &mut config).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(e @ ChannelError::Rejected(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "feishu: long connection lost; reconnecting"),
        }
        attempt = if started.elapsed() >= HEALTHY {
            1
        } else {
            attempt + 1
        };
        let pause = pause_before(&config, attempt);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return Ok(()),
        }
    }
}

/// The pause before reconnection `attempt`, as the SDKs do it: the first comes after a second
/// and a random part of Feishu's `ReconnectNonce` (so that many clients do not come back at
/// once), later ones after `ReconnectInterval` (1 s to 2 min), doubling per failure.
fn pause_before(config: &ClientConfig, attempt: u32) -> Duration {
    if attempt <= 1 {
        let nonce_ms = config.reconnect_nonce.min(120) * 1000;
        let mut b = [0u8; 8];
        let jitter = match getrandom::fill(&mut b) {
            Ok(()) if nonce_ms > 0 => u64::from_le_bytes(b) % nonce_ms,
            _ => 0,
        };
        return Duration::from_secs(1) + Duration::from_millis(jitter);
    }
    let base = Duration::from_secs(config.reconnect_interval.clamp(1, 120));
    reconnect_delay(base, attempt - 1)
}

/// `service_id` from the connection URL's query: the pings name it.
fn service_id(url: &str) -> Result<i32, ChannelError> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "service_id")
                .and_then(|(_, v)| v.parse().ok())
        })
        .ok_or_else(|| {
            ChannelError::Platform("feishu: the long connection URL names no service_id".into())
        })
}

/// `e` without the connection URL's query: its ticket and access key stay out of logs.
fn redacted(e: ChannelError, url: &str) -> ChannelError {
    let shown = url.split('?').next().unwrap_or_default();
    match e {
        ChannelError::Rejected(m) => ChannelError::Rejected(m.replace(url, shown)),
        ChannelError::Platform(m) => ChannelError::Platform(m.replace(url, shown)),
        other => other,
    }
}

/// One connection, until it drops (`Err`) or `stop` (`Ok`).
async fn session(
    inner: &Arc<Inner>,
    inbox: &Arc<dyn Inbox>,
    stop: &CancellationToken,
    url: &str,
    config: &mut ClientConfig,
) -> Result<(), ChannelError> {
    let service = service_id(url)?;
    let ws = connect_ticket("Feishu's long connection", url, &[])
        .await
        .map_err(|e| redacted(e, url))?;
    tracing::info!("feishu: long connection open");
    let (mut sink, mut stream) = ws.split();
    let mut parts = Parts::default();
    let mut next_ping = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => {
                let bye = CloseFrame {
                    code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "picoclaw is stopping".into(),
                };
                let _ = sink.send(Message::Close(Some(bye))).await;
                return Ok(());
            }
            () = tokio::time::sleep_until(next_ping) => {
                send(&mut sink, &Frame::ping(service)).await?;
                next_ping = tokio::time::Instant::now()
                    + Duration::from_secs(config.ping_interval.clamp(1, 600));
                continue;
            }
            frame = stream.next() => frame,
        };
        let bytes = match frame {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => {
                return Err(ChannelError::Platform(
                    "feishu: Feishu closed the long connection".into(),
                ));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(ChannelError::Platform(format!(
                    "feishu: long connection: {e}"
                )));
            }
        };
        let frame = match Frame::decode(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "feishu: a malformed frame was dropped");
                continue;
            }
        };
        match frame.method {
            CONTROL => on_control(&frame, config),
            DATA => {
                if let Some(ack) = on_data(inner, inbox, frame, &mut parts).await {
                    send(&mut sink, &ack).await?;
                }
            }
            other => tracing::debug!(method = other, "feishu: a frame of unknown method"),
        }
    }
}

async fn send<S>(sink: &mut S, frame: &Frame) -> Result<(), ChannelError>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::binary(frame.encode()))
        .await
        .map_err(|e| ChannelError::Platform(format!("feishu: long connection: {e}")))
}

/// A pong may carry new client settings (the ping interval).
fn on_control(frame: &Frame, config: &mut ClientConfig) {
    if frame.header("type") != Some("pong") {
        return;
    }
    let Some(payload) = frame.payload.as_deref().filter(|p| !p.is_empty()) else {
        return;
    };
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(payload) {
        *config = config.merged(&value);
    }
}

/// A data frame: the acknowledgement to send back, or `None` (a part of an event still
/// incomplete, or an event the inbox refused: Feishu will send it again).
async fn on_data(
    inner: &Arc<Inner>,
    inbox: &Arc<dyn Inbox>,
    mut frame: Frame,
    parts: &mut Parts,
) -> Option<Frame> {
    let started = Instant::now();
    let payload = parts.join(&frame)?;
    // Card callbacks are not used: acknowledged too, so that Feishu does not retry them.
    if frame.header("type") == Some("event") {
        match serde_json::from_slice::<serde_json::Value>(&payload) {
            Ok(event) => {
                if let Err(e) = inner.take_event(&event, inbox.as_ref()).await {
                    tracing::warn!(error = %e, "feishu: event not kept; Feishu will send it again");
                    return None;
                }
            }
            // Malformed: acknowledged, or Feishu would send it for ever.
            Err(e) => tracing::warn!(error = %e, "feishu: an event that is not JSON was dropped"),
        }
    }
    let took = started.elapsed().as_millis().to_string();
    frame.headers.push(("biz_rt".into(), took));
    frame.payload = Some(br#"{"code":200,"headers":null,"data":null}"#.to_vec());
    Some(frame)
}

/// The parts of one event received so far (by `seq`), and since when.
type Slots = (Instant, Vec<Option<Vec<u8>>>);

/// Events Feishu sent in several frames (`sum` > 1), by `message_id`, until all parts came.
#[derive(Default)]
struct Parts {
    pending: HashMap<String, Slots>,
}

impl Parts {
    /// The whole payload once every part of the frame's event is here.
    fn join(&mut self, frame: &Frame) -> Option<Vec<u8>> {
        let number = |k: &str| frame.header(k).and_then(|v| v.parse::<usize>().ok());
        let payload = frame.payload.clone().unwrap_or_default();
        let sum = number("sum").unwrap_or(1);
        if sum <= 1 {
            return Some(payload);
        }
        let (Some(seq), Some(id)) = (number("seq"), frame.header("message_id")) else {
            tracing::warn!("feishu: a part of an event without seq or message_id was dropped");
            return None;
        };
        if sum > MAX_PARTS || seq >= sum {
            tracing::warn!(sum, seq, "feishu: an event in too many parts was dropped");
            return None;
        }
        self.pending
            .retain(|_, (since, _)| since.elapsed() < PART_WAIT);
        if !self.pending.contains_key(id) && self.pending.len() >= MAX_PENDING {
            tracing::warn!("feishu: too many incomplete events; a part was dropped");
            return None;
        }
        let (_, slots) = self
            .pending
            .entry(id.to_owned())
            .or_insert_with(|| (Instant::now(), vec![None; sum]));
        if slots.len() != sum {
            self.pending.remove(id);
            return None;
        }
        slots[seq] = Some(payload);
        if slots.iter().any(Option::is_none) {
            return None;
        }
        let (_, slots) = self.pending.remove(id)?;
        Some(slots.into_iter().flatten().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn part(id: &str, sum: usize, seq: usize, bytes: &[u8]) -> Frame {
        Frame {
            method: DATA,
            headers: vec![
                ("message_id".into(), id.into()),
                ("sum".into(), sum.to_string()),
                ("seq".into(), seq.to_string()),
            ],
            payload: Some(bytes.to_vec()),
            ..Frame::default()
        }
    }

    #[test]
    fn parts_are_joined_in_order_whatever_order_they_come_in() {
        let mut parts = Parts::default();
        assert_eq!(parts.join(&part("m1", 3, 2, b"c")), None);
        assert_eq!(parts.join(&part("m1", 3, 0, b"a")), None);
        assert_eq!(parts.join(&part("m2", 1, 0, b"whole")).unwrap(), b"whole");
        assert_eq!(parts.join(&part("m1", 3, 1, b"b")).unwrap(), b"abc");
        assert!(parts.pending.is_empty());
        assert_eq!(parts.join(&part("m3", 2, 5, b"x")), None, "seq past sum");
        assert_eq!(
            parts.join(&part("m3", 100, 0, b"x")),
            None,
            "too many parts"
        );
    }

    #[test]
    fn connection_errors_do_not_show_the_ticket() {
        let url = "wss://msg-frontier.feishu.cn/ws/v2?ticket=secret&service_id=1";
        let e = redacted(
            ChannelError::Platform(format!("cannot connect to {url}: refused")),
            url,
        );
        assert_eq!(
            e.to_string(),
            "cannot connect to wss://msg-frontier.feishu.cn/ws/v2: refused"
        );
    }

    #[test]
    fn the_service_id_comes_from_the_url() {
        assert_eq!(
            service_id("wss://msg-frontier.feishu.cn/ws/v2?device_id=1&service_id=33").unwrap(),
            33
        );
        assert!(service_id("wss://x/ws").is_err());
    }

    #[test]
    fn reconnection_waits_the_interval_and_backs_off() {
        let c = ClientConfig {
            reconnect_interval: 2,
            reconnect_nonce: 0,
            ping_interval: 5,
        };
        assert_eq!(pause_before(&c, 1), Duration::from_secs(1));
        assert_eq!(pause_before(&c, 2), Duration::from_secs(2));
        assert_eq!(pause_before(&c, 3), Duration::from_secs(4));
        let jittered = ClientConfig {
            reconnect_nonce: 3,
            ..c
        };
        let first = pause_before(&jittered, 1);
        assert!(first >= Duration::from_secs(1) && first < Duration::from_secs(4));
    }
}
