//! The long connection (`mode: "websocket"`, the default): what the official SDKs open instead
//! of a webhook, so no public URL is needed. picoclaw asks `/callback/ws/endpoint` for a URL,
//! dials it, pings every `PingInterval` with the URL's `service_id`, joins events Feishu sends
//! in several frames, and acknowledges each event frame (`{"code":200}` in the frame sent back)
//! once the inbox kept it. An event the inbox refused is not acknowledged: Feishu sends it again.
//!
//! Events are handled in order by a task of the session, so that a slow inbox or download
//! never holds up pings; a connection on which nothing was heard for three ping intervals is
//! dropped and dialled again, and every write is bounded in time.

use super::Inner;
use super::api::ClientConfig;
use super::frame::{CONTROL, DATA, Frame};
use crate::wsclient::{CloseFrame, Message, connect_ticket, reconnect_delay};
use crate::{ChannelError, Inbox};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A connection that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY: Duration = Duration::from_secs(60);

/// Parts of split events kept at once, and how long the parts of one may take to arrive.
const MAX_PENDING: usize = 32;
const PART_WAIT: Duration = Duration::from_secs(10);

/// The most parts one event may come in.
const MAX_PARTS: usize = 64;

/// The largest event taken (Feishu's are a few KiB), whole or joined from its parts.
const MAX_EVENT_BYTES: usize = 2 << 20;

/// The most bytes the parts of incomplete events may hold together.
const MAX_PENDING_BYTES: usize = 32 << 20;

/// Events received and waiting for the handler; more are dropped unacknowledged (Feishu sends
/// them again).
const QUEUE: usize = 16;

/// How long one write (a frame, the close) may take: a peer that stops reading ends the
/// connection instead of holding up the session.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Ping intervals without anything heard after which the connection is taken for dead.
const SILENT_PINGS: u32 = 3;

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

/// A task ended (aborted) when dropped: the event handler does not outlive its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A complete event for the handler: its frame (answered as the acknowledgement), payload, and
/// when it arrived.
type Job = (Frame, Vec<u8>, Instant);

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
    let (jobs, queue) = mpsc::channel::<Job>(QUEUE);
    let (ack_tx, mut acks) = mpsc::channel::<Frame>(QUEUE);
    let _handler = AbortOnDrop(tokio::spawn(handle_events(
        Arc::clone(inner),
        Arc::clone(inbox),
        queue,
        ack_tx,
    )));
    let mut next_ping = tokio::time::Instant::now();
    let mut heard = Instant::now();
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => {
                let bye = CloseFrame {
                    code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "picoclaw is stopping".into(),
                };
                let _ = tokio::time::timeout(WRITE_WAIT, sink.send(Message::Close(Some(bye)))).await;
                return Ok(());
            }
            () = tokio::time::sleep_until(next_ping) => {
                let interval = Duration::from_secs(config.ping_interval.clamp(1, 600));
                if heard.elapsed() > interval * SILENT_PINGS {
                    return Err(ChannelError::Platform(format!(
                        "feishu: nothing heard on the long connection for {} s (no pong)",
                        heard.elapsed().as_secs()
                    )));
                }
                send(&mut sink, &Frame::ping(service)).await?;
                next_ping = tokio::time::Instant::now() + interval;
                continue;
            }
            ack = acks.recv() => {
                let Some(ack) = ack else {
                    return Err(ChannelError::Platform(
                        "feishu: the event handler of the long connection ended".into(),
                    ));
                };
                send(&mut sink, &ack).await?;
                continue;
            }
            frame = stream.next() => frame,
        };
        heard = Instant::now();
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
            DATA => match on_data(frame, &mut parts) {
                Data::Waiting => {}
                Data::Ack(ack) => send(&mut sink, &ack).await?,
                Data::Event(job) => {
                    if jobs.try_send(job).is_err() {
                        tracing::warn!(
                            "feishu: too many events waiting; one was dropped unacknowledged \
                             (Feishu sends it again)"
                        );
                    }
                }
            },
            other => tracing::debug!(method = other, "feishu: a frame of unknown method"),
        }
    }
}

/// Writes one frame, within [`WRITE_WAIT`].
async fn send<S>(sink: &mut S, frame: &Frame) -> Result<(), ChannelError>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    send_within(sink, frame, WRITE_WAIT).await
}

/// Writes one frame; a write still pending after `wait` is an error (the peer stopped reading).
async fn send_within<S>(sink: &mut S, frame: &Frame, wait: Duration) -> Result<(), ChannelError>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    match tokio::time::timeout(wait, sink.send(Message::binary(frame.encode()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ChannelError::Platform(format!(
            "feishu: long connection: {e}"
        ))),
        Err(_) => Err(ChannelError::Platform(format!(
            "feishu: long connection: a write took more than {} ms",
            wait.as_millis()
        ))),
    }
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

/// What a data frame asks for.
#[derive(Debug)]
enum Data {
    /// A part of an event still incomplete (or dropped): nothing to send.
    Waiting,
    /// Acknowledged at once (an event too large to take: Feishu would send it for ever).
    Ack(Frame),
    /// A complete event for the handler.
    Event(Job),
}

/// A data frame: the parts of split events are joined here, as they come.
fn on_data(mut frame: Frame, parts: &mut Parts) -> Data {
    let started = Instant::now();
    match parts.join(&mut frame) {
        Joined::Waiting => Data::Waiting,
        Joined::TooLarge => {
            tracing::warn!(
                limit = MAX_EVENT_BYTES,
                "feishu: an event larger than the limit was dropped"
            );
            Data::Ack(acknowledged(frame, started))
        }
        Joined::Whole(payload) => Data::Event((frame, payload, started)),
    }
}

/// The frame as its acknowledgement: `biz_rt` (milliseconds since it came) and code 200.
fn acknowledged(mut frame: Frame, started: Instant) -> Frame {
    let took = started.elapsed().as_millis().to_string();
    frame.headers.push(("biz_rt".into(), took));
    frame.payload = Some(br#"{"code":200,"headers":null,"data":null}"#.to_vec());
    frame
}

/// The session's event handler: events in the order they came, each acknowledged once the
/// inbox kept it; an event the inbox refused is not (Feishu will send it again).
async fn handle_events(
    inner: Arc<Inner>,
    inbox: Arc<dyn Inbox>,
    mut queue: mpsc::Receiver<Job>,
    acks: mpsc::Sender<Frame>,
) {
    while let Some((frame, payload, started)) = queue.recv().await {
        // Card callbacks are not used: acknowledged too, so that Feishu does not retry them.
        if frame.header("type") == Some("event") {
            match serde_json::from_slice::<serde_json::Value>(&payload) {
                Ok(event) => {
                    if let Err(e) = inner.take_event(&event, inbox.as_ref()).await {
                        tracing::warn!(error = %e, "feishu: event not kept; Feishu will send it again");
                        continue;
                    }
                }
                // Malformed: acknowledged, or Feishu would send it for ever.
                Err(e) => {
                    tracing::warn!(error = %e, "feishu: an event that is not JSON was dropped");
                }
            }
        }
        if acks.send(acknowledged(frame, started)).await.is_err() {
            return;
        }
    }
}

/// The parts of one event received so far (by `seq`), since when, and their bytes.
struct Slots {
    since: Instant,
    parts: Vec<Option<Vec<u8>>>,
    bytes: usize,
}

/// What [`Parts::join`] made of a frame.
#[derive(Debug, PartialEq)]
enum Joined {
    /// The whole payload of the event.
    Whole(Vec<u8>),
    /// More parts are awaited (or this one was dropped).
    Waiting,
    /// The event is larger than [`MAX_EVENT_BYTES`].
    TooLarge,
}

/// Events Feishu sent in several frames (`sum` > 1), by `message_id`, until all parts came.
#[derive(Default)]
struct Parts {
    pending: HashMap<String, Slots>,
}

impl Parts {
    /// The bytes all incomplete events hold.
    fn pending_bytes(&self) -> usize {
        self.pending.values().map(|s| s.bytes).sum()
    }

    /// The whole payload once every part of the frame's event is here (taken from `frame`).
    fn join(&mut self, frame: &mut Frame) -> Joined {
        let number = |k: &str| frame.header(k).and_then(|v| v.parse::<usize>().ok());
        let sum = number("sum").unwrap_or(1);
        let seq = number("seq");
        let payload = frame.payload.take().unwrap_or_default();
        if payload.len() > MAX_EVENT_BYTES {
            if let Some(id) = frame.header("message_id") {
                self.pending.remove(id);
            }
            return Joined::TooLarge;
        }
        if sum <= 1 {
            return Joined::Whole(payload);
        }
        let (Some(seq), Some(id)) = (seq, frame.header("message_id")) else {
            tracing::warn!("feishu: a part of an event without seq or message_id was dropped");
            return Joined::Waiting;
        };
        if sum > MAX_PARTS || seq >= sum {
            tracing::warn!(sum, seq, "feishu: an event in too many parts was dropped");
            return Joined::Waiting;
        }
        self.pending.retain(|_, s| s.since.elapsed() < PART_WAIT);
        if !self.pending.contains_key(id) && self.pending.len() >= MAX_PENDING {
            tracing::warn!("feishu: too many incomplete events; a part was dropped");
            return Joined::Waiting;
        }
        let replaced = self
            .pending
            .get(id)
            .and_then(|s| s.parts.get(seq))
            .and_then(|p| p.as_ref().map(Vec::len))
            .unwrap_or(0);
        if self.pending_bytes() - replaced + payload.len() > MAX_PENDING_BYTES {
            tracing::warn!("feishu: incomplete events hold too many bytes; a part was dropped");
            return Joined::Waiting;
        }
        let slots = self.pending.entry(id.to_owned()).or_insert_with(|| Slots {
            since: Instant::now(),
            parts: vec![None; sum],
            bytes: 0,
        });
        if slots.parts.len() != sum {
            self.pending.remove(id);
            return Joined::Waiting;
        }
        slots.bytes = slots.bytes - replaced + payload.len();
        slots.parts[seq] = Some(payload);
        if slots.bytes > MAX_EVENT_BYTES {
            self.pending.remove(id);
            return Joined::TooLarge;
        }
        if slots.parts.iter().any(Option::is_none) {
            return Joined::Waiting;
        }
        match self.pending.remove(id) {
            Some(slots) => Joined::Whole(slots.parts.into_iter().flatten().flatten().collect()),
            None => Joined::Waiting,
        }
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

    fn join(parts: &mut Parts, id: &str, sum: usize, seq: usize, bytes: &[u8]) -> Joined {
        parts.join(&mut part(id, sum, seq, bytes))
    }

    #[test]
    fn parts_are_joined_in_order_whatever_order_they_come_in() {
        let mut parts = Parts::default();
        assert_eq!(join(&mut parts, "m1", 3, 2, b"c"), Joined::Waiting);
        assert_eq!(join(&mut parts, "m1", 3, 0, b"a"), Joined::Waiting);
        assert_eq!(
            join(&mut parts, "m2", 1, 0, b"whole"),
            Joined::Whole(b"whole".to_vec())
        );
        assert_eq!(
            join(&mut parts, "m1", 3, 1, b"b"),
            Joined::Whole(b"abc".to_vec())
        );
        assert!(parts.pending.is_empty());
        assert_eq!(
            join(&mut parts, "m3", 2, 5, b"x"),
            Joined::Waiting,
            "seq past sum"
        );
        assert_eq!(
            join(&mut parts, "m3", 100, 0, b"x"),
            Joined::Waiting,
            "too many parts"
        );
        assert!(parts.pending.is_empty());
    }

    #[test]
    fn events_and_incomplete_parts_are_capped_in_bytes() {
        let mut parts = Parts::default();
        // One frame larger than an event may be.
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(join(&mut parts, "m1", 1, 0, &big), Joined::TooLarge);
        // Parts adding up to more than an event may be: dropped with what came before.
        let half = vec![b'x'; MAX_EVENT_BYTES / 2 + 1];
        assert_eq!(join(&mut parts, "m2", 3, 0, &half), Joined::Waiting);
        assert_eq!(join(&mut parts, "m2", 3, 1, &half), Joined::TooLarge);
        assert!(parts.pending.is_empty());
        // The same part sent twice is counted once.
        assert_eq!(join(&mut parts, "m3", 2, 0, &half), Joined::Waiting);
        assert_eq!(join(&mut parts, "m3", 2, 0, &half), Joined::Waiting);
        assert_eq!(parts.pending_bytes(), half.len());
        // Many incomplete events: their parts together stay under the total cap.
        let mut parts = Parts::default();
        let chunk = vec![b'y'; MAX_EVENT_BYTES - 8];
        for n in 0..MAX_PENDING {
            let _ = join(&mut parts, &format!("e{n}"), 2, 0, &chunk);
        }
        assert!(parts.pending_bytes() <= MAX_PENDING_BYTES);
        assert!(parts.pending.len() < MAX_PENDING, "the byte cap came first");
        // A part of an event already pending still completes it.
        let Some(first) = parts.pending.keys().next().cloned() else {
            panic!("nothing pending");
        };
        assert!(matches!(
            join(&mut parts, &first, 2, 1, b"end"),
            Joined::Whole(_)
        ));
    }

    /// A sink whose peer never reads: every write stays pending.
    struct Stuck;

    impl futures::Sink<Message> for Stuck {
        type Error = tokio_tungstenite::tungstenite::Error;
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Pending
        }
        fn start_send(self: std::pin::Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Pending
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_write_the_peer_never_takes_ends_in_an_error() {
        let started = Instant::now();
        let e = send_within(&mut Stuck, &Frame::ping(1), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, ChannelError::Platform(_)), "{e:?}");
        assert!(e.to_string().contains("write took more than"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
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
